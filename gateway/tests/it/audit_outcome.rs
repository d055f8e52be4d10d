//! Outcome records, through the real listener and the sample upstream: written when the answer's body has
//! ended, with the bytes the client got and `isError` of a `tools/call` answer (JSON or SSE), and with an
//! error when the client goes away mid-stream.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use mcp_gateway::demo::client::post;
use mcp_gateway::demo::upstream;
use serde_json::{Value, json};

use common::{Gw, TD, rpc};

/// The `data` of every outcome record, by request id.
fn outcomes(dir: &Path) -> Vec<Value> {
    crate::audit_support::records(dir)
        .into_iter()
        .filter(|r| r["kind"] == "outcome")
        .map(|r| r["data"].clone())
        .collect()
}

fn outcome_of<'a>(all: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<_> = all.iter().filter(|o| o["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "one outcome for {id}: {all:?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_carry_bytes_and_is_error_once_the_answer_has_ended() {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let c = gw.client("crm");
    let host = format!("crm.{TD}");
    // (request, Accept) → (request id, body bytes the client received)
    let mut sent = Vec::new();
    for (call, accept) in [
        // JSON answers: a result without isError, and an isError result (an unknown tool).
        (
            json!({"name": "get_customer", "arguments": {"id": "c1"}}),
            "application/json, text/event-stream",
        ),
        (
            json!({"name": "no_such_tool", "arguments": {}}),
            "application/json, text/event-stream",
        ),
        // The same isError result on an SSE stream (a client listing SSE first gets one).
        (
            json!({"name": "no_such_tool", "arguments": {}}),
            "text/event-stream, application/json",
        ),
        // Progress events, then the result: isError is read from the response event.
        (
            json!({"name": "export_report", "arguments": {"steps": 2}, "_meta": {"progressToken": 1}}),
            "application/json, text/event-stream",
        ),
    ] {
        let resp = c
            .send(post(
                &host,
                "/mcp",
                rpc(1, "tools/call", call),
                &[("accept", accept)],
            ))
            .await
            .unwrap();
        let id = resp.headers()["x-gateway-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        sent.push((id, body.len() as u64));
    }
    // A `ping`: not a tools/call, so no is_error.
    let resp = c
        .send(post(&host, "/mcp", rpc(2, "ping", json!({})), &[]))
        .await
        .unwrap();
    let ping_id = resp.headers()["x-gateway-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let ping_len = resp.into_body().collect().await.unwrap().to_bytes().len() as u64;

    // A client that goes away after the first progress event of a long stream.
    let resp = c
        .send(post(
            &host,
            "/mcp",
            rpc(
                3,
                "tools/call",
                json!({"name": "export_report", "arguments": {"steps": 20}, "_meta": {"progressToken": 2}}),
            ),
            &[],
        ))
        .await
        .unwrap();
    let gone_id = resp.headers()["x-gateway-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    drop(body);
    drop(c);

    // The abandoned stream's outcome is written once the gateway notices (its next event fails to send).
    let dir = gw.dir.path().join("audit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outcomes(&dir)
        .iter()
        .any(|o| o["request_id"] == gone_id.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "no outcome for the abandoned stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _keep = gw.stop().await;
    let all = outcomes(&dir);

    let expect_is_error = [Some(false), Some(true), Some(true), Some(false)];
    for ((id, len), is_error) in sent.iter().zip(expect_is_error) {
        let o = outcome_of(&all, id);
        assert_eq!(o["status"], 200, "{o}");
        assert_eq!(o["bytes"], *len, "bytes the client received: {o}");
        assert_eq!(o["is_error"].as_bool(), is_error, "{o}");
        assert!(o.get("error").is_none(), "{o}");
        assert!(
            o["duration_us"].as_u64().unwrap() >= o["latency_us"].as_u64().unwrap(),
            "{o}"
        );
    }
    // The progress stream took two 300 ms steps after its headers.
    let stream = outcome_of(&all, &sent[3].0);
    assert!(
        stream["duration_us"].as_u64().unwrap() - stream["latency_us"].as_u64().unwrap() >= 500_000,
        "{stream}"
    );
    let ping = outcome_of(&all, &ping_id);
    assert_eq!(ping["bytes"], ping_len);
    assert!(ping.get("is_error").is_none(), "{ping}");
    let gone = outcome_of(&all, &gone_id);
    assert!(
        gone["error"]
            .as_str()
            .is_some_and(|e| e.contains("client went away")),
        "{gone}"
    );
    assert!(gone.get("is_error").is_none(), "{gone}");
}
