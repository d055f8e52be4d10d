//! Unit tests of `caller.rs`.

use super::*;
use crate::mcp::Payload;

#[test]
fn answers_are_read_strictly() {
    let a = |v: Value| Answer::of(Ok(&v));
    assert_eq!(
        a(json!({"action": "accept", "content": {"confirm": true}})),
        Answer::Confirmed
    );
    for v in [
        json!({"action": "accept", "content": {"confirm": false}}),
        json!({"action": "accept", "content": {"confirm": "true"}}),
        json!({"action": "accept"}),
        json!({"action": "decline"}),
        json!({"action": "cancel"}),
        json!({}),
    ] {
        assert!(matches!(a(v.clone()), Answer::Declined(_)), "{v}");
    }
    assert!(matches!(
        Answer::of(Err(&json!({"code": -1}))),
        Answer::Declined(_)
    ));
}

#[test]
fn initialize_with_elicitation_is_recognised() {
    let post = |body: Value| {
        let bytes = serde_json::to_vec(&body).unwrap();
        Inbound::Post {
            payload: crate::mcp::jsonrpc::parse(&bytes).unwrap(),
            body: Bytes::from(bytes),
            modern: false,
        }
    };
    let init = |caps: Value| {
        post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                        "params": {"protocolVersion": "2025-11-25", "capabilities": caps,
                                   "clientInfo": {"name": "t", "version": "1"}}}))
    };
    assert!(declares_elicitation(&init(json!({"elicitation": {}}))));
    assert!(!declares_elicitation(&init(json!({"sampling": {}}))));
    assert!(!declares_elicitation(&init(json!({"elicitation": true}))));
    assert!(!declares_elicitation(&post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    )));
}

#[test]
fn strip_restores_the_upstream_state_and_nothing_of_the_gateways() {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "delete_customer", "arguments": {"id": "c-1"},
            "requestState": "mcpgw1.x.y", "inputResponses": {INPUT_KEY: {"action": "accept"}},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let bytes = serde_json::to_vec(&body).unwrap();
    let msg = match crate::mcp::jsonrpc::parse(&bytes).unwrap() {
        Payload::Single(m) => m,
        Payload::Batch(_) => unreachable!(),
    };
    let mut st = State {
        id: "cnf_x".into(),
        route: "crm".into(),
        tool: "delete_customer".into(),
        args: String::new(),
        principal: None,
        session: None,
        exp: 0,
        policy: "guard".into(),
        up_state: None,
        up_responses: None,
    };
    let plain = strip(&msg, &st).unwrap();
    let p = plain.single_message().unwrap().params().unwrap();
    assert!(p.get("requestState").is_none() && p.get("inputResponses").is_none());
    assert_eq!(p["arguments"], json!({"id": "c-1"}));
    assert!(p.get("_meta").is_some());
    st.up_state = Some("up".into());
    st.up_responses = Some(json!({"q": {"action": "accept"}}));
    let nested = strip(&msg, &st).unwrap();
    let p = nested.single_message().unwrap().params().unwrap();
    assert_eq!(p["requestState"], json!("up"));
    assert_eq!(p["inputResponses"], json!({"q": {"action": "accept"}}));
}
