//! Webhook notification of new approval requests, against real HTTP and HTTPS receivers: the JSON payload,
//! retries with backoff after a failing answer, the HMAC signature, a private CA for HTTPS, and the
//! `approval_notified` audit record (delivered or not, attempts, last error).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_gateway::approvals::notify::{SIGNATURE_HEADER, signature};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::approvals::{approval_id, audit_records, call_json, delete, start, text};

/// What a receiver got: (signature header, body as sent), in order.
type Got = Arc<Mutex<Vec<(Option<String>, String)>>>;

/// A webhook receiver that answers 500 to the first `fail_first` POSTs, then 200; over TLS when `tls` is set.
async fn receiver(fail_first: usize, tls: Option<tokio_rustls::TlsAcceptor>) -> (u16, Got) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Got = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (g, tls) = (g.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let g = g.clone();
                    async move {
                        let sig = req
                            .headers()
                            .get(SIGNATURE_HEADER)
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = {
                            let mut g = g.lock().unwrap();
                            g.push((sig, String::from_utf8(body.to_vec()).unwrap()));
                            g.len()
                        };
                        let status = if n <= fail_first { 500 } else { 200 };
                        let mut resp = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    (port, got)
}

/// Waits until `got` has `n` entries.
async fn wait_for(got: &Got, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "the webhook got {} of {n} POSTs",
            got.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds one `delete_customer` call until the gateway's wait runs out; returns the approval id.
async fn ask(gw: &crate::approvals::Gw) -> String {
    let v = call_json(gw, &delete(1, "c-9")).await;
    approval_id(&text(&v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_retried_signed_and_audited() {
    let (port, got) = receiver(1, None).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "s3cret-shared-with-the-receiver\n").unwrap();
    let gw = start(&format!(
        "  wait: 300ms\n  webhook: {{url: 'http://127.0.0.1:{port}/hooks/approvals', attempts: 3, secret_file: {}}}",
        secret.display()
    ))
    .await;
    let id = ask(&gw).await;
    // The first POST fails (500), the retry 500 ms later succeeds.
    wait_for(&got, 2).await;
    let got = got.lock().unwrap().clone();
    for (sig, raw) in &got {
        let body: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(body["type"], "approval_requested");
        assert_eq!(body["approval_id"], id.as_str());
        assert_eq!(body["tool"], "delete_customer");
        assert_eq!(body["route"], "crm");
        assert_eq!(body["arguments"]["id"], "c-9");
        // The receiver's check: recompute the HMAC over "<t>.<body>" with the shared secret.
        let sig = sig.as_deref().expect("signed");
        let t: u64 = sig
            .strip_prefix("t=")
            .and_then(|s| s.split(',').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            sig,
            signature(b"s3cret-shared-with-the-receiver", t, raw.as_bytes()),
            "signature over the body as sent"
        );
        let wrong = signature(b"another-secret-of-some-length", t, raw.as_bytes());
        assert_ne!(sig, wrong);
    }
    // The audit record says delivered, after 2 attempts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recs = audit_records(gw).await;
    let notified: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "approval_notified" && r["data"]["approval_id"] == id.as_str())
        .collect();
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(notified[0]["data"]["delivered"], true);
    assert_eq!(notified[0]["data"]["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhook_with_a_private_ca_and_a_failing_one_is_recorded_as_undelivered() {
    // HTTPS receiver with a certificate for `localhost` from a private CA the gateway is told about.
    let dir = tempfile::tempdir().unwrap();
    let (tls, ca) = crate::common::localhost_tls(dir.path());
    let (port, got) = receiver(0, Some(tls)).await;
    // A second webhook that never accepts: nothing listens on its port.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);

    let gw = start(&format!(
        "  wait: 300ms\n  webhook: {{url: 'https://localhost:{port}/hook', attempts: 2, ca_file: {}}}",
        ca.display()
    ))
    .await;
    let id = ask(&gw).await;
    wait_for(&got, 1).await;
    let first: Value = serde_json::from_str(&got.lock().unwrap()[0].1).unwrap();
    assert_eq!(first["approval_id"], id.as_str());
    assert!(
        got.lock().unwrap()[0].0.is_none(),
        "unsigned without a secret"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recs = audit_records(gw).await;
    let n = recs
        .iter()
        .find(|r| r["kind"] == "approval_notified")
        .expect("notified record");
    assert_eq!(n["data"]["delivered"], true, "{n}");
    assert_eq!(n["data"]["attempts"], 1, "{n}");

    let gw = start(&format!(
        "  wait: 300ms\n  webhook: {{url: 'http://127.0.0.1:{dead_port}/hook', attempts: 2}}"
    ))
    .await;
    let id = ask(&gw).await;
    // Two attempts 500 ms apart, then the record.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let recs = audit_records(gw).await;
    let n = recs
        .iter()
        .find(|r| r["kind"] == "approval_notified" && r["data"]["approval_id"] == id.as_str())
        .expect("notified record");
    assert_eq!(n["data"]["delivered"], false, "{n}");
    assert_eq!(n["data"]["attempts"], 2, "{n}");
    assert!(
        n["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{n}"
    );
}
