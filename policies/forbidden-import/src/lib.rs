//! Test fixture: a policy whose component imports `wasi:filesystem/*` (it reads `/etc/passwd` in
//! `evaluate`). The gateway must refuse to load it, naming the import; if it ever ran, it would deny every
//! request, saying whether the read worked. Never deploy it.

use policy_sdk::{Decision, Policy, Request};

pub struct ForbiddenImport;

impl Policy for ForbiddenImport {
    /// Any settings, ignored.
    type Settings = serde::de::IgnoredAny;

    fn evaluate(_settings: &Self::Settings, _request: &Request) -> Decision {
        match std::fs::read("/etc/passwd") {
            Ok(bytes) => Decision::deny(format!(
                "forbidden-import read {} bytes of /etc/passwd",
                bytes.len()
            )),
            Err(e) => Decision::deny(format!("forbidden-import could not read /etc/passwd: {e}")),
        }
    }
}

policy_sdk::export_policy!(ForbiddenImport);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::run;
    use serde_json::json;

    #[test]
    fn always_denies_and_accepts_any_settings() {
        let req = Request::new_tool_call("x", json!({}));
        assert!(run::evaluate::<ForbiddenImport>(r#"{"anything": [1, 2]}"#, &req).is_deny());
        assert_eq!(run::validate_settings::<ForbiddenImport>("null"), Ok(()));
    }
}
