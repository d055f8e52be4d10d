//! Response filters: what the agent may see of the upstream's answers, on routes with a `policies:` block.
//!
//! The rule: **an answer the gateway cannot decide on is never passed.** Every answer body on a policed route
//! — JSON or SSE, any HTTP status, a POST's answer or a `GET` stream (resumption, server pushes, the
//! 2024-11-05 HTTP+SSE transport) — is read as JSON-RPC and judged by what it contains, not by what was
//! asked ([`judge`]):
//!
//! - every listing in it (`tools`, `resources`, `resourceTemplates`, `prompts` of any result, single or in a
//!   batch, every page) loses what the chain hides ([`listing`]);
//! - every request the server makes of the client (sampling, elicitation, roots), single or batched, is
//!   decided by the chain; a refused one never reaches the client and the server gets an error answer
//!   ([`server_requests`]); tool definitions inside it (sampling's `tools`) lose the hidden ones too.
//!
//! What cannot be read strictly (not UTF-8, a byte-order mark, `NaN`, a lone surrogate, a duplicate key, nesting
//! past the parser's limit, JSON split across SSE events, a compressed body) is refused: a JSON body with a 502,
//! an SSE event by ending the stream with an error for every request still waiting on it ([`stream`]).
//! SSE streams are rewritten event by event as they arrive: never buffered, never cut.

pub mod judge;
pub mod listing;
pub mod server_requests;
mod stream;

use http::{Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::body::{Body, ChannelBody, is_sse};
use crate::mcp::jsonrpc;
pub use listing::Listing;

/// Largest JSON answer the gateway buffers to judge.
const MAX_JSON_BYTES: usize = 32 << 20;

/// Why an upstream answer was withheld.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("the upstream answer could not be read: {0}")]
    Read(String),
    #[error("the upstream answer is not JSON the gateway can decide on: {0}")]
    NotJson(String),
    #[error("the upstream answer is encoded ({0}), which the gateway does not decode")]
    Encoded(String),
    #[error("the upstream answered with a request the policies refused")]
    Withheld,
}

/// What to do to one upstream response.
pub struct ResponseFilter {
    /// Filters listings.
    pub listing: Listing,
    /// Polices server→client requests.
    pub police: server_requests::Police,
    /// The JSON-RPC ids of the requests the client's POST carried (empty for a `GET` stream): what an
    /// answer stream refused midway still owes the client.
    pub pending: Vec<Value>,
}

/// Applies `f` to a response: SSE streams event by event, any other body buffered (bounded) and judged.
pub async fn apply(
    resp: Response<Incoming>,
    f: ResponseFilter,
) -> Result<Response<Body>, FilterError> {
    let judged = judge_body(resp, f).await;
    if judged.is_err() {
        crate::metrics::COUNTERS
            .unfilterable_events
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    judged
}

async fn judge_body(
    resp: Response<Incoming>,
    f: ResponseFilter,
) -> Result<Response<Body>, FilterError> {
    if let Some(enc) = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|e| !e.is_empty() && e != "identity")
    {
        return Err(FilterError::Encoded(enc));
    }
    if is_sse(&resp) {
        let (mut parts, body) = resp.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH); // events may be rewritten or withheld
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(stream::filter(body, f, tx));
        return Ok(Response::from_parts(parts, ChannelBody(rx).boxed()));
    }
    apply_json(resp, &f).await
}

/// A non-SSE answer: buffered (bounded); when it is (or claims to be, or looks like) JSON it must parse
/// strictly and is judged; anything else (an empty 202, an HTML error page) carries no message and passes.
async fn apply_json(
    resp: Response<Incoming>,
    f: &ResponseFilter,
) -> Result<Response<Body>, FilterError> {
    let (mut parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_JSON_BYTES)
        .collect()
        .await
        .map_err(|e| FilterError::Read(e.to_string()))?
        .to_bytes();
    let claims_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let t = v.split(';').next().unwrap_or("").trim();
            t.eq_ignore_ascii_case("application/json") || t.to_ascii_lowercase().ends_with("+json")
        });
    if bytes.iter().all(u8::is_ascii_whitespace) || !(claims_json || looks_like_json(&bytes)) {
        return Ok(Response::from_parts(parts, crate::body::full(bytes)));
    }
    let mut v = jsonrpc::parse_value(&bytes).map_err(|e| FilterError::NotJson(e.to_string()))?;
    let judged = judge::judge(&mut v, f).await;
    if judged.withheld {
        return Err(FilterError::Withheld);
    }
    if !judged.changed {
        return Ok(Response::from_parts(parts, crate::body::full(bytes)));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if judged.listing {
        parts.headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-store"),
        );
    }
    let out = serde_json::to_vec(&v).expect("JSON serialises");
    Ok(Response::from_parts(parts, crate::body::full(out)))
}

/// Whether a client might read `b` as JSON: an object or array after whitespace or a UTF-8 byte-order mark,
/// or text in a UTF-16/32 encoding (a byte-order mark or a NUL among the first bytes), which lenient JSON
/// readers detect.
fn looks_like_json(b: &[u8]) -> bool {
    if b.starts_with(b"\xEF\xBB\xBF") || b.starts_with(b"\xFF\xFE") || b.starts_with(b"\xFE\xFF") {
        return true;
    }
    if b.iter().take(4).any(|&c| c == 0) {
        return true;
    }
    matches!(
        b.iter().find(|c| !c.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(test)]
mod tests {
    use super::looks_like_json;

    #[test]
    fn what_a_lenient_client_could_read_as_json() {
        for yes in [
            &b"{}"[..],
            b"  [1]",
            b"\xEF\xBB\xBF{}",
            b"\xFF\xFE{\x00",
            b"\x00{\x00\x00",
        ] {
            assert!(looks_like_json(yes), "{yes:?}");
        }
        for no in [&b"Internal Server Error"[..], b"<html>", b"Accepted"] {
            assert!(!looks_like_json(no), "{no:?}");
        }
    }
}
