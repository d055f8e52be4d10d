//! Write [mcp-gateway](https://github.com/mcp-gateway/mcp-gateway) policies in Rust.
//!
//! A policy is a WebAssembly component that the gateway asks, for every MCP message on the routes that use
//! it, whether to **allow** it, **deny** it (with a reason the agent sees) or **require approval**. This
//! crate hides the component plumbing (the `mcp:policy@0.2.0` WIT contract, its JSON-as-text fields, the
//! exports): you implement [`Policy`] on plain Rust types, test it natively with `cargo test`, and
//! [`export_policy!`] turns it into the component when you build for `wasm32-wasip2`.
//!
//! # A complete policy
//!
//! ```
//! use policy_sdk::{Decision, Policy, Request, ToolInfo, Context, glob};
//! use serde::Deserialize;
//!
//! /// Settings, from the gateway config's `settings:` for this policy.
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)] // a typo in the config is an error at load, not a silently ignored key
//! pub struct Settings {
//!     /// Tool-name globs that are never allowed, e.g. `["delete_*", "drop_table"]`.
//!     block: Vec<String>,
//!     /// Principals (token subjects) that may call the blocked tools after approval.
//!     #[serde(default)]
//!     admins: Vec<String>,
//! }
//!
//! pub struct BlockTools;
//!
//! impl Policy for BlockTools {
//!     type Settings = Settings;
//!
//!     // Runs when the gateway loads the policy: an error stops it from starting, with this message.
//!     fn validate_settings(s: &Settings) -> Result<(), String> {
//!         if s.block.is_empty() {
//!             return Err(r#"`block` is empty: list tool names or globs, e.g. "block": ["delete_*"]"#.into());
//!         }
//!         Ok(())
//!     }
//!
//!     fn evaluate(s: &Settings, request: &Request) -> Decision {
//!         // Only tool calls are this policy's business; everything else passes.
//!         let Some(call) = request.tool_call() else { return Decision::allow() };
//!         let Some(rule) = glob::first_match(&s.block, &call.name) else { return Decision::allow() };
//!         let is_admin = request.principal().is_some_and(|p| s.admins.contains(&p.subject));
//!         if is_admin {
//!             Decision::require_approval(format!("`{}` is blocked by `{rule}`; admins need approval", call.name))
//!         } else {
//!             Decision::deny(format!("tool `{}` is blocked on this route (rule `{rule}`)", call.name))
//!         }
//!     }
//!
//!     // Tools nobody may call are removed from `tools/list` (only when there are no admins here).
//!     fn hidden_tools(s: &Settings, _ctx: &Context, tools: &[ToolInfo]) -> Vec<String> {
//!         if !s.admins.is_empty() {
//!             return Vec::new();
//!         }
//!         tools.iter().filter(|t| glob::matches_any(&s.block, &t.name)).map(|t| t.name.clone()).collect()
//!     }
//! }
//!
//! // On wasm: the component's exports. Natively: only a check that `BlockTools` implements `Policy`.
//! policy_sdk::export_policy!(BlockTools);
//!
//! // A native test: settings as the gateway passes them (JSON text), through the same code path the
//! // component's exports use, so invalid settings fail closed here exactly as they do in the gateway.
//! use policy_sdk::{Principal, run};
//! use serde_json::json;
//!
//! let settings = r#"{ "block": ["delete_*"], "admins": ["alice"] }"#;
//! assert_eq!(run::validate_settings::<BlockTools>(settings), Ok(()));
//!
//! let call = Request::new_tool_call("delete_user", json!({ "id": 7 }));
//! assert!(run::evaluate::<BlockTools>(settings, &call).is_deny());
//! let by_alice = call.clone().with_principal(Principal::new("alice"));
//! assert!(run::evaluate::<BlockTools>(settings, &by_alice).is_require_approval());
//! assert!(run::evaluate::<BlockTools>(settings, &Request::new_tool_call("get_user", json!({}))).is_allow());
//!
//! let err = run::validate_settings::<BlockTools>(r#"{ "block": [] }"#).unwrap_err();
//! assert!(err.contains("`block` is empty"));
//! ```
//!
//! # What the gateway guarantees, and what the SDK adds
//!
//! * Every call runs in a fresh sandbox: no state survives between calls. Everything arrives as arguments,
//!   including the settings, which the SDK parses (serde) on every call.
//! * No files, network or environment; the clocks read one instant that does not advance during an
//!   evaluation, a sleep returns at once (a policy that waits runs into its deadline and is denied as a
//!   timeout), and random bytes are the same fixed stream in every evaluation: a policy decides from the
//!   request alone (see the sandbox paragraph of `wit/policy.wit`).
//! * The SDK re-runs [`Policy::validate_settings`] before [`Policy::evaluate`] and [`Policy::hidden_tools`],
//!   so those never see settings the validation rejects. If the settings are invalid anyway, it fails
//!   closed: `evaluate` denies and `hidden` hides everything listed (see [`run`]).
//! * For a `tools/call`, [`Policy::hidden_tools`] is asked about the called tool first, in the same call: a
//!   tool the policy hides is answered as nonexistent and [`Policy::evaluate`] never sees the call
//!   ([`run::answer`]). The same holds for `resources/read` ([`Policy::hidden_resources`]) and `prompts/get`
//!   ([`Policy::hidden_prompts`]). One call into the component decides a message.
//! * JSON fields (`params`, `arguments`, input schemas, claims) are [`Json`]: read them as
//!   [`serde_json::Value`]; each is parsed the first time it is read, so a policy that decides from the tool
//!   name pays nothing for arguments it never looks at.
//! * On wasm the heap is a bump allocator sized for one short evaluation (feature `bump-alloc`, on by
//!   default; see the crate's `alloc` module). Turn the feature off to bring your own `#[global_allocator]`.
//! * A panic, an endless loop or running out of memory is a trap in the gateway, which denies the request.
//!   Don't rely on it: return [`Decision::deny`] with a reason instead.
//! * Reasons are shown to the agent and so to the model: say what was refused and why, never secrets.
//!
//! # Modules
//!
//! * [`glob`]: `*`/`?` tool-name patterns, as settings usually write them.
//! * [`log`]: lines into the gateway's log, tagged with the policy and request id.
//! * [`run`]: the exported functions as plain functions over settings JSON, for tests.

#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
mod alloc;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings;
pub mod glob;
mod json;
pub mod log;
pub mod run;
mod types;

pub use json::Json;
pub use types::{
    Annotations, Context, Decision, Direction, Listing, Message, Operation, Principal, PromptGet,
    PromptInfo, Request, ResourceInfo, ResourceTemplateInfo, ToolCall, ToolInfo,
};

/// A policy: settings, a decision per message, and the tools it would never allow.
///
/// The functions take no `self`: a policy keeps no state (the gateway builds a fresh instance for every
/// call), so everything is in `settings` and the request.
pub trait Policy {
    /// The policy's settings, deserialised from the `settings:` value of the gateway config. Use
    /// `#[serde(deny_unknown_fields)]` so that typos are refused at load, and `#[serde(default)]` for
    /// optional keys.
    type Settings: serde::de::DeserializeOwned;

    /// Checks settings beyond what deserialisation does (non-empty lists, regexes that compile, …). Called
    /// at load, when an `Err` stops the gateway with this message: say what is wrong and what to write.
    fn validate_settings(_settings: &Self::Settings) -> Result<(), String> {
        Ok(())
    }

    /// Decides one message.
    fn evaluate(settings: &Self::Settings, request: &Request) -> Decision;

    /// Of the tools an upstream lists, the names this policy would never allow on this route: the gateway
    /// removes them from `tools/list`, and a call to one is answered as if the tool did not exist (the SDK
    /// asks this for the called tool before [`Policy::evaluate`]). Keep it cheap: it runs on every tool call.
    /// The default hides nothing.
    fn hidden_tools(
        _settings: &Self::Settings,
        _context: &Context,
        _tools: &[ToolInfo],
    ) -> Vec<String> {
        Vec::new()
    }

    /// Of the resources an upstream lists, the URIs this policy would never allow on this route: removed
    /// from `resources/list`, and a `resources/read` of one is answered as if it did not exist (the SDK asks
    /// this for the read URI, as a [`ResourceInfo::new`], before [`Policy::evaluate`]). The default hides
    /// nothing.
    fn hidden_resources(
        _settings: &Self::Settings,
        _context: &Context,
        _resources: &[ResourceInfo],
    ) -> Vec<String> {
        Vec::new()
    }

    /// Of the resource templates an upstream lists, the URI templates to remove from
    /// `resources/templates/list`. Reads of URIs a template expands to are decided by
    /// [`Policy::hidden_resources`] (by URI). The default hides nothing.
    fn hidden_resource_templates(
        _settings: &Self::Settings,
        _context: &Context,
        _templates: &[ResourceTemplateInfo],
    ) -> Vec<String> {
        Vec::new()
    }

    /// Of the prompts an upstream lists, the names this policy would never allow on this route: removed from
    /// `prompts/list`, and a `prompts/get` of one is answered as if it did not exist (asked for the prompt
    /// named, as a [`PromptInfo::new`], before [`Policy::evaluate`]). The default hides nothing.
    fn hidden_prompts(
        _settings: &Self::Settings,
        _context: &Context,
        _prompts: &[PromptInfo],
    ) -> Vec<String> {
        Vec::new()
    }
}

/// Exports a [`Policy`] as the component's `validate-settings`, `evaluate` and `hidden`.
///
/// Write it once, at the top level of the policy crate: `policy_sdk::export_policy!(MyPolicy);`. On wasm it
/// generates the component exports; natively it only checks that the type implements [`Policy`], so the
/// crate still unit-tests with a plain `cargo test`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The generated export macro takes a plain identifier, so name the adapter for this policy.
            type __PolicySdkExport = $crate::bindings::Adapter<$policy>;
            $crate::bindings::__export_policy_world!(__PolicySdkExport with_types_in $crate::bindings);
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn __policy_sdk_assert_policy<P: $crate::Policy>() {}
            __policy_sdk_assert_policy::<$policy>();
        };
    };
}
