//! The embedded approval store: one SQLite file (WAL, `synchronous=FULL`), the default backend.
//!
//! Every call runs on the blocking pool with the one connection of this store; each state transition is a
//! single `UPDATE … WHERE <still in the old state> … RETURNING`, which SQLite executes under its write lock,
//! so two stores (or two processes) on the same file cannot both win a transition or both use one grant.
//! `busy_timeout` makes a writer wait for another's lock instead of failing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::store::{
    Approval, ApprovalRow, ApprovalStore, COLUMNS, Decide, GrantKey, Millis, NewApproval, Status,
    StoreError, StoreFuture,
};

/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approvals (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    route            TEXT NOT NULL,
    tool             TEXT NOT NULL,
    arguments        TEXT,
    args_digest      TEXT NOT NULL,
    principal        TEXT,
    reason           TEXT NOT NULL,
    policy           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    approver         TEXT,
    comment          TEXT,
    decided_at       INTEGER,
    grant_expires_at INTEGER,
    grant_uses_left  INTEGER NOT NULL DEFAULT 0,
    grant_used_at    INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_grant ON approvals (route, tool, args_digest, status);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, expires_at);
";

/// The SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode; creates the parent directory.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        // FULL: a decision an approver was told about survives a power cut.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(
                format!(
                    "{} has schema version {version}, newer than this gateway's {SCHEMA_VERSION}",
                    path.display()
                )
                .into(),
            ));
        }
        conn.execute_batch(SCHEMA).map_err(backend)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(backend)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut c)
            })
            .await
            .map_err(backend)?
        })
    }
}

impl ApprovalRow for Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn millis(&self, i: usize) -> rusqlite::Result<Millis> {
        self.get(i)
    }
    fn opt_millis(&self, i: usize) -> rusqlite::Result<Option<Millis>> {
        self.get(i)
    }
    fn integer(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
}

fn row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Approval::from_row(r)
}

fn get(c: &Connection, id: &str) -> Result<Option<Approval>, StoreError> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
    .map_err(backend)
}

impl ApprovalStore for SqliteStore {
    fn create(&self, new: NewApproval) -> StoreFuture<'_, Approval> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO approvals (id, request_id, route, tool, arguments, args_digest, principal, reason, \
                 policy, created_at, expires_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending')",
                params![
                    new.id,
                    new.request_id,
                    new.key.route,
                    new.key.tool,
                    new.arguments.as_ref().map(|a| a.to_string()),
                    new.key.args_digest,
                    new.key.principal,
                    new.reason,
                    new.policy,
                    new.created_at,
                    new.expires_at,
                ],
            )
            .map_err(backend)?;
            get(c, &new.id)?.ok_or_else(|| StoreError::NotFound(new.id.clone()))
        })
    }

    fn get(&self, id: &str) -> StoreFuture<'_, Option<Approval>> {
        let id = id.to_owned();
        self.run(move |c| get(c, &id))
    }

    fn list(&self, status: Option<Status>, limit: u32) -> StoreFuture<'_, Vec<Approval>> {
        self.run(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM approvals WHERE (?1 IS NULL OR status = ?1) \
                     ORDER BY created_at DESC, id DESC LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![status.map(Status::as_str), limit], row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
    }

    fn decide(&self, id: &str, d: Decide) -> StoreFuture<'_, Approval> {
        let id = id.to_owned();
        self.run(move |c| {
            let (status, grant_expires, uses) = if d.approve {
                (Status::Approved, Some(d.grant_expires_at), d.grant_uses)
            } else {
                (Status::Denied, None, 0)
            };
            let moved = c
                .query_row(
                    &format!(
                        "UPDATE approvals SET status = ?1, approver = ?2, comment = ?3, decided_at = ?4, \
                         grant_expires_at = ?5, grant_uses_left = ?6 \
                         WHERE id = ?7 AND status = 'pending' AND expires_at > ?4 RETURNING {COLUMNS}"
                    ),
                    params![status.as_str(), d.approver, d.comment, d.at, grant_expires, uses, id],
                    row,
                )
                .optional()
                .map_err(backend)?;
            match moved {
                Some(a) => Ok(a),
                None => {
                    let current = get(c, &id)?;
                    Err(StoreError::undecided(id, current))
                }
            }
        })
    }

    fn expire_due(&self, now: Millis) -> StoreFuture<'_, Vec<Approval>> {
        self.run(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "UPDATE approvals SET status = 'expired', decided_at = ?1 \
                     WHERE status = 'pending' AND expires_at <= ?1 RETURNING {COLUMNS}"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([now], row).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
    }

    fn consume_grant(&self, key: &GrantKey, now: Millis) -> StoreFuture<'_, Option<Approval>> {
        let key = key.clone();
        self.run(move |c| {
            // One statement: the sub-select and the decrement happen under the same write lock.
            c.query_row(
                &format!(
                    "UPDATE approvals SET grant_uses_left = grant_uses_left - 1, grant_used_at = ?5 \
                     WHERE id = (SELECT id FROM approvals WHERE route = ?1 AND tool = ?2 AND args_digest = ?3 \
                                 AND principal IS ?4 AND status = 'approved' AND grant_uses_left > 0 \
                                 AND grant_expires_at > ?5 ORDER BY decided_at, id LIMIT 1) \
                     AND grant_uses_left > 0 RETURNING {COLUMNS}"
                ),
                params![key.route, key.tool, key.args_digest, key.principal, now],
                row,
            )
            .optional()
            .map_err(backend)
        })
    }

    fn consume_grant_of(&self, id: &str, now: Millis) -> StoreFuture<'_, Option<Approval>> {
        let id = id.to_owned();
        self.run(move |c| {
            c.query_row(
                &format!(
                    "UPDATE approvals SET grant_uses_left = grant_uses_left - 1, grant_used_at = ?2 \
                     WHERE id = ?1 AND status = 'approved' AND grant_uses_left > 0 AND grant_expires_at > ?2 \
                     RETURNING {COLUMNS}"
                ),
                params![id, now],
                row,
            )
            .optional()
            .map_err(backend)
        })
    }

    fn count_pending(&self) -> StoreFuture<'_, u64> {
        self.run(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM approvals WHERE status = 'pending'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(backend)
        })
    }
}

#[cfg(test)]
mod tests {
    //! The store contract (decisions, grants, expiry, concurrent replicas) is tested against both backends in
    //! `gateway/tests/it/approval_store.rs`; here only what is SQLite's own.
    use super::*;

    #[tokio::test]
    async fn the_file_is_created_with_its_directory_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/approvals.db");
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.path(), path);
        assert_eq!(s.count_pending().await.unwrap(), 0);
        let c = s.conn.lock().unwrap();
        let mode: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
