//! Spans that last as long as the answer's body: the request's root span and the `upstream` span end when
//! the client has been given the last byte (or the body failed, or the client went away), not when the
//! headers were sent. For an SSE stream (a progress stream, a call held for approval) that is the time the
//! caller actually waited.
//!
//! Only sampled requests are watched ([`until_body_ends`] returns the response as it is otherwise), so an
//! unsampled or untraced request pays nothing.

use http::Response;

use super::Trace;
use crate::body::Body;
use crate::body_watch::{self, Ending, Watcher};

/// Ends `spans` when `resp`'s body ends; the first of them (the request's root) also gets
/// `http.response.body.size`. Spans that are not recording are ended at once.
pub fn until_body_ends(resp: Response<Body>, spans: Vec<Trace>) -> Response<Body> {
    use hyper::body::Body as _;
    // An empty body (202, 204, …) may never be polled: nothing to wait for.
    if !spans.iter().any(Trace::recording) || resp.body().is_end_stream() {
        for s in spans.iter().rev() {
            s.end();
        }
        return resp;
    }
    body_watch::watch(resp, Spans { spans, bytes: 0 })
}

struct Spans {
    spans: Vec<Trace>,
    bytes: u64,
}

impl Watcher for Spans {
    fn saw(&mut self, chunk: &bytes::Bytes) {
        self.bytes += chunk.len() as u64;
    }

    fn ended(self, how: Ending) {
        if let Some(root) = self.spans.first() {
            root.set("http.response.body.size", self.bytes as i64);
        }
        // Children (pushed after the root) end first, so that they end within it.
        for s in self.spans.iter().rev() {
            match &how {
                Ending::Complete => {}
                Ending::Failed(e) => {
                    s.fail(format!("the answer's body failed: {e}"));
                    s.set("mcp_gateway.body_incomplete", "body failed");
                }
                Ending::Abandoned => s.set("mcp_gateway.body_incomplete", "client went away"),
            }
            s.end();
        }
    }
}
