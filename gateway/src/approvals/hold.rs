//! Holding a call that needs approval (called by the pipeline when the chain's outcome for a single
//! `tools/call` is `RequireApproval`).
//!
//! [`settle`] decides what happens to the call: a matching unused grant is consumed at once; otherwise an
//! approval request is stored, audited and announced, and the call waits (woken by decisions made in this
//! process, polling the store every `poll_interval` for decisions made by other replicas) until it is
//! approved (its grant consumed by this very call), denied, expired, or `approvals.wait` runs out.
//!
//! [`respond`] turns that into a response: a client that accepts SSE gets a stream at once, with keep-alive
//! comments (and `notifications/progress` when the request had a progress token) while the call waits, then
//! the upstream's answer (or the refusal) as the final event; any other client gets the plain JSON answer
//! when the wait ends. A call let through goes on through [`crate::egress::Egress::send`], i.e. the normal
//! audit stage (durable decision record naming the approval) → forward, so invariant 1 holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::store::{GrantKey, NewApproval, Status};
use super::{Approvals, Granted, now_ms, record};
use crate::audit::record::canonical_bytes;
use crate::audit::{ApprovalEvent, AuditError};
use crate::audit_stage::Redaction;
use crate::body::{Body, is_sse, sse_event, sse_response};
use crate::ctx::RequestCtx;
use crate::egress::Exit;
use crate::error::GatewayError;
use crate::mcp::Message;
use crate::policy::verdict::Outcome;
use crate::policy::{Permitted, Refused};
use crate::reply;

/// A `tools/call` the chain wants approved.
#[derive(Debug, Clone)]
pub struct Call {
    /// The id a new approval request gets (known up front so progress messages can name it).
    pub id: String,
    pub key: GrantKey,
    /// The arguments as the route's redaction keeps them (only when it keeps them in full).
    pub arguments: Option<Value>,
    pub policy: String,
    pub reason: String,
    pub progress_token: Option<Value>,
}

impl Call {
    /// The call to hold, when `refused` is one `tools/call` request whose outcome is `RequireApproval`
    /// (batches and other methods keep the plain refusal).
    pub fn of(refused: &Refused, ctx: &RequestCtx, redaction: &Redaction) -> Option<Call> {
        let msg = refused.inbound.single_message()?;
        let [verdict] = refused.verdicts.as_slice() else {
            return None;
        };
        let Outcome::RequireApproval { policy, reason } = &verdict.outcome else {
            return None;
        };
        let Message::Request { method, .. } = msg else {
            return None;
        };
        if method != "tools/call" {
            return None;
        }
        let params = msg.params()?;
        let tool = params.get("name")?.as_str()?.to_owned();
        let args = params
            .get("arguments")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        let mut canonical = Vec::new();
        canonical_bytes(&args, &mut canonical);
        let args_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical));
        let arguments = match redaction.apply(Some(&tool), Some(&args)) {
            crate::audit::Arguments::Full(v) => Some(v),
            _ => None,
        };
        Some(Call {
            id: super::new_id(),
            key: GrantKey {
                route: ctx.route.clone()?,
                tool,
                args_digest,
                principal: super::principal(ctx),
            },
            arguments,
            policy: policy.to_string(),
            reason: reason.clone(),
            progress_token: params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .cloned(),
        })
    }
}

/// How a held call ended without being let through.
#[derive(Debug, Clone, PartialEq)]
pub enum Unsettled {
    Denied {
        id: String,
        approver: String,
        comment: Option<String>,
    },
    /// The wait ran out; the request stays pending.
    Pending {
        id: String,
        wait: Duration,
    },
    Expired {
        id: String,
    },
    /// Approved, but another identical call used the grant first.
    GrantTaken {
        id: String,
    },
    /// The store failed: nothing is forwarded.
    StoreUnavailable,
}

/// What happens to a held call.
#[derive(Debug)]
pub enum Settled {
    Granted(Granted),
    Refused(Unsettled),
}

/// Uses a matching grant, or creates an approval request and waits for its decision (see the module docs).
/// An audit failure is an error (nothing is forwarded); a store failure is [`Unsettled::StoreUnavailable`].
pub async fn settle(
    approvals: &Approvals,
    ctx: &RequestCtx,
    redaction: &Redaction,
    refused: &Refused,
    call: &Call,
) -> Result<Settled, AuditError> {
    let store = approvals.store();
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(request_id = ctx.id_str(), error = %e, "approval store unavailable; the call is not forwarded");
        Ok(Settled::Refused(Unsettled::StoreUnavailable))
    };
    match store.consume_grant(&call.key, now_ms()).await {
        Ok(Some(a)) => {
            approvals
                .audit(record(ApprovalEvent::GrantUsed, &a, Some(ctx.id_str())))
                .await?;
            approvals.refresh_gauge().await;
            return Ok(Settled::Granted(Granted {
                approval: Box::new(a),
            }));
        }
        Ok(None) => {}
        Err(e) => return unavailable(&e),
    }
    let s = approvals.settings();
    let now = now_ms();
    let created = store
        .create(NewApproval {
            id: call.id.clone(),
            request_id: ctx.id_str().to_owned(),
            key: call.key.clone(),
            arguments: call.arguments.clone(),
            reason: call.reason.clone(),
            policy: call.policy.clone(),
            created_at: now,
            expires_at: now + s.expire.as_millis() as i64,
        })
        .await;
    let created = match created {
        Ok(a) => a,
        Err(e) => return unavailable(&e),
    };
    approvals
        .auditor
        .awaiting_approval(ctx, redaction, refused, &created.id);
    approvals
        .audit(record(ApprovalEvent::Requested, &created, None))
        .await?;
    approvals.refresh_gauge().await;
    tracing::info!(request_id = ctx.id_str(), approval = %created.id, route = %created.route, tool = %created.tool, "call held for approval");
    if let Some(hook) = &s.webhook {
        super::notify::spawn(hook.clone(), created.clone(), approvals.auditor.clone());
    }

    let deadline = tokio::time::Instant::now() + s.wait;
    loop {
        let woken = approvals.decided.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let a = match store.get(&created.id).await {
            Ok(Some(a)) => a,
            Ok(None) => return unavailable(&"the approval request vanished"),
            Err(e) => return unavailable(&e),
        };
        match a.status {
            Status::Pending => {}
            Status::Approved => {
                return match store.consume_grant_of(&a.id, now_ms()).await {
                    Ok(Some(a)) => {
                        approvals
                            .audit(record(ApprovalEvent::GrantUsed, &a, Some(ctx.id_str())))
                            .await?;
                        Ok(Settled::Granted(Granted {
                            approval: Box::new(a),
                        }))
                    }
                    Ok(None) => Ok(Settled::Refused(Unsettled::GrantTaken { id: a.id })),
                    Err(e) => unavailable(&e),
                };
            }
            Status::Denied => {
                return Ok(Settled::Refused(Unsettled::Denied {
                    id: a.id,
                    approver: a.approver.unwrap_or_default(),
                    comment: a.comment,
                }));
            }
            Status::Expired => return Ok(Settled::Refused(Unsettled::Expired { id: a.id })),
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(Settled::Refused(Unsettled::Pending {
                id: a.id,
                wait: s.wait,
            }));
        }
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep(left.min(s.poll_interval)) => {}
        }
    }
}

/// Everything a held call needs to be forwarded later (owned: an SSE hold runs on its own task).
pub struct Held {
    /// Where the call goes once released: its route's way out, its gated addresses and request head.
    pub exit: Exit,
    pub approvals: Arc<Approvals>,
    pub refused: Refused,
    pub call: Call,
}

/// Hands a call let through (approved or confirmed) to its route's way out: the normal audit stage
/// (durable decision record naming the approval) → forward.
pub(super) async fn release(
    exit: Exit,
    approvals: &Arc<Approvals>,
    ctx: &mut RequestCtx,
    permitted: Permitted,
) -> Result<Response<Body>, GatewayError> {
    let on_session = super::caller::session_hook(Some(approvals), ctx, permitted.inbound());
    exit.send(ctx, permitted, on_session).await
}

/// Answers a call that needs approval (see the module docs).
pub async fn respond(held: Held, ctx: &mut RequestCtx) -> Result<Response<Body>, GatewayError> {
    if !wants_sse(&held.exit.parts) {
        return run(held, ctx).await;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let mut task_ctx = ctx.clone();
    tokio::spawn(async move {
        let egress = held.exit.egress.clone();
        let keepalive = held.approvals.settings().keepalive;
        let (id, token) = (held.call.id.clone(), held.call.progress_token.clone());
        let result = {
            let work = run(held, &mut task_ctx);
            tokio::pin!(work);
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
            let mut n = 0u64;
            if tx
                .send(Bytes::from(format!(": held for approval {id}\n\n")))
                .await
                .is_err()
            {
                return;
            }
            loop {
                tokio::select! {
                    r = &mut work => break r,
                    _ = tick.tick() => {
                        n += 1;
                        let event = match &token {
                            Some(t) => sse_event(&json!({"jsonrpc": "2.0", "method": "notifications/progress",
                                "params": {"progressToken": t, "progress": n,
                                           "message": format!("Waiting for human approval {id}")}})),
                            None => format!(": waiting for approval {id}\n\n"),
                        };
                        // The client closed the stream: that cancels the call (the request stays pending).
                        if tx.send(Bytes::from(event)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(err) => egress.error_response(&task_ctx, err),
        };
        relay(resp, tx).await;
    });
    Ok(sse_response(rx))
}

async fn run(held: Held, ctx: &mut RequestCtx) -> Result<Response<Body>, GatewayError> {
    let route = &*held.exit.egress.route;
    let span = ctx.trace.stage("approval.hold");
    span.set("mcp_gateway.approval.id", held.call.id.clone());
    let settled = settle(
        &held.approvals,
        ctx,
        &route.redaction,
        &held.refused,
        &held.call,
    )
    .await;
    span.result(&settled);
    let settled = settled?;
    span.set(
        "mcp_gateway.approval.outcome",
        match &settled {
            Settled::Granted(_) => "approved",
            Settled::Refused(Unsettled::Denied { .. }) => "denied",
            Settled::Refused(Unsettled::Pending { .. }) => "pending",
            Settled::Refused(Unsettled::Expired { .. }) => "expired",
            Settled::Refused(Unsettled::GrantTaken { .. }) => "grant_taken",
            Settled::Refused(Unsettled::StoreUnavailable) => "unavailable",
        },
    );
    drop(span);
    match settled {
        Settled::Granted(granted) => {
            ctx.decision = Some("allow");
            match Permitted::by_approval(held.refused, granted) {
                Ok(permitted) => release(held.exit, &held.approvals, ctx, permitted).await,
                Err(refused) => Ok(reply::policy_answer(ctx, &refused)),
            }
        }
        Settled::Refused(why) => Ok(reply::approval_answer(ctx, &held.refused, &held.call, &why)),
    }
}

/// Whether the client accepts an SSE answer.
pub(super) fn wants_sse(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// Sends the final answer down the held stream: an upstream SSE stream frame by frame, anything else (a
/// JSON answer, a gateway answer) as one `message` event.
pub(super) async fn relay(resp: Response<Body>, tx: mpsc::Sender<Bytes>) {
    let is_sse = is_sse(&resp);
    let mut body = resp.into_body();
    if is_sse {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                return;
            }
        }
        return;
    }
    let Ok(bytes) = body.collect().await.map(|c| c.to_bytes()) else {
        return;
    };
    let event = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => sse_event(&v),
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
            let data: String = text.lines().map(|l| format!("data: {l}\n")).collect();
            format!("event: message\n{data}\n")
        }
    };
    let _ = tx.send(Bytes::from(event)).await;
}
