//! Unit tests of `jsonrpc.rs`.

use super::*;
use serde_json::json;

fn err(body: &str) -> ParseError {
    parse(body.as_bytes()).unwrap_err()
}

#[test]
fn request_notification_response() {
    let p = parse(
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{}}}"#,
    )
    .unwrap();
    assert_eq!(
        p,
        Payload::Single(Message::Request {
            id: Id::Num(7.into()),
            method: "tools/call".into(),
            params: Some(json!({"name":"x","arguments":{}}))
        })
    );
    assert!(!p.expects_no_response());
    let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert!(n.expects_no_response());
    let r = parse(br#"{"jsonrpc":"2.0","id":"s-1","result":{"action":"accept"}}"#).unwrap();
    assert!(matches!(
        r,
        Payload::Single(Message::Response { result: Ok(_), .. })
    ));
    let e = parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#).unwrap();
    assert!(matches!(
        e,
        Payload::Single(Message::Response {
            id: None,
            result: Err(_)
        })
    ));
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    let e = err(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_customer"}}"#,
    );
    assert!(
        matches!(&e, ParseError::Json(m) if m.contains("duplicate object key \"name\"")),
        "{e}"
    );
    assert_eq!(e.code(), -32700);
    let e = err(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":[{"b":1,"b":2}]}}"#);
    assert!(e.to_string().contains("duplicate object key \"b\""), "{e}");
    // Escapes decode to the same key: still a duplicate.
    let e = err(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"name":"a","n\u0061me":"b"}}"#);
    assert!(e.to_string().contains("duplicate"), "{e}");
    let e = err(r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"m"}"#);
    assert!(e.to_string().contains("duplicate"), "{e}");
}

#[test]
fn malformed_bodies_are_refused() {
    assert!(matches!(err("{"), ParseError::Json(_)));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"m"} {}"#),
        ParseError::Json(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#),
        ParseError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"id":1,"method":"m"}"#),
        ParseError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#),
        ParseError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#),
        ParseError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}"#),
        ParseError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#),
        ParseError::Invalid(_)
    ));
    assert!(matches!(
        err(r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#),
        ParseError::Invalid(_)
    ));
    assert!(matches!(err("[]"), ParseError::Invalid(_)));
    assert!(matches!(err("42"), ParseError::Invalid(_)));
    assert_eq!(err("[]").code(), -32600);
}

#[test]
fn batches_are_parsed_element_by_element() {
    let p = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#)
        .unwrap();
    assert_eq!(p.messages().len(), 2);
    let e = err(r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":2}]"#);
    assert!(e.to_string().contains("batch element 1"), "{e}");
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(err(&deep), ParseError::Json(m) if m.contains("recursion limit")));
}
