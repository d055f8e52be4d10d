//! Caller confirmation: the caller approves a call themselves, in the protocol (stage 5c, beside [`super::hold`]).
//!
//! Off by default. With `approvals.caller_confirmation: { tools: [...] }`, a single `tools/call` the chain
//! sends for approval, on a covered route and tool, from a client that can ask its user, is confirmed by the
//! caller instead of an operator:
//!
//! - **2026-07-28** (stateless): the call is answered `resultType: "input_required"` with one input request
//!   under [`INPUT_KEY`] (an `elicitation/create` form with a single boolean `confirm`) and a `requestState`
//!   sealed by [`super::state`] (HMAC over confirmation id, route, tool, argument digest, principal, session,
//!   expiry). The client's retry is caught by [`before_policy`]: the state is verified (form, MAC, expiry,
//!   binding, single use), the gateway's key and state are stripped (an upstream state the asked call carried
//!   is restored), and the stripped call goes through the chain like any other; a `RequireApproval` is then
//!   released by the [`Confirmed`] proof.
//! - **Legacy** (2025-xx, sessions): only when the client declared `capabilities.elicitation` at `initialize`
//!   (remembered per `Mcp-Session-Id`, see [`CallerConfirm::remember_session`]) and accepts SSE: the POST is
//!   answered with an SSE stream whose first event is the gateway's own `elicitation/create` request (id
//!   [`ELICIT_ID_PREFIX`]…); the client's POSTed answer is caught by [`before_policy`] (202, never
//!   forwarded, only from the same session and caller), and the call is forwarded or refused on the same stream
//!   ([`super::elicit`]).
//!
//! Any other client (no elicitation capability, JSON only, Claude's API connector) gets the operator flow
//! ([`super::hold`]). Every step is an audit record with `via` (`elicitation` | `input_required`): the
//! `require_approval` decision (approval id `cnf_…`), `approval_requested`, `approval_notified`,
//! `approval_approved` (approver: the caller's principal, or `caller`), `approval_denied` (declined),
//! `approval_expired`, `approval_grant_used`, and the `allow` decision naming the confirmation, durable
//! before the call is forwarded ([`crate::policy::Permitted::by_confirmation`]). A refused confirmation is a
//! 200 `isError` result, never a 4xx.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::hold::{self, Held};
use super::state::{self, Binding, State, StateError, StateKey};
use super::store::Millis;
use super::{Approvals, now_ms, rfc3339};
use crate::audit::{ApprovalEvent, ApprovalRecord, Arguments, AuditError};
use crate::audit_stage::Redaction;
use crate::body::Body;
use crate::config::CallerConfirmation;
use crate::ctx::RequestCtx;
use crate::egress::SessionHook;
use crate::error::GatewayError;
use crate::mcp::{Id, Inbound, Message};
use crate::policy::verdict::{Outcome, Verdict};
use crate::policy::{Permitted, Refused};
use crate::reply;

/// The gateway's key in `inputRequests` / `inputResponses` (2026-07-28).
pub const INPUT_KEY: &str = "mcp-gateway/confirm";
/// The id prefix of the gateway's own `elicitation/create` requests (legacy).
pub const ELICIT_ID_PREFIX: &str = "mcp-gateway-confirm-";
/// Legacy sessions remembered at most (the least recently initialised is forgotten first).
const MAX_SESSIONS: usize = 100_000;

/// How the caller was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Elicitation,
    InputRequired,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Elicitation => "elicitation",
            Via::InputRequired => "input_required",
        }
    }
}

/// A confirmation that let a call through (carried by [`Permitted`] into its decision record).
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    pub id: String,
    /// Who confirmed: the caller's principal, `None` when anonymous.
    pub by: Option<String>,
    pub via: Via,
}

/// Proof that the caller confirmed this call. Its field is private to `approvals` (made only here and in
/// [`super::elicit`], once the caller's answer verified).
#[derive(Debug)]
pub struct Confirmed {
    pub(super) confirmation: Confirmation,
}

impl Confirmed {
    pub fn confirmation(&self) -> &Confirmation {
        &self.confirmation
    }
}

/// What the caller answered.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    Confirmed,
    /// Declined, cancelled, or accepted without `confirm: true`.
    Declined(String),
}

impl Answer {
    /// Reads an `ElicitResult` (or a JSON-RPC error in its place).
    pub(super) fn of(result: Result<&Value, &Value>) -> Answer {
        let Ok(r) = result else {
            return Answer::Declined("the client answered with an error".into());
        };
        match r.get("action").and_then(Value::as_str) {
            Some("accept") if r.pointer("/content/confirm") == Some(&Value::Bool(true)) => {
                Answer::Confirmed
            }
            Some("accept") => Answer::Declined("did not confirm".into()),
            Some("decline") => Answer::Declined("declined".into()),
            Some("cancel") => Answer::Declined("cancelled".into()),
            _ => Answer::Declined("gave no valid answer".into()),
        }
    }
}

#[derive(Debug)]
struct Session {
    principal: Option<String>,
    seen: Millis,
}

#[derive(Debug)]
pub(super) struct Waiting {
    pub(super) session: String,
    pub(super) principal: Option<String>,
    pub(super) answer: oneshot::Sender<Answer>,
}

/// The caller-confirmation side of the workflow (inside [`Approvals`], process-wide).
#[derive(Debug)]
pub struct CallerConfirm {
    pub(super) settings: CallerConfirmation,
    key: StateKey,
    /// Legacy sessions whose client declared elicitation at `initialize`.
    sessions: Mutex<HashMap<String, Session>>,
    /// Legacy: elicitations sent, by JSON-RPC id, waiting for the client's answer.
    pub(super) waiting: Mutex<HashMap<String, Waiting>>,
    /// 2026-07-28: confirmation ids already used, until their state expires (single use).
    used: Mutex<HashMap<String, Millis>>,
}

impl CallerConfirm {
    pub fn new(settings: &CallerConfirmation) -> Result<CallerConfirm, getrandom::Error> {
        let key = match &settings.secret {
            Some(s) => StateKey::new(s.clone()),
            None => StateKey::random()?,
        };
        Ok(CallerConfirm {
            settings: settings.clone(),
            key,
            sessions: Mutex::default(),
            waiting: Mutex::default(),
            used: Mutex::default(),
        })
    }

    /// A legacy `initialize` that declared elicitation was answered with session `id`.
    pub fn remember_session(&self, id: &str, principal: Option<String>) {
        let mut s = self.sessions.lock().expect("sessions lock");
        if s.len() >= MAX_SESSIONS
            && !s.contains_key(id)
            && let Some(oldest) = s.iter().min_by_key(|(_, v)| v.seen).map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(
            id.to_owned(),
            Session {
                principal,
                seen: now_ms(),
            },
        );
    }

    /// The client ended its legacy session (DELETE).
    pub fn forget_session(&self, id: &str) {
        self.sessions.lock().expect("sessions lock").remove(id);
    }

    fn session_elicits(&self, id: &str, principal: Option<&str>) -> bool {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .is_some_and(|s| s.principal.as_deref() == principal)
    }

    /// Marks confirmation `id` used; `false` when it already was.
    fn use_once(&self, id: &str, exp: Millis) -> bool {
        let mut used = self.used.lock().expect("used lock");
        if used.len() > 1024 {
            let now = now_ms();
            used.retain(|_, e| *e > now);
        }
        used.insert(id.to_owned(), exp).is_none()
    }
}

/// Whether `inbound` is an `initialize` whose client declares `capabilities.elicitation` (legacy).
pub fn declares_elicitation(inbound: &Inbound) -> bool {
    inbound.single_request_method() == Some("initialize")
        && inbound
            .single_message()
            .and_then(|m| m.params())
            .and_then(|p| p.pointer("/capabilities/elicitation"))
            .is_some_and(Value::is_object)
}

/// For a legacy `initialize` declaring elicitation (with caller confirmation on): what remembers the
/// session the upstream answers with, bound to the caller's principal ([`CallerConfirm::remember_session`]).
pub fn session_hook(
    approvals: Option<&Arc<Approvals>>,
    ctx: &RequestCtx,
    inbound: &Inbound,
) -> Option<SessionHook> {
    let approvals = approvals.filter(|a| a.caller().is_some())?;
    if !declares_elicitation(inbound) {
        return None;
    }
    let approvals = approvals.clone();
    let principal = super::principal(ctx);
    Some(Box::new(move |session: &str| {
        if let Some(c) = approvals.caller() {
            c.remember_session(session, principal);
        }
    }))
}

/// A new confirmation id: `cnf_` + 12 base32 characters.
pub(super) fn new_id() -> String {
    format!("cnf_{}", &super::new_id()[4..])
}

fn args_digest(args: &Value) -> String {
    let mut canonical = Vec::new();
    crate::audit::record::canonical_bytes(args, &mut canonical);
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical))
}

/// The audit record of one step of a confirmation.
pub(super) struct Step<'a> {
    pub(super) id: &'a str,
    pub(super) ctx: &'a RequestCtx,
    pub(super) tool: &'a str,
    pub(super) args_digest: &'a str,
    pub(super) via: Via,
}

impl Step<'_> {
    pub(super) fn record(&self, event: ApprovalEvent) -> ApprovalRecord {
        ApprovalRecord {
            event,
            approval_id: self.id.to_owned(),
            request_id: Some(self.ctx.id_str().to_owned()),
            route: self.ctx.route.clone().unwrap_or_default(),
            tool: self.tool.to_owned(),
            args_digest: format!("sha256:{}", self.args_digest),
            arguments: Arguments::Omitted,
            principal: super::principal(self.ctx),
            policy: None,
            reason: None,
            expires_at: None,
            approver: None,
            comment: None,
            delivered: None,
            attempts: None,
            error: None,
            via: Some(self.via.as_str().to_owned()),
        }
    }

    pub(super) fn decided(&self, event: ApprovalEvent, comment: Option<String>) -> ApprovalRecord {
        let mut r = self.record(event);
        r.approver = Some(super::principal(self.ctx).unwrap_or_else(|| "caller".into()));
        r.comment = comment;
        r
    }
}

/// What [`before_policy`] made of a request.
pub enum Before {
    /// Go on to the policy chain with this (possibly stripped) request, and a confirmation when it is the
    /// confirmed retry of a call the gateway asked about.
    Continue(Inbound, Option<Confirmed>),
    /// Answered here: the client's answer to a gateway elicitation (202), or a confirmation that did not let
    /// the call through (`Refused`: declined, expired or invalid; a 200 `isError` result).
    Answered(Response<Body>),
    Refused(Response<Body>),
}

/// Catches, before the policy chain, what belongs to the gateway: a legacy client's answer to a gateway
/// elicitation, and the 2026-07-28 retry of a call the gateway asked the caller to confirm (see module docs).
pub async fn before_policy(
    approvals: &Approvals,
    caller: &CallerConfirm,
    ctx: &RequestCtx,
    redaction: &Redaction,
    inbound: Inbound,
) -> Result<Before, AuditError> {
    let Some(msg) = inbound.single_message() else {
        return Ok(Before::Continue(inbound, None));
    };
    if let Message::Response {
        id: Some(Id::Str(id)),
        result,
    } = msg
        && id.starts_with(ELICIT_ID_PREFIX)
    {
        super::elicit::take_answer(caller, ctx, id, result.as_ref());
        let mut resp = Response::new(crate::body::full(Bytes::new()));
        *resp.status_mut() = StatusCode::ACCEPTED;
        return Ok(Before::Answered(resp));
    }
    if !inbound.is_modern() || inbound.single_request_method() != Some("tools/call") {
        return Ok(Before::Continue(inbound, None));
    }
    let params = msg.params().cloned().unwrap_or(Value::Null);
    let state = params.get("requestState").and_then(Value::as_str);
    let answer = params.pointer(&format!("/inputResponses/{}", INPUT_KEY.replace('/', "~1")));
    if !state.is_some_and(|s| s.starts_with(state::PREFIX)) && answer.is_none() {
        return Ok(Before::Continue(inbound, None));
    }
    let tool = params.get("name").and_then(Value::as_str).unwrap_or("");
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let digest = args_digest(&args);
    let route = ctx.route.as_deref().unwrap_or("");
    let principal = super::principal(ctx);
    let binding = Binding {
        route,
        tool,
        args: &digest,
        principal: principal.as_deref(),
        session: ctx.session_id.as_deref(),
    };
    let now = now_ms();
    let opened = state
        .ok_or(StateError::Malformed)
        .and_then(|s| caller.key.open(s, now, &binding))
        .and_then(|st| {
            if caller.use_once(&st.id, st.exp) {
                Ok(st)
            } else {
                Err(StateError::Replayed { id: st.id })
            }
        });
    let st = match opened {
        Ok(st) => st,
        Err(e) => return refuse_state(approvals, ctx, redaction, inbound, tool, &digest, e).await,
    };
    let step = Step {
        id: &st.id,
        ctx,
        tool,
        args_digest: &digest,
        via: Via::InputRequired,
    };
    match answer.map_or(
        Answer::Declined("did not answer the confirmation".into()),
        |a| Answer::of(Ok(a)),
    ) {
        Answer::Declined(how) => {
            approvals
                .audit(step.decided(ApprovalEvent::Denied, Some(how.clone())))
                .await?;
            tracing::info!(request_id = ctx.id_str(), confirmation = %st.id, tool, "the caller {how} the call");
            Ok(Before::Refused(reply::tool_error(
                ctx,
                true,
                &declined_text(ctx, &st.id, &how),
            )))
        }
        Answer::Confirmed => {
            approvals
                .audit(step.decided(ApprovalEvent::Approved, None))
                .await?;
            let stripped = match strip(msg, &st) {
                Some(stripped) => stripped,
                None => {
                    let e = StateError::Malformed;
                    return refuse_state(approvals, ctx, redaction, inbound, tool, &digest, e)
                        .await;
                }
            };
            let confirmed = Confirmed {
                confirmation: Confirmation {
                    id: st.id,
                    by: principal,
                    via: Via::InputRequired,
                },
            };
            Ok(Before::Continue(stripped, Some(confirmed)))
        }
    }
}

/// The retried message without the gateway's state and answer (and with the upstream's own state and
/// answers restored), parsed again: what is decided and forwarded is exactly what the upstream gets.
fn strip(msg: &Message, st: &State) -> Option<Inbound> {
    let Message::Request { id, method, params } = msg else {
        return None;
    };
    let mut params = params.clone()?;
    let p = params.as_object_mut()?;
    p.remove("requestState");
    p.remove("inputResponses");
    if let Some(s) = &st.up_state {
        p.insert("requestState".into(), Value::String(s.clone()));
    }
    if let Some(r) = &st.up_responses {
        p.insert("inputResponses".into(), r.clone());
    }
    let body = serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": id.to_value(), "method": method, "params": params}),
    )
    .ok()?;
    let payload = crate::mcp::jsonrpc::parse(&body).ok()?;
    Some(Inbound::Post {
        payload,
        body: Bytes::from(body),
        modern: true,
    })
}

/// Refuses a retry whose `requestState` failed (a 200 `isError` result): an expired one is recorded as
/// `approval_expired`, anything else as a `deny` decision by `mcp-gateway`.
async fn refuse_state(
    approvals: &Approvals,
    ctx: &RequestCtx,
    redaction: &Redaction,
    inbound: Inbound,
    tool: &str,
    digest: &str,
    e: StateError,
) -> Result<Before, AuditError> {
    tracing::warn!(request_id = ctx.id_str(), tool, error = %e, "confirmation requestState refused");
    let rid = ctx.id_str();
    if let StateError::Expired { id } = &e {
        let step = Step {
            id,
            ctx,
            tool,
            args_digest: digest,
            via: Via::InputRequired,
        };
        approvals.audit(step.record(ApprovalEvent::Expired)).await?;
        return Ok(Before::Refused(reply::tool_error(
            ctx,
            true,
            &format!(
                "Confirmation {id} expired; the call was not executed. Calling again asks for a new confirmation. \
                 Gateway request id: {rid}."
            ),
        )));
    }
    let refused = Refused {
        inbound,
        verdicts: vec![Verdict {
            outcome: Outcome::Deny {
                policy: Arc::from("mcp-gateway"),
                reason: format!("confirmation refused: {e}"),
            },
            answers: Vec::new(),
        }],
    };
    approvals.auditor.refused(ctx, redaction, &refused);
    Ok(Before::Refused(reply::policy_answer(ctx, &refused)))
}

pub(super) fn declined_text(ctx: &RequestCtx, id: &str, how: &str) -> String {
    format!(
        "The user {how} this call (confirmation {id}); it was not executed. Do not retry it unless the user asks. \
         Gateway request id: {}.",
        ctx.id_str()
    )
}

/// How the caller can be asked to confirm `call`, if they can: the route and tool are covered, and the
/// client declared elicitation (2026-07-28: in this request's `_meta`; legacy: at `initialize` of this
/// session, and it accepts SSE).
fn can_ask(
    caller: &CallerConfirm,
    ctx: &RequestCtx,
    parts: &http::request::Parts,
    refused: &Refused,
    call: &hold::Call,
) -> Option<Via> {
    if !caller.settings.covers(&call.key.route, &call.key.tool) {
        return None;
    }
    if refused.inbound.is_modern() {
        let elicits = refused
            .inbound
            .single_message()
            .and_then(|m| m.params())
            .and_then(|p| {
                p.pointer("/_meta/io.modelcontextprotocol~1clientCapabilities/elicitation")
            })
            .is_some_and(Value::is_object);
        return elicits.then_some(Via::InputRequired);
    }
    let session = ctx.session_id.as_deref()?;
    (hold::wants_sse(parts) && caller.session_elicits(session, call.key.principal.as_deref()))
        .then_some(Via::Elicitation)
}

/// The `elicitation/create` params asking the user to confirm `call`.
pub(super) fn elicitation(
    call: &hold::Call,
    redaction: &Redaction,
    args: &Value,
    modern: bool,
) -> Value {
    let shown = match redaction.apply(Some(call.key.tool.as_str()), Some(args)) {
        Arguments::Full(v) => {
            let mut s = v.to_string();
            if s.len() > 2000 {
                let mut cut = 2000;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            s
        }
        Arguments::Digest { sha256, size } => {
            format!("not shown here ({size} bytes, {sha256})")
        }
        Arguments::Omitted => "not shown here".to_owned(),
    };
    let message = format!(
        "Confirm this tool call? The gateway's policy '{}' asks for approval: {}.\n\nTool: {} (route {})\nArguments: {}",
        call.policy, call.reason, call.key.tool, call.key.route, shown
    );
    let mut params = json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": {"confirm": {"type": "boolean", "title": "Run this call",
                                       "description": format!("Run {} with these arguments", call.key.tool)}},
            "required": ["confirm"],
        },
    });
    if modern {
        params["mode"] = json!("form");
    }
    params
}

/// 2026-07-28: answers the call with `input_required` (see module docs).
async fn ask_modern(
    approvals: &Approvals,
    caller: &CallerConfirm,
    ctx: &RequestCtx,
    redaction: &Redaction,
    refused: &Refused,
    call: &hold::Call,
) -> Result<Response<Body>, GatewayError> {
    let params = refused
        .inbound
        .single_message()
        .and_then(|m| m.params())
        .cloned()
        .unwrap_or(Value::Null);
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let id = new_id();
    let exp = now_ms() + caller.settings.expire.as_millis() as Millis;
    let sealed = caller.key.seal(&State {
        id: id.clone(),
        route: call.key.route.clone(),
        tool: call.key.tool.clone(),
        args: call.key.args_digest.clone(),
        principal: call.key.principal.clone(),
        session: ctx.session_id.clone(),
        exp,
        policy: call.policy.clone(),
        up_state: params
            .get("requestState")
            .and_then(Value::as_str)
            .map(str::to_owned),
        up_responses: params.get("inputResponses").cloned(),
    });
    let request = json!({"method": "elicitation/create", "params": elicitation(call, redaction, &args, true)});
    requested(
        approvals,
        ctx,
        redaction,
        refused,
        call,
        &id,
        exp,
        Via::InputRequired,
    )
    .await?;
    let step = Step {
        id: &id,
        ctx,
        tool: &call.key.tool,
        args_digest: &call.key.args_digest,
        via: Via::InputRequired,
    };
    let mut notified = step.record(ApprovalEvent::Notified);
    notified.delivered = Some(true);
    approvals.audit_later(notified);
    tracing::info!(request_id = ctx.id_str(), confirmation = %id, tool = %call.key.tool, "caller asked to confirm (input_required)");
    Ok(reply::input_required(ctx, INPUT_KEY, request, &sealed))
}

/// The first records of a confirmation: the `require_approval` decision naming it, `approval_requested`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn requested(
    approvals: &Approvals,
    ctx: &RequestCtx,
    redaction: &Redaction,
    refused: &Refused,
    call: &hold::Call,
    id: &str,
    exp: Millis,
    via: Via,
) -> Result<(), AuditError> {
    approvals
        .auditor
        .awaiting_approval(ctx, redaction, refused, id);
    let step = Step {
        id,
        ctx,
        tool: &call.key.tool,
        args_digest: &call.key.args_digest,
        via,
    };
    let mut r = step.record(ApprovalEvent::Requested);
    r.arguments = call
        .arguments
        .clone()
        .map_or(Arguments::Omitted, Arguments::Full);
    r.policy = Some(call.policy.clone());
    r.reason = Some(call.reason.clone());
    r.expires_at = Some(rfc3339(exp));
    approvals.audit(r).await
}

/// Lets a confirmed call through: `approval_grant_used`, then the normal audit stage → forward path.
pub(super) async fn release(
    held: Held,
    ctx: &mut RequestCtx,
    confirmed: Confirmed,
) -> Result<Response<Body>, GatewayError> {
    let c = confirmed.confirmation().clone();
    let step = Step {
        id: &c.id,
        ctx,
        tool: &held.call.key.tool,
        args_digest: &held.call.key.args_digest,
        via: c.via,
    };
    let mut used = step.decided(ApprovalEvent::GrantUsed, None);
    used.approver = Some(c.by.clone().unwrap_or_else(|| "caller".into()));
    held.approvals.audit(used).await?;
    ctx.decision = Some("allow");
    match Permitted::by_confirmation(held.refused, confirmed) {
        Ok(permitted) => hold::release(held.exit, &held.approvals, ctx, permitted).await,
        Err(refused) => Ok(reply::policy_answer(ctx, &refused)),
    }
}

/// Answers a single `tools/call` the chain sent for approval (the pipeline's one entry here): a confirmed
/// 2026-07-28 retry is let through; a caller who may and can confirm is asked (2026-07-28: `input_required`;
/// legacy: [`super::elicit`]); anything else goes to the operators ([`hold`]).
pub async fn respond(
    held: Held,
    ctx: &mut RequestCtx,
    confirmed: Option<Confirmed>,
) -> Result<Response<Body>, GatewayError> {
    if let Some(confirmed) = confirmed {
        return release_retry(held, ctx, confirmed).await;
    }
    let via = held
        .approvals
        .caller()
        .and_then(|c| can_ask(c, ctx, &held.exit.parts, &held.refused, &held.call));
    match (via, held.approvals.caller()) {
        (Some(Via::InputRequired), Some(c)) => {
            let redaction = &held.exit.egress.route.redaction;
            ask_modern(
                &held.approvals,
                c,
                ctx,
                redaction,
                &held.refused,
                &held.call,
            )
            .await
        }
        (Some(Via::Elicitation), _) => super::elicit::ask_legacy(held, ctx).await,
        _ => hold::respond(held, ctx).await,
    }
}

/// 2026-07-28: the confirmed retry reached a `RequireApproval` again — let it through.
async fn release_retry(
    held: Held,
    ctx: &mut RequestCtx,
    confirmed: Confirmed,
) -> Result<Response<Body>, GatewayError> {
    let covered = held
        .approvals
        .caller()
        .is_some_and(|c| c.settings.covers(&held.call.key.route, &held.call.key.tool));
    if !covered {
        return hold::respond(held, ctx).await;
    }
    release(held, ctx, confirmed).await
}

#[cfg(test)]
mod tests;
