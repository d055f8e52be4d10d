//! Certificate rotation while connected: `mcp-gateway certs renew` rewrites the files of a running gateway
//! (in-process, polling every 100 ms); new handshakes get the renewed certificate, a connection opened before
//! keeps serving, and both chain to the same CA.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gw, TD, rpc};
use mcp_gateway::demo::client::post;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// A TLS connection to the gateway for `crm.<TD>`, trusting its CA.
async fn connect(gw: &Gw) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&gw.ca()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(format!("crm.{TD}")).unwrap(), tcp)
        .await
        .unwrap()
}

/// The certificate a fresh handshake presents.
async fn presented(gw: &Gw) -> Vec<u8> {
    connect(gw).await.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn file_der(path: &std::path::Path) -> Vec<u8> {
    mcp_gateway::certs::first_der(&std::fs::read(path).unwrap(), "tls.crt")
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn renewed_certificate_is_served_without_restart() {
    let sample = mcp_gateway::demo::upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = Gw::start(
        &format!("  crm: http://{}", sample.addr),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let crt = gw.dir.path().join("tls.crt");
    let old = file_der(&crt);
    assert_eq!(presented(&gw).await, old);

    // A connection opened before the renewal (HTTP/1.1 keep-alive).
    let tls = connect(&gw).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let host = format!("crm.{TD}");
    let call = |id| {
        post(
            &host,
            "/mcp",
            rpc(id, "tools/list", serde_json::json!({})),
            &[],
        )
    };
    let (status, _, _) = common::json_of(sender.send_request(call(1)).await.unwrap()).await;
    assert_eq!(status, 200);

    let dir = gw.dir.path().to_owned();
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .args(["certs", "renew", "--renew-before", "91d", "--dir"])
            .arg(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let new = file_der(&crt);
    assert_ne!(new, old);

    // The reloader polls every 100 ms: the new certificate is served within a few polls.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if presented(&gw).await == new {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old connection still works on the identity it was made with.
    let (status, _, body) = common::json_of(sender.send_request(call(2)).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 6);
    gw.stop().await;
}
