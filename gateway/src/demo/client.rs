//! A minimal HTTPS client that dials a fixed address while using a chosen host name for SNI and certificate
//! checks (like `curl --resolve`), trusting a given CA. Used by the demo and the in-process tests.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Clone)]
pub struct PinnedClient {
    addr: SocketAddr,
    sni: ServerName<'static>,
    tls: TlsConnector,
}

impl PinnedClient {
    /// `sni` is also what the certificate is checked against; the `Host` header is set per request.
    pub fn new(addr: SocketAddr, sni: &str, ca_pem: &[u8]) -> anyhow::Result<Self> {
        Self::with_alpn(addr, sni, ca_pem, b"http/1.1")
    }

    /// Like [`PinnedClient::new`], offering one ALPN protocol (`h2` makes [`PinnedClient::send_h2`] usable).
    pub fn with_alpn(
        addr: SocketAddr,
        sni: &str,
        ca_pem: &[u8],
        alpn: &[u8],
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(PinnedClient {
            addr,
            sni: ServerName::try_from(sni.to_owned())?,
            tls: TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// Sends one request on a fresh connection (HTTP/1.1) and returns the response with its body unread.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let tls = self.tls.connect(self.sni.clone(), tcp).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender.send_request(req).await?)
    }
}

impl PinnedClient {
    /// Sends one request (HTTP/1.1) the way cloudflared delivers it: a plaintext WebSocket to the listener
    /// whose binary messages carry the TLS connection (see [`crate::tunnel`]).
    pub async fn send_tunneled(
        &self,
        req: Request<Full<Bytes>>,
    ) -> anyhow::Result<Response<Incoming>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/", self.addr), tcp).await?;
        let tls = self
            .tls
            .connect(self.sni.clone(), crate::tunnel::bytes_of(ws))
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender.send_request(req).await?)
    }

    /// Sends one request over HTTP/2 (the URI must be absolute: it becomes `:authority`).
    pub async fn send_h2(&self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let tls = self.tls.connect(self.sni.clone(), tcp).await?;
        anyhow::ensure!(
            tls.get_ref().1.alpn_protocol() == Some(b"h2"),
            "server did not negotiate h2"
        );
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await?;
        tokio::spawn(conn);
        Ok(sender.send_request(req).await?)
    }
}

/// A JSON POST to `https://{host}{path}` with the MCP `Accept` header and extra headers.
pub fn post(
    host: &str,
    path: &str,
    body: impl Into<Bytes>,
    extra: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).expect("valid request")
}
