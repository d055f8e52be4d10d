//! Tool definition changes on the admin listener (see [`crate::pins`]):
//!
//! - `GET /tools/changes` — every pending change (route, tool, old and new digests, changed parts);
//! - `POST /tools/changes/{route}/{tool}/accept` — the new definition becomes the pin; the tool is listed
//!   and callable again. Recorded as `tool_accepted`, naming the approver.
//!
//! Both need an approver's `Authorization: Bearer` token (`approvals.approvers`, or an approver JWT), as the
//! approvals API does: accepting a tool definition is the same kind of decision as approving a call. Without
//! an `approvals:` block they answer 403 and say so. 404: no pending change for that tool.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::approvals::api::{ApiError, approver};
use crate::pins::PinError;
use crate::reload::Live;

pub fn router() -> Router<Arc<Live>> {
    Router::new()
        .route("/tools/changes", get(changes))
        .route("/tools/changes/{route}/{tool}/accept", post(accept))
}

fn json(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn who(live: &Live, headers: &HeaderMap) -> Result<String, Response> {
    let Some(approvals) = live.gateway().approvals().cloned() else {
        return Err(json(
            StatusCode::FORBIDDEN,
            json!({"error": "accepting tool definition changes needs an approver: configure `approvals.approvers` (or `approvals.role`)"}),
        ));
    };
    approver(&approvals, headers)
        .await
        .map_err(|ApiError(status, msg)| {
            let mut r = json(status, json!({"error": msg}));
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"mcp-gateway approvals\""),
                );
            }
            r
        })
}

async fn changes(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    if let Err(r) = who(&live, &headers).await {
        return r;
    }
    let changes = live
        .gateway()
        .pins()
        .map(|p| p.changes())
        .unwrap_or_default();
    json(StatusCode::OK, json!({ "changes": changes }))
}

async fn accept(
    State(live): State<Arc<Live>>,
    Path((route, tool)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let who = match who(&live, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let gateway = live.gateway();
    let Some(pins) = gateway.pins() else {
        return json(
            StatusCode::NOT_FOUND,
            json!({"error": "no tool pins on this gateway"}),
        );
    };
    match pins.accept(&route, &tool, &who).await {
        Ok(r) => json(
            StatusCode::OK,
            json!({"route": r.route, "tool": r.tool, "old_digest": r.old_digest, "new_digest": r.new_digest,
                   "changed": r.fields, "accepted_by": who}),
        ),
        Err(e @ PinError::NotPending { .. }) => {
            json(StatusCode::NOT_FOUND, json!({"error": e.to_string()}))
        }
        Err(e) => {
            tracing::error!(error = %e, "tool pins: acceptance not persisted");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the acceptance could not be persisted; the change stays pending"}),
            )
        }
    }
}
