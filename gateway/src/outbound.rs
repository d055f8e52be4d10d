//! One HTTP request to a service the operator configured (the JWKS endpoint of `identity:`, the approval
//! webhook, the OTLP trace receiver of `telemetry:`): `http` or `https` (rustls; the system's roots plus an
//! optional CA file; the URL's host as SNI and certificate name), HTTP/1.1, the answer's body read up to a
//! limit. [`request`] builds its TLS settings and its connection per call; a [`Client`] builds them once and
//! keeps its last connection open, for a service called often. Never used for MCP traffic (that is [`crate::forward`], which dials only
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

/// A client whose TLS settings (the system's roots plus an optional CA file) are read once, and which keeps
/// its last connection open for the next request to the same `scheme://authority` (one idle connection: a
/// service called in turn, like the trace exporter, is not dialled per request).
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    idle: Arc<std::sync::Mutex<Option<(String, Sender)>>>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl Client {
    pub fn new(ca_file: Option<&Path>) -> Result<Client, String> {
        Ok(Client {
            tls: tls_connector(ca_file)?,
            idle: Arc::default(),
        })
    }

    /// As [`request`], on the idle connection when there is one for this `scheme://authority`.
    pub async fn request(
        &self,
        uri: &http::Uri,
        method: Method,
        headers: &[(http::HeaderName, String)],
        body: Bytes,
        max_bytes: usize,
    ) -> Result<Answer, String> {
        let target = Target::of(uri)?;
        let key = format!("{}://{}", uri.scheme_str().unwrap_or(""), target.authority);
        let req = build(uri, &target, method, headers, body)?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .filter(|(k, s)| *k == key && !s.is_closed());
        let (mut sender, resp) = match idle {
            Some((_, mut sender)) => match sender.try_send_request(req).await {
                Ok(resp) => (sender, resp),
                // The server closed the idle connection before the request went out: it was not sent, so
                // sending it on a fresh connection cannot duplicate it.
                Err(mut e) => match e.take_message() {
                    Some(req) => {
                        let mut sender = connect(&target, Some(&self.tls)).await?;
                        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                        (sender, resp)
                    }
                    None => return Err(e.into_error().to_string()),
                },
            },
            None => {
                let mut sender = connect(&target, Some(&self.tls)).await?;
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                (sender, resp)
            }
        };
        let answer = read(resp, max_bytes).await?;
        // Read to its end: the connection can carry the next request (unless the server is closing it).
        let ready =
            tokio::time::timeout(std::time::Duration::from_millis(100), sender.ready()).await;
        if matches!(ready, Ok(Ok(()))) {
            *self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((key, sender));
        }
        Ok(answer)
    }
}

/// Where a URL points.
struct Target {
    host: String,
    port: u16,
    https: bool,
    authority: String,
}

impl Target {
    fn of(uri: &http::Uri) -> Result<Target, String> {
        let host = uri.host().ok_or("no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| host.clone());
        Ok(Target {
            host,
            port,
            https,
            authority,
        })
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
    let target = Target::of(uri)?;
    let req = build(uri, &target, method, headers, body)?;
    let mut sender = connect(&target, tls).await?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    read(resp, max_bytes).await
}

fn build(
    uri: &http::Uri,
    target: &Target,
    method: Method,
    headers: &[(http::HeaderName, String)],
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, String> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, &target.authority)
        .header(
            http::header::USER_AGENT,
            concat!("mcp-gateway/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(Full::new(body)).map_err(|e| e.to_string())
}

/// A new HTTP/1.1 connection to `target` (TLS for https, the host as SNI and certificate name).
async fn connect(
    target: &Target,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Sender, String> {
    let (host, port) = (target.host.as_str(), target.port);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    if target.https {
        let tls = tls.ok_or("https without TLS settings")?;
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("bad server name: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        handshake(TokioIo::new(stream)).await
    } else {
        handshake(TokioIo::new(tcp)).await
    }
}

async fn handshake<S>(io: TokioIo<S>) -> Result<Sender, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn read(
    resp: http::Response<hyper::body::Incoming>,
    max_bytes: usize,
) -> Result<Answer, String> {
    let status = resp.status();
    let body = Limited::new(resp.into_body(), max_bytes)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(Answer { status, body })
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
