//! The audit log as a value: durability under concurrency, tamper evidence (every kind of edit is found and
//! located), disk full (a real small tmpfs), retention, and the auditors' CLI. Crash recovery (a real
//! `kill -9` of a writer process) is in `audit_crash.rs`.

use crate::audit_support;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::SigningKey;
use mcp_gateway::audit::verify::{Options, verify_dir};
use mcp_gateway::audit::{
    AuditError, AuditLog, Health, OutcomeRecord, Record, RefusalKind, RefusalRecord,
};
use serde_json::{Value, json};

use audit_support::*;

#[test]
fn round_trip_verifies_and_reopening_continues_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let seqs = write_log(cfg(&dir), 100);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_ok(&verify(&dir));

    let mode = fs::metadata(&dir).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );

    write_log(cfg(&dir), 10);
    let r = verify(&dir);
    assert_ok(&r);
    assert_eq!(r.segments, 2);

    let recs = records(&dir);
    // Contiguous seqs from 1, genesis prev_hash, each prev_hash the hash before.
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], json!(i as u64 + 1));
    }
    assert_eq!(recs[0]["prev_hash"], json!("0".repeat(64)));
    assert_eq!(recs[0]["kind"], "segment_start");
    let decisions: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 110);
    let d = &decisions[0]["data"];
    assert_eq!(d["request_id"], "req-0");
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["arguments"]["ratio"], json!(0.1));
    assert_eq!(d["policies"][0]["name"], "tool-allowlist");
    assert!(
        decisions[1]["data"]["arguments_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(recs.iter().filter(|r| r["kind"] == "outcome").count(), 22);
    // The second run's segment names the first as its predecessor; close wrote a final checkpoint.
    let second = recs
        .iter()
        .filter(|r| r["kind"] == "segment_start")
        .nth(1)
        .unwrap();
    assert_eq!(
        second["data"]["previous_segment"],
        json!(name(&segs(&dir)[0]))
    );
    assert_eq!(recs.last().unwrap()["kind"], "checkpoint");
    let t = recs[5]["time"].as_str().unwrap();
    assert_eq!(t.len(), 27, "{t}");
    assert!(t.ends_with('Z'));
}

#[test]
fn records_match_the_documented_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let seg = segs(&dir).pop().unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(b"{\"torn")
        .unwrap();
    let mut c = cfg(&dir);
    c.retention = Some(Duration::from_secs(3600));
    write_log(c, 3);
    rt().block_on(async {
        let log = AuditLog::open(cfg(&dir)).unwrap();
        log.append(Record::Refusal(RefusalRecord {
            request_id: Some("r".into()),
            route: None,
            host: Some("unknown.example".into()),
            client: Some("10.0.0.1:1".into()),
            principal: None,
            reason: RefusalKind::NoRoute,
            detail: Some("no route for host".into()),
        }))
        .await
        .unwrap();
        use mcp_gateway::audit::{ApprovalEvent, ApprovalRecord, Arguments};
        for (i, event) in [
            ApprovalEvent::Requested,
            ApprovalEvent::Notified,
            ApprovalEvent::Approved,
            ApprovalEvent::Denied,
            ApprovalEvent::Expired,
            ApprovalEvent::GrantUsed,
        ]
        .into_iter()
        .enumerate()
        {
            log.append(Record::Approval(ApprovalRecord {
                event,
                approval_id: "apr_abcdefghijkl".into(),
                request_id: Some("r".into()),
                route: "crm".into(),
                tool: "delete_customer".into(),
                args_digest: format!("sha256:{}", "ab".repeat(32)),
                arguments: if i % 2 == 0 {
                    Arguments::Full(serde_json::json!({"id": "c-1"}))
                } else {
                    Arguments::Omitted
                },
                principal: (i == 0).then(|| "carol".into()),
                policy: Some("guard".into()),
                reason: Some("deletes data".into()),
                expires_at: Some("2026-01-01T00:00:00.000000Z".into()),
                approver: (i == 2).then(|| "alice".into()),
                comment: (i == 2).then(|| "ok".into()),
                delivered: (i == 1).then_some(false),
                attempts: (i == 1).then_some(5),
                error: (i == 1).then(|| "connection refused".into()),
                via: (i == 3).then(|| "elicitation".into()),
            }))
            .await
            .unwrap();
        }
        log.close().await;
    });
    let kinds: std::collections::BTreeSet<String> = records(&dir)
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    for k in [
        "decision",
        "refusal",
        "outcome",
        "segment_start",
        "recovery",
        "checkpoint",
        "approval_requested",
        "approval_notified",
        "approval_approved",
        "approval_denied",
        "approval_expired",
        "approval_grant_used",
    ] {
        assert!(kinds.contains(k), "no {k} record");
    }
    assert_schema_valid(&dir);
}

#[test]
fn rotation_and_signed_checkpoints_verify_with_the_key_and_not_with_another() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (_key, pub_file) = multi_segment_log(&dir);
    let key = mcp_gateway::audit::chain::load_public_key(&pub_file).unwrap();
    let r = verify_dir(
        &dir,
        &Options {
            key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert_ok(&r);
    assert!(r.checkpoints >= 20, "{r:?}");
    assert_eq!(r.signatures_verified, r.checkpoints);

    let other = SigningKey::from_bytes(&[1; 32]).verifying_key();
    let r = verify_dir(
        &dir,
        &Options {
            key: Some(other),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        r.problem
            .unwrap()
            .what
            .contains("signature does not verify")
    );
}

#[test]
fn unsigned_checkpoints_fail_when_a_key_is_required() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = cfg(&dir);
    c.checkpoint_every = 5;
    write_log(c, 20);
    let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
    let r = verify_dir(
        &dir,
        &Options {
            key: Some(key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.problem.unwrap().what.contains("not signed"));
}

#[test]
fn torn_last_line_is_cut_recorded_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    write_log(cfg(&dir), 20);
    let seg = segs(&dir).pop().unwrap();
    let good_len = fs::metadata(&seg).unwrap().len();
    let torn = br#"{"data":{"decision":"allow","request_id":"req-x"#;
    fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(torn)
        .unwrap();
    let r = verify(&dir);
    assert!(r.problem.unwrap().what.contains("torn"));

    write_log(cfg(&dir), 5);
    let r = verify(&dir);
    assert_ok(&r);
    assert_eq!(r.recoveries, 1);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
    let kept = seg.with_extension("jsonl.torn");
    assert_eq!(fs::read(&kept).unwrap(), torn);
    let rec = records(&dir)
        .into_iter()
        .find(|r| r["kind"] == "recovery")
        .unwrap();
    assert_eq!(rec["data"]["cause"], "unterminated");
    assert_eq!(rec["data"]["offset"], json!(good_len));
    assert_eq!(rec["data"]["torn_bytes"], json!(torn.len()));
    assert_eq!(rec["data"]["moved_to"], json!(name(&kept)));
}

#[test]
fn unparsable_last_line_and_empty_segment_are_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    write_log(cfg(&dir), 5);
    let seg = segs(&dir).pop().unwrap();
    let last_seq = records(&dir).last().unwrap()["seq"].as_u64().unwrap();
    // What ext4 may leave after a crash: the size grew, the data never came (zeros), then a newline.
    fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0u8; 300].iter().chain(b"\n").copied().collect::<Vec<_>>())
        .unwrap();
    // And an empty segment created just before the crash.
    fs::write(dir.join(format!("audit-{:020}.jsonl", last_seq + 1)), b"").unwrap();
    write_log(cfg(&dir), 5);
    let r = verify(&dir);
    assert_ok(&r);
    assert_eq!(r.recoveries, 2);
    let causes: Vec<Value> = records(&dir)
        .into_iter()
        .filter(|r| r["kind"] == "recovery")
        .map(|r| r["data"]["cause"].clone())
        .collect();
    assert_eq!(causes, [json!("no_records"), json!("unparsable")]);
}

#[test]
fn two_bad_lines_are_not_a_crash_and_open_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    write_log(cfg(&dir), 5);
    let seg = segs(&dir).pop().unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(b"garbage\nmore garbage")
        .unwrap();
    match AuditLog::open(cfg(&dir)) {
        Err(AuditError::Corrupt { line, .. }) => assert_eq!(line, lines(&seg).len() - 1),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn concurrent_appenders_are_all_durable_with_contiguous_seqs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = cfg(&dir);
    c.segment_max_bytes = 1 << 20; // rotate a few times on the way
    c.queue_capacity = 1024;
    let seqs = rt().block_on(async {
        let log = AuditLog::open(c).unwrap();
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut s = Vec::with_capacity(5000);
                    for i in 0..5000 {
                        s.push(log.append(decision(t * 10_000 + i)).await.unwrap().seq);
                    }
                    s
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        log.close().await;
        all
    });
    assert_eq!(seqs.len(), 40_000);
    let recs = records(&dir);
    let by_seq: std::collections::HashMap<u64, &Value> = recs
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r))
        .collect();
    for s in &seqs {
        assert_eq!(by_seq[s]["kind"], "decision", "seq {s}");
    }
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 40_000, "duplicate seqs");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"].as_u64().unwrap(), i as u64 + 1);
    }
    let r = verify(&dir);
    assert_ok(&r);
    assert!(r.segments > 3);
}

#[test]
fn backpressure_waits_instead_of_dropping() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = cfg(&dir);
    c.queue_capacity = 2;
    rt().block_on(async {
        let log = AuditLog::open(c).unwrap();
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(decision(i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Beyond capacity, append_later still queues.
        for i in 0..50 {
            log.append_later(Record::Refusal(RefusalRecord {
                request_id: None,
                route: None,
                host: Some(format!("h{i}")),
                client: None,
                principal: None,
                reason: RefusalKind::NoRoute,
                detail: None,
            }));
        }
        log.close().await;
        assert_eq!(log.health(), Health::Closed);
        assert!(matches!(
            log.append(decision(0)).await,
            Err(AuditError::Closed)
        ));
    });
    let recs = records(&dir);
    assert_eq!(recs.iter().filter(|r| r["kind"] == "decision").count(), 200);
    assert_eq!(recs.iter().filter(|r| r["kind"] == "refusal").count(), 50);
    assert_ok(&verify(&dir));
}

#[test]
fn checkpoints_by_time_are_written_while_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = cfg(&dir);
    c.checkpoint_interval = Duration::from_millis(100);
    rt().block_on(async {
        let log = AuditLog::open(c).unwrap();
        log.append(decision(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let recs = records(&dir);
        let last = recs.last().unwrap();
        assert_eq!(last["kind"], "checkpoint", "{recs:?}");
        assert_eq!(last["data"]["count"], json!(recs.len() - 1));
        log.close().await;
    });
    assert_ok(&verify(&dir));
}

#[test]
fn retention_deletes_old_segments_and_history_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = cfg(&dir);
    c.segment_max_bytes = 4096;
    write_log(c.clone(), 100);
    let before = segs(&dir);
    assert!(before.len() >= 4);
    // Make all but the last two look a day old.
    let old = SystemTime::now() - Duration::from_secs(86_400);
    for p in &before[..before.len() - 2] {
        fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    c.retention = Some(Duration::from_secs(3600));
    write_log(c, 5);
    let after = segs(&dir);
    assert_eq!(name(&after[0]), name(&before[before.len() - 2]));
    let r = verify(&dir);
    assert_ok(&r);
    assert!(
        r.notes.iter().any(|n| n.contains("deleted by retention")),
        "{:?}",
        r.notes
    );
}

/// Unmounts on drop, even if the test fails.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn try_mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_owned()))
}

#[test]
fn disk_full_fails_closed_then_recovers_with_a_gap_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnt");
    let Some(mount) = try_mount_tmpfs(&dir, "256k") else {
        crate::common::cannot_run(
            "disk_full_fails_closed_then_recovers_with_a_gap_record",
            "cannot mount a tmpfs (needs root / CAP_SYS_ADMIN)",
        );
        return;
    };
    let log_dir = dir.join("audit");
    let mut c = cfg(&log_dir);
    c.checkpoint_every = 100;
    rt().block_on(async {
        let log = AuditLog::open(c).unwrap();
        // Fill the disk: concurrent appends until they fail.
        let mut ok = 0u64;
        let mut failed = 0u64;
        let deadline = Instant::now() + Duration::from_secs(20);
        while failed == 0 {
            assert!(Instant::now() < deadline, "the disk never filled");
            let batch: Vec<_> = (0..32)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(async move { log.append(decision(i)).await })
                })
                .collect();
            for t in batch {
                match t.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        assert!(
                            matches!(
                                e,
                                AuditError::WriteFailed { .. } | AuditError::Failing { .. }
                            ),
                            "{e:?}"
                        );
                        failed += 1
                    }
                }
            }
        }
        assert!(ok > 100, "only {ok} records fitted");
        match log.health() {
            Health::Failing { error, .. } => {
                assert!(error.contains("No space left"), "unexpected error: {error}")
            }
            h => panic!("health should be failing, is {h:?}"),
        }
        // Fail fast while still full.
        let t = Instant::now();
        assert!(log.append(decision(1)).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
        log.append_later(Record::Outcome(OutcomeRecord {
            request_id: "lost".into(),
            status: Some(200),
            latency_us: 1,
            is_error: None,
            bytes: None,
            duration_us: None,
            error: None,
        }));

        // Free space: grow the file system.
        let st = Command::new("mount")
            .args(["-o", "remount,size=4m"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match log.append(decision(7)).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "never recovered: {e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        assert_eq!(log.health(), Health::Ok);
        for i in 0..50 {
            log.append(decision(i)).await.unwrap();
        }
        log.close().await;
    });
    let recs = records(&log_dir);
    let gap = recs
        .iter()
        .find(|r| r["kind"] == "gap")
        .expect("a gap record");
    assert!(gap["data"]["error"].as_str().unwrap().contains("No space"));
    assert!(gap["data"]["refused"].as_u64().unwrap() >= 2, "{gap}");
    let r = verify(&log_dir);
    assert_ok(&r);
    assert_eq!(r.gaps, 1);
    assert_schema_valid(&log_dir);
    drop(mount);
}

#[test]
fn cli_verify_query_stats_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (_key, pub_file) = multi_segment_log(&dir);
    let bin = env!("CARGO_BIN_EXE_mcp-gateway");
    let run = |args: &[&str]| {
        let o = Command::new(bin).args(args).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let d = dir.to_str().unwrap();
    let (ok, out) = run(&["audit", "verify", d, "--key", pub_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.starts_with("OK:"), "{out}");
    let head_line = out.lines().find(|l| l.starts_with("head: ")).unwrap();
    let mut parts = head_line["head: ".len()..].split(' ');
    let anchor = format!("{}:{}", parts.next().unwrap(), parts.next().unwrap());
    let (ok, _) = run(&["audit", "verify", d, "--checkpoint", &anchor]);
    assert!(ok);

    let (ok, out) = run(&[
        "audit",
        "query",
        d,
        "--decision",
        "deny",
        "--route",
        "crm",
        "--format",
        "jsonl",
    ]);
    assert!(ok);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 20); // i % 10 == 0 for i in 0..200
    assert!(rows.iter().all(|r| r["data"]["tool"] == "delete_customer"));
    // README's form: `--tool` takes the globs the policies use.
    let (ok, out) = run(&[
        "audit",
        "query",
        d,
        "--decision",
        "deny",
        "--tool",
        "delete_*",
        "--format",
        "jsonl",
    ]);
    assert!(ok);
    assert_eq!(out.lines().count(), 40, "{out}");
    let (ok, out) = run(&[
        "audit",
        "query",
        d,
        "--tool",
        "d?lete_c*",
        "--format",
        "jsonl",
    ]);
    assert!(ok && out.lines().count() == 40, "{out}");
    let (ok, out) = run(&["audit", "query", d, "--tool", "delete", "--format", "jsonl"]);
    assert!(
        ok && out.is_empty(),
        "an exact name without a glob still matches exactly: {out}"
    );
    let (ok, out) = run(&["audit", "query", d, "--request-id", "req-7"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "{out}"); // header + one row
    assert!(out.contains("tools/call search"));
    let (ok, out) = run(&[
        "audit",
        "query",
        d,
        "--since",
        "2999-01-01T00:00:00Z",
        "--format",
        "jsonl",
    ]);
    assert!(ok && out.is_empty());
    let (ok, out) = run(&["audit", "stats", d, "--json"]);
    assert!(ok);
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["by_kind"]["decision"], json!(200));
    assert_eq!(s["by_decision"]["deny"], json!(40));
    assert_eq!(s["by_policy"]["tool-allowlist"]["allow"], json!(160));
    let (ok, out) = run(&["audit", "tail", d, "-n", "3", "--format", "jsonl"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 3);

    let seg = &segs(&dir)[1];
    let mut l = lines(seg);
    l.remove(2);
    write_lines(seg, &l);
    let (ok, out) = run(&["audit", "verify", d]);
    assert!(!ok, "verify must exit non-zero on a broken log");
    assert!(out.contains(&format!("{}:3 (seq ", seg.display())), "{out}");
}

#[test]
fn follower_sees_new_records_across_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = cfg(&dir);
    c.segment_max_bytes = 2048;
    rt().block_on(async {
        let log = AuditLog::open(c).unwrap();
        let mut f = mcp_gateway::audit::query::Follower::at_newest(&dir);
        let mut seen = f.poll().unwrap().len();
        for i in 0..60 {
            log.append(decision(i)).await.unwrap();
            if i.is_multiple_of(7) {
                seen += f.poll().unwrap().len();
            }
        }
        log.close().await;
        seen += f.poll().unwrap().len();
        assert!(segs(&dir).len() > 3);
        assert_eq!(seen, records(&dir).len());
    });
}

#[test]
fn health_reports_ok_and_a_shared_handle_is_cheap() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(cfg(&tmp.path().join("a"))).unwrap();
    let other = log.clone();
    assert_eq!(other.health(), Health::Ok);
    let _ = Arc::new(other);
    rt().block_on(log.close());
    assert_eq!(log.health(), Health::Closed);
}

/// The documented key commands (`openssl genpkey -algorithm ed25519`, `openssl pkey -pubout`) produce keys
/// the gateway signs with and the CLI verifies with.
#[test]
fn openssl_generated_keys_sign_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("audit.key");
    let pubk = tmp.path().join("audit.pub");
    let gen_ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !gen_ok {
        crate::common::cannot_run(
            "openssl_generated_keys_sign_and_verify",
            "no openssl with Ed25519",
        );
        return;
    }
    let st = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pubk)
        .status()
        .unwrap();
    assert!(st.success());
    let dir = tmp.path().join("audit");
    let mut c = cfg(&dir);
    c.signing_key_file = Some(key);
    c.checkpoint_every = 7;
    write_log(c, 30);
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .args(["audit", "verify"])
        .arg(&dir)
        .arg("--key")
        .arg(&pubk)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("signatures verified"), "{stdout}");
    assert!(!stdout.contains(" 0 signatures verified"), "{stdout}");
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let first = AuditLog::open(cfg(&dir)).unwrap();
    assert!(matches!(
        AuditLog::open(cfg(&dir)),
        Err(AuditError::Locked { .. })
    ));
    rt().block_on(first.close());
    // Released on close.
    let again = AuditLog::open(cfg(&dir)).unwrap();
    rt().block_on(again.close());
    assert_ok(&verify(&dir));
}
