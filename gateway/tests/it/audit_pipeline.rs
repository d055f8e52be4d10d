//! The audit stage in the request path, in-process: records are on disk before the upstream sees a request,
//! refusals and outcomes are recorded, and a full disk fails closed and recovers.

use crate::common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_gateway::demo::client::{PinnedClient, post};
use mcp_gateway::demo::upstream;
use serde_json::json;
use tokio::net::TcpListener;

use common::*;

/// The audit log's lines (all segments) as text.
fn audit_text(dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forwarded_request_is_recorded_before_the_upstream_sees_it() {
    // An upstream that, the moment a request arrives, looks for its decision record in the audit log.
    let audit_dir: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let checks: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    {
        let (audit_dir, checks) = (audit_dir.clone(), checks.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (audit_dir, checks) = (audit_dir.clone(), checks.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (audit_dir, checks) = (audit_dir.clone(), checks.clone());
                        async move {
                            let id = req.headers()["x-gateway-request-id"]
                                .to_str()
                                .unwrap()
                                .to_owned();
                            let dir = audit_dir.lock().unwrap().clone().unwrap();
                            let text = audit_text(&dir);
                            let recorded = text.lines().any(|l| {
                                l.contains(&format!("\"request_id\":\"{id}\""))
                                    && l.contains("\"kind\":\"decision\"")
                            });
                            checks.lock().unwrap().push((id, recorded));
                            let mut resp = http::Response::new(Full::new(Bytes::from_static(
                                br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                            )));
                            resp.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    }
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let dir = gw.dir.path().join("audit");
    *audit_dir.lock().unwrap() = Some(dir.clone());
    let c = gw.client("crm");
    let host = format!("crm.{TD}");
    let mut sent = Vec::new();
    for i in 0..20u64 {
        let resp = if i % 5 == 4 {
            c.send(
                Request::get("/mcp")
                    .header("host", &host)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap()
        } else {
            c.send(post(
                &host,
                "/mcp",
                rpc(
                    i,
                    "tools/call",
                    json!({"name": "search_docs", "arguments": {"query": "q", "secret": "s3cr3t"}}),
                ),
                &[],
            ))
            .await
            .unwrap()
        };
        assert_eq!(resp.status(), StatusCode::OK);
        sent.push(
            resp.headers()["x-gateway-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // And one refused before any policy ran: recorded as a refusal, never forwarded.
    let nope = PinnedClient::new(gw.addr, &format!("nope.{TD}"), &gw.ca()).unwrap();
    let refused = nope
        .send(post(
            &format!("nope.{TD}"),
            "/mcp",
            rpc(99, "ping", json!({})),
            &[],
        ))
        .await
        .unwrap();
    let refused_id = refused.headers()["x-gateway-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let checks = checks.lock().unwrap().clone();
    assert_eq!(
        checks.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        sent,
        "the upstream saw exactly the forwarded requests"
    );
    assert!(
        checks.iter().all(|c| c.1),
        "a request reached the upstream before its decision record: {checks:?}"
    );
    let _keep = gw.stop().await; // closes the log: queued refusal and outcome records are flushed

    let text = audit_text(&dir);
    assert!(
        !text.contains("s3cr3t"),
        "arguments are recorded as a digest by default"
    );
    assert!(
        text.contains("\"arguments_digest\":\"sha256:") && text.contains("\"arguments_size\":"),
        "digest recorded"
    );
    let refusal = text
        .lines()
        .find(|l| l.contains(&refused_id))
        .expect("refusal recorded");
    assert!(
        refusal.contains("\"kind\":\"refusal\"") && refusal.contains("no_route"),
        "{refusal}"
    );
    assert!(
        refusal.contains(&format!("\"host\":\"nope.{TD}\"")),
        "the refused host is recorded: {refusal}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"kind\":\"outcome\""))
            .count(),
        20,
        "one outcome per forwarded request"
    );
    let report = mcp_gateway::audit::verify::verify_dir(&dir, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_disk_fails_closed_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("audit");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        crate::common::cannot_run("audit disk-full", "cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let sample = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = Gw::start_in(
        dir,
        &format!("  crm: http://{}", sample.addr),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
        None,
    )
    .await;
    let c = gw.client("crm");
    let host = format!("crm.{TD}");
    let ping = |i: u64| post(&host, "/mcp", rpc(i, "ping", json!({})), &[]);
    assert_eq!(c.send(ping(1)).await.unwrap().status(), StatusCode::OK);

    // Fill the disk, then keep calling until the log cannot write (the segment's last page may still take a
    // few small records); from then on nothing is forwarded.
    let filler = mnt.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
    let mut refused = false;
    for i in 2..500 {
        let (status, _, body) = json_of(c.send(ping(i)).await.unwrap()).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["error"]["code"], -32004, "{body}");
            refused = true;
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(refused, "the full disk never stopped forwarding");
    let before = sample
        .seen
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..3 {
        let (status, _, body) = json_of(c.send(ping(1000 + i)).await.unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    assert_eq!(
        sample
            .seen
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before,
        "forwarded without a durable record"
    );

    // Space comes back: requests flow again, and the log says what happened in between.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if c.send(ping(9)).await.unwrap().status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover after space returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _keep = gw.stop().await; // the audit mount lives in this directory
    assert!(
        audit_text(&mnt).contains("\"kind\":\"gap\""),
        "no gap record after the failure"
    );
    let report = mcp_gateway::audit::verify::verify_dir(&mnt, &Default::default()).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
}
