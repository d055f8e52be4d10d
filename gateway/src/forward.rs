//! Stage 6 — forwarding: sends a [`Permitted`] request to the route's upstream over a pooled connection to an
//! address the IP gate checked, and streams the answer back (SSE event by event, never buffered).
//!
//! `Host` is rewritten to the upstream authority (SDK servers reject foreign hosts), the original goes in
//! `X-Forwarded-Host`; hop-by-hop headers are dropped; `Accept` is normalised to what MCP servers require.
//! Only the response *headers* are bounded in time: long-lived streams are never cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::audit_stage::Recorded;
use crate::config::{Limits, Scheme, UpstreamUrl};
use crate::ctx::{REQUEST_ID_HEADER, RequestCtx};
use crate::mcp::Inbound;
use crate::upstream_gate::GatedAddrs;

/// Why the upstream could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream {upstream} unavailable: {source}")]
    Unavailable {
        upstream: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {upstream} sent no response headers within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    #[error("cannot build upstream request: {0}")]
    Request(#[from] http::Error),
}

/// Why the gateway's own `tools/list` to the upstream gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Upstream(String),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
}

/// The pooled client of one route.
#[derive(Debug)]
pub struct UpstreamClient {
    client: Client<UpstreamConnector, Full<Bytes>>,
    upstream: UpstreamUrl,
    host_header: HeaderValue,
    response_timeout: Duration,
    /// Whether the caller's `Authorization` header goes upstream (`identity.forward_authorization`).
    forward_authorization: bool,
}

impl UpstreamClient {
    /// `tls` is required for `https://` upstreams.
    pub fn new(
        upstream: &UpstreamUrl,
        tls: Option<Arc<rustls::ClientConfig>>,
        limits: &Limits,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(limits.upstream_connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = match upstream.scheme {
            Scheme::Https => {
                let name =
                    ServerName::try_from(upstream.host.clone()).expect("validated host name");
                Some((
                    TlsConnector::from(tls.expect("https upstream has a TLS config")),
                    name,
                ))
            }
            Scheme::Http => None,
        };
        let connector = UpstreamConnector { http, tls };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        UpstreamClient {
            client,
            upstream: upstream.clone(),
            host_header: HeaderValue::from_str(&upstream.authority()).expect("validated authority"),
            response_timeout: limits.upstream_response_timeout,
            forward_authorization: true,
        }
    }

    /// Removes the caller's `Authorization` header from everything sent upstream (`forward_authorization:
    /// false`: the token was for the gateway, the upstream must not see it).
    pub fn without_authorization(mut self) -> Self {
        self.forward_authorization = false;
        self
    }

    /// Forwards a permitted request whose decision is recorded to the first gated address that accepts a
    /// connection.
    pub async fn send(
        &self,
        ctx: &RequestCtx,
        addrs: &GatedAddrs,
        recorded: Recorded,
        parts: http::request::Parts,
    ) -> Result<Response<Incoming>, ForwardError> {
        let body = match recorded.permitted().inbound() {
            Inbound::Post { body, .. } => body.clone(),
            Inbound::OpenStream | Inbound::Discovery | Inbound::EndSession => Bytes::new(),
        };
        let headers = self.upstream_headers(ctx, &parts);
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut last_err = None;
        for addr in addrs.addrs() {
            let mut req = Request::builder()
                .method(parts.method.clone())
                .uri(self.uri(*addr, path)?)
                .body(Full::new(body.clone()))?;
            *req.headers_mut() = headers.clone();
            let sent = tokio::time::timeout(self.response_timeout, self.client.request(req)).await;
            match sent {
                Err(_) => {
                    return Err(ForwardError::Timeout {
                        upstream: self.upstream.to_string(),
                        timeout: self.response_timeout,
                    });
                }
                Ok(Ok(mut resp)) => {
                    clean_response_headers(resp.headers_mut());
                    return Ok(resp);
                }
                // Nothing was sent on a failed connect, so the next address may be tried.
                Ok(Err(e)) if e.is_connect() => last_err = Some(e),
                Ok(Err(e)) => {
                    return Err(ForwardError::Unavailable {
                        upstream: self.upstream.to_string(),
                        source: e,
                    });
                }
            }
        }
        Err(ForwardError::Unavailable {
            upstream: self.upstream.to_string(),
            source: last_err.expect("GatedAddrs is never empty"),
        })
    }

    /// Asks the upstream for its whole tool list (every page), as the client would on its session: the
    /// client's session id, protocol version and credentials go along. Used when a `tools/call` names a tool
    /// the catalogue has not seen, so policies get its annotations and schema.
    pub async fn fetch_tool_list(
        &self,
        ctx: &RequestCtx,
        addrs: &GatedAddrs,
        client: &http::request::Parts,
        meta: Option<&serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>, FetchError> {
        use http_body_util::BodyExt;
        const MAX_PAGES: usize = 50;
        const MAX_BYTES: usize = 32 << 20;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let addr = *addrs.addrs().first().expect("GatedAddrs is never empty");
        for page in 0..MAX_PAGES {
            let mut params = serde_json::json!({});
            if let Some(c) = &cursor {
                params["cursor"] = c.clone().into();
            }
            if let Some(m) = meta {
                params["_meta"] = m.clone();
            }
            let id = format!("mcp-gateway-catalogue-{page}");
            let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params}).to_string();
            let mcp_method = meta.is_some().then_some("tools/list");
            let resp = self
                .post_internal(
                    addr,
                    client.uri.path(),
                    &client.headers,
                    Some(&ctx.id),
                    mcp_method,
                    body,
                )
                .await?;
            if !resp.status().is_success() {
                return Err(FetchError::Upstream(format!("HTTP {}", resp.status())));
            }
            let is_sse = crate::body::is_sse(&resp);
            let bytes = tokio::time::timeout(
                self.response_timeout,
                http_body_util::Limited::new(resp.into_body(), MAX_BYTES).collect(),
            )
            .await
            .map_err(|_| FetchError::Upstream("timed out".into()))?
            .map_err(|e| FetchError::Upstream(e.to_string()))?
            .to_bytes();
            let answer = if is_sse {
                let mut split = crate::mcp::sse::EventSplitter::default();
                split.push(&bytes);
                std::iter::from_fn(|| split.next_event().or_else(|| split.finish()))
                    .filter_map(|ev| crate::mcp::sse::data(&ev))
                    .filter_map(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                    .find(|v| v.get("id").and_then(|i| i.as_str()) == Some(id.as_str()))
            } else {
                serde_json::from_slice(&bytes).ok()
            };
            let answer = answer
                .ok_or_else(|| FetchError::Upstream("no tools/list result in the answer".into()))?;
            let result = answer.get("result").ok_or_else(|| {
                FetchError::Upstream(format!(
                    "tools/list failed: {}",
                    answer.get("error").cloned().unwrap_or_default()
                ))
            })?;
            tools.extend(
                result
                    .get("tools")
                    .and_then(|t| t.as_array())
                    .cloned()
                    .unwrap_or_default(),
            );
            cursor = result
                .get("nextCursor")
                .and_then(|c| c.as_str())
                .map(str::to_owned);
            if cursor.is_none() {
                return Ok(tools);
            }
        }
        Ok(tools)
    }

    /// Posts a JSON-RPC message to the upstream on the client's session (its session id, protocol version and
    /// credentials), as the client would; for answers the gateway gives on the client's behalf.
    pub async fn post_message(
        &self,
        addrs: &GatedAddrs,
        client: &HeaderMap,
        path: &str,
        body: String,
    ) -> Result<http::StatusCode, FetchError> {
        let addr = *addrs.addrs().first().expect("GatedAddrs is never empty");
        let id = client.get(REQUEST_ID_HEADER).cloned();
        Ok(self
            .post_internal(addr, path, client, id.as_ref(), None, body)
            .await?
            .status())
    }

    /// A POST the gateway itself makes on the client's session: the client's session id, protocol version and
    /// credentials go along, with the gateway request id and (modern era) the `Mcp-Method` header.
    async fn post_internal(
        &self,
        addr: SocketAddr,
        path: &str,
        client: &HeaderMap,
        request_id: Option<&HeaderValue>,
        mcp_method: Option<&'static str>,
        body: String,
    ) -> Result<Response<Incoming>, FetchError> {
        let mut req = Request::builder()
            .method(http::Method::POST)
            .uri(self.uri(addr, path)?)
            .body(Full::new(Bytes::from(body)))?;
        let h = req.headers_mut();
        for name in ["mcp-session-id", "mcp-protocol-version", "authorization"] {
            if name == "authorization" && !self.forward_authorization {
                continue;
            }
            if let Some(v) = client.get(name) {
                h.insert(HeaderName::from_static(name), v.clone());
            }
        }
        if let Some(id) = request_id {
            h.insert(HeaderName::from_static(REQUEST_ID_HEADER), id.clone());
        }
        if let Some(m) = mcp_method {
            h.insert(
                HeaderName::from_static("mcp-method"),
                HeaderValue::from_static(m),
            );
        }
        h.insert(header::HOST, self.host_header.clone());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        tokio::time::timeout(self.response_timeout, self.client.request(req))
            .await
            .map_err(|_| FetchError::Upstream("timed out".into()))?
            .map_err(|e| FetchError::Upstream(e.to_string()))
    }

    fn uri(&self, addr: SocketAddr, path: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.upstream.scheme.as_str())
            .authority(addr.to_string())
            .path_and_query(path)
            .build()
    }

    fn upstream_headers(&self, ctx: &RequestCtx, parts: &http::request::Parts) -> HeaderMap {
        let mut h = parts.headers.clone();
        strip_hop_by_hop(&mut h);
        h.remove(header::CONTENT_LENGTH); // recomputed from the body
        if !self.forward_authorization {
            h.remove(header::AUTHORIZATION);
        }
        h.insert(header::HOST, self.host_header.clone());
        if let Some(host) = ctx
            .host
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        let peer = ctx.conn.peer.ip().to_canonical().to_string();
        let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {peer}"),
            None => peer,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https"),
        );
        h.insert(HeaderName::from_static(REQUEST_ID_HEADER), ctx.id.clone());
        normalize_accept(&mut h, &parts.method);
        h
    }
}

/// MCP servers require `Accept` to list both JSON and SSE on POST and SSE on GET; some clients send `*/*`.
fn normalize_accept(h: &mut HeaderMap, method: &http::Method) {
    let accept = h
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let has = |t: &str| {
        accept.split(',').any(|p| {
            p.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(t)
        })
    };
    let wanted = match *method {
        http::Method::POST if !(has("application/json") && has("text/event-stream")) => {
            "application/json, text/event-stream"
        }
        http::Method::GET if !has("text/event-stream") && (accept.is_empty() || has("*/*")) => {
            "text/event-stream"
        }
        _ => return,
    };
    h.insert(header::ACCEPT, HeaderValue::from_static(wanted));
}

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in HOP_BY_HOP.iter().chain(named.iter()) {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

fn clean_response_headers(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    if crate::body::is_sse_headers(h) {
        h.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
}

/// Dials exactly the address in the URI (a gated IP literal) and, for `https`, speaks TLS with the upstream's
/// configured host name as SNI.
#[derive(Clone)]
struct UpstreamConnector {
    http: HttpConnector,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("tls", &self.tls.as_ref().map(|t| &t.1))
            .finish()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let stream = match tls {
                None => UpstreamStream::Plain(tcp),
                Some((connector, name)) => {
                    UpstreamStream::Tls(Box::new(connector.connect(name, tcp).await?))
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}

enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The rustls client config for `https://` upstreams: `upstream.tls.ca_file` and/or the system roots.
pub fn upstream_tls_config(
    tls: &crate::config::UpstreamTls,
) -> Result<Arc<rustls::ClientConfig>, io::Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read upstream.tls.ca_file {}: {e}", path.display()),
            )
        })?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        }
        if roots.is_empty() {
            return Err(io::Error::other(format!(
                "upstream.tls.ca_file {} holds no certificate",
                path.display()
            )));
        }
    }
    if tls.include_system_cas {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_normalised_for_mcp_servers() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        normalize_accept(&mut h, &http::Method::POST);
        assert_eq!(h[header::ACCEPT], "application/json, text/event-stream");
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream, application/json;q=0.9"),
        );
        normalize_accept(&mut h, &http::Method::POST);
        assert_eq!(
            h[header::ACCEPT],
            "text/event-stream, application/json;q=0.9"
        );
        let mut h = HeaderMap::new();
        normalize_accept(&mut h, &http::Method::GET);
        assert_eq!(h[header::ACCEPT], "text/event-stream");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("mcp-session-id", HeaderValue::from_static("s"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["authorization", "mcp-session-id"]);
    }
}
