//! 2026-07-28 routing headers (`Mcp-Method`, `Mcp-Name`) checked against the body.
//!
//! Decisions are made from the body only; the headers are a fast path for intermediaries, so when present they
//! must say exactly what the body says, and in the modern era they must be present. Values that are not
//! header-safe arrive as `=?base64?…?=`.

use base64::Engine;
use http::HeaderMap;

use super::jsonrpc::{Message, Payload};

/// The first protocol version whose requests carry routing headers.
pub const MODERN_VERSION: &str = "2026-07-28";
const META_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// A header that disagrees with the body (answered with HTTP 400 and JSON-RPC `-32020`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Header mismatch: {0}")]
pub struct HeaderMismatch(pub String);

impl HeaderMismatch {
    pub const CODE: i64 = -32020;
}

/// Whether a request belongs to the stateless 2026-07-28 era (by header or by the body's `_meta`).
pub fn is_modern(headers: &HeaderMap, payload: &Payload) -> bool {
    let by_header = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() >= MODERN_VERSION);
    let by_meta = payload.messages().iter().any(|m| {
        m.params()
            .and_then(|p| p.get("_meta"))
            .and_then(|meta| meta.get(META_VERSION_KEY))
            .and_then(|v| v.as_str())
            .is_some_and(|v| v >= MODERN_VERSION)
    });
    by_header || by_meta
}

/// The body field `Mcp-Name` mirrors, for the methods that have one.
pub fn target_name(method: &str, params: Option<&serde_json::Value>) -> Option<&'static str> {
    let _ = params;
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Checks `Mcp-Method` / `Mcp-Name` against the body.
pub fn check(headers: &HeaderMap, payload: &Payload) -> Result<(), HeaderMismatch> {
    let method_h = single_header(headers, "mcp-method")?;
    let name_h = single_header(headers, "mcp-name")?;
    let modern = is_modern(headers, payload);
    let msg = match payload {
        Payload::Single(m) => m,
        Payload::Batch(_) if method_h.is_none() && name_h.is_none() => return Ok(()),
        Payload::Batch(_) => {
            return Err(HeaderMismatch(
                "Mcp-Method/Mcp-Name cannot describe a batch".into(),
            ));
        }
    };
    let Some(method) = msg.method() else {
        // A client's response to a server request has no method; routing headers would be meaningless.
        return match (method_h, name_h) {
            (None, None) => Ok(()),
            _ => Err(HeaderMismatch(
                "routing headers on a JSON-RPC response".into(),
            )),
        };
    };
    match method_h {
        Some(h) if h != method => {
            return Err(HeaderMismatch(format!(
                "Mcp-Method header {h:?} does not match body method {method:?}"
            )));
        }
        None if modern => {
            return Err(HeaderMismatch(format!(
                "Mcp-Method header is required (body method {method:?})"
            )));
        }
        _ => {}
    }
    match target_name(method, msg.params()) {
        Some(field) => {
            let body_value = msg
                .params()
                .and_then(|p| p.get(field))
                .and_then(|v| v.as_str());
            match (name_h, body_value) {
                (Some(h), Some(b)) if h == b => Ok(()),
                (Some(h), b) => Err(HeaderMismatch(format!(
                    "Mcp-Name header {h:?} does not match params.{field} {}",
                    b.map(|b| format!("{b:?}"))
                        .unwrap_or_else(|| "(absent)".into())
                ))),
                (None, _) if modern => Err(HeaderMismatch(format!(
                    "Mcp-Name header is required for {method}"
                ))),
                (None, _) => Ok(()),
            }
        }
        None if matches!(msg, Message::Request { .. } | Message::Notification { .. })
            && name_h.is_some() =>
        {
            Err(HeaderMismatch(format!(
                "Mcp-Name header sent for {method}, which has no name"
            )))
        }
        None => Ok(()),
    }
}

/// A header that must appear at most once, decoded from `=?base64?…?=` when so written.
fn single_header(
    headers: &HeaderMap,
    name: &'static str,
) -> Result<Option<String>, HeaderMismatch> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderMismatch(format!(
            "{name} header appears more than once"
        )));
    }
    let raw = v
        .to_str()
        .map_err(|_| HeaderMismatch(format!("{name} header is not visible ASCII")))?
        .trim();
    decode(raw)
        .map(Some)
        .ok_or_else(|| HeaderMismatch(format!("{name} header {raw:?} cannot be decoded")))
}

fn decode(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests;
