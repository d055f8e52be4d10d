//! Caller confirmation in the legacy era (2025-xx, sessions; see [`super::caller`] for the whole flow).
//!
//! A covered call from a session whose client declared `capabilities.elicitation` at `initialize` is answered
//! with an SSE stream whose first event is the gateway's own `elicitation/create` request (id
//! [`ELICIT_ID_PREFIX`]`cnf_…`). The client POSTs its answer on the same session; [`take_answer`] (called by
//! [`super::caller::before_policy`]) hands it to the waiting stream — only from the same session and caller —
//! and the POST gets 202 (it is never forwarded). The call is then forwarded, or refused, on the stream. No
//! answer within `caller_confirmation.expire`, or a stream the client closed, ends it unforwarded.

use bytes::Bytes;
use http::Response;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::caller::{
    Answer, CallerConfirm, Confirmation, Confirmed, ELICIT_ID_PREFIX, Step, Via, Waiting,
    declined_text, elicitation, new_id, release, requested,
};
use super::hold::{self, Held};
use super::now_ms;
use super::store::Millis;
use crate::audit::ApprovalEvent;
use crate::body::Body;
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::reply;

/// Legacy: hands the client's answer to the call waiting for it (same session and caller only).
pub(super) fn take_answer(
    caller: &CallerConfirm,
    ctx: &RequestCtx,
    id: &str,
    result: Result<&Value, &Value>,
) {
    let mut waiting = caller.waiting.lock().expect("waiting lock");
    let principal = super::principal(ctx);
    match waiting.get(id) {
        Some(w)
            if Some(w.session.as_str()) == ctx.session_id.as_deref()
                && w.principal == principal =>
        {
            let w = waiting.remove(id).expect("present");
            let _ = w.answer.send(Answer::of(result));
        }
        Some(_) => tracing::warn!(
            request_id = ctx.id_str(),
            elicitation = id,
            "an answer to a gateway elicitation came from another session or caller; ignored"
        ),
        None => tracing::info!(
            request_id = ctx.id_str(),
            elicitation = id,
            "an answer to a gateway elicitation nobody waits for (answered late?); ignored"
        ),
    }
}

/// Legacy: answers the call with an SSE stream that asks the caller first (see module docs).
pub async fn ask_legacy(held: Held, ctx: &mut RequestCtx) -> Result<Response<Body>, GatewayError> {
    let Some(caller) = held.approvals.caller() else {
        return hold::respond(held, ctx).await;
    };
    let id = new_id();
    let rpc_id = format!("{ELICIT_ID_PREFIX}{id}");
    let expire = caller.settings.expire;
    let exp = now_ms() + expire.as_millis() as Millis;
    let route = held.exit.egress.route.clone();
    let args = held
        .refused
        .inbound
        .single_message()
        .and_then(|m| m.params())
        .and_then(|p| p.get("arguments"))
        .cloned()
        .unwrap_or(json!({}));
    let request = json!({"jsonrpc": "2.0", "id": rpc_id, "method": "elicitation/create",
                         "params": elicitation(&held.call, &route.redaction, &args, false)});
    requested(
        &held.approvals,
        ctx,
        &route.redaction,
        &held.refused,
        &held.call,
        &id,
        exp,
        Via::Elicitation,
    )
    .await?;
    let (answer_tx, answer_rx) = oneshot::channel();
    caller.waiting.lock().expect("waiting lock").insert(
        rpc_id.clone(),
        Waiting {
            session: ctx.session_id.clone().unwrap_or_default(),
            principal: held.call.key.principal.clone(),
            answer: answer_tx,
        },
    );
    tracing::info!(request_id = ctx.id_str(), confirmation = %id, tool = %held.call.key.tool, "caller asked to confirm (elicitation)");
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let mut task_ctx = ctx.clone();
    tokio::spawn(async move {
        let approvals = held.approvals.clone();
        let egress = held.exit.egress.clone();
        let keepalive = approvals.settings().keepalive;
        let (tool, digest) = (
            held.call.key.tool.clone(),
            held.call.key.args_digest.clone(),
        );
        let forget = || {
            if let Some(c) = approvals.caller() {
                c.waiting.lock().expect("waiting lock").remove(&rpc_id);
            }
        };
        if tx
            .send(Bytes::from(crate::body::sse_event(&request)))
            .await
            .is_err()
        {
            forget();
            return;
        }
        let step = Step {
            id: &id,
            ctx: &task_ctx,
            tool: &tool,
            args_digest: &digest,
            via: Via::Elicitation,
        };
        let mut notified = step.record(ApprovalEvent::Notified);
        notified.delivered = Some(true);
        approvals.audit_later(notified);
        let answer = {
            let deadline = tokio::time::sleep(expire);
            tokio::pin!(deadline, answer_rx);
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
            loop {
                tokio::select! {
                    a = &mut answer_rx => break a.ok(),
                    () = &mut deadline => break None,
                    _ = tick.tick() => {
                        // The client closed the stream: the call is cancelled.
                        if tx.send(Bytes::from(format!(": waiting for confirmation {id}\n\n"))).await.is_err() {
                            forget();
                            approvals.audit_later(step.decided(ApprovalEvent::Denied, Some("the client closed the stream".into())));
                            return;
                        }
                    }
                }
            }
        };
        let result = match answer {
            None => {
                forget();
                approvals.audit_later(step.record(ApprovalEvent::Expired));
                Ok(reply::tool_error(
                    &task_ctx,
                    false,
                    &format!(
                        "Confirmation {id} was not answered within {}s; the call was not executed. Calling again asks again. \
                         Gateway request id: {}.",
                        expire.as_secs(),
                        task_ctx.id_str()
                    ),
                ))
            }
            Some(Answer::Declined(how)) => {
                tracing::info!(request_id = task_ctx.id_str(), confirmation = %id, "the caller {how} the call");
                match approvals
                    .audit(step.decided(ApprovalEvent::Denied, Some(how.clone())))
                    .await
                {
                    Ok(()) => Ok(reply::tool_error(
                        &task_ctx,
                        false,
                        &declined_text(&task_ctx, &id, &how),
                    )),
                    Err(e) => Err(e.into()),
                }
            }
            Some(Answer::Confirmed) => {
                let approved = approvals
                    .audit(step.decided(ApprovalEvent::Approved, None))
                    .await;
                let confirmed = Confirmed {
                    confirmation: Confirmation {
                        id: id.clone(),
                        by: held.call.key.principal.clone(),
                        via: Via::Elicitation,
                    },
                };
                match approved {
                    Ok(()) => release(held, &mut task_ctx, confirmed).await,
                    Err(e) => Err(e.into()),
                }
            }
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(err) => egress.error_response(&task_ctx, err),
        };
        hold::relay(resp, tx).await;
    });
    Ok(crate::body::sse_response(rx))
}
