//! Test fixture for the gateway's sandbox: a policy that misbehaves on purpose, as its settings choose.
//! Never deploy it.
//!
//! ```json
//! { "mode": "loop" | "memory" | "panic" | "oversized" | "allow" | "deny",
//!   "hidden_tools_mode": "…same values…",   // optional, default "allow" (hide nothing)
//!   "validate_mode": "…same values…",      // optional, default "allow" (settings accepted)
//!   "oversized_bytes": 67108864 }           // optional: size of the `oversized` answers
//! ```
//!
//! `mode` is what `evaluate` does:
//! * `loop`: spins forever (the gateway's epoch deadline must interrupt it);
//! * `memory`: allocates 256 MiB in 1 MiB chunks and writes every byte (the memory limit must trap it);
//! * `panic`: `panic!`s (with `panic = "abort"` an `unreachable` trap);
//! * `oversized`: denies with a reason of `oversized_bytes` bytes, default 64 MiB (the memory limit, or the
//!   host's check of results, must stop it; set e.g. 1 MiB to get past a 16 MiB memory limit to the host);
//! * `allow`: allows; `deny`: denies with the reason `hostile policy: deny mode`.
//! * `deny_server_requests`: allows client→server messages, denies requests the server makes of the client.
//! * `echo_principal`: denies with the principal it was given as the reason.
//! * `sleep`: `std::thread::sleep`s for an hour (`wasi:clocks` `subscribe-duration` + `wasi:io/poll`), over and
//!   over: the gateway's sandbox must not let it block a thread (its sleeps return at once, and the epoch
//!   deadline ends the loop as a `timeout`).
//! * `clock`: reads the wall clock and the monotonic clock twice around a busy loop and denies with
//!   `clock: wall <ns> <ns> monotonic <ns> <ns>`, so tests can see what a guest's clocks do.
//! * `random`: denies with 16 bytes of `wasi:random` as hex (`random: <hex>`).
//! * `answer_hidden`: answers the contract's `hidden` to *every* message — which the SDK only ever answers to a
//!   `tools/call` of a hidden tool, so this mode bypasses the SDK (see `raw` below). For a `tools/call` that
//!   is a valid answer (the tool is hidden); for anything else the gateway must refuse it (`bad_answer`).
//!   Natively (through `policy_sdk::run`) it allows.
//!
//! `hidden_tools_mode` does the same in `hidden` (for every kind of listing) (`allow` hides nothing, `deny` hides every tool,
//! `oversized` returns one oversized name), and `validate_mode` in `validate-settings` (`deny` or `oversized`
//! reject the settings). The SDK re-validates before `evaluate` and `hidden`, so a hostile
//! `validate_mode` affects those too.

use policy_sdk::{Context, Decision, Policy, PromptInfo, Request, ResourceInfo, ToolInfo};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Loop,
    Memory,
    Panic,
    Oversized,
    #[default]
    Allow,
    Deny,
    /// Allows client→server messages, denies every request the server makes of the client.
    DenyServerRequests,
    /// Denies, with the caller's principal as the reason (`principal=<sub> claims=<json>` or
    /// `principal=none`), so tests can see what the gateway told the policy.
    EchoPrincipal,
    /// Answers `hidden` to every message (on wasm only; see the module docs).
    AnswerHidden,
    /// Sleeps an hour, forever.
    Sleep,
    /// Denies with what its clocks read.
    Clock,
    /// Denies with 16 random bytes.
    Random,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub mode: Mode,
    #[serde(default)]
    pub hidden_tools_mode: Mode,
    #[serde(default)]
    pub validate_mode: Mode,
    #[serde(default = "default_oversized_bytes")]
    pub oversized_bytes: usize,
}

fn default_oversized_bytes() -> usize {
    64 * MIB
}

const MIB: usize = 1 << 20;

/// Does the harmful part of `mode`; returns only for the modes that answer.
fn misbehave(mode: Mode, export: &str) {
    match mode {
        Mode::Loop => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        Mode::Memory => {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            for i in 0..256 {
                chunks.push(vec![(i % 251) as u8 + 1; MIB]);
                std::hint::black_box(&chunks);
            }
            panic!("hostile policy: {export} allocated 256 MiB and was not stopped");
        }
        Mode::Panic => panic!("hostile policy: panic mode in {export}"),
        Mode::Sleep => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Mode::Oversized
        | Mode::Clock
        | Mode::Random
        | Mode::Allow
        | Mode::Deny
        | Mode::DenyServerRequests
        | Mode::EchoPrincipal
        | Mode::AnswerHidden => {}
    }
}

/// What the clocks read, twice, around a busy loop of a few milliseconds.
fn clocks() -> String {
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    let w1 = wall();
    let mut spins = 0u64;
    for _ in 0..5_000_000 {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    let w2 = wall();
    let elapsed = start.elapsed().as_nanos();
    format!("clock: wall {w1} {w2} monotonic-elapsed {elapsed}")
}

fn oversized(s: &Settings) -> String {
    "x".repeat(s.oversized_bytes)
}

pub struct Hostile;

impl Policy for Hostile {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        misbehave(s.validate_mode, "validate-settings");
        match s.validate_mode {
            Mode::Deny => Err("hostile policy: validate_mode deny".into()),
            Mode::Oversized => Err(oversized(s)),
            _ => Ok(()),
        }
    }

    fn evaluate(s: &Settings, request: &Request) -> Decision {
        misbehave(s.mode, "evaluate");
        match s.mode {
            Mode::Oversized => Decision::deny(oversized(s)),
            Mode::Deny => Decision::deny("hostile policy: deny mode"),
            Mode::EchoPrincipal => Decision::deny(match request.principal() {
                Some(p) => format!("principal={} claims={}", p.subject, p.claims.value()),
                None => "principal=none".to_owned(),
            }),
            Mode::Clock => Decision::deny(clocks()),
            Mode::Random => {
                let mut bytes = [0u8; 16];
                // std's HashMap keys come from `wasi:random`; read the same source through it.
                for (i, b) in bytes.iter_mut().enumerate() {
                    use std::hash::{BuildHasher, Hasher};
                    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                    h.write_usize(i);
                    *b = h.finish() as u8;
                }
                Decision::deny(format!(
                    "random: {}",
                    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ))
            }
            Mode::DenyServerRequests
                if request.direction() == policy_sdk::Direction::ServerToClient =>
            {
                Decision::deny(format!(
                    "server-to-client `{}` is not allowed",
                    request.method()
                ))
            }
            _ => Decision::allow(),
        }
    }

    fn hidden_tools(s: &Settings, _context: &Context, tools: &[ToolInfo]) -> Vec<String> {
        misbehave(s.hidden_tools_mode, "hidden-tools");
        match s.hidden_tools_mode {
            Mode::Oversized => vec![oversized(s)],
            Mode::Deny => tools.iter().map(|t| t.name.clone()).collect(),
            _ => Vec::new(),
        }
    }

    fn hidden_resources(s: &Settings, _context: &Context, r: &[ResourceInfo]) -> Vec<String> {
        misbehave(s.hidden_tools_mode, "hidden");
        match s.hidden_tools_mode {
            Mode::Oversized => vec![oversized(s)],
            Mode::Deny => r.iter().map(|r| r.uri.clone()).collect(),
            _ => Vec::new(),
        }
    }

    fn hidden_prompts(s: &Settings, _context: &Context, p: &[PromptInfo]) -> Vec<String> {
        misbehave(s.hidden_tools_mode, "hidden");
        match s.hidden_tools_mode {
            Mode::Oversized => vec![oversized(s)],
            Mode::Deny => p.iter().map(|p| p.name.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

// Not `policy_sdk::export_policy!(Hostile)`: the component's exports go through `raw::Raw`, which is the SDK's
// adapter for `Hostile` except where `answer_hidden` breaks the contract on purpose.
#[cfg(not(target_arch = "wasm32"))]
policy_sdk::export_policy!(Hostile);

/// The component's exports: the SDK's adapter, except that mode `answer_hidden` answers `hidden` to any
/// message, which no policy written with the SDK can.
#[cfg(target_arch = "wasm32")]
mod raw {
    use policy_sdk::bindings::mcp::policy::types as wit;
    use policy_sdk::bindings::{Adapter, Guest};

    type Sdk = Adapter<super::Hostile>;

    pub struct Raw;

    impl Guest for Raw {
        fn validate_settings(settings: String) -> Result<(), String> {
            Sdk::validate_settings(settings)
        }

        fn evaluate(settings: String, request: wit::Request) -> wit::Decision {
            match serde_json::from_str::<super::Settings>(&settings) {
                Ok(s) if s.mode == super::Mode::AnswerHidden => wit::Decision::Hidden,
                _ => Sdk::evaluate(settings, request),
            }
        }

        fn hidden(
            settings: String,
            context: wit::RequestContext,
            listing: wit::Listing,
        ) -> Vec<String> {
            Sdk::hidden(settings, context, listing)
        }
    }

    policy_sdk::bindings::__export_policy_world!(Raw with_types_in policy_sdk::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::run;
    use serde_json::json;

    // Only the harmless modes run natively; the others are exercised by the gateway's sandbox tests.

    #[test]
    fn allow_and_deny_modes_answer() {
        let req = Request::new_tool_call("x", json!({}));
        assert!(run::evaluate::<Hostile>(r#"{"mode": "allow"}"#, &req).is_allow());
        assert_eq!(
            run::evaluate::<Hostile>(r#"{"mode": "deny"}"#, &req),
            Decision::deny("hostile policy: deny mode")
        );
        let tools = [ToolInfo::new("a")];
        let hidden = run::hidden_tools::<Hostile>(
            r#"{"mode": "loop", "hidden_tools_mode": "deny"}"#,
            &Context::default(),
            &tools,
        );
        assert_eq!(hidden, vec!["a"]);
        let small = r#"{"mode": "oversized", "oversized_bytes": 1000}"#;
        assert_eq!(
            run::evaluate::<Hostile>(small, &req).reason().map(str::len),
            Some(1000)
        );
    }

    #[test]
    fn echo_principal_names_the_caller_it_was_given() {
        let settings = r#"{"mode": "echo_principal"}"#;
        let req = Request::new_tool_call("x", json!({}));
        assert_eq!(
            run::evaluate::<Hostile>(settings, &req).reason(),
            Some("principal=none")
        );
        let req = req.with_principal(
            policy_sdk::Principal::new("alice").with_claims(json!({"email": "a@x"})),
        );
        assert_eq!(
            run::evaluate::<Hostile>(settings, &req).reason(),
            Some(r#"principal=alice claims={"email":"a@x"}"#)
        );
    }

    #[test]
    fn every_mode_is_valid_settings() {
        for mode in [
            "loop",
            "memory",
            "panic",
            "oversized",
            "allow",
            "deny",
            "deny_server_requests",
            "echo_principal",
            "answer_hidden",
        ] {
            let settings = format!(r#"{{"mode": "{mode}"}}"#);
            assert_eq!(
                run::validate_settings::<Hostile>(&settings),
                Ok(()),
                "{mode}"
            );
        }
        assert!(
            run::validate_settings::<Hostile>(r#"{"mode": "allow", "validate_mode": "deny"}"#)
                .is_err()
        );
        assert!(run::validate_settings::<Hostile>(r#"{"mode": "explode"}"#).is_err());
        assert!(run::validate_settings::<Hostile>("{}").is_err());
    }
}
