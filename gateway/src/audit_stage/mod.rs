//! Stage 5b — audit: the decision for every message is recorded, and for an allowed request made durable,
//! before anything is forwarded.
//!
//! [`Recorded`] — which the forwarder requires — can only be made here, from a [`Permitted`], once the
//! decision record is covered by an `fdatasync` (or when the config turned auditing off explicitly). If the
//! record cannot be written, the request is not forwarded. Refusals (by policy, by argument validation, or
//! before any policy ran) and outcomes are queued without delaying the answer; they are never dropped.

pub mod outcome;

use std::sync::Arc;

use serde_json::Value;

use crate::arguments::InvalidArguments;
use crate::audit::{
    Arguments, AuditError, AuditLog, Decision, DecisionRecord, OutcomeRecord, PolicyResult, Record,
    RefusalKind, RefusalRecord,
};
use crate::config::{AuditSettings, PolicyMode, Redact, RouteSpec};
use crate::ctx::RequestCtx;
use crate::error_class::{ErrorClass, error_chain};
use crate::mcp::{Inbound, Message};
use crate::policy::verdict::{Answer, Outcome, Verdict};
use crate::policy::{Permitted, Refused};

/// Proof that a permitted request's decision is durable in the audit log (or that auditing is off by
/// explicit config). Private fields: only [`Auditor::record`] makes one.
#[derive(Debug)]
pub struct Recorded {
    permitted: Permitted,
    seq: Option<u64>,
}

impl Recorded {
    pub fn permitted(&self) -> &Permitted {
        &self.permitted
    }

    /// The audit sequence number of the (last) decision record; `None` when auditing is disabled.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }
}

/// How one route redacts tool arguments.
#[derive(Debug, Clone)]
pub struct Redaction {
    default: Redact,
    tools: Arc<[(String, Redact)]>,
}

impl Redaction {
    pub fn for_route(audit: Option<&AuditSettings>, route: &RouteSpec) -> Redaction {
        let (default, tools) = match audit {
            Some(a) => (route.redact.unwrap_or(a.redact), a.redact_tools.clone()),
            None => (Redact::Omit, Vec::new()),
        };
        Redaction {
            default,
            tools: tools.into(),
        }
    }

    fn mode(&self, tool: Option<&str>) -> Redact {
        tool.and_then(|t| {
            self.tools
                .iter()
                .find(|(glob, _)| crate::config::glob::glob_match(glob, t))
                .map(|(_, m)| *m)
        })
        .unwrap_or(self.default)
    }

    /// What of `args` (of a call to `tool`) this route keeps.
    pub fn apply(&self, tool: Option<&str>, args: Option<&Value>) -> Arguments {
        match (args, self.mode(tool)) {
            (None, _) | (_, Redact::Omit) => Arguments::Omitted,
            (Some(a), Redact::Full) => Arguments::Full(a.clone()),
            (Some(a), Redact::Digest) => Arguments::digest_of(a),
        }
    }
}

/// The audit stage: the log (absent when disabled) and how to write into it.
#[derive(Clone)]
pub struct Auditor {
    log: Option<AuditLog>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("enabled", &self.log.is_some())
            .finish()
    }
}

impl Auditor {
    pub fn new(log: Option<AuditLog>) -> Auditor {
        Auditor { log }
    }

    pub fn log(&self) -> Option<&AuditLog> {
        self.log.as_ref()
    }

    /// Records the decision of a permitted request and waits until it is durable.
    pub async fn record(
        &self,
        ctx: &RequestCtx,
        redaction: &Redaction,
        permitted: Permitted,
    ) -> Result<Recorded, AuditError> {
        let Some(log) = &self.log else {
            return Ok(Recorded {
                permitted,
                seq: None,
            });
        };
        let mut records =
            decision_records(ctx, redaction, permitted.inbound(), permitted.verdicts());
        if let Some(a) = permitted.approval() {
            for r in records
                .iter_mut()
                .filter(|r| r.decision == Decision::RequireApproval)
            {
                r.decision = Decision::Allow;
                r.reason = Some(format!(
                    "allowed by approval {} (approved by {}); asked by {}",
                    a.id,
                    a.approver.as_deref().unwrap_or("?"),
                    r.reason.as_deref().unwrap_or("policy")
                ));
                r.approval_id = Some(a.id.clone());
            }
        }
        if let Some(c) = permitted.confirmation() {
            for r in records
                .iter_mut()
                .filter(|r| r.decision == Decision::RequireApproval)
            {
                r.decision = Decision::Allow;
                r.reason = Some(format!(
                    "allowed by the caller's confirmation {} (confirmed by {} via {}); asked by {}",
                    c.id,
                    c.by.as_deref().unwrap_or("the caller"),
                    c.via.as_str(),
                    r.reason.as_deref().unwrap_or("policy")
                ));
                r.approval_id = Some(c.id.clone());
            }
        }
        let mut seq = None;
        for r in records {
            seq = Some(log.append(Record::Decision(r)).await?.seq);
        }
        Ok(Recorded { permitted, seq })
    }

    /// Records a request the policy chain refused (queued; nothing is forwarded, so nothing waits).
    pub fn refused(&self, ctx: &RequestCtx, redaction: &Redaction, refused: &Refused) {
        let Some(log) = &self.log else { return };
        for r in decision_records(ctx, redaction, &refused.inbound, &refused.verdicts) {
            log.append_later(Record::Decision(r));
        }
    }

    /// Records a call the chain sent for approval and that now waits for approval `approval_id` (queued).
    pub fn awaiting_approval(
        &self,
        ctx: &RequestCtx,
        redaction: &Redaction,
        refused: &Refused,
        approval_id: &str,
    ) {
        let Some(log) = &self.log else { return };
        for mut r in decision_records(ctx, redaction, &refused.inbound, &refused.verdicts) {
            r.approval_id = Some(approval_id.to_owned());
            log.append_later(Record::Decision(r));
        }
    }

    /// Records a `tools/call` refused by argument validation.
    pub fn invalid_arguments(
        &self,
        ctx: &RequestCtx,
        redaction: &Redaction,
        inbound: &Inbound,
        invalid: &[InvalidArguments],
    ) {
        let Some(log) = &self.log else { return };
        let Inbound::Post { payload, .. } = inbound else {
            return;
        };
        for bad in invalid {
            let Some(msg) = payload.messages().get(bad.index) else {
                continue;
            };
            let mut r = base(ctx, redaction, msg);
            r.decision = Decision::InvalidArguments;
            r.reason = Some(bad.errors.join("; "));
            log.append_later(Record::Decision(r));
        }
    }

    /// Records a request refused before any policy ran, by the error's class and with its full cause.
    pub fn refusal(&self, ctx: &RequestCtx, class: ErrorClass, err: &dyn std::error::Error) {
        let Some(log) = &self.log else { return };
        let Some(reason) = refusal_kind(class) else {
            return;
        };
        log.append_later(Record::Refusal(RefusalRecord {
            request_id: Some(ctx.id_str().to_owned()),
            route: ctx.route.clone(),
            host: ctx.host.clone(),
            client: Some(ctx.conn.peer.to_string()),
            principal: ctx.principal.as_ref().map(|p| p.subject().to_owned()),
            reason,
            detail: Some(error_chain(err)),
        }));
    }

    /// Records that forwarding failed (no answer to watch; a forwarded answer's outcome is written by
    /// [`outcome`] when its body ends).
    pub fn outcome(&self, ctx: &RequestCtx, status: Option<u16>, error: Option<String>) {
        let Some(log) = &self.log else { return };
        log.append_later(Record::Outcome(OutcomeRecord {
            bytes: None,
            duration_us: None,
            error,
            is_error: None,
            latency_us: ctx.start.elapsed().as_micros() as u64,
            request_id: ctx.id_str().to_owned(),
            status,
        }));
    }
}

/// The refusal record's kind of an error class; `None` for what is an outcome record instead (decided and
/// recorded already; what went wrong upstream).
fn refusal_kind(class: ErrorClass) -> Option<RefusalKind> {
    Some(match class {
        ErrorClass::NoRoute | ErrorClass::BadHost => RefusalKind::NoRoute,
        ErrorClass::SniMismatch => RefusalKind::SniMismatch,
        ErrorClass::IpNotAllowed => RefusalKind::IpNotAllowed,
        ErrorClass::Unresolvable => RefusalKind::ResolveFailed,
        ErrorClass::MethodNotAllowed => RefusalKind::MethodNotAllowed,
        ErrorClass::UnsupportedMediaType => RefusalKind::UnsupportedMediaType,
        ErrorClass::BodyTooLarge => RefusalKind::BodyTooLarge,
        ErrorClass::BodyTimeout => RefusalKind::BodyTimeout,
        ErrorClass::JsonParse => RefusalKind::ParseError,
        ErrorClass::InvalidJsonRpc => RefusalKind::InvalidJsonRpc,
        ErrorClass::HeaderMismatch => RefusalKind::HeaderMismatch,
        ErrorClass::BodyRead | ErrorClass::AuditUnavailable => RefusalKind::Other,
        ErrorClass::UpstreamTimeout
        | ErrorClass::UpstreamUnavailable
        | ErrorClass::Unfilterable => {
            return None;
        }
        ErrorClass::IdentityUnavailable => RefusalKind::IdentityUnavailable,
        ErrorClass::Unauthenticated => RefusalKind::Unauthenticated,
    })
}

fn base(ctx: &RequestCtx, redaction: &Redaction, msg: &Message) -> DecisionRecord {
    let method = msg
        .method()
        .map(str::to_owned)
        .unwrap_or_else(|| "(response)".to_owned());
    let params = msg.params();
    let tool = match msg.method() {
        Some("tools/call" | "prompts/get") => params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let args = match msg.method() {
        Some("tools/call" | "prompts/get") => Some(
            params
                .and_then(|p| p.get("arguments"))
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
        ),
        _ => None,
    };
    DecisionRecord {
        direction: None,
        would: None,
        rpc_id: msg.id().map(|i| i.to_value()),
        arguments: redaction.apply(tool.as_deref(), args.as_ref()),
        tool,
        ..envelope(ctx, method)
    }
}

/// What every decision record of a request carries: who, where, which session; decision `allow` until set.
fn envelope(ctx: &RequestCtx, method: String) -> DecisionRecord {
    DecisionRecord {
        direction: None,
        would: None,
        request_id: ctx.id_str().to_owned(),
        route: ctx.route.clone(),
        host: ctx.host.clone(),
        client: Some(ctx.conn.peer.to_string()),
        principal: ctx.principal.as_ref().map(|p| p.subject().to_owned()),
        principal_claims: ctx
            .principal
            .as_ref()
            .map(|p| Value::Object(p.claims().clone())),
        session_id: ctx.session_id.clone(),
        protocol_version: ctx.protocol_version.clone(),
        method,
        rpc_id: None,
        tool: None,
        arguments: Arguments::Omitted,
        policies: Vec::new(),
        decision: Decision::Allow,
        reason: None,
        approval_id: None,
    }
}

/// One decision record per message (one for a request without messages: GET stream, DELETE, discovery).
fn decision_records(
    ctx: &RequestCtx,
    redaction: &Redaction,
    inbound: &Inbound,
    verdicts: &[Verdict],
) -> Vec<DecisionRecord> {
    let Inbound::Post { payload, .. } = inbound else {
        let what = match inbound {
            Inbound::OpenStream => "opens the server-to-client stream",
            Inbound::Discovery => "fetches an OAuth discovery document",
            _ => "ends the session",
        };
        return vec![DecisionRecord {
            direction: None,
            would: None,
            reason: Some(format!("no JSON-RPC message: the request {what}")),
            ..envelope(ctx, format!("HTTP {} {}", ctx.http_method, ctx.path))
        }];
    };
    payload
        .messages()
        .iter()
        .enumerate()
        .map(|(i, msg)| {
            let mut r = base(ctx, redaction, msg);
            match verdicts.get(i) {
                Some(v) => apply_verdict(&mut r, v),
                None => r.reason = Some("no policies configured (drop-in mode)".into()),
            }
            r
        })
        .collect()
}

/// Writes a verdict into a record: every policy's answer, the decision and its reason, and (monitor mode)
/// what the chain would have decided had its monitor policies enforced, when that differs.
fn apply_verdict(r: &mut DecisionRecord, v: &Verdict) {
    r.policies = v.answers.iter().map(policy_result).collect();
    (r.decision, r.reason) = decision_of(&v.outcome, v.answers.is_empty());
    if v.answers.iter().any(|a| a.mode == PolicyMode::Monitor) {
        let (would, _) = decision_of(&crate::policy::verdict::would(&v.answers), false);
        r.would = (would != r.decision).then_some(would);
    }
}

fn decision_of(outcome: &Outcome, unpoliced: bool) -> (Decision, Option<String>) {
    match outcome {
        Outcome::Allow if unpoliced => (
            Decision::Allow,
            Some("no policy applies (unpoliced route)".into()),
        ),
        Outcome::Allow => (Decision::Allow, None),
        Outcome::Deny { policy, reason } => (Decision::Deny, Some(format!("{policy}: {reason}"))),
        Outcome::RequireApproval { policy, reason } => (
            Decision::RequireApproval,
            Some(format!("{policy}: {reason}")),
        ),
        Outcome::Hidden { policy, kind, name } => (
            Decision::Hidden,
            Some(format!("{policy}: {} {name} is hidden", kind.label())),
        ),
    }
}

/// Records the chain's decisions on the requests the server makes of the client on one request's answer
/// stream (sampling, elicitation, roots): a decision like any other.
#[derive(Clone)]
pub struct ServerRequestAudit {
    log: AuditLog,
    envelope: DecisionRecord,
}

impl Auditor {
    /// What recording server-to-client decisions on `ctx`'s answer needs; `None` when auditing is off.
    pub fn server_requests(&self, ctx: &RequestCtx) -> Option<ServerRequestAudit> {
        Some(ServerRequestAudit {
            log: self.log.clone()?,
            envelope: DecisionRecord {
                direction: Some("server_to_client"),
                ..envelope(ctx, String::new())
            },
        })
    }
}

impl ServerRequestAudit {
    /// Records one decision: an allowed request is durable before it may reach the client (`Err`: it must
    /// not); a refused one is queued.
    pub async fn record(&self, msg: &Message, verdict: &Verdict) -> Result<(), AuditError> {
        let mut r = DecisionRecord {
            method: msg.method().unwrap_or("?").to_owned(),
            rpc_id: msg.id().map(|i| i.to_value()),
            ..self.envelope.clone()
        };
        apply_verdict(&mut r, verdict);
        if verdict.is_allow() {
            self.log.append(Record::Decision(r)).await.map(|_| ())
        } else {
            self.log.append_later(Record::Decision(r));
            Ok(())
        }
    }
}

fn policy_result(a: &crate::policy::verdict::PolicyAnswer) -> PolicyResult {
    let (answer, reason) = match &a.answer {
        Answer::Failed(f) => (format!("failed:{}", f.kind()), Some(f.to_string())),
        Answer::Deny(r) | Answer::RequireApproval(r) => {
            (a.answer.label().to_owned(), Some(r.clone()))
        }
        other => (other.label().to_owned(), None),
    };
    PolicyResult {
        name: a.policy.to_string(),
        sha256: a.sha256.clone(),
        settings_digest: a.settings_digest.clone(),
        mode: match a.mode {
            PolicyMode::Enforce => "enforce".into(),
            PolicyMode::Monitor => "monitor".into(),
        },
        answer,
        reason,
        elapsed_us: a.elapsed.as_micros() as u64,
    }
}
