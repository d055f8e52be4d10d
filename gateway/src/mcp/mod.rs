//! Stage 4 — MCP parsing: turns an HTTP request into an [`Inbound`] the policy stage can decide on.
//!
//! Every POST body is read (bounded in size and time) and parsed strictly as JSON-RPC 2.0 before anything is
//! forwarded; media type and content encoding are checked; 2026-07-28 routing headers must match the body.
//! GET (legacy server→client SSE stream, OAuth discovery documents) and DELETE (end of a legacy session)
//! carry no message.

pub mod headers;
pub mod jsonrpc;
pub mod sse;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

pub use headers::HeaderMismatch;
pub use jsonrpc::{Id, Message, ParseError, Payload};

/// What a request asks for, once understood.
#[derive(Debug)]
pub enum Inbound {
    /// POST: one or more JSON-RPC messages. `body` is forwarded byte for byte.
    Post {
        payload: Payload,
        body: Bytes,
        modern: bool,
    },
    /// GET on an MCP endpoint: the legacy server→client SSE stream (or a resumption with `Last-Event-ID`).
    OpenStream,
    /// GET of a document the MCP auth flow needs (`/.well-known/oauth-protected-resource…` and friends).
    Discovery,
    /// DELETE: the client ends its legacy session.
    EndSession,
}

impl Inbound {
    /// The first message's method, for logs.
    pub fn method(&self) -> Option<&str> {
        match self {
            Inbound::Post { payload, .. } => payload.messages().first().and_then(|m| m.method()),
            _ => None,
        }
    }

    /// The message of a single-message POST.
    pub fn single_message(&self) -> Option<&Message> {
        match self {
            Inbound::Post {
                payload: Payload::Single(m),
                ..
            } => Some(m),
            _ => None,
        }
    }

    /// The method of a single-message POST that is a request (has an id).
    pub fn single_request_method(&self) -> Option<&str> {
        match self.single_message()? {
            Message::Request { method, .. } => Some(method),
            _ => None,
        }
    }

    pub fn is_modern(&self) -> bool {
        matches!(self, Inbound::Post { modern: true, .. })
    }

    pub fn first_id(&self) -> Option<&Id> {
        match self {
            Inbound::Post { payload, .. } => payload.messages().first().and_then(|m| m.id()),
            _ => None,
        }
    }
}

/// Why a request is not an MCP request we will forward.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("HTTP method {0} is not used by MCP")]
    MethodNotAllowed(Method),
    #[error("Content-Type must be application/json, got {0:?}")]
    UnsupportedMediaType(String),
    #[error("Content-Encoding {0:?} is not supported; send the body uncompressed")]
    UnsupportedEncoding(String),
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("request body was not received within {0:?}")]
    BodyTimeout(Duration),
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Header(#[from] HeaderMismatch),
}

/// OAuth / OIDC discovery documents the MCP authorization flow fetches from the resource server.
const DISCOVERY_PREFIXES: &[&str] = &[
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];

/// Whether a request fetches an OAuth / OIDC discovery document (which clients fetch before they have a
/// token, so identity is never required for it).
pub fn is_discovery(method: &Method, path: &str) -> bool {
    *method == Method::GET && DISCOVERY_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// Classifies a request without reading its body (GET, DELETE, or the checks a POST must pass first).
pub fn classify(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    max_body: u64,
) -> Result<Option<Inbound>, McpError> {
    match *method {
        Method::POST => {
            check_post_headers(headers, max_body)?;
            Ok(None)
        }
        Method::GET if is_discovery(method, path) => Ok(Some(Inbound::Discovery)),
        Method::GET => Ok(Some(Inbound::OpenStream)),
        Method::DELETE => Ok(Some(Inbound::EndSession)),
        ref m => Err(McpError::MethodNotAllowed(m.clone())),
    }
}

fn check_post_headers(headers: &HeaderMap, max_body: u64) -> Result<(), McpError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(McpError::UnsupportedMediaType(ct.to_owned()));
    }
    for enc in headers.get_all(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?").trim();
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(McpError::UnsupportedEncoding(enc.to_owned()));
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(McpError::TooLarge { limit: max_body });
    }
    Ok(())
}

/// Reads and parses a POST body.
pub async fn read_post(
    headers: &HeaderMap,
    body: Incoming,
    max_body: u64,
    timeout: Duration,
) -> Result<Inbound, McpError> {
    let limited = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX));
    let collected = tokio::time::timeout(timeout, limited.collect())
        .await
        .map_err(|_| McpError::BodyTimeout(timeout))?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                McpError::TooLarge { limit: max_body }
            } else {
                McpError::BodyRead(e.to_string())
            }
        })?;
    let body = collected.to_bytes();
    let payload = jsonrpc::parse(&body)?;
    headers::check(headers, &payload)?;
    let modern = headers::is_modern(headers, &payload);
    Ok(Inbound::Post {
        payload,
        body,
        modern,
    })
}
