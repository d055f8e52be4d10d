//! The one place that turns errors into wire responses.
//!
//! Transport-level refusals (routing, IP gate, malformed or oversized bodies, header mismatch, upstream down)
//! are HTTP errors with a JSON-RPC error body naming the gateway request id; internals (addresses, resolver
//! errors) stay in the log. Policy decisions never come through here as HTTP 4xx: they are MCP answers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{Body, full};
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::error_class::ErrorClass;
use crate::forward::ForwardError;
use crate::identity::IdentityError;
use crate::mcp::ParseError;
use crate::route::RouteError;
use crate::upstream_gate::GateError;

/// JSON-RPC codes for gateway transport errors (implementation-defined server-error range).
mod code {
    pub const ROUTING: i64 = -32001;
    pub const IP_GATE: i64 = -32002;
    pub const UPSTREAM: i64 = -32003;
    pub const AUDIT: i64 = -32004;
    pub const UNAUTHENTICATED: i64 = -32005;
    pub const REQUEST: i64 = -32600;
}

/// The status and JSON-RPC code of an error, by its class.
fn status_code(class: ErrorClass) -> (StatusCode, i64) {
    match class {
        ErrorClass::NoRoute | ErrorClass::SniMismatch | ErrorClass::BadHost => {
            (StatusCode::MISDIRECTED_REQUEST, code::ROUTING)
        }
        ErrorClass::IpNotAllowed | ErrorClass::Unresolvable => {
            (StatusCode::BAD_GATEWAY, code::IP_GATE)
        }
        ErrorClass::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, code::REQUEST),
        ErrorClass::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, code::REQUEST),
        ErrorClass::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, code::REQUEST),
        ErrorClass::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, code::REQUEST),
        ErrorClass::BodyRead => (StatusCode::BAD_REQUEST, code::REQUEST),
        ErrorClass::JsonParse => (StatusCode::BAD_REQUEST, ParseError::JSON_CODE),
        ErrorClass::InvalidJsonRpc => (StatusCode::BAD_REQUEST, ParseError::INVALID_CODE),
        ErrorClass::HeaderMismatch => (StatusCode::BAD_REQUEST, crate::mcp::HeaderMismatch::CODE),
        ErrorClass::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, code::UPSTREAM),
        ErrorClass::UpstreamUnavailable | ErrorClass::Unfilterable => {
            (StatusCode::BAD_GATEWAY, code::UPSTREAM)
        }
        ErrorClass::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, code::AUDIT),
        ErrorClass::IdentityUnavailable => (StatusCode::SERVICE_UNAVAILABLE, code::UNAUTHENTICATED),
        ErrorClass::Unauthenticated => (StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED),
    }
}

/// The caller-safe message of an error (its class decides everything else; this needs the error's data).
fn message(err: &GatewayError, ctx: &RequestCtx) -> String {
    let route = ctx.route.as_deref().unwrap_or("?");
    match err {
        GatewayError::Route(RouteError::NoRoute { host }) => {
            format!("No route configured for host '{host}'")
        }
        GatewayError::Route(RouteError::SniMismatch { host, sni }) => format!(
            "Host '{host}' does not match TLS SNI '{sni}'; requests are only served for the host the connection was opened for"
        ),
        GatewayError::Route(
            e @ (RouteError::MissingHost | RouteError::BadHost { .. } | RouteError::MissingSni),
        ) => capitalize(&e.to_string()),
        GatewayError::Gate(GateError::NotAllowed { .. }) => format!(
            "IP validation failed: the upstream address of route '{route}' is not in allowed_ips"
        ),
        GatewayError::Gate(GateError::Resolve { .. } | GateError::NoAddress { .. }) => {
            format!("Cannot resolve the upstream of route '{route}'")
        }
        GatewayError::Mcp(e) => e.to_string(),
        GatewayError::Forward(ForwardError::Timeout { timeout, .. }) => {
            format!("The upstream of route '{route}' did not answer within {timeout:?}")
        }
        GatewayError::Forward(ForwardError::Unavailable { .. } | ForwardError::Request(_)) => {
            format!("The upstream of route '{route}' is unavailable")
        }
        GatewayError::Filter(_) => format!(
            "The upstream of route '{route}' sent an answer the gateway cannot read, so it is withheld"
        ),
        GatewayError::Audit(_) => "The gateway cannot record this request in its audit log, so it was not forwarded; retry later".to_owned(),
        GatewayError::Identity(_) if err.class() == ErrorClass::IdentityUnavailable => "The gateway cannot verify bearer tokens right now (its identity provider's keys are unavailable); retry later".to_owned(),
        GatewayError::Identity(u) => format!("Unauthorized: {}", u.error.description()),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The wire response for an error.
pub fn error(ctx: &RequestCtx, err: &GatewayError) -> Response<Body> {
    let (status, code) = status_code(err.class());
    let message = message(err, ctx);
    let mut data = json!({ "request_id": ctx.id_str(), "reason": err.kind() });
    if let GatewayError::Route(
        RouteError::NoRoute { host } | RouteError::SniMismatch { host, .. },
    ) = err
    {
        data["host"] = Value::String(host.clone());
    }
    if let GatewayError::Identity(u) = err {
        data["identity"] = Value::String(u.error.kind().to_owned());
    }
    let body = json!({
        "jsonrpc": "2.0",
        "id": request_id_value(ctx),
        "error": { "code": code, "message": message, "data": data },
    });
    let mut resp = json_response(status, &body);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if let GatewayError::Identity(u) = err
        && status == StatusCode::UNAUTHORIZED
    {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge(u));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    }
    resp
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3, RFC 9728 §5.1, MCP authorization): a request
/// without credentials gets no error code (RFC 6750 §3.1); a presented token that failed gets
/// `error="invalid_token"` with a caller-safe description.
fn challenge(u: &crate::identity::Unauthenticated) -> HeaderValue {
    let mut v = format!(
        "Bearer realm=\"mcp-gateway\", resource_metadata=\"{}\"",
        u.resource_metadata
    );
    if !matches!(u.error, IdentityError::Missing) {
        v.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{}\"",
            u.error.description()
        ));
    }
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"mcp-gateway\""))
}

/// A gateway-made JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// JSON-RPC code for a request refused by policy: an application code outside -32768..-32000, as the
/// 2026-07-28 spec requires for application errors.
pub const POLICY_DENIED: i64 = -31001;
/// A batch element that was allowed but not forwarded because another element was refused.
pub const BATCH_NOT_FORWARDED: i64 = -31002;

/// The answer to a request the policy chain refused: HTTP 200 always (a 4xx would tear real clients'
/// sessions down), with per message:
/// - a hidden tool → JSON-RPC `-32602 Unknown tool: X` (does not reveal that it exists);
/// - a refused `tools/call` → a `CallToolResult` with `isError: true` naming the policy, the reason and the
///   request id, so the model reads why and does not retry;
/// - any other refused request → a JSON-RPC error with code [`POLICY_DENIED`];
/// - notifications and client responses → nothing (they are dropped, not forwarded).
pub fn policy_answer(ctx: &RequestCtx, refused: &crate::policy::Refused) -> Response<Body> {
    use crate::mcp::{Inbound, Message, Payload};
    use crate::policy::verdict::{Hideable, Outcome};
    let Inbound::Post {
        payload, modern, ..
    } = &refused.inbound
    else {
        unreachable!("only POSTed messages are refused by policy")
    };
    let id = ctx.id_str();
    let answers: Vec<Value> = payload
        .messages()
        .iter()
        .zip(&refused.verdicts)
        .filter_map(|(msg, verdict)| {
            let Message::Request { id: rpc_id, method, .. } = msg else { return None };
            let rpc_id = rpc_id.to_value();
            Some(match &verdict.outcome {
                Outcome::Allow => rpc_error(rpc_id, BATCH_NOT_FORWARDED, "Not forwarded: another message in this batch was refused by policy", json!({"request_id": id})),
                // As the SDK servers answer for what does not exist.
                Outcome::Hidden { kind: Hideable::Tool, name, .. } => rpc_error(rpc_id, -32602, &format!("Unknown tool: {name}"), json!({"request_id": id})),
                Outcome::Hidden { kind: Hideable::Prompt, name, .. } => rpc_error(rpc_id, -32602, &format!("Unknown prompt: {name}"), json!({"request_id": id})),
                Outcome::Hidden { kind: Hideable::Resource, name, .. } => rpc_error(rpc_id, -32002, &format!("Resource not found: {name}"), json!({"request_id": id, "uri": name})),
                Outcome::Deny { policy, reason } | Outcome::RequireApproval { policy, reason } => {
                    let approval = matches!(verdict.outcome, Outcome::RequireApproval { .. });
                    let text = if approval {
                        format!(
                            "Approval required by policy '{policy}': {reason}. The call was not executed: it needs a human approval, \
                             and this gateway has no approval workflow for it (`approvals:` is not configured, or the call is \
                             part of a batch). Gateway request id: {id}."
                        )
                    } else {
                        format!("Blocked by policy '{policy}': {reason}. Do not retry this call. Gateway request id: {id}.")
                    };
                    if method == "tools/call" {
                        let mut result = json!({"content": [{"type": "text", "text": text}], "isError": true});
                        if *modern {
                            result["resultType"] = json!("complete");
                        }
                        json!({"jsonrpc": "2.0", "id": rpc_id, "result": result})
                    } else {
                        let kind = if approval { "approval_required" } else { "denied" };
                        rpc_error(rpc_id, POLICY_DENIED, &text, json!({"request_id": id, "policy": &**policy, "reason": reason, "decision": kind}))
                    }
                }
            })
        })
        .collect();
    let body = match (payload, answers.len()) {
        (_, 0) => {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::ACCEPTED;
            return resp;
        }
        (Payload::Single(_), _) => answers.into_iter().next().expect("one answer"),
        (Payload::Batch(_), _) => Value::Array(answers),
    };
    json_response(StatusCode::OK, &body)
}

/// The answer to a `tools/call` whose arguments break the tool's `inputSchema`: an input error the model can
/// fix, so a tool result with `isError: true` (HTTP 200), listing the violated constraints.
pub fn invalid_arguments(
    ctx: &RequestCtx,
    inbound: &crate::mcp::Inbound,
    invalid: &[crate::arguments::InvalidArguments],
) -> Response<Body> {
    use crate::mcp::{Inbound, Message, Payload};
    let Inbound::Post {
        payload, modern, ..
    } = inbound
    else {
        unreachable!("only POSTed calls carry arguments")
    };
    let id = ctx.id_str();
    let answer = |bad: &crate::arguments::InvalidArguments| {
        let text = format!(
            "Invalid arguments for tool '{}': {}. Fix the arguments and call again. Gateway request id: {id}.",
            bad.tool,
            bad.errors.join("; "),
        );
        let mut result = json!({"content": [{"type": "text", "text": text}], "isError": true});
        if *modern {
            result["resultType"] = json!("complete");
        }
        json!({"jsonrpc": "2.0", "id": bad.rpc_id, "result": result})
    };
    let body = match payload {
        Payload::Single(_) => answer(&invalid[0]),
        Payload::Batch(messages) => Value::Array(
            messages
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let Message::Request { id: rpc_id, .. } = m else {
                        return None;
                    };
                    Some(match invalid.iter().find(|b| b.index == i) {
                        Some(bad) => answer(bad),
                        None => rpc_error(
                            rpc_id.to_value(),
                            BATCH_NOT_FORWARDED,
                            "Not forwarded: another call in this batch has invalid arguments",
                            json!({"request_id": id}),
                        ),
                    })
                })
                .collect(),
        ),
    };
    json_response(StatusCode::OK, &body)
}

/// A gateway-made `tools/call` result with `isError: true` and `text` (HTTP 200).
pub fn tool_error(ctx: &RequestCtx, modern: bool, text: &str) -> Response<Body> {
    let mut result = json!({"content": [{"type": "text", "text": text}], "isError": true});
    if modern {
        result["resultType"] = json!("complete");
    }
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": request_id_value(ctx), "result": result}),
    )
}

/// The JSON-RPC id of the request being answered (`null` when it has none).
fn request_id_value(ctx: &RequestCtx) -> Value {
    ctx.rpc_id
        .as_ref()
        .map(|i| i.to_value())
        .unwrap_or(Value::Null)
}

/// A 2026-07-28 `input_required` result: the client fulfils `request` (under `key`) and retries the call
/// with the answer and `state` (caller confirmation, `approvals/caller.rs`).
pub fn input_required(ctx: &RequestCtx, key: &str, request: Value, state: &str) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": request_id_value(ctx), "result": {
            "resultType": "input_required",
            "inputRequests": {key: request},
            "requestState": state,
        }}),
    )
}

fn rpc_error(id: Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

/// The answer to a `tools/call` held for approval that is not let through: HTTP 200 with a tool result
/// `isError: true` naming the approval, and what the model (or its user) can do about it.
pub fn approval_answer(
    ctx: &RequestCtx,
    refused: &crate::policy::Refused,
    call: &crate::approvals::hold::Call,
    why: &crate::approvals::hold::Unsettled,
) -> Response<Body> {
    use crate::approvals::hold::Unsettled;
    let rid = ctx.id_str();
    let (policy, reason) = (&call.policy, &call.reason);
    let text = match why {
        Unsettled::Denied {
            id,
            approver,
            comment,
        } => format!(
            "Denied by approver '{approver}' (approval {id}){}. The call was not executed. Do not retry it unchanged. \
             Gateway request id: {rid}.",
            comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        ),
        Unsettled::Pending { id, wait } => format!(
            "Approval {id} pending: this call needs a human approval (policy '{policy}': {reason}) and was not executed \
             within {}s. Ask an approver to approve {id}, then retry the identical call (same tool and arguments). \
             Gateway request id: {rid}.",
            wait.as_secs()
        ),
        Unsettled::Expired { id } => format!(
            "Approval {id} expired before anyone decided it; the call was not executed. Calling again asks for a new \
             approval. Gateway request id: {rid}."
        ),
        Unsettled::GrantTaken { id } => format!(
            "Approval {id} was approved, but its grant was already used by another identical call; this one was not \
             executed. Calling again asks for a new approval. Gateway request id: {rid}."
        ),
        Unsettled::StoreUnavailable => format!(
            "Approval required by policy '{policy}': {reason}. The gateway cannot reach its approval store, so the call \
             was not executed; retry later. Gateway request id: {rid}."
        ),
    };
    tool_error(ctx, refused.inbound.is_modern(), &text)
}
