//! The shared approval store: a PostgreSQL database several gateway replicas use at once (`approvals.postgres`).
//!
//! Every transition is one statement that PostgreSQL runs atomically under row locks, exactly like the SQLite
//! backend's: `decide` is `UPDATE … WHERE status = 'pending' AND expires_at > now … RETURNING`, so of two
//! replicas deciding one request at once the second finds no pending row and is told what the first did;
//! grant consumption is one `UPDATE … WHERE id = (SELECT … FOR UPDATE) AND grant_uses_left > 0 RETURNING`
//! (a concurrent consumer waits for the row lock, then re-checks the uses left); the principal is matched
//! with `IS NOT DISTINCT FROM` (no principal matches no principal). Times are integers (milliseconds), as in
//! SQLite, so both backends compare the same numbers.
//!
//! Decisions and expiries also `pg_notify` the channel [`CHANNEL`] in the same statement (delivered when it
//! commits); every store keeps one extra connection `LISTEN`ing on it and wakes the calls its gateway holds,
//! so a call held on replica A is released as soon as an approver decides on replica B. The hold loop still
//! polls the store (`approvals.poll_interval`), so a lost notification (listener reconnecting) costs at most
//! one interval.
//!
//! Connections: one client for queries (pipelined by `tokio-postgres`, shared by every caller), made on first
//! use and remade on the next call after it closed (server restart, idle cut, network); the listener
//! reconnects on its own every second. Every call has a deadline ([`CALL_TIMEOUT`]); a failed or timed-out
//! call is a [`StoreError::Backend`], which the hold turns into a refusal (fail closed, nothing forwarded).
//! TLS: the connection string's `sslmode` (`disable`, `prefer` — the default — or `require`), through rustls
//! with the system's roots plus `approvals.postgres.ca_file`; the server's certificate and name are always
//! verified when TLS is used.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::store::{
    Approval, ApprovalRow, ApprovalStore, COLUMNS, Decide, GrantKey, Millis, NewApproval, Status,
    StoreError, StoreFuture,
};
use crate::config::PostgresSettings;
use crate::pg::{CONNECT_TIMEOUT, Connection, Target};

/// Schema version of the `mcp_gateway_approvals` table, kept in `mcp_gateway_schema`.
const SCHEMA_VERSION: i32 = 1;

/// The `NOTIFY` channel decisions and expiries are announced on (payload: the approval id).
pub const CHANNEL: &str = "mcp_gateway_approvals";

/// Deadline of one store call (connecting included): a database that does not answer refuses the call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Serialises schema creation between replicas starting at once (`pg_advisory_xact_lock` key).
const SCHEMA_LOCK: i64 = 0x6d63_705f_6170_7231; // "mcp_apr1"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mcp_gateway_approvals (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    route            TEXT NOT NULL,
    tool             TEXT NOT NULL,
    arguments        TEXT,
    args_digest      TEXT NOT NULL,
    principal        TEXT,
    reason           TEXT NOT NULL,
    policy           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    approver         TEXT,
    comment          TEXT,
    decided_at       BIGINT,
    grant_expires_at BIGINT,
    grant_uses_left  INTEGER NOT NULL DEFAULT 0,
    grant_used_at    BIGINT
);
CREATE INDEX IF NOT EXISTS mcp_gateway_approvals_grant ON mcp_gateway_approvals (route, tool, args_digest, status);
CREATE INDEX IF NOT EXISTS mcp_gateway_approvals_status ON mcp_gateway_approvals (status, expires_at);
";

/// The PostgreSQL backend.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    /// The query connection, made again on the next call after it closed.
    conn: Connection,
    /// Woken by every decision or expiry any replica announces.
    decided: Arc<Notify>,
    listener: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.inner.target.name)
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn message(m: String) -> StoreError {
    StoreError::Backend(m.into())
}

impl PostgresStore {
    /// Connects, creates the schema if needed (idempotent, safe when replicas start together) and starts the
    /// `LISTEN` connection. Fails when the database cannot be reached: the gateway does not start without
    /// its approval store.
    pub async fn open(settings: &PostgresSettings) -> Result<PostgresStore, StoreError> {
        let target = Target::new(settings).map_err(StoreError::Backend)?;
        let mut client = timed(&target, connect(&target)).await?;
        timed(&target, migrate(&mut client)).await?;
        let decided = Arc::new(Notify::new());
        // Wait (bounded) until the LISTEN is in place, so no decision made right after start is missed.
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(target.clone().listen(
            "approval store",
            CHANNEL,
            decided.clone(),
            subscribed,
        ));
        if tokio::time::timeout(CONNECT_TIMEOUT, ready).await.is_err() {
            tracing::warn!(target = %target.name, "approval store: the PostgreSQL LISTEN connection is not up yet; held calls poll until it is");
        }
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                conn: Connection::new(target.clone(), "approval store", Some(client)),
                target,
                decided,
                listener: listener.abort_handle(),
            }),
        })
    }

    /// Whether the database is reachable (for `mcp-gateway check`), without writing anything: the server's
    /// version and the approvals schema version found (`None`: not created yet; the gateway creates it).
    pub async fn probe(settings: &PostgresSettings) -> Result<(String, Option<i32>), StoreError> {
        let target = Target::new(settings).map_err(StoreError::Backend)?;
        timed(&target, async {
            let client = connect(&target).await?;
            let server: String = client
                .query_one("SHOW server_version", &[])
                .await
                .map_err(backend)?
                .get(0);
            let schema: Option<i32> = client
                .query_opt(
                    "SELECT version FROM mcp_gateway_schema WHERE component = 'approvals' \
                     AND to_regclass('mcp_gateway_approvals') IS NOT NULL",
                    &[],
                )
                .await
                .or_else(|e| match e.code() {
                    // No mcp_gateway_schema table yet.
                    Some(c) if *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE => Ok(None),
                    _ => Err(backend(e)),
                })?
                .map(|r| r.get(0));
            Ok((server, schema))
        })
        .await
    }

    /// Where the store is (`user@host:port/dbname sslmode=…`; never the password).
    pub fn target(&self) -> &str {
        &self.inner.target.name
    }

    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        self.inner.conn.client().await.map_err(StoreError::Backend)
    }

    /// Runs one statement and maps its rows, with the call deadline.
    fn rows<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
        map: impl FnOnce(Vec<Row>) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        Box::pin(async move {
            let rows = timed(&self.inner.target, async {
                let client = self.client().await?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                client.query(&sql, &refs).await.map_err(backend)
            })
            .await?;
            map(rows)
        })
    }

    async fn get_one(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        self.rows(
            format!("SELECT {COLUMNS} FROM mcp_gateway_approvals WHERE id = $1"),
            vec![Box::new(id.to_owned())],
            first,
        )
        .await
    }
}

/// `f` with the call deadline; a timeout is a backend error naming the database.
async fn timed<T>(
    target: &Target,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    target.timed(CALL_TIMEOUT, f).await.map_err(message)?
}

async fn connect(target: &Target) -> Result<Client, StoreError> {
    target
        .connect("approval store")
        .await
        .map_err(StoreError::Backend)
}

/// Creates or checks the schema, under an advisory lock so replicas starting together do not race.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(backend)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mcp_gateway_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    )
    .await
    .map_err(backend)?;
    let version: Option<i32> = tx
        .query_opt(
            "SELECT version FROM mcp_gateway_schema WHERE component = 'approvals'",
            &[],
        )
        .await
        .map_err(backend)?
        .map(|r| r.get(0));
    if let Some(v) = version.filter(|v| *v > SCHEMA_VERSION) {
        return Err(message(format!(
            "the approvals schema has version {v}, newer than this gateway's {SCHEMA_VERSION}"
        )));
    }
    tx.batch_execute(SCHEMA).await.map_err(backend)?;
    tx.execute(
        "INSERT INTO mcp_gateway_schema (component, version) VALUES ('approvals', $1) \
         ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)
}

impl ApprovalRow for Row {
    type Error = StoreError;
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.try_get(i).map_err(backend)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.try_get(i).map_err(backend)
    }
    fn millis(&self, i: usize) -> Result<Millis, StoreError> {
        self.try_get(i).map_err(backend)
    }
    fn opt_millis(&self, i: usize) -> Result<Option<Millis>, StoreError> {
        self.try_get(i).map_err(backend)
    }
    fn integer(&self, i: usize) -> Result<i64, StoreError> {
        self.try_get::<_, i32>(i).map(i64::from).map_err(backend)
    }
}

fn approval(r: &Row) -> Result<Approval, StoreError> {
    Approval::from_row(r)
}

fn first(rows: Vec<Row>) -> Result<Option<Approval>, StoreError> {
    rows.first().map(approval).transpose()
}

fn all(rows: Vec<Row>) -> Result<Vec<Approval>, StoreError> {
    rows.iter().map(approval).collect()
}

type Params = Vec<Box<dyn ToSql + Send + Sync>>;

impl ApprovalStore for PostgresStore {
    fn create(&self, new: NewApproval) -> StoreFuture<'_, Approval> {
        let id = new.id.clone();
        let params: Params = vec![
            Box::new(new.id),
            Box::new(new.request_id),
            Box::new(new.key.route),
            Box::new(new.key.tool),
            Box::new(new.arguments.as_ref().map(|a| a.to_string())),
            Box::new(new.key.args_digest),
            Box::new(new.key.principal),
            Box::new(new.reason),
            Box::new(new.policy),
            Box::new(new.created_at),
            Box::new(new.expires_at),
        ];
        self.rows(
            format!(
                "INSERT INTO mcp_gateway_approvals (id, request_id, route, tool, arguments, args_digest, principal, \
                 reason, policy, created_at, expires_at, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending') RETURNING {COLUMNS}"
            ),
            params,
            move |rows| first(rows)?.ok_or(StoreError::NotFound(id)),
        )
    }

    fn get(&self, id: &str) -> StoreFuture<'_, Option<Approval>> {
        let id = id.to_owned();
        Box::pin(async move { self.get_one(&id).await })
    }

    fn list(&self, status: Option<Status>, limit: u32) -> StoreFuture<'_, Vec<Approval>> {
        self.rows(
            format!(
                "SELECT {COLUMNS} FROM mcp_gateway_approvals WHERE ($1::TEXT IS NULL OR status = $1) \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            ),
            vec![
                Box::new(status.map(|s| s.as_str().to_owned())),
                Box::new(i64::from(limit)),
            ],
            all,
        )
    }

    fn decide(&self, id: &str, d: Decide) -> StoreFuture<'_, Approval> {
        let id = id.to_owned();
        Box::pin(async move {
            let (status, grant_expires, uses) = if d.approve {
                (Status::Approved, Some(d.grant_expires_at), d.grant_uses)
            } else {
                (Status::Denied, None, 0)
            };
            let moved = self
                .rows(
                    format!(
                        "WITH moved AS (UPDATE mcp_gateway_approvals SET status = $1, approver = $2, comment = $3, \
                         decided_at = $4, grant_expires_at = $5, grant_uses_left = $6 \
                         WHERE id = $7 AND status = 'pending' AND expires_at > $4 RETURNING {COLUMNS}) \
                         SELECT {COLUMNS}, pg_notify('{CHANNEL}', id) FROM moved"
                    ),
                    vec![
                        Box::new(status.as_str().to_owned()),
                        Box::new(d.approver),
                        Box::new(d.comment),
                        Box::new(d.at),
                        Box::new(grant_expires),
                        Box::new(i32::try_from(uses).unwrap_or(i32::MAX)),
                        Box::new(id.clone()),
                    ],
                    first,
                )
                .await?;
            match moved {
                Some(a) => Ok(a),
                None => {
                    let current = self.get_one(&id).await?;
                    Err(StoreError::undecided(id, current))
                }
            }
        })
    }

    fn expire_due(&self, now: Millis) -> StoreFuture<'_, Vec<Approval>> {
        self.rows(
            format!(
                "WITH moved AS (UPDATE mcp_gateway_approvals SET status = 'expired', decided_at = $1 \
                 WHERE status = 'pending' AND expires_at <= $1 RETURNING {COLUMNS}) \
                 SELECT {COLUMNS}, pg_notify('{CHANNEL}', id) FROM moved"
            ),
            vec![Box::new(now)],
            all,
        )
    }

    fn consume_grant(&self, key: &GrantKey, now: Millis) -> StoreFuture<'_, Option<Approval>> {
        // One statement: the sub-select locks the grant's row (a concurrent consumer waits, then re-checks
        // the uses left and moves on to the next matching grant, if any).
        self.rows(
            format!(
                "UPDATE mcp_gateway_approvals SET grant_uses_left = grant_uses_left - 1, grant_used_at = $5 \
                 WHERE id = (SELECT id FROM mcp_gateway_approvals WHERE route = $1 AND tool = $2 \
                             AND args_digest = $3 AND principal IS NOT DISTINCT FROM $4::TEXT \
                             AND status = 'approved' AND grant_uses_left > 0 AND grant_expires_at > $5 \
                             ORDER BY decided_at, id LIMIT 1 FOR UPDATE) \
                 AND grant_uses_left > 0 RETURNING {COLUMNS}"
            ),
            vec![
                Box::new(key.route.clone()),
                Box::new(key.tool.clone()),
                Box::new(key.args_digest.clone()),
                Box::new(key.principal.clone()),
                Box::new(now),
            ],
            first,
        )
    }

    fn consume_grant_of(&self, id: &str, now: Millis) -> StoreFuture<'_, Option<Approval>> {
        self.rows(
            format!(
                "UPDATE mcp_gateway_approvals SET grant_uses_left = grant_uses_left - 1, grant_used_at = $2 \
                 WHERE id = $1 AND status = 'approved' AND grant_uses_left > 0 AND grant_expires_at > $2 \
                 RETURNING {COLUMNS}"
            ),
            vec![Box::new(id.to_owned()), Box::new(now)],
            first,
        )
    }

    fn count_pending(&self) -> StoreFuture<'_, u64> {
        self.rows(
            "SELECT COUNT(*) FROM mcp_gateway_approvals WHERE status = 'pending'".to_owned(),
            Vec::new(),
            |rows| {
                let n: i64 = rows
                    .first()
                    .map(|r| r.try_get(0))
                    .transpose()
                    .map_err(backend)?
                    .unwrap_or(0);
                Ok(n.max(0) as u64)
            },
        )
    }

    fn decisions(&self) -> Option<Arc<Notify>> {
        Some(self.inner.decided.clone())
    }
}
