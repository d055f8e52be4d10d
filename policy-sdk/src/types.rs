//! Plain Rust mirrors of the `mcp:policy/types` WIT records, with the JSON fields as [`Json`] (read as a
//! [`serde_json::Value`], parsed on first use), plus builders so tests can make requests without a gateway.
//!
//! The gateway fills these in from the MCP message it is deciding; the SDK converts them from the
//! wit-bindgen types on wasm (see `bindings.rs`). The structs are `#[non_exhaustive]` because the WIT
//! package may gain fields within 0.2.x: build them with the constructors and `with_*` methods, read them
//! through their public fields.

use serde_json::{Value, json};
use std::fmt;

use crate::Json;

/// Everything a decision may use: where the message came from and the message itself.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Request {
    pub context: Context,
    pub message: Message,
}

/// Where and from whom a message arrived.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Context {
    /// Route key from the gateway config (e.g. `crm`).
    pub route: String,
    /// Host name the client used (e.g. `crm.abcd.tunnel.anthropic.com`).
    pub host: String,
    /// Client IP address as text.
    pub client_address: String,
    /// The authenticated caller, when the gateway authenticated one.
    pub principal: Option<Principal>,
    /// `Mcp-Session-Id` (legacy, stateful era), if any.
    pub session_id: Option<String>,
    /// Protocol version the message is spoken in (e.g. `2025-11-25`), if known.
    pub protocol_version: Option<String>,
    /// The gateway request id: quote it when explaining a decision.
    pub request_id: String,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Principal {
    /// Token subject (`sub`).
    pub subject: String,
    /// Selected claims, as a JSON object.
    pub claims: Json,
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    pub direction: Direction,
    /// JSON-RPC method (`tools/call`, `sampling/createMessage`, …).
    pub method: String,
    /// JSON-RPC id; `None` for notifications.
    pub id: Option<Json>,
    /// `params`, or `{}` when absent.
    pub params: Json,
    /// A typed view of `method` + `params` for the operations policies most often decide on.
    pub operation: Operation,
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server: requests and notifications from the agent.
    ClientToServer,
    /// Server → client: requests the server makes of the client (sampling, elicitation, roots).
    ServerToClient,
}

/// A typed view of the operations policies most often decide on. Match with a `_` arm: new operations may
/// be added within the 0.2 contract.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Operation {
    /// `tools/call`.
    ToolCall(ToolCall),
    /// `resources/read`.
    ResourceRead { uri: String },
    /// `prompts/get`.
    PromptGet(PromptGet),
    /// Any other method: decide from [`Message::method`] and [`Message::params`].
    Other,
}

/// `tools/call`, typed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolCall {
    pub name: String,
    /// The `arguments` object (`{}` when absent).
    pub arguments: Json,
    /// The tool as listed by the upstream's `tools/list`; `None` when the upstream does not list it.
    pub tool: Option<ToolInfo>,
}

impl ToolCall {
    /// The tool's annotations, or the MCP spec defaults when the upstream does not list the tool: an
    /// unknown tool counts as destructive, not read-only and open-world.
    pub fn annotations(&self) -> Annotations {
        self.tool
            .as_ref()
            .map(|t| t.annotations)
            .unwrap_or_default()
    }

    /// The argument at a JSON pointer (`/query`, `/filter/0/value`), if present.
    pub fn argument(&self, pointer: &str) -> Option<&Value> {
        self.arguments.pointer(pointer)
    }
}

/// `prompts/get`, typed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PromptGet {
    pub name: String,
    /// The `arguments` object (`{}` when absent).
    pub arguments: Json,
}

/// What the gateway knows of a tool from the upstream's `tools/list`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolInfo {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Annotations with the spec defaults applied where the server declared none.
    pub annotations: Annotations,
    /// The tool's `inputSchema`.
    pub input_schema: Option<Json>,
}

/// MCP tool annotations (hints from the server, not guarantees). [`Annotations::default`] is the MCP spec
/// default, which is what the gateway sends for hints a server did not declare: not read-only,
/// destructive, not idempotent, open-world. Per the spec, `destructive` and `idempotent` only mean
/// something when `read_only` is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Default for Annotations {
    fn default() -> Self {
        Annotations {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        }
    }
}

impl Annotations {
    /// Whether the tool may make destructive updates, with the spec's meaning: `destructiveHint` only counts
    /// for a tool that is not read-only. Use this rather than the `destructive` field, which keeps the
    /// spec default (`true`) for a tool that declared only `readOnlyHint: true`, so that `if a.destructive`
    /// would hold read-only tools for approval.
    pub fn is_destructive(&self) -> bool {
        !self.read_only && self.destructive
    }

    /// Whether calling the tool again with the same arguments has no further effect, with the spec's
    /// meaning: a read-only tool has no effect at all, so it is; otherwise `idempotentHint` says.
    pub fn is_idempotent(&self) -> bool {
        self.read_only || self.idempotent
    }
}

/// A policy's answer. Reasons are shown to the agent (and so to the model): say what was refused and why,
/// never secrets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny(String),
    RequireApproval(String),
}

impl Decision {
    pub fn allow() -> Self {
        Decision::Allow
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny(reason.into())
    }

    pub fn require_approval(reason: impl Into<String>) -> Self {
        Decision::RequireApproval(reason.into())
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    pub fn is_deny(&self) -> bool {
        matches!(self, Decision::Deny(_))
    }

    pub fn is_require_approval(&self) -> bool {
        matches!(self, Decision::RequireApproval(_))
    }

    /// The reason of a deny or require-approval; `None` for allow.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Deny(r) | Decision::RequireApproval(r) => Some(r),
        }
    }

    /// The stricter of two decisions: deny over require-approval over allow; on a tie, `self`.
    /// Handy for policies that check several rules and report the one that matters.
    pub fn stricter(self, other: Decision) -> Decision {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::RequireApproval(_) => 1,
            Decision::Deny(_) => 2,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allow"),
            Decision::Deny(r) => write!(f, "deny: {r}"),
            Decision::RequireApproval(r) => write!(f, "require approval: {r}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Accessors

impl Request {
    pub fn new(context: Context, message: Message) -> Self {
        Request { context, message }
    }

    /// The JSON-RPC method (`tools/call`, …).
    pub fn method(&self) -> &str {
        &self.message.method
    }

    /// The JSON-RPC `params` (`{}` when absent).
    pub fn params(&self) -> &Value {
        &self.message.params
    }

    pub fn direction(&self) -> Direction {
        self.message.direction
    }

    /// True for a notification (a message without an id).
    pub fn is_notification(&self) -> bool {
        self.message.id.is_none()
    }

    /// The tool call, when this message is `tools/call`.
    pub fn tool_call(&self) -> Option<&ToolCall> {
        match &self.message.operation {
            Operation::ToolCall(call) => Some(call),
            _ => None,
        }
    }

    /// The resource URI, when this message is `resources/read`.
    pub fn resource_uri(&self) -> Option<&str> {
        match &self.message.operation {
            Operation::ResourceRead { uri } => Some(uri),
            _ => None,
        }
    }

    /// The prompt request, when this message is `prompts/get`.
    pub fn prompt_get(&self) -> Option<&PromptGet> {
        match &self.message.operation {
            Operation::PromptGet(get) => Some(get),
            _ => None,
        }
    }

    /// The authenticated caller, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.context.principal.as_ref()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Builders, mostly for tests

impl Request {
    /// A client → server `tools/call` of `name` with `arguments`, on [`Context::default`], with id 1 and
    /// no tool listing (as for a tool the upstream does not list; add one with [`Request::with_tool`]).
    pub fn new_tool_call(name: impl Into<String>, arguments: Value) -> Self {
        let name = name.into();
        Request::new_method(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
    }

    /// A client → server request of `method` with `params`, on [`Context::default`], with id 1. The typed
    /// [`Operation`] is derived from the method and params as the gateway does: `tools/call` → `ToolCall`,
    /// `resources/read` → `ResourceRead`, `prompts/get` → `PromptGet`, anything else → `Other`.
    pub fn new_method(method: impl Into<String>, params: Value) -> Self {
        let method = method.into();
        let operation = operation_of(&method, &params);
        Request {
            context: Context::default(),
            message: Message {
                direction: Direction::ClientToServer,
                method,
                id: Some(json!(1).into()),
                params: params.into(),
                operation,
            },
        }
    }

    /// Sets the upstream's listing of the called tool.
    ///
    /// # Panics
    /// When the request is not a `tools/call`: a test that does this is wrong.
    pub fn with_tool(mut self, tool: ToolInfo) -> Self {
        match &mut self.message.operation {
            Operation::ToolCall(call) => call.tool = Some(tool),
            other => panic!("Request::with_tool on a request that is not tools/call: {other:?}"),
        }
        self
    }

    pub fn with_context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.context.principal = Some(principal);
        self
    }

    pub fn with_route(mut self, route: impl Into<String>) -> Self {
        self.context.route = route.into();
        self
    }

    pub fn with_direction(mut self, direction: Direction) -> Self {
        self.message.direction = direction;
        self
    }

    /// Makes the message a notification (no id).
    pub fn notification(mut self) -> Self {
        self.message.id = None;
        self
    }
}

/// The gateway's mapping from method + params to the typed operation. Malformed params (a `tools/call`
/// without a string `name`) give `Other`, as the gateway would refuse such a message before any policy.
fn operation_of(method: &str, params: &Value) -> Operation {
    let name = || {
        params
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let arguments = || {
        params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}))
            .into()
    };
    match method {
        "tools/call" => match name() {
            Some(name) => Operation::ToolCall(ToolCall {
                name,
                arguments: arguments(),
                tool: None,
            }),
            None => Operation::Other,
        },
        "resources/read" => match params.get("uri").and_then(Value::as_str) {
            Some(uri) => Operation::ResourceRead {
                uri: uri.to_owned(),
            },
            None => Operation::Other,
        },
        "prompts/get" => match name() {
            Some(name) => Operation::PromptGet(PromptGet {
                name,
                arguments: arguments(),
            }),
            None => Operation::Other,
        },
        _ => Operation::Other,
    }
}

impl Default for Context {
    /// A context for tests: route `test`, host `test.gateway.local`, client `127.0.0.1`, no principal,
    /// protocol `2025-11-25`, request id `test-request`.
    fn default() -> Self {
        Context {
            route: "test".to_owned(),
            host: "test.gateway.local".to_owned(),
            client_address: "127.0.0.1".to_owned(),
            principal: None,
            session_id: None,
            protocol_version: Some("2025-11-25".to_owned()),
            request_id: "test-request".to_owned(),
        }
    }
}

impl Context {
    pub fn with_route(mut self, route: impl Into<String>) -> Self {
        self.route = route.into();
        self
    }

    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }
}

impl Principal {
    /// A principal with `subject` and no claims (`{}`).
    pub fn new(subject: impl Into<String>) -> Self {
        Principal {
            subject: subject.into(),
            claims: json!({}).into(),
        }
    }

    pub fn with_claims(mut self, claims: Value) -> Self {
        self.claims = claims.into();
        self
    }
}

impl ToolInfo {
    /// A tool named `name` with no title, description or schema and the spec-default annotations (as the
    /// gateway reports a tool whose server declared no annotations).
    pub fn new(name: impl Into<String>) -> Self {
        ToolInfo {
            name: name.into(),
            title: None,
            description: None,
            annotations: Annotations::default(),
            input_schema: None,
        }
    }

    /// `readOnlyHint: true`.
    pub fn read_only(mut self) -> Self {
        self.annotations.read_only = true;
        self
    }

    /// `destructiveHint: false` (the tool only makes additive changes).
    pub fn non_destructive(mut self) -> Self {
        self.annotations.destructive = false;
        self
    }

    /// `idempotentHint: true`.
    pub fn idempotent(mut self) -> Self {
        self.annotations.idempotent = true;
        self
    }

    /// `openWorldHint: false`.
    pub fn closed_world(mut self) -> Self {
        self.annotations.open_world = false;
        self
    }

    pub fn with_annotations(mut self, annotations: Annotations) -> Self {
        self.annotations = annotations;
        self
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn with_input_schema(mut self, schema: Value) -> Self {
        self.input_schema = Some(schema.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_default_is_the_spec_default() {
        let a = Annotations::default();
        assert!(!a.read_only && a.destructive && !a.idempotent && a.open_world);
    }

    #[test]
    fn a_read_only_tool_is_not_destructive_in_the_specs_meaning() {
        // Only `readOnlyHint: true` declared: `destructive` keeps the spec default, the accessor does not.
        let a = ToolInfo::new("get_user").read_only().annotations;
        assert!(a.destructive && !a.is_destructive() && a.is_idempotent());
        let unknown = Annotations::default();
        assert!(unknown.is_destructive() && !unknown.is_idempotent());
        let additive = ToolInfo::new("add_note").non_destructive().annotations;
        assert!(!additive.is_destructive() && !additive.is_idempotent());
        assert!(
            ToolInfo::new("set_flag")
                .idempotent()
                .annotations
                .is_idempotent()
        );
    }

    #[test]
    fn tool_call_builder_fills_params_and_operation() {
        let req = Request::new_tool_call("search", json!({"q": "x"}));
        assert_eq!(req.method(), "tools/call");
        assert_eq!(req.params()["name"], "search");
        let call = req.tool_call().unwrap();
        assert_eq!(call.name, "search");
        assert_eq!(call.argument("/q"), Some(&json!("x")));
        assert_eq!(call.tool, None);
        assert_eq!(call.annotations(), Annotations::default());
        assert_eq!(req.context.route, "test");
        assert!(!req.is_notification());
    }

    #[test]
    fn with_tool_sets_listing() {
        let req = Request::new_tool_call("search", json!({}))
            .with_tool(ToolInfo::new("search").read_only());
        assert!(req.tool_call().unwrap().annotations().read_only);
    }

    #[test]
    #[should_panic(expected = "not tools/call")]
    fn with_tool_on_other_method_panics() {
        let _ = Request::new_method("tools/list", json!({})).with_tool(ToolInfo::new("x"));
    }

    #[test]
    fn method_builder_types_operations() {
        let read = Request::new_method("resources/read", json!({"uri": "file:///a"}));
        assert_eq!(read.resource_uri(), Some("file:///a"));
        let prompt = Request::new_method("prompts/get", json!({"name": "p"}));
        assert_eq!(prompt.prompt_get().unwrap().arguments, json!({}));
        let list = Request::new_method("tools/list", json!({}));
        assert_eq!(list.message.operation, Operation::Other);
        assert!(list.tool_call().is_none());
        let bad = Request::new_method("tools/call", json!({"name": 3}));
        assert_eq!(bad.message.operation, Operation::Other);
    }

    #[test]
    fn stricter_orders_deny_over_approval_over_allow() {
        let allow = Decision::allow();
        let appr = Decision::require_approval("a");
        let deny = Decision::deny("d");
        assert_eq!(allow.clone().stricter(appr.clone()), appr);
        assert_eq!(appr.clone().stricter(deny.clone()), deny);
        assert_eq!(deny.clone().stricter(appr.clone()), deny);
        assert_eq!(
            Decision::deny("first")
                .stricter(Decision::deny("second"))
                .reason(),
            Some("first")
        );
        assert_eq!(deny.to_string(), "deny: d");
        assert_eq!(allow.reason(), None);
    }
}

/// What the gateway knows of a resource from the upstream's `resources/list`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceInfo {
    pub uri: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub mime_type: Option<String>,
}

impl ResourceInfo {
    /// A resource known only by its URI (as a `resources/read` names it); its name is the URI.
    pub fn new(uri: impl Into<String>) -> Self {
        let uri = uri.into();
        ResourceInfo {
            name: uri.clone(),
            uri,
            title: None,
            description: None,
            mime_type: None,
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn with_mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }
}

/// What the gateway knows of a resource template from the upstream's `resources/templates/list`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceTemplateInfo {
    /// The RFC 6570 URI template, e.g. `file:///{path}`.
    pub uri_template: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub mime_type: Option<String>,
}

impl ResourceTemplateInfo {
    pub fn new(uri_template: impl Into<String>) -> Self {
        let uri_template = uri_template.into();
        ResourceTemplateInfo {
            name: uri_template.clone(),
            uri_template,
            title: None,
            description: None,
            mime_type: None,
        }
    }
}

/// What the gateway knows of a prompt from the upstream's `prompts/list`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PromptInfo {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The prompt's `arguments` (a JSON array).
    pub arguments: Json,
}

impl PromptInfo {
    /// A prompt known only by its name (as a `prompts/get` names it).
    pub fn new(name: impl Into<String>) -> Self {
        PromptInfo {
            name: name.into(),
            title: None,
            description: None,
            arguments: Json::from(serde_json::json!([])),
        }
    }
}

/// One page of a listing, as the upstream sent it: what [`crate::Policy`]'s `hidden_*` functions are asked
/// about, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    Tools(Vec<ToolInfo>),
    Resources(Vec<ResourceInfo>),
    ResourceTemplates(Vec<ResourceTemplateInfo>),
    Prompts(Vec<PromptInfo>),
}

impl Listing {
    /// Every entry's identifier as `hidden` answers it: tool and prompt names, resource URIs and templates.
    pub fn ids(&self) -> Vec<String> {
        match self {
            Listing::Tools(t) => t.iter().map(|t| t.name.clone()).collect(),
            Listing::Resources(r) => r.iter().map(|r| r.uri.clone()).collect(),
            Listing::ResourceTemplates(r) => r.iter().map(|r| r.uri_template.clone()).collect(),
            Listing::Prompts(p) => p.iter().map(|p| p.name.clone()).collect(),
        }
    }
}
