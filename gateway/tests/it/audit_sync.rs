//! Owed syncs: a batch nobody waits for (outcome records) is written without an `fdatasync` of its own;
//! it is covered by the next waited-for batch, a rotation, a close, or at the latest `OWED_SYNC_WITHIN`.

use crate::audit_support::*;

use std::time::{Duration, Instant};

use mcp_gateway::audit::{AuditLog, OutcomeRecord, Record};

fn outcome(i: u64) -> Record {
    Record::Outcome(OutcomeRecord {
        bytes: Some(120),
        duration_us: Some(900),
        error: None,
        is_error: Some(false),
        latency_us: 800,
        request_id: format!("req-{i}"),
        status: Some(200),
    })
}

#[test]
fn records_nobody_waits_for_share_later_syncs_and_the_chain_stays_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    rt().block_on(async {
        let mut c = cfg(&dir);
        c.segment_max_bytes = 16 << 10; // rotations happen while syncs are owed
        let log = AuditLog::open(c).unwrap();
        let m0 = log.metrics();
        let started = Instant::now();
        for i in 0..200 {
            log.append_later(outcome(i));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();
        // Wait until every record is written and the owed sync is paid: the count of syncs stops moving
        // (so nothing stays owed).
        let mut m1 = log.metrics();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let m = log.metrics();
            if m == m1 && m.records - m0.records >= 200 {
                break;
            }
            assert!(Instant::now() < deadline, "the log never settled: {m:?}");
            m1 = m;
        }
        assert!(m1.records - m0.records >= 200, "{m0:?} {m1:?}");
        // One sync per OWED_SYNC_WITHIN (20 ms) at most, plus one per rotation (~10 with 16 KiB segments);
        // a sync per batch would be ~200.
        let bound = elapsed.as_millis() as u64 / 20 + 2 + 3 * 12;
        assert!(
            m1.batches - m0.batches <= bound,
            "{} syncs for 200 unwaited batches in {elapsed:?} (bound {bound})",
            m1.batches - m0.batches
        );
        // A waited-for record is durable, and so is everything before it.
        let d = log.append(decision(7)).await.unwrap();
        assert!(d.seq > 200, "{d:?}");
        log.close().await;
    });
    let r = verify(&dir);
    assert_ok(&r);
    assert!(segs(&dir).len() > 3, "rotated: {:?}", segs(&dir));
    let outcomes = records(&dir)
        .iter()
        .filter(|r| r["kind"] == "outcome")
        .count();
    assert_eq!(outcomes, 200);
}
