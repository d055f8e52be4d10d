//! `mcp-gateway demo`: the gateway's main job on embedded defaults, with nothing but this binary.
//!
//! It issues a throwaway CA and certificate, starts the sample MCP server, starts the gateway in front of it
//! (through the same config loader a deployment uses), drives calls of both protocol eras through it over
//! real TLS, and prints what happened. Later stages (policies, approvals, audit) extend the same script.

pub mod client;
pub mod upstream;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use client::{PinnedClient, post};

const TUNNEL_DOMAIN: &str = "tunnel.demo.test";
const HOST: &str = "crm.tunnel.demo.test";

pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "mcp-gateway-demo-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = run_in(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &Path) -> anyhow::Result<()> {
    println!(
        "mcp-gateway demo — everything below runs on 127.0.0.1 and is thrown away at the end\n"
    );
    crate::certs::issue(TUNNEL_DOMAIN, crate::certs::KeyKind::EcdsaP256)?.write_to(dir)?;
    println!(
        "  • throwaway CA and certificate for *.{TUNNEL_DOMAIN} in {}",
        dir.display()
    );

    let sample = upstream::spawn("127.0.0.1:0".parse()?).await?;
    let (up_addr, seen) = (sample.addr, sample.seen.clone());
    println!(
        "  • sample MCP server (tools: {}) on http://{up_addr}/mcp",
        upstream::tool_names().join(", ")
    );

    let yaml = format!(
        "listen_addr: 127.0.0.1:0\nlog_level: warn\nshutdown_timeout: 2s\ntunnel_domain: {TUNNEL_DOMAIN}\n\
         tls:\n  cert_file: {d}/tls.crt\n  key_file: {d}/tls.key\nroutes:\n  crm: http://{up_addr}\n\
         upstream:\n  allowed_ips: [127.0.0.0/8]\n",
        d = dir.display()
    );
    std::fs::write(dir.join("config.yaml"), &yaml)?;
    let config = crate::config::load(&dir.join("config.yaml"))?;
    crate::telemetry::init(&config.log);
    let server = crate::server::Server::bind(config).await?;
    let gw_addr = server.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    println!("  • gateway on https://{gw_addr} — route crm.{TUNNEL_DOMAIN} → http://{up_addr}\n");

    let ca = std::fs::read(dir.join("ca.crt"))?;
    let crm = PinnedClient::new(gw_addr, HOST, &ca)?;
    let n = std::cell::Cell::new(0);
    let step = |what: &str| {
        n.set(n.get() + 1);
        format!("{:>2}. {what:<52}", n.get())
    };

    // Legacy era: initialize, then calls on the session.
    let init = rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "demo", "version": "1"}}),
    );
    let (status, headers, body) = call(&crm, &init, &[]).await?;
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    println!(
        "{} {status} session {session}, server {}",
        step("initialize (legacy 2025-11-25)"),
        body["result"]["serverInfo"]["name"]
    );
    let s = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let (status, _, _) = call(
        &crm,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &s,
    )
    .await?;
    println!("{} {status}", step("notifications/initialized"));
    let (status, _, body) = call(&crm, &rpc(2, "tools/list", json!({})), &s).await?;
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    println!(
        "{} {status} {} tools: {}",
        step("tools/list"),
        names.len(),
        names.join(", ")
    );
    let (status, _, body) = call(
        &crm,
        &tool_call(3, "search_docs", json!({"query": "refund policy"})),
        &s,
    )
    .await?;
    println!(
        "{} {status} {}",
        step("tools/call search_docs"),
        text(&body)
    );
    let (status, _, body) = call(
        &crm,
        &tool_call(4, "delete_customer", json!({"id": "c-42"})),
        &s,
    )
    .await?;
    println!(
        "{} {status} {}  ← forwarded: no policies configured yet",
        step("tools/call delete_customer"),
        text(&body)
    );

    // Progress over SSE, printed as the events arrive.
    let req = rpc(
        5,
        "tools/call",
        json!({"name": "export_report", "arguments": {"steps": 3}, "_meta": {"progressToken": "p1"}}),
    );
    let started = Instant::now();
    let resp = crm.send(post(HOST, "/mcp", req, &s)).await?;
    println!(
        "{} {} {}",
        step("tools/call export_report (SSE progress)"),
        resp.status(),
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    );
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            for line in String::from_utf8_lossy(data)
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
            {
                let v: Value = serde_json::from_str(line)?;
                let what = match v["method"].as_str() {
                    Some(_) => format!(
                        "progress {}/{}",
                        v["params"]["progress"], v["params"]["total"]
                    ),
                    None => format!("result: {}", text(&v)),
                };
                println!("      +{:>4} ms  {what}", started.elapsed().as_millis());
            }
        }
    }

    // Modern era: stateless, routing headers must match the body.
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_customer"),
    ];
    let (status, _, body) = call(
        &crm,
        &tool_call(6, "get_customer", json!({"id": "c-7"})),
        &modern,
    )
    .await?;
    println!(
        "{} {status} {}",
        step("modern tools/call get_customer"),
        text(&body)
    );

    // What the gateway refuses before anything reaches the upstream.
    let before = seen.requests.load(Ordering::Relaxed);
    let first_refusal = n.get() + 1;
    let (status, _, body) = call(
        &crm,
        &tool_call(7, "delete_customer", json!({"id": "c-1"})),
        &modern,
    )
    .await?;
    println!(
        "{} {status} {}",
        step("modern call, Mcp-Name says get_customer, body deletes"),
        err(&body)
    );
    let dup = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"search_docs","name":"delete_customer","arguments":{"id":"c-1"}}}"#;
    let (status, _, body) = call(&crm, dup, &s).await?;
    println!(
        "{} {status} {}",
        step("body with a duplicate \"name\" key"),
        err(&body)
    );
    let (status, _, body) = call(&crm, "{\"jsonrpc\":\"2.0\",", &s).await?;
    println!("{} {status} {}", step("truncated JSON"), err(&body));
    let other = PinnedClient::new(gw_addr, "hr.tunnel.demo.test", &ca)?;
    let resp = other
        .send(post(
            "hr.tunnel.demo.test",
            "/mcp",
            rpc(9, "tools/list", json!({})),
            &[],
        ))
        .await?;
    let status = resp.status();
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
    println!(
        "{} {status} {}",
        step("unknown host hr.tunnel.demo.test"),
        err(&body)
    );
    let resp = other
        .send(post(HOST, "/mcp", rpc(10, "tools/list", json!({})), &[]))
        .await?;
    let status = resp.status();
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
    println!(
        "{} {status} {}",
        step("SNI hr…, Host crm… (domain fronting)"),
        err(&body)
    );
    let after = seen.requests.load(Ordering::Relaxed);
    let refusals = n.get() + 1 - first_refusal;

    println!(
        "\nupstream received {} requests, {} with an X-Gateway-Request-Id; of the last {refusals} requests (all refused) {} reached it.",
        seen.requests.load(Ordering::Relaxed),
        seen.with_request_id.load(Ordering::Relaxed),
        after - before
    );
    let _ = stop_tx.send(());
    gateway.await.context("gateway task")??;
    println!("gateway stopped cleanly.");
    Ok(())
}

fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn tool_call(id: u64, name: &str, args: Value) -> String {
    rpc(id, "tools/call", json!({"name": name, "arguments": args}))
}

async fn call(
    c: &PinnedClient,
    body: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(http::StatusCode, http::HeaderMap, Value)> {
    let resp = c.send(post(HOST, "/mcp", body.to_owned(), headers)).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Ok((parts.status, parts.headers, v))
}

fn text(v: &Value) -> String {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn err(v: &Value) -> String {
    format!(
        "{} {}",
        v["error"]["code"],
        v["error"]["message"].as_str().unwrap_or("")
    )
}
