//! Crash recovery: a real `kill -9` of a process appending from several tasks, three times over; reopening
//! recovers the torn tail, `audit verify` passes, and every record the child was told was durable is there.

use crate::audit_support::*;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use mcp_gateway::audit::AuditLog;

/// The writer process of `kill_9_mid_write_leaves_a_log_that_recovers_and_verifies`: appends forever from
/// several tasks, printing each durable seq.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os("AUDIT_CRASH_CHILD_DIR") else {
        return;
    };
    rt().block_on(async {
        let mut c = cfg(Path::new(&dir));
        c.segment_max_bytes = 64 << 10;
        c.checkpoint_every = 50;
        let log = AuditLog::open(c).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for t in 0..8u64 {
            let (log, tx) = (log.clone(), tx.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let d = log.append(decision(t * 1_000_000 + i)).await.unwrap();
                    let _ = tx.send(d.seq);
                }
            });
        }
        let mut out = std::io::stdout().lock();
        while let Some(s) = rx.recv().await {
            writeln!(out, "{s}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn kill_9_mid_write_leaves_a_log_that_recovers_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let exe = std::env::current_exe().unwrap();
    let mut durable = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "audit_crash::crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("AUDIT_CRASH_CHILD_DIR", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut got = 0;
        for l in out.lines() {
            let l = l.unwrap();
            if let Ok(s) = l.trim().parse::<u64>() {
                durable.push(s);
                got += 1;
                if got >= 3000 + round * 1000 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(got > 0, "the child wrote nothing");
    }
    // Reopen (recovering whatever the kill left), then verify.
    write_log(cfg(&dir), 1);
    let r = verify(&dir);
    assert_ok(&r);
    // Every record the child was told was durable is there (a SIGKILL keeps the page cache; this checks
    // the writer never acknowledged before writing).
    let present: std::collections::HashSet<u64> = records(&dir)
        .iter()
        .filter(|r| r["kind"] == "decision")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    for s in &durable {
        assert!(present.contains(s), "acknowledged seq {s} is missing");
    }
}
