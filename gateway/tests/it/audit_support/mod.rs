//! Helpers shared by the audit log's test files: writing a log, reading its segments and lines, verifying.
#![allow(dead_code)] // each test module uses a different part of it

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use mcp_gateway::audit::query::{Reader, list_segments};
use mcp_gateway::audit::verify::{Options, Report, verify_dir};
use mcp_gateway::audit::{
    Arguments, AuditConfig, AuditLog, Decision, DecisionRecord, OutcomeRecord, PolicyResult, Record,
};
use serde_json::{Value, json};

pub fn decision(i: u64) -> Record {
    Record::Decision(DecisionRecord {
        direction: None,
        would: None,
        request_id: format!("req-{i}"),
        route: Some(if i.is_multiple_of(2) { "crm" } else { "wiki" }.into()),
        host: Some("crm.t.example".into()),
        client: Some("10.0.0.7:51234".into()),
        principal: Some(format!("user-{}", i % 3)),
        principal_claims: None,
        session_id: None,
        protocol_version: Some("2025-06-18".into()),
        method: "tools/call".into(),
        rpc_id: Some(json!(i)),
        tool: Some(
            if i.is_multiple_of(5) {
                "delete_customer"
            } else {
                "search"
            }
            .into(),
        ),
        arguments: if i.is_multiple_of(2) {
            Arguments::Full(json!({"query": format!("q{i}"), "limit": 10, "ratio": 0.1}))
        } else {
            Arguments::digest_of(&json!({"secret": i}))
        },
        policies: vec![PolicyResult {
            name: "tool-allowlist".into(),
            sha256: "ab".repeat(32),
            settings_digest: "cd".repeat(32),
            mode: "enforce".into(),
            answer: if i.is_multiple_of(5) { "deny" } else { "allow" }.into(),
            reason: i.is_multiple_of(5).then(|| "destructive".into()),
            elapsed_us: 42,
        }],
        decision: if i.is_multiple_of(5) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reason: i.is_multiple_of(5).then(|| "destructive tool".into()),
        approval_id: None,
    })
}

pub fn cfg(dir: &Path) -> AuditConfig {
    AuditConfig::with_dir(dir.to_owned())
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens, appends `n` decisions (and an outcome after each fifth), closes.
pub fn write_log(cfg: AuditConfig, n: u64) -> Vec<u64> {
    rt().block_on(async {
        let log = AuditLog::open(cfg).unwrap();
        let mut seqs = Vec::new();
        for i in 0..n {
            seqs.push(log.append(decision(i)).await.unwrap().seq);
            if i.is_multiple_of(5) {
                log.append_later(Record::Outcome(OutcomeRecord {
                    request_id: format!("req-{i}"),
                    status: Some(200),
                    latency_us: 1234,
                    is_error: Some(false),
                    bytes: Some(99),
                    duration_us: Some(2345),
                    error: None,
                }));
            }
        }
        log.close().await;
        seqs
    })
}

pub fn verify(dir: &Path) -> Report {
    verify_dir(dir, &Options::default()).unwrap()
}

pub fn assert_ok(r: &Report) {
    assert!(
        r.ok(),
        "verification failed: {}",
        r.problem.as_ref().unwrap()
    );
}

/// Verification must fail at `file` (name) and `line`, saying something containing `what`.
pub fn assert_fails_at(r: &Report, file: &str, line: usize, what: &str) {
    let p = r
        .problem
        .as_ref()
        .unwrap_or_else(|| panic!("verification passed but should have failed ({what})"));
    assert!(
        p.file.ends_with(file) && p.line == line && p.what.contains(what),
        "expected a problem at {file}:{line} ({what}), got {p}"
    );
}

/// Every record kind the writer produces matches `gateway/audit-record.schema.json`.
pub fn assert_schema_valid(dir: &Path) {
    let schema: Value =
        serde_json::from_str(include_str!("../../../audit-record.schema.json")).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    for e in Reader::open(dir).unwrap() {
        let e = e.unwrap();
        if let Err(err) = v.validate(&e.record) {
            panic!(
                "{}:{} does not match the schema: {err}",
                e.file.display(),
                e.line
            );
        }
    }
}

pub fn records(dir: &Path) -> Vec<Value> {
    Reader::open(dir)
        .unwrap()
        .map(|e| e.unwrap().record)
        .collect()
}

pub fn segs(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

pub fn name(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_owned()
}

pub fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn write_lines(p: &Path, l: &[String]) {
    fs::write(p, l.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// A log of several segments (about 4 KiB each), checkpoints every 10 records, signed.
pub fn multi_segment_log(dir: &Path) -> (SigningKey, PathBuf) {
    let key = SigningKey::from_bytes(&[9; 32]);
    let key_file = dir.with_extension("key");
    fs::write(
        &key_file,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let pub_file = dir.with_extension("pub");
    fs::write(
        &pub_file,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let mut c = cfg(dir);
    c.segment_max_bytes = 4096;
    c.checkpoint_every = 10;
    c.signing_key_file = Some(key_file);
    write_log(c, 200);
    assert!(segs(dir).len() >= 5, "expected rotation");
    (key, pub_file)
}
