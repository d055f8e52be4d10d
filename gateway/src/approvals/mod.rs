//! Human approval of calls a policy marks "require approval" (stage 5, beside [`crate::policy`]).
//!
//! When the chain's outcome for a single `tools/call` is `RequireApproval` and the config has an `approvals:`
//! block, the pipeline hands the call to [`hold`]: an unused matching grant lets it through at once;
//! otherwise an approval request is stored, approvers are notified ([`notify`]), and the call is held up to
//! `approvals.wait` — forwarded the moment an approver approves it through the admin API ([`api`]), the
//! page ([`page`]) or the CLI, answered with an `isError` result when denied or when the wait runs out. A
//! later approval leaves a grant bound to (route, tool, argument digest, principal) that the identical
//! retried call uses once.
//!
//! State lives behind [`store::ApprovalStore`] ([`sqlite`] is the embedded default, [`postgres`] the database
//! several replicas share), shared by every
//! generation of the config (like the audit log), so a reload never loses a pending request. Every step is
//! an audit record (`approval_*` kinds). A call let through by an approval still goes through the normal
//! audit stage → forward path: [`Granted`] (private field, made only here from a grant the store consumed)
//! is the only way to turn a `Refused` into a `Permitted` ([`crate::policy::Permitted::by_approval`]).

pub mod api;
pub mod caller;
pub mod elicit;
pub mod hold;
pub mod notify;
pub mod page;
pub mod postgres;
pub mod sqlite;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;

use crate::audit::{ApprovalEvent, ApprovalRecord, Arguments};
use crate::audit_stage::Auditor;
use crate::config::{ApprovalSettings, StoreSettings};
use crate::ctx::RequestCtx;
use store::{Approval, ApprovalStore, Millis, StoreError};

/// How often pending requests are checked for expiry (and the pending gauge refreshed).
pub const SWEEP: Duration = Duration::from_secs(1);

/// Proof that the store consumed a grant for this call. Private field: only this module makes one.
#[derive(Debug)]
pub struct Granted {
    approval: Box<Approval>,
}

impl Granted {
    pub fn approval(&self) -> &Approval {
        &self.approval
    }
}

/// The approval workflow of a running gateway: settings, store, and a wake-up for held calls.
#[derive(Debug)]
pub struct Approvals {
    settings: ApprovalSettings,
    store: Arc<dyn ApprovalStore>,
    auditor: Auditor,
    /// Woken whenever this process decides a request, and — with a store that pushes (PostgreSQL) — whenever
    /// any replica does; held calls also poll the store.
    decided: Arc<Notify>,
    /// Caller confirmation (`approvals.caller_confirmation`); `None`: operators approve everything.
    caller: Option<caller::CallerConfirm>,
    /// Verifies approvers' JWTs (`approvals.role`); its key set is fetched and cached like callers'.
    jwt: Option<crate::identity::Verifier>,
}

impl Approvals {
    /// Opens the configured store (SQLite file or PostgreSQL database).
    pub async fn open(
        settings: &ApprovalSettings,
        auditor: Auditor,
    ) -> Result<Arc<Approvals>, StoreError> {
        let store: Arc<dyn ApprovalStore> = match &settings.store {
            StoreSettings::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path)?),
            StoreSettings::Postgres(pg) => Arc::new(postgres::PostgresStore::open(pg).await?),
        };
        Self::with_store(settings, store, auditor)
    }

    /// The workflow over `store` (fails only when no random `requestState` key can be made).
    pub fn with_store(
        settings: &ApprovalSettings,
        store: Arc<dyn ApprovalStore>,
        auditor: Auditor,
    ) -> Result<Arc<Approvals>, StoreError> {
        let caller = match &settings.caller_confirmation {
            Some(c) => Some(
                caller::CallerConfirm::new(c)
                    .map_err(|e| StoreError::Backend(e.to_string().into()))?,
            ),
            None => None,
        };
        Ok(Arc::new(Approvals {
            settings: settings.clone(),
            decided: store.decisions().unwrap_or_default(),
            store,
            auditor,
            caller,
            jwt: settings.jwt.as_ref().map(|j| {
                crate::identity::Verifier::new(&crate::config::IdentityConfig {
                    jwt: j.jwt.clone(),
                    forward_authorization: false,
                    resource_metadata: None,
                })
            }),
        }))
    }

    /// Caller confirmation, when configured.
    pub fn caller(&self) -> Option<&caller::CallerConfirm> {
        self.caller.as_ref()
    }

    pub fn settings(&self) -> &ApprovalSettings {
        &self.settings
    }

    /// The verifier of approvers' JWTs, when `approvals.role` is configured.
    pub fn jwt_verifier(&self) -> Option<&crate::identity::Verifier> {
        self.jwt.as_ref()
    }

    pub fn store(&self) -> &dyn ApprovalStore {
        &*self.store
    }

    /// Called after this process decided a request: wakes held calls, refreshes the gauge.
    async fn after_decision(&self) {
        self.decided.notify_waiters();
        self.refresh_gauge().await;
    }

    async fn refresh_gauge(&self) {
        if let Ok(n) = self.store.count_pending().await {
            crate::metrics::APPROVALS_PENDING.store(n as i64, Ordering::Relaxed);
        }
    }

    /// Expires overdue requests (an `approval_expired` record each) and refreshes the pending gauge, every
    /// [`SWEEP`], until the task is aborted.
    pub fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match me.store.expire_due(now_ms()).await {
                    Ok(expired) => {
                        for a in &expired {
                            tracing::info!(approval = %a.id, route = %a.route, tool = %a.tool, "approval request expired");
                            me.audit_later(record(ApprovalEvent::Expired, a, None));
                        }
                        if !expired.is_empty() {
                            me.decided.notify_waiters();
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot expire approval requests"),
                }
                me.refresh_gauge().await;
                tokio::time::sleep(SWEEP).await;
            }
        })
    }

    /// Appends an approval record and waits until it is durable.
    async fn audit(&self, r: ApprovalRecord) -> Result<(), crate::audit::AuditError> {
        match self.auditor.log() {
            Some(log) => log
                .append(crate::audit::Record::Approval(r))
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    fn audit_later(&self, r: ApprovalRecord) {
        if let Some(log) = self.auditor.log() {
            log.append_later(crate::audit::Record::Approval(r));
        }
    }
}

/// The caller's authenticated identity (the verified token's subject), for grants and separation of
/// duties. `None` when the route has no identity (grants then bind to route, tool and arguments only).
pub fn principal(ctx: &RequestCtx) -> Option<String> {
    ctx.principal.as_ref().map(|p| p.subject().to_owned())
}

/// The current time as the store keeps it.
pub fn now_ms() -> Millis {
    crate::audit::record::now_millis()
}

/// A store time as records and the API show it (RFC 3339, UTC, microseconds).
pub fn rfc3339(ms: Millis) -> String {
    crate::audit::record::format_millis(ms)
}

/// A short, readable, unguessable id: `apr_` + 12 base32 characters (60 random bits).
pub fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bits = u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes());
    let mut id = String::from("apr_");
    for i in 0..12 {
        id.push(ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
    }
    id
}

/// The audit record of one step of `a`'s life.
fn record(event: ApprovalEvent, a: &Approval, request_id: Option<&str>) -> ApprovalRecord {
    ApprovalRecord {
        event,
        approval_id: a.id.clone(),
        request_id: Some(request_id.unwrap_or(&a.request_id).to_owned()),
        route: a.route.clone(),
        tool: a.tool.clone(),
        args_digest: format!("sha256:{}", a.args_digest),
        arguments: match &a.arguments {
            Some(v) if event == ApprovalEvent::Requested => Arguments::Full(v.clone()),
            _ => Arguments::Omitted,
        },
        principal: a.principal.clone(),
        policy: (event == ApprovalEvent::Requested).then(|| a.policy.clone()),
        reason: (event == ApprovalEvent::Requested).then(|| a.reason.clone()),
        expires_at: match event {
            ApprovalEvent::Requested => Some(rfc3339(a.expires_at)),
            ApprovalEvent::Approved => a.grant_expires_at.map(rfc3339),
            _ => None,
        },
        approver: a.approver.clone().filter(|_| {
            matches!(
                event,
                ApprovalEvent::Approved | ApprovalEvent::Denied | ApprovalEvent::GrantUsed
            )
        }),
        comment: a
            .comment
            .clone()
            .filter(|_| matches!(event, ApprovalEvent::Approved | ApprovalEvent::Denied)),
        delivered: None,
        attempts: None,
        error: None,
        via: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_short_and_distinct() {
        let a = super::new_id();
        assert_eq!(a.len(), 16);
        assert!(a.starts_with("apr_"));
        assert_ne!(a, super::new_id());
    }
}
