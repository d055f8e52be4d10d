//! Strict JSON-RPC 2.0 parsing of a POST body: one message, or a batch whose every element is a message.
//!
//! Strict means: duplicate object keys are an error at any depth (a parser differential between us and the
//! upstream — "first key wins" vs "last key wins" — would be a policy bypass), trailing bytes are an error,
//! and the envelope must be exactly JSON-RPC 2.0. The original bytes are what gets forwarded, so what the
//! upstream parses is what was decided on.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not a JSON-RPC message we will forward.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("Parse error: {0}")]
    Json(String),
    #[error("Invalid Request: {0}")]
    Invalid(String),
}

impl ParseError {
    /// The JSON-RPC code of a body that is not JSON.
    pub const JSON_CODE: i64 = -32700;
    /// The JSON-RPC code of JSON that is not a valid request.
    pub const INVALID_CODE: i64 = -32600;

    /// The JSON-RPC error code the spec assigns.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => Self::JSON_CODE,
            ParseError::Invalid(_) => Self::INVALID_CODE,
        }
    }
}

/// A JSON-RPC request id: string or number.
#[derive(Debug, Clone, PartialEq)]
pub enum Id {
    Str(String),
    Num(Number),
}

impl Id {
    pub fn to_value(&self) -> Value {
        match self {
            Id::Str(s) => Value::String(s.clone()),
            Id::Num(n) => Value::Number(n.clone()),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Str(s) => write!(f, "{s:?}"),
            Id::Num(n) => write!(f, "{n}"),
        }
    }
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Id,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A client's answer to a server→client request (sampling, elicitation, roots).
    Response {
        id: Option<Id>,
        result: Result<Value, Value>,
    },
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    pub fn id(&self) -> Option<&Id> {
        match self {
            Message::Request { id, .. } => Some(id),
            Message::Response { id, .. } => id.as_ref(),
            Message::Notification { .. } => None,
        }
    }

    pub fn params(&self) -> Option<&Value> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => {
                params.as_ref()
            }
            Message::Response { .. } => None,
        }
    }
}

/// A POST body: a single message or a batch (2025-03-26 only, but policed element by element whenever sent).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Single(Message),
    Batch(Vec<Message>),
}

impl Payload {
    pub fn messages(&self) -> &[Message] {
        match self {
            Payload::Single(m) => std::slice::from_ref(m),
            Payload::Batch(v) => v,
        }
    }

    /// Whether every message is a notification or a response (the upstream answers 202 with no body).
    pub fn expects_no_response(&self) -> bool {
        self.messages()
            .iter()
            .all(|m| !matches!(m, Message::Request { .. }))
    }
}

/// Parses a body strictly.
pub fn parse(body: &[u8]) -> Result<Payload, ParseError> {
    match parse_value(body)? {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ParseError::Invalid("empty batch".into()));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    message(v).map_err(|e| ParseError::Invalid(format!("batch element {i}: {e}")))
                })
                .collect::<Result<_, _>>()
                .map(Payload::Batch)
        }
        v => message(v).map(Payload::Single).map_err(ParseError::Invalid),
    }
}

/// Parses one JSON value as strictly as [`parse`] does (duplicate keys at any depth, trailing bytes, lone
/// surrogates, `NaN`, a byte-order mark and nesting past serde_json's limit are all errors), without asking
/// it to be JSON-RPC. Used for what upstreams answer: a value the gateway cannot read is never passed on.
pub fn parse_value(body: &[u8]) -> Result<Value, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let StrictValue(value) =
        StrictValue::deserialize(&mut de).map_err(|e| ParseError::Json(e.to_string()))?;
    de.end().map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(value)
}

/// Reads one JSON-RPC message from a parsed value.
pub fn message(v: Value) -> Result<Message, String> {
    let Value::Object(mut o) = v else {
        return Err("a JSON-RPC message must be an object".into());
    };
    match o.remove("jsonrpc") {
        Some(Value::String(s)) if s == "2.0" => {}
        Some(other) => return Err(format!("\"jsonrpc\" must be \"2.0\", got {other}")),
        None => return Err("missing \"jsonrpc\": \"2.0\"".into()),
    }
    let id = match o.remove("id") {
        None => None,
        Some(Value::String(s)) => Some(Some(Id::Str(s))),
        Some(Value::Number(n)) => Some(Some(Id::Num(n))),
        Some(Value::Null) => Some(None),
        Some(other) => return Err(format!("\"id\" must be a string or a number, got {other}")),
    };
    let method = o.remove("method");
    let (result, error) = (o.remove("result"), o.remove("error"));
    match method {
        Some(Value::String(method)) => {
            if result.is_some() || error.is_some() {
                return Err("a request carries \"result\" or \"error\"".into());
            }
            let params = match o.remove("params") {
                None => None,
                Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
                Some(other) => {
                    return Err(format!(
                        "\"params\" must be an object or an array, got {other}"
                    ));
                }
            };
            match id {
                None => Ok(Message::Notification { method, params }),
                Some(Some(id)) => Ok(Message::Request { id, method, params }),
                Some(None) => Err("a request id must not be null".into()),
            }
        }
        Some(other) => Err(format!("\"method\" must be a string, got {other}")),
        None => {
            let id = id.ok_or("a message without \"method\" must be a response with an \"id\"")?;
            match (result, error) {
                (Some(r), None) if id.is_some() => Ok(Message::Response { id, result: Ok(r) }),
                (Some(_), None) => Err("a result must carry a non-null id".into()),
                (None, Some(e)) => {
                    let ok = e.get("code").is_some_and(|c| c.is_i64())
                        && e.get("message").is_some_and(|m| m.is_string());
                    if !ok {
                        return Err("\"error\" must be an object with an integer \"code\" and a string \"message\"".into());
                    }
                    Ok(Message::Response { id, result: Err(e) })
                }
                _ => Err("a response must carry exactly one of \"result\" and \"error\"".into()),
            }
        }
    }
}

/// A JSON value that refuses duplicate object keys while it is built (one pass, no second parse).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate object key {key:?}"
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;
