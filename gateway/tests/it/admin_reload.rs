//! Hot reload, in-process and on the real binary: config reloads under load (new route, changed policy,
//! invalid config kept out), a reload that moves the certificate, and SIGHUP.

use crate::admin::{Running, config_text, tool_call, write_config};
use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use mcp_gateway::demo::client::post;
use mcp_gateway::demo::upstream;
use serde_json::json;

use common::{TD, json_of, rpc, wasm};

/// `mcp_gateway_config_reloads_total{result}` now.
async fn reloads(gw: &Running, result: &str) -> f64 {
    gw.metrics()
        .await
        .value("mcp_gateway_config_reloads_total", &[("result", result)])
}

/// Waits (up to 10 s) until `$cond` (an expression that may `.await`) holds.
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(10);
        while !$cond {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_swaps_routes_and_policies_without_failing_a_call() {
    let crm = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let docs = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let allowlist = wasm("tool_allowlist");
    let body = |allow: &str, extra_route: &str| {
        format!(
            "policies:\n  modules:\n    allow: {{ path: {}, settings: {{ allow: [{allow}] }} }}\n  default: [allow]\n\
             routes:\n  crm: http://{}\n{extra_route}",
            allowlist.display(),
            crm.addr
        )
    };
    let gw = Arc::new(Running::start(tempfile::tempdir().unwrap(), &body("search_docs", "")).await);

    // Before: get_customer is hidden, and there is no `docs` route.
    let (_, v) = gw.call("crm", tool_call(1, "get_customer")).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let (status, _) = gw.call("docs", rpc(2, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let ok_before = reloads(&gw, "success").await;
    let failed_before = reloads(&gw, "failure").await;

    // Load: workers call an allowed tool over keep-alive connections the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (gw, stop, done, bad) = (gw.clone(), stop.clone(), done.clone(), bad.clone());
            tokio::spawn(async move {
                let client = gw.client("crm");
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let req = post(
                        &format!("crm.{TD}"),
                        "/mcp",
                        tool_call(w * 1_000_000 + i, "search_docs"),
                        &[],
                    );
                    let ok = match client.send(req).await {
                        Ok(resp) => {
                            let (status, _, v) = json_of(resp).await;
                            status == StatusCode::OK
                                && v["result"]["isError"] != true
                                && v["result"].is_object()
                        }
                        Err(_) => false,
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    eventually!("load is flowing", done.load(Ordering::Relaxed) >= 20);

    // Swap: a new route and a changed allowlist.
    gw.rewrite(&body(
        "search_docs, get_customer",
        &format!("  docs: http://{}\n", docs.addr),
    ));
    eventually!(
        "the new route serves",
        gw.call("docs", rpc(3, "ping", json!({}))).await.0 == StatusCode::OK
    );
    assert_eq!(reloads(&gw, "success").await, ok_before + 1.0);
    let (status, v) = gw.call("crm", tool_call(4, "get_customer")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("Ada"),
        "the new allowlist does not apply: {v}"
    );
    let calls_at_swap = done.load(Ordering::Relaxed);

    // An invalid config (a route list) is rejected: the old one keeps serving.
    gw.rewrite("routes:\n  - crm: http://127.0.0.1:1\n");
    eventually!(
        "the invalid config is rejected",
        reloads(&gw, "failure").await == failed_before + 1.0
    );
    // So is one whose policy cannot load.
    gw.rewrite(
        &body("search_docs", "")
            .replace(&allowlist.display().to_string(), "/nonexistent/policy.wasm"),
    );
    eventually!(
        "the config with a missing policy is rejected",
        reloads(&gw, "failure").await == failed_before + 2.0
    );
    let m = gw.metrics().await;
    assert_eq!(
        m.value("mcp_gateway_config_last_reload_successful", &[]),
        0.0
    );
    assert_eq!(
        m.value("mcp_gateway_config_reloads_total", &[("result", "success")]),
        ok_before + 1.0
    );
    assert_eq!(
        gw.call("docs", rpc(5, "ping", json!({}))).await.0,
        StatusCode::OK
    );
    let (_, v) = gw.call("crm", tool_call(6, "get_customer")).await;
    assert!(
        v["result"].is_object(),
        "the old config no longer serves: {v}"
    );
    let (status, text) = gw.admin_get("/readyz").await;
    assert_eq!(
        status, 200,
        "a rejected reload does not make the gateway unready: {text}"
    );
    assert!(text.contains("was rejected"), "{text}");

    eventually!(
        "load went on after the swap",
        done.load(Ordering::Relaxed) >= calls_at_swap + 20
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "{} of {} calls failed during the reloads",
        bad.load(Ordering::Relaxed),
        done.load(Ordering::Relaxed)
    );
    let gw = Arc::into_inner(gw).expect("workers are done");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_moves_the_certificate_serves_the_new_one() {
    let sample = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let routes = format!("routes:\n  crm: http://{}\n", sample.addr);
    let gw = Running::start(tempfile::tempdir().unwrap(), &routes).await;
    let (status, _) = gw.call("crm", rpc(1, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::OK);

    // A new CA and certificate elsewhere; the config is pointed at them.
    let other = gw.dir.path().join("pki2");
    mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(&other)
        .unwrap();
    let text = config_text(gw.dir.path(), &routes).replace(
        &format!("{}/tls.", gw.dir.path().display()),
        &format!("{}/tls.", other.display()),
    );
    write_config(gw.dir.path(), &text);
    let ca2 = std::fs::read(other.join("ca.crt")).unwrap();
    let host = format!("crm.{TD}");
    eventually!("the new certificate is served", {
        let c = mcp_gateway::demo::client::PinnedClient::new(gw.addr, &host, &ca2).unwrap();
        c.send(post(&host, "/mcp", rpc(2, "ping", json!({})), &[]))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    });
    // Clients trusting only the old CA are now refused at the handshake.
    assert!(
        gw.client("crm")
            .send(post(&host, "/mcp", rpc(3, "ping", json!({})), &[]))
            .await
            .is_err()
    );
    gw.stop().await;
}

/// Reads the child's stderr lines on a thread.
fn lines_of(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(strip_ansi(&line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// The text of a log line without its colour escapes (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits for a line containing `needle`; the lines seen meanwhile on failure.
fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("no `{needle}` in the log:\n{}", seen.join("\n")),
        }
    }
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn sighup_reloads_the_config_of_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    write_config(
        dir.path(),
        &config_text(dir.path(), "routes:\n  crm: http://127.0.0.1:9\n"),
    );
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("config.yaml"))
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines_of(child.0.stderr.take().unwrap());
    let mut seen = Vec::new();
    // Logged once listening, after the SIGHUP handler is installed.
    wait_for(&rx, "config reload on change", &mut seen);

    // The file is unchanged: only the signal can make it reload.
    signal(&child, "-HUP");
    wait_for(&rx, "SIGHUP received", &mut seen);
    wait_for(&rx, "config reloaded", &mut seen);
    assert!(
        seen.iter()
            .any(|l| l.contains("config reloaded") && l.contains("generation=2")),
        "{}",
        seen.join("\n")
    );
    signal(&child, "-HUP");
    wait_for(&rx, "generation=3", &mut seen);

    signal(&child, "-TERM");
    wait_for(&rx, "audit log flushed and closed", &mut seen);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", seen.join("\n"));
}
