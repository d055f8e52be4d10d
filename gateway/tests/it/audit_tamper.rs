//! Tamper evidence of the audit log: every kind of edit an attacker (or an accident) can make to the
//! segments — edited, reformatted, deleted, swapped or truncated lines, deleted segments, forged checkpoint
//! signatures — is found by `verify` and located at file and line.

use crate::audit_support;

use std::fs;
use std::path::Path;

use ed25519_dalek::SigningKey;
use mcp_gateway::audit::verify::{Options, verify_dir};
use serde_json::{Value, json};

use audit_support::*;

#[test]
fn tamper_edit_a_field_is_found_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let seg = &segs(&dir)[2];
    let mut l = lines(seg);
    let i = l
        .iter()
        .position(|l| l.contains(r#""decision":"deny""#))
        .unwrap();
    l[i] = l[i].replace(r#""decision":"deny""#, r#""decision":"allow""#);
    write_lines(seg, &l);
    assert_fails_at(&verify(&dir), &name(seg), i + 1, "altered");
}

#[test]
fn tamper_reformatted_line_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    write_log(cfg(&dir), 10);
    let seg = &segs(&dir)[0];
    let mut l = lines(seg);
    l[3] = l[3].replacen(",", ", ", 1);
    write_lines(seg, &l);
    assert_fails_at(&verify(&dir), &name(seg), 4, "canonical");
}

#[test]
fn tamper_delete_a_line_is_found_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let seg = &segs(&dir)[1];
    let mut l = lines(seg);
    l.remove(4);
    write_lines(seg, &l);
    assert_fails_at(&verify(&dir), &name(seg), 5, "missing");
}

#[test]
fn tamper_swap_two_lines_is_found_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let seg = &segs(&dir)[1];
    let mut l = lines(seg);
    l.swap(3, 4);
    write_lines(seg, &l);
    // Line 4 now holds the record after the one that should be there.
    assert_fails_at(&verify(&dir), &name(seg), 4, "missing");
}

#[test]
fn tamper_truncated_middle_segment_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let all = segs(&dir);
    let seg = &all[1];
    let len = fs::metadata(seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let n = lines(seg).len();
    // The cut last line is torn, and the next segment is no failure recovery: the torn line is reported.
    let r = verify(&dir);
    let p = r.problem.expect("truncation must fail verification");
    assert!(p.file.ends_with(name(seg)) && p.line == n, "{p}");
    assert!(p.what.contains("torn"), "{p}");

    // Truncated at a line boundary instead: the next segment's start no longer links.
    let mut l = lines(seg);
    l.truncate(l.len() - 3);
    write_lines(seg, &l);
    assert_fails_at(&verify(&dir), &name(&all[2]), 1, "missing");
}

#[test]
fn tamper_truncated_newest_segment_is_found_with_an_external_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let recs = records(&dir);
    let last = recs.last().unwrap();
    let anchor = (
        last["seq"].as_u64().unwrap(),
        last["hash"].as_str().unwrap().to_owned(),
    );
    let opts = Options {
        expect: vec![anchor],
        ..Default::default()
    };
    assert_ok(&verify_dir(&dir, &opts).unwrap());
    let seg = segs(&dir).pop().unwrap();
    let mut l = lines(&seg);
    l.truncate(l.len() - 2);
    write_lines(&seg, &l);
    // A shorter chain is still a chain…
    assert_ok(&verify(&dir));
    // …but not the one the checkpoint held elsewhere describes.
    let r = verify_dir(&dir, &opts).unwrap();
    assert!(
        r.problem
            .unwrap()
            .what
            .contains("does not contain the expected checkpoint")
    );
}

#[test]
fn tamper_deleted_middle_segment_is_found_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let all = segs(&dir);
    fs::remove_file(&all[2]).unwrap();
    let r = verify(&dir);
    assert_fails_at(&r, &name(&all[3]), 1, "missing");
    assert!(r.problem.unwrap().what.contains(&name(&all[2])));
}

#[test]
fn tamper_deleted_oldest_segment_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    multi_segment_log(&dir);
    let all = segs(&dir);
    fs::remove_file(&all[0]).unwrap();
    let r = verify(&dir);
    assert!(
        r.problem
            .unwrap()
            .what
            .contains("no retention record accounts for it")
    );
}

#[test]
fn tamper_forged_checkpoint_signature_is_found_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (_key, pub_file) = multi_segment_log(&dir);
    let key = mcp_gateway::audit::chain::load_public_key(&pub_file).unwrap();
    // Forge: re-sign a *different* head with another key and recompute the chain from there, as someone
    // who can rewrite the files (but does not hold the key) would.
    let seg = &segs(&dir)[1];
    let mut l = lines(seg);
    let i = l
        .iter()
        .position(|l| l.contains(r#""kind":"checkpoint""#))
        .unwrap();
    let forger = mcp_gateway::audit::chain::Signer::new(SigningKey::from_bytes(&[2; 32]));
    let mut v: Value = serde_json::from_str(&l[i]).unwrap();
    let count = v["data"]["count"].as_u64().unwrap();
    let head = v["data"]["head_hash"].as_str().unwrap().to_owned();
    v["data"]["signature"] = json!(forger.sign(count, &head));
    v.as_object_mut().unwrap().remove("hash");
    let mut unhashed = Vec::new();
    mcp_gateway::audit::record::canonical_bytes(&v, &mut unhashed);
    let prev = mcp_gateway::audit::chain::parse_hash(v["prev_hash"].as_str().unwrap()).unwrap();
    let h = mcp_gateway::audit::chain::chain_hash(&prev, &unhashed);
    v["hash"] = json!(hex::encode(h));
    let mut line = Vec::new();
    mcp_gateway::audit::record::canonical_bytes(&v, &mut line);
    l[i] = String::from_utf8(line).unwrap();
    write_lines(seg, &l);
    let opts = Options {
        key: Some(key),
        ..Default::default()
    };
    // With the key the signature gives it away; without, the chain after it no longer links…
    assert_fails_at(
        &verify_dir(&dir, &opts).unwrap(),
        &name(seg),
        i + 1,
        "signature does not verify",
    );
    assert_fails_at(&verify(&dir), &name(seg), i + 2, "prev_hash");
    // …and with the chain rewritten to the end (everything re-hashed), the signature still gives it away.
    rechain_from(&dir, seg, i + 1);
    assert_fails_at(
        &verify_dir(&dir, &opts).unwrap(),
        &name(seg),
        i + 1,
        "signature does not verify",
    );
    // Without the key, a full rewrite is undetectable: that is what the key (and external copies) are for.
    assert_ok(&verify(&dir));
}

/// Re-hashes every record from `seg`'s line `from` to the end of the log (an attacker's full rewrite).
fn rechain_from(dir: &Path, seg: &Path, from: usize) {
    use mcp_gateway::audit::chain::{chain_hash, parse_hash};
    use mcp_gateway::audit::record::canonical_bytes;
    let all = segs(dir);
    let start = all.iter().position(|p| p == seg).unwrap();
    let mut prev: Option<[u8; 32]> = None;
    for (si, s) in all.iter().enumerate().skip(start) {
        let mut l = lines(s);
        for (li, line) in l.iter_mut().enumerate() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            if si == start && li + 1 < from {
                prev = Some(parse_hash(v["hash"].as_str().unwrap()).unwrap());
                continue;
            }
            let p = prev.unwrap();
            v["prev_hash"] = json!(hex::encode(p));
            if v["kind"] == "checkpoint" && !(si == start && li + 1 == from) {
                v["data"]["head_hash"] = json!(hex::encode(p));
                v["data"].as_object_mut().unwrap().remove("signature");
            }
            v.as_object_mut().unwrap().remove("hash");
            let mut b = Vec::new();
            canonical_bytes(&v, &mut b);
            let h = chain_hash(&p, &b);
            v["hash"] = json!(hex::encode(h));
            let mut b = Vec::new();
            canonical_bytes(&v, &mut b);
            *line = String::from_utf8(b).unwrap();
            prev = Some(h);
        }
        write_lines(s, &l);
    }
}
