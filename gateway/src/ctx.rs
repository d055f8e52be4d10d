//! Per-connection and per-request context: what earlier stages learned, for later stages, logs and replies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use crate::identity::Principal;
use crate::mcp::{Id, Inbound};

/// Header carrying the gateway request id, sent upstream and back to the client.
pub const REQUEST_ID_HEADER: &str = "x-gateway-request-id";

/// What the TLS handshake established for a connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// SNI host name the client asked for, if any.
    pub sni: Option<String>,
}

/// One request's context. (`Clone`: a call held for approval on an SSE stream continues on its own task.)
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// Time-ordered unique id (UUIDv7): the key of logs and, later, of audit records.
    pub id: HeaderValue,
    pub start: Instant,
    pub conn: Arc<ConnInfo>,
    pub http_method: http::Method,
    pub path: String,
    /// Normalised host, once routed.
    pub host: Option<String>,
    /// Route key, once routed.
    pub route: Option<String>,
    /// Index of the route in the gateway that serves this request, once routed.
    pub route_index: Option<usize>,
    /// First JSON-RPC method and id, once parsed.
    pub mcp_method: Option<String>,
    pub rpc_id: Option<Id>,
    /// Status the upstream answered with, if forwarded.
    pub upstream_status: Option<u16>,
    /// `Mcp-Session-Id` of a legacy-era request.
    pub session_id: Option<String>,
    /// `MCP-Protocol-Version` header (or the modern body's `_meta` version).
    pub protocol_version: Option<String>,
    /// The chain's outcome, once decided (for the access log).
    pub decision: Option<&'static str>,
    /// The verified caller, set by the identity stage (a [`Principal`] can only be made there); `None`:
    /// anonymous, or no `identity:` configured.
    pub principal: Option<Principal>,
    /// This request's root span (off without `telemetry.otlp:`); stages hang their spans below it.
    pub trace: crate::otel::Trace,
    /// Spans that end with the answer's body, as the root does (the `upstream` span; see `otel::body`).
    pub until_body_end: Vec<crate::otel::Trace>,
}

impl RequestCtx {
    pub fn new(conn: Arc<ConnInfo>, method: &http::Method, path: &str) -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        RequestCtx {
            id: HeaderValue::from_str(&id).expect("uuid is a valid header value"),
            start: Instant::now(),
            conn,
            http_method: method.clone(),
            path: path.to_owned(),
            host: None,
            route: None,
            route_index: None,
            mcp_method: None,
            rpc_id: None,
            upstream_status: None,
            session_id: None,
            protocol_version: None,
            decision: None,
            principal: None,
            trace: Default::default(),
            until_body_end: Vec::new(),
        }
    }

    pub fn id_str(&self) -> &str {
        self.id.to_str().unwrap_or("-")
    }

    /// Records what the parse stage found.
    pub fn note(&mut self, headers: &http::HeaderMap, inbound: &Inbound) {
        self.mcp_method = inbound.method().map(str::to_owned);
        self.rpc_id = inbound.first_id().cloned();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.session_id = header("mcp-session-id");
        self.protocol_version = header("mcp-protocol-version").or_else(|| match inbound {
            Inbound::Post { modern: true, .. } => {
                Some(crate::mcp::headers::MODERN_VERSION.to_owned())
            }
            _ => None,
        });
    }
}
