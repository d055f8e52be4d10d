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

use tokio::sync::{Mutex, Notify};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::store::{
    Approval, ApprovalRow, ApprovalStore, COLUMNS, Decide, GrantKey, Millis, NewApproval, Status,
    StoreError, StoreFuture,
};
use crate::config::PostgresSettings;

/// Schema version of the `mcp_gateway_approvals` table, kept in `mcp_gateway_schema`.
const SCHEMA_VERSION: i32 = 1;

/// The `NOTIFY` channel decisions and expiries are announced on (payload: the approval id).
pub const CHANNEL: &str = "mcp_gateway_approvals";

/// Deadline of one store call (connecting included): a database that does not answer refuses the call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect timeout when the connection string sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    target: String,
    /// The query connection; `None` (or closed) → made again on the next call.
    client: Mutex<Option<Arc<Client>>>,
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
            .field("target", &self.inner.target)
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
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(backend)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("mcp-gateway");
        }
        let tls = MakeRustlsConnect::new(tls_config(settings.ca_file.as_deref())?);
        let target = settings.target.clone();
        let mut client = timed(&target, connect(&config, &tls)).await?;
        timed(&target, migrate(&mut client)).await?;
        let decided = Arc::new(Notify::new());
        // Wait (bounded) until the LISTEN is in place, so no decision made right after start is missed.
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(
            config.clone(),
            tls.clone(),
            decided.clone(),
            subscribed,
        ));
        if tokio::time::timeout(CONNECT_TIMEOUT, ready).await.is_err() {
            tracing::warn!(target = %target, "approval store: the PostgreSQL LISTEN connection is not up yet; held calls poll until it is");
        }
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                config,
                tls,
                target,
                client: Mutex::new(Some(Arc::new(client))),
                decided,
                listener: listener.abort_handle(),
            }),
        })
    }

    /// Whether the database is reachable (for `mcp-gateway check`), without writing anything: the server's
    /// version and the approvals schema version found (`None`: not created yet; the gateway creates it).
    pub async fn probe(settings: &PostgresSettings) -> Result<(String, Option<i32>), StoreError> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(backend)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let tls = MakeRustlsConnect::new(tls_config(settings.ca_file.as_deref())?);
        timed(&settings.target, async {
            let client = connect(&config, &tls).await?;
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
        &self.inner.target
    }

    /// The query connection, made again if it closed.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.inner.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let c = Arc::new(connect(&self.inner.config, &self.inner.tls).await?);
        tracing::info!(store = %self.inner.target, "approval store: connected to PostgreSQL");
        *slot = Some(c.clone());
        Ok(c)
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
    target: &str,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(message(format!(
            "PostgreSQL {target} did not answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
            message(format!(
                "approvals.postgres.ca_file {}: {e}",
                path.display()
            ))
        })?;
        for c in certs {
            let c = c.map_err(|e| {
                message(format!(
                    "approvals.postgres.ca_file {}: {e}",
                    path.display()
                ))
            })?;
            roots.add(c).map_err(|e| {
                message(format!(
                    "approvals.postgres.ca_file {}: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(backend)?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// A query connection: its I/O runs on its own task; the client reports closed once that task ends.
async fn connect(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
) -> Result<Client, StoreError> {
    let (client, conn) = config.connect(tls.clone()).await.map_err(backend)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "approval store: PostgreSQL connection closed; reconnecting on next use");
        }
    });
    Ok(client)
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

/// The `LISTEN` connection: wakes held calls on every notification; reconnects every second after a
/// failure (waking held calls then too, so a decision announced while it was away is not waited on).
async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    decided: Arc<Notify>,
    subscribed: tokio::sync::oneshot::Sender<()>,
) {
    let mut subscribed = Some(subscribed);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut conn)) => {
                let pump = async {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => decided.notify_waiters(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return e.to_string(),
                            None => return "connection closed".to_owned(),
                        }
                    }
                };
                // The pump drives the connection, so LISTEN completes while it runs.
                tokio::pin!(pump);
                let listen = format!("LISTEN {CHANNEL}");
                let subscribed_now = tokio::select! {
                    r = client.batch_execute(&listen) => r.map_err(|e| e.to_string()),
                    e = &mut pump => Err(e),
                };
                let ended = match subscribed_now {
                    Ok(()) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                        pump.await
                    }
                    Err(e) => e,
                };
                tracing::warn!(error = %ended, "approval store: PostgreSQL LISTEN connection lost; held calls poll until it is back");
            }
            Err(e) => {
                tracing::warn!(error = %e, "approval store: cannot open the PostgreSQL LISTEN connection; held calls poll until it is back");
            }
        }
        decided.notify_waiters();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
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
