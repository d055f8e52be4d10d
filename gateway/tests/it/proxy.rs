//! The gateway as a value, in-process: real TLS listener, real upstream sockets, no mocks of the data path.
//! (End-to-end tests with the real Python MCP SDK peers live in the repository's `tests/e2e/`.)

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_gateway::demo::client::{PinnedClient, post};
use mcp_gateway::demo::upstream;
use mcp_gateway::upstream_gate::Resolve;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_reach_the_upstream_with_request_ids() {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;

    let (status, headers, body) = json_of(
        gw.client("crm")
            .send(post(
                &format!("crm.{TD}:8443"),
                "/mcp",
                rpc(1, "tools/list", json!({})),
                &[],
            ))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 6);
    assert_eq!(headers["x-gateway-request-id"].len(), 36);

    let h2 = PinnedClient::with_alpn(gw.addr, &format!("crm.{TD}"), &gw.ca(), b"h2").unwrap();
    let req = Request::post(format!("https://crm.{TD}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(rpc(
            2,
            "tools/call",
            json!({"name": "search_docs", "arguments": {"query": "q"}}),
        ))))
        .unwrap();
    let (status, _, body) = json_of(h2.send_h2(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("results for \"q\""),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sees_rewritten_host_forwarding_headers_and_no_hop_by_hop() {
    let up = echo_upstream().await;
    let gw = Gw::start(
        &format!("  docs: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.1]}",
    )
    .await;
    let body = rpc(5, "tools/list", json!({}));
    let mut req = post(
        &format!("docs.{TD}"),
        "/mcp?x=1",
        body.clone(),
        &[
            ("authorization", "Bearer abc"),
            ("mcp-session-id", "sess-1"),
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", "ev-9"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("x-gateway-request-id", "client-forged"),
        ],
    );
    req.headers_mut().insert("accept", "*/*".parse().unwrap());
    let (status, headers, echo) = json_of(gw.client("docs").send(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let h = &echo["headers"];
    assert_eq!(h["host"], up.to_string());
    assert_eq!(h["x-forwarded-host"], format!("docs.{TD}"));
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["accept"], "application/json, text/event-stream");
    for kept in [
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    ] {
        assert!(h.get(kept).is_some(), "{kept} not passed through: {h}");
    }
    assert!(
        h.get("x-drop-me").is_none() && h.get("connection").is_none(),
        "hop-by-hop leaked: {h}"
    );
    assert_eq!(
        h["x-gateway-request-id"],
        headers["x-gateway-request-id"].to_str().unwrap(),
        "upstream and client see one id"
    );
    assert_eq!(echo["path"], "/mcp?x=1");
    assert_eq!(echo["body"], body, "body forwarded byte for byte");
    assert!(
        headers.get("x-internal").is_none(),
        "response hop-by-hop header leaked"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_progress_reaches_the_client_before_the_result() {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let call = rpc(
        3,
        "tools/call",
        json!({"name": "export_report", "arguments": {"steps": 3}, "_meta": {"progressToken": 7}}),
    );
    let resp = gw
        .client("crm")
        .send(post(&format!("crm.{TD}"), "/mcp", call, &[]))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut body = resp.into_body();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
    {
        if let Some(d) = frame.unwrap().data_ref() {
            for line in String::from_utf8_lossy(d)
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
            {
                let v: Value = serde_json::from_str(line).unwrap();
                arrivals.push((start.elapsed(), v.get("method").is_some()));
            }
        }
    }
    assert_eq!(
        arrivals.iter().filter(|a| a.1).count(),
        3,
        "three progress events: {arrivals:?}"
    );
    let (first_progress, result) = (arrivals[0].0, arrivals.last().unwrap().0);
    assert!(!arrivals.last().unwrap().1, "the result comes last");
    // The upstream spaces events 300 ms apart: a buffering proxy would deliver them together.
    assert!(
        result - first_progress >= Duration::from_millis(450),
        "events bunched: {arrivals:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_gate_refuses_without_ever_connecting() {
    let (up, accepted) = counting_listener().await;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [10.0.0.0/8]}",
    )
    .await;
    let (status, _, body) = json_of(
        gw.client("crm")
            .send(post(
                &format!("crm.{TD}"),
                "/mcp",
                rpc(1, "tools/list", json!({})),
                &[],
            ))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], -32002);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("IP validation failed"),
        "{body}"
    );
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "internal address leaked to the caller: {body}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.stop().await;
}

/// First answer is the real (allowed) upstream, every later one an address outside allowed_ips.
#[derive(Debug)]
struct Rebinding {
    first: SocketAddr,
    calls: Mutex<usize>,
}

impl Resolve for Rebinding {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        port: u16,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>,
    > {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        let answer = if *calls == 1 {
            self.first
        } else {
            SocketAddr::new("169.254.169.254".parse().unwrap(), port)
        };
        Box::pin(async move { Ok(vec![answer]) })
    }
}

/// Always answers with one address.
#[derive(Debug)]
struct Fixed(SocketAddr);

impl Resolve for Fixed {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>,
    > {
        let a = self.0;
        Box::pin(async move { Ok(vec![a]) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_cannot_slip_another_address_in() {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let dns = Arc::new(Rebinding {
        first: up,
        calls: Mutex::new(0),
    });
    let route = format!("  crm: http://svc.internal.invalid:{}", up.port());
    let gw = Gw::start_with(
        &route,
        "upstream: {allowed_ips: [127.0.0.0/8]}",
        Some(dns.clone()),
    )
    .await;
    let c = gw.client("crm");
    // `.invalid` never resolves in real DNS: success proves the connector dialled the gated address itself.
    let (status, _, _) = json_of(
        c.send(post(
            &format!("crm.{TD}"),
            "/mcp",
            rpc(1, "ping", json!({})),
            &[],
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = json_of(
        c.send(post(
            &format!("crm.{TD}"),
            "/mcp",
            rpc(2, "ping", json!({})),
            &[],
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(
        *dns.calls.lock().unwrap(),
        2,
        "one lookup per request, none by the connector"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_we_cannot_inspect_are_refused_before_the_upstream() {
    let (up, accepted) = counting_listener().await;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}\nlimits: {max_body_bytes: 1024}",
    )
    .await;
    let c = gw.client("crm");
    let host = format!("crm.{TD}");
    let big = rpc(
        1,
        "tools/call",
        json!({"name": "x", "arguments": {"blob": "a".repeat(2000)}}),
    );
    let (status, _, body) = json_of(c.send(post(&host, "/mcp", big, &[])).await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _, _) = json_of(
        c.send(post(
            &host,
            "/mcp",
            rpc(1, "ping", json!({})),
            &[("content-encoding", "gzip")],
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut req = post(&host, "/mcp", rpc(1, "ping", json!({})), &[]);
    req.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(
        c.send(req).await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let mut req = post(&host, "/mcp", rpc(1, "ping", json!({})), &[]);
    *req.method_mut() = http::Method::PUT;
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, POST, DELETE");
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"x","params":{"a":1,"a":2}}]"#;
    let (status, _, body) = json_of(c.send(post(&host, "/mcp", batch, &[])).await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32700)),
        "{body}"
    );
    let (status, _, body) = json_of(
        c.send(post(
            &host,
            "/mcp",
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            &[],
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["id"],
        Value::Null,
        "an unparsable body has no id to echo: {body}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused request reached the upstream"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_streams_delete_and_discovery_pass_through() {
    let up = echo_upstream().await;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let c = gw.client("crm");
    for (method, path) in [
        ("GET", "/mcp"),
        ("DELETE", "/mcp"),
        ("GET", "/.well-known/oauth-protected-resource/mcp"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("crm.{TD}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, echo) = json_of(c.send(req).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}");
        assert_eq!(
            (
                echo["method"].as_str().unwrap(),
                echo["path"].as_str().unwrap()
            ),
            (method, path)
        );
        if path == "/mcp" && method == "GET" {
            assert_eq!(echo["headers"]["accept"], "text/event-stream");
        }
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_a_502_and_other_routes_keep_working() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap(); // closed right away
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let gw = Gw::start(
        &format!("  dead: http://{dead}\n  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let (status, _, body) = json_of(
        gw.client("dead")
            .send(post(
                &format!("dead.{TD}"),
                "/mcp",
                rpc(1, "ping", json!({})),
                &[],
            ))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], -32003);
    assert_eq!(body["id"], 1);
    let (status, _, _) = json_of(
        gw.client("crm")
            .send(post(
                &format!("crm.{TD}"),
                "/mcp",
                rpc(2, "ping", json!({})),
                &[],
            ))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_live_stream_then_stops_accepting() {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let mut gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let call = rpc(
        3,
        "tools/call",
        json!({"name": "export_report", "arguments": {"steps": 3}, "_meta": {"progressToken": 1}}),
    );
    let resp = gw
        .client("crm")
        .send(post(&format!("crm.{TD}"), "/mcp", call, &[]))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let _first = body.frame().await.unwrap().unwrap();
    let _ = gw.stop.take().unwrap().send(()); // SIGTERM equivalent, mid-stream
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert!(
        String::from_utf8_lossy(&rest).contains("report ready: 3 sections"),
        "stream cut during drain"
    );
    tokio::time::timeout(Duration::from_secs(5), &mut gw.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_hot_reloaded() {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let old = gw.client("crm");
    let old_ca = gw.ca();
    let ping = || post(&format!("crm.{TD}"), "/mcp", rpc(1, "ping", json!({})), &[]);
    assert_eq!(old.send(ping()).await.unwrap().status(), StatusCode::OK);
    // Rotate to a certificate from a new CA, as `certs init` would write it.
    let next = tempfile::tempdir().unwrap();
    let issued = mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256).unwrap();
    issued.write_to(next.path()).unwrap();
    std::fs::copy(next.path().join("tls.key"), gw.dir.path().join("tls.key")).unwrap();
    std::fs::copy(next.path().join("tls.crt"), gw.dir.path().join("tls.crt")).unwrap();
    let fresh =
        PinnedClient::new(gw.addr, &format!("crm.{TD}"), issued.ca_cert_pem.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(resp) = fresh.send(ping()).await {
            assert_eq!(resp.status(), StatusCode::OK);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new client trusting only the old CA must now fail the full handshake. (An existing client may still
    // resume its old TLS session, as with any server: resumption presents no certificate.)
    let old_ca_only = PinnedClient::new(gw.addr, &format!("crm.{TD}"), &old_ca).unwrap();
    assert!(
        old_ca_only.send(ping()).await.is_err(),
        "old certificate still served"
    );
    gw.stop().await;
}

/// The sample upstream behind TLS with its own CA, as an `https://` upstream would be.
async fn tls_upstream(dir: &Path) -> SocketAddr {
    let plain = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let issued =
        mcp_gateway::certs::issue("upstream.test", mcp_gateway::certs::KeyKind::EcdsaP256).unwrap();
    issued.write_to(dir).unwrap();
    let chain: Vec<_> =
        rustls_pki_types::pem::PemObject::pem_slice_iter(issued.cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key = rustls_pki_types::pem::PemObject::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_verified_against_upstream_tls_ca_file() {
    let updir = tempfile::tempdir().unwrap();
    let up = tls_upstream(updir.path()).await;
    // The upstream certificate covers *.upstream.test; the gate checks the address, TLS checks the name.
    let dns = Arc::new(Fixed(up));
    let ca = updir.path().join("ca.crt");
    let gw = Gw::start_with(
        &format!("  crm: https://mcp.upstream.test:{}", up.port()),
        &format!(
            "upstream: {{allowed_ips: [127.0.0.0/8], tls: {{ca_file: {}}}}}",
            ca.display()
        ),
        Some(dns),
    )
    .await;
    let (status, _, body) = json_of(
        gw.client("crm")
            .send(post(
                &format!("crm.{TD}"),
                "/mcp",
                rpc(1, "tools/list", json!({})),
                &[],
            ))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 6);
    gw.stop().await;

    // Trusting another CA, the same upstream is refused.
    let other = tempfile::tempdir().unwrap();
    mcp_gateway::certs::issue("other.test", mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(other.path())
        .unwrap();
    let dns = Arc::new(Fixed(up));
    let gw = Gw::start_with(
        &format!("  crm: https://mcp.upstream.test:{}", up.port()),
        &format!(
            "upstream: {{allowed_ips: [127.0.0.0/8], tls: {{ca_file: {}/ca.crt}}}}",
            other.path().display()
        ),
        Some(dns),
    )
    .await;
    let (status, _, body) = json_of(
        gw.client("crm")
            .send(post(
                &format!("crm.{TD}"),
                "/mcp",
                rpc(1, "tools/list", json!({})),
                &[],
            ))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_idle_clients_are_cut_off_by_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .addr;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}\nlimits: {request_header_timeout: 500ms}",
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(gw.ca().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        connector
            .connect(format!("crm.{TD}").try_into().unwrap(), tcp)
            .await
            .unwrap()
    };
    // Slowloris: half a request line, then nothing.
    let mut slow = connect().await;
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: crm.")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // Closed cleanly or with a reset: what matters is that it ended, and when.
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
        .await
        .expect("slow client never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off only after {:?}",
        started.elapsed()
    );
    // Idle keep-alive: one request, then silence.
    let mut idle = connect().await;
    let body = rpc(1, "ping", json!({}));
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: crm.{TD}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    idle.write_all(req.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .expect("idle connection never closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle connection kept for {:?}",
        started.elapsed()
    );
    gw.stop().await;
}
