//! The cloudflared shape on the gateway's one listener: plaintext HTTP upgraded to a WebSocket whose binary
//! messages carry the inner TLS connection. Real WebSocket client (tokio-tungstenite), real TLS inside it,
//! real sample MCP upstream behind the gateway.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use mcp_gateway::demo::client::post;
use mcp_gateway::demo::upstream;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use common::{Gw, TD, json_of, rpc};

async fn sample_gateway() -> (Gw, std::sync::Arc<upstream::Seen>) {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let seen = up.seen.clone();
    let gw = Gw::start(
        &format!("  crm: http://{}", up.addr),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    std::mem::forget(up); // keep the sample server running for the test's life
    (gw, seen)
}

fn tools_list() -> http::Request<http_body_util::Full<Bytes>> {
    post(
        &format!("crm.{TD}"),
        "/mcp",
        rpc(1, "tools/list", json!({})),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
}

#[tokio::test]
async fn mcp_through_a_websocket_tunnel_carrying_tls() {
    let (gw, _seen) = sample_gateway().await;
    let client = gw.client("crm");
    let resp = tokio::time::timeout(Duration::from_secs(10), client.send_tunneled(tools_list()))
        .await
        .expect("bounded")
        .expect("tunneled request");
    let (status, headers, v) = json_of(resp).await;
    assert_eq!(status, 200, "{v}");
    assert!(headers.contains_key("x-gateway-request-id"));
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"search_docs"), "{names:?}");

    // The same listener still serves TLS directly.
    let (status, _, v) = json_of(client.send(tools_list()).await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    gw.stop().await;
}

#[tokio::test]
async fn tls_records_split_across_tiny_messages_still_work() {
    // Message boundaries mean nothing: the client sends its TLS bytes in 5-byte binary messages.
    let (gw, _seen) = sample_gateway().await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/", gw.addr), tcp)
        .await
        .unwrap();
    let (ours, theirs) = tokio::io::duplex(64 << 10);
    let (mut from_tls, mut to_tls) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Binary(b) = msg
                && to_tls.write_all(&b).await.is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n) = from_tls.read(&mut buf).await {
            if n == 0 {
                break;
            }
            for chunk in buf[..n].chunks(5) {
                if sink
                    .send(Message::Binary(Bytes::copy_from_slice(chunk)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&gw.ca()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(format!("crm.{TD}")).unwrap(),
            theirs,
        )
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(tools_list()))
        .await
        .unwrap()
        .unwrap();
    let (status, _, v) = json_of(resp).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["result"]["tools"].is_array(), "{v}");
    gw.stop().await;
}

#[tokio::test]
async fn plaintext_http_that_is_not_a_websocket_gets_nothing_served() {
    let (gw, seen) = sample_gateway().await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let body = rpc(1, "tools/list", json!({}));
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: crm.{TD}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    // Either closed outright or refused by the WebSocket layer: never an MCP answer, never forwarded.
    let text = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "the connection must end");
    assert!(!text.contains("\"result\""), "{text}");
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(
        seen.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );

    // An inner TLS handshake for a host with no route is refused inside the tunnel as it is directly.
    let client =
        mcp_gateway::demo::client::PinnedClient::new(gw.addr, &format!("nope.{TD}"), &gw.ca())
            .unwrap();
    let mut req = tools_list();
    req.headers_mut()
        .insert("host", format!("nope.{TD}").parse().unwrap());
    let (status, _, v) = json_of(client.send_tunneled(req).await.unwrap()).await;
    assert_eq!(status, 421, "{v}");
    assert_eq!(v["error"]["code"], -32001, "{v}");
    gw.stop().await;
}
