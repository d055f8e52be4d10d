//! What a policy sees: the WIT request built from a parsed message, the request context, and the tool
//! catalogue (annotations with spec defaults applied).

use serde_json::Value;

use super::bindings::types::{
    Direction, Message as WitMessage, Operation, Principal, PromptGet, PromptInfo, Request,
    RequestContext, ResourceInfo, ResourceTemplateInfo, ToolAnnotations, ToolCall, ToolInfo,
};
use super::verdict::Hideable;
use crate::ctx::RequestCtx;
use crate::mcp::Message;

/// The request context every policy call gets.
pub fn context(ctx: &RequestCtx) -> RequestContext {
    RequestContext {
        route: ctx.route.clone().unwrap_or_default(),
        host: ctx.host.clone().unwrap_or_default(),
        client_address: ctx.conn.peer.ip().to_canonical().to_string(),
        principal: ctx.principal.as_ref().map(|p| Principal {
            subject: p.subject().to_owned(),
            claims: Value::Object(p.claims().clone()).to_string(),
        }),
        session_id: ctx.session_id.clone(),
        protocol_version: ctx.protocol_version.clone(),
        request_id: ctx.id_str().to_owned(),
    }
}

/// A tool as listed by an upstream (`tools/list` entry), with the spec's annotation defaults applied.
pub fn tool_info(tool: &Value) -> Option<ToolInfo> {
    let name = tool.get("name")?.as_str()?.to_owned();
    let ann = tool.get("annotations");
    let hint = |k: &str, default: bool| {
        ann.and_then(|a| a.get(k))
            .and_then(Value::as_bool)
            .unwrap_or(default)
    };
    Some(ToolInfo {
        name,
        title: tool.get("title").and_then(Value::as_str).map(str::to_owned),
        description: tool
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        annotations: ToolAnnotations {
            read_only: hint("readOnlyHint", false),
            destructive: hint("destructiveHint", true),
            idempotent: hint("idempotentHint", false),
            open_world: hint("openWorldHint", true),
        },
        input_schema: tool.get("inputSchema").map(Value::to_string),
    })
}

/// A tool the upstream does not list: name only, every annotation at its (most cautious) spec default.
pub fn unknown_tool(name: &str) -> ToolInfo {
    ToolInfo {
        name: name.to_owned(),
        title: None,
        description: None,
        annotations: ToolAnnotations {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        },
        input_schema: None,
    }
}

/// The WIT request for a request or notification travelling `direction`. `None` for responses (which carry no
/// method).
pub fn request(
    context: RequestContext,
    msg: &Message,
    tool: Option<ToolInfo>,
    direction: Direction,
) -> Option<Request> {
    let method = msg.method()?.to_owned();
    let params = msg
        .params()
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let str_param = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
    let args = || {
        params
            .get("arguments")
            .map(Value::to_string)
            .unwrap_or_else(|| "{}".into())
    };
    let operation = match method.as_str() {
        "tools/call" => match str_param("name") {
            Some(name) => Operation::ToolCall(ToolCall {
                name,
                arguments: args(),
                tool,
            }),
            None => Operation::Other,
        },
        "resources/read" => str_param("uri")
            .map(Operation::ResourceRead)
            .unwrap_or(Operation::Other),
        "prompts/get" => match str_param("name") {
            Some(name) => Operation::PromptGet(PromptGet {
                name,
                arguments: args(),
            }),
            None => Operation::Other,
        },
        _ => Operation::Other,
    };
    Some(Request {
        context,
        message: WitMessage {
            direction,
            method,
            id: msg.id().map(|i| i.to_value().to_string()),
            params: params.to_string(),
            operation,
        },
    })
}

/// The tool name a `tools/call` names.
pub fn called_tool(msg: &Message) -> Option<&str> {
    (msg.method()? == "tools/call")
        .then(|| msg.params()?.get("name")?.as_str())
        .flatten()
}

/// What a `tools/call`, `resources/read` or `prompts/get` names (a tool, a resource URI, a prompt): what a
/// policy may answer `hidden` about.
pub fn hideable(msg: &Message) -> Option<(Hideable, &str)> {
    let (kind, key) = match msg.method()? {
        "tools/call" => (Hideable::Tool, "name"),
        "resources/read" => (Hideable::Resource, "uri"),
        "prompts/get" => (Hideable::Prompt, "name"),
        _ => return None,
    };
    Some((kind, msg.params()?.get(key)?.as_str()?))
}

fn opt_str(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// A resource as listed by an upstream (`resources/list` entry); `None` without a string `uri`.
pub fn resource_info(r: &Value) -> Option<ResourceInfo> {
    let uri = opt_str(r, "uri")?;
    Some(ResourceInfo {
        name: opt_str(r, "name").unwrap_or_else(|| uri.clone()),
        uri,
        title: opt_str(r, "title"),
        description: opt_str(r, "description"),
        mime_type: opt_str(r, "mimeType"),
    })
}

/// A resource template as listed (`resources/templates/list` entry); `None` without a string `uriTemplate`.
pub fn resource_template_info(r: &Value) -> Option<ResourceTemplateInfo> {
    let uri_template = opt_str(r, "uriTemplate")?;
    Some(ResourceTemplateInfo {
        name: opt_str(r, "name").unwrap_or_else(|| uri_template.clone()),
        uri_template,
        title: opt_str(r, "title"),
        description: opt_str(r, "description"),
        mime_type: opt_str(r, "mimeType"),
    })
}

/// A prompt as listed (`prompts/list` entry); `None` without a string `name`.
pub fn prompt_info(p: &Value) -> Option<PromptInfo> {
    Some(PromptInfo {
        name: opt_str(p, "name")?,
        title: opt_str(p, "title"),
        description: opt_str(p, "description"),
        arguments: p
            .get("arguments")
            .map(Value::to_string)
            .unwrap_or_else(|| "[]".into()),
    })
}
