//! Unit tests of `headers.rs`.

use super::*;
use crate::mcp::jsonrpc::parse;

fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, v.parse().unwrap());
    }
    h
}

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","arguments":{}}}"#;

#[test]
fn matching_headers_pass_including_base64() {
    let p = parse(CALL).unwrap();
    let v = "2026-07-28";
    check(
        &hm(&[
            ("mcp-protocol-version", v),
            ("mcp-method", "tools/call"),
            ("mcp-name", "delete_customer"),
        ]),
        &p,
    )
    .unwrap();
    let b64 = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode("delete_customer")
    );
    check(
        &hm(&[
            ("mcp-protocol-version", v),
            ("mcp-method", "tools/call"),
            ("mcp-name", &b64),
        ]),
        &p,
    )
    .unwrap();
}

#[test]
fn disagreeing_headers_are_refused() {
    let p = parse(CALL).unwrap();
    let e = check(
        &hm(&[("mcp-method", "tools/call"), ("mcp-name", "search_docs")]),
        &p,
    )
    .unwrap_err();
    assert!(
        e.0.contains("\"search_docs\" does not match params.name \"delete_customer\""),
        "{e}"
    );
    let e = check(&hm(&[("mcp-method", "tools/list")]), &p).unwrap_err();
    assert!(e.0.contains("Mcp-Method"), "{e}");
    let e = check(
        &hm(&[
            ("mcp-name", "delete_customer"),
            ("mcp-name", "delete_customer"),
        ]),
        &p,
    )
    .unwrap_err();
    assert!(e.0.contains("more than once"), "{e}");
    let e = check(&hm(&[("mcp-name", "=?base64?***?=")]), &p).unwrap_err();
    assert!(e.0.contains("cannot be decoded"), "{e}");
}

#[test]
fn modern_requests_must_carry_them() {
    let p = parse(CALL).unwrap();
    let e = check(
        &hm(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ]),
        &p,
    )
    .unwrap_err();
    assert!(e.0.contains("Mcp-Name header is required"), "{e}");
    let e = check(&hm(&[("mcp-protocol-version", "2026-07-28")]), &p).unwrap_err();
    assert!(e.0.contains("Mcp-Method header is required"), "{e}");
    // Era declared in the body's _meta counts too.
    let meta = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
    assert!(check(&HeaderMap::new(), &meta).is_err());
    // Legacy requests without headers are fine.
    check(&hm(&[("mcp-protocol-version", "2025-11-25")]), &p).unwrap();
    check(&HeaderMap::new(), &p).unwrap();
}

#[test]
fn name_header_on_a_nameless_method_is_refused() {
    let p = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
    assert!(check(&hm(&[("mcp-method", "tools/list"), ("mcp-name", "x")]), &p).is_err());
    let r = parse(
        br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
    )
    .unwrap();
    check(
        &hm(&[("mcp-method", "resources/read"), ("mcp-name", "file:///a")]),
        &r,
    )
    .unwrap();
}
