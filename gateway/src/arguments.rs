//! Stage 4b — argument validation: `tools/call` arguments are checked against the tool's `inputSchema`
//! (validators compiled once per schema, in the catalogue) before any policy runs. Invalid arguments are
//! answered as the spec advises for input errors — a tool result with `isError: true` naming the violated
//! constraints, so the model can correct itself — and never forwarded.
//!
//! Batches are validated element by element: one invalid call keeps the whole batch from the upstream.
//!
//! A tool the catalogue does not know, or whose schema cannot be compiled (say, a remote `$ref`), is not
//! validated here; its policies still run.

use serde_json::Value;

use crate::catalogue::Catalogue;
use crate::mcp::{Inbound, Message};

/// Most constraint violations listed in one answer.
const MAX_ERRORS: usize = 8;

/// A `tools/call` whose arguments do not satisfy the tool's `inputSchema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidArguments {
    /// Its position in the POST (0 for a single message).
    pub index: usize,
    pub rpc_id: Value,
    pub tool: String,
    /// `"/path: message"` per violated constraint.
    pub errors: Vec<String>,
}

/// Checks every `tools/call` of a POST, single or batched (a batch is validated element by element, as it
/// is policed).
pub fn check(inbound: &Inbound, catalogue: &Catalogue) -> Vec<InvalidArguments> {
    let Inbound::Post { payload, .. } = inbound else {
        return Vec::new();
    };
    payload
        .messages()
        .iter()
        .enumerate()
        .filter_map(|(index, m)| check_one(index, m, catalogue))
        .collect()
}

fn check_one(index: usize, msg: &Message, catalogue: &Catalogue) -> Option<InvalidArguments> {
    let Message::Request { id, method, params } = msg else {
        return None;
    };
    if method != "tools/call" {
        return None;
    }
    let params = params.as_ref()?;
    let name = params.get("name")?.as_str()?;
    let tool = catalogue.get(name)?;
    let validator = match tool.validator()? {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(tool = name, error = %e, "tool inputSchema cannot be compiled; arguments not validated");
            return None;
        }
    };
    let empty = Value::Object(Default::default());
    let args = params.get("arguments").unwrap_or(&empty);
    let errors: Vec<String> = validator
        .iter_errors(args)
        .take(MAX_ERRORS)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!(
                "{}: {e}",
                if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                }
            )
        })
        .collect();
    (!errors.is_empty()).then(|| InvalidArguments {
        index,
        rpc_id: id.to_value(),
        tool: name.to_owned(),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::jsonrpc::parse;
    use serde_json::json;

    fn inbound(args: Value) -> Inbound {
        let body = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"refund","arguments":args}}).to_string();
        Inbound::Post {
            payload: parse(body.as_bytes()).unwrap(),
            body: body.into(),
            modern: false,
        }
    }

    #[test]
    fn arguments_are_checked_against_the_listed_schema() {
        let c = Catalogue::default();
        c.learn(&[json!({"name": "refund", "inputSchema": {"type": "object",
            "properties": {"amount": {"type": "number", "maximum": 1000}, "order": {"type": "string", "minLength": 3}},
            "required": ["amount", "order"], "additionalProperties": false}})]);
        assert_eq!(
            check(&inbound(json!({"amount": 10, "order": "A-100"})), &c),
            []
        );
        let bad = check(
            &inbound(json!({"amount": 5000, "order": "A", "note": 1})),
            &c,
        )
        .pop()
        .unwrap();
        assert_eq!(bad.rpc_id, json!(3));
        let all = bad.errors.join("\n");
        assert!(all.contains("/amount") && all.contains("1000"), "{all}");
        assert!(all.contains("/order"), "{all}");
        assert!(all.contains("note"), "additionalProperties: {all}");
        let missing = check(&inbound(json!({})), &c).pop().unwrap();
        assert!(
            missing.errors[0].starts_with("/: ") && missing.errors.join(" ").contains("amount"),
            "{missing:?}"
        );
    }

    #[test]
    fn unknown_tools_and_unusable_schemas_are_not_validated() {
        let c = Catalogue::default();
        assert_eq!(check(&inbound(json!({"x": 1})), &c), []);
        c.learn(&[json!({"name": "refund", "inputSchema": {"$ref": "https://example.invalid/schema.json"}})]);
        assert_eq!(check(&inbound(json!({"x": 1})), &c), []);
    }

    #[test]
    fn batched_calls_are_validated_element_by_element() {
        let c = Catalogue::default();
        c.learn(&[json!({"name": "refund", "inputSchema": {"type": "object",
            "properties": {"amount": {"type": "number", "maximum": 1000}}, "required": ["amount"]}})]);
        let body = json!([
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund","arguments":{"amount":5}}},
            {"jsonrpc":"2.0","method":"notifications/x"},
            {"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"refund","arguments":{"amount":5000}}}
        ])
        .to_string();
        let inbound = Inbound::Post {
            payload: parse(body.as_bytes()).unwrap(),
            body: body.into(),
            modern: false,
        };
        let bad = check(&inbound, &c);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].index, &bad[0].rpc_id), (2, &json!("b")));
    }
}
