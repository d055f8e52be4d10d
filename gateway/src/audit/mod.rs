//! The audit log: every decision durable before anything is forwarded, tamper-evident, fast.
//!
//! Where it sits: below the request path, which it knows nothing of. The audit stage
//! ([`crate::audit_stage`], between policy and forward) calls [`AuditLog::append`] with the decision record
//! and forwards only once it resolves ([`Durable`]); refusals are recorded the same way, and the upstream's
//! outcome afterwards with [`AuditLog::append_later`], when the answer's body has ended
//! ([`crate::audit_stage::outcome`]).
//!
//! How it works:
//! - **Group commit** ([`writer`]): one writer thread owns the current segment file. Callers serialise their
//!   record on their own task, enqueue it (a bounded queue: when full, `append` waits — nothing is dropped)
//!   and await "durable up to seq N". The writer drains whatever is queued, seals the records into the chain,
//!   writes them with one `write`, calls `fdatasync` once, and wakes every waiter of the batch. No deliberate
//!   delay: under load batches grow by themselves.
//! - **Segments**: `DIR/audit-<first seq, 20 digits>.jsonl`, one canonical JSON record per line, rotated by
//!   size and age; each starts with a `segment_start` record whose `prev_hash` is the previous segment's last
//!   hash. Retention deletes whole old segments (never the current one) and names them in the new segment's
//!   `segment_start` (`retention_deleted`), so that verification of the remaining history knows why it begins
//!   where it does.
//! - **Tamper evidence** ([`chain`]): a SHA-256 hash chain over canonical bytes, genesis 32 zero bytes, and
//!   checkpoints (`count`, `head_hash`, Ed25519 signature) every `checkpoint_every` records or
//!   `checkpoint_interval`, also emitted on the `audit_checkpoint` tracing target.
//! - **Failure** (disk full, EIO): the failing batch's waiters get `Err`, [`AuditLog::health`] reports
//!   `Failing`, and later appends fail fast (the caller refuses to forward) until a fresh segment can be
//!   created and synced; the failed file descriptor is never `fsync`ed again ("fsyncgate"). The new segment
//!   starts with `segment_start` (`after_failure`) and a `gap` record naming the seqs that were never
//!   confirmed and how many records were refused meanwhile.
//! - **Crash**: on open, a torn last line (unterminated, or not a record) is cut out of the chain, its bytes
//!   kept in `<segment>.torn`, and a `recovery` record says what was cut. History is never rewritten silently.
//! - **Auditors** ([`verify`], [`query`], `mcp-gateway audit verify|query|tail|stats`).
//!
//! The record format is documented field by field in `gateway/audit-record.schema.json`.

pub mod chain;
pub mod query;
pub mod record;
pub mod verify;
mod writer;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Semaphore, oneshot};

pub use record::{
    ApprovalEvent, ApprovalRecord, Arguments, Decision, DecisionRecord, OutcomeRecord,
    PolicyResult, Record, RefusalKind, RefusalRecord, ToolRecord,
};

/// Audit log settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Directory of the segments (created `0700` if missing).
    pub dir: PathBuf,
    /// Rotate when the current segment reaches this size.
    pub segment_max_bytes: u64,
    /// Rotate when the current segment is this old (checked when records arrive).
    pub segment_max_age: Duration,
    /// Delete segments whose last write is older than this (never the current one); `None` keeps all.
    pub retention: Option<Duration>,
    /// Write a checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or after this long, if any record was written since the last one.
    pub checkpoint_interval: Duration,
    /// Ed25519 private key (PKCS#8 PEM) that signs checkpoints; unsigned checkpoints without it.
    pub signing_key_file: Option<PathBuf>,
    /// Records in flight (queued or being written) before `append` waits.
    pub queue_capacity: usize,
}

impl AuditConfig {
    /// Defaults: 64 MiB / 1 h segments, no retention, a checkpoint every 1000 records or 60 s, no signing key,
    /// 65536 records in flight.
    pub fn with_dir(dir: PathBuf) -> Self {
        AuditConfig {
            dir,
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(3600),
            retention: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            signing_key_file: None,
            queue_capacity: 65536,
        }
    }
}

/// Why the audit log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process (or another `AuditLog` in this one) writes this directory.
    #[error("audit directory is in use by another writer (lock {path} is held)")]
    Locked { path: PathBuf },
    #[error("audit segment {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit segment {path} line {line}: {detail}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("cannot read key file {path}: {source}")]
    KeyRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("key file {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    /// This record's batch could not be made durable.
    #[error("audit write failed")]
    WriteFailed {
        #[source]
        source: Arc<io::Error>,
    },
    /// The log is failing (an earlier write or sync failed and no fresh segment could be opened yet).
    #[error("audit log failing since {since}")]
    Failing {
        since: String,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("audit log is closed")]
    Closed,
    #[error("cannot start the audit writer thread")]
    Spawn(#[source] io::Error),
}

/// Proof that a record is durable: it is covered by an `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub seq: u64,
}

/// Counters since open (for the metrics endpoint and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Records written (gateway and internal ones); durable once the next sync is done.
    pub records: u64,
    /// `fdatasync` calls on segment files (one per batch with a waiter, plus owed syncs).
    pub batches: u64,
    /// `write` calls of batches to segment files.
    pub writes: u64,
    pub bytes: u64,
    /// Batches whose write or sync failed.
    pub failed_batches: u64,
    /// Records refused while the log was failing.
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    writes: AtomicU64,
    bytes: AtomicU64,
    failed_batches: AtomicU64,
    refused: AtomicU64,
}

/// State of the log, for readiness checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Appends fail until a fresh segment can be written.
    Failing {
        since: OffsetDateTime,
        error: String,
    },
    Closed,
}

type Reply = oneshot::Sender<Result<Durable, AuditError>>;

/// One queued record.
struct Msg {
    rec: record::Prepared,
    /// `None` for `append_later`.
    reply: Option<Reply>,
    /// Whether it holds a queue permit (`append_later` beyond capacity does not).
    permit: bool,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Msg>,
    /// How many of `items` someone waits for: the writer is woken for these at once.
    waited: usize,
    /// When the oldest queued record nobody waits for was queued. Such records do not wake the writer; they
    /// ride with the next waited-for batch, or are written and synced once [`writer::OWED_SYNC_WITHIN`] old.
    later_since: Option<Instant>,
    closing: bool,
    writer_waiting: bool,
    /// When the sleeping writer wakes by itself.
    writer_wakes_at: Option<Instant>,
    close_waiters: Vec<oneshot::Sender<()>>,
    done: bool,
}

/// What callers and the writer share.
struct Shared {
    queue: Mutex<QueueState>,
    wake: Condvar,
    permits: Semaphore,
    health: Mutex<Health>,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_health(&self, h: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = h;
    }

    /// Queues `msg`; gives it back if the log is closing.
    fn push(&self, msg: Msg) -> Result<(), Msg> {
        let mut q = self.lock();
        if q.closing {
            return Err(msg);
        }
        let wake = if msg.reply.is_some() {
            q.waited += 1;
            true
        } else {
            let since = *q.later_since.get_or_insert_with(Instant::now);
            // Wake the writer only if it would otherwise sleep past this record's deadline, or if many
            // such records are queued.
            q.writer_wakes_at
                .is_none_or(|t| t > since + writer::OWED_SYNC_WITHIN)
                || q.items.len() + 1 >= writer::LATER_BATCH
        };
        q.items.push_back(msg);
        if wake && q.writer_waiting {
            q.writer_waiting = false;
            self.wake.notify_one();
        }
        Ok(())
    }
}

struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Last handle gone without `close`: let the writer drain and stop on its own.
        self.shared.permits.close();
        let mut q = self.shared.lock();
        q.closing = true;
        self.shared.wake.notify_one();
    }
}

/// The audit log. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("health", &self.health())
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating the dir 0700 if missing), recovers from a torn last line (excluded from the chain,
    /// recorded as a recovery event), continues the chain from the last record of the last segment, starts
    /// the writer thread.
    pub fn open(cfg: AuditConfig) -> Result<AuditLog, AuditError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(QueueState::default()),
            wake: Condvar::new(),
            permits: Semaphore::new(cfg.queue_capacity.clamp(1, Semaphore::MAX_PERMITS)),
            health: Mutex::new(Health::Ok),
            counters: Counters::default(),
        });
        let writer = writer::Writer::open(cfg, shared.clone())?;
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(AuditError::Spawn)?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Enqueues and resolves once the record is covered by an fdatasync (durable). Err if the log is failing
    /// (the caller then refuses to forward). Backpressure: waits when the queue is full; never drops.
    pub async fn append(&self, record: Record) -> Result<Durable, AuditError> {
        let rec = record::Prepared::new(&record);
        let shared = &self.inner.shared;
        let permit = shared
            .permits
            .acquire()
            .await
            .map_err(|_| AuditError::Closed)?;
        permit.forget();
        let (tx, rx) = oneshot::channel();
        let msg = Msg {
            rec,
            reply: Some(tx),
            permit: true,
        };
        if shared.push(msg).is_err() {
            shared.permits.add_permits(1);
            return Err(AuditError::Closed);
        }
        rx.await.unwrap_or(Err(AuditError::Closed))
    }

    /// Enqueues without waiting for durability (for outcome records written after the fact); still never
    /// dropped: beyond the queue's capacity the record is queued anyway (outcomes follow admitted decisions,
    /// so they are bounded by them). If the log is failing when its batch is written, the record is counted
    /// in the next `gap` record's `refused`.
    pub fn append_later(&self, record: Record) {
        let kind = record.kind();
        let rec = record::Prepared::new(&record);
        let shared = &self.inner.shared;
        let permit = match shared.permits.try_acquire() {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        };
        let msg = Msg {
            rec,
            reply: None,
            permit,
        };
        if shared.push(msg).is_err() {
            if permit {
                shared.permits.add_permits(1);
            }
            tracing::error!(kind, "audit record after close: lost");
        }
    }

    /// Ok, or why not (for /readyz).
    pub fn health(&self) -> Health {
        self.inner
            .shared
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counters since open.
    pub fn metrics(&self) -> Metrics {
        let c = &self.inner.shared.counters;
        Metrics {
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        }
    }

    /// Flushes everything queued (with a final checkpoint) and stops the writer (graceful shutdown).
    pub async fn close(&self) {
        let shared = &self.inner.shared;
        shared.permits.close();
        let rx = {
            let mut q = shared.lock();
            if q.done {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                q.close_waiters.push(tx);
                q.closing = true;
                q.writer_waiting = false;
                shared.wake.notify_one();
                Some(rx)
            }
        };
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        let handle = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}
