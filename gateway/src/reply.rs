//! The one place that turns errors into wire responses.
//!
//! Transport-level refusals (routing, IP gate, malformed or oversized bodies, header mismatch, upstream down)
//! are HTTP errors with a JSON-RPC error body naming the gateway request id; internals (addresses, resolver
//! errors) stay in the log. Policy decisions never come through here as HTTP 4xx: they are MCP answers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::ctx::RequestCtx;
use crate::forward::ForwardError;
use crate::mcp::McpError;
use crate::route::RouteError;
use crate::upstream_gate::GateError;

/// Every response body the gateway sends: its own (full) or the upstream's (streamed).
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Everything that can stop a request before or while forwarding.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Mcp(#[from] McpError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// JSON-RPC codes for gateway transport errors (implementation-defined server-error range).
mod code {
    pub const ROUTING: i64 = -32001;
    pub const IP_GATE: i64 = -32002;
    pub const UPSTREAM: i64 = -32003;
    pub const REQUEST: i64 = -32600;
}

impl GatewayError {
    /// Short machine-readable reason, also used in logs and (later) audit records.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Route(RouteError::NoRoute { .. }) => "no_route",
            GatewayError::Route(RouteError::SniMismatch { .. } | RouteError::MissingSni) => {
                "sni_mismatch"
            }
            GatewayError::Route(_) => "bad_host",
            GatewayError::Gate(GateError::NotAllowed { .. }) => "ip_not_allowed",
            GatewayError::Gate(_) => "upstream_unresolvable",
            GatewayError::Mcp(McpError::Parse(_)) => "parse_error",
            GatewayError::Mcp(McpError::Header(_)) => "header_mismatch",
            GatewayError::Mcp(McpError::TooLarge { .. }) => "body_too_large",
            GatewayError::Mcp(_) => "bad_request",
            GatewayError::Forward(ForwardError::Timeout { .. }) => "upstream_timeout",
            GatewayError::Forward(_) => "upstream_unavailable",
        }
    }

    fn status_code_message(&self, ctx: &RequestCtx) -> (StatusCode, i64, String) {
        let route = ctx.route.as_deref().unwrap_or("?");
        match self {
            GatewayError::Route(e @ RouteError::NoRoute { host }) => {
                let _ = e;
                (
                    StatusCode::MISDIRECTED_REQUEST,
                    code::ROUTING,
                    format!("No route configured for host '{host}'"),
                )
            }
            GatewayError::Route(RouteError::SniMismatch { host, sni }) => (
                StatusCode::MISDIRECTED_REQUEST,
                code::ROUTING,
                format!(
                    "Host '{host}' does not match TLS SNI '{sni}'; requests are only served for the host the connection was opened for"
                ),
            ),
            GatewayError::Route(e) => (
                StatusCode::MISDIRECTED_REQUEST,
                code::ROUTING,
                capitalize(&e.to_string()),
            ),
            GatewayError::Gate(GateError::NotAllowed { .. }) => (
                StatusCode::BAD_GATEWAY,
                code::IP_GATE,
                format!(
                    "IP validation failed: the upstream address of route '{route}' is not in allowed_ips"
                ),
            ),
            GatewayError::Gate(_) => (
                StatusCode::BAD_GATEWAY,
                code::IP_GATE,
                format!("Cannot resolve the upstream of route '{route}'"),
            ),
            GatewayError::Mcp(e) => {
                let status = match e {
                    McpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
                    McpError::UnsupportedMediaType(_) | McpError::UnsupportedEncoding(_) => {
                        StatusCode::UNSUPPORTED_MEDIA_TYPE
                    }
                    McpError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    McpError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
                    _ => StatusCode::BAD_REQUEST,
                };
                let code = match e {
                    McpError::Parse(p) => p.code(),
                    McpError::Header(_) => crate::mcp::HeaderMismatch::CODE,
                    _ => code::REQUEST,
                };
                (status, code, e.to_string())
            }
            GatewayError::Forward(ForwardError::Timeout { timeout, .. }) => (
                StatusCode::GATEWAY_TIMEOUT,
                code::UPSTREAM,
                format!("The upstream of route '{route}' did not answer within {timeout:?}"),
            ),
            GatewayError::Forward(_) => (
                StatusCode::BAD_GATEWAY,
                code::UPSTREAM,
                format!("The upstream of route '{route}' is unavailable"),
            ),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The wire response for an error.
pub fn error(ctx: &RequestCtx, err: &GatewayError) -> Response<Body> {
    let (status, code, message) = err.status_code_message(ctx);
    let mut data = json!({ "request_id": ctx.id_str(), "reason": err.kind() });
    if let GatewayError::Route(
        RouteError::NoRoute { host } | RouteError::SniMismatch { host, .. },
    ) = err
    {
        data["host"] = Value::String(host.clone());
    }
    let body = json!({
        "jsonrpc": "2.0",
        "id": ctx.rpc_id.as_ref().map(|i| i.to_value()).unwrap_or(Value::Null),
        "error": { "code": code, "message": message, "data": data },
    });
    let mut resp = json_response(status, &body);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    }
    resp
}

/// A gateway-made JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
