//! Reading the log for auditors: segments in order, filters, following a live log, statistics.
//!
//! Reading never changes anything. A torn last line (a write in progress, or a crash not yet recovered) is
//! skipped here; `verify` reports it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::AuditError;
use super::record::format_time;

/// `audit-<first seq, 20 digits>.jsonl`.
pub fn segment_name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.jsonl")
}

/// The first seq a segment file name stands for.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files of `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(seq) = e.file_name().to_str().and_then(parse_segment_name) {
            out.push((seq, e.path()));
        }
    }
    out.sort_unstable_by_key(|(s, _)| *s);
    Ok(out)
}

/// One record and where it is.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    pub record: Value,
}

/// Every record of a directory, in order.
pub struct Reader {
    segs: VecDeque<PathBuf>,
    cur: Option<(PathBuf, BufReader<File>, usize)>,
    buf: Vec<u8>,
}

impl Reader {
    /// Reads these segment files, in this order.
    pub fn segments(paths: Vec<PathBuf>) -> Reader {
        Reader {
            segs: paths.into(),
            cur: None,
            buf: Vec::new(),
        }
    }

    pub fn open(dir: &Path) -> Result<Reader, AuditError> {
        let segs = list_segments(dir).map_err(|source| AuditError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Reader {
            segs: segs.into_iter().map(|(_, p)| p).collect(),
            cur: None,
            buf: Vec::new(),
        })
    }
}

impl Iterator for Reader {
    type Item = Result<Entry, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.cur.is_none() {
                let path = self.segs.pop_front()?;
                match File::open(&path) {
                    Ok(f) => self.cur = Some((path, BufReader::with_capacity(1 << 16, f), 0)),
                    Err(source) => return Some(Err(AuditError::Io { path, source })),
                }
            }
            let (path, rd, line) = self.cur.as_mut()?;
            self.buf.clear();
            match rd.read_until(b'\n', &mut self.buf) {
                Err(source) => {
                    let path = path.clone();
                    self.cur = None;
                    return Some(Err(AuditError::Io { path, source }));
                }
                Ok(0) => self.cur = None,
                Ok(_) if self.buf.last() != Some(&b'\n') => self.cur = None, // torn / in progress
                Ok(_) => {
                    *line += 1;
                    let body = &self.buf[..self.buf.len() - 1];
                    return Some(match serde_json::from_slice::<Value>(body) {
                        Ok(record) => Ok(Entry {
                            file: path.clone(),
                            line: *line,
                            record,
                        }),
                        Err(e) => Err(AuditError::Corrupt {
                            path: path.clone(),
                            line: *line,
                            detail: format!("not JSON: {e}"),
                        }),
                    });
                }
            }
        }
    }
}

/// Follows a live log: new complete lines of the current segment, then the next segments (rotation).
pub struct Follower {
    dir: PathBuf,
    cur: Option<(u64, PathBuf, u64, usize)>,
    start: Option<u64>,
}

impl Follower {
    /// Starts at the beginning of the newest segment.
    pub fn at_newest(dir: &Path) -> Follower {
        let cur = list_segments(dir)
            .ok()
            .and_then(|mut s| s.pop())
            .map(|(seq, p)| (seq, p, 0, 0));
        Follower {
            dir: dir.to_owned(),
            start: cur.as_ref().map(|c| c.0),
            cur,
        }
    }

    /// Segments older than the one this follower started at, oldest first (for showing more history).
    pub fn older_segments(&self) -> Vec<PathBuf> {
        let start = self.start;
        list_segments(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|(s, _)| start.is_some_and(|st| *s < st))
            .map(|(_, p)| p)
            .collect()
    }

    /// Records written since the last poll (does not block).
    pub fn poll(&mut self) -> Result<Vec<Entry>, AuditError> {
        let mut out = Vec::new();
        loop {
            let Some((seq, path, offset, line)) = &mut self.cur else {
                self.cur = list_segments(&self.dir)
                    .map_err(|source| AuditError::Dir {
                        path: self.dir.clone(),
                        source,
                    })?
                    .into_iter()
                    .next()
                    .map(|(s, p)| (s, p, 0, 0));
                if self.cur.is_none() {
                    return Ok(out);
                }
                continue;
            };
            read_new_lines(path, offset, line, &mut out)?;
            let next = list_segments(&self.dir)
                .map_err(|source| AuditError::Dir {
                    path: self.dir.clone(),
                    source,
                })?
                .into_iter()
                .find(|(s, _)| *s > *seq);
            let Some((nseq, npath)) = next else {
                return Ok(out);
            };
            // The writer finished the old segment before it created the new one: read what is left.
            read_new_lines(path, offset, line, &mut out)?;
            self.cur = Some((nseq, npath, 0, 0));
        }
    }
}

fn read_new_lines(
    path: &Path,
    offset: &mut u64,
    line: &mut usize,
    out: &mut Vec<Entry>,
) -> Result<(), AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()), // removed by retention
        Err(e) => return Err(io_err(e)),
    };
    f.seek(SeekFrom::Start(*offset)).map_err(io_err)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_err)?;
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Ok(());
    };
    for l in bytes[..end].split(|&b| b == b'\n') {
        *line += 1;
        if let Ok(record) = serde_json::from_slice(l) {
            out.push(Entry {
                file: path.to_owned(),
                line: *line,
                record,
            });
        }
    }
    *offset += end as u64 + 1;
    Ok(())
}

/// What `audit query` selects. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub route: Option<String>,
    /// A tool name or glob (`*` any run, `?` one character), as the policies use.
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub principal: Option<String>,
    pub request_id: Option<String>,
    pub kind: Option<String>,
    /// Monitor mode: decisions whose would-be decision (had monitor policies enforced) is this.
    pub would: Option<String>,
}

impl Filter {
    pub fn matches(&self, rec: &Value) -> bool {
        let data = rec.get("data");
        let field = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str);
        let eq = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| got == Some(w))
        };
        let time = rec.get("time").and_then(Value::as_str).unwrap_or("");
        // Record times are fixed-width UTC, so they compare as strings.
        if let Some(s) = self.since
            && time < format_time(s).as_str()
        {
            return false;
        }
        if let Some(u) = self.until
            && time > format_time(u).as_str()
        {
            return false;
        }
        eq(&self.kind, rec.get("kind").and_then(Value::as_str))
            && eq(&self.route, field("route"))
            && self.tool.as_deref().is_none_or(|w| {
                field("tool").is_some_and(|t| crate::config::glob::glob_match(w, t))
            })
            && eq(&self.decision, field("decision"))
            && eq(&self.principal, field("principal"))
            && eq(&self.request_id, field("request_id"))
            && (self.would.is_none() || eq(&self.would, field("would")))
    }
}

/// Counts for `audit stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub by_kind: BTreeMap<String, u64>,
    pub by_decision: BTreeMap<String, u64>,
    pub by_tool: BTreeMap<String, u64>,
    pub by_route: BTreeMap<String, u64>,
    pub by_refusal: BTreeMap<String, u64>,
    /// Policy name → answer → count.
    pub by_policy: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Stats {
    pub fn add(&mut self, rec: &Value) {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let bump = |m: &mut BTreeMap<String, u64>, k: Option<String>| {
            if let Some(k) = k {
                *m.entry(k).or_default() += 1;
            }
        };
        self.records += 1;
        if let Some(seq) = rec.get("seq").and_then(Value::as_u64) {
            self.first_seq.get_or_insert(seq);
            self.last_seq = Some(seq);
        }
        if let Some(t) = s(rec.get("time")) {
            if self.first_time.is_none() {
                self.first_time = Some(t.clone());
            }
            self.last_time = Some(t);
        }
        let kind = s(rec.get("kind"));
        let data = rec.get("data");
        let d = |k: &str| s(data.and_then(|d| d.get(k)));
        match kind.as_deref() {
            Some("decision") => {
                bump(&mut self.by_decision, d("decision"));
                bump(&mut self.by_tool, d("tool"));
                bump(&mut self.by_route, d("route"));
                for p in data
                    .and_then(|d| d.get("policies"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(name), Some(answer)) = (s(p.get("name")), s(p.get("answer"))) {
                        *self
                            .by_policy
                            .entry(name)
                            .or_default()
                            .entry(answer)
                            .or_default() += 1;
                    }
                }
            }
            Some("refusal") => {
                bump(&mut self.by_refusal, d("reason"));
                bump(&mut self.by_route, d("route"));
            }
            _ => {}
        }
        bump(&mut self.by_kind, kind);
    }
}
