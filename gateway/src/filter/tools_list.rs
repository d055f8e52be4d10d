//! `tools/list` responses (JSON or SSE, every page): the route's catalogue learns every tool listed, the
//! tools the chain hides are removed, and modern results are marked `cacheScope: "private"` (the list
//! depends on who asked). SSE events are rewritten one by one as they arrive; other events pass untouched.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;

use super::ChannelBody;
use crate::catalogue::Catalogue;
use crate::mcp::sse::{self, EventSplitter};
use crate::policy::PolicyChain;
use crate::policy::bindings::types::RequestContext;
use crate::reply::Body;

/// Largest JSON `tools/list` response the gateway will buffer to filter.
const MAX_LIST_BYTES: usize = 32 << 20;

/// What filtering one response needs.
#[derive(Clone)]
pub struct ListFilter {
    pub chain: PolicyChain,
    pub catalogue: Arc<Catalogue>,
    pub context: RequestContext,
    pub modern: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("tools/list response could not be read: {0}")]
    Read(String),
    #[error("tools/list response is not JSON: {0}")]
    NotJson(String),
}

/// Filters a `tools/list` response. JSON is buffered (bounded) and rewritten; SSE is rewritten event by event.
pub async fn apply(resp: Response<Incoming>, f: ListFilter) -> Result<Response<Body>, FilterError> {
    let (mut parts, body) = resp.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !parts.status.is_success() {
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    if content_type.starts_with("text/event-stream") {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(filter_stream(body, f, tx));
        return Ok(Response::from_parts(parts, ChannelBody(rx).boxed()));
    }
    let bytes = Limited::new(body, MAX_LIST_BYTES)
        .collect()
        .await
        .map_err(|e| FilterError::Read(e.to_string()))?
        .to_bytes();
    let mut v: Value =
        serde_json::from_slice(&bytes).map_err(|e| FilterError::NotJson(e.to_string()))?;
    filter_value(&mut v, &f).await;
    parts.headers.remove(header::CONTENT_LENGTH);
    let out = serde_json::to_vec(&v).expect("JSON serialises");
    let mut resp = Response::from_parts(parts, crate::reply::full(out));
    if resp.status() == StatusCode::OK {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-store"),
        );
    }
    Ok(resp)
}

async fn filter_stream(mut body: Incoming, f: ListFilter, tx: mpsc::Sender<Bytes>) {
    let mut splitter = EventSplitter::default();
    loop {
        let frame = match body.frame().await {
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
            if tx.send(rewrite_event(event, &f).await).await.is_err() {
                return; // client gone: dropping `body` closes the upstream stream (cancellation)
            }
        }
    }
    if let Some(rest) = splitter.finish() {
        let _ = tx.send(rewrite_event(rest, &f).await).await;
    }
}

async fn rewrite_event(event: Bytes, f: &ListFilter) -> Bytes {
    let Some(data) = sse::data(&event) else {
        return event;
    };
    let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
        return event;
    };
    if filter_value(&mut v, f).await {
        sse::with_data(&event, &v.to_string())
    } else {
        event
    }
}

/// Filters a JSON-RPC response carrying a `tools/list` result. Returns whether it was one.
async fn filter_value(v: &mut Value, f: &ListFilter) -> bool {
    let Some(tools) = v.pointer("/result/tools").and_then(Value::as_array) else {
        return false;
    };
    let infos = f.catalogue.learn(tools);
    let hidden = f.chain.hidden_tools(f.context.clone(), infos).await;
    let result = v.get_mut("result").expect("checked above");
    if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
        let before = tools.len();
        tools.retain(|t| {
            t.get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| !hidden.contains(n))
        });
        if before != tools.len() {
            tracing::debug!(request_id = %f.context.request_id, hidden = before - tools.len(), "tools hidden from tools/list");
        }
    }
    if f.modern {
        result["cacheScope"] = Value::String("private".into());
    }
    true
}
