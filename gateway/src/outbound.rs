//! One HTTP request to a service the operator configured (the JWKS endpoint of `identity:`, the approval
//! webhook, the OTLP trace receiver of `telemetry:`): `http` or `https` (rustls; the system's roots plus an
//! optional CA file; the URL's host as SNI and certificate name), HTTP/1.1, one connection per request, the
//! answer's body read up to a limit. [`request`] builds its TLS settings per call; a [`Client`] builds them
//! once, for a service called often. Never used for MCP traffic (that is [`crate::forward`], which dials only
//! gated addresses).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;

/// An answer: status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Sends `method uri` with `headers` and `body`; reads at most `max_bytes` of the answer.
pub async fn request(
    uri: &http::Uri,
    ca_file: Option<&Path>,
    method: Method,
    headers: &[(http::HeaderName, String)],
    body: Bytes,
    max_bytes: usize,
) -> Result<Answer, String> {
    let tls = match uri.scheme_str() {
        Some("https") => Some(tls_connector(ca_file)?),
        _ => None,
    };
    exchange(uri, tls.as_ref(), method, headers, body, max_bytes).await
}

/// A client whose TLS settings (the system's roots plus an optional CA file) are read once.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    pub fn new(ca_file: Option<&Path>) -> Result<Client, String> {
        Ok(Client {
            tls: tls_connector(ca_file)?,
        })
    }

    /// As [`request`].
    pub async fn request(
        &self,
        uri: &http::Uri,
        method: Method,
        headers: &[(http::HeaderName, String)],
        body: Bytes,
        max_bytes: usize,
    ) -> Result<Answer, String> {
        exchange(uri, Some(&self.tls), method, headers, body, max_bytes).await
    }
}

async fn exchange(
    uri: &http::Uri,
    tls: Option<&tokio_rustls::TlsConnector>,
    method: Method,
    headers: &[(http::HeaderName, String)],
    body: Bytes,
    max_bytes: usize,
) -> Result<Answer, String> {
    let host = uri.host().ok_or("no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(
            http::header::USER_AGENT,
            concat!("mcp-gateway/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = if https {
        let tls = tls.ok_or("https without TLS settings")?;
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("bad server name: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(TokioIo::new(stream), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    let status = resp.status();
    let body = Limited::new(resp.into_body(), max_bytes)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(Answer { status, body })
}

async fn send<S>(
    io: TokioIo<S>,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        for c in certs {
            let c = c.map_err(|e| format!("CA file {}: {e}", path.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
