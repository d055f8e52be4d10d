//! The process-wide counters (TLS handshakes, requests, refusals, policy failures, …), bumped with relaxed
//! atomic adds and exported by `/metrics` ([`super::render`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub tls_handshake_failures: AtomicU64,
    pub requests: AtomicU64,
    pub refusals: AtomicU64,
    pub policy_denials: AtomicU64,
    /// Upstream answers (JSON bodies or SSE events) withheld because the gateway could not read them.
    pub unfilterable_events: AtomicU64,
    /// Messages a monitor-mode policy would have refused (the chain let them through), by
    /// [`MONITOR_WOULD`] label.
    pub monitor_would: [AtomicU64; 3],
    /// Policy evaluation failures by kind, in the order of [`POLICY_FAILURE_KINDS`].
    pub policy_failures: [AtomicU64; 9],
}

/// Labels of `Counters::monitor_would`.
pub const MONITOR_WOULD: [&str; 3] = ["deny", "require_approval", "hidden"];

/// Labels of `Counters::policy_failures`.
pub const POLICY_FAILURE_KINDS: [&str; 9] = [
    "timeout",
    "out_of_memory",
    "out_of_fuel",
    "panic",
    "trap",
    "oversized_output",
    "bad_answer",
    "bad_settings",
    "instantiate",
];

pub static COUNTERS: Counters = Counters {
    tls_handshake_failures: AtomicU64::new(0),
    requests: AtomicU64::new(0),
    refusals: AtomicU64::new(0),
    policy_denials: AtomicU64::new(0),
    unfilterable_events: AtomicU64::new(0),
    monitor_would: [const { AtomicU64::new(0) }; 3],
    policy_failures: [const { AtomicU64::new(0) }; 9],
};

/// Counts a policy failure by kind (`policy::sandbox::Failure::kind`).
pub fn policy_failure(policy: &str, kind: &str) {
    if let Some(i) = POLICY_FAILURE_KINDS.iter().position(|k| *k == kind) {
        COUNTERS.policy_failures[i].fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(policy, kind, "policy failure counted");
}
