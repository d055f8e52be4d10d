//! Metrics: process-wide counters and histograms over atomics, exported by the admin listener's `/metrics` in
//! the Prometheus text format ([`encode`]).
//!
//! The request path only does relaxed atomic adds: every label set is fixed when the [`crate::pipeline::Gateway`]
//! is built — per route a [`RouteStats`] (an array indexed by method class × decision, an upstream latency
//! histogram, upstream errors by kind), shared by key across config reloads so counters never go back — or
//! fixed for the process ([`static@POLICY_SECONDS`], the audit histograms, refusal reasons). Nothing is looked up
//! by string and no lock is taken per request; the registry's lock is taken only when a gateway is built and
//! when `/metrics` is scraped.

pub mod counters;
pub mod encode;
pub mod histogram;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use encode::{Exposition, Kind};
use histogram::{Histogram, Unit, ms, us};

pub use counters::{COUNTERS, Counters, MONITOR_WOULD, POLICY_FAILURE_KINDS};

use crate::forward::ForwardError;

/// `method` label: the first JSON-RPC method of a request, by class (a fixed set, so a client cannot create
/// series). `none`: no message (GET streams, DELETE, or refused before the body was parsed).
pub const METHODS: [&str; 13] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "prompts/get",
    "server/discover",
    "notifications",
    "other",
    "none",
];

/// `decision` label. The policy outcomes as the access log names them; `refused`: refused by the gateway
/// before a decision (routing, IP gate, malformed request); `error`: decided, but the audit log, the upstream
/// or the response filter failed.
pub const DECISIONS: [&str; 8] = [
    "allow",
    "unpoliced",
    "deny",
    "hidden",
    "require_approval",
    "invalid_arguments",
    "refused",
    "error",
];

/// `reason` label of refusals: `error_class::REASONS`, in its order, then `other` (kept in the exposition).
pub const REFUSAL_REASONS: [&str; 16] = {
    let reasons = crate::error_class::REASONS;
    let mut out = ["other"; 16];
    let mut i = 0;
    while i < reasons.len() {
        out[i] = reasons[i];
        i += 1;
    }
    out
};

/// `mcp_gateway_approvals_pending`: approval requests still pending in the store (see
/// `approvals::Approvals::spawn_sweeper`).
pub static APPROVALS_PENDING: AtomicI64 = AtomicI64::new(0);

/// `kind` label of upstream errors.
pub const UPSTREAM_ERRORS: [&str; 4] = ["timeout", "unavailable", "bad_request", "status_5xx"];

const UPSTREAM_BOUNDS: [u64; 15] = [
    ms(1),
    ms(2) + us(500),
    ms(5),
    ms(10),
    ms(25),
    ms(50),
    ms(100),
    ms(250),
    ms(500),
    ms(1000),
    ms(2500),
    ms(5000),
    ms(10_000),
    ms(30_000),
    ms(60_000),
];

/// Counters of one route (or of requests that matched none).
#[derive(Debug)]
pub struct RouteStats {
    requests: [[AtomicU64; DECISIONS.len()]; METHODS.len()],
    upstream_seconds: Histogram<15>,
    upstream_errors: [AtomicU64; UPSTREAM_ERRORS.len()],
    /// Tool definitions listed that differ from their pin (`pins.rs`).
    tool_changes: AtomicU64,
}

impl RouteStats {
    const fn new() -> Self {
        RouteStats {
            requests: [const { [const { AtomicU64::new(0) }; DECISIONS.len()] }; METHODS.len()],
            upstream_seconds: Histogram::new(Unit::Seconds, UPSTREAM_BOUNDS),
            upstream_errors: [const { AtomicU64::new(0) }; UPSTREAM_ERRORS.len()],
            tool_changes: AtomicU64::new(0),
        }
    }

    /// Counts one tool definition that differs from its pin.
    #[inline]
    pub fn tool_changed(&self) {
        self.tool_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one finished request.
    #[inline]
    pub fn request(&self, mcp_method: Option<&str>, decision: &str) {
        self.requests[method_class(mcp_method)][decision_index(decision)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one upstream exchange: its time to response headers, or why it failed.
    #[inline]
    pub fn upstream<B>(&self, result: &Result<http::Response<B>, ForwardError>, took: Duration) {
        let failed = match result {
            Ok(r) => {
                self.upstream_seconds.observe_duration(took);
                r.status().is_server_error().then_some(3)
            }
            Err(ForwardError::Timeout { .. }) => Some(0),
            Err(ForwardError::Unavailable { .. }) => Some(1),
            Err(ForwardError::Request(_)) => Some(2),
        };
        if let Some(i) = failed {
            self.upstream_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn method_class(m: Option<&str>) -> usize {
    let Some(m) = m else {
        return METHODS.len() - 1;
    };
    if m.starts_with("notifications/") {
        return 10;
    }
    METHODS[..10]
        .iter()
        .position(|k| *k == m)
        .unwrap_or(METHODS.len() - 2)
}

fn decision_index(d: &str) -> usize {
    DECISIONS
        .iter()
        .position(|k| *k == d)
        .unwrap_or(DECISIONS.len() - 1)
}

/// Requests that matched no route (label `route="-"`).
pub static UNROUTED: RouteStats = RouteStats::new();

/// Route key → its stats, kept across reloads (a route that comes back continues its counters).
static ROUTES: Mutex<Vec<(String, Arc<RouteStats>)>> = Mutex::new(Vec::new());

/// The stats of route `key` (created on first use). Called when a gateway is built, never per request.
pub fn route_stats(key: &str) -> Arc<RouteStats> {
    let mut routes = ROUTES.lock().unwrap_or_else(PoisonError::into_inner);
    match routes.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
        Ok(i) => routes[i].1.clone(),
        Err(i) => {
            let stats = Arc::new(RouteStats::new());
            routes.insert(i, (key.to_owned(), stats.clone()));
            stats
        }
    }
}

/// Time for the policy chain to decide a client request's messages (routes with a non-empty chain).
pub static POLICY_SECONDS: Histogram<13> = Histogram::new(
    Unit::Seconds,
    [
        us(50),
        us(100),
        us(250),
        us(500),
        ms(1),
        ms(2) + us(500),
        ms(5),
        ms(10),
        ms(25),
        ms(50),
        ms(100),
        ms(250),
        ms(1000),
    ],
);

/// Records per group-commit batch.
pub static AUDIT_BATCH_RECORDS: Histogram<12> = Histogram::new(
    Unit::Count,
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096],
);

/// One batch's `write` + `fdatasync`.
pub static AUDIT_SYNC_SECONDS: Histogram<12> = Histogram::new(
    Unit::Seconds,
    [
        us(100),
        us(250),
        us(500),
        ms(1),
        ms(2) + us(500),
        ms(5),
        ms(10),
        ms(25),
        ms(50),
        ms(100),
        ms(250),
        ms(1000),
    ],
);

/// Called by the audit writer after each batch it made durable.
#[inline]
pub fn audit_batch(records: u64, sync: Duration) {
    AUDIT_BATCH_RECORDS.observe(records);
    AUDIT_SYNC_SECONDS.observe_duration(sync);
}

/// An owed sync of records nobody waited for (see `audit::writer`): a sync, no new batch.
pub fn audit_sync(sync: Duration) {
    AUDIT_SYNC_SECONDS.observe_duration(sync);
}

static REFUSALS: [AtomicU64; REFUSAL_REASONS.len()] =
    [const { AtomicU64::new(0) }; REFUSAL_REASONS.len()];

/// Counts a request refused by the gateway itself (not by a policy), by the error's class (its
/// `reason_index` is its place in [`REFUSAL_REASONS`]).
pub fn refusal(class: crate::error_class::ErrorClass) {
    REFUSALS[class.reason_index()].fetch_add(1, Ordering::Relaxed);
}

/// What a scrape reads from the serving generation rather than from the process-wide statics.
#[derive(Debug, Default)]
pub struct Live {
    /// The audit log's counters and whether it can write; `None` when auditing is disabled.
    pub audit: Option<(crate::audit::Metrics, bool)>,
    /// The served certificate's notAfter, Unix seconds.
    pub cert_not_after: Option<i64>,
    /// Now, Unix seconds.
    pub now: i64,
    pub reloads: ReloadStats,
}

/// Config reloads of the serving process (counted by `reload.rs`).
#[derive(Debug, Default)]
pub struct Reloads {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// 1 if the last reload attempt was rejected, else 0.
    pub last_failed: AtomicU64,
    /// Unix time of the last successful load (start-up counts).
    pub last_success_unix: AtomicI64,
}

/// A reading of [`Reloads`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ReloadStats {
    pub succeeded: u64,
    pub failed: u64,
    /// The last reload attempt succeeded, or none was made.
    pub last_ok: bool,
    pub last_success_unix: i64,
}

impl Reloads {
    pub fn read(&self) -> ReloadStats {
        ReloadStats {
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_ok: self.last_failed.load(Ordering::Relaxed) == 0,
            last_success_unix: self.last_success_unix.load(Ordering::Relaxed),
        }
    }
}

/// The whole exposition.
pub fn render(live: &Live) -> String {
    let mut e = Exposition::new();
    let version = env!("CARGO_PKG_VERSION");
    e.family(
        "mcp_gateway_build_info",
        Kind::Gauge,
        "Always 1; the version label says which build runs.",
    );
    e.sample("mcp_gateway_build_info", &[("version", version)], 1);

    let routes = {
        let r = ROUTES.lock().unwrap_or_else(PoisonError::into_inner);
        r.clone()
    };
    let all =
        || std::iter::once(("-", &UNROUTED)).chain(routes.iter().map(|(k, s)| (k.as_str(), &**s)));

    e.family(
        "mcp_gateway_requests_total",
        Kind::Counter,
        "Requests answered, by route, MCP method class and decision.",
    );
    for (route, s) in all() {
        for (m, row) in METHODS.iter().zip(&s.requests) {
            for (d, n) in DECISIONS.iter().zip(row) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let labels = [("route", route), ("method", *m), ("decision", *d)];
                    e.sample("mcp_gateway_requests_total", &labels, n);
                }
            }
        }
    }

    e.family(
        "mcp_gateway_refusals_total",
        Kind::Counter,
        "Requests the gateway refused itself (before or outside policy), by reason.",
    );
    for (r, n) in REFUSAL_REASONS.iter().zip(&REFUSALS) {
        e.sample(
            "mcp_gateway_refusals_total",
            &[("reason", r)],
            n.load(Ordering::Relaxed),
        );
    }

    e.family(
        "mcp_gateway_policy_evaluation_seconds",
        Kind::Histogram,
        "Time for the policy chain to decide a request's messages.",
    );
    e.histogram(
        "mcp_gateway_policy_evaluation_seconds",
        &[],
        &POLICY_SECONDS.snapshot(),
    );
    e.family(
        "mcp_gateway_policy_failures_total",
        Kind::Counter,
        "Policy evaluations that failed (each one a deny), by kind.",
    );
    let c = &COUNTERS;
    for (k, n) in POLICY_FAILURE_KINDS.iter().zip(&c.policy_failures) {
        e.sample(
            "mcp_gateway_policy_failures_total",
            &[("kind", k)],
            n.load(Ordering::Relaxed),
        );
    }

    // Trace export (`telemetry.otlp:`; zero without it).
    for (name, help, n) in [
        (
            "mcp_gateway_otel_spans_ended_total",
            "Sampled spans handed to the export queue (minus exported and dropped: queued, or dropped by a full queue).",
            &crate::otel::export::SPANS_ENDED,
        ),
        (
            "mcp_gateway_otel_spans_exported_total",
            "Spans sent to the OTLP receiver in export requests that succeeded.",
            &crate::otel::export::SPANS_EXPORTED,
        ),
        (
            "mcp_gateway_otel_spans_dropped_total",
            "Spans lost because their OTLP export request failed or timed out.",
            &crate::otel::export::SPANS_DROPPED,
        ),
        (
            "mcp_gateway_otel_export_failures_total",
            "OTLP export requests that failed or timed out.",
            &crate::otel::export::EXPORT_FAILURES,
        ),
    ] {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[], n.load(Ordering::Relaxed));
    }

    e.family(
        "mcp_gateway_upstream_response_seconds",
        Kind::Histogram,
        "Time until the upstream's response headers, by route.",
    );
    for (route, s) in routes.iter().map(|(k, s)| (k.as_str(), s)) {
        e.histogram(
            "mcp_gateway_upstream_response_seconds",
            &[("route", route)],
            &s.upstream_seconds.snapshot(),
        );
    }
    e.family(
        "mcp_gateway_upstream_errors_total",
        Kind::Counter,
        "Upstream exchanges that failed or answered 5xx, by route and kind.",
    );
    for (route, s) in routes.iter().map(|(k, s)| (k.as_str(), s)) {
        for (k, n) in UPSTREAM_ERRORS.iter().zip(&s.upstream_errors) {
            e.sample(
                "mcp_gateway_upstream_errors_total",
                &[("route", route), ("kind", k)],
                n.load(Ordering::Relaxed),
            );
        }
    }
    e.family(
        "mcp_gateway_tool_changes_total",
        Kind::Counter,
        "Tool definitions listed by the upstream that differ from their pin (first seen or last accepted), by route.",
    );
    for (route, s) in routes.iter().map(|(k, s)| (k.as_str(), s)) {
        e.sample(
            "mcp_gateway_tool_changes_total",
            &[("route", route)],
            s.tool_changes.load(Ordering::Relaxed),
        );
    }

    e.family(
        "mcp_gateway_audit_batch_records",
        Kind::Histogram,
        "Records per audit group-commit batch.",
    );
    e.histogram(
        "mcp_gateway_audit_batch_records",
        &[],
        &AUDIT_BATCH_RECORDS.snapshot(),
    );
    e.family(
        "mcp_gateway_audit_sync_seconds",
        Kind::Histogram,
        "Time to write and fdatasync one audit batch.",
    );
    e.histogram(
        "mcp_gateway_audit_sync_seconds",
        &[],
        &AUDIT_SYNC_SECONDS.snapshot(),
    );
    if let Some((m, writable)) = &live.audit {
        for (name, help, v) in [
            (
                "mcp_gateway_audit_records_total",
                "Audit records made durable.",
                m.records,
            ),
            (
                "mcp_gateway_audit_bytes_total",
                "Bytes written to audit segments.",
                m.bytes,
            ),
            (
                "mcp_gateway_audit_writes_total",
                "write calls to audit segments (each batch is one; records nobody waits for ride along).",
                m.writes,
            ),
            (
                "mcp_gateway_audit_failed_batches_total",
                "Audit batches whose write or sync failed.",
                m.failed_batches,
            ),
            (
                "mcp_gateway_audit_refused_records_total",
                "Audit records refused while the log was failing.",
                m.refused,
            ),
        ] {
            e.family(name, Kind::Counter, help);
            e.sample(name, &[], v);
        }
        e.family(
            "mcp_gateway_audit_writable",
            Kind::Gauge,
            "1 if the audit log can write, 0 while it is failing (nothing is forwarded then).",
        );
        e.sample("mcp_gateway_audit_writable", &[], u8::from(*writable));
    }

    e.family(
        "mcp_gateway_tls_handshake_failures_total",
        Kind::Counter,
        "Inner TLS handshakes that failed or timed out.",
    );
    e.sample(
        "mcp_gateway_tls_handshake_failures_total",
        &[],
        c.tls_handshake_failures.load(Ordering::Relaxed),
    );
    e.family(
        "mcp_gateway_monitor_would_refuse_total",
        Kind::Counter,
        "Messages let through that a monitor-mode policy would have refused, by the would-be decision.",
    );
    for (i, d) in MONITOR_WOULD.iter().enumerate() {
        e.sample(
            "mcp_gateway_monitor_would_refuse_total",
            &[("decision", d)],
            c.monitor_would[i].load(Ordering::Relaxed),
        );
    }
    e.family(
        "mcp_gateway_unreadable_answers_total",
        Kind::Counter,
        "Upstream answers (JSON bodies or SSE events) withheld because the gateway could not read them strictly.",
    );
    e.sample(
        "mcp_gateway_unreadable_answers_total",
        &[],
        c.unfilterable_events.load(Ordering::Relaxed),
    );
    if let Some(not_after) = live.cert_not_after {
        e.family(
            "mcp_gateway_tls_cert_expiry_seconds",
            Kind::Gauge,
            "Seconds until the served certificate's notAfter (negative once expired).",
        );
        e.sample(
            "mcp_gateway_tls_cert_expiry_seconds",
            &[],
            not_after - live.now,
        );
        e.family(
            "mcp_gateway_tls_cert_not_after_timestamp_seconds",
            Kind::Gauge,
            "The served certificate's notAfter, Unix time.",
        );
        e.sample(
            "mcp_gateway_tls_cert_not_after_timestamp_seconds",
            &[],
            not_after,
        );
    }

    e.family(
        "mcp_gateway_config_reloads_total",
        Kind::Counter,
        "Config reload attempts, by result (a failed one keeps the previous config serving).",
    );
    for (r, n) in [
        ("success", live.reloads.succeeded),
        ("failure", live.reloads.failed),
    ] {
        e.sample("mcp_gateway_config_reloads_total", &[("result", r)], n);
    }
    e.family(
        "mcp_gateway_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last reload attempt succeeded (or none was made), 0 if it was rejected.",
    );
    e.sample(
        "mcp_gateway_config_last_reload_successful",
        &[],
        u8::from(live.reloads.last_ok),
    );
    e.family(
        "mcp_gateway_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "Unix time the serving config was loaded.",
    );
    e.sample(
        "mcp_gateway_config_last_reload_success_timestamp_seconds",
        &[],
        live.reloads.last_success_unix,
    );

    e.family(
        "mcp_gateway_approvals_pending",
        Kind::Gauge,
        "Requests held for human approval.",
    );
    // Pending approval requests in the store (all replicas sharing it), refreshed by the approvals sweeper
    // every second and after every change this process makes; 0 when approvals are not configured.
    e.sample(
        "mcp_gateway_approvals_pending",
        &[],
        APPROVALS_PENDING.load(Ordering::Relaxed),
    );
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_are_the_error_classes_reasons_in_order() {
        let reasons = crate::error_class::REASONS;
        assert_eq!(REFUSAL_REASONS[..reasons.len()], reasons);
        assert_eq!(REFUSAL_REASONS[reasons.len()..], ["other"]);
    }

    #[test]
    fn declared_buckets_ascend() {
        assert!(POLICY_SECONDS.bounds_ascending());
        assert!(AUDIT_BATCH_RECORDS.bounds_ascending());
        assert!(AUDIT_SYNC_SECONDS.bounds_ascending());
        assert!(RouteStats::new().upstream_seconds.bounds_ascending());
    }

    #[test]
    fn methods_and_decisions_map_to_their_labels() {
        assert_eq!(METHODS[method_class(Some("tools/call"))], "tools/call");
        assert_eq!(
            METHODS[method_class(Some("server/discover"))],
            "server/discover"
        );
        assert_eq!(
            METHODS[method_class(Some("notifications/initialized"))],
            "notifications"
        );
        assert_eq!(METHODS[method_class(Some("tasks/get"))], "other");
        assert_eq!(METHODS[method_class(None)], "none");
        for d in DECISIONS {
            assert_eq!(DECISIONS[decision_index(d)], d);
        }
    }

    #[test]
    fn route_stats_are_shared_by_key_and_rendered() {
        let a = route_stats("metrics-unit-test-route");
        let b = route_stats("metrics-unit-test-route");
        assert!(Arc::ptr_eq(&a, &b));
        a.request(Some("tools/call"), "deny");
        b.request(Some("tools/call"), "deny");
        let text = render(&Live::default());
        assert!(
            text.contains(
                "mcp_gateway_requests_total{route=\"metrics-unit-test-route\",method=\"tools/call\",decision=\"deny\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("mcp_gateway_approvals_pending 0\n"));
    }
}
