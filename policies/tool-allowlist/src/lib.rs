//! `tool-allowlist`: on the routes that use it, only the listed tools exist.
//!
//! Settings: `{ "allow": ["search_*", "get_customer"] }`, tool names or globs (`*` any run, `?` one
//! character, anchored). Every tool the upstream lists that matches none of them is hidden from `tools/list`,
//! and a `tools/call` to any such tool is denied with a reason naming it. Other methods are allowed: combine
//! with other policies to govern them.
//!
//! Optional, the same for resources and prompts: `"resources": ["file:///docs/*"]` (URI globs; a template is
//! kept when its URI template matches) and `"prompts": ["summarize_*"]`. When given, every resource, template
//! or prompt matching none is hidden from its listing, and reading or getting one is answered as if it did
//! not exist. When absent, resources and prompts are not this policy's business.

use policy_sdk::{
    Context, Decision, Policy, PromptInfo, Request, ResourceInfo, ResourceTemplateInfo, ToolInfo,
    glob,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Tool names or globs allowed on the route. Required (see `validate_settings`).
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Resource URI globs allowed on the route; absent: resources are not governed.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Prompt name globs allowed on the route; absent: prompts are not governed.
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
}

const EXAMPLE: &str = r#"settings: { allow: ["search_*", "get_customer"] }"#;

pub struct ToolAllowlist;

impl Policy for ToolAllowlist {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        let Some(allow) = &s.allow else {
            return Err(format!(
                "tool-allowlist needs `allow`: the tools this route may use, as names or globs, e.g. {EXAMPLE}"
            ));
        };
        if allow.is_empty() {
            return Err(format!(
                "tool-allowlist: `allow` is empty, which would hide and refuse every tool; list the tools this \
                 route may use, e.g. {EXAMPLE}"
            ));
        }
        for (key, list) in [("resources", &s.resources), ("prompts", &s.prompts)] {
            if list
                .as_ref()
                .is_some_and(|l| l.iter().any(|p| p.trim().is_empty()))
            {
                return Err(format!(
                    "tool-allowlist: `{key}` has an empty entry; write a glob, or leave `{key}` out"
                ));
            }
        }
        for (i, pattern) in allow.iter().enumerate() {
            if pattern.trim().is_empty() {
                return Err(format!(
                    "tool-allowlist: `allow[{i}]` is empty; write a tool name or glob"
                ));
            }
            if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "tool-allowlist: `allow[{i}]` ({pattern:?}) contains whitespace; tool names have none"
                ));
            }
        }
        Ok(())
    }

    fn evaluate(s: &Settings, request: &Request) -> Decision {
        if request.method() != "tools/call" {
            return Decision::allow();
        }
        // The gateway refuses a `tools/call` without a tool name before any policy; should one arrive
        // anyway, it is not on the list.
        let Some(call) = request.tool_call() else {
            return Decision::deny("tools/call without a tool name is refused");
        };
        if is_allowed(s, &call.name) {
            Decision::allow()
        } else {
            Decision::deny(format!(
                "tool `{}` is not on this route's allowlist",
                call.name
            ))
        }
    }

    fn hidden_tools(s: &Settings, _context: &Context, tools: &[ToolInfo]) -> Vec<String> {
        tools
            .iter()
            .filter(|t| !is_allowed(s, &t.name))
            .map(|t| t.name.clone())
            .collect()
    }

    fn hidden_resources(s: &Settings, _context: &Context, r: &[ResourceInfo]) -> Vec<String> {
        hide_unlisted(&s.resources, r.iter().map(|r| &r.uri))
    }

    fn hidden_resource_templates(
        s: &Settings,
        _context: &Context,
        t: &[ResourceTemplateInfo],
    ) -> Vec<String> {
        hide_unlisted(&s.resources, t.iter().map(|t| &t.uri_template))
    }

    fn hidden_prompts(s: &Settings, _context: &Context, p: &[PromptInfo]) -> Vec<String> {
        hide_unlisted(&s.prompts, p.iter().map(|p| &p.name))
    }
}

fn hide_unlisted<'a>(
    allow: &Option<Vec<String>>,
    ids: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    match allow {
        None => Vec::new(),
        Some(globs) => ids
            .filter(|id| !glob::matches_any(globs, id))
            .cloned()
            .collect(),
    }
}

fn is_allowed(s: &Settings, name: &str) -> bool {
    s.allow
        .as_deref()
        .is_some_and(|allow| glob::matches_any(allow, name))
}

policy_sdk::export_policy!(ToolAllowlist);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::run;
    use serde_json::json;

    const SETTINGS: &str = r#"{ "allow": ["search_*", "get_customer"] }"#;

    fn eval(req: &Request) -> Decision {
        run::evaluate::<ToolAllowlist>(SETTINGS, req)
    }

    #[test]
    fn listed_tools_are_allowed() {
        assert!(eval(&Request::new_tool_call("get_customer", json!({"id": 1}))).is_allow());
        assert!(eval(&Request::new_tool_call("search_orders", json!({}))).is_allow());
    }

    #[test]
    fn unlisted_tool_is_denied_naming_it() {
        let d = eval(&Request::new_tool_call("delete_customer", json!({})));
        assert_eq!(
            d,
            Decision::deny("tool `delete_customer` is not on this route's allowlist")
        );
        // Anchored: a listed name as a prefix or suffix does not count.
        assert!(eval(&Request::new_tool_call("get_customers", json!({}))).is_deny());
        assert!(eval(&Request::new_tool_call("research_x", json!({}))).is_deny());
    }

    #[test]
    fn resources_and_prompts_are_hidden_when_governed() {
        let s =
            r#"{ "allow": ["x"], "resources": ["file:///docs/*"], "prompts": ["summarize_*"] }"#;
        let ctx = Context::default();
        let listing = policy_sdk::Listing::Resources(vec![
            ResourceInfo::new("file:///docs/a.md"),
            ResourceInfo::new("file:///etc/passwd"),
        ]);
        assert_eq!(
            run::hidden::<ToolAllowlist>(s, &ctx, &listing),
            ["file:///etc/passwd"]
        );
        let read = Request::new_method("resources/read", json!({"uri": "file:///etc/passwd"}));
        assert_eq!(run::answer::<ToolAllowlist>(s, &read), run::Answer::Hidden);
        let get = Request::new_method("prompts/get", json!({"name": "leak_all"}));
        assert_eq!(run::answer::<ToolAllowlist>(s, &get), run::Answer::Hidden);
        let ok = Request::new_method("prompts/get", json!({"name": "summarize_doc"}));
        assert!(
            matches!(run::answer::<ToolAllowlist>(s, &ok), run::Answer::Decided(d) if d.is_allow())
        );
        // Not governed: nothing hidden.
        assert!(run::hidden::<ToolAllowlist>(SETTINGS, &ctx, &listing).is_empty());
    }

    #[test]
    fn other_methods_are_allowed() {
        assert!(eval(&Request::new_method("tools/list", json!({}))).is_allow());
        assert!(
            eval(&Request::new_method(
                "resources/read",
                json!({"uri": "file:///x"})
            ))
            .is_allow()
        );
        assert!(eval(&Request::new_method("initialize", json!({}))).is_allow());
    }

    #[test]
    fn malformed_tool_call_is_denied() {
        assert!(eval(&Request::new_method("tools/call", json!({"arguments": {}}))).is_deny());
    }

    #[test]
    fn hides_every_unlisted_tool() {
        let tools = [
            "search_docs",
            "get_customer",
            "delete_customer",
            "search",
            "get_customer_notes",
        ]
        .map(ToolInfo::new);
        let hidden = run::hidden_tools::<ToolAllowlist>(SETTINGS, &Context::default(), &tools);
        assert_eq!(
            hidden,
            vec!["delete_customer", "search", "get_customer_notes"]
        );
    }

    #[test]
    fn missing_allow_says_what_to_write() {
        let err = run::validate_settings::<ToolAllowlist>("{}").unwrap_err();
        assert!(
            err.contains("needs `allow`") && err.contains(r#"allow: ["search_*""#),
            "{err}"
        );
        // No settings at all reads as `{}`: same message.
        assert_eq!(
            run::validate_settings::<ToolAllowlist>("null").unwrap_err(),
            err
        );
    }

    #[test]
    fn invalid_settings_are_rejected() {
        for (settings, expect) in [
            (r#"{"allow": []}"#, "`allow` is empty"),
            (r#"{"allow": ["ok", ""]}"#, "`allow[1]` is empty"),
            (
                r#"{"allow": ["get customer"]}"#,
                "`allow[0]` (\"get customer\") contains whitespace",
            ),
            (r#"{"allow": "search_*"}"#, "invalid type: string"),
            (r#"{"allow": ["x"], "deny": ["y"]}"#, "unknown field `deny`"),
        ] {
            let err = run::validate_settings::<ToolAllowlist>(settings).unwrap_err();
            assert!(err.contains(expect), "{settings}: {err}");
        }
        assert_eq!(run::validate_settings::<ToolAllowlist>(SETTINGS), Ok(()));
    }

    #[test]
    fn invalid_settings_fail_closed() {
        let call = Request::new_tool_call("search_docs", json!({}));
        assert!(run::evaluate::<ToolAllowlist>(r#"{"allow": []}"#, &call).is_deny());
        let tools = [ToolInfo::new("search_docs")];
        let hidden = run::hidden_tools::<ToolAllowlist>("{}", &Context::default(), &tools);
        assert_eq!(hidden, vec!["search_docs"]);
    }
}
