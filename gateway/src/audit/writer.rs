//! The writer thread: group commit, segments, rotation, retention, failure handling and crash recovery.
//!
//! One thread owns the current segment file. It sleeps on a condvar until records are queued (or a
//! checkpoint is due), takes *everything* queued, seals it into the chain in one buffer, writes it with one
//! `write`, calls `fdatasync` once, and answers every waiter of the batch. Queue permits (the backpressure
//! bound) are handed back only once a batch is finished, so "in flight" counts records being written too.
//!
//! Records nobody waits for (queued with `append_later`, e.g. outcomes) do not wake the writer: they ride with
//! the next batch that has a waiter, and are written and synced by themselves only once [`OWED_SYNC_WITHIN`]
//! old (or when [`LATER_BATCH`] of them are queued: then they are written, and their sync is owed until the
//! next waited-for batch, a rotation or close, or that deadline). On this VM an `fdatasync` costs ~50 µs of
//! CPU, and a decision arriving while the writer syncs outcomes would otherwise wait for that sync to end.
//!
//! On a failed write or sync the file descriptor is dropped, never synced again (after a failed `fsync` the
//! kernel may have discarded the dirty pages and a second `fsync` would wrongly succeed — PostgreSQL's
//! "fsyncgate"). The chain goes back to the last *confirmed* record; each later batch first tries (at most
//! every [`RETRY_EVERY`]) to create a fresh segment holding `segment_start` (`after_failure`) and a `gap`
//! record, synced with its directory. Until that works, every append fails at once.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::chain::{self, GENESIS, Hash, Signer};
use super::query::{list_segments, segment_name};
use super::record::{Checkpoint, Gap, Internal, Prepared, Recovery, SegmentStart, format_time};
use super::{AuditConfig, AuditError, Durable, Health, Msg, Shared};

/// Least time between two attempts to open a fresh segment while failing.
pub const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Longest time a record nobody waits for stays queued or unsynced.
pub const OWED_SYNC_WITHIN: Duration = Duration::from_millis(20);

/// Queued records nobody waits for that make the writer write them without waiting for a waited-for one.
pub const LATER_BATCH: usize = 256;

struct Failure {
    since: OffsetDateTime,
    error: Arc<io::Error>,
    /// Seqs assigned but never confirmed durable.
    lost: Option<(u64, u64)>,
    /// Records refused (never sequenced) since.
    refused: u64,
    last_attempt: Instant,
}

/// A checkpoint sealed into the current batch, logged once the batch is durable.
struct PendingCheckpoint {
    count: u64,
    head_hash: String,
    signature: Option<String>,
}

pub(super) struct Writer {
    /// Exclusive lock on `DIR/.lock`, held while the writer lives.
    _lock: File,
    cfg: AuditConfig,
    shared: Arc<Shared>,
    signer: Option<Signer>,
    file: Option<File>,
    /// Current segment (or, while failing, the one that failed; at genesis none).
    segment: Option<String>,
    segment_size: u64,
    segment_opened: Instant,
    next_seq: u64,
    /// Hash of the last sealed record.
    head: Hash,
    durable_seq: u64,
    durable_head: Hash,
    /// Since when records are written but not synced (a batch nobody waited for).
    owed_since: Option<Instant>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    failure: Option<Failure>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl Writer {
    pub(super) fn open(cfg: AuditConfig, shared: Arc<Shared>) -> Result<Writer, AuditError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.dir)
            .map_err(|source| AuditError::Dir {
                path: cfg.dir.clone(),
                source,
            })?;
        // One writer per directory: a second gateway on the same log would fork the chain.
        let lock_path = cfg.dir.join(".lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| AuditError::Dir {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(AuditError::Dir {
                    path: lock_path,
                    source,
                });
            }
        }
        let signer = cfg
            .signing_key_file
            .as_deref()
            .map(Signer::from_pem_file)
            .transpose()?;
        let (tail, recoveries) = recover(&cfg.dir)?;
        let (last_seq, head, segment) = match tail {
            Some(t) => (t.seq, t.hash, Some(t.segment)),
            None => (0, GENESIS, None),
        };
        for r in &recoveries {
            tracing::warn!(segment = %r.segment, offset = r.offset, torn_bytes = r.torn_bytes,
                cause = %r.cause, moved_to = %r.moved_to, "audit log: cut a torn tail left by a crash");
        }
        let mut w = Writer {
            _lock: lock,
            cfg,
            shared,
            signer,
            file: None,
            segment,
            segment_size: 0,
            segment_opened: Instant::now(),
            next_seq: last_seq + 1,
            head,
            durable_seq: last_seq,
            durable_head: head,
            owed_since: None,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            failure: None,
            buf: Vec::with_capacity(1 << 20),
            scratch: Vec::with_capacity(256),
        };
        let prelude = recoveries.into_iter().map(Internal::Recovery).collect();
        w.start_segment("open", prelude)
            .map_err(|source| AuditError::Io {
                path: w.cfg.dir.join(segment_name(w.next_seq)),
                source,
            })?;
        Ok(w)
    }

    pub(super) fn run(mut self) {
        loop {
            let (batch, later_since, closing) = {
                let mut q = self.shared.lock();
                // Records nobody waits for do not end the sleep (see `Shared::push`) until they are due.
                while q.waited == 0 && !q.closing && q.items.len() < LATER_BATCH {
                    let t = self.next_timer(q.later_since);
                    if t.is_zero() {
                        break;
                    }
                    q.writer_waiting = true;
                    q.writer_wakes_at = Some(Instant::now() + t);
                    let (g, res) = self
                        .shared
                        .wake
                        .wait_timeout(q, t)
                        .unwrap_or_else(PoisonError::into_inner);
                    q = g;
                    q.writer_waiting = false;
                    q.writer_wakes_at = None;
                    if res.timed_out() {
                        break;
                    }
                }
                q.waited = 0;
                (
                    std::mem::take(&mut q.items),
                    q.later_since.take(),
                    q.closing,
                )
            };
            if !batch.is_empty() {
                self.write_batch(batch, later_since, false);
            }
            if closing
                || self
                    .owed_since
                    .is_some_and(|t| t.elapsed() >= OWED_SYNC_WITHIN)
            {
                self.settle();
            }
            if self.failure.is_none()
                && self.since_checkpoint > 0
                && (closing || self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval)
            {
                self.write_batch(VecDeque::new(), None, true);
            }
            if closing {
                // Pushes are refused once `closing` is set, and this batch was taken after it was.
                self.file = None;
                self.shared.set_health(Health::Closed);
                let mut q = self.shared.lock();
                q.done = true;
                for w in q.close_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
        }
    }

    /// How long until a checkpoint, an owed sync or queued unwaited records are due (an hour if none can be).
    fn next_timer(&self, later_since: Option<Instant>) -> Duration {
        let checkpoint = if self.since_checkpoint > 0 && self.failure.is_none() {
            self.cfg
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
        } else {
            Duration::from_secs(3600)
        };
        match self.owed_since.into_iter().chain(later_since).min() {
            Some(t) => checkpoint.min(OWED_SYNC_WITHIN.saturating_sub(t.elapsed())),
            None => checkpoint,
        }
    }

    /// Pays an owed sync. False if it failed (the log is then failing, and the unsynced records are lost).
    fn settle(&mut self) -> bool {
        if self.owed_since.is_none() {
            return true;
        }
        self.owed_since = None;
        let Some(file) = self.file.take() else {
            return false;
        };
        let started = Instant::now();
        match file.sync_data() {
            Ok(()) => {
                crate::metrics::audit_sync(started.elapsed());
                self.shared.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.file = Some(file);
                self.durable_seq = self.next_seq - 1;
                self.durable_head = self.head;
                true
            }
            Err(e) => {
                drop(file); // never synced again
                self.shared
                    .counters
                    .failed_batches
                    .fetch_add(1, Ordering::Relaxed);
                let lost = (self.durable_seq + 1, self.next_seq - 1);
                self.enter_failure(e, Some(lost));
                false
            }
        }
    }

    /// `later_since`: when the batch's oldest record nobody waits for was queued.
    fn write_batch(
        &mut self,
        batch: VecDeque<Msg>,
        later_since: Option<Instant>,
        force_checkpoint: bool,
    ) {
        let permits = batch.iter().filter(|m| m.permit).count();
        self.write_batch_inner(batch, later_since, force_checkpoint);
        if permits > 0 {
            self.shared.permits.add_permits(permits);
        }
    }

    fn write_batch_inner(
        &mut self,
        batch: VecDeque<Msg>,
        later_since: Option<Instant>,
        force_checkpoint: bool,
    ) {
        if self.failure.is_some() && !self.try_recover() {
            self.refuse(batch);
            return;
        }
        if self.needs_rotation() {
            // The old segment must be durable to the end before the chain moves on.
            if !self.settle() {
                self.refuse(batch);
                return;
            }
            if let Err(e) = self.start_segment("rotate", Vec::new()) {
                self.enter_failure(e, None);
                self.refuse(batch);
                return;
            }
        }
        let Some(mut file) = self.file.take() else {
            self.enter_failure(io::Error::other("no open segment"), None);
            self.refuse(batch);
            return;
        };

        self.buf.clear();
        let first = self.next_seq;
        for m in &batch {
            self.seal(&m.rec);
        }
        let checkpoint = if force_checkpoint || self.since_checkpoint >= self.cfg.checkpoint_every {
            Some(self.seal_checkpoint())
        } else {
            None
        };

        // Synced now if anyone waits (or a checkpoint is in it, or an owed sync is due); otherwise owed (see
        // the module docs), counted from when the oldest unwaited record was queued.
        if let Some(t) = later_since {
            self.owed_since = Some(self.owed_since.map_or(t, |o| o.min(t)));
        }
        let sync = checkpoint.is_some()
            || batch.iter().any(|m| m.reply.is_some())
            || self
                .owed_since
                .is_some_and(|t| t.elapsed() >= OWED_SYNC_WITHIN);
        let started = Instant::now();
        let written = file
            .write_all(&self.buf)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                let c = &self.shared.counters;
                c.records
                    .fetch_add(self.next_seq - first, Ordering::Relaxed);
                c.bytes.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                c.writes.fetch_add(1, Ordering::Relaxed);
                self.file = Some(file);
                self.segment_size += self.buf.len() as u64;
                if sync {
                    crate::metrics::audit_batch(self.next_seq - first, started.elapsed());
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    self.durable_seq = self.next_seq - 1;
                    self.durable_head = self.head;
                    self.owed_since = None;
                } else {
                    self.owed_since.get_or_insert_with(Instant::now);
                }
                for (i, m) in batch.into_iter().enumerate() {
                    if let Some(r) = m.reply {
                        let _ = r.send(Ok(Durable {
                            seq: first + i as u64,
                        }));
                    }
                }
                if let Some(cp) = checkpoint {
                    tracing::info!(target: "audit_checkpoint",
                        count = cp.count, head_hash = %cp.head_hash,
                        signature = cp.signature.as_deref().unwrap_or(""),
                        key_id = self.signer.as_ref().map(Signer::key_id).unwrap_or(""),
                        segment = self.segment.as_deref().unwrap_or(""),
                        "audit checkpoint");
                }
            }
            Err(e) => {
                // `file` is dropped here and never synced again.
                drop(file);
                self.shared
                    .counters
                    .failed_batches
                    .fetch_add(1, Ordering::Relaxed);
                let lost = (self.durable_seq + 1, self.next_seq - 1);
                let err = self.enter_failure(e, Some(lost));
                for m in batch {
                    if let Some(r) = m.reply {
                        let _ = r.send(Err(AuditError::WriteFailed {
                            source: err.clone(),
                        }));
                    }
                }
            }
        }
    }

    /// Seals one record into `buf`.
    fn seal(&mut self, rec: &Prepared) {
        self.head = chain::seal(
            &self.head,
            self.next_seq,
            rec,
            &mut self.scratch,
            &mut self.buf,
        );
        self.next_seq += 1;
        self.since_checkpoint += 1;
    }

    fn seal_checkpoint(&mut self) -> PendingCheckpoint {
        let count = self.next_seq - 1;
        let head_hash = hex::encode(self.head);
        let signature = self.signer.as_ref().map(|s| s.sign(count, &head_hash));
        let rec = Internal::Checkpoint(Checkpoint {
            count,
            head_hash: head_hash.clone(),
            key_id: self.signer.as_ref().map(|s| s.key_id().to_owned()),
            signature: signature.clone(),
        });
        self.seal(&Prepared::internal(&rec));
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        PendingCheckpoint {
            count,
            head_hash,
            signature,
        }
    }

    fn needs_rotation(&self) -> bool {
        self.segment_size >= self.cfg.segment_max_bytes
            || self.segment_opened.elapsed() >= self.cfg.segment_max_age
    }

    /// Creates segment `audit-<next seq>.jsonl` holding `segment_start` and `prelude`, synced with its
    /// directory, chained onto the last durable record; then applies retention. On error nothing changes
    /// (the half-made file is removed: nothing in it was ever confirmed).
    fn start_segment(&mut self, reason: &str, prelude: Vec<Internal>) -> io::Result<()> {
        let name = segment_name(self.next_seq);
        let path = self.cfg.dir.join(&name);
        let victims = self.retention_victims();
        let start = Internal::SegmentStart(SegmentStart {
            reason: reason.to_owned(),
            previous_segment: self.segment.clone(),
            retention_deleted: victims
                .iter()
                .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                .collect(),
            gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
        });

        let (saved_seq, saved_since) = (self.next_seq, self.since_checkpoint);
        self.head = self.durable_head;
        self.buf.clear();
        self.seal(&Prepared::internal(&start));
        for r in &prelude {
            self.seal(&Prepared::internal(r));
        }
        // A file of this name can only be a failed earlier attempt: names are seqs never confirmed.
        let result = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&self.buf)?;
                f.sync_data()?;
                sync_dir(&self.cfg.dir)?;
                Ok(f)
            });
        match result {
            Ok(f) => {
                self.file = Some(f);
                self.segment = Some(name);
                self.segment_size = self.buf.len() as u64;
                self.segment_opened = Instant::now();
                self.durable_seq = self.next_seq - 1;
                self.durable_head = self.head;
                for v in &victims {
                    match fs::remove_file(v) {
                        Ok(()) => {
                            tracing::info!(segment = %v.display(), "audit retention: deleted segment")
                        }
                        Err(e) => {
                            tracing::error!(segment = %v.display(), error = %e, "audit retention: cannot delete segment")
                        }
                    }
                }
                if !victims.is_empty() {
                    let _ = sync_dir(&self.cfg.dir);
                }
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                self.next_seq = saved_seq;
                self.since_checkpoint = saved_since;
                self.head = self.durable_head;
                Err(e)
            }
        }
    }

    /// The oldest segments whose last write is older than the retention, never the newest one.
    fn retention_victims(&self) -> Vec<PathBuf> {
        let Some(keep) = self.cfg.retention else {
            return Vec::new();
        };
        let Some(cutoff) = SystemTime::now().checked_sub(keep) else {
            return Vec::new();
        };
        let Ok(mut segs) = list_segments(&self.cfg.dir) else {
            return Vec::new();
        };
        segs.pop(); // the newest (current) one is never deleted
        segs.into_iter()
            .map(|(_, p)| p)
            .take_while(|p| {
                fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff)
            })
            .collect()
    }

    /// Drops the file, resets the chain to the last confirmed record, reports failing.
    fn enter_failure(&mut self, e: io::Error, lost: Option<(u64, u64)>) -> Arc<io::Error> {
        let err = Arc::new(e);
        self.file = None;
        self.owed_since = None; // the owed records are among the lost ones
        self.head = self.durable_head;
        self.since_checkpoint = 0;
        let since = OffsetDateTime::now_utc();
        tracing::error!(error = %err, segment = self.segment.as_deref().unwrap_or(""),
            lost_from = lost.map(|l| l.0), lost_to = lost.map(|l| l.1),
            "AUDIT LOG FAILING: records are not durable; requests will be refused until a new segment can be written");
        self.shared.set_health(Health::Failing {
            since,
            error: err.to_string(),
        });
        self.failure = Some(Failure {
            since,
            error: err.clone(),
            lost,
            refused: 0,
            last_attempt: Instant::now(),
        });
        err
    }

    /// While failing: tries a fresh segment (`after_failure` + `gap`). True once the log is healthy again.
    fn try_recover(&mut self) -> bool {
        let Some(f) = &mut self.failure else {
            return true;
        };
        if f.last_attempt.elapsed() < RETRY_EVERY {
            return false;
        }
        f.last_attempt = Instant::now();
        let gap = Gap {
            from: f.lost.map(|l| l.0),
            to: f.lost.map(|l| l.1),
            refused: f.refused,
            error: f.error.to_string(),
            failing_since: format_time(f.since),
        };
        match self.start_segment("after_failure", vec![Internal::Gap(gap.clone())]) {
            Ok(()) => {
                tracing::error!(
                    segment = self.segment.as_deref().unwrap_or(""),
                    lost_from = gap.from,
                    lost_to = gap.to,
                    refused = gap.refused,
                    "audit log writable again; the gap is recorded"
                );
                self.failure = None;
                self.shared.set_health(Health::Ok);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "audit log still failing: cannot start a new segment");
                false
            }
        }
    }

    /// Fails every record of `batch` at once (the log is failing).
    fn refuse(&mut self, batch: VecDeque<Msg>) {
        let Some(f) = &mut self.failure else { return };
        f.refused += batch.len() as u64;
        self.shared
            .counters
            .refused
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for m in batch {
            if let Some(r) = m.reply {
                let _ = r.send(Err(AuditError::Failing {
                    since: format_time(f.since),
                    source: f.error.clone(),
                }));
            }
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Where the chain continues after a (re)start.
struct Tail {
    seq: u64,
    hash: Hash,
    segment: String,
}

/// Finds the last record on disk; cuts a torn last line (keeping its bytes in `<segment>.torn`) and moves
/// aside trailing segments that hold no complete record. Refuses (Corrupt) if more than the last line is bad:
/// that is not what a crash leaves.
fn recover(dir: &Path) -> Result<(Option<Tail>, Vec<Recovery>), AuditError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| AuditError::Io { path, source }
    };
    let mut segs = list_segments(dir).map_err(|source| AuditError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut notes = Vec::new();
    while let Some((_, path)) = segs.pop() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let mut cut: Option<(usize, &'static str)> = match bytes.iter().rposition(|&b| b == b'\n') {
            None if bytes.is_empty() => Some((0, "no_records")),
            None => Some((0, "unterminated")),
            Some(i) if i + 1 < bytes.len() => Some((i + 1, "unterminated")),
            Some(_) => None,
        };
        let mut tail = None;
        let mut line_count = bytes[..cut.map_or(bytes.len(), |c| c.0)]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        loop {
            let end = cut.map_or(bytes.len(), |c| c.0);
            if end == 0 {
                break;
            }
            let start = bytes[..end - 1]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            if let Some((seq, hash)) = parse_tail(&bytes[start..end - 1]) {
                tail = Some(Tail {
                    seq,
                    hash,
                    segment: name.clone(),
                });
                break;
            }
            if cut.is_some() {
                return Err(AuditError::Corrupt {
                    path,
                    line: line_count,
                    detail: "not a record, and not the last line: this is not what a crash leaves; \
                             run `mcp-gateway audit verify` and move the damaged segment aside by hand"
                        .into(),
                });
            }
            cut = Some((start, "unparsable"));
            line_count -= 1;
        }
        let Some((offset, cause)) = cut else {
            return Ok((tail, notes));
        };
        let torn = &bytes[offset..];
        let torn_path = unique_torn_path(&path);
        let moved_to = torn_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if offset == 0 {
            // Nothing of this segment survives: move the whole file aside.
            fs::rename(&path, &torn_path).map_err(io_err(&path))?;
        } else {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&torn_path)
                .map_err(io_err(&torn_path))?;
            f.write_all(torn)
                .and_then(|()| f.sync_all())
                .map_err(io_err(&torn_path))?;
            let seg = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            seg.set_len(offset as u64)
                .and_then(|()| seg.sync_all())
                .map_err(io_err(&path))?;
        }
        sync_dir(dir).map_err(io_err(dir))?;
        notes.push(Recovery {
            segment: name,
            offset: offset as u64,
            torn_bytes: torn.len() as u64,
            torn_sha256: hex::encode(Sha256::digest(torn)),
            moved_to,
            cause: cause.to_owned(),
            last_good_seq: tail.as_ref().map(|t| t.seq),
        });
        if tail.is_some() {
            return Ok((tail, notes));
        }
    }
    Ok((None, notes))
}

/// `seq` and `hash` of a complete line, if it is a record.
fn parse_tail(line: &[u8]) -> Option<(u64, Hash)> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let hash = chain::parse_hash(v.get("hash")?.as_str()?)?;
    Some((seq, hash))
}

fn unique_torn_path(seg: &Path) -> PathBuf {
    let base = seg.with_extension("jsonl.torn");
    if !base.exists() {
        return base;
    }
    (1..)
        .map(|i| seg.with_extension(format!("jsonl.torn.{i}")))
        .find(|p| !p.exists())
        .unwrap_or(base)
}
