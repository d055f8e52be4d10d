//! Owed syncs: records nobody waits for (outcome records) neither wake the writer nor get an `fdatasync` of
//! their own; they ride with the next waited-for batch, a rotation or a close, or are written and synced once
//! `OWED_SYNC_WITHIN` old.

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
        // Nor did each record wake the writer for a `write` of its own.
        assert!(
            m1.writes - m0.writes <= bound,
            "{} writes for 200 unwaited records in {elapsed:?} (bound {bound})",
            m1.writes - m0.writes
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

#[test]
fn unwaited_records_ride_with_the_next_waited_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let d = rt().block_on(async {
        let log = AuditLog::open(cfg(&dir)).unwrap();
        log.append(decision(0)).await.unwrap();
        let m0 = log.metrics();
        for i in 0..5 {
            log.append_later(outcome(i));
        }
        let d = log.append(decision(1)).await.unwrap();
        let m1 = log.metrics();
        assert_eq!(m1.records - m0.records, 6, "{m0:?} {m1:?}");
        assert_eq!(
            m1.writes - m0.writes,
            1,
            "one write for the lot: {m0:?} {m1:?}"
        );
        assert_eq!(
            m1.batches - m0.batches,
            1,
            "one sync for the lot: {m0:?} {m1:?}"
        );
        log.close().await;
        d
    });
    assert_ok(&verify(&dir));
    // Queued before it, so sealed before it: durable with it.
    let outcomes: Vec<u64> = records(&dir)
        .iter()
        .filter(|r| r["kind"] == "outcome")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 5);
    assert!(outcomes.iter().all(|&s| s < d.seq), "{outcomes:?} {d:?}");
}

#[test]
fn an_unwaited_record_alone_is_durable_within_the_owed_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    rt().block_on(async {
        let log = AuditLog::open(cfg(&dir)).unwrap();
        let m0 = log.metrics();
        let queued = Instant::now();
        log.append_later(outcome(1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.metrics().batches == m0.batches {
            assert!(Instant::now() < deadline, "never synced");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = queued.elapsed();
        // Written and synced once due, not at once and not much later (the bound is generous for a busy
        // machine; the writer wakes by its own timer).
        assert!(took >= Duration::from_millis(15), "synced early: {took:?}");
        assert!(took < Duration::from_millis(1000), "synced late: {took:?}");
        let m1 = log.metrics();
        assert_eq!(m1.writes - m0.writes, 1, "{m0:?} {m1:?}");
        log.close().await;
    });
    let outcomes = records(&dir)
        .iter()
        .filter(|r| r["kind"] == "outcome")
        .count();
    assert_eq!(outcomes, 1);
}
