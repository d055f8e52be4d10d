//! CPU cost of turning a gateway record into its canonical bytes (what every request pays on its own task
//! before enqueueing: one decision record before forwarding, one outcome record after), and of sealing it
//! into the hash chain (what the writer thread pays per record).
//!
//! Run: `cargo bench -p mcp-gateway --bench audit_record`.

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_gateway::audit::chain;
use mcp_gateway::audit::record::{Prepared, canonical_bytes};
use mcp_gateway::audit::{
    Arguments, Decision, DecisionRecord, OutcomeRecord, PolicyResult, Record,
};
use serde_json::json;

fn decision(arguments: Arguments) -> Record {
    Record::Decision(DecisionRecord {
        direction: None,
        would: None,
        request_id: "0196f0c2-7a1e-7c3d-9b2a-00000000002a".into(),
        route: Some("crm".into()),
        host: Some("crm.tunnel.example.com".into()),
        client: Some("10.1.2.3:51234".into()),
        principal: Some("alice@example.com".into()),
        principal_claims: None,
        session_id: Some("5f1c8b2e-3d4a-4e6f-8a9b-0c1d2e3f4a5b".into()),
        protocol_version: Some("2025-06-18".into()),
        method: "tools/call".into(),
        rpc_id: Some(json!(42)),
        tool: Some("search_customers".into()),
        arguments,
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

fn bench(c: &mut Criterion) {
    let args = json!({"query": "acme corp", "limit": 25, "fields": ["name", "email"]});
    let full = decision(Arguments::Full(args.clone()));
    let digest = decision(Arguments::digest_of(&args));
    let outcome = Record::Outcome(OutcomeRecord {
        bytes: Some(812),
        duration_us: Some(1310),
        error: None,
        is_error: Some(false),
        latency_us: 1234,
        request_id: "0196f0c2-7a1e-7c3d-9b2a-00000000002a".into(),
        status: Some(200),
    });
    let mut g = c.benchmark_group("audit_record");
    g.bench_function("prepare decision (full arguments)", |b| {
        b.iter(|| Prepared::new(std::hint::black_box(&full)))
    });
    g.bench_function("prepare decision (digest)", |b| {
        b.iter(|| Prepared::new(std::hint::black_box(&digest)))
    });
    // What `prepare` did before records were serialised directly: build a `Value`, then sort it.
    g.bench_function("decision via Value + sort (reference)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(512);
            canonical_bytes(&std::hint::black_box(&digest).to_data(), &mut out);
            out
        })
    });
    g.bench_function("prepare outcome", |b| {
        b.iter(|| Prepared::new(std::hint::black_box(&outcome)))
    });
    g.bench_function("digest of arguments", |b| {
        b.iter(|| Arguments::digest_of(std::hint::black_box(&args)))
    });
    let prepared = Prepared::new(&digest);
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    g.bench_function("seal (hash chain + line)", |b| {
        b.iter(|| {
            out.clear();
            chain::seal(
                &[7u8; 32],
                1234,
                std::hint::black_box(&prepared),
                &mut scratch,
                &mut out,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
