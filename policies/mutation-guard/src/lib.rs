//! `mutation-guard`: deny, or require approval for, tool calls that change things.
//!
//! Settings (all optional):
//!
//! ```json
//! { "deny": ["drop_*"], "require_approval": ["delete_*"],
//!   "destructive": "require_approval", "non_read_only": "allow" }
//! ```
//!
//! For a `tools/call`, in order:
//! 1. the tool name against `deny` globs → deny; then against `require_approval` globs → require approval
//!    (so `deny` wins when both match);
//! 2. the tool's MCP annotations as the upstream lists them. A read-only tool is allowed. Any other tool is
//!    subject to `non_read_only`, and a destructive one also to `destructive`; the stricter action applies.
//!    The MCP spec defaults apply to hints a server did not declare and to tools the server does not list:
//!    **an unknown tool counts as destructive**.
//!
//! Actions are `allow`, `require_approval` or `deny`; defaults: `destructive: require_approval`,
//! `non_read_only: allow`, no name rules. Other methods are allowed.
//!
//! `"hide_denied": true` also removes the tools this policy would always deny (those matching `deny`, and
//! those whose annotations lead to `deny`) from `tools/list`, and calls to them are answered as unknown
//! tools. By default (`false`) they stay listed and a call is refused with the reason, which tells the model
//! why and that it should not retry.

use policy_sdk::{Annotations, Context, Decision, Policy, Request, ToolInfo, glob};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Tool-name globs always denied.
    pub deny: Vec<String>,
    /// Tool-name globs that always need approval (unless they also match `deny`).
    pub require_approval: Vec<String>,
    /// What to do with a tool that may be destructive (`destructiveHint`, default true).
    pub destructive: Action,
    /// What to do with a tool that is not read-only (`readOnlyHint`, default false).
    pub non_read_only: Action,
    /// Hide the tools this policy always denies (default false: keep them listed, refuse calls with a reason).
    pub hide_denied: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            deny: Vec::new(),
            require_approval: Vec::new(),
            destructive: Action::RequireApproval,
            non_read_only: Action::Allow,
            hide_denied: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    RequireApproval,
    Deny,
}

impl Action {
    fn decide(self, reason: impl FnOnce() -> String) -> Decision {
        match self {
            Action::Allow => Decision::allow(),
            Action::RequireApproval => Decision::require_approval(reason()),
            Action::Deny => Decision::deny(reason()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::RequireApproval => "require_approval",
            Action::Deny => "deny",
        }
    }
}

pub struct MutationGuard;

impl Policy for MutationGuard {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        for (list, patterns) in [("deny", &s.deny), ("require_approval", &s.require_approval)] {
            for (i, pattern) in patterns.iter().enumerate() {
                if pattern.trim().is_empty() {
                    return Err(format!(
                        "mutation-guard: `{list}[{i}]` is empty; write a tool name or glob"
                    ));
                }
                if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "mutation-guard: `{list}[{i}]` ({pattern:?}) contains whitespace; tool names have none"
                    ));
                }
            }
        }
        Ok(())
    }

    fn evaluate(s: &Settings, request: &Request) -> Decision {
        if request.method() != "tools/call" {
            return Decision::allow();
        }
        let Some(call) = request.tool_call() else {
            return Decision::deny("tools/call without a tool name is refused");
        };
        let name = &call.name;
        if let Some(rule) = glob::first_match(&s.deny, name) {
            return Decision::deny(format!(
                "tool `{name}` is denied on this route (mutation-guard: deny `{rule}`)"
            ));
        }
        if let Some(rule) = glob::first_match(&s.require_approval, name) {
            return Decision::require_approval(format!(
                "tool `{name}` needs approval on this route (mutation-guard: require_approval `{rule}`)"
            ));
        }
        by_annotations(s, name, call.annotations(), call.tool.is_some())
    }

    fn hidden_tools(s: &Settings, _context: &Context, tools: &[ToolInfo]) -> Vec<String> {
        if !s.hide_denied {
            return Vec::new();
        }
        tools
            .iter()
            .filter(|t| {
                glob::matches_any(&s.deny, &t.name)
                    || (!glob::matches_any(&s.require_approval, &t.name)
                        && by_annotations(s, &t.name, t.annotations, true).is_deny())
            })
            .map(|t| t.name.clone())
            .collect()
    }
}

/// The decision from a tool's annotations (spec defaults already applied by the gateway or by
/// `ToolCall::annotations` for an unlisted tool).
fn by_annotations(s: &Settings, name: &str, a: Annotations, listed: bool) -> Decision {
    if a.read_only {
        return Decision::allow();
    }
    let destructive = if a.is_destructive() {
        s.destructive.decide(|| {
            let why = if listed {
                "may be destructive (its annotations do not rule it out)"
            } else {
                "is not listed by the server, so it counts as destructive"
            };
            format!(
                "tool `{name}` {why}; this route's rule for destructive tools is {} (mutation-guard: destructive)",
                s.destructive.name()
            )
        })
    } else {
        Decision::allow()
    };
    let mutating = s.non_read_only.decide(|| {
        format!(
            "tool `{name}` is not read-only; this route's rule for such tools is {} (mutation-guard: non_read_only)",
            s.non_read_only.name()
        )
    });
    destructive.stricter(mutating)
}

policy_sdk::export_policy!(MutationGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::run;
    use serde_json::json;

    fn eval(settings: &str, req: &Request) -> Decision {
        run::evaluate::<MutationGuard>(settings, req)
    }

    fn call(name: &str) -> Request {
        Request::new_tool_call(name, json!({}))
    }

    const NAMES: &str = r#"{ "deny": ["drop_*", "delete_all"], "require_approval": ["delete_*"] }"#;

    #[test]
    fn deny_pattern_denies_and_names_tool_and_rule() {
        let d = eval(
            NAMES,
            &call("drop_table").with_tool(ToolInfo::new("drop_table").read_only()),
        );
        assert_eq!(
            d,
            Decision::deny(
                "tool `drop_table` is denied on this route (mutation-guard: deny `drop_*`)"
            )
        );
    }

    #[test]
    fn deny_wins_over_require_approval() {
        // `delete_all` matches both `delete_all` (deny) and `delete_*` (require_approval).
        assert!(eval(NAMES, &call("delete_all")).is_deny());
        let d = eval(
            NAMES,
            &call("delete_user").with_tool(ToolInfo::new("delete_user").read_only()),
        );
        assert!(d.is_require_approval());
        assert!(
            d.reason().unwrap().contains("`delete_user`")
                && d.reason().unwrap().contains("`delete_*`")
        );
    }

    #[test]
    fn read_only_tool_is_allowed_by_default() {
        assert!(
            eval(
                "{}",
                &call("get").with_tool(ToolInfo::new("get").read_only())
            )
            .is_allow()
        );
    }

    #[test]
    fn unknown_tool_counts_as_destructive() {
        let d = eval("{}", &call("mystery"));
        assert!(d.is_require_approval(), "{d}");
        assert!(
            d.reason().unwrap().contains("not listed by the server"),
            "{d}"
        );
        // Listed without annotations: spec defaults, destructive too.
        let d = eval("{}", &call("plain").with_tool(ToolInfo::new("plain")));
        assert!(
            d.is_require_approval() && d.reason().unwrap().contains("may be destructive"),
            "{d}"
        );
        // No settings at all: the same defaults.
        assert!(eval("null", &call("mystery")).is_require_approval());
    }

    #[test]
    fn destructive_action_is_configurable() {
        let listed = call("wipe").with_tool(ToolInfo::new("wipe"));
        assert!(eval(r#"{"destructive": "deny"}"#, &listed).is_deny());
        assert!(eval(r#"{"destructive": "allow"}"#, &listed).is_allow());
    }

    #[test]
    fn additive_tool_follows_non_read_only() {
        let additive = call("create").with_tool(ToolInfo::new("create").non_destructive());
        assert!(eval("{}", &additive).is_allow());
        let d = eval(r#"{"non_read_only": "require_approval"}"#, &additive);
        assert!(
            d.is_require_approval() && d.reason().unwrap().contains("non_read_only"),
            "{d}"
        );
        assert!(eval(r#"{"non_read_only": "deny"}"#, &additive).is_deny());
    }

    #[test]
    fn destructive_tool_gets_the_stricter_of_both_rules() {
        let destructive = call("wipe").with_tool(ToolInfo::new("wipe"));
        let d = eval(
            r#"{"destructive": "allow", "non_read_only": "deny"}"#,
            &destructive,
        );
        assert!(
            d.is_deny() && d.reason().unwrap().contains("non_read_only"),
            "{d}"
        );
        let d = eval(
            r#"{"destructive": "deny", "non_read_only": "require_approval"}"#,
            &destructive,
        );
        assert!(
            d.is_deny() && d.reason().unwrap().contains("destructive"),
            "{d}"
        );
    }

    #[test]
    fn other_methods_are_allowed() {
        let strict = r#"{"deny": ["*"], "destructive": "deny", "non_read_only": "deny"}"#;
        assert!(eval(strict, &Request::new_method("tools/list", json!({}))).is_allow());
        assert!(
            eval(
                strict,
                &Request::new_method("resources/read", json!({"uri": "x:y"}))
            )
            .is_allow()
        );
        assert!(eval(strict, &Request::new_method("tools/call", json!({}))).is_deny());
    }

    #[test]
    fn hides_denied_tools_only() {
        let settings = r#"{ "deny": ["drop_*"], "require_approval": ["wipe_*"], "destructive": "deny", "hide_denied": true }"#;
        let tools = [
            ToolInfo::new("drop_table").read_only(),
            ToolInfo::new("wipe_cache"), // destructive, but require_approval by name comes first
            ToolInfo::new("reset"),      // destructive by default → denied → hidden
            ToolInfo::new("create").non_destructive(),
            ToolInfo::new("get").read_only(),
        ];
        let hidden = run::hidden_tools::<MutationGuard>(settings, &Context::default(), &tools);
        assert_eq!(hidden, vec!["drop_table", "reset"]);
        // Without hide_denied, denied tools stay listed (calls are refused with a reason instead).
        let visible = r#"{ "deny": ["drop_*"], "destructive": "deny" }"#;
        assert!(
            run::hidden_tools::<MutationGuard>(visible, &Context::default(), &tools).is_empty()
        );
    }

    #[test]
    fn invalid_settings_are_rejected() {
        for (settings, expect) in [
            (
                r#"{"destructive": "block"}"#,
                "unknown variant `block`, expected one of `allow`, `require_approval`, `deny`",
            ),
            (r#"{"deny": [""]}"#, "`deny[0]` is empty"),
            (
                r#"{"require_approval": ["a", "b c"]}"#,
                "`require_approval[1]` (\"b c\") contains whitespace",
            ),
            (r#"{"denied": ["x"]}"#, "unknown field `denied`"),
        ] {
            let err = run::validate_settings::<MutationGuard>(settings).unwrap_err();
            assert!(err.contains(expect), "{settings}: {err}");
        }
        assert_eq!(run::validate_settings::<MutationGuard>(NAMES), Ok(()));
    }
}
