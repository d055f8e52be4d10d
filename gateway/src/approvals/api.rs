//! The approvers' HTTP API on the admin listener (merged into [`crate::admin::router`]):
//!
//! - `GET /approvals?status=pending&limit=100` — newest first;
//! - `GET /approvals/{id}`;
//! - `POST /approvals/{id}/approve` and `/deny` with an optional JSON body `{"comment": "…"}`.
//!
//! Every call needs `Authorization: Bearer <token>`: a configured approver's static token, or (with
//! `approvals.role`) a JWT that the identity module verifies (issuer, audience, keys, algorithms, expiry) and
//! that carries the approver role — the approver is then the token's `sub`. No or an invalid credential is
//! 401; a valid JWT without the role is 403. An approver cannot decide a request whose caller is themselves
//! (403, separation of duties: the caller's principal and a JWT approver's subject are the same namespace). Deciding a request that
//! is no longer pending is 409. A decision is written to the store first (one atomic transition), then to
//! the audit log; if the audit log fails the answer is 503 — the decision stands, and the call it lets
//! through is still recorded (with the approval and its approver) before it is forwarded.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::store::{Approval, Decide, Status, StoreError};
use super::{Approvals, now_ms, record, rfc3339};
use crate::audit::ApprovalEvent;

/// The approvals routes, on the shared workflow.
pub fn router(approvals: Arc<Approvals>) -> Router {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/ui", get(super::page::page))
        .route("/approvals/{id}", get(show))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .with_state(approvals)
}

/// A JSON answer.
pub struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            self.0.to_string(),
        )
            .into_response()
    }
}

/// An API error: status and a JSON `{"error": …}` body.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"mcp-gateway approvals\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::NotPending { .. } => ApiError(StatusCode::CONFLICT, e.to_string()),
            StoreError::Backend(_) => {
                tracing::error!(error = %e, "approvals API: store failure");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the approval store is unavailable".into(),
                )
            }
        }
    }
}

/// The approver whose token the request carries: a static token's name, or a role-bearing JWT's subject.
pub(crate) async fn approver(
    approvals: &Approvals,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "send an approver's token as `Authorization: Bearer <token>`".into(),
            )
        })?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Compare every configured digest fully (no early exit on the first differing byte).
    let mut found = None;
    for a in &approvals.settings().approvers {
        let diff = a
            .token_sha256
            .iter()
            .zip(&digest)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff == 0 {
            found = Some(a.name.clone());
        }
    }
    if let Some(name) = found {
        return Ok(name);
    }
    match approvals.jwt_verifier() {
        // A compact JWS has three dot-separated parts; anything else is an unknown static token.
        Some(verifier) if token.split('.').count() == 3 => {
            jwt_approver(approvals, verifier, token).await
        }
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "unknown approver token".into(),
        )),
    }
}

/// A JWT approver: verified by the identity module, then required to hold the configured role.
async fn jwt_approver(
    approvals: &Approvals,
    verifier: &crate::identity::Verifier,
    token: &str,
) -> Result<String, ApiError> {
    let Some(role) = approvals.settings().jwt.as_ref() else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "unknown approver token".into(),
        ));
    };
    let principal = match verifier.verify(token).await {
        Ok(p) => p,
        Err(e @ crate::identity::IdentityError::Jwks(_)) => {
            tracing::error!(error = %e, "approvals API: cannot verify approver tokens");
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "approver tokens cannot be verified right now (key set unavailable)".into(),
            ));
        }
        Err(e) => {
            tracing::info!(reason = e.kind(), error = %e, "approvals API: approver token refused");
            return Err(ApiError(StatusCode::UNAUTHORIZED, e.description().into()));
        }
    };
    if !has_role(principal.claims().get(&role.role_claim), &role.role) {
        tracing::info!(subject = principal.subject(), claim = %role.role_claim, "approvals API: token without the approver role");
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "`{}` is not an approver: the token's `{}` claim does not include `{}`",
                principal.subject(),
                role.role_claim,
                role.role
            ),
        ));
    }
    Ok(principal.subject().to_owned())
}

/// The claim is the role, a list containing it, or a space-separated string containing it (like `scope`).
fn has_role(claim: Option<&Value>, role: &str) -> bool {
    match claim {
        Some(Value::String(s)) => s == role || s.split(' ').any(|r| r == role),
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(role)),
        _ => false,
    }
}

/// An approval as the API shows it: the stored fields plus readable times and its age.
pub fn view(a: &Approval) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    let now = now_ms();
    v["created"] = json!(rfc3339(a.created_at));
    v["expires"] = json!(rfc3339(a.expires_at));
    v["age_seconds"] = json!((now - a.created_at).max(0) / 1000);
    if let Some(d) = a.decided_at {
        v["decided"] = json!(rfc3339(d));
    }
    if let Some(g) = a.grant_expires_at {
        v["grant_expires"] = json!(rfc3339(g));
    }
    v
}

async fn list(
    State(approvals): State<Arc<Approvals>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json, ApiError> {
    approver(&approvals, &headers).await?;
    let (mut status_arg, mut limit) = (None, 100u32);
    for pair in query.as_deref().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("status", v)) => status_arg = Some(v.to_owned()),
            Some(("limit", v)) => {
                limit = v.parse().map_err(|_| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("limit `{v}` is not a number"),
                    )
                })?
            }
            _ => {}
        }
    }
    let status = match status_arg.as_deref() {
        None | Some("all") | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("status `{s}` is not one of pending, approved, denied, expired, all"),
            )
        })?),
    };
    let items = approvals.store().list(status, limit.min(1000)).await?;
    Ok(Json(
        json!({"approvals": items.iter().map(view).collect::<Vec<_>>()}),
    ))
}

async fn show(
    State(approvals): State<Arc<Approvals>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json, ApiError> {
    approver(&approvals, &headers).await?;
    match approvals.store().get(&id).await? {
        Some(a) => Ok(Json(view(&a))),
        None => Err(StoreError::NotFound(id).into()),
    }
}

async fn approve(
    state: State<Arc<Approvals>>,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    decide(state, headers, id, body, true).await
}

async fn deny(
    state: State<Arc<Approvals>>,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Result<Json, ApiError> {
    decide(state, headers, id, body, false).await
}

async fn decide(
    State(approvals): State<Arc<Approvals>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
    approve: bool,
) -> Result<Json, ApiError> {
    let who = approver(&approvals, &headers).await?;
    let comment = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the body must be JSON like {{\"comment\": \"…\"}}: {e}"),
            )
        })?;
        match v.get("comment") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) if c.len() <= 4096 => Some(c.clone()).filter(|c| !c.is_empty()),
            Some(_) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "`comment` must be a string of at most 4096 bytes".into(),
                ));
            }
        }
    };
    let store = approvals.store();
    let Some(current) = store.get(&id).await? else {
        return Err(StoreError::NotFound(id).into());
    };
    if current.principal.as_deref() == Some(who.as_str()) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("`{who}` made this call and cannot approve or deny it (separation of duties)"),
        ));
    }
    let now = now_ms();
    let s = approvals.settings();
    let decided = store
        .decide(
            &id,
            Decide {
                approve,
                approver: who.clone(),
                comment,
                at: now,
                grant_expires_at: now + s.grant_ttl.as_millis() as i64,
                grant_uses: s.grant_uses,
            },
        )
        .await?;
    tracing::info!(approval = %id, approver = %who, approved = approve, "approval request decided");
    let event = if approve {
        ApprovalEvent::Approved
    } else {
        ApprovalEvent::Denied
    };
    let audited = approvals.audit(record(event, &decided, None)).await;
    approvals.after_decision().await;
    if let Err(e) = audited {
        tracing::error!(approval = %id, error = %e, "the decision stands but its audit record was not written");
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the decision was stored, but the audit log cannot record it".into(),
        ));
    }
    Ok(Json(view(&decided)))
}
