//! Response filters: what the agent may see of the upstream's answers, on routes with a `policies:` block.
//!
//! - `tools/list` answers (JSON or SSE, every page): the catalogue learns, hidden tools are removed
//!   ([`tools_list`]).
//! - Requests the server makes of the client on an SSE stream (sampling, elicitation, roots) are decided by
//!   the chain; a refused one never reaches the client and the server gets an error answer
//!   ([`server_requests`]).
//!
//! SSE streams are rewritten event by event as they arrive: never buffered, never cut.

pub mod server_requests;
pub mod tools_list;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, header};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::mcp::sse::{self, EventSplitter};
use crate::reply::Body;
pub use tools_list::{FilterError, ListFilter};

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

/// What to do to one upstream response.
pub struct ResponseFilter {
    /// Set when the request was a `tools/list`.
    pub list: Option<ListFilter>,
    /// Polices server→client requests on SSE streams.
    pub police: server_requests::Police,
}

/// Whether a response is an SSE stream.
pub fn is_sse<B>(resp: &Response<B>) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Applies `f` to a response: SSE streams event by event, a JSON `tools/list` answer buffered (bounded).
pub async fn apply(
    resp: Response<Incoming>,
    f: ResponseFilter,
) -> Result<Response<Body>, FilterError> {
    if !resp.status().is_success() {
        return Ok(resp.map(|b| b.boxed()));
    }
    if is_sse(&resp) {
        let (parts, body) = resp.into_parts();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(filter_stream(body, f, tx));
        return Ok(Response::from_parts(parts, ChannelBody(rx).boxed()));
    }
    match f.list {
        Some(list) => tools_list::apply_json(resp, &list).await,
        None => Ok(resp.map(|b| b.boxed())),
    }
}

async fn filter_stream(mut body: Incoming, f: ResponseFilter, tx: mpsc::Sender<Bytes>) {
    let mut splitter = EventSplitter::default();
    loop {
        let frame = match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "upstream stream ended with an error");
                break;
            }
            None => break,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        splitter.push(data);
        while let Some(event) = splitter.next_event() {
            if let Some(out) = rewrite_event(event, &f).await
                && tx.send(out).await.is_err()
            {
                return; // client gone: dropping `body` closes the upstream stream (cancellation)
            }
        }
    }
    if let Some(rest) = splitter.finish()
        && let Some(out) = rewrite_event(rest, &f).await
    {
        let _ = tx.send(out).await;
    }
}

/// One event: a `tools/list` result is filtered, a server→client request is decided (and withheld when
/// refused); everything else passes unchanged.
async fn rewrite_event(event: Bytes, f: &ResponseFilter) -> Option<Bytes> {
    let Some(data) = sse::data(&event) else {
        return Some(event);
    };
    let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
        return Some(event);
    };
    if let Some(list) = &f.list
        && tools_list::filter_value(&mut v, list).await
    {
        return Some(sse::with_data(&event, &v.to_string()));
    }
    if v.get("method").is_some() && v.get("id").is_some() {
        return f.police.check(&data, event).await;
    }
    Some(event)
}
