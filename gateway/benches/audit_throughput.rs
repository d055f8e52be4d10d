//! Durable audit records per second with group commit, at 1, 8 and 64 concurrent appenders: every counted
//! record has been covered by an `fdatasync` before its `append` returned. Records are realistic decision
//! records (~700 bytes on disk with full arguments). The log lives in a temporary directory (set `TMPDIR` to
//! measure another disk).
//!
//! Run: `cargo bench -p mcp-gateway --bench audit_throughput`. A plain summary (records/s, fdatasyncs, records
//! per batch) is printed first, then criterion's measurements.
//!
//! What limits it: with N appenders that each wait for their record, batches settle at about N/2 (one half
//! is being synced while the other half queues), so throughput ≈ (N/2) / fdatasync latency. There is no
//! deliberate delay to make batches larger.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcp_gateway::audit::{
    Arguments, AuditConfig, AuditLog, Decision, DecisionRecord, PolicyResult, Record,
};
use serde_json::json;

const LEVELS: [usize; 3] = [1, 8, 64];

fn decision(i: u64) -> Record {
    Record::Decision(DecisionRecord {
        direction: None,
        would: None,
        request_id: format!("0196f0c2-7a1e-7c3d-9b2a-{i:012x}"),
        route: Some("crm".into()),
        host: Some("crm.tunnel.example.com".into()),
        client: Some("10.1.2.3:51234".into()),
        principal: Some("alice@example.com".into()),
        principal_claims: None,
        session_id: Some("5f1c8b2e-3d4a-4e6f-8a9b-0c1d2e3f4a5b".into()),
        protocol_version: Some("2025-06-18".into()),
        method: "tools/call".into(),
        rpc_id: Some(json!(i)),
        tool: Some("search_customers".into()),
        arguments: Arguments::Full(
            json!({"query": "acme corp", "limit": 25, "fields": ["name", "email"]}),
        ),
        policies: vec![PolicyResult {
            name: "tool-allowlist".into(),
            sha256: "3f".repeat(32),
            settings_digest: "9c".repeat(32),
            mode: "enforce".into(),
            answer: "allow".into(),
            reason: None,
            elapsed_us: 38,
        }],
        decision: Decision::Allow,
        reason: None,
        approval_id: None,
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends `total` records from `appenders` tasks; returns the elapsed time.
async fn run(log: &AuditLog, appenders: usize, total: u64) -> Duration {
    let per = total.div_ceil(appenders as u64);
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    log.append(decision(t as u64 * per + i))
                        .await
                        .expect("durable");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

fn open(dir: &std::path::Path) -> AuditLog {
    AuditLog::open(AuditConfig::with_dir(dir.to_owned())).expect("open audit log")
}

fn summary() {
    let rt = runtime();
    println!("audit_throughput: durable records/s (group commit, fdatasync per batch)");
    // 256: how batches grow when more requests are in flight than in the criterion levels.
    for c in LEVELS.into_iter().chain([256]) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = open(tmp.path());
        let total = if c == 1 { 5_000 } else { 200_000 };
        let (elapsed, m0, m1) = rt.block_on(async {
            run(&log, c, 2_000).await; // warm up
            let m0 = log.metrics();
            let e = run(&log, c, total).await;
            let m1 = log.metrics();
            log.close().await;
            (e, m0, m1)
        });
        let batches = m1.batches - m0.batches;
        println!(
            "  {c:>3} appenders: {:>9.0} records/s ({total} records in {:.2?}; {batches} fdatasyncs, \
             {:.1} records per batch, {:.0} µs per batch)",
            total as f64 / elapsed.as_secs_f64(),
            elapsed,
            (m1.records - m0.records) as f64 / batches as f64,
            elapsed.as_secs_f64() * 1e6 / batches as f64,
        );
    }
}

fn bench(c: &mut Criterion) {
    summary();
    let rt = runtime();
    let mut g = c.benchmark_group("audit_durable_append");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    for &n in &LEVELS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = open(tmp.path());
        g.bench_function(format!("{n} appenders"), |b| {
            b.iter_custom(|iters| rt.block_on(run(&log, n, iters.max(n as u64))));
        });
        rt.block_on(log.close());
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
