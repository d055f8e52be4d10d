//! The wit-bindgen guest bindings for `mcp:policy@0.2.0` (world `policy`), and [`Adapter`], which implements
//! their `Guest` trait for any [`Policy`](crate::Policy) by converting the WIT types into the SDK's and
//! calling [`crate::run`]. Compiled on wasm only; [`crate::export_policy!`] is the way in.
//!
//! Export names the component ends up with (the WIT's): `validate-settings`, `evaluate`, `hidden`;
//! import: `mcp:policy/log@0.2.0` (`log`).

// The generated code is the canonical-ABI glue (raw pointers into linear memory, `export_name`d extern
// functions, `link_section` statics) and cannot be written without `unsafe`. The workspace forbids unsafe
// code; this crate only denies it so that this one module, and nothing else, can opt out.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    world: "policy",
    path: "../wit",
    // Let downstream policy crates export through `policy_sdk::export_policy!`: the export macro is
    // `#[macro_export]`ed under a name that does not collide with anything a user writes, and finds the
    // bindings here.
    pub_export_macro: true,
    export_macro_name: "__export_policy_world",
    default_bindings_module: "::policy_sdk::bindings",
});

use crate as sdk;
use core::marker::PhantomData;
use mcp::policy::log as wit_log;
use mcp::policy::types as wit;

/// Implements the generated `Guest` trait for policy `P`. Named (through a type alias) by the expansion of
/// `export_policy!`; not meant to be used directly.
pub struct Adapter<P>(PhantomData<P>);

impl<P: sdk::Policy> Guest for Adapter<P> {
    fn validate_settings(settings: String) -> Result<(), String> {
        sdk::run::validate_settings::<P>(&settings)
    }

    fn evaluate(settings: String, request: wit::Request) -> wit::Decision {
        match sdk::run::answer::<P>(&settings, &convert_request(request)) {
            sdk::run::Answer::Hidden => wit::Decision::Hidden,
            sdk::run::Answer::Decided(sdk::Decision::Allow) => wit::Decision::Allow,
            sdk::run::Answer::Decided(sdk::Decision::Deny(reason)) => wit::Decision::Deny(reason),
            sdk::run::Answer::Decided(sdk::Decision::RequireApproval(reason)) => {
                wit::Decision::RequireApproval(reason)
            }
        }
    }

    fn hidden(
        settings: String,
        context: wit::RequestContext,
        listing: wit::Listing,
    ) -> Vec<String> {
        let listing = match listing {
            wit::Listing::Tools(t) => {
                sdk::Listing::Tools(t.into_iter().map(convert_tool).collect())
            }
            wit::Listing::Resources(r) => sdk::Listing::Resources(
                r.into_iter()
                    .map(|r| sdk::ResourceInfo {
                        uri: r.uri,
                        name: r.name,
                        title: r.title,
                        description: r.description,
                        mime_type: r.mime_type,
                    })
                    .collect(),
            ),
            wit::Listing::ResourceTemplates(r) => sdk::Listing::ResourceTemplates(
                r.into_iter()
                    .map(|r| sdk::ResourceTemplateInfo {
                        uri_template: r.uri_template,
                        name: r.name,
                        title: r.title,
                        description: r.description,
                        mime_type: r.mime_type,
                    })
                    .collect(),
            ),
            wit::Listing::Prompts(p) => sdk::Listing::Prompts(
                p.into_iter()
                    .map(|p| sdk::PromptInfo {
                        name: p.name,
                        title: p.title,
                        description: p.description,
                        arguments: sdk::Json::from_text("prompt-info.arguments", p.arguments),
                    })
                    .collect(),
            ),
        };
        sdk::run::hidden::<P>(&settings, &convert_context(context), &listing)
    }
}

/// The host's `log` import, for [`crate::log`].
pub(crate) fn log(level: sdk::log::Level, message: &str) {
    let level = match level {
        sdk::log::Level::Debug => wit_log::Level::Debug,
        sdk::log::Level::Info => wit_log::Level::Info,
        sdk::log::Level::Warn => wit_log::Level::Warn,
        sdk::log::Level::Error => wit_log::Level::Error,
    };
    wit_log::log(level, message);
}

// JSON fields are handed over as text and parsed on first use (see `crate::Json`).

fn convert_request(r: wit::Request) -> sdk::Request {
    sdk::Request {
        context: convert_context(r.context),
        message: convert_message(r.message),
    }
}

fn convert_context(c: wit::RequestContext) -> sdk::Context {
    sdk::Context {
        route: c.route,
        host: c.host,
        client_address: c.client_address,
        principal: c.principal.map(|p| sdk::Principal {
            subject: p.subject,
            claims: sdk::Json::from_text("principal.claims", p.claims),
        }),
        session_id: c.session_id,
        protocol_version: c.protocol_version,
        request_id: c.request_id,
    }
}

fn convert_message(m: wit::Message) -> sdk::Message {
    let operation = match m.operation {
        wit::Operation::ToolCall(call) => sdk::Operation::ToolCall(sdk::ToolCall {
            arguments: sdk::Json::from_text("tool-call.arguments", call.arguments),
            name: call.name,
            tool: call.tool.map(convert_tool),
        }),
        wit::Operation::ResourceRead(uri) => sdk::Operation::ResourceRead { uri },
        wit::Operation::PromptGet(get) => sdk::Operation::PromptGet(sdk::PromptGet {
            arguments: sdk::Json::from_text("prompt-get.arguments", get.arguments),
            name: get.name,
        }),
        wit::Operation::Other => sdk::Operation::Other,
    };
    sdk::Message {
        direction: match m.direction {
            wit::Direction::ClientToServer => sdk::Direction::ClientToServer,
            wit::Direction::ServerToClient => sdk::Direction::ServerToClient,
        },
        method: m.method,
        id: m.id.map(|id| sdk::Json::from_text("message.id", id)),
        params: sdk::Json::from_text("message.params", m.params),
        operation,
    }
}

fn convert_tool(t: wit::ToolInfo) -> sdk::ToolInfo {
    sdk::ToolInfo {
        input_schema: t
            .input_schema
            .map(|s| sdk::Json::from_text("tool-info.input-schema", s)),
        name: t.name,
        title: t.title,
        description: t.description,
        annotations: sdk::Annotations {
            read_only: t.annotations.read_only,
            destructive: t.annotations.destructive,
            idempotent: t.annotations.idempotent,
            open_world: t.annotations.open_world,
        },
    }
}
