//! Verification of a log directory: every line canonical and correctly hashed, the chain unbroken across
//! segments, seqs contiguous (only a `gap` record after an `after_failure` segment start may explain missing
//! seqs), checkpoints matching the chain and, with a public key, correctly signed. Stops at the first problem
//! and names it precisely (file, line, seq, what is wrong).
//!
//! History that begins after seq 1 is accepted only if the first segment's predecessor was deleted by
//! retention, as recorded in a later `segment_start` (`retention_deleted`). Truncation at the very end of the
//! newest segment leaves a valid shorter chain: only a checkpoint held elsewhere can show it
//! (`expect` in [`Options`], `--checkpoint COUNT:HASH` on the command line).

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value};

use super::AuditError;
use super::chain::{self, GENESIS, Hash};
use super::query::{list_segments, parse_segment_name};
use super::record::canonical_bytes;

/// Recent (seq, hash) pairs kept to anchor a `gap` (enough for several full segments).
const WINDOW: usize = 1 << 20;

/// What to check beyond the chain itself.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Checkpoint signatures must verify with this key (and unsigned checkpoints fail).
    pub key: Option<VerifyingKey>,
    /// Externally held checkpoints (count, head hash hex) the log must contain.
    pub expect: Vec<(u64, String)>,
}

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    pub seq: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub segments: usize,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub head_hash: Option<String>,
    pub checkpoints: u64,
    pub signatures_verified: u64,
    pub gaps: u64,
    pub recoveries: u64,
    /// Things an auditor should know that are not failures (retention, gaps, recoveries, …).
    pub notes: Vec<String>,
    /// The first problem; `None` means the log verified.
    pub problem: Option<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A record's envelope, checked.
struct Rec {
    seq: u64,
    kind: String,
    prev_hash: Hash,
    hash: Hash,
    data: Map<String, Value>,
}

/// A segment start that did not link to the record before it; the next record must be its `gap`.
struct PendingFailure {
    start_seq: u64,
    prev_hash: Hash,
    prev_last: Option<u64>,
}

struct State<'a> {
    opts: &'a Options,
    report: Report,
    prev: Option<(u64, Hash, PathBuf)>,
    window: VecDeque<(u64, Hash)>,
    pending: Option<PendingFailure>,
    /// A torn last line of the previous segment (allowed only before an `after_failure` segment).
    torn: Option<Problem>,
    first_prev_segment: Option<(String, Problem)>,
    retention_deleted: HashSet<String>,
    expect_found: Vec<bool>,
    /// `check_gap` accepted the record being processed.
    gap_checked: bool,
    /// The record before was a segment start with reason `after_failure`.
    after_failure_start: bool,
}

/// Verifies every segment of `dir`. I/O errors are `Err`; everything about the content is in the report.
pub fn verify_dir(dir: &Path, opts: &Options) -> Result<Report, AuditError> {
    let segs = list_segments(dir).map_err(|source| AuditError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut st = State {
        opts,
        report: Report::default(),
        prev: None,
        window: VecDeque::new(),
        pending: None,
        torn: None,
        first_prev_segment: None,
        retention_deleted: HashSet::new(),
        expect_found: vec![false; opts.expect.len()],
        gap_checked: false,
        after_failure_start: false,
    };
    if segs.is_empty() {
        st.report.problem = Some(Problem {
            file: dir.to_owned(),
            line: 0,
            seq: None,
            what: "no audit segments (audit-<seq>.jsonl) in this directory".into(),
        });
        return Ok(st.report);
    }
    for (_, path) in &segs {
        st.report.segments += 1;
        if let Err(p) = st.segment(path)? {
            st.report.problem = Some(p);
            return Ok(st.report);
        }
    }
    if let Err(p) = st.finish() {
        st.report.problem = Some(p);
    }
    Ok(st.report)
}

impl State<'_> {
    fn segment(&mut self, path: &Path) -> Result<Result<(), Problem>, AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let mut rd = BufReader::with_capacity(1 << 16, File::open(path).map_err(io_err)?);
        let mut buf = Vec::new();
        let mut line = 0usize;
        loop {
            buf.clear();
            let n = rd.read_until(b'\n', &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            line += 1;
            let at = |seq: Option<u64>, what: String| Problem {
                file: path.to_owned(),
                line,
                seq,
                what,
            };
            if line > 1
                && self.pending.is_none()
                && let Some(t) = self.torn.take()
            {
                return Ok(Err(t));
            }
            if buf.last() != Some(&b'\n') {
                self.torn = Some(at(
                    None,
                    "torn last line (no final newline): a crash or a write in progress; the gateway cuts it \
                     out of the chain on its next start"
                        .into(),
                ));
                continue;
            }
            let rec = match parse(&buf[..buf.len() - 1]) {
                Ok(r) => r,
                Err((seq, what)) => {
                    // A record that does not parse at all is torn if it is the last line; decided at EOF.
                    if seq.is_none() && rd.fill_buf().map_err(io_err)?.is_empty() {
                        self.torn = Some(at(None, format!("torn last line: {what}")));
                        continue;
                    }
                    return Ok(Err(at(seq, what)));
                }
            };
            let after_failure = rec.kind == "segment_start"
                && rec.data.get("reason").and_then(Value::as_str) == Some("after_failure");
            if line == 1
                && !after_failure
                && let Some(t) = self.torn.take()
            {
                // A torn line is only explained by the failure recovery that follows it.
                return Ok(Err(t));
            }
            if let Err(what) = self.link(&rec, line == 1, &name) {
                return Ok(Err(at(Some(rec.seq), what)));
            }
            if line == 1 && parse_segment_name(&name) != Some(rec.seq) {
                return Ok(Err(at(
                    Some(rec.seq),
                    format!("file name {name} does not match the first record's seq"),
                )));
            }
            if let Err(what) = self.kind_checks(&rec, line == 1) {
                return Ok(Err(at(Some(rec.seq), what)));
            }
            self.accept(&rec, path);
        }
        if line == 0 {
            self.report
                .notes
                .push(format!("{name}: empty segment (skipped)"));
        }
        if let Some(p) = self.pending.take() {
            return Ok(Err(Problem {
                file: path.to_owned(),
                line,
                seq: Some(p.start_seq),
                what: "segment_start does not continue the chain and no gap record follows it"
                    .into(),
            }));
        }
        Ok(Ok(()))
    }

    /// Chain and seq continuity.
    fn link(&mut self, rec: &Rec, first_in_segment: bool, name: &str) -> Result<(), String> {
        if let Some(p) = self.pending.take() {
            return self.check_gap(rec, p);
        }
        let Some((pseq, phash, pfile)) = &self.prev else {
            // The first record of all.
            if rec.seq == 1 && rec.prev_hash == GENESIS {
                return Ok(());
            }
            if rec.seq == 1 {
                return Err("seq 1 does not start from the genesis hash (32 zero bytes)".into());
            }
            if rec.kind != "segment_start" {
                return Err("the oldest segment does not begin with a segment_start record".into());
            }
            let prev_seg = rec
                .data
                .get("previous_segment")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_owned();
            self.first_prev_segment = Some((
                prev_seg.clone(),
                Problem {
                    file: PathBuf::from(name),
                    line: 1,
                    seq: Some(rec.seq),
                    what: format!(
                        "history begins at seq {} but the previous segment {prev_seg} is missing and no \
                         retention record accounts for it",
                        rec.seq
                    ),
                },
            ));
            return Ok(());
        };
        let (pseq, phash) = (*pseq, *phash);
        let pname = pfile
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let linked = rec.seq == pseq + 1 && rec.prev_hash == phash && self.torn.is_none();
        if first_in_segment {
            if rec.kind != "segment_start" {
                return Err(format!(
                    "first record of a segment is `{}`, not segment_start",
                    rec.kind
                ));
            }
            let named = rec.data.get("previous_segment").and_then(Value::as_str);
            if linked && named == Some(pname.as_str()) {
                return Ok(());
            }
            if rec.data.get("reason").and_then(Value::as_str) == Some("after_failure")
                && rec.seq > pseq
            {
                self.pending = Some(PendingFailure {
                    start_seq: rec.seq,
                    prev_hash: rec.prev_hash,
                    prev_last: Some(pseq),
                });
                return Ok(());
            }
            if let Some(t) = self.torn.take() {
                return Err(format!("follows a torn line ({t})"));
            }
            if named != Some(pname.as_str()) && rec.seq > pseq + 1 {
                return Err(format!(
                    "seqs {}..{} are missing: segment {} (named by this segment_start as its predecessor) \
                     is not here — was a segment deleted?",
                    pseq + 1,
                    rec.seq - 1,
                    named.unwrap_or("<none>")
                ));
            }
        }
        if self.torn.is_some() {
            return Err("a record follows a torn line".into());
        }
        if rec.seq <= pseq {
            return Err(format!(
                "seq {} does not follow seq {pseq} (out of order or duplicated: lines swapped or copied?)",
                rec.seq
            ));
        }
        if rec.seq > pseq + 1 {
            return Err(format!(
                "seqs {}..{} are missing after seq {pseq} (deleted lines? only a gap record may explain a gap)",
                pseq + 1,
                rec.seq - 1
            ));
        }
        if rec.prev_hash != phash {
            return Err(format!(
                "prev_hash does not match the hash of seq {pseq} ({}): the chain is broken here",
                pfile.display()
            ));
        }
        if first_in_segment {
            return Err(format!(
                "segment_start names {:?} as previous segment, but it follows {pname}",
                rec.data.get("previous_segment").and_then(Value::as_str)
            ));
        }
        Ok(())
    }

    /// The record after an `after_failure` segment start that did not link: must be the `gap` explaining it.
    fn check_gap(&mut self, rec: &Rec, p: PendingFailure) -> Result<(), String> {
        if rec.kind != "gap" || rec.seq != p.start_seq + 1 || rec.prev_hash != self.prev_hash() {
            return Err(
                "the segment_start after a failure does not continue the chain and is not followed by its gap \
                 record"
                    .into(),
            );
        }
        let from = rec.data.get("from").and_then(Value::as_u64);
        let to = rec.data.get("to").and_then(Value::as_u64);
        let prev_last = p.prev_last.unwrap_or(0);
        let (anchor_seq, ok) = match (from, to) {
            (Some(f), Some(t)) => (f - 1, f >= 1 && t + 1 == p.start_seq && f <= prev_last + 1),
            (None, None) => (prev_last, p.start_seq == prev_last + 1),
            _ => (0, false),
        };
        if !ok {
            return Err(format!(
                "gap record (from {from:?} to {to:?}) does not explain the jump from seq {prev_last} to seq {}",
                p.start_seq
            ));
        }
        let anchor = if anchor_seq == 0 {
            Some(GENESIS)
        } else {
            self.hash_of(anchor_seq)
        };
        if anchor != Some(p.prev_hash) {
            return Err(format!(
                "the segment_start after a failure does not chain onto seq {anchor_seq}, the last confirmed record"
            ));
        }
        self.torn = None;
        self.gap_checked = true;
        let present = prev_last.saturating_sub(anchor_seq);
        self.report.notes.push(format!(
            "seqs {}..{} were not confirmed durable (write failure: {}); {present} of them are on disk",
            anchor_seq + 1,
            p.start_seq - 1,
            rec.data.get("error").and_then(Value::as_str).unwrap_or("?"),
        ));
        Ok(())
    }

    fn prev_hash(&self) -> Hash {
        self.window.back().map_or(GENESIS, |w| w.1)
    }

    fn hash_of(&self, seq: u64) -> Option<Hash> {
        let i = self.window.binary_search_by_key(&seq, |w| w.0).ok()?;
        Some(self.window[i].1)
    }

    fn kind_checks(&mut self, rec: &Rec, first_in_segment: bool) -> Result<(), String> {
        match rec.kind.as_str() {
            "segment_start" if !first_in_segment => {
                Err("segment_start in the middle of a segment".into())
            }
            "segment_start" => {
                for n in rec
                    .data
                    .get("retention_deleted")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    self.retention_deleted.insert(n.to_owned());
                }
                Ok(())
            }
            "gap" => {
                // Right after an `after_failure` segment start: checked by `check_gap` when seqs were lost,
                // or naming nothing lost when the chain continued anyway.
                if std::mem::take(&mut self.gap_checked)
                    || (self.after_failure_start && self.gap_ok(rec))
                {
                    self.report.gaps += 1;
                    Ok(())
                } else {
                    Err("gap record where no failure is recorded".into())
                }
            }
            "recovery" => {
                self.report.recoveries += 1;
                self.report.notes.push(format!(
                    "recovery at seq {}: cut {} bytes ({}) from {} at offset {}, kept in {}",
                    rec.seq,
                    rec.data
                        .get("torn_bytes")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                    rec.data.get("cause").and_then(Value::as_str).unwrap_or("?"),
                    rec.data
                        .get("segment")
                        .and_then(Value::as_str)
                        .unwrap_or("?"),
                    rec.data.get("offset").and_then(Value::as_u64).unwrap_or(0),
                    rec.data
                        .get("moved_to")
                        .and_then(Value::as_str)
                        .unwrap_or("?"),
                ));
                Ok(())
            }
            "checkpoint" => self.checkpoint(rec),
            "decision"
            | "refusal"
            | "outcome"
            | "approval_requested"
            | "approval_notified"
            | "approval_approved"
            | "approval_denied"
            | "approval_expired"
            | "approval_grant_used" => Ok(()),
            other => Err(format!("unknown record kind `{other}`")),
        }
    }

    /// A gap record directly after an `after_failure` segment start that linked normally (nothing lost).
    fn gap_ok(&self, rec: &Rec) -> bool {
        rec.data.get("from").is_none() && rec.data.get("to").is_none()
    }

    fn checkpoint(&mut self, rec: &Rec) -> Result<(), String> {
        let count = rec.data.get("count").and_then(Value::as_u64);
        let head = rec.data.get("head_hash").and_then(Value::as_str);
        let (Some(count), Some(head)) = (count, head) else {
            return Err("checkpoint without count/head_hash".into());
        };
        if count + 1 != rec.seq || chain::parse_hash(head) != Some(rec.prev_hash) {
            return Err(format!(
                "checkpoint claims head {count} = {head}, which is not the record before it"
            ));
        }
        self.report.checkpoints += 1;
        if let Some(key) = &self.opts.key {
            let Some(sig) = rec.data.get("signature").and_then(Value::as_str) else {
                return Err("checkpoint is not signed (a key was given)".into());
            };
            if !chain::verify_checkpoint(key, count, head, sig) {
                return Err("checkpoint signature does not verify with the given key".into());
            }
            self.report.signatures_verified += 1;
        }
        Ok(())
    }

    fn accept(&mut self, rec: &Rec, path: &Path) {
        for (i, (c, h)) in self.opts.expect.iter().enumerate() {
            if *c == rec.seq {
                self.expect_found[i] = chain::parse_hash(h) == Some(rec.hash);
            }
        }
        self.report.records += 1;
        self.report.first_seq.get_or_insert(rec.seq);
        self.report.last_seq = Some(rec.seq);
        self.prev = Some((rec.seq, rec.hash, path.to_owned()));
        self.after_failure_start = rec.kind == "segment_start"
            && rec.data.get("reason").and_then(Value::as_str) == Some("after_failure");
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back((rec.seq, rec.hash));
    }

    fn finish(&mut self) -> Result<(), Problem> {
        if let Some(t) = self.torn.take() {
            return Err(t);
        }
        if let Some((prev_seg, problem)) = self.first_prev_segment.take() {
            if !self.retention_deleted.contains(&prev_seg) {
                return Err(problem);
            }
            self.report.notes.push(format!(
                "history begins at seq {}: earlier segments (up to {prev_seg}) were deleted by retention",
                self.report.first_seq.unwrap_or(0)
            ));
        }
        for (i, (c, h)) in self.opts.expect.iter().enumerate() {
            if !self.expect_found[i] {
                return Err(Problem {
                    file: self.prev.as_ref().map(|p| p.2.clone()).unwrap_or_default(),
                    line: 0,
                    seq: Some(*c),
                    what: format!(
                        "the log does not contain the expected checkpoint: record {c} with hash {h} \
                         (truncated or rewritten?)"
                    ),
                });
            }
        }
        self.report.head_hash = self.prev.as_ref().map(|p| hex::encode(p.1));
        Ok(())
    }
}

/// Parses and checks one line on its own: JSON, the envelope's members, canonical form, its hash.
/// On error: the seq if it could be read, and what is wrong.
fn parse(line: &[u8]) -> Result<Rec, (Option<u64>, String)> {
    let v: Value =
        serde_json::from_slice(line).map_err(|e| (None, format!("not a JSON record: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err((None, "not a JSON object".into()));
    };
    let seq = obj.get("seq").and_then(Value::as_u64);
    let err = |what: String| (seq, what);
    let Some(seq) = seq else {
        return Err(err("no seq".into()));
    };
    let mut canon = Vec::with_capacity(line.len());
    canonical_bytes(&Value::Object(obj.clone()), &mut canon);
    if canon != line {
        return Err(err(
            "not in canonical form (keys sorted, no whitespace): the line was edited".into(),
        ));
    }
    let known = ["data", "hash", "kind", "prev_hash", "seq", "time"];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(err(format!("unexpected member `{k}`")));
    }
    let hash_hex = obj.remove("hash");
    let hash = hash_hex
        .as_ref()
        .and_then(Value::as_str)
        .and_then(chain::parse_hash)
        .ok_or_else(|| err("missing or malformed hash".into()))?;
    let prev_hash = obj
        .get("prev_hash")
        .and_then(Value::as_str)
        .and_then(chain::parse_hash)
        .ok_or_else(|| err("missing or malformed prev_hash".into()))?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| err("missing kind".into()))?
        .to_owned();
    if obj.get("time").and_then(Value::as_str).is_none() {
        return Err(err("missing time".into()));
    }
    let mut unhashed = Vec::with_capacity(line.len());
    let data = match obj.get("data") {
        Some(Value::Object(d)) => d.clone(),
        _ => return Err(err("missing data object".into())),
    };
    canonical_bytes(&Value::Object(obj), &mut unhashed);
    if chain::chain_hash(&prev_hash, &unhashed) != hash {
        return Err(err(
            "hash does not match the record's contents: the record was altered".into(),
        ));
    }
    Ok(Rec {
        seq,
        kind,
        prev_hash,
        hash,
        data,
    })
}
