//! The strict JSON-RPC parser (`gateway/src/mcp/jsonrpc.rs`) against an independent JSON parser
//! (`mcp_gateway_fuzz::json`) and the JSON-RPC 2.0 envelope rules restated here.
//!
//! Properties, for any bytes:
//! 1. JSON level: the gateway accepts the bytes as JSON (parse is `Ok` or an envelope error `-32600`) iff the
//!    reference parser accepts them, finds no duplicate key at any depth and the nesting is within the
//!    recursion limit. So an accepted body never has a duplicate key, escapes included; a valid, unique-keyed,
//!    reasonably nested body is never refused as malformed.
//! 2. Envelope: the gateway's `Payload` is exactly what the envelope rules derive from the reference value
//!    (method, id, params, result/error), so the parsed view is the bytes' meaning.
//! 3. Round trip: the `Payload` re-serialised parses back to an equal `Payload`, and the re-serialised text has
//!    no duplicate key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::mcp::jsonrpc::{self, Id, Message, ParseError, Payload};
use mcp_gateway_fuzz::json::{self, J};
use serde_json::{Value, json};

/// serde_json's recursion limit: 128 levels refused, 127 accepted.
const MAX_DEPTH: usize = 127;

fuzz_target!(|body: &[u8]| {
    let got = jsonrpc::parse(body);
    let reference = json::parse(body);
    let json_ok = match &reference {
        Some(p) => json::duplicate_key(&p.value).is_none() && p.depth <= MAX_DEPTH,
        None => false,
    };
    match (&got, json_ok) {
        (Err(ParseError::Json(e)), true) => {
            panic!("valid JSON without duplicate keys refused as malformed: {e}")
        }
        (Ok(_) | Err(ParseError::Invalid(_)), false) => {
            let why = match &reference {
                None => "not JSON for the reference parser".to_owned(),
                Some(p) => match json::duplicate_key(&p.value) {
                    Some(k) => format!("duplicate key {k:?}"),
                    None => format!("nesting depth {}", p.depth),
                },
            };
            panic!("gateway accepted a body as JSON that it must refuse: {why}; result {got:?}")
        }
        _ => {}
    }
    if !json_ok {
        return;
    }
    let value = reference.expect("checked").value;
    let expected = envelope(&value);
    match (&got, &expected) {
        (Ok(p), Ok(e)) => assert_eq!(p, e, "payload differs from the envelope rules"),
        (Err(ParseError::Invalid(_)), Err(_)) => {}
        _ => panic!("envelope verdict differs: gateway {got:?}, rules {expected:?}"),
    }
    if let Ok(p) = got {
        let text = serialise(&p).to_string();
        let again = jsonrpc::parse(text.as_bytes()).expect("a re-serialised payload parses");
        assert_eq!(again, p, "round trip changed the payload: {text}");
        let r = json::parse(text.as_bytes()).expect("re-serialised text is JSON");
        assert!(json::duplicate_key(&r.value).is_none());
        for m in p.messages() {
            if let Some(id) = m.id() {
                let _ = id.to_string();
            }
        }
    }
});

/// JSON-RPC 2.0 as the gateway documents it: a message object or a non-empty batch of them.
fn envelope(v: &J) -> Result<Payload, String> {
    match v {
        J::Arr(items) if items.is_empty() => Err("empty batch".into()),
        J::Arr(items) => items
            .iter()
            .map(message)
            .collect::<Result<_, _>>()
            .map(Payload::Batch),
        v => message(v).map(Payload::Single),
    }
}

fn id_of(v: &J) -> Result<Option<Id>, String> {
    match v.to_value() {
        Value::String(s) => Ok(Some(Id::Str(s))),
        Value::Number(n) => Ok(Some(Id::Num(n))),
        Value::Null => Ok(None),
        _ => Err("bad id".into()),
    }
}

fn message(v: &J) -> Result<Message, String> {
    let J::Obj(_) = v else {
        return Err("not an object".into());
    };
    if v.get("jsonrpc") != Some(&J::Str("2.0".into())) {
        return Err("jsonrpc".into());
    }
    let id = v.get("id").map(id_of).transpose()?;
    let (result, error) = (v.get("result"), v.get("error"));
    match v.get("method") {
        Some(J::Str(method)) => {
            if result.is_some() || error.is_some() {
                return Err("request with result/error".into());
            }
            let params = match v.get("params") {
                None => None,
                Some(p @ (J::Obj(_) | J::Arr(_))) => Some(p.to_value()),
                Some(_) => return Err("params".into()),
            };
            match id {
                None => Ok(Message::Notification {
                    method: method.clone(),
                    params,
                }),
                Some(Some(id)) => Ok(Message::Request {
                    id,
                    method: method.clone(),
                    params,
                }),
                Some(None) => Err("null request id".into()),
            }
        }
        Some(_) => Err("method not a string".into()),
        None => {
            let id = id.ok_or("response without id")?;
            match (result, error) {
                (Some(r), None) if id.is_some() => Ok(Message::Response {
                    id,
                    result: Ok(r.to_value()),
                }),
                (None, Some(e)) => {
                    let code_ok = e.get("code").is_some_and(|c| c.to_value().is_i64());
                    let msg_ok = matches!(e.get("message"), Some(J::Str(_)));
                    if code_ok && msg_ok {
                        Ok(Message::Response {
                            id,
                            result: Err(e.to_value()),
                        })
                    } else {
                        Err("error object".into())
                    }
                }
                _ => Err("result/error".into()),
            }
        }
    }
}

fn serialise(p: &Payload) -> Value {
    fn one(m: &Message) -> Value {
        let mut o = json!({"jsonrpc": "2.0"});
        match m {
            Message::Request { id, method, params } => {
                o["id"] = id.to_value();
                o["method"] = json!(method);
                if let Some(p) = params {
                    o["params"] = p.clone();
                }
            }
            Message::Notification { method, params } => {
                o["method"] = json!(method);
                if let Some(p) = params {
                    o["params"] = p.clone();
                }
            }
            Message::Response { id, result } => {
                o["id"] = id.as_ref().map(Id::to_value).unwrap_or(Value::Null);
                match result {
                    Ok(r) => o["result"] = r.clone(),
                    Err(e) => o["error"] = e.clone(),
                }
            }
        }
        o
    }
    match p {
        Payload::Single(m) => one(m),
        Payload::Batch(ms) => Value::Array(ms.iter().map(one).collect()),
    }
}
