//! What `policy eval` and `policy test` read: a request in one of the forms users have, and fixture files.
//! Unknown keys are errors naming the nearest known key, as in the gateway config: a typo must not make a
//! case run anonymous or an expectation be skipped.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value};

use crate::config::validate::nearest;
use crate::mcp::{Message, Payload, jsonrpc};
use crate::policy::bindings::types::{Principal, RequestContext};

/// The formats, for `--help` (kept beside the code that reads them).
pub const REQUEST_FORMATS: &str = "\
A request (--request FILE, or - for stdin) is one JSON document in one of three forms:

  1. A bare JSON-RPC message, as curl sends it and the logs show it:
       {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_user\",\"arguments\":{\"id\":7}}}
     It is evaluated on route `test` with no caller and no tool definition (annotations: the MCP spec defaults).

  2. An audit decision record, one line of `mcp-gateway audit query DIR --format jsonl` (pick one with
     --request-id ID): route, host, client, principal and its claims, session and protocol version come from
     the record. Only `tools/call` records can be evaluated, and only when the route recorded the arguments in
     full (`redact: full`); for a record that keeps a digest, give the arguments with --arguments JSON.
     Records carry no tool definition: add one with the wrapper form if the policy reads annotations.

  3. A wrapper with the context the gateway would give the policy:
       {\"message\":   {…a JSON-RPC message…},
        \"context\":   {\"route\":\"crm\", \"host\":\"crm.example.test\", \"client_address\":\"10.0.0.7\",
                      \"principal\":{\"subject\":\"alice\",\"claims\":{\"groups\":[\"admins\"]}},
                      \"session_id\":\"…\", \"protocol_version\":\"2026-07-28\", \"request_id\":\"…\"},
        \"principal\": {\"subject\":\"alice\",\"claims\":{…}},      (shorthand for context.principal)
        \"tools\":     [{\"name\":\"delete_user\",\"annotations\":{\"destructiveHint\":true},\"inputSchema\":{…}}],
        \"tool\":      {\"name\":\"delete_user\",…}}                 (shorthand for a one-tool \"tools\")
     Every key is optional except \"message\". The tools are what the upstream's tools/list said: the policy
     sees their annotations (spec defaults for hints not given) and input schema. Context defaults: route
     `test`, host `test.local`, client 127.0.0.1, no principal.

Unknown keys (also in context, principal and a tool's annotations) are errors naming the nearest known key.";

pub const FIXTURE_FORMAT: &str = "\
A fixture file (*.json in DIR; JSON Schema: policies/fixtures/fixture.schema.json) is a request in the wrapper
form (see `mcp-gateway policy eval --help`) plus what the policy is and what it must answer:

  {\"policy\":   \"../target/wasm32-wasip2/release/my_policy.wasm\",   (relative to the fixture file's directory)
   \"settings\": {\"block\": [\"delete_*\"]},                           (the module's settings; default {})
   \"expect\":   \"deny\",                    (allow | deny | require_approval | hidden)
   \"reason_contains\": \"blocked\",          (optional: the reason must contain this text)
   \"name\":     \"deletes are denied\",      (optional: shown in the report)
   \"message\":  {…}, \"context\": {…}, \"principal\": {…}, \"tools\": […], \"tool\": {…}}

or several cases sharing a file's policy, settings, context, principal and tools:

  {\"policy\": \"…\", \"settings\": {…}, \"tools\": […],
   \"cases\": [{\"name\": \"…\", \"expect\": \"allow\", \"message\": {…}}, …]}

A case's own keys override the file's. `hidden` means the chain answers the call as an unknown tool (a policy's
hidden_tools lists it). With --policy WASM every case uses that component instead of its \"policy\" (handy when
CARGO_TARGET_DIR puts the build elsewhere); with --config FILE the cases run against a route's configured
chain instead (and must not name a policy or settings).";

const WRAPPER_KEYS: &[&str] = &["message", "context", "principal", "tools", "tool"];
const CONTEXT_KEYS: &[&str] = &[
    "route",
    "host",
    "client_address",
    "principal",
    "session_id",
    "protocol_version",
    "request_id",
];
const PRINCIPAL_KEYS: &[&str] = &["subject", "claims"];
const ANNOTATION_KEYS: &[&str] = &[
    "title",
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
];
/// Keys of a fixture file besides the wrapper's.
pub const FIXTURE_FILE_KEYS: &[&str] = &[
    "$schema",
    "description",
    "name",
    "policy",
    "settings",
    "expect",
    "reason_contains",
    "cases",
];
/// Keys of one case of `cases` besides the wrapper's.
pub const FIXTURE_CASE_KEYS: &[&str] = &[
    "name",
    "description",
    "policy",
    "settings",
    "expect",
    "reason_contains",
];
pub const EXPECTATIONS: &[&str] = &["allow", "deny", "require_approval", "hidden"];

/// One request, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Input {
    pub message: Message,
    pub context: RequestContext,
    /// Tool definitions as the upstream's `tools/list` would give them.
    pub tools: Vec<Value>,
}

/// Reads one JSON document from `path` (`-`: stdin). `what` names it in messages.
pub fn read_document(path: &Path) -> anyhow::Result<Value> {
    let (text, name) = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the request from stdin")?;
        (s, "stdin".to_owned())
    } else {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (s, path.display().to_string())
    };
    parse_document(&text, &name)
}

pub fn parse_document(text: &str, name: &str) -> anyhow::Result<Value> {
    let mut docs = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let first = match docs.next() {
        None => bail!("{name} is empty: it must hold one JSON request"),
        Some(r) => r.with_context(|| format!("{name} is not JSON"))?,
    };
    match docs.next() {
        None => Ok(first),
        Some(Ok(_)) => bail!(
            "{name} holds more than one JSON document: give one request (from `mcp-gateway audit query … \
             --format jsonl`, select one record with --request-id ID)"
        ),
        Some(Err(e)) => Err(e).with_context(|| format!("{name} is not JSON")),
    }
}

/// Unknown keys of `obj` → an error naming the nearest known key.
pub fn check_keys(obj: &Map<String, Value>, known: &[&str], where_: &str) -> anyhow::Result<()> {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            let hint = nearest(k, known.iter().copied())
                .map(|n| format!(" — did you mean \"{n}\"?"))
                .unwrap_or_default();
            bail!(
                "{where_}: unknown key \"{k}\"{hint} (known keys: {})",
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// The expectation of a fixture, checked.
pub fn expectation(v: Option<&Value>, where_: &str) -> anyhow::Result<&'static str> {
    let Some(v) = v else {
        bail!(
            "{where_}: no \"expect\" (one of {})",
            EXPECTATIONS.join(", ")
        );
    };
    let s = v
        .as_str()
        .with_context(|| format!("{where_}: \"expect\" must be a string"))?;
    if let Some(e) = EXPECTATIONS.iter().find(|e| **e == s) {
        return Ok(e);
    }
    let hint = nearest(s, EXPECTATIONS.iter().copied())
        .map(|n| format!(" — did you mean \"{n}\"?"))
        .unwrap_or_default();
    bail!(
        "{where_}: \"expect\": \"{s}\" is not one of {}{hint}",
        EXPECTATIONS.join(", ")
    )
}

/// A request document in any of the three forms. `extra` are further keys the caller allows at the top
/// level (a fixture's); `arguments` replaces a recorded call's arguments.
pub fn request(
    doc: &Value,
    where_: &str,
    extra: &[&str],
    arguments: Option<&Value>,
) -> anyhow::Result<Input> {
    let Some(obj) = doc.as_object() else {
        if doc.is_array() {
            bail!("{where_}: a JSON array (a batch?): give one message");
        }
        bail!("{where_}: must be a JSON object (a JSON-RPC message, an audit record or a wrapper)");
    };
    if arguments.is_some() && !is_record(obj) {
        bail!("--arguments only applies to an audit record; put the arguments in the message");
    }
    if obj.contains_key("jsonrpc") && extra.is_empty() {
        return Ok(Input {
            message: message(doc, where_)?,
            context: context(None, None, where_)?,
            tools: Vec::new(),
        });
    }
    if is_record(obj) && extra.is_empty() {
        return record(obj, where_, arguments);
    }
    let known: Vec<&str> = WRAPPER_KEYS.iter().chain(extra).copied().collect();
    check_keys(obj, &known, where_)?;
    let msg = obj.get("message").with_context(|| {
        format!(
            "{where_}: no \"message\" (the JSON-RPC message to decide{})",
            if extra.is_empty() {
                "; or give the bare message itself, or an audit record"
            } else {
                ""
            }
        )
    })?;
    let mut tools = match obj.get("tools") {
        None => Vec::new(),
        Some(Value::Array(t)) => t.clone(),
        Some(_) => bail!("{where_}: \"tools\" must be a list of tool definitions"),
    };
    if let Some(t) = obj.get("tool") {
        tools.push(t.clone());
    }
    for (i, t) in tools.iter().enumerate() {
        tool(t, &format!("{where_}: tools[{i}]"))?;
    }
    Ok(Input {
        message: message(msg, where_)?,
        context: context(obj.get("context"), obj.get("principal"), where_)?,
        tools,
    })
}

fn is_record(obj: &Map<String, Value>) -> bool {
    obj.contains_key("kind") && obj.contains_key("data") && !obj.contains_key("message")
}

fn message(v: &Value, where_: &str) -> anyhow::Result<Message> {
    let parsed = jsonrpc::parse(v.to_string().as_bytes())
        .with_context(|| format!("{where_}: the message is not a valid JSON-RPC 2.0 message"))?;
    match parsed {
        Payload::Single(m) => Ok(m),
        Payload::Batch(_) => bail!("{where_}: the message is a batch: give one message"),
    }
}

fn tool(t: &Value, where_: &str) -> anyhow::Result<()> {
    let Some(obj) = t.as_object() else {
        bail!("{where_}: a tool definition must be an object with a \"name\"");
    };
    if !obj.get("name").is_some_and(Value::is_string) {
        bail!("{where_}: a tool definition needs a \"name\"");
    }
    if let Some(a) = obj.get("annotations") {
        let a = a
            .as_object()
            .with_context(|| format!("{where_}: \"annotations\" must be an object"))?;
        check_keys(a, ANNOTATION_KEYS, &format!("{where_}.annotations"))?;
        for (k, v) in a {
            if k != "title" && !v.is_boolean() {
                bail!("{where_}.annotations.{k} must be true or false");
            }
        }
    }
    Ok(())
}

fn principal(p: &Value, where_: &str) -> anyhow::Result<Principal> {
    let obj = p.as_object().with_context(|| {
        format!("{where_}: must be an object {{\"subject\": …, \"claims\": {{…}}}}")
    })?;
    check_keys(obj, PRINCIPAL_KEYS, where_)?;
    let subject = obj
        .get("subject")
        .and_then(Value::as_str)
        .with_context(|| format!("{where_}: needs a \"subject\" (the token's `sub`)"))?;
    let claims = match obj.get("claims") {
        None => Value::Object(Map::new()),
        Some(c @ Value::Object(_)) => c.clone(),
        Some(_) => bail!("{where_}.claims must be an object"),
    };
    Ok(Principal {
        subject: subject.to_owned(),
        claims: claims.to_string(),
    })
}

fn context(
    ctx: Option<&Value>,
    top_principal: Option<&Value>,
    where_: &str,
) -> anyhow::Result<RequestContext> {
    let empty = Map::new();
    let obj = match ctx {
        None => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => bail!("{where_}: \"context\" must be an object"),
    };
    check_keys(obj, CONTEXT_KEYS, &format!("{where_}: context"))?;
    let s = |k: &str| -> anyhow::Result<Option<String>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => bail!("{where_}: context.{k} must be a string"),
        }
    };
    let principal = match (obj.get("principal"), top_principal) {
        (Some(_), Some(_)) => {
            bail!("{where_}: the principal is given twice (\"principal\" and context.principal)")
        }
        (Some(p), None) => Some(principal(p, &format!("{where_}: context.principal"))?),
        (None, Some(p)) => Some(principal(p, &format!("{where_}: principal"))?),
        (None, None) => None,
    };
    Ok(RequestContext {
        route: s("route")?.unwrap_or_else(|| "test".into()),
        host: s("host")?.unwrap_or_else(|| "test.local".into()),
        client_address: s("client_address")?.unwrap_or_else(|| "127.0.0.1".into()),
        principal,
        session_id: s("session_id")?,
        protocol_version: s("protocol_version")?,
        request_id: s("request_id")?.unwrap_or_else(|| "cli".into()),
    })
}

/// An audit decision record (the envelope `{"seq", "time", "kind": "decision", "data": {…}}`) → the call it
/// decided. Never guesses: what the record does not keep is an error that says how to supply it.
fn record(
    obj: &Map<String, Value>,
    where_: &str,
    arguments: Option<&Value>,
) -> anyhow::Result<Input> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "decision" {
        bail!(
            "{where_}: an audit record of kind `{kind}`; only `decision` records hold a request to evaluate"
        );
    }
    let data = obj
        .get("data")
        .and_then(Value::as_object)
        .with_context(|| format!("{where_}: the record's \"data\" is not an object"))?;
    let s = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
    let method = s("method").unwrap_or_default();
    if method != "tools/call" {
        bail!(
            "{where_}: a decision record of `{method}`: only tools/call records can be evaluated (the log does \
             not keep other methods' params); use the wrapper form with the message"
        );
    }
    let tool = s("tool").with_context(|| format!("{where_}: the record names no tool"))?;
    let args = match (arguments, data.get("arguments")) {
        (Some(a), _) => a.clone(),
        (None, Some(a)) => a.clone(),
        (None, None) if data.contains_key("arguments_digest") => bail!(
            "{where_}: the record keeps only a digest of the arguments (audit redaction `digest`); give them \
             with --arguments JSON, or record this tool with `redact: full` (audit.redact_tools)"
        ),
        (None, None) => bail!(
            "{where_}: the record keeps no arguments (audit redaction `omit`); give them with --arguments JSON"
        ),
    };
    let mut msg = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": { "name": tool, "arguments": args },
    });
    msg["id"] = data.get("rpc_id").cloned().unwrap_or(Value::from(1));
    let principal = s("principal").map(|subject| Principal {
        subject,
        claims: data
            .get("principal_claims")
            .cloned()
            .unwrap_or(Value::Object(Map::new()))
            .to_string(),
    });
    Ok(Input {
        message: message(&msg, where_)?,
        context: RequestContext {
            route: s("route").unwrap_or_else(|| "test".into()),
            host: s("host").unwrap_or_else(|| "test.local".into()),
            client_address: s("client").unwrap_or_else(|| "127.0.0.1".into()),
            principal,
            session_id: s("session_id"),
            protocol_version: s("protocol_version"),
            request_id: s("request_id").unwrap_or_else(|| "cli".into()),
        },
        tools: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typos_name_the_nearest_key() {
        let e = request(
            &json!({"message": {"jsonrpc":"2.0","id":1,"method":"ping"}, "principle": {"subject":"a"}}),
            "f.json",
            FIXTURE_FILE_KEYS,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown key \"principle\" — did you mean \"principal\"?"),
            "{e}"
        );
        let e = expectation(Some(&json!("alow")), "f.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean \"allow\""), "{e}");
        let e = request(
            &json!({"message": {"jsonrpc":"2.0","id":1,"method":"ping"},
                    "tools": [{"name":"x","annotations":{"readonlyHint":true}}]}),
            "f.json",
            &[],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("did you mean \"readOnlyHint\""), "{e}");
    }

    #[test]
    fn a_digest_only_record_needs_the_arguments() {
        let rec = json!({"seq": 3, "kind": "decision", "data": {"method": "tools/call", "tool": "x",
            "arguments_digest": "sha256:00", "arguments_size": 2, "decision": "allow", "policies": [],
            "request_id": "r"}});
        let e = request(&rec, "stdin", &[], None).unwrap_err().to_string();
        assert!(e.contains("--arguments"), "{e}");
        let i = request(&rec, "stdin", &[], Some(&json!({"a": 1}))).unwrap();
        assert_eq!(i.context.request_id, "r");
    }
}
