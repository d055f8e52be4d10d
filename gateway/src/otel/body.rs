//! Spans that last as long as the answer's body: the request's root span and the `upstream` span end when
//! the client has been given the last byte (or the body failed, or the client went away), not when the
//! headers were sent. For an SSE stream (a progress stream, a call held for approval) that is the time the
//! caller actually waited.
//!
//! Only sampled requests are wrapped ([`until_body_ends`] returns the response as it is otherwise), so an
//! unsampled or untraced request pays nothing.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};

use super::Trace;
use crate::reply::Body;

/// Ends `spans` when `resp`'s body ends; the first of them (the request's root) also gets
/// `http.response.body.size`. Spans that are not recording are ended at once.
pub fn until_body_ends(resp: Response<Body>, spans: Vec<Trace>) -> Response<Body> {
    use hyper::body::Body as _;
    // An empty body (202, 204, …) may never be polled: nothing to wait for.
    if !spans.iter().any(Trace::recording) || resp.body().is_end_stream() {
        for s in &spans {
            s.end();
        }
        return resp;
    }
    resp.map(|inner| {
        SpanBody {
            inner,
            spans,
            bytes: 0,
            ended: false,
        }
        .boxed()
    })
}

struct SpanBody {
    inner: Body,
    spans: Vec<Trace>,
    bytes: u64,
    ended: bool,
}

impl SpanBody {
    fn end(&mut self, incomplete: Option<String>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Some(root) = self.spans.first() {
            root.set("http.response.body.size", self.bytes as i64);
        }
        // Children (pushed after the root) end first, so that they end within it.
        for s in self.spans.iter().rev() {
            if let Some(why) = &incomplete {
                s.set("mcp_gateway.body_incomplete", why.clone());
            }
            s.end();
        }
    }
}

impl hyper::body::Body for SpanBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.end(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                for s in &this.spans {
                    s.fail(format!("the answer's body failed: {e}"));
                }
                this.end(Some("body failed".into()));
            }
            Poll::Ready(None) => this.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for SpanBody {
    fn drop(&mut self) {
        use hyper::body::Body as _;
        let incomplete = (!self.inner.is_end_stream()).then(|| "client went away".to_owned());
        self.end(incomplete);
    }
}
