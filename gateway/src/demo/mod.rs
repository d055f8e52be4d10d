//! `mcp-gateway demo`: the gateway's main job on embedded defaults, with nothing but this repository.
//!
//! It issues a throwaway CA and certificate, starts the sample MCP server, starts the gateway in front of it
//! (through the same config loader a deployment uses) with the stock policies, drives calls of both protocol
//! eras through it over real TLS, and prints what happened: allowed, denied, held for approval, hidden,
//! invalid, and refused before any policy ran. Later stages (approvals, audit) extend the same script.

pub mod client;
pub mod upstream;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use client::{PinnedClient, post};

const TUNNEL_DOMAIN: &str = "tunnel.demo.test";
const HOST: &str = "crm.tunnel.demo.test";

/// Where the stock policy components are: `$MCP_POLICY_DIR`, else where the build put them — under
/// `$CARGO_TARGET_DIR`, beside this binary's own target directory (`<target>/<profile>/mcp-gateway`), or in the
/// workspace's `target/`. `policies/build.sh` writes `<target>/wasm32-wasip2/policy/`.
fn policy_dir() -> anyhow::Result<PathBuf> {
    const NAMES: [&str; 3] = ["tool_allowlist", "mutation_guard", "argument_rules"];
    if let Some(dir) = std::env::var_os("MCP_POLICY_DIR").map(PathBuf::from) {
        for name in NAMES {
            let p = dir.join(format!("{name}.wasm"));
            anyhow::ensure!(
                p.exists(),
                "the stock policy {} is not built (MCP_POLICY_DIR is set): run `bash policies/build.sh`",
                p.display()
            );
        }
        return Ok(dir);
    }
    let candidates = policy_dir_candidates(
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        std::env::current_exe().ok(),
    );
    let complete = |d: &Path| NAMES.iter().all(|n| d.join(format!("{n}.wasm")).exists());
    if let Some(d) = candidates.iter().find(|d| complete(d)) {
        return Ok(d.clone());
    }
    anyhow::bail!(
        "the stock policies ({}) are not built: run `bash policies/build.sh` (or set MCP_POLICY_DIR). Looked in: {}",
        NAMES.map(|n| format!("{n}.wasm")).join(", "),
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn policy_dir_candidates(target_env: Option<PathBuf>, exe: Option<PathBuf>) -> Vec<PathBuf> {
    let sub = |t: &Path| t.join("wasm32-wasip2/policy");
    let mut out = Vec::new();
    if let Some(t) = target_env {
        out.push(sub(&t));
    }
    // <target>/debug/mcp-gateway, <target>/release/mcp-gateway, or a test's <target>/debug/deps/….
    if let Some(exe) = exe {
        for up in exe.ancestors().skip(2).take(2) {
            out.push(sub(up));
        }
    }
    out.push(sub(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")));
    out.dedup();
    out
}

pub async fn run() -> anyhow::Result<()> {
    let policies = policy_dir()?;
    let dir = std::env::temp_dir().join(format!(
        "mcp-gateway-demo-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = run_in(&dir, &policies).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &Path, policies: &Path) -> anyhow::Result<()> {
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

    let p = policies.display();
    let yaml = format!(
        r#"listen_addr: 127.0.0.1:0
log_level: warn
shutdown_timeout: 2s
tunnel_domain: {TUNNEL_DOMAIN}
tls:
  cert_file: {d}/tls.crt
  key_file: {d}/tls.key
upstream:
  allowed_ips: [127.0.0.0/8]
audit:
  dir: {d}/audit
  redact: digest
admin:
  listen: 127.0.0.1:0
approvals:
  db: {d}/approvals.db
  wait: 20s
  approvers:
    - {{ name: demo-approver, token_file: {d}/approver.token }}
policies:
  cache_dir: {d}/policy-cache
  modules:
    allowlist:
      path: {p}/tool_allowlist.wasm
      settings: {{ allow: ["search_*", "get_*", "delete_*", "export_*"] }}
    guard:
      path: {p}/mutation_guard.wasm
      settings: {{ deny: ["drop_*"], require_approval: ["delete_*"] }}
    arguments:
      path: {p}/argument_rules.wasm
      settings:
        rules:
          - {{ tool: "search_*", argument: /query, not_matches: "(?i)\\b(password|secret)s?\\b", action: deny,
               reason: "searching for credentials is not allowed" }}
  default: [allowlist, guard, arguments]
routes:
  crm: http://{up_addr}
"#,
        d = dir.display()
    );
    std::fs::write(dir.join("config.yaml"), &yaml)?;
    let approver_token = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(dir.join("approver.token"), &approver_token)?;
    let config = crate::config::load(&dir.join("config.yaml"))?;
    crate::telemetry::init(&config.log);
    let started = Instant::now();
    let server = crate::server::Server::bind(config)
        .await?
        .with_config_file(dir.join("config.yaml"));
    let gw_addr = server.local_addr();
    let admin_addr = server.admin_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    println!(
        "  • gateway on https://{gw_addr} — route crm.{TUNNEL_DOMAIN} → http://{up_addr}, \
         policies allowlist → guard → arguments (loaded in {} ms)",
        started.elapsed().as_millis()
    );
    if let Some(admin) = admin_addr {
        println!(
            "  • admin listener on http://{admin} — /healthz, /readyz, /metrics (Prometheus); the config \
             file is reloaded when it changes and on SIGHUP"
        );
    }
    println!();

    let ca = std::fs::read(dir.join("ca.crt"))?;
    let crm = PinnedClient::new(gw_addr, HOST, &ca)?;
    let n = Cell::new(0);
    let step = |what: &str| {
        n.set(n.get() + 1);
        format!("{:>2}. {what:<50}", n.get())
    };

    println!("Legacy era (2025-11-25, a session):");
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
        step("initialize"),
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
        "{} {status} {} of {} tools visible: {}",
        step("tools/list"),
        names.len(),
        upstream::tool_names().len(),
        names.join(", ")
    );
    let (_, _, body) = call(
        &crm,
        &tool_call(3, "search_docs", json!({"query": "refund policy"})),
        &s,
    )
    .await?;
    println!(
        "{} ALLOWED   {}",
        step("tools/call search_docs \"refund policy\""),
        text(&body)
    );
    let (_, _, body) = call(
        &crm,
        &tool_call(4, "search_docs", json!({"query": "admin passwords"})),
        &s,
    )
    .await?;
    println!(
        "{} DENIED    {}",
        step("tools/call search_docs \"admin passwords\""),
        text(&body)
    );
    // Held for approval: the call waits while an approver decides — here the demo itself, through the
    // `mcp-gateway approvals` CLI against the admin listener.
    let held = {
        let (crm, s) = (crm.clone(), s.map(|(k, v)| (k, v.to_owned())));
        tokio::spawn(async move {
            let s: Vec<(&str, &str)> = s.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let t0 = Instant::now();
            let r = call(
                &crm,
                &tool_call(5, "delete_customer", json!({"id": "c-42"})),
                &s,
            )
            .await;
            r.map(|r| (r, t0.elapsed()))
        })
    };
    println!(
        "{} HELD      waiting for an approver…",
        step("tools/call delete_customer")
    );
    match admin_addr {
        Some(admin) => {
            let id = pending_approval(admin, &approver_token).await?;
            let out = approve_with_cli(admin, &approver_token, &id).await?;
            println!("        $ mcp-gateway approvals approve {id} -m \"ok for the demo\"");
            for line in out.lines() {
                println!("          {line}");
            }
        }
        None => anyhow::bail!("the demo needs the admin listener"),
    }
    let ((_, _, body), waited) = held.await??;
    println!(
        "{} APPROVED  after {} ms held: {}",
        step("…the held delete_customer"),
        waited.as_millis(),
        text(&body)
    );
    let (_, _, body) = call(
        &crm,
        &tool_call(6, "admin_reset_database", json!({"confirm": true})),
        &s,
    )
    .await?;
    println!(
        "{} HIDDEN    {}",
        step("tools/call admin_reset_database"),
        err(&body)
    );
    let (_, _, body) = call(
        &crm,
        &tool_call(7, "get_customer", json!({"customer": "c-7"})),
        &s,
    )
    .await?;
    println!(
        "{} INVALID   {}",
        step("tools/call get_customer {customer: …}"),
        text(&body)
    );

    // Progress over SSE, printed as the events arrive.
    let req = rpc(
        8,
        "tools/call",
        json!({"name": "export_report", "arguments": {"steps": 3}, "_meta": {"progressToken": "p1"}}),
    );
    let t0 = Instant::now();
    let resp = crm.send(post(HOST, "/mcp", req, &s)).await?;
    println!(
        "{} ALLOWED   streamed ({})",
        step("tools/call export_report, SSE progress"),
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
                println!("        +{:>4} ms  {what}", t0.elapsed().as_millis());
            }
        }
    }

    println!("\nModern era (2026-07-28, stateless, routing headers):");
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_customer"),
    ];
    let (_, _, body) = call(
        &crm,
        &tool_call(9, "get_customer", json!({"id": "c-7"})),
        &modern,
    )
    .await?;
    println!(
        "{} ALLOWED   {}",
        step("tools/call get_customer"),
        text(&body)
    );
    let modern_list = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let (_, _, body) = call(&crm, &rpc(10, "tools/list", json!({})), &modern_list).await?;
    println!(
        "{} {} tools, cacheScope {}",
        step("tools/list"),
        body["result"]["tools"].as_array().map_or(0, |t| t.len()),
        body["result"]["cacheScope"]
    );

    println!("\nRefused before any policy runs (never reach the upstream):");
    let before = seen.requests.load(Ordering::Relaxed);
    let first = n.get() + 1;
    let (status, _, body) = call(
        &crm,
        &tool_call(11, "delete_customer", json!({"id": "c-1"})),
        &modern,
    )
    .await?;
    println!(
        "{} {status} {}",
        step("Mcp-Name says get_customer, body deletes"),
        err(&body)
    );
    let dup = r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"search_docs","name":"delete_customer","arguments":{"id":"c-1"}}}"#;
    let (status, _, body) = call(&crm, dup, &s).await?;
    println!(
        "{} {status} {}",
        step("body with a duplicate \"name\" key"),
        err(&body)
    );
    let (status, _, body) = call(&crm, "{\"jsonrpc\":\"2.0\",", &s).await?;
    println!("{} {status} {}", step("truncated JSON"), err(&body));
    let other = PinnedClient::new(gw_addr, "hr.tunnel.demo.test", &ca)?;
    let (status, body) = raw(
        &other,
        post(
            "hr.tunnel.demo.test",
            "/mcp",
            rpc(13, "tools/list", json!({})),
            &[],
        ),
    )
    .await?;
    println!(
        "{} {status} {}",
        step("unknown host hr.tunnel.demo.test"),
        err(&body)
    );
    let (status, body) = raw(
        &other,
        post(HOST, "/mcp", rpc(14, "tools/list", json!({})), &[]),
    )
    .await?;
    println!(
        "{} {status} {}",
        step("SNI hr…, Host crm… (domain fronting)"),
        err(&body)
    );
    let refused = n.get() + 1 - first;
    let reached = seen.requests.load(Ordering::Relaxed) - before;

    let calls = seen.tool_calls.lock().expect("stats").clone();
    println!(
        "\nThe upstream received {} requests ({} with an X-Gateway-Request-Id); the tool calls it executed: {}.\n\
         Of the last {refused} requests, {reached} reached it.",
        seen.requests.load(Ordering::Relaxed),
        seen.with_request_id.load(Ordering::Relaxed),
        calls.join(", ")
    );
    if let Some(admin) = admin_addr {
        let metrics = admin_get(admin, "/metrics").await?;
        println!(
            "\nWhat the gateway counted (http://{admin}/metrics, requests by route, method, decision):"
        );
        for line in metrics
            .lines()
            .filter(|l| l.starts_with("mcp_gateway_requests_total{route=\"crm\""))
        {
            println!("  {line}");
        }
    }
    let _ = stop_tx.send(());
    gateway.await.context("gateway task")??;
    println!("gateway stopped cleanly.");
    audit_summary(&dir.join("audit"))
}

/// The body of a plaintext GET to the admin listener.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    admin_get_as(addr, path, None).await
}

async fn admin_get_as(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("admin listener: no HTTP response")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "admin listener: {head}");
    Ok(body.to_owned())
}

/// What an auditor would check: the chain verifies, and what was decided.
fn audit_summary(dir: &Path) -> anyhow::Result<()> {
    let report = crate::audit::verify::verify_dir(dir, &Default::default())?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path)?.lines() {
                let v: Value = serde_json::from_str(line)?;
                let key = match (
                    v["kind"].as_str(),
                    v["data"]["decision"].as_str(),
                    v["data"]["reason"].as_str(),
                ) {
                    (Some("decision"), Some(d), _) => format!("decision {d}"),
                    (Some("refusal"), _, Some(r)) => format!("refusal {r}"),
                    (Some(k), _, _) => k.to_owned(),
                    _ => "?".to_owned(),
                };
                *counts.entry(key).or_default() += 1;
            }
        }
    }
    println!(
        "\nAudit trail ({} records in {} segment(s), written before each forward): chain {}.",
        report.records,
        report.segments,
        if report.ok() {
            "verified ✓"
        } else {
            "BROKEN ✗"
        }
    );
    for (k, n) in counts {
        println!("  {n:>3}  {k}");
    }
    println!(
        "(`mcp-gateway audit verify|query|stats DIR` reads it; this demo's copy is deleted with its temp dir.)"
    );
    anyhow::ensure!(
        report.ok(),
        "the demo's audit log does not verify: {:?}",
        report.problem
    );
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
        answer_of(&bytes)
    };
    Ok((parts.status, parts.headers, v))
}

async fn raw(
    c: &PinnedClient,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> anyhow::Result<(http::StatusCode, Value)> {
    let resp = c.send(req).await?;
    let status = resp.status();
    Ok((
        status,
        serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?,
    ))
}

/// The id of the one pending approval request (the held `delete_customer`), once it is stored.
async fn pending_approval(admin: std::net::SocketAddr, token: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list: Value = serde_json::from_str(
            &admin_get_as(admin, "/approvals?status=pending", Some(token)).await?,
        )?;
        if let Some(id) = list["approvals"][0]["id"].as_str() {
            return Ok(id.to_owned());
        }
        anyhow::ensure!(Instant::now() < deadline, "no approval request appeared");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs this binary's `approvals approve` (what an approver types), returning what it printed.
async fn approve_with_cli(
    admin: std::net::SocketAddr,
    token: &str,
    id: &str,
) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["approvals", "approve", id, "-m", "ok for the demo"])
        .arg("--admin")
        .arg(format!("http://{admin}"))
        .env("MCP_GATEWAY_APPROVER_TOKEN", token);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    anyhow::ensure!(
        out.status.success(),
        "`mcp-gateway approvals approve` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// A JSON-RPC answer from a body that is JSON or an SSE stream (its last `data:` line).
fn answer_of(bytes: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return v;
    }
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
        .unwrap_or(Value::String(text.into_owned()))
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
