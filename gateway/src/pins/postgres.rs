//! Tool pins shared by every replica, in the PostgreSQL database of the approval store
//! (`approvals.postgres`): one row per (route, tool) in `mcp_gateway_tool_pins` holding the [`Pin`] (the pinned
//! definition and the change waiting for an operator) as JSON, beside its pinned digest.
//!
//! Decisions stay in memory (a listing or a call never waits for the database); the table is the truth every
//! replica converges to:
//! - What a listing changes is written by one task per gateway, in order, as a compare-and-set on the pinned
//!   digest the change was made against (`INSERT … ON CONFLICT DO NOTHING` for a tool seen for the first
//!   time). When another replica got there first — pinned the tool, or an operator accepted a change — the
//!   listed definition is compared with the stored pin instead, exactly as a listing is (so the first
//!   definition any replica saw is the pin, and a different one is a change), and written again.
//! - Every write and acceptance `pg_notify`s [`CHANNEL`]; each replica `LISTEN`s and reloads the table (also
//!   every [`RELOAD_EVERY`], in case a notification was lost). A reload replaces memory only when none of this
//!   replica's writes is still unwritten, so a change seen here is never dropped before it is stored: until then
//!   the tool stays hidden here (fail closed).
//! - An acceptance is a compare-and-set on the whole stored row, made in the database before the operator is
//!   answered, so it holds on every replica after their next reload (at once, through the notification).
//! - The database unreachable: writes are retried every second (memory keeps refusing what is pending);
//!   acceptances fail with the reason; the gateway does not start without its pins.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_postgres::Client;

use super::{ChangeView, Definition, Effect, Memory, Pin, PinError, State, accepted, compare};
use crate::audit::{AuditLog, Record, ToolRecord};
use crate::config::{OnToolChange, PostgresSettings};
use crate::pg::{CONNECT_TIMEOUT, Connection, PgError, Target};

/// The `NOTIFY` channel pin changes are announced on.
pub const CHANNEL: &str = "mcp_gateway_tool_pins";

/// How often the table is read again without a notification.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Deadline of one statement.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA_VERSION: i32 = 1;

/// Serialises schema creation between replicas starting at once (`pg_advisory_xact_lock` key).
const SCHEMA_LOCK: i64 = 0x6d63_705f_7069_6e31; // "mcp_pin1"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mcp_gateway_tool_pins (
    route         TEXT NOT NULL,
    tool          TEXT NOT NULL,
    pinned_digest TEXT NOT NULL,
    pin           TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (route, tool)
);
";

/// One change a listing made to a tool's pin, to store.
#[derive(Debug, Clone)]
pub struct Write {
    pub route: String,
    pub tool: String,
    /// The pinned digest the change was made against; `None`: the tool was not pinned yet.
    pub expect: Option<String>,
    pub pin: Pin,
    /// What the listing showed, and the route's mode: compared again with the stored pin when another replica
    /// changed it first.
    pub seen: Definition,
    pub mode: OnToolChange,
}

/// This gateway's side of the shared table.
pub struct Shared {
    conn: Arc<Connection>,
    writes: mpsc::UnboundedSender<Vec<Write>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("target", &self.target())
            .finish_non_exhaustive()
    }
}

fn shared_err(target: &Target, e: impl std::fmt::Display) -> PinError {
    PinError::Shared {
        target: target.name.clone(),
        why: e.to_string(),
    }
}

impl Shared {
    /// Connects, creates the table if needed, loads it into `memory` and starts the writer and the listener.
    pub(super) async fn open(
        settings: &PostgresSettings,
        memory: Arc<Mutex<Memory>>,
        audit: Option<AuditLog>,
    ) -> Result<Shared, PinError> {
        let target = Target::new(settings).map_err(|e| shared_err_name(settings, e))?;
        let mut client = target
            .timed(CALL_TIMEOUT, target.connect("tool pins"))
            .await
            .map_err(|e| shared_err(&target, e))?
            .map_err(|e| shared_err(&target, e))?;
        target
            .timed(CALL_TIMEOUT, migrate(&mut client))
            .await
            .map_err(|e| shared_err(&target, e))?
            .map_err(|e| shared_err(&target, e))?;
        let state = target
            .timed(CALL_TIMEOUT, load(&client))
            .await
            .map_err(|e| shared_err(&target, e))??;
        memory.lock().expect("pins lock").state = state;
        let conn = Arc::new(Connection::new(target.clone(), "tool pins", Some(client)));
        let woken = Arc::new(Notify::new());
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(target.clone().listen(
            "tool pins",
            CHANNEL,
            woken.clone(),
            subscribed,
        ));
        if tokio::time::timeout(CONNECT_TIMEOUT, ready).await.is_err() {
            tracing::warn!(target = %target.name, "tool pins: the PostgreSQL LISTEN connection is not up yet; reloading every {RELOAD_EVERY:?} until it is");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let sync = tokio::spawn(
            Sync {
                conn: conn.clone(),
                memory,
                audit,
                woken,
            }
            .run(rx),
        );
        Ok(Shared {
            conn,
            writes: tx,
            tasks: vec![listener.abort_handle(), sync.abort_handle()],
        })
    }

    pub fn target(&self) -> &str {
        &self.conn.target().name
    }

    /// Queues what a listing changed (the caller counted them in `Memory::unwritten`).
    pub(super) fn write(&self, writes: Vec<Write>) {
        if self.writes.send(writes).is_err() {
            tracing::error!(
                "tool pins: the PostgreSQL writer has stopped; changes stay in memory only"
            );
        }
    }

    /// Accepts the pending change of `tool` on `route` in the database; the record and the new pin.
    pub(super) async fn accept(
        &self,
        route: &str,
        tool: &str,
        who: &str,
    ) -> Result<(ToolRecord, Pin), PinError> {
        let target = self.conn.target();
        let run = async {
            let client = self.conn.client().await?;
            // A compare-and-set on the stored row: retried when another replica changed it in between.
            for _ in 0..5 {
                let row = client
                    .query_opt(
                        "SELECT pin FROM mcp_gateway_tool_pins WHERE route = $1 AND tool = $2",
                        &[&route, &tool],
                    )
                    .await?;
                let Some(row) = row else {
                    return Ok(Err(PinError::NotPending {
                        route: route.to_owned(),
                        tool: tool.to_owned(),
                    }));
                };
                let old: String = row.get(0);
                let mut pin: Pin = serde_json::from_str(&old)?;
                let record = match accepted(route, tool, who, &mut pin) {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                };
                let n = client
                    .execute(
                        "UPDATE mcp_gateway_tool_pins SET pin = $3, pinned_digest = $4, updated_at = $5 \
                         WHERE route = $1 AND tool = $2 AND pin = $6 RETURNING pg_notify($7, route)",
                        &[
                            &route,
                            &tool,
                            &serde_json::to_string(&pin)?,
                            &pin.pinned.digest,
                            &crate::audit::record::now_millis(),
                            &old,
                            &CHANNEL,
                        ],
                    )
                    .await?;
                if n == 1 {
                    return Ok(Ok((record, pin)));
                }
            }
            Err::<_, PgError>("the pin kept changing under the acceptance; try again".into())
        };
        target
            .timed(CALL_TIMEOUT, run)
            .await
            .map_err(|e| shared_err(target, e))?
            .map_err(|e| shared_err(target, e))?
    }
}

fn shared_err_name(settings: &PostgresSettings, e: impl std::fmt::Display) -> PinError {
    PinError::Shared {
        target: settings.target.clone(),
        why: e.to_string(),
    }
}

/// The writer and reloader: one task per gateway, so this gateway's writes are stored in the order it made
/// them and a reload never overtakes them.
struct Sync {
    conn: Arc<Connection>,
    memory: Arc<Mutex<Memory>>,
    audit: Option<AuditLog>,
    woken: Arc<Notify>,
}

impl Sync {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Vec<Write>>) {
        loop {
            let notified = self.woken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { return };
                    for w in batch {
                        self.store(w).await;
                    }
                    continue; // the notification of the writes reloads
                }
                _ = &mut notified => {}
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            self.reload().await;
        }
    }

    /// Stores one write, retrying every second while the database is unreachable.
    async fn store(&self, w: Write) {
        let target = self.conn.target();
        loop {
            match target.timed(CALL_TIMEOUT, self.try_store(&w)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, route = %w.route, tool = %w.tool, store = %target.name, "tool pins: cannot store a change in PostgreSQL; retrying (the tool stays as it is here meanwhile)");
                }
                Err(e) => {
                    tracing::error!(error = %e, route = %w.route, tool = %w.tool, "tool pins: cannot store a change in PostgreSQL; retrying");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut memory = self.memory.lock().expect("pins lock");
        memory.unwritten = memory.unwritten.saturating_sub(1);
    }

    async fn try_store(&self, w: &Write) -> Result<(), PgError> {
        let client = self.conn.client().await?;
        let mut expect = w.expect.clone();
        let mut pin = w.pin.clone();
        for _ in 0..5 {
            if cas(&client, &w.route, &w.tool, expect.as_deref(), &pin).await? {
                return Ok(());
            }
            // Another replica changed the pin first: compare what the listing showed with what is stored.
            let row = client
                .query_opt(
                    "SELECT pin FROM mcp_gateway_tool_pins WHERE route = $1 AND tool = $2",
                    &[&w.route, &w.tool],
                )
                .await?;
            let Some(row) = row else {
                expect = None;
                pin = Pin {
                    pinned: w.seen.clone(),
                    pending: None,
                };
                continue;
            };
            let mut stored: Pin = serde_json::from_str(&row.get::<_, String>(0))?;
            expect = Some(stored.pinned.digest.clone());
            match compare(&w.route, &w.tool, &mut stored, &w.seen, w.mode) {
                Effect::Unchanged => return Ok(()),
                Effect::Changed(record) => {
                    if let (Some(log), Some(r)) = (&self.audit, record) {
                        log.append_later(Record::Tool(r));
                    }
                    pin = stored;
                }
            }
        }
        Err("the pin kept changing under this write".into())
    }

    async fn reload(&self) {
        let target = self.conn.target();
        let state = target
            .timed(CALL_TIMEOUT, async {
                let client = self.conn.client().await?;
                load(&client).await.map_err(PgError::from)
            })
            .await;
        match state {
            Ok(Ok(state)) => {
                let mut memory = self.memory.lock().expect("pins lock");
                if memory.unwritten == 0 {
                    memory.state = state;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, store = %target.name, "tool pins: cannot read the pins from PostgreSQL; keeping what is in memory")
            }
            Err(e) => {
                tracing::warn!(error = %e, "tool pins: cannot read the pins from PostgreSQL; keeping what is in memory")
            }
        }
    }
}

/// Writes `pin` if the stored pinned digest is `expect` (`None`: if no pin is stored); whether it was written.
async fn cas(
    client: &Client,
    route: &str,
    tool: &str,
    expect: Option<&str>,
    pin: &Pin,
) -> Result<bool, PgError> {
    let json = serde_json::to_string(pin)?;
    let now = crate::audit::record::now_millis();
    let n = match expect {
        None => {
            client
                .execute(
                    "INSERT INTO mcp_gateway_tool_pins (route, tool, pinned_digest, pin, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (route, tool) DO NOTHING \
                     RETURNING pg_notify($6, route)",
                    &[&route, &tool, &pin.pinned.digest, &json, &now, &CHANNEL],
                )
                .await?
        }
        Some(old) => {
            client
                .execute(
                    "UPDATE mcp_gateway_tool_pins SET pinned_digest = $3, pin = $4, updated_at = $5 \
                     WHERE route = $1 AND tool = $2 AND pinned_digest = $6 RETURNING pg_notify($7, route)",
                    &[&route, &tool, &pin.pinned.digest, &json, &now, &old, &CHANNEL],
                )
                .await?
        }
    };
    Ok(n == 1)
}

/// The whole table.
async fn load(client: &Client) -> Result<State, PinError> {
    let bad = |e: &dyn std::fmt::Display| PinError::Shared {
        target: "mcp_gateway_tool_pins".to_owned(),
        why: e.to_string(),
    };
    let rows = client
        .query("SELECT route, tool, pin FROM mcp_gateway_tool_pins", &[])
        .await
        .map_err(|e| bad(&e))?;
    let mut routes: BTreeMap<String, BTreeMap<String, Pin>> = BTreeMap::new();
    for r in rows {
        let (route, tool, pin): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let pin: Pin = serde_json::from_str(&pin)
            .map_err(|e| bad(&format!("the pin of {route}/{tool} is not readable: {e}")))?;
        routes.entry(route).or_default().insert(tool, pin);
    }
    Ok(State { version: 1, routes })
}

/// Creates or checks the table, under an advisory lock so replicas starting together do not race.
async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mcp_gateway_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    )
    .await?;
    let version: Option<i32> = tx
        .query_opt(
            "SELECT version FROM mcp_gateway_schema WHERE component = 'tool_pins'",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    if let Some(v) = version.filter(|v| *v > SCHEMA_VERSION) {
        return Err(format!(
            "the tool pins schema has version {v}, newer than this gateway's {SCHEMA_VERSION}"
        )
        .into());
    }
    tx.batch_execute(SCHEMA).await?;
    tx.execute(
        "INSERT INTO mcp_gateway_schema (component, version) VALUES ('tool_pins', $1) \
         ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
        &[&SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The pending changes in the shared table (for `mcp-gateway tools changes --config`, without a running
/// gateway).
pub async fn read_changes(settings: &PostgresSettings) -> Result<Vec<ChangeView>, PinError> {
    let target = Target::new(settings).map_err(|e| shared_err_name(settings, e))?;
    let run = async {
        let client = target.connect("tool pins").await?;
        let missing = client
            .query_one("SELECT to_regclass('mcp_gateway_tool_pins') IS NULL", &[])
            .await?
            .get::<_, bool>(0);
        if missing {
            return Ok(Ok(Vec::new()));
        }
        Ok::<_, PgError>(load(&client).await.map(|s| super::changes_of(&s)))
    };
    target
        .timed(CALL_TIMEOUT, run)
        .await
        .map_err(|e| shared_err(&target, e))?
        .map_err(|e| shared_err(&target, e))?
}
