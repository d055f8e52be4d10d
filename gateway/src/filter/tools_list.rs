//! `tools/list` responses (JSON or SSE, every page): the route's catalogue learns every tool listed, the
//! tools the chain hides are removed, and modern results are marked `cacheScope: "private"` (the list
//! depends on who asked). SSE streams go through [`super::apply`], which calls [`filter_value`] per event.

use std::sync::Arc;

use http::{Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::catalogue::Catalogue;
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

/// Filters a JSON `tools/list` answer (buffered, bounded).
pub async fn apply_json(
    resp: Response<Incoming>,
    f: &ListFilter,
) -> Result<Response<Body>, FilterError> {
    let (mut parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_LIST_BYTES)
        .collect()
        .await
        .map_err(|e| FilterError::Read(e.to_string()))?
        .to_bytes();
    let mut v: Value =
        serde_json::from_slice(&bytes).map_err(|e| FilterError::NotJson(e.to_string()))?;
    filter_value(&mut v, f).await;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-store"),
    );
    let out = serde_json::to_vec(&v).expect("JSON serialises");
    Ok(Response::from_parts(parts, crate::reply::full(out)))
}

/// Filters a JSON-RPC response carrying a `tools/list` result. Returns whether it was one.
pub async fn filter_value(v: &mut Value, f: &ListFilter) -> bool {
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
