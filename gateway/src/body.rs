//! The response body every stage hands on, and the few things said about bodies in more than one place: a
//! full body, a channel-fed (SSE) body, whether a response is an SSE stream. A leaf: it imports nothing of
//! the gateway.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;

/// Every response body the gateway sends: its own (full) or the upstream's (streamed).
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body holding `bytes`, all at once.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response body fed by a channel, one frame per message, so each event leaves as soon as it is sent.
/// Dropping the receiver (the client went away) makes the producer's next send fail, which ends it.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Whether headers declare an SSE stream (`Content-Type: text/event-stream`, parameters allowed).
pub fn is_sse_headers(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Whether a response is an SSE stream.
pub fn is_sse<B>(resp: &Response<B>) -> bool {
    is_sse_headers(resp.headers())
}

/// A 200 SSE answer fed by `rx`, unbuffered by proxies (a held call's, or a caller confirmation's stream).
pub fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut resp = Response::new(ChannelBody(rx).boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// One SSE `message` event carrying `v`.
pub fn sse_event(v: &Value) -> String {
    format!("event: message\ndata: {v}\n\n")
}
