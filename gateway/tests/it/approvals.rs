//! The approval workflow end to end, in-process: real TLS, the sample MCP upstream (which records the calls
//! it receives), the real `mutation_guard` policy component asking for approval of `delete_*`, the SQLite
//! store in the test's directory, and approvers acting through the admin listener's HTTP API.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_gateway::demo::upstream;
use serde_json::{Value, json};

use crate::common;
use common::{TD, wasm};

pub(crate) const ALICE: &str = "alice-token-0123456789";
pub(crate) const BOB: &str = "bob-token-0123456789ab";

fn sha(t: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(t.as_bytes()))
}

pub(crate) struct Gw {
    pub(crate) inner: common::Gw,
    pub(crate) admin: std::net::SocketAddr,
    pub(crate) seen: Arc<upstream::Seen>,
}

/// A gateway whose `crm` route asks for approval of `delete_*`, with `approvals:` settings `extra`.
pub(crate) async fn start(approvals: &str) -> Gw {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    start_on(&up, approvals).await
}

/// [`start`] in front of the upstream `up` (several gateways — replicas — can share one).
pub(crate) async fn start_on(up: &upstream::Sample, approvals: &str) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    let yaml = format!(
        "listen_addr: 127.0.0.1:0\nshutdown_timeout: 2s\ntunnel_domain: {TD}\ntls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key}}\n\
         upstream: {{allowed_ips: [127.0.0.0/8]}}\naudit: {{dir: {d}/audit, redact: full}}\nadmin: {{listen: '127.0.0.1:0'}}\n\
         policies:\n  cache_dir: {d}/cache\n  modules:\n    guard: {{ path: {w}, settings: {{ require_approval: ['delete_*'] }} }}\n\
         routes:\n  crm: {{ upstream: 'http://{up}', policies: [guard] }}\n\
         approvals:\n  approvers:\n    - {{name: alice, token_sha256: {a}}}\n    - {{name: bob, token_sha256: {b}}}\n{approvals}\n",
        d = dir.path().display(),
        w = wasm("mutation_guard").display(),
        up = up.addr,
        a = sha(ALICE),
        b = sha(BOB),
    );
    let config = mcp_gateway::config::from_yaml(&yaml, Path::new("test.yaml")).unwrap();
    let server = mcp_gateway::server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let admin = server.admin_addr().expect("admin listener");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Gw {
        inner: common::Gw {
            dir,
            addr,
            stop: Some(tx),
            task,
        },
        admin,
        seen: up.seen.clone(),
    }
}

pub(crate) fn delete(id: u64, customer: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "delete_customer", "arguments": {"id": customer}}})
}

/// A `tools/call` POST that accepts only JSON (the plain hold), parsed.
pub(crate) async fn call_json(gw: &Gw, body: &Value) -> Value {
    let req = Request::post("/mcp")
        .header("host", format!("crm.{TD}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = gw.inner.client("crm").send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// A pending request whose caller is `caller`, written to the store directly (as another replica would).
pub(crate) async fn pending_request(gw: &Gw, id: &str, caller: &str) {
    use mcp_gateway::approvals::store::{ApprovalStore, GrantKey, NewApproval};
    let store = mcp_gateway::approvals::sqlite::SqliteStore::open(
        &gw.inner.dir.path().join("approvals.db"),
    )
    .unwrap();
    let now = mcp_gateway::approvals::now_ms();
    store
        .create(NewApproval {
            id: id.into(),
            request_id: format!("r-{id}"),
            key: GrantKey {
                route: "crm".into(),
                tool: "delete_customer".into(),
                args_digest: "00".repeat(32),
                principal: Some(caller.into()),
            },
            arguments: None,
            reason: "deletes data".into(),
            policy: "guard".into(),
            created_at: now,
            expires_at: now + 60_000,
        })
        .await
        .unwrap();
}

pub(crate) fn text(v: &Value) -> String {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The approval id an `isError` text names.
pub(crate) fn approval_id(text: &str) -> String {
    let i = text
        .find("apr_")
        .unwrap_or_else(|| panic!("no approval id in {text}"));
    text[i..i + 16].to_owned()
}

/// One admin API call as `token`: status and JSON body.
pub(crate) async fn admin(
    gw: &Gw,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.admin));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Waits (bounded) until exactly `n` requests are pending; their ids.
pub(crate) async fn pending(gw: &Gw, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = admin(gw, "GET", "/approvals?status=pending", Some(BOB), None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let ids: Vec<String> = v["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() == n {
            return ids;
        }
        assert!(Instant::now() < until, "expected {n} pending, have {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn upstream_calls(gw: &Gw) -> Vec<String> {
    gw.seen.tool_calls.lock().unwrap().clone()
}

/// Every audit record (stopping the gateway first), each checked against the documented schema.
pub(crate) async fn audit_records(gw: Gw) -> Vec<Value> {
    let dir = gw.inner.stop().await;
    let audit = dir.path().join("audit");
    crate::audit_support::assert_schema_valid(&audit);
    crate::audit_support::records(&audit)
}

pub(crate) fn kinds_for<'a>(recs: &'a [Value], approval: &str) -> Vec<&'a str> {
    recs.iter()
        .filter(|r| r["data"]["approval_id"] == approval)
        .map(|r| r["kind"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_then_approved_call_reaches_the_upstream_exactly_once() {
    let gw = Arc::new(start("  wait: 20s").await);
    let g = gw.clone();
    let held = tokio::spawn(async move { call_json(&g, &delete(7, "c-42")).await });
    let ids = pending(&gw, 1).await;
    assert!(upstream_calls(&gw).is_empty(), "forwarded before approval");
    let (status, shown) = admin(
        &gw,
        "GET",
        &format!("/approvals/{}", ids[0]),
        Some(BOB),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (shown["tool"].as_str(), shown["route"].as_str()),
        (Some("delete_customer"), Some("crm"))
    );
    assert_eq!(
        shown["arguments"],
        json!({"id": "c-42"}),
        "redact: full shows the arguments"
    );
    let (status, v) = admin(
        &gw,
        "POST",
        &format!("/approvals/{}/approve", ids[0]),
        Some(ALICE),
        Some(json!({"comment": "ticket 1234"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let answer = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["id"], 7);
    assert!(answer["result"]["isError"] != true, "{answer}");
    assert_eq!(text(&answer), "customer c-42 deleted");
    assert_eq!(upstream_calls(&gw), ["delete_customer"]);
    // Deciding again is a conflict; the queue is empty.
    let (status, _) = admin(
        &gw,
        "POST",
        &format!("/approvals/{}/deny", ids[0]),
        Some(BOB),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    pending(&gw, 0).await;
    let id = ids[0].clone();
    let gw = Arc::into_inner(gw).unwrap();
    let recs = audit_records(gw).await;
    assert_eq!(
        kinds_for(&recs, &id),
        [
            "decision",
            "approval_requested",
            "approval_approved",
            "approval_grant_used",
            "decision"
        ],
        "{recs:#?}"
    );
    let allowed = recs
        .iter()
        .find(|r| {
            r["kind"] == "decision"
                && r["data"]["approval_id"] == id.as_str()
                && r["data"]["decision"] == "allow"
        })
        .unwrap();
    assert!(
        allowed["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("approved by alice"),
        "{allowed}"
    );
    let approved = recs
        .iter()
        .find(|r| r["kind"] == "approval_approved")
        .unwrap();
    assert_eq!(approved["data"]["approver"], "alice");
    assert_eq!(approved["data"]["comment"], "ticket 1234");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_call_never_reaches_the_upstream() {
    let gw = Arc::new(start("  wait: 20s").await);
    let g = gw.clone();
    let held = tokio::spawn(async move { call_json(&g, &delete(1, "c-1")).await });
    let ids = pending(&gw, 1).await;
    let (status, _) = admin(
        &gw,
        "POST",
        &format!("/approvals/{}/deny", ids[0]),
        Some(BOB),
        Some(json!({"comment": "not during the audit"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let t = text(&answer);
    assert!(
        t.contains(&ids[0]) && t.contains("'bob'") && t.contains("not during the audit"),
        "{t}"
    );
    assert!(upstream_calls(&gw).is_empty());
    // A denial leaves no grant: the identical call is held again (and times out here: wait is long, so
    // deny the new one too).
    let g = gw.clone();
    let again = tokio::spawn(async move { call_json(&g, &delete(2, "c-1")).await });
    let ids2 = pending(&gw, 1).await;
    assert_ne!(ids2, ids);
    admin(
        &gw,
        "POST",
        &format!("/approvals/{}/deny", ids2[0]),
        Some(ALICE),
        None,
    )
    .await;
    let answer = again.await.unwrap();
    assert_eq!(answer["result"]["isError"], true);
    assert!(upstream_calls(&gw).is_empty());
    let gw = Arc::into_inner(gw).unwrap();
    let recs = audit_records(gw).await;
    assert_eq!(
        kinds_for(&recs, &ids[0]),
        ["decision", "approval_requested", "approval_denied"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_runs_out_then_the_identical_retry_passes_once() {
    let gw = start("  wait: 1s").await;
    let started = Instant::now();
    let first = call_json(&gw, &delete(1, "c-9")).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "not held");
    assert_eq!(first["result"]["isError"], true, "{first}");
    let t = text(&first);
    assert!(
        t.contains("pending") && t.contains("retry the identical call"),
        "{t}"
    );
    let id = approval_id(&t);
    assert_eq!(pending(&gw, 1).await, std::slice::from_ref(&id));
    assert!(upstream_calls(&gw).is_empty());

    let (status, _) = admin(
        &gw,
        "POST",
        &format!("/approvals/{id}/approve"),
        Some(ALICE),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Changed arguments do not match the grant: held (and answered pending) under a new id.
    let other = call_json(&gw, &delete(2, "c-10")).await;
    assert_eq!(other["result"]["isError"], true);
    assert_ne!(approval_id(&text(&other)), id);
    assert!(upstream_calls(&gw).is_empty());
    // The identical retry passes at once, once.
    let started = Instant::now();
    let retry = call_json(&gw, &delete(3, "c-9")).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the retry was held"
    );
    assert_eq!(text(&retry), "customer c-9 deleted", "{retry}");
    assert_eq!(upstream_calls(&gw), ["delete_customer"]);
    // The grant was single-use: a second identical retry is held again.
    let again = call_json(&gw, &delete(4, "c-9")).await;
    assert_eq!(again["result"]["isError"], true, "{again}");
    let again_id = approval_id(&text(&again));
    assert_ne!(again_id, id);
    assert_eq!(upstream_calls(&gw), ["delete_customer"]);
    let recs = audit_records(gw).await;
    assert_eq!(
        kinds_for(&recs, &id),
        [
            "decision",
            "approval_requested",
            "approval_approved",
            "approval_grant_used",
            "decision"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_client_gets_keepalives_and_progress_while_held_then_the_answer() {
    let gw = start("  wait: 20s\n  keepalive: 150ms").await;
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "delete_customer", "arguments": {"id": "c-5"}, "_meta": {"progressToken": "tok-1"}}});
    let resp = gw
        .inner
        .client("crm")
        .send(mcp_gateway::demo::client::post(
            &format!("crm.{TD}"),
            "/mcp",
            body.to_string(),
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    // Read what arrives while the call is held: a comment first, then progress notifications.
    let until = Instant::now() + Duration::from_secs(10);
    while seen.matches("notifications/progress").count() < 3 {
        assert!(Instant::now() < until, "no progress while held: {seen}");
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(d) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&d));
        }
    }
    assert!(seen.starts_with(": held for approval apr_"), "{seen}");
    assert!(seen.contains("\"progressToken\":\"tok-1\""), "{seen}");
    assert!(upstream_calls(&gw).is_empty());
    let id = approval_id(&seen);
    let (status, _) = admin(
        &gw,
        "POST",
        &format!("/approvals/{id}/approve"),
        Some(BOB),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    let last = rest
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["id"] == 5)
        .unwrap_or_else(|| panic!("no final answer in {rest}"));
    assert_eq!(text(&last), "customer c-5 deleted");
    assert_eq!(upstream_calls(&gw), ["delete_customer"]);
    gw.inner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_authenticate_and_cannot_approve_their_own_call() {
    let gw = start("  wait: 1s").await;
    // Without a token, or with a wrong one: 401.
    let (s, _) = admin(&gw, "GET", "/approvals", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = admin(&gw, "GET", "/approvals", Some("nope-nope-nope-nope"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A request whose caller is alice (as the identity stage will record it), written by another process
    // on the same database, like a second replica would.
    pending_request(&gw, "apr_selfapproval", "alice").await;
    let (s, v) = admin(
        &gw,
        "POST",
        "/approvals/apr_selfapproval/approve",
        Some(ALICE),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("separation of duties")
    );
    let (s, v) = admin(&gw, "GET", "/approvals/apr_selfapproval", Some(ALICE), None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("pending")));
    let (s, v) = admin(
        &gw,
        "POST",
        "/approvals/apr_selfapproval/approve",
        Some(BOB),
        None,
    )
    .await;
    assert_eq!(
        (s, v["approver"].as_str()),
        (StatusCode::OK, Some("bob")),
        "{v}"
    );
    let (s, _) = admin(&gw, "GET", "/approvals/apr_doesnotexist", Some(BOB), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    gw.inner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_expire_and_are_recorded() {
    let gw = start("  wait: 1s\n  expire: 2s").await;
    let first = call_json(&gw, &delete(1, "c-3")).await;
    let id = approval_id(&text(&first));
    // The sweeper runs every second: within a few, the request is expired and cannot be approved.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = admin(&gw, "GET", &format!("/approvals/{id}"), Some(BOB), None).await;
        if v["status"] == "expired" {
            break;
        }
        assert!(Instant::now() < until, "not expired: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v) = admin(
        &gw,
        "POST",
        &format!("/approvals/{id}/approve"),
        Some(BOB),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, metrics) = {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let resp = client
            .get(format!("http://{}/metrics", gw.admin).parse().unwrap())
            .await
            .unwrap();
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        ((), String::from_utf8_lossy(&b).into_owned())
    };
    // The gauge is process-wide and other tests of this binary hold requests in parallel: only its
    // presence is checked here; what it counts is checked through the API (nothing pending on this store).
    assert!(
        metrics.contains("mcp_gateway_approvals_pending "),
        "{metrics}"
    );
    let (s, v) = admin(&gw, "GET", "/approvals?status=pending", Some(BOB), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["approvals"].as_array().map(Vec::len), Some(0), "{v}");
    assert!(upstream_calls(&gw).is_empty());
    let recs = audit_records(gw).await;
    assert_eq!(
        kinds_for(&recs, &id),
        ["decision", "approval_requested", "approval_expired"]
    );
}
