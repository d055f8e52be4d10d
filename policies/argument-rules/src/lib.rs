//! `argument-rules`: constraints on the arguments of tool calls.
//!
//! ```json
//! { "rules": [
//!     { "tool": "run_sql", "argument": "/query", "not_matches": "(?i)\\bdrop\\b", "action": "deny" },
//!     { "tool": "refund",  "argument": "/amount", "max": 1000, "action": "require_approval" }
//! ] }
//! ```
//!
//! Each rule: `tool`, a glob on the tool name; `argument`, a JSON pointer into the call's `arguments`
//! (`/query`, `/filter/0/field`); one or more constraints; `action`, `deny` or `require_approval`; optionally
//! `reason`, a sentence for the agent that replaces the generated one; optionally `required: true`.
//!
//! Constraints (a rule fires when **any** of its constraints is violated):
//! * `matches` / `not_matches`: a regex (Rust `regex` syntax, unanchored: use `^…$` to anchor) that a string
//!   must / must not match;
//! * `min` / `max`: bounds (inclusive) on a number;
//! * `one_of`: a list of allowed JSON values (numbers compare by value: `1` equals `1.0`);
//! * `max_length`: most characters in a string, or items in an array.
//!
//! A value of the wrong type violates the constraint (a string where `max` expects a number fails closed).
//! **A missing argument violates nothing**, unless the rule says `required: true`, in which case its absence
//! fires the rule. Every rule whose tool matches is checked; the strictest outcome wins (deny over require
//! approval), and on a tie the first rule in the list. Other methods are allowed; nothing is hidden.
//!
//! Reasons name the tool, the argument and the rule index, and state bounds, but never quote a regex (that
//! would teach a model how to get around it) nor the argument's value.

use policy_sdk::{Decision, Policy, Request, ToolCall, glob, log};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Glob on the tool name.
    pub tool: String,
    /// JSON pointer into the call's arguments.
    pub argument: String,
    #[serde(default)]
    pub matches: Option<Pattern>,
    #[serde(default)]
    pub not_matches: Option<Pattern>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Whether a missing argument fires the rule.
    #[serde(default)]
    pub required: bool,
    pub action: Action,
    /// Replaces the generated reason.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Deny,
    RequireApproval,
}

/// A regex from the settings, compiled while the settings are parsed (once per call: the gateway runs each
/// call in a fresh instance). A pattern that does not compile keeps its error for `validate_settings` to
/// report with the rule index; `evaluate` never sees one.
#[derive(Debug)]
pub struct Pattern {
    pub source: String,
    compiled: Result<Regex, String>,
}

/// Keeps compiled regexes small: the policy sandbox has a few MiB of memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        let compiled = RegexBuilder::new(&source)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string());
        Ok(Pattern { source, compiled })
    }
}

impl Pattern {
    fn is_match(&self, text: &str) -> Option<bool> {
        self.compiled.as_ref().ok().map(|re| re.is_match(text))
    }
}

pub struct ArgumentRules;

impl Policy for ArgumentRules {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        if s.rules.is_empty() {
            return Err(r#"argument-rules: `rules` is empty; add rules such as { "tool": "run_sql", "argument": "/query", "not_matches": "(?i)\\bdrop\\b", "action": "deny" }"#.into());
        }
        for (i, rule) in s.rules.iter().enumerate() {
            validate_rule(rule)
                .map_err(|e| format!("argument-rules: rule {i} (tool `{}`): {e}", rule.tool))?;
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
        s.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| glob::matches(&rule.tool, &call.name))
            .filter_map(|(i, rule)| check(i, rule, call))
            .fold(Decision::allow(), Decision::stricter)
    }
}

fn validate_rule(rule: &Rule) -> Result<(), String> {
    if rule.tool.trim().is_empty() {
        return Err("`tool` is empty; write a tool name or glob".into());
    }
    if !rule.argument.starts_with('/') {
        return Err(format!(
            "`argument` {:?} is not a JSON pointer: it must start with `/`, e.g. \"/query\" or \"/filter/0/field\"",
            rule.argument
        ));
    }
    for (key, pattern) in [
        ("matches", &rule.matches),
        ("not_matches", &rule.not_matches),
    ] {
        if let Some(Pattern {
            compiled: Err(e), ..
        }) = pattern
        {
            return Err(format!("`{key}` is not a valid regex: {e}"));
        }
    }
    for (key, bound) in [("min", rule.min), ("max", rule.max)] {
        if bound.is_some_and(|b| !b.is_finite()) {
            return Err(format!("`{key}` must be a finite number"));
        }
    }
    if let (Some(min), Some(max)) = (rule.min, rule.max)
        && min > max
    {
        return Err(format!(
            "`min` ({min}) is greater than `max` ({max}): no value could pass"
        ));
    }
    if rule.one_of.as_ref().is_some_and(Vec::is_empty) {
        return Err("`one_of` is empty: no value could pass".into());
    }
    let has_constraint = rule.matches.is_some()
        || rule.not_matches.is_some()
        || rule.min.is_some()
        || rule.max.is_some()
        || rule.one_of.is_some()
        || rule.max_length.is_some();
    if !has_constraint && !rule.required {
        return Err("no constraint: give one of matches, not_matches, min, max, one_of, max_length, or required: true"
            .into());
    }
    Ok(())
}

/// The decision of rule `index` for `call`, when it fires.
fn check(index: usize, rule: &Rule, call: &ToolCall) -> Option<Decision> {
    let violation = match call.argument(&rule.argument) {
        None if rule.required => Some("is missing".to_owned()),
        None => None,
        Some(value) => violation(rule, value),
    }?;
    log::info(format!(
        "argument-rules rule {index} fired on tool `{}`: `{}` {violation}",
        call.name, rule.argument
    ));
    let reason = match &rule.reason {
        Some(reason) => reason.clone(),
        None => format!(
            "tool `{}`: argument `{}` {violation} (argument-rules rule {index})",
            call.name, rule.argument
        ),
    };
    Some(match rule.action {
        Action::Deny => Decision::deny(reason),
        Action::RequireApproval => Decision::require_approval(reason),
    })
}

/// What is wrong with `value` under `rule`, phrased to follow "argument `/x` ".
fn violation(rule: &Rule, value: &Value) -> Option<String> {
    if let Some(pattern) = &rule.matches {
        match value.as_str().map(|s| pattern.is_match(s)) {
            Some(Some(true)) => {}
            Some(_) => return Some("does not match the pattern this route requires".into()),
            None => return Some(format!("must be a string, not {}", kind(value))),
        }
    }
    if let Some(pattern) = &rule.not_matches {
        match value.as_str().map(|s| pattern.is_match(s)) {
            Some(Some(false)) => {}
            Some(_) => return Some("matches a pattern this route forbids".into()),
            None => return Some(format!("must be a string, not {}", kind(value))),
        }
    }
    if rule.min.is_some() || rule.max.is_some() {
        let Some(n) = value.as_f64() else {
            return Some(format!("must be a number, not {}", kind(value)));
        };
        if let Some(min) = rule.min
            && n < min
        {
            return Some(format!("is below the minimum {min}"));
        }
        if let Some(max) = rule.max
            && n > max
        {
            return Some(format!("is above the maximum {max}"));
        }
    }
    if let Some(allowed) = &rule.one_of
        && !allowed.iter().any(|a| same_value(a, value))
    {
        return Some("is not one of the values this route allows".into());
    }
    if let Some(max_length) = rule.max_length {
        let length = match value {
            Value::String(s) => s.chars().count(),
            Value::Array(items) => items.len(),
            other => return Some(format!("must be a string or an array, not {}", kind(other))),
        };
        if length > max_length {
            return Some(format!("is longer than {max_length}"));
        }
    }
    None
}

/// JSON equality, except that numbers compare by value (`1` equals `1.0`).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

policy_sdk::export_policy!(ArgumentRules);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::run;
    use serde_json::json;

    const SETTINGS: &str = r#"{ "rules": [
        { "tool": "run_sql", "argument": "/query", "not_matches": "(?i)\\bdrop\\b", "action": "deny" },
        { "tool": "refund", "argument": "/amount", "max": 1000, "action": "require_approval" }
    ] }"#;

    fn eval(settings: &str, tool: &str, args: Value) -> Decision {
        run::evaluate::<ArgumentRules>(settings, &Request::new_tool_call(tool, args))
    }

    #[test]
    fn the_documented_example_works() {
        assert_eq!(run::validate_settings::<ArgumentRules>(SETTINGS), Ok(()));
        assert!(eval(SETTINGS, "run_sql", json!({"query": "select * from t"})).is_allow());
        let d = eval(SETTINGS, "run_sql", json!({"query": "DROP TABLE users"}));
        assert_eq!(
            d,
            Decision::deny(
                "tool `run_sql`: argument `/query` matches a pattern this route forbids (argument-rules rule 0)"
            )
        );
        assert!(
            eval(
                SETTINGS,
                "run_sql",
                json!({"query": "select dropped from t"})
            )
            .is_allow()
        );
        assert!(eval(SETTINGS, "refund", json!({"amount": 1000})).is_allow());
        let d = eval(SETTINGS, "refund", json!({"amount": 1000.5}));
        assert!(
            d.is_require_approval() && d.reason().unwrap().contains("above the maximum 1000"),
            "{d}"
        );
        // Other tools and methods are untouched.
        assert!(eval(SETTINGS, "delete", json!({"query": "drop"})).is_allow());
        let list = Request::new_method("tools/list", json!({}));
        assert!(run::evaluate::<ArgumentRules>(SETTINGS, &list).is_allow());
    }

    #[test]
    fn reasons_never_quote_the_regex_or_the_value() {
        let d = eval(SETTINGS, "run_sql", json!({"query": "drop secret_table"}));
        let reason = d.reason().unwrap();
        assert!(
            !reason.contains("drop") && !reason.contains("secret_table"),
            "{reason}"
        );
    }

    #[test]
    fn missing_argument_does_not_violate_unless_required() {
        assert!(eval(SETTINGS, "refund", json!({})).is_allow());
        let required = r#"{"rules": [{"tool": "refund", "argument": "/amount", "max": 10, "required": true, "action": "deny"}]}"#;
        let d = eval(required, "refund", json!({}));
        assert!(
            d.is_deny() && d.reason().unwrap().contains("`/amount` is missing"),
            "{d}"
        );
        let only_required = r#"{"rules": [{"tool": "t", "argument": "/ticket", "required": true, "action": "require_approval"}]}"#;
        assert!(eval(only_required, "t", json!({"ticket": "T-1"})).is_allow());
        assert!(eval(only_required, "t", json!({})).is_require_approval());
    }

    #[test]
    fn wrong_type_violates() {
        let d = eval(SETTINGS, "refund", json!({"amount": "5000"}));
        assert!(
            d.is_require_approval()
                && d.reason()
                    .unwrap()
                    .contains("must be a number, not a string"),
            "{d}"
        );
        let d = eval(SETTINGS, "run_sql", json!({"query": ["DROP TABLE x"]}));
        assert!(
            d.is_deny()
                && d.reason()
                    .unwrap()
                    .contains("must be a string, not an array"),
            "{d}"
        );
    }

    #[test]
    fn matches_min_one_of_max_length() {
        let settings = r#"{"rules": [
            {"tool": "email_*", "argument": "/to", "matches": "@example\\.com$", "action": "deny"},
            {"tool": "transfer", "argument": "/amount", "min": 1, "action": "deny"},
            {"tool": "set_env", "argument": "/env", "one_of": ["dev", "staging", 1], "action": "require_approval"},
            {"tool": "post", "argument": "/body/text", "max_length": 5, "action": "deny"},
            {"tool": "post", "argument": "/tags", "max_length": 2, "action": "deny"}
        ]}"#;
        assert_eq!(run::validate_settings::<ArgumentRules>(settings), Ok(()));
        assert!(eval(settings, "email_send", json!({"to": "a@example.com"})).is_allow());
        assert!(eval(settings, "email_send", json!({"to": "a@evil.com"})).is_deny());
        assert!(eval(settings, "transfer", json!({"amount": 1})).is_allow());
        let d = eval(settings, "transfer", json!({"amount": 0.5}));
        assert!(
            d.is_deny() && d.reason().unwrap().contains("below the minimum 1"),
            "{d}"
        );
        assert!(eval(settings, "set_env", json!({"env": "dev"})).is_allow());
        assert!(eval(settings, "set_env", json!({"env": 1.0})).is_allow());
        assert!(eval(settings, "set_env", json!({"env": "prod"})).is_require_approval());
        assert!(
            eval(
                settings,
                "post",
                json!({"body": {"text": "héllo"}, "tags": ["a", "b"]})
            )
            .is_allow()
        );
        assert!(eval(settings, "post", json!({"body": {"text": "hello!"}})).is_deny());
        assert!(eval(settings, "post", json!({"tags": ["a", "b", "c"]})).is_deny());
        assert!(eval(settings, "post", json!({"tags": 3})).is_deny());
    }

    #[test]
    fn strictest_rule_wins_then_first() {
        let settings = r#"{"rules": [
            {"tool": "*", "argument": "/n", "max": 10, "action": "require_approval"},
            {"tool": "pay", "argument": "/n", "max": 100, "action": "deny"},
            {"tool": "pay", "argument": "/n", "max": 50, "action": "deny", "reason": "payments over 50 are refused"}
        ]}"#;
        assert!(eval(settings, "pay", json!({"n": 20})).is_require_approval());
        let d = eval(settings, "pay", json!({"n": 200}));
        assert!(d.is_deny() && d.reason().unwrap().contains("rule 1"), "{d}");
        assert_eq!(
            eval(settings, "pay", json!({"n": 70})),
            Decision::deny("payments over 50 are refused")
        );
    }

    #[test]
    fn invalid_settings_name_the_rule() {
        for (settings, expect) in [
            (r#"{"rules": []}"#, "`rules` is empty"),
            (
                r#"{"rules": [{"tool": "a", "argument": "/x", "max": 1, "action": "deny"}, {"tool": "b", "argument": "/q", "matches": "(", "action": "deny"}]}"#,
                "rule 1 (tool `b`): `matches` is not a valid regex",
            ),
            (
                r#"{"rules": [{"tool": "a", "argument": "x", "max": 1, "action": "deny"}]}"#,
                "rule 0 (tool `a`): `argument` \"x\" is not a JSON pointer",
            ),
            (
                r#"{"rules": [{"tool": "a", "argument": "/x", "action": "deny"}]}"#,
                "rule 0 (tool `a`): no constraint",
            ),
            (
                r#"{"rules": [{"tool": "a", "argument": "/x", "min": 5, "max": 1, "action": "deny"}]}"#,
                "`min` (5) is greater than `max` (1)",
            ),
            (
                r#"{"rules": [{"tool": "a", "argument": "/x", "one_of": [], "action": "deny"}]}"#,
                "`one_of` is empty",
            ),
            (
                r#"{"rules": [{"tool": "", "argument": "/x", "max": 1, "action": "deny"}]}"#,
                "`tool` is empty",
            ),
            (
                r#"{"rules": [{"tool": "a", "argument": "/x", "max": 1, "action": "block"}]}"#,
                "unknown variant `block`, expected `deny` or `require_approval`",
            ),
            (
                r#"{"rules": [{"tool": "a", "argument": "/x", "maximum": 1, "action": "deny"}]}"#,
                "unknown field `maximum`",
            ),
            (
                r#"{"rules": [{"tool": "a", "argument": "/x", "max": 1}]}"#,
                "missing field `action`",
            ),
        ] {
            let err = run::validate_settings::<ArgumentRules>(settings).unwrap_err();
            assert!(err.contains(expect), "{settings}:\n{err}");
        }
    }

    #[test]
    fn invalid_regex_fails_closed_at_evaluation() {
        let bad = r#"{"rules": [{"tool": "run_sql", "argument": "/query", "not_matches": "(", "action": "deny"}]}"#;
        assert!(eval(bad, "run_sql", json!({"query": "select 1"})).is_deny());
    }
}
