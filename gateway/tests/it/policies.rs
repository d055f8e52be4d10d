//! The policy engine end to end, in-process: real TLS, the sample MCP upstream, and the real policy
//! components built from `policies/` (run `bash policies/build.sh` first; `tests/run.sh` does).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use http_body_util::BodyExt;
use mcp_gateway::demo::client::post;
use mcp_gateway::demo::upstream;
use serde_json::{Value, json};

use crate::common;
use common::{Gw, TD, call, wasm};

async fn bind(policies: &str, routes: &str) -> anyhow::Result<Gw> {
    let dir = tempfile::tempdir().unwrap();
    mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    let yaml = format!(
        "listen_addr: 127.0.0.1:0\nshutdown_timeout: 2s\ntunnel_domain: {TD}\ntls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key}}\n\
         upstream: {{allowed_ips: [127.0.0.0/8]}}\naudit: {{dir: {d}/audit}}\npolicies:\n  cache_dir: {d}/cache\n{policies}\nroutes:\n{routes}\n",
        d = dir.path().display()
    );
    let config = mcp_gateway::config::from_yaml(&yaml, Path::new("test.yaml")).unwrap();
    let server = mcp_gateway::server::Server::bind(config).await?;
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Ok(Gw {
        dir,
        addr,
        stop: Some(tx),
        task,
    })
}

/// One JSON-RPC POST through the gateway on `route`; the status and the parsed JSON body.
fn tool_call(id: u64, name: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

fn list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}})
}

fn text(v: &Value) -> &str {
    v["result"]["content"][0]["text"].as_str().unwrap_or("")
}

async fn upstream_route(name: &str, chain: &str) -> String {
    sample_route(name, chain).await.0
}

/// A route to a fresh sample upstream, and what that upstream sees.
async fn sample_route(name: &str, chain: &str) -> (String, Arc<upstream::Seen>) {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (
        format!(
            "  {name}: {{ upstream: 'http://{}', policies: {chain} }}\n",
            up.addr
        ),
        up.seen,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_hides_tools_and_refuses_hidden_calls() {
    let policies = format!(
        "  modules:\n    allow: {{ path: {}, settings: {{ allow: [search_docs, 'get_*'] }} }}",
        wasm("tool_allowlist").display()
    );
    let gw = bind(&policies, &upstream_route("crm", "[allow]").await)
        .await
        .unwrap();
    // A hidden tool is refused even though the client never listed.
    let (status, v) = call(
        &gw,
        "crm",
        tool_call(1, "delete_customer", json!({"id": "c-1"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(v["error"]["message"], "Unknown tool: delete_customer");
    let (_, v) = call(&gw, "crm", list(2), &[]).await;
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["search_docs", "get_customer"]);
    assert!(
        v["result"].get("cacheScope").is_none(),
        "legacy results are not given modern fields"
    );
    let (status, v) = call(
        &gw,
        "crm",
        tool_call(3, "search_docs", json!({"query": "refunds"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text(&v).contains("results for \"refunds\""), "{v}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_tools_list_is_filtered_and_marked_private_as_json_and_as_sse() {
    let policies = format!(
        "  modules:\n    allow: {{ path: {}, settings: {{ allow: [search_docs] }} }}",
        wasm("tool_allowlist").display()
    );
    let gw = bind(&policies, &upstream_route("crm", "[allow]").await)
        .await
        .unwrap();
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let (status, v) = call(&gw, "crm", list(1), &modern).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
    assert_eq!(v["result"]["cacheScope"], "private");

    // The same listing as an SSE stream: rewritten event by event, other events untouched.
    let mut req = post(&format!("crm.{TD}"), "/mcp", list(2).to_string(), &modern);
    req.headers_mut().insert(
        "accept",
        "text/event-stream, application/json".parse().unwrap(),
    );
    let resp = gw.client("crm").send(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        body.starts_with(": sample upstream\n\n"),
        "comment event passed through: {body:?}"
    );
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data event");
    let v: Value = serde_json::from_str(data).unwrap();
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["search_docs"], "{body}");
    assert_eq!(v["result"]["cacheScope"], "private");
    assert!(
        body.contains("event: message\n"),
        "event type kept: {body:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutation_guard_denies_with_is_error_using_fetched_annotations() {
    let policies = format!(
        "  modules:\n    guard: {{ path: {}, settings: {{ deny: ['drop_*'], destructive: deny }} }}",
        wasm("mutation_guard").display()
    );
    let gw = bind(&policies, &upstream_route("crm", "[guard]").await)
        .await
        .unwrap();
    // No tools/list yet: the gateway fetches the catalogue itself, so get_customer's readOnlyHint is known
    // (an unknown tool would count as destructive and be denied).
    let (status, v) = call(
        &gw,
        "crm",
        tool_call(1, "get_customer", json!({"id": "c-7"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["result"]["structuredContent"]["id"], "c-7", "{v}");
    let (status, v) = call(
        &gw,
        "crm",
        tool_call(2, "delete_customer", json!({"id": "c-1"})),
        &[],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a policy decision is never an HTTP error"
    );
    assert_eq!(v["result"]["isError"], true, "{v}");
    let t = text(&v);
    assert!(
        t.starts_with("Blocked by policy 'guard':")
            && t.contains("delete_customer")
            && t.contains("Gateway request id:"),
        "{t}"
    );
    // Modern era: same denial, with resultType.
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "delete_customer"),
    ];
    let (_, v) = call(
        &gw,
        "crm",
        tool_call(3, "delete_customer", json!({"id": "c-1"})),
        &modern,
    )
    .await;
    assert_eq!(
        (
            v["result"]["isError"].as_bool(),
            v["result"]["resultType"].as_str()
        ),
        (Some(true), Some("complete")),
        "{v}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_required_is_reported_and_not_forwarded() {
    let policies = format!(
        "  modules:\n    guard: {{ path: {}, settings: {{ require_approval: ['delete_*'] }} }}",
        wasm("mutation_guard").display()
    );
    let (route, seen) = sample_route("crm", "[guard]").await;
    let gw = bind(&policies, &route).await.unwrap();
    let (_, v) = call(
        &gw,
        "crm",
        tool_call(1, "delete_customer", json!({"id": "c-1"})),
        &[],
    )
    .await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(
        text(&v).starts_with("Approval required by policy 'guard'"),
        "{v}"
    );
    // Only the gateway's own catalogue fetch reached the upstream, not the call.
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "exactly the catalogue fetch"
    );
    assert!(
        seen.tool_calls.lock().unwrap().is_empty(),
        "the refused call reached the upstream"
    );
    let dir = gw.stop().await;
    // The refusal is in the audit trail, with the policy that asked and its reason.
    let log: String = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    let rec = log
        .lines()
        .find(|l| l.contains("\"decision\":\"require_approval\""))
        .expect("no require_approval decision record");
    assert!(
        rec.contains("\"tool\":\"delete_customer\"")
            && rec.contains("\"name\":\"guard\"")
            && rec.contains("delete_*"),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_are_answered_before_policies_and_not_forwarded() {
    let policies = format!(
        "  modules:\n    allow: {{ path: {}, settings: {{ allow: ['*'] }} }}",
        wasm("tool_allowlist").display()
    );
    let gw = bind(&policies, &upstream_route("crm", "[allow]").await)
        .await
        .unwrap();
    let (_, _) = call(&gw, "crm", list(1), &[]).await;
    let (status, v) = call(
        &gw,
        "crm",
        tool_call(2, "search_docs", json!({"query": ""})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(
        text(&v).contains("Invalid arguments for tool 'search_docs'")
            && text(&v).contains("/query"),
        "{v}"
    );
    let (_, v) = call(&gw, "crm", tool_call(3, "search_docs", json!({})), &[]).await;
    assert!(
        text(&v).contains("query"),
        "missing required property named: {v}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_logs_but_allows() {
    let policies = format!(
        "  modules:\n    guard: {{ path: {}, mode: monitor, settings: {{ destructive: deny }} }}",
        wasm("mutation_guard").display()
    );
    let gw = bind(&policies, &upstream_route("crm", "[guard]").await)
        .await
        .unwrap();
    let (_, v) = call(
        &gw,
        "crm",
        tool_call(1, "delete_customer", json!({"id": "c-9"})),
        &[],
    )
    .await;
    assert_eq!(text(&v), "customer c-9 deleted", "{v}");
    let would = &mcp_gateway::metrics::COUNTERS.monitor_would[0];
    assert!(
        would.load(Ordering::SeqCst) >= 1,
        "would-be denial not counted"
    );
    let dir = gw.stop().await;
    // The decision record says what the monitor policy would have decided, and `audit query --would` finds it.
    let audit = dir.path().join("audit");
    crate::audit_support::assert_schema_valid(&audit);
    let d = crate::audit_support::records(&audit)
        .into_iter()
        .find(|r| r["kind"] == "decision" && r["data"]["tool"] == "delete_customer")
        .expect("a decision record")["data"]
        .clone();
    assert_eq!(
        (d["decision"].as_str(), d["would"].as_str()),
        (Some("allow"), Some("deny")),
        "{d}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .args(["audit", "query"])
        .arg(&audit)
        .args(["--would", "deny", "--format", "jsonl"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("delete_customer"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_policies_fail_closed_while_another_route_keeps_serving() {
    let hostile = wasm("hostile_policy");
    let modes = [
        ("loop", "timed out"),
        ("memory", "memory limit"),
        ("panic", "panicked"),
        ("oversized", "oversized"),
    ];
    // The oversized answer (1 MiB) fits the 16 MiB memory cap, so it is the size check that refuses it.
    let mut policies = String::from("  modules:\n");
    let mut routes = upstream_route("good", "[allow]").await;
    policies.push_str(&format!(
        "    allow: {{ path: {}, settings: {{ allow: ['*'] }} }}\n",
        wasm("tool_allowlist").display()
    ));
    for (mode, _) in modes {
        // Only the endless loop should meet the deadline; the others get a generous one so that, on a loaded
        // machine, they fail the way they are meant to (memory cap, trap, size check), not by timing out.
        let timeout_ms = if mode == "loop" { 100 } else { 5000 };
        policies.push_str(&format!(
            "    {mode}: {{ path: {}, settings: {{ mode: {mode}, oversized_bytes: 1048576 }}, limits: {{ memory_mb: 16, timeout_ms: {timeout_ms} }} }}\n",
            hostile.display()
        ));
        routes.push_str(&upstream_route(mode, &format!("[{mode}]")).await);
    }
    let gw = Arc::new(bind(&policies, &routes).await.unwrap());

    // A steady stream of allowed calls on the good route, alongside the hostile ones.
    let ok = Arc::new(AtomicUsize::new(0));
    let stop_at = Instant::now() + Duration::from_secs(3);
    let good = {
        let (gw, ok) = (gw.clone(), ok.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while Instant::now() < stop_at {
                let t = Instant::now();
                let (status, v) = call(
                    &gw,
                    "good",
                    tool_call(1, "search_docs", json!({"query": "q"})),
                    &[],
                )
                .await;
                assert_eq!(status, StatusCode::OK);
                assert!(text(&v).contains("results"), "good route failed: {v}");
                worst = worst.max(t.elapsed());
                ok.fetch_add(1, Ordering::SeqCst);
            }
            worst
        })
    };
    for round in 0..3 {
        for (mode, expect) in modes {
            let (status, v) = call(
                &gw,
                mode,
                tool_call(round, "search_docs", json!({"query": "q"})),
                &[],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{mode}");
            assert_eq!(v["result"]["isError"], true, "{mode}: {v}");
            assert!(
                text(&v).contains(&format!("Blocked by policy '{mode}'"))
                    && text(&v).contains(expect),
                "{mode}: {}",
                text(&v)
            );
        }
    }
    let worst = good.await.unwrap();
    assert!(
        ok.load(Ordering::SeqCst) >= 10,
        "the good route starved: {} calls",
        ok.load(Ordering::SeqCst)
    );
    eprintln!(
        "good route: {} calls, slowest {worst:?}",
        ok.load(Ordering::SeqCst)
    );
    let failures = &mcp_gateway::metrics::COUNTERS.policy_failures;
    for kind in ["timeout", "out_of_memory", "panic", "oversized_output"] {
        let i = mcp_gateway::metrics::POLICY_FAILURE_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap();
        assert!(
            failures[i].load(Ordering::SeqCst) >= 3,
            "{kind} not counted"
        );
    }
    Arc::into_inner(gw).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_contract_does_not_allow_is_refused_and_nothing_is_forwarded() {
    // The hostile fixture's `answer_hidden` answers `hidden` to every message, bypassing the SDK. For a
    // `tools/call` that is an answer (the tool is hidden); for anything else the contract does not allow it.
    let policies = format!(
        "  modules:\n    rogue: {{ path: {}, settings: {{ mode: answer_hidden }} }}\n",
        wasm("hostile_policy").display()
    );
    let (routes, seen) = sample_route("rogue", "[rogue]").await;
    let gw = bind(&policies, &routes).await.unwrap();
    let kind = mcp_gateway::metrics::POLICY_FAILURE_KINDS
        .iter()
        .position(|k| *k == "bad_answer")
        .unwrap();
    let failures = || mcp_gateway::metrics::COUNTERS.policy_failures[kind].load(Ordering::SeqCst);
    let failures_before = failures();

    for (i, method) in ["tools/list", "ping", "resources/list"]
        .into_iter()
        .enumerate()
    {
        let (status, v) = call(
            &gw,
            "rogue",
            json!({"jsonrpc": "2.0", "id": i, "method": method, "params": {}}),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{method}: never a 4xx: {v}");
        assert_eq!(v["error"]["code"], -31001, "{method}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("Blocked by policy 'rogue'")
                && message.contains("an answer the contract does not allow")
                && message.contains("not a tools/call"),
            "{method}: {message}"
        );
    }
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        0,
        "a refused message reached the upstream"
    );
    // To a tools/call, `hidden` is a valid answer: the tool does not exist for this caller. (The gateway may
    // fetch the upstream's `tools/list` for the tool's annotations; the call itself is never forwarded.)
    let (status, v) = call(
        &gw,
        "rogue",
        tool_call(9, "search_docs", json!({"query": "q"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(v["error"]["message"], "Unknown tool: search_docs", "{v}");

    assert!(
        seen.tool_calls.lock().unwrap().is_empty(),
        "a hidden tool was called upstream"
    );
    assert!(
        failures() >= failures_before + 3,
        "bad answers not counted: {} → {}",
        failures_before,
        failures()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_that_must_not_serve_stop_the_start() {
    let route = "  crm: { upstream: 'http://127.0.0.1:9', policies: [p] }\n";
    let e = bind(
        &format!(
            "  modules:\n    p: {{ path: {} }}",
            wasm("forbidden_import").display()
        ),
        route,
    )
    .await
    .err()
    .unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains("policy `p` imports `wasi:filesystem"), "{msg}");
    let pin = "0".repeat(64);
    let e = bind(
        &format!(
            "  modules:\n    p: {{ path: {}, sha256: '{pin}' }}",
            wasm("tool_allowlist").display()
        ),
        route,
    )
    .await
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("but the config pins"), "{e:#}");
    let e = bind(
        &format!(
            "  modules:\n    p: {{ path: {}, settings: {{ alow: [x] }} }}",
            wasm("tool_allowlist").display()
        ),
        route,
    )
    .await
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("rejected its settings"), "{e:#}");
    let e = bind("  modules:\n    p: { path: /nonexistent/p.wasm }", route)
        .await
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("/nonexistent/p.wasm"), "{e:#}");
}

/// Reads an SSE response until the JSON-RPC response with `id` arrives; returns every event's data.
async fn sse_until_result(
    resp: http::Response<hyper::body::Incoming>,
    on_request: impl Fn(&Value),
) -> Vec<Value> {
    let mut body = resp.into_body();
    let mut events = Vec::new();
    let mut buf = String::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
    {
        if let Some(d) = frame.unwrap().data_ref() {
            buf.push_str(&String::from_utf8_lossy(d));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    let v: Value = serde_json::from_str(data).unwrap();
                    if v.get("method").is_some() {
                        on_request(&v);
                    }
                    events.push(v);
                }
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_to_client_requests_are_policed_on_sse_streams() {
    let policies = format!(
        "  modules:\n    noask: {{ path: {}, settings: {{ mode: deny_server_requests }} }}\n    open: {{ path: {}, settings: {{ mode: allow }} }}",
        wasm("hostile_policy").display(),
        wasm("hostile_policy").display()
    );
    let routes = format!(
        "{}{}",
        upstream_route("crm", "[noask]").await,
        upstream_route("hr", "[open]").await
    );
    let gw = Arc::new(bind(&policies, &routes).await.unwrap());
    let ask = tool_call(1, "ask_confirmation", json!({})).to_string();

    // Refused: the client never sees the elicitation; the server gets the gateway's error answer instead.
    let resp = gw
        .client("crm")
        .send(post(&format!("crm.{TD}"), "/mcp", ask.clone(), &[]))
        .await
        .unwrap();
    let events = sse_until_result(resp, |_| {
        panic!("a refused server request reached the client")
    })
    .await;
    let last = events.last().unwrap();
    let t = text(last);
    assert!(
        t.starts_with("answered: ")
            && t.contains("-31001")
            && t.contains("server-to-client `elicitation/create` is not allowed"),
        "{t}"
    );

    // Allowed: the client sees it, answers it, and the server gets the client's answer.
    let resp = gw
        .client("hr")
        .send(post(&format!("hr.{TD}"), "/mcp", ask, &[]))
        .await
        .unwrap();
    let (ask_tx, mut ask_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let answering = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let ask = ask_rx.recv().await.unwrap();
            let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"ok": true}}});
            let (status, _) = call(&gw, "hr", answer, &[]).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        })
    };
    let events = sse_until_result(resp, move |v| {
        assert_eq!(v["method"], "elicitation/create");
        ask_tx.send(v.clone()).unwrap();
    })
    .await;
    answering.await.unwrap();
    let t = text(events.last().unwrap());
    assert!(t.contains("\"accept\"") && t.contains("\"ok\":true"), "{t}");
    Arc::into_inner(gw).unwrap().stop().await;
}
