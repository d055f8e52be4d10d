//! The outcome record of a forwarded request: what the client got, written when the answer's body has
//! ended (or failed, or the client went away), linked to the decision record by request id.
//!
//! [`Outcome::watch`] watches the answer's body as it passes ([`crate::body_watch`]: nothing is held back,
//! so it never delays the answer). It counts the bytes the client was given and, for the answer to a
//! single `tools/call`, looks for `result.isError`: in a JSON answer (a bounded copy, parsed at the end) or
//! in the response event of an SSE stream (parsed as each event completes). When the body ends it queues
//! the outcome with [`AuditLog::append_later`]; the client never waits for that record.

use std::time::Instant;

use bytes::Bytes;
use http::Response;
use serde::Deserialize;

use crate::audit::{AuditLog, OutcomeRecord, Record};
use crate::body::Body;
use crate::body_watch::{self, Ending, Watcher};
use crate::mcp::sse::{self, EventSplitter};

/// A JSON answer larger than this is passed through without looking for `isError` (`is_error` absent).
const MAX_JSON_SCAN: usize = 1 << 20;

/// What is known when the upstream's answer starts: who to tell, and what to look for.
pub struct Outcome {
    pub log: AuditLog,
    pub request_id: String,
    /// When the gateway received the request.
    pub start: Instant,
    /// Whether the request was a single `tools/call` (then `isError` is looked for).
    pub tool_call: bool,
}

impl Outcome {
    /// Records at once an answer that failed before its body was passed on (e.g. a response filter failed).
    pub fn failed(self, status: Option<u16>, error: String) {
        self.log.append_later(Record::Outcome(OutcomeRecord {
            bytes: None,
            duration_us: None,
            error: Some(error),
            is_error: None,
            latency_us: self.start.elapsed().as_micros() as u64,
            request_id: self.request_id,
            status,
        }));
    }

    /// Wraps `resp`'s body so that its end writes the outcome record.
    pub fn watch(self, resp: Response<Body>) -> Response<Body> {
        let status = resp.status().as_u16();
        let scan = if !self.tool_call || !resp.status().is_success() {
            Scan::Off
        } else if crate::body::is_sse(&resp) {
            Scan::Sse(EventSplitter::default())
        } else {
            Scan::Json(Vec::new())
        };
        let headers_us = self.start.elapsed().as_micros() as u64;
        body_watch::watch(
            resp,
            Pending {
                outcome: self,
                status,
                headers_us,
                bytes: 0,
                is_error: None,
                scan,
            },
        )
    }
}

/// What is learnt of the answer as its body passes; its end writes the outcome record.
struct Pending {
    outcome: Outcome,
    status: u16,
    headers_us: u64,
    bytes: u64,
    is_error: Option<bool>,
    scan: Scan,
}

enum Scan {
    Off,
    /// A copy of the JSON answer so far (dropped, and `Off`, beyond [`MAX_JSON_SCAN`]).
    Json(Vec<u8>),
    Sse(EventSplitter),
}

impl Pending {
    fn saw(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        match &mut self.scan {
            Scan::Off => {}
            Scan::Json(buf) => {
                if buf.len() + chunk.len() > MAX_JSON_SCAN {
                    self.scan = Scan::Off;
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            Scan::Sse(splitter) => {
                splitter.push(chunk);
                while let Some(event) = splitter.next_event() {
                    if let Some(e) = sse::data(&event).as_deref().and_then(is_error_of) {
                        self.is_error = Some(e);
                    }
                }
            }
        }
    }

    fn finish(mut self, error: Option<String>) {
        if let Scan::Json(buf) = std::mem::replace(&mut self.scan, Scan::Off) {
            self.is_error = std::str::from_utf8(&buf).ok().and_then(is_error_of);
        }
        let o = self.outcome;
        o.log.append_later(Record::Outcome(OutcomeRecord {
            bytes: Some(self.bytes),
            duration_us: Some(o.start.elapsed().as_micros() as u64),
            error,
            is_error: self.is_error,
            latency_us: self.headers_us,
            request_id: o.request_id,
            status: Some(self.status),
        }));
    }
}

/// `result.isError` of a JSON-RPC response (`false` when the result leaves it out); `None` for anything
/// that is not a response with a result (a notification, a request, an error response, not JSON).
fn is_error_of(text: &str) -> Option<bool> {
    #[derive(Deserialize)]
    struct Answer {
        result: Option<CallResult>,
    }
    #[derive(Deserialize)]
    struct CallResult {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    let a: Answer = serde_json::from_str(text).ok()?;
    a.result.map(|r| r.is_error)
}

impl Watcher for Pending {
    fn saw(&mut self, chunk: &Bytes) {
        Pending::saw(self, chunk);
    }

    fn ended(self, how: Ending) {
        let error = match how {
            Ending::Complete => None,
            Ending::Failed(e) => Some(format!("the answer's body failed: {e}")),
            Ending::Abandoned => Some(format!(
                "the client went away after {} bytes of the answer",
                self.bytes
            )),
        };
        self.finish(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_error_is_read_from_results_only() {
        assert_eq!(
            is_error_of(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#),
            Some(true)
        );
        assert_eq!(
            is_error_of(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#),
            Some(false)
        );
        assert_eq!(
            is_error_of(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#),
            None
        );
        assert_eq!(
            is_error_of(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#),
            None
        );
        assert_eq!(is_error_of("not json"), None);
    }
}
