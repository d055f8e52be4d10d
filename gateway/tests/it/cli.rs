//! The `mcp-gateway` binary as users run it: policy authors' commands and start-up errors.

use crate::common;
use common::wasm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn policy_check_lists_imports_and_validates_settings() {
    let ok = bin()
        .args(["policy", "check"])
        .arg(wasm("tool_allowlist"))
        .args(["--settings", r#"{"allow":["a*"]}"#])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok));
    let out = text(&ok);
    assert!(
        out.contains("loads as an mcp:policy@0.2.0 policy")
            && out.contains("mcp:policy/log@0.2.0")
            && out.contains("func evaluate"),
        "{out}"
    );

    let bad = bin()
        .args(["policy", "check"])
        .arg(wasm("tool_allowlist"))
        .args(["--settings", r#"{"alow":["a*"]}"#])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("rejected its settings"),
        "{}",
        text(&bad)
    );

    let forbidden = bin()
        .args(["policy", "check"])
        .arg(wasm("forbidden_import"))
        .output()
        .unwrap();
    assert!(!forbidden.status.success());
    assert!(
        text(&forbidden).contains("imports `wasi:filesystem/"),
        "{}",
        text(&forbidden)
    );
}

#[test]
fn policy_eval_prints_the_decision_and_timing() {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("call.json");
    std::fs::write(
        &req,
        r#"{"message": {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","arguments":{"id":"c-1"}}},
            "tools": [{"name":"delete_customer","annotations":{"destructiveHint":true}}]}"#,
    )
    .unwrap();
    let o = bin()
        .args(["policy", "eval"])
        .arg(wasm("mutation_guard"))
        .args([
            "--settings",
            r#"{"require_approval":["delete_*"]}"#,
            "--repeat",
            "50",
            "--request",
        ])
        .arg(&req)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("decision: require_approval") && out.contains("delete_customer"),
        "{out}"
    );
    assert!(out.contains("(median of 50)"), "{out}");
}

#[test]
fn policy_test_runs_fixtures_and_fails_on_a_wrong_expectation() {
    let o = bin()
        .args(["policy", "test"])
        .arg(repo().join("policies/fixtures"))
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("12 passed, 0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrong.json"),
        format!(
            r#"{{"policy": "{}", "settings": {{"allow": ["*"]}}, "expect": "deny",
                "message": {{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x"}}}}}}"#,
            wasm("tool_allowlist").display()
        ),
    )
    .unwrap();
    let o = bin()
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("expected deny, got allow") && text(&o).contains("0 passed, 1 failed"),
        "{}",
        text(&o)
    );
}

#[test]
fn serve_refuses_a_bad_config_with_an_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "tunnel_domain: t.test\ntls: {cert_file: c, key_file: k}\nroutes:\n  - docs: http://10.0.0.1:80\n").unwrap();
    // Anthropic's container form: `-config FILE`, no subcommand.
    let o = bin().arg("-config").arg(&cfg).output().unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("routes must be a map of host → upstream URL"),
        "{}",
        text(&o)
    );
}

/// README's first command: the demo runs on embedded defaults, shows every kind of decision, approves the
/// held call through the CLI, and its audit trail verifies.
#[test]
fn the_demo_shows_every_decision_and_an_approval_through_the_cli() {
    let policies = wasm("tool_allowlist").parent().unwrap().to_owned();
    let mut child = bin()
        .arg("demo")
        .env("MCP_POLICY_DIR", &policies)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not finish within 180 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    for expected in [
        "ALLOWED",
        "DENIED    Blocked by policy 'arguments'",
        "HELD      waiting for an approver",
        "approved by demo-approver",
        "APPROVED  after",
        "customer c-42 deleted",
        "HIDDEN    -32602 Unknown tool: admin_reset_database",
        "INVALID",
        "cacheScope \"private\"",
        "Of the last 5 requests, 0 reached it.",
        "chain verified ✓",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
