//! Nothing hidden becomes visible, nothing undecided passes (issue 11 §1): every way a listing can come back
//! — batches, arrays where an object was expected, error statuses, `GET` streams, requests the server makes
//! of the client — is filtered; every answer the gateway cannot read strictly is withheld. The upstream here
//! is scripted (a spec-following 2025-03-26 peer that accepts batches, which the SDKs refuse to be), so each
//! test can send exactly the answer an attacker would.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_gateway::demo::client::post;
use serde_json::{Value, json};

use crate::common::{Gw, TD, wasm};

/// What the scripted upstream was asked.
#[derive(Clone, Debug)]
struct Asked {
    headers: HeaderMap,
    body: Value,
}

/// What it answers.
struct Canned {
    status: u16,
    content_type: &'static str,
    extra: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

fn json_answer(v: Value) -> Canned {
    Canned {
        status: 200,
        content_type: "application/json",
        extra: vec![],
        body: v.to_string().into_bytes(),
    }
}

fn sse_answer(events: &[Vec<u8>]) -> Canned {
    Canned {
        status: 200,
        content_type: "text/event-stream",
        extra: vec![],
        body: events.concat(),
    }
}

fn event(data: &[u8]) -> Vec<u8> {
    [b"event: message\ndata: ", data, b"\n\n"].concat()
}

type Script = Arc<dyn Fn(&Asked) -> Canned + Send + Sync>;

/// A scripted upstream on 127.0.0.1; what it was asked is recorded.
async fn scripted(script: Script) -> (std::net::SocketAddr, Arc<Mutex<Vec<Asked>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (script, log) = (script.clone(), log.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (script, log) = (script.clone(), log.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.unwrap().to_bytes();
                        let asked = Asked {
                            headers: parts.headers,
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        };
                        let canned = script(&asked);
                        log.lock().unwrap().push(asked);
                        let mut resp = http::Response::new(Full::new(Bytes::from(canned.body)));
                        *resp.status_mut() = StatusCode::from_u16(canned.status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", canned.content_type.parse().unwrap());
                        for (k, v) in canned.extra {
                            resp.headers_mut().insert(k, v.parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A gateway with one policed route `crm` to `upstream`; `chain` names modules of: `allow` (the allowlist:
/// only `search_docs`), `noask` (refuses every server-to-client request), `rp` (every tool, but only
/// resources under `file:///docs/` and prompts named `summarize_*`).
async fn gateway(upstream: std::net::SocketAddr, chain: &str) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    let yaml = format!(
        "listen_addr: 127.0.0.1:0\nshutdown_timeout: 2s\ntunnel_domain: {TD}\ntls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key}}\n\
         upstream: {{allowed_ips: [127.0.0.0/8]}}\naudit: {{dir: {d}/audit}}\npolicies:\n  cache_dir: {d}/cache\n  modules:\n\
         \x20   allow: {{ path: {allow}, settings: {{ allow: [search_docs] }} }}\n\
         \x20   noask: {{ path: {hostile}, settings: {{ mode: deny_server_requests }} }}\n\
         \x20   rp: {{ path: {allow}, settings: {{ allow: ['*'], resources: ['file:///docs/*'], prompts: ['summarize_*'] }} }}\n\
         routes:\n  crm: {{ upstream: 'http://{upstream}', policies: {chain} }}\n",
        d = dir.path().display(),
        allow = wasm("tool_allowlist").display(),
        hostile = wasm("hostile_policy").display(),
    );
    let config = mcp_gateway::config::from_yaml(&yaml, Path::new("test.yaml")).unwrap();
    let server = mcp_gateway::server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Gw {
        dir,
        addr,
        stop: Some(tx),
        task,
    }
}

fn tools() -> Value {
    json!([
        {"name": "search_docs", "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
        {"name": "delete_customer", "inputSchema": {"type": "object"}}
    ])
}

fn listing(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools()}})
}

/// POSTs `body` (with extra `headers`) to the gateway; status, headers and the raw body.
async fn send(gw: &Gw, body: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    let resp = gw
        .client("crm")
        .send(post(&format!("crm.{TD}"), "/mcp", body.to_owned(), headers))
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const BATCH_LIST: &str = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#;

fn assert_hidden(body: &str) {
    assert!(
        body.contains("search_docs"),
        "the allowed tool is listed: {body}"
    );
    assert!(
        !body.contains("delete_customer"),
        "a hidden tool leaked: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_tools_list_answered_as_a_json_array_hides_tools() {
    let (up, _) = scripted(Arc::new(|_| json_answer(json!([listing(json!(1))])))).await;
    let gw = gateway(up, "[allow]").await;
    let (status, _, body) = send(&gw, BATCH_LIST, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_tools_list_answered_as_an_sse_array_event_hides_tools() {
    let (up, _) = scripted(Arc::new(|_| {
        sse_answer(&[event(json!([listing(json!(1))]).to_string().as_bytes())])
    }))
    .await;
    let gw = gateway(up, "[allow]").await;
    let (status, _, body) = send(&gw, BATCH_LIST, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_batch_listing_is_filtered_and_marked_private() {
    let (up, _) = scripted(Arc::new(|_| json_answer(json!([listing(json!(1))])))).await;
    let gw = gateway(up, "[allow]").await;
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let (_, headers, body) = send(&gw, LIST, &modern).await;
    assert_hidden(&body);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["result"]["cacheScope"], "private", "{v}");
    assert_eq!(headers["cache-control"], "private, no-store");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_request_answered_with_a_one_element_array_hides_tools() {
    let (up, _) = scripted(Arc::new(|_| json_answer(json!([listing(json!(1))])))).await;
    let gw = gateway(up, "[allow]").await;
    let (_, _, body) = send(&gw, LIST, &[]).await;
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_status_whose_body_carries_a_listing_hides_tools() {
    let (up, _) = scripted(Arc::new(|_| Canned {
        status: 500,
        ..json_answer(listing(json!(1)))
    }))
    .await;
    let gw = gateway(up, "[allow]").await;
    let (status, _, body) = send(&gw, LIST, &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_in_the_answer_to_another_method_hides_tools() {
    let (up, _) = scripted(Arc::new(|_| json_answer(listing(json!(1))))).await;
    let gw = gateway(up, "[allow]").await;
    let (_, _, body) = send(&gw, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &[]).await;
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_on_a_get_stream_hides_tools() {
    // Resumption (`Last-Event-ID`), pushes and the 2024-11-05 transport all answer on a GET stream.
    let (up, _) = scripted(Arc::new(|_| {
        sse_answer(&[
            b"event: endpoint\ndata: /messages?session=1\n\n".to_vec(),
            b"id: 7\n".to_vec(),
            event(listing(json!(1)).to_string().as_bytes()),
        ])
    }))
    .await;
    let gw = gateway(up, "[allow]").await;
    let mut req = post(&format!("crm.{TD}"), "/mcp", String::new(), &[]);
    *req.method_mut() = http::Method::GET;
    req.headers_mut().remove("content-type");
    req.headers_mut()
        .insert("accept", "text/event-stream".parse().unwrap());
    req.headers_mut()
        .insert("last-event-id", "6".parse().unwrap());
    req.headers_mut()
        .insert("mcp-session-id", "s-1".parse().unwrap());
    let resp = gw.client("crm").send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("event: endpoint\ndata: /messages?session=1"),
        "other event types pass: {body}"
    );
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_definitions_inside_a_sampling_request_hide_tools() {
    let (up, _) = scripted(Arc::new(|_| {
        let ask = json!({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage",
            "params": {"messages": [], "maxTokens": 10, "tools": tools()}});
        sse_answer(&[
            event(ask.to_string().as_bytes()),
            event(
                json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}})
                    .to_string()
                    .as_bytes(),
            ),
        ])
    }))
    .await;
    let gw = gateway(up, "[allow]").await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"x"}}}"#;
    let (_, _, body) = send(&gw, call, &[]).await;
    assert!(body.contains("sampling/createMessage"), "{body}");
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_server_requests_on_an_sse_stream_are_each_policed() {
    let (up, seen) = scripted(Arc::new(|a: &Asked| {
        if a.body.get("error").is_some() {
            return Canned {
                status: 202,
                content_type: "application/json",
                extra: vec![],
                body: vec![],
            };
        }
        let asks = json!([
            {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 1}},
            {"jsonrpc": "2.0", "id": "s2", "method": "elicitation/create", "params": {"message": "?", "requestedSchema": {"type": "object"}}},
            {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "hi"}}
        ]);
        sse_answer(&[
            event(asks.to_string().as_bytes()),
            event(json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}).to_string().as_bytes()),
        ])
    }))
    .await;
    let gw = gateway(up, "[noask]").await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{}}}"#;
    let (_, _, body) = send(&gw, call, &[]).await;
    assert!(
        !body.contains("sampling/createMessage") && !body.contains("elicitation/create"),
        "refused server requests reached the client: {body}"
    );
    assert!(
        body.contains("notifications/message"),
        "the notification in the batch passes: {body}"
    );
    assert!(
        body.contains(r#""id":1"#),
        "the final answer passes: {body}"
    );
    // The server was answered for each refused request, on the client's behalf.
    let refused: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.body.get("error").is_some())
        .map(|a| a.body["id"].clone())
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.contains(&json!("s1")) && refused.contains(&json!("s2")));
    // And each refusal is a decision in the audit trail (schema-valid), like every other decision.
    let dir = gw.stop().await;
    let audit = dir.path().join("audit");
    crate::audit_support::assert_schema_valid(&audit);
    let decided: Vec<Value> = crate::audit_support::records(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["data"]["direction"] == "server_to_client")
        .map(|r| r["data"].clone())
        .collect();
    assert_eq!(decided.len(), 2, "{decided:?}");
    for d in &decided {
        assert_eq!(d["decision"], "deny", "{d}");
        assert!(
            d["reason"]
                .as_str()
                .unwrap()
                .starts_with("noask: server-to-client"),
            "{d}"
        );
        assert_eq!(d["policies"][0]["name"], "noask");
    }
    let methods: Vec<&str> = decided
        .iter()
        .map(|d| d["method"].as_str().unwrap())
        .collect();
    assert!(methods.contains(&"sampling/createMessage") && methods.contains(&"elicitation/create"));
}

/// SSE events an SDK client would read (or that hide their content from a lax filter) but the gateway cannot
/// read strictly: each is withheld, the waiting request gets a JSON-RPC error, the stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_the_gateway_cannot_read_are_never_passed() {
    let listed = listing(json!(1)).to_string();
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":{}"x"{}, "t": {}}}}}"#,
        "[".repeat(200),
        "]".repeat(200),
        tools()
    );
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "NaN",
            vec![event(
                listed
                    .replace("\"result\"", "\"n\":NaN,\"result\"")
                    .as_bytes(),
            )],
        ),
        (
            "lone surrogate",
            vec![event(
                listed
                    .replace("search_docs", "search_docs\\ud800")
                    .as_bytes(),
            )],
        ),
        (
            "duplicate key",
            vec![event(
                listed
                    .replace("\"result\"", "\"id\":1,\"result\"")
                    .as_bytes(),
            )],
        ),
        ("too deep", vec![event(deep.as_bytes())]),
        (
            "split across events",
            vec![
                event(&listed.as_bytes()[..40]),
                event(&listed.as_bytes()[40..]),
            ],
        ),
        (
            "not UTF-8",
            vec![event(&[listed.as_bytes(), b"\xff"].concat())],
        ),
        (
            "BOM inside the data",
            vec![event(&[b"\xEF\xBB\xBF", listed.as_bytes()].concat())],
        ),
    ];
    for (name, events) in cases {
        let (up, _) = scripted(Arc::new(move |_| sse_answer(&events))).await;
        let gw = gateway(up, "[allow]").await;
        let (status, _, body) = send(&gw, LIST, &[]).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert!(
            !body.contains("delete_customer"),
            "{name}: an unreadable event was passed: {body}"
        );
        let data = body
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("{name}: no event: {body}"));
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["id"], 1, "{name}: {v}");
        assert_eq!(v["error"]["code"], -32003, "{name}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot read"),
            "{name}: {v}"
        );
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_byte_order_mark_at_stream_start_does_not_hide_a_listing() {
    let (up, _) = scripted(Arc::new(|_| {
        sse_answer(&[[
            b"\xEF\xBB\xBF".to_vec(),
            event(listing(json!(1)).to_string().as_bytes()),
        ]
        .concat()])
    }))
    .await;
    let gw = gateway(up, "[allow]").await;
    let (_, _, body) = send(&gw, LIST, &[]).await;
    assert_hidden(&body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_the_gateway_cannot_read_are_refused() {
    let listed = listing(json!(1)).to_string();
    let cases: Vec<(&str, Vec<u8>, &'static str)> = vec![
        (
            "NaN",
            listed
                .replace("\"result\"", "\"n\":NaN,\"result\"")
                .into_bytes(),
            "application/json",
        ),
        (
            "BOM",
            [b"\xEF\xBB\xBF", listed.as_bytes()].concat(),
            "application/json",
        ),
        (
            "duplicate key",
            listed
                .replace("\"result\"", "\"id\":1,\"result\"")
                .into_bytes(),
            "application/json",
        ),
        (
            "JSON without a JSON content type",
            listed
                .replace("\"result\"", "\"n\":NaN,\"result\"")
                .into_bytes(),
            "text/plain",
        ),
    ];
    for (name, body, content_type) in cases {
        let body = Arc::new(body);
        let (up, _) = scripted(Arc::new(move |_| Canned {
            status: 200,
            content_type,
            extra: vec![],
            body: body.to_vec(),
        }))
        .await;
        let gw = gateway(up, "[allow]").await;
        let (status, _, body) = send(&gw, LIST, &[]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{name}: {body}");
        assert!(!body.contains("delete_customer"), "{name}: {body}");
        assert!(body.contains("cannot read"), "{name}: {body}");
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_answers_are_refused_and_accept_encoding_is_not_forwarded() {
    let (up, seen) = scripted(Arc::new(|_| Canned {
        extra: vec![("content-encoding", "gzip")],
        ..json_answer(listing(json!(1)))
    }))
    .await;
    let gw = gateway(up, "[allow]").await;
    let (status, _, body) = send(&gw, LIST, &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(!body.contains("delete_customer"), "{body}");
    let asked = seen.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|a| a.headers.get("accept-encoding").is_none()),
        "the client's Accept-Encoding reached the upstream"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_tools_call_arguments_are_validated_like_single_calls() {
    let (up, seen) = scripted(Arc::new(|a: &Asked| {
        if a.body.get("method").and_then(Value::as_str) == Some("tools/list") {
            return json_answer(listing(a.body["id"].clone()));
        }
        json_answer(json!([{"jsonrpc": "2.0", "id": 1, "result": {"content": []}}]))
    }))
    .await;
    let gw = gateway(up, "[allow]").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"query": "ok"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"query": 7}}}
    ]);
    let (status, _, body) = send(&gw, &batch.to_string(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["id"], 1, "{v}");
    assert!(
        v[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another call in this batch has invalid arguments")
    );
    assert_eq!(v[1]["id"], 2);
    assert_eq!(v[1]["result"]["isError"], true, "{v}");
    assert!(
        v[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("/query"),
        "{v}"
    );
    let calls = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.body.is_array())
        .count();
    assert_eq!(calls, 0, "an invalid batch reached the upstream");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_resources_templates_and_prompts_vanish_from_every_listing() {
    let (up, _) = scripted(Arc::new(|a: &Asked| {
        let id = a.body["id"].clone();
        match a.body["method"].as_str().unwrap_or("") {
            "resources/list" => json_answer(json!({"jsonrpc": "2.0", "id": id, "result": {"resources": [
                {"uri": "file:///docs/a.md", "name": "a"}, {"uri": "file:///etc/passwd", "name": "passwd"}]}})),
            "resources/templates/list" => sse_answer(&[event(json!({"jsonrpc": "2.0", "id": id, "result": {"resourceTemplates": [
                {"uriTemplate": "file:///docs/{name}", "name": "docs"}, {"uriTemplate": "file:///etc/{name}", "name": "etc"}]}}).to_string().as_bytes())]),
            _ => json_answer(json!([{"jsonrpc": "2.0", "id": id, "result": {"prompts": [
                {"name": "summarize_doc"}, {"name": "leak_all", "arguments": [{"name": "x"}]}]}}])),
        }
    }))
    .await;
    let gw = gateway(up, "[rp]").await;
    let (_, _, body) = send(
        &gw,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#,
        &[],
    )
    .await;
    assert!(
        body.contains("file:///docs/a.md") && !body.contains("passwd"),
        "{body}"
    );
    let (_, _, body) = send(
        &gw,
        r#"{"jsonrpc":"2.0","id":2,"method":"resources/templates/list"}"#,
        &[],
    )
    .await;
    assert!(
        body.contains("file:///docs/{name}") && !body.contains("file:///etc/"),
        "{body}"
    );
    let (_, _, body) = send(
        &gw,
        r#"[{"jsonrpc":"2.0","id":3,"method":"prompts/list"}]"#,
        &[],
    )
    .await;
    assert!(
        body.contains("summarize_doc") && !body.contains("leak_all"),
        "{body}"
    );
    // Modern: the filtered listing is marked private.
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "resources/list"),
    ];
    let (_, _, body) = send(
        &gw,
        r#"{"jsonrpc":"2.0","id":4,"method":"resources/list"}"#,
        &modern,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["cacheScope"], "private", "{v}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_hidden_resource_or_getting_a_hidden_prompt_is_answered_as_nonexistent() {
    let (up, seen) = scripted(Arc::new(|a: &Asked| {
        json_answer(json!({"jsonrpc": "2.0", "id": a.body["id"], "result": {"contents": [], "messages": []}}))
    }))
    .await;
    let gw = gateway(up, "[rp]").await;
    let read = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#;
    let (status, _, body) = send(&gw, read, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32002, "{v}");
    assert_eq!(
        v["error"]["message"],
        "Resource not found: file:///etc/passwd"
    );
    let get = r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"leak_all"}}"#;
    let (_, _, body) = send(&gw, get, &[]).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(v["error"]["message"], "Unknown prompt: leak_all");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a hidden read or get reached the upstream"
    );
    // Allowed ones pass.
    let ok = r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///docs/a.md"}}"#;
    let (_, _, body) = send(&gw, ok, &[]).await;
    assert!(body.contains("\"contents\""), "{body}");
    gw.stop().await;
}
