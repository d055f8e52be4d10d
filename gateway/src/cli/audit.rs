//! `mcp-gateway audit …`: what an auditor runs on a log directory (read-only).
//!
//! - `verify DIR [--key PUBKEY_PEM] [--checkpoint COUNT:HEAD_HASH]…`: every segment, the hash chain, seq
//!   continuity (only `gap` records explain gaps), checkpoints and their signatures; the first problem is named
//!   as `file:line (seq N): what`. Exit code 0 when the log verifies, 1 otherwise.
//! - `query DIR [--since T] [--until T] [--route R] [--tool T] [--decision D] [--principal P]
//!   [--request-id ID] [--kind K] [--format table|jsonl]`.
//! - `tail DIR [-n N] [-f]`: the last records of the newest segment; `-f` follows new ones across rotation.
//! - `stats DIR [--json]`: counts by kind, decision, tool, route, refusal reason and policy answer.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::chain;
use crate::audit::query::{Entry, Filter, Follower, Reader, Stats};
use crate::audit::verify::{self, Options};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a log directory: chain, seqs, checkpoints (and their signatures with --key).
    Verify {
        dir: PathBuf,
        /// Ed25519 public key (SPKI PEM, `openssl pkey -in audit.key -pubout`): every checkpoint must be
        /// signed with its private key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// A checkpoint held outside the gateway (from its `audit_checkpoint` log lines): the log must
        /// contain record COUNT with hash HEAD_HASH. Repeatable.
        #[arg(long, value_name = "COUNT:HEAD_HASH")]
        checkpoint: Vec<String>,
    },
    /// Select records.
    Query {
        dir: PathBuf,
        /// Records at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Records at or before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        route: Option<String>,
        /// A tool name or glob: `delete_*` (`*` any run, `?` one character, as in the policies).
        #[arg(long)]
        tool: Option<String>,
        /// allow, deny, require_approval, hidden, invalid_arguments.
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
        /// decision, refusal, outcome, checkpoint, gap, recovery, segment_start.
        #[arg(long)]
        kind: Option<String>,
        /// Monitor mode: decisions that would have been this (deny, require_approval, hidden) had the
        /// route's monitor-mode policies enforced.
        #[arg(long)]
        would: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The newest records; with -f, follow new ones (also across segment rotation).
    Tail {
        dir: PathBuf,
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many records to show first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Counts by kind, decision, tool, route, refusal reason and policy answer.
    Stats {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    let result = match cmd {
        AuditCommand::Verify {
            dir,
            key,
            checkpoint,
        } => return run_verify(&dir, key.as_deref(), &checkpoint),
        AuditCommand::Query {
            dir,
            since,
            until,
            route,
            tool,
            decision,
            principal,
            request_id,
            kind,
            would,
            format,
        } => {
            let filter = Filter {
                would,
                since: since.as_deref().map(parse_time).transpose()?,
                until: until.as_deref().map(parse_time).transpose()?,
                route,
                tool,
                decision,
                principal,
                request_id,
                kind,
            };
            query(&dir, &filter, format)
        }
        AuditCommand::Tail {
            dir,
            follow,
            lines,
            format,
        } => tail(&dir, follow, lines, format),
        AuditCommand::Stats { dir, json } => stats(&dir, json),
    };
    match result {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn run_verify(dir: &Path, key: Option<&Path>, checkpoints: &[String]) -> anyhow::Result<()> {
    let mut opts = Options::default();
    if let Some(k) = key {
        opts.key = Some(chain::load_public_key(k)?);
    }
    for c in checkpoints {
        let (count, hash) = c
            .split_once(':')
            .with_context(|| format!("--checkpoint {c}: expected COUNT:HEAD_HASH"))?;
        let count: u64 = count
            .parse()
            .with_context(|| format!("--checkpoint {c}: COUNT is not a number"))?;
        if chain::parse_hash(hash).is_none() {
            bail!("--checkpoint {c}: HEAD_HASH is not 64 lower-case hex digits");
        }
        opts.expect.push((count, hash.to_owned()));
    }
    let report = verify::verify_dir(dir, &opts)?;
    for n in &report.notes {
        println!("note: {n}");
    }
    let range = match (report.first_seq, report.last_seq) {
        (Some(a), Some(b)) => format!("seq {a}..{b}"),
        _ => "no records".into(),
    };
    let sigs = if opts.key.is_some() {
        format!("{} signatures verified", report.signatures_verified)
    } else {
        "signatures not checked (no --key)".into()
    };
    match &report.problem {
        None => {
            println!(
                "OK: {} segments, {} records ({range}), {} checkpoints ({sigs}), {} gaps, {} recoveries",
                report.segments, report.records, report.checkpoints, report.gaps, report.recoveries
            );
            if let Some(h) = &report.head_hash {
                println!("head: {} {h}", report.last_seq.unwrap_or(0));
            }
            Ok(())
        }
        Some(p) => {
            println!("FAIL: {p}");
            println!(
                "verified before it: {} segments, {} records ({range})",
                report.segments, report.records
            );
            bail!("audit log verification failed")
        }
    }
}

fn parse_time(s: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .with_context(|| format!("{s}: not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)"))
}

fn query(dir: &Path, filter: &Filter, format: Format) -> anyhow::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    if format == Format::Table {
        header(&mut out)?;
    }
    for e in Reader::open(dir)? {
        match e {
            Ok(e) if filter.matches(&e.record) => print_entry(&mut out, &e, format)?,
            Ok(_) => {}
            Err(err) => eprintln!("warning: {err}"),
        }
    }
    out.flush()?;
    Ok(())
}

fn tail(dir: &Path, follow: bool, lines: usize, format: Format) -> anyhow::Result<()> {
    let mut f = Follower::at_newest(dir);
    let mut first = f.poll()?;
    // Not enough in the newest segment: take the rest from the segments before it, newest first.
    for seg in f.older_segments().into_iter().rev() {
        if first.len() >= lines {
            break;
        }
        let mut older: Vec<Entry> = Reader::segments(vec![seg]).filter_map(Result::ok).collect();
        older.append(&mut first);
        first = older;
    }
    let mut out = BufWriter::new(io::stdout().lock());
    if format == Format::Table {
        header(&mut out)?;
    }
    for e in &first[first.len().saturating_sub(lines)..] {
        print_entry(&mut out, e, format)?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for e in f.poll()? {
            print_entry(&mut out, &e, format)?;
        }
        out.flush()?;
    }
}

fn stats(dir: &Path, json: bool) -> anyhow::Result<()> {
    let mut s = Stats::default();
    for e in Reader::open(dir)? {
        match e {
            Ok(e) => s.add(&e.record),
            Err(err) => eprintln!("warning: {err}"),
        }
    }
    let mut out = BufWriter::new(io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &s)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "records: {} (seq {}..{}, {} .. {})",
            s.records,
            s.first_seq.unwrap_or(0),
            s.last_seq.unwrap_or(0),
            s.first_time.as_deref().unwrap_or("-"),
            s.last_time.as_deref().unwrap_or("-")
        )?;
        for (title, m) in [
            ("by kind", &s.by_kind),
            ("by decision", &s.by_decision),
            ("by tool", &s.by_tool),
            ("by route", &s.by_route),
            ("refusals by reason", &s.by_refusal),
        ] {
            if m.is_empty() {
                continue;
            }
            writeln!(out, "{title}:")?;
            for (k, v) in m {
                writeln!(out, "  {k:<32} {v:>10}")?;
            }
        }
        if !s.by_policy.is_empty() {
            writeln!(out, "by policy:")?;
            for (p, answers) in &s.by_policy {
                let a: Vec<String> = answers.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(out, "  {p:<32} {}", a.join(" "))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn header(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>8}  {:<27}  {:<13}  {:<12}  {:<28}  {:<17}  REQUEST_ID",
        "SEQ", "TIME", "KIND", "ROUTE", "WHAT", "DECISION"
    )
}

fn print_entry(out: &mut impl Write, e: &Entry, format: Format) -> io::Result<()> {
    let r = &e.record;
    if format == Format::Jsonl {
        serde_json::to_writer(&mut *out, r)?;
        return writeln!(out);
    }
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
    let d = |k: &str| r.get("data").and_then(|d| d.get(k));
    let kind = s(r.get("kind"));
    let (what, decision) = match kind.as_str() {
        "decision" => {
            let m = s(d("method"));
            let what = match d("tool").and_then(Value::as_str) {
                Some(t) => format!("{m} {t}"),
                None => m,
            };
            (what, s(d("decision")))
        }
        "refusal" => (s(d("detail")), s(d("reason"))),
        "outcome" => (
            format!(
                "status {} {}us",
                d("status").map_or("-".into(), Value::to_string),
                d("latency_us").map_or("-".into(), Value::to_string)
            ),
            match d("is_error").and_then(Value::as_bool) {
                Some(true) => "is_error".into(),
                _ => String::new(),
            },
        ),
        "checkpoint" => (
            format!(
                "head {} {}",
                d("count").map_or("-".into(), Value::to_string),
                s(d("head_hash")).get(..16).unwrap_or("")
            ),
            if d("signature").is_some() {
                "signed".into()
            } else {
                String::new()
            },
        ),
        "gap" => (
            format!(
                "lost {}..{} refused {}",
                d("from").map_or("-".into(), Value::to_string),
                d("to").map_or("-".into(), Value::to_string),
                d("refused").map_or("0".into(), Value::to_string)
            ),
            String::new(),
        ),
        "recovery" => (
            format!(
                "cut {}B from {}",
                d("torn_bytes").map_or("-".into(), Value::to_string),
                s(d("segment"))
            ),
            s(d("cause")),
        ),
        "segment_start" => (s(d("previous_segment")), s(d("reason"))),
        _ => (String::new(), String::new()),
    };
    writeln!(
        out,
        "{:>8}  {:<27}  {:<13}  {:<12}  {:<28}  {:<17}  {}",
        r.get("seq").map_or("-".into(), Value::to_string),
        s(r.get("time")),
        kind,
        s(d("route")),
        what,
        decision,
        s(d("request_id"))
    )
}
