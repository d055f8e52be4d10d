//! Unit tests of `record.rs`.

use super::*;
use serde_json::json;

fn canon(v: &Value) -> String {
    let mut b = Vec::new();
    canonical_bytes(v, &mut b);
    String::from_utf8(b).unwrap()
}

#[test]
fn times_are_formatted_as_time_formats_them() {
    let mut ns: i128 = 0;
    let mut cases = vec![
        0i128,                       // 1970-01-01T00:00:00.000000Z
        951_782_400_000_000_000,     // 2000-02-29 (leap day)
        1_795_312_170_999_999_999,   // a sub-microsecond remainder is cut, not rounded
        253_402_300_799_999_999_000, // 9999-12-31T23:59:59.999999Z
    ];
    // And a spread of ordinary times (a fixed LCG: deterministic).
    for _ in 0..2000 {
        ns = (ns * 6_364_136_223_846_793_005 + 1_442_695_040_888_963_407)
            % 4_102_444_800_000_000_000;
        cases.push(ns.abs());
    }
    for n in cases {
        let t = OffsetDateTime::from_unix_timestamp_nanos(n).unwrap();
        assert_eq!(format_time(t), t.format(TIME_FORMAT).unwrap(), "{n}");
    }
    // Another offset is converted to UTC first.
    let t = OffsetDateTime::from_unix_timestamp(0)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap());
    assert_eq!(format_time(t), "1970-01-01T00:00:00.000000Z");
}

#[test]
fn canonical_sorts_keys_by_bytes_and_drops_whitespace() {
    let v = json!({"b": 1, "a": {"z": [1, 2.5, "x\n"], "Z": null}, "é": true, "_": false});
    assert_eq!(
        canon(&v),
        r#"{"_":false,"a":{"Z":null,"z":[1,2.5,"x\n"]},"b":1,"é":true}"#
    );
}

#[test]
fn canonical_is_stable_through_a_reparse() {
    let v =
        json!({"f": 0.1, "g": 1e22, "h": -2.5e-7, "i": u64::MAX, "j": i64::MIN, "s": "\u{1}\"\\"});
    let once = canon(&v);
    let again = canon(&serde_json::from_str(&once).unwrap());
    assert_eq!(once, again);
}

#[test]
fn decision_arguments_forms() {
    let mut d = DecisionRecord {
        direction: None,
        would: None,
        request_id: "r".into(),
        route: None,
        host: None,
        client: None,
        principal: None,
        principal_claims: None,
        session_id: None,
        protocol_version: None,
        method: "tools/call".into(),
        rpc_id: Some(json!(1)),
        tool: Some("t".into()),
        arguments: Arguments::Full(json!({"x": 1})),
        policies: vec![],
        decision: Decision::Allow,
        reason: None,
        approval_id: None,
    };
    assert_eq!(to_object(&d)["arguments"], json!({"x": 1}));
    d.arguments = Arguments::digest_of(&json!({"x": 1}));
    let data = to_object(&d);
    assert_eq!(data["arguments_size"], json!(7));
    assert!(
        data["arguments_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(data.get("arguments").is_none());
    d.arguments = Arguments::Omitted;
    assert!(to_object(&d).get("arguments_digest").is_none());
}

/// The per-request records skip the `Value` + sort: with every optional field present and every
/// arguments form, their direct bytes equal the sorted canonical bytes.
#[test]
fn per_request_records_serialise_directly_in_canonical_form() {
    let sorted = |r: &Record| {
        let mut out = Vec::new();
        canonical_bytes(&r.to_data(), &mut out);
        String::from_utf8(out).unwrap()
    };
    let args = json!({"z": [3, {"b": 1, "a": "é\u{1}"}], "a": 0.1, "m": null});
    for arguments in [
        Arguments::Full(args.clone()),
        Arguments::digest_of(&args),
        Arguments::Omitted,
    ] {
        let r = Record::Decision(DecisionRecord {
            direction: None,
            would: None,
            approval_id: Some("ap".into()),
            arguments,
            client: Some("10.0.0.1:5".into()),
            decision: Decision::RequireApproval,
            host: Some("h.example".into()),
            method: "tools/call".into(),
            policies: vec![PolicyResult {
                answer: "deny".into(),
                elapsed_us: 3,
                mode: "monitor".into(),
                name: "guard".into(),
                reason: Some("no \"way\"".into()),
                settings_digest: "ab".into(),
                sha256: "cd".into(),
            }],
            principal: Some("alice".into()),
            principal_claims: Some(json!({"roles": ["x"], "email": "a@b"})),
            protocol_version: Some("2025-06-18".into()),
            reason: Some("because".into()),
            request_id: "rid".into(),
            route: Some("crm".into()),
            rpc_id: Some(json!("7")),
            session_id: Some("s".into()),
            tool: Some("delete_customer".into()),
        });
        assert_eq!(
            String::from_utf8(Prepared::new(&r).data).unwrap(),
            sorted(&r)
        );
    }
    let o = Record::Outcome(OutcomeRecord {
        bytes: Some(12),
        duration_us: Some(10),
        error: Some("reset".into()),
        is_error: Some(true),
        latency_us: 9,
        request_id: "rid".into(),
        status: Some(502),
    });
    assert_eq!(
        String::from_utf8(Prepared::new(&o).data).unwrap(),
        sorted(&o)
    );
}
