//! The storage interface of the approval workflow: what an approval request is, the state transitions a
//! backend must make atomically, and the grant an approval leaves behind.
//!
//! Every transition is one conditional write, so several gateway replicas sharing one database never both
//! win: `decide` only moves a row that is still `pending` and unexpired (`UPDATE … WHERE status = 'pending'`),
//! `expire_due` only moves rows that are still `pending`, and consuming a grant decrements its remaining uses
//! only while they are above zero. A replica holding a call learns about a decision made elsewhere by polling
//! [`ApprovalStore::get`] (see [`super::hold`]); a backend with push (PostgreSQL `LISTEN/NOTIFY`) can make
//! that faster without changing this trait.
//!
//! Backends: [`super::sqlite`] (embedded, the default) and [`super::postgres`] (one database shared by several
//! replicas; its grant consumption is the same single `UPDATE … RETURNING` with the candidate row locked
//! `FOR UPDATE`, and `IS NOT DISTINCT FROM` for the principal match; decisions are pushed with `NOTIFY`).

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;

/// Milliseconds since the Unix epoch (UTC): how the store keeps time.
pub type Millis = i64;

/// What every store call returns (boxed, so the trait can be used as `dyn ApprovalStore`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where an approval request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// What a grant is bound to: a retried call passes only if all four are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantKey {
    pub route: String,
    pub tool: String,
    /// Hex SHA-256 of the canonical JSON arguments (`{}` when the call has none).
    pub args_digest: String,
    /// The caller's authenticated identity; `None` when the route does not authenticate callers.
    pub principal: Option<String>,
}

/// A new approval request, as the pipeline asks for one.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub id: String,
    /// The gateway request id of the call that asked.
    pub request_id: String,
    pub key: GrantKey,
    /// The arguments as the route's redaction keeps them (`None` when it keeps only the digest or nothing).
    pub arguments: Option<Value>,
    pub reason: String,
    pub policy: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// An approver's decision.
#[derive(Debug, Clone)]
pub struct Decide {
    pub approve: bool,
    pub approver: String,
    pub comment: Option<String>,
    pub at: Millis,
    /// Approvals only: until when the grant may be used, and how many times.
    pub grant_expires_at: Millis,
    pub grant_uses: u32,
}

/// One approval request as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub id: String,
    pub request_id: String,
    pub route: String,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    pub args_digest: String,
    pub principal: Option<String>,
    pub reason: String,
    pub policy: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub status: Status,
    pub approver: Option<String>,
    pub comment: Option<String>,
    pub decided_at: Option<Millis>,
    pub grant_expires_at: Option<Millis>,
    /// How many more times the grant lets an identical call through.
    pub grant_uses_left: u32,
    pub grant_used_at: Option<Millis>,
}

/// The columns every backend selects, in the order [`Approval::from_row`] reads them.
pub(super) const COLUMNS: &str = "id, request_id, route, tool, arguments, args_digest, principal, reason, policy, \
     created_at, expires_at, status, approver, comment, decided_at, grant_expires_at, grant_uses_left, grant_used_at";

/// One row of [`COLUMNS`], read by position the way its backend reads values.
pub(super) trait ApprovalRow {
    type Error;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    fn millis(&self, i: usize) -> Result<Millis, Self::Error>;
    fn opt_millis(&self, i: usize) -> Result<Option<Millis>, Self::Error>;
    /// An `INTEGER` column (`grant_uses_left`).
    fn integer(&self, i: usize) -> Result<i64, Self::Error>;
}

impl Approval {
    /// Reads one row of [`COLUMNS`]. Stored arguments that no longer parse are left out; an unknown status
    /// reads as `expired` (it can release nothing).
    pub(super) fn from_row<R: ApprovalRow>(r: &R) -> Result<Approval, R::Error> {
        let arguments = r.opt_text(4)?;
        let status = r.text(11)?;
        Ok(Approval {
            id: r.text(0)?,
            request_id: r.text(1)?,
            route: r.text(2)?,
            tool: r.text(3)?,
            arguments: arguments.and_then(|a| serde_json::from_str(&a).ok()),
            args_digest: r.text(5)?,
            principal: r.opt_text(6)?,
            reason: r.text(7)?,
            policy: r.text(8)?,
            created_at: r.millis(9)?,
            expires_at: r.millis(10)?,
            status: Status::parse(&status).unwrap_or(Status::Expired),
            approver: r.opt_text(12)?,
            comment: r.opt_text(13)?,
            decided_at: r.opt_millis(14)?,
            grant_expires_at: r.opt_millis(15)?,
            grant_uses_left: r.integer(16)?.max(0) as u32,
            grant_used_at: r.opt_millis(17)?,
        })
    }

    pub fn key(&self) -> GrantKey {
        GrantKey {
            route: self.route.clone(),
            tool: self.tool.clone(),
            args_digest: self.args_digest.clone(),
            principal: self.principal.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no approval request with id `{0}`")]
    NotFound(String),
    /// The request is no longer pending (someone decided first, or it expired).
    #[error("approval request `{id}` is already {}", status.as_str())]
    NotPending { id: String, status: Status },
    #[error("approval store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Why `decide` moved nothing, given the request as it now is (`current`): none such, already decided,
    /// or still pending but past its expiry (the sweeper records that; it can no longer be decided).
    pub fn undecided(id: String, current: Option<Approval>) -> StoreError {
        match current {
            None => StoreError::NotFound(id),
            Some(a) if a.status == Status::Pending => StoreError::NotPending {
                id,
                status: Status::Expired,
            },
            Some(a) => StoreError::NotPending {
                id,
                status: a.status,
            },
        }
    }
}

/// Approval state, shared by every gateway replica that uses the same backend.
pub trait ApprovalStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new pending request.
    fn create(&self, new: NewApproval) -> StoreFuture<'_, Approval>;

    fn get(&self, id: &str) -> StoreFuture<'_, Option<Approval>>;

    /// Newest first; `status` `None` lists everything.
    fn list(&self, status: Option<Status>, limit: u32) -> StoreFuture<'_, Vec<Approval>>;

    /// `pending` → `approved` / `denied`, only if still pending and not past its expiry; otherwise
    /// [`StoreError::NotPending`] (with `expired` for a request whose time ran out) or
    /// [`StoreError::NotFound`].
    fn decide(&self, id: &str, decide: Decide) -> StoreFuture<'_, Approval>;

    /// Moves every pending request whose expiry is `<= now` to `expired` and returns exactly those it moved
    /// (so each expiry is reported by one replica only).
    fn expire_due(&self, now: Millis) -> StoreFuture<'_, Vec<Approval>>;

    /// Uses one grant matching `key` (approved, uses left, grant not expired at `now`), atomically; the
    /// approval it came from, or `None` when there is no usable grant.
    fn consume_grant(&self, key: &GrantKey, now: Millis) -> StoreFuture<'_, Option<Approval>>;

    /// Uses the grant of approval `id` (the held call it was made for), atomically; `None` if it is not
    /// approved, has no uses left or its grant expired.
    fn consume_grant_of(&self, id: &str, now: Millis) -> StoreFuture<'_, Option<Approval>>;

    fn count_pending(&self) -> StoreFuture<'_, u64>;

    /// A signal woken whenever any replica decides or expires a request, for backends that push
    /// (PostgreSQL `LISTEN/NOTIFY`); held calls then wake at once instead of at their next poll.
    fn decisions(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}
