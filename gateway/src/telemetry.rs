//! Logs: structured `tracing` output (text or JSON) on stderr, one access line per request keyed by the
//! gateway request id; the process-wide counters it bumps live in [`crate::metrics::counters`].

use std::sync::atomic::Ordering;

use http::StatusCode;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel, LogSettings};
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::error_class::error_chain;
use crate::metrics::COUNTERS;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init(log: &LogSettings) {
    let level = match log.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},hyper=warn,rustls=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_target(false);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Colour in text logs only on a terminal, and never when `NO_COLOR` is set to anything but the empty string
/// (<https://no-color.org>): a log in a file or a CI job must not be full of escape sequences.
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The one access-log line per request.
pub fn access(ctx: &RequestCtx, status: StatusCode) {
    COUNTERS.requests.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        request_id = ctx.id_str(),
        client = %ctx.conn.peer,
        host = ctx.host.as_deref().unwrap_or("-"),
        route = ctx.route.as_deref().unwrap_or("-"),
        principal = ctx.principal.as_ref().map(|p| p.subject()).unwrap_or("-"),
        http_method = %ctx.http_method,
        path = %ctx.path,
        mcp_method = ctx.mcp_method.as_deref().unwrap_or("-"),
        decision = ctx.decision.unwrap_or("-"),
        rpc_id = %ctx.rpc_id.as_ref().map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        status = status.as_u16(),
        upstream_status = ctx.upstream_status.unwrap_or(0),
        latency_us = ctx.start.elapsed().as_micros() as u64,
        "request"
    );
}

/// A request refused by the gateway itself, with the full cause (which the client does not see).
pub fn refusal(ctx: &RequestCtx, err: &GatewayError) {
    COUNTERS.refusals.fetch_add(1, Ordering::Relaxed);
    crate::metrics::refusal(err.class());
    let cause = error_chain(err);
    tracing::warn!(request_id = ctx.id_str(), client = %ctx.conn.peer, reason = err.kind(), "{cause}");
}

/// A request the policy chain refused: one line per refused message, with policy and reason.
pub fn policy_refusal(ctx: &RequestCtx, refused: &crate::policy::Refused) {
    use crate::policy::verdict::Outcome;
    COUNTERS.policy_denials.fetch_add(1, Ordering::Relaxed);
    for v in &refused.verdicts {
        match &v.outcome {
            Outcome::Allow => {}
            Outcome::Deny { policy, reason } => tracing::info!(
                request_id = ctx.id_str(),
                policy = &**policy,
                "denied by policy: {reason}"
            ),
            Outcome::RequireApproval { policy, reason } => {
                tracing::info!(
                    request_id = ctx.id_str(),
                    policy = &**policy,
                    "approval required by policy: {reason}"
                )
            }
            Outcome::Hidden { policy, kind, name } => tracing::info!(
                request_id = ctx.id_str(),
                policy = &**policy,
                kind = kind.label(),
                name,
                "use of a hidden {} refused",
                kind.label()
            ),
        }
    }
}

/// Attributes of the parsed message on the parse span and the request's root span (only called when the
/// trace records).
pub fn trace_message(span: &crate::otel::Trace, ctx: &RequestCtx, inbound: &crate::mcp::Inbound) {
    for t in [span, &ctx.trace] {
        if let Some(m) = &ctx.mcp_method {
            t.set("mcp.method.name", m.clone());
        }
        if let Some(tool) = inbound
            .single_message()
            .and_then(crate::policy::view::called_tool)
        {
            t.set("gen_ai.tool.name", tool.to_owned());
        }
        if let Some(id) = &ctx.rpc_id {
            t.set("jsonrpc.request.id", id.to_string());
        }
    }
    if let crate::mcp::Inbound::Post { payload, .. } = inbound {
        span.set("mcp_gateway.messages", payload.messages().len() as i64);
    }
}

/// Gives the request's root span what the access line says (a refusal by the gateway marks it failed). A span
/// that records ends with the answer's body (`otel::body`, wrapped by the caller); any other ends here.
pub fn end_trace(ctx: &RequestCtx, status: StatusCode, refusal: Option<&'static str>) {
    let t = &ctx.trace;
    if !t.recording() {
        t.end();
        return;
    }
    t.set("mcp_gateway.request_id", ctx.id_str().to_owned());
    t.set("http.response.status_code", i64::from(status.as_u16()));
    t.set("mcp_gateway.decision", ctx.decision.unwrap_or("-"));
    if let Some(s) = ctx.upstream_status {
        t.set("mcp_gateway.upstream_status", i64::from(s));
    }
    if let Some(p) = &ctx.principal {
        t.set("enduser.id", p.subject().to_owned());
    }
    if let Some(kind) = refusal {
        t.set("mcp_gateway.refusal", kind);
        t.fail(kind);
    } else if status.is_server_error() {
        t.fail(format!("status {status}"));
    }
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None));
        assert!(!colour(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(colour(true, Some(OsStr::new(""))));
    }
}
