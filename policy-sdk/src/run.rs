//! What the exported component functions do with a [`Policy`], as plain functions taking the settings as
//! the JSON text the gateway passes. The wasm exports call exactly these, so a native test of them tests
//! the component's behaviour, including the fail-closed paths.
//!
//! Every call parses the settings and runs [`Policy::validate_settings`] again before using them: the gateway
//! validates once at load, but a policy's `evaluate` should never see settings its own validation rejects,
//! whoever the host is. When that fails:
//!
//! * [`validate_settings`] returns the error (the gateway refuses to load the policy with it);
//! * [`evaluate`] **denies** with a generic reason (the detail goes to the gateway log, not to the agent);
//! * [`hidden_tools`] **hides every tool**.
//!
//! An absent settings document (empty text, or `null`) is read as `{}` when the settings type cannot be
//! built from `null`, so a policy whose settings all have defaults needs no `settings:` in the config.

use crate::{Context, Decision, Listing, Policy, PromptInfo, Request, ResourceInfo, ToolInfo, log};

/// Parses the settings JSON into `P::Settings` without validating them. The error names what is wrong
/// (serde's message, with line and column).
pub fn parse_settings<P: Policy>(settings: &str) -> Result<P::Settings, String> {
    let trimmed = settings.trim();
    let text = if trimmed.is_empty() { "null" } else { trimmed };
    match serde_json::from_str::<P::Settings>(text) {
        Ok(parsed) => Ok(parsed),
        Err(first) if text == "null" => serde_json::from_str::<P::Settings>("{}")
            .map_err(|_| format!("invalid settings: {first}")),
        Err(e) => Err(format!("invalid settings: {e}")),
    }
}

/// Parses and validates the settings: the component's `validate-settings` export.
pub fn validate_settings<P: Policy>(settings: &str) -> Result<(), String> {
    let parsed = parse_settings::<P>(settings)?;
    P::validate_settings(&parsed)
}

/// Parses and validates the settings, then evaluates: the component's `evaluate` export. Invalid settings
/// deny.
pub fn evaluate<P: Policy>(settings: &str, request: &Request) -> Decision {
    match checked::<P>(settings) {
        Ok(parsed) => P::evaluate(&parsed, request),
        Err(e) => {
            log::error(format!("denying: {e}"));
            Decision::deny(SETTINGS_DENY_REASON)
        }
    }
}

/// What the component's `evaluate` export answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The message is a `tools/call` of a tool this policy hides ([`Policy::hidden_tools`]), a
    /// `resources/read` of a URI it hides or a `prompts/get` of a prompt it hides: the gateway answers as
    /// if it did not exist.
    Hidden,
    Decided(Decision),
}

/// The component's `evaluate` export: parses and validates the settings (invalid settings deny); for a
/// `tools/call`, asks [`Policy::hidden_tools`] about the called tool first — as listed, or by name with the
/// spec's default annotations when the upstream does not list it — so a tool hidden from listings can never
/// be called through this policy; then [`Policy::evaluate`]. One call into the component decides a message.
pub fn answer<P: Policy>(settings: &str, request: &Request) -> Answer {
    let parsed = match checked::<P>(settings) {
        Ok(parsed) => parsed,
        Err(e) => {
            log::error(format!("denying: {e}"));
            return Answer::Decided(Decision::deny(SETTINGS_DENY_REASON));
        }
    };
    if let Some(call) = request.tool_call() {
        let unlisted;
        let tool = match &call.tool {
            Some(listed) => listed,
            None => {
                unlisted = ToolInfo::new(call.name.as_str());
                &unlisted
            }
        };
        let hidden = P::hidden_tools(&parsed, &request.context, std::slice::from_ref(tool));
        if hidden.contains(&call.name) {
            return Answer::Hidden;
        }
    }
    if let Some(uri) = request.resource_uri() {
        let hidden = P::hidden_resources(&parsed, &request.context, &[ResourceInfo::new(uri)]);
        if hidden.iter().any(|h| h == uri) {
            return Answer::Hidden;
        }
    }
    if let Some(get) = request.prompt_get() {
        let hidden = P::hidden_prompts(&parsed, &request.context, &[PromptInfo::new(&get.name)]);
        if hidden.contains(&get.name) {
            return Answer::Hidden;
        }
    }
    Answer::Decided(P::evaluate(&parsed, request))
}

/// Parses and validates the settings, then asks what of one listing page to hide: the component's `hidden`
/// export. Invalid settings hide everything listed.
pub fn hidden<P: Policy>(settings: &str, context: &Context, listing: &Listing) -> Vec<String> {
    let parsed = match checked::<P>(settings) {
        Ok(parsed) => parsed,
        Err(e) => {
            log::error(format!("hiding everything listed: {e}"));
            return listing.ids();
        }
    };
    match listing {
        Listing::Tools(t) => P::hidden_tools(&parsed, context, t),
        Listing::Resources(r) => P::hidden_resources(&parsed, context, r),
        Listing::ResourceTemplates(t) => P::hidden_resource_templates(&parsed, context, t),
        Listing::Prompts(p) => P::hidden_prompts(&parsed, context, p),
    }
}

/// [`hidden`] for a page of tools. Invalid settings hide every tool.
pub fn hidden_tools<P: Policy>(
    settings: &str,
    context: &Context,
    tools: &[ToolInfo],
) -> Vec<String> {
    hidden::<P>(settings, context, &Listing::Tools(tools.to_vec()))
}

/// The reason given to the agent when a policy's settings are invalid at evaluation time.
pub const SETTINGS_DENY_REASON: &str = "refused: this route's policy is misconfigured (its settings are invalid; the gateway log has the detail)";

fn checked<P: Policy>(settings: &str) -> Result<P::Settings, String> {
    let parsed = parse_settings::<P>(settings)?;
    P::validate_settings(&parsed)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        limit: u32,
    }

    struct StrictPolicy;

    impl Policy for StrictPolicy {
        type Settings = Strict;

        fn validate_settings(s: &Strict) -> Result<(), String> {
            if s.limit == 0 {
                Err("`limit` must be at least 1".into())
            } else {
                Ok(())
            }
        }

        fn evaluate(_: &Strict, _: &Request) -> Decision {
            Decision::allow()
        }

        fn hidden_tools(_: &Strict, _: &Context, _: &[ToolInfo]) -> Vec<String> {
            vec!["only_this".into()]
        }

        fn hidden_resources(_: &Strict, _: &Context, r: &[ResourceInfo]) -> Vec<String> {
            r.iter()
                .filter(|r| r.uri.starts_with("secret://"))
                .map(|r| r.uri.clone())
                .collect()
        }

        fn hidden_prompts(_: &Strict, _: &Context, p: &[PromptInfo]) -> Vec<String> {
            p.iter()
                .filter(|p| p.name == "jailbreak")
                .map(|p| p.name.clone())
                .collect()
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Defaults {
        flag: bool,
    }

    struct DefaultsPolicy;

    impl Policy for DefaultsPolicy {
        type Settings = Defaults;

        fn evaluate(s: &Defaults, _: &Request) -> Decision {
            if s.flag {
                Decision::deny("flag")
            } else {
                Decision::allow()
            }
        }
    }

    fn tools() -> Vec<ToolInfo> {
        vec![ToolInfo::new("a"), ToolInfo::new("b")]
    }

    #[test]
    fn valid_settings_pass_through() {
        assert_eq!(validate_settings::<StrictPolicy>(r#"{"limit": 3}"#), Ok(()));
        let req = Request::new_tool_call("x", json!({}));
        assert_eq!(
            evaluate::<StrictPolicy>(r#"{"limit": 3}"#, &req),
            Decision::allow()
        );
        let hidden = hidden_tools::<StrictPolicy>(r#"{"limit": 3}"#, &Context::default(), &tools());
        assert_eq!(hidden, vec!["only_this"]);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let err = validate_settings::<StrictPolicy>(r#"{"limt": 3}"#).unwrap_err();
        assert!(
            err.starts_with("invalid settings: unknown field `limt`"),
            "{err}"
        );
        let err = validate_settings::<StrictPolicy>("{").unwrap_err();
        assert!(err.starts_with("invalid settings: EOF"), "{err}");
        let err = validate_settings::<StrictPolicy>("").unwrap_err();
        assert!(err.contains("invalid type: null"), "{err}");
    }

    #[test]
    fn validation_errors_are_returned_verbatim() {
        let err = validate_settings::<StrictPolicy>(r#"{"limit": 0}"#).unwrap_err();
        assert_eq!(err, "`limit` must be at least 1");
    }

    #[test]
    fn evaluate_with_invalid_settings_denies() {
        let req = Request::new_tool_call("x", json!({}));
        for bad in [r#"{"limit": 0}"#, "not json", ""] {
            let d = evaluate::<StrictPolicy>(bad, &req);
            assert_eq!(d, Decision::deny(SETTINGS_DENY_REASON), "settings {bad:?}");
        }
    }

    #[test]
    fn answer_checks_the_called_tool_against_hidden_tools_first() {
        // StrictPolicy hides `only_this` and allows everything else.
        let hidden = Request::new_tool_call("only_this", json!({}));
        assert_eq!(
            answer::<StrictPolicy>(r#"{"limit": 3}"#, &hidden),
            Answer::Hidden
        );
        let listed = hidden
            .clone()
            .with_tool(ToolInfo::new("only_this").read_only());
        assert_eq!(
            answer::<StrictPolicy>(r#"{"limit": 3}"#, &listed),
            Answer::Hidden
        );
        let other = Request::new_tool_call("other", json!({}));
        assert_eq!(
            answer::<StrictPolicy>(r#"{"limit": 3}"#, &other),
            Answer::Decided(Decision::allow())
        );
        // Not a tool call: never hidden.
        let list = Request::new_method("tools/list", json!({}));
        assert_eq!(
            answer::<StrictPolicy>(r#"{"limit": 3}"#, &list),
            Answer::Decided(Decision::allow())
        );
        // Invalid settings deny before anything else.
        assert_eq!(
            answer::<StrictPolicy>(r#"{"limit": 0}"#, &hidden),
            Answer::Decided(Decision::deny(SETTINGS_DENY_REASON))
        );
    }

    #[test]
    fn reads_and_gets_of_hidden_resources_and_prompts_are_hidden() {
        let s = r#"{"limit": 3}"#;
        let read = Request::new_method("resources/read", json!({"uri": "secret://keys"}));
        assert_eq!(answer::<StrictPolicy>(s, &read), Answer::Hidden);
        let read = Request::new_method("resources/read", json!({"uri": "file:///ok"}));
        assert_eq!(
            answer::<StrictPolicy>(s, &read),
            Answer::Decided(Decision::allow())
        );
        let get = Request::new_method("prompts/get", json!({"name": "jailbreak"}));
        assert_eq!(answer::<StrictPolicy>(s, &get), Answer::Hidden);
        let listing = Listing::Resources(vec![
            ResourceInfo::new("secret://keys"),
            ResourceInfo::new("file:///ok"),
        ]);
        assert_eq!(
            hidden::<StrictPolicy>(s, &Context::default(), &listing),
            vec!["secret://keys"]
        );
        // Invalid settings hide the whole page, whatever its kind.
        assert_eq!(
            hidden::<StrictPolicy>(r#"{"limit": 0}"#, &Context::default(), &listing),
            vec!["secret://keys", "file:///ok"]
        );
    }

    #[test]
    fn hidden_tools_with_invalid_settings_hides_everything() {
        let hidden = hidden_tools::<StrictPolicy>(r#"{"limit": 0}"#, &Context::default(), &tools());
        assert_eq!(hidden, vec!["a", "b"]);
    }

    #[test]
    fn absent_settings_read_as_empty_object() {
        assert_eq!(validate_settings::<DefaultsPolicy>(""), Ok(()));
        assert_eq!(validate_settings::<DefaultsPolicy>("null"), Ok(()));
        let req = Request::new_tool_call("x", json!({}));
        assert!(evaluate::<DefaultsPolicy>("null", &req).is_allow());
        assert!(evaluate::<DefaultsPolicy>(r#"{"flag": true}"#, &req).is_deny());
        assert!(hidden_tools::<DefaultsPolicy>("{}", &Context::default(), &tools()).is_empty());
    }
}
