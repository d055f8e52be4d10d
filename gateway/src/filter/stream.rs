//! SSE answers, event by event as they arrive (never buffered, never cut): every `message` event's data must
//! be one JSON value the gateway can read strictly, and is judged ([`super::judge`]) before it is passed on.
//!
//! An event that cannot be read is never passed. On a POST's answer stream, every request still waiting on
//! the stream gets a JSON-RPC error naming the gateway request id, and the stream ends (the upstream side is
//! dropped). On a `GET` stream, which no request waits on, the event is dropped and the stream goes on.

use std::pin::Pin;

use bytes::Bytes;
use hyper::body::{Body as _, Incoming};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::ResponseFilter;
use super::judge::judge;
use crate::mcp::jsonrpc;
use crate::mcp::sse::{self, EventSplitter};

/// What becomes of one event.
enum Step {
    Send(Bytes),
    /// Withheld by policy (a refused server request): nothing is sent for it.
    Skip,
    /// It cannot be decided on.
    Refuse(String),
}

pub(super) async fn filter(mut body: Incoming, f: ResponseFilter, tx: mpsc::Sender<Bytes>) {
    let mut pending: Vec<String> = f.pending.iter().map(Value::to_string).collect();
    let answers_a_post = !pending.is_empty();
    let mut splitter = EventSplitter::default();
    let mut done = false;
    while !done {
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
            if !pass(event, &f, &mut pending, answers_a_post, &tx).await {
                done = true;
                break;
            }
        }
    }
    if !done && let Some(rest) = splitter.finish() {
        pass(rest, &f, &mut pending, answers_a_post, &tx).await;
    }
}

/// Judges one event and sends what may go; `false` when the stream must end (refused, or the client left).
async fn pass(
    event: Bytes,
    f: &ResponseFilter,
    pending: &mut Vec<String>,
    answers_a_post: bool,
    tx: &mpsc::Sender<Bytes>,
) -> bool {
    match step(event, f, pending).await {
        Step::Send(out) => tx.send(out).await.is_ok(),
        Step::Skip => true,
        Step::Refuse(why) => {
            let ctx = &f.listing.context;
            tracing::warn!(request_id = %ctx.request_id, route = %ctx.route, reason = %why, "an SSE event the gateway cannot decide on was withheld");
            crate::metrics::COUNTERS
                .unfilterable_events
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !answers_a_post {
                return true; // a GET stream: drop the event, keep the stream
            }
            for id in pending.drain(..) {
                let id: Value = serde_json::from_str(&id).expect("ids are JSON text");
                let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32003,
                    "message": format!("The upstream of route '{}' sent an answer the gateway cannot read, so it is withheld. Gateway request id: {}.", ctx.route, ctx.request_id),
                    "data": {"request_id": ctx.request_id, "reason": why}}});
                if tx
                    .send(Bytes::from(format!("event: message\ndata: {err}\n\n")))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            false
        }
    }
}

async fn step(event: Bytes, f: &ResponseFilter, pending: &mut Vec<String>) -> Step {
    if sse::event_type(&event) != b"message" {
        return Step::Send(event); // clients do not read other event types as JSON-RPC
    }
    let data = match sse::data_utf8(&event) {
        None => return Step::Send(event), // a comment, keep-alive, `id:` or `retry:` only
        Some(Err(e)) => return Step::Refuse(format!("an event's data is not UTF-8: {e}")),
        Some(Ok(d)) => d,
    };
    if data.trim().is_empty() {
        return Step::Send(event); // a priming event (2025-11-25 servers send one before any message)
    }
    let mut v = match jsonrpc::parse_value(data.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Step::Refuse(format!("an event's data is not strict JSON: {e}")),
    };
    let judged = judge(&mut v, f).await;
    pending.retain(|id| !judged.answered.contains(id));
    if judged.withheld {
        Step::Skip
    } else if judged.changed {
        Step::Send(sse::with_data(&event, &v.to_string()))
    } else {
        Step::Send(event)
    }
}
