//! `/readyz`: is this process fit to take traffic? Each check says why not. They are computed from the
//! serving generation, which exists only once its config was validated and its policies compiled; a rejected
//! reload does not make the gateway unready (the previous config keeps serving) but is named.

use serde_json::json;
use time::OffsetDateTime;

use crate::audit::Health;
use crate::reload::Live;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug)]
pub struct Report {
    pub ready: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn to_json(&self) -> String {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail}))
            .collect();
        json!({"status": if self.ready { "ready" } else { "not_ready" }, "checks": checks})
            .to_string()
    }
}

/// Runs every check.
pub fn check(live: &Live, now: OffsetDateTime) -> Report {
    let generation = live.generation();
    let config = &generation.config;
    let mut checks = Vec::with_capacity(5);

    let mut detail = format!(
        "generation {} serving {} route(s)",
        generation.number,
        config.routes.len()
    );
    if let Some(r) = live.rejected() {
        detail.push_str(&format!(
            "; the last reload ({}) was rejected: {}",
            crate::audit::record::format_time(r.at),
            r.error
        ));
    }
    checks.push(Check {
        name: "config",
        ok: true,
        detail,
    });

    checks.push(Check {
        name: "policies",
        ok: true,
        detail: match &config.policies {
            None => "no `policies:` block: every message is allowed".to_owned(),
            Some(p) => format!("{} module(s) compiled and loaded", p.modules.len()),
        },
    });

    checks.push(match generation.gateway.auditor().log() {
        None => Check {
            name: "audit",
            ok: true,
            detail: "auditing is disabled by config".to_owned(),
        },
        Some(log) => match log.health() {
            Health::Ok => Check {
                name: "audit",
                ok: true,
                detail: "writable".to_owned(),
            },
            Health::Failing { since, error } => Check {
                name: "audit",
                ok: false,
                detail: format!(
                    "cannot write since {}: {error}; nothing is forwarded until it recovers",
                    crate::audit::record::format_time(since)
                ),
            },
            Health::Closed => Check {
                name: "audit",
                ok: false,
                detail: "closed".to_owned(),
            },
        },
    });

    checks.push(tls_check(crate::tls::validity(&live.tls.current()), now));

    if live.is_draining() {
        checks.push(Check {
            name: "shutdown",
            ok: false,
            detail: "shutting down: draining in-flight requests".to_owned(),
        });
    }
    Report {
        ready: checks.iter().all(|c| c.ok),
        checks,
    }
}

fn tls_check(validity: Option<(i64, i64)>, now: OffsetDateTime) -> Check {
    let now_s = now.unix_timestamp();
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(crate::audit::record::format_time)
            .unwrap_or_else(|_| t.to_string())
    };
    let (ok, detail) = match validity {
        None => (false, "the served certificate cannot be parsed".to_owned()),
        Some((not_before, _)) if now_s < not_before => (
            false,
            format!(
                "the served certificate is not valid before {}",
                at(not_before)
            ),
        ),
        Some((_, not_after)) if now_s > not_after => (
            false,
            format!(
                "the served certificate expired at {}: renew it (the file is reloaded when it changes)",
                at(not_after)
            ),
        ),
        Some((_, not_after)) => (
            true,
            format!(
                "valid until {} ({} days left)",
                at(not_after),
                (not_after - now_s) / 86400
            ),
        ),
    };
    Check {
        name: "tls",
        ok,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_validity_window_decides_the_tls_check() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let t = now.unix_timestamp();
        let ok = tls_check(Some((t - 10, t + 3 * 86400 + 5)), now);
        assert!(ok.ok && ok.detail.contains("3 days left"), "{ok:?}");
        let expired = tls_check(Some((t - 100, t - 1)), now);
        assert!(
            !expired.ok && expired.detail.contains("expired"),
            "{expired:?}"
        );
        let early = tls_check(Some((t + 60, t + 600)), now);
        assert!(
            !early.ok && early.detail.contains("not valid before"),
            "{early:?}"
        );
        assert!(!tls_check(None, now).ok);
    }
}
