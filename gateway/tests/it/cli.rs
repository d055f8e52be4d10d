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
    // Issue 17: found where the build put them (this binary's target directory, also under
    // CARGO_TARGET_DIR), without MCP_POLICY_DIR.
    let policies = wasm("tool_allowlist").parent().unwrap().to_owned();
    let beside_binary = Path::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("wasm32-wasip2/policy"));
    let mut cmd = bin();
    cmd.arg("demo").env_remove("CARGO_TARGET_DIR");
    if beside_binary.as_deref() == Some(policies.as_path()) {
        cmd.env_remove("MCP_POLICY_DIR");
    } else {
        cmd.env("MCP_POLICY_DIR", &policies);
    }
    let mut child = cmd
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
    assert!(
        !text.contains('\u{1b}'),
        "colour escapes in the demo's piped output"
    );
}

/// Runs the binary with `stdin` piped in.
fn with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Issue 17: `policy eval` takes what users have — a bare JSON-RPC message (a file or stdin), an audit
/// decision record straight from `audit query`, the wrapper — and says what is wrong with anything else.
#[tokio::test(flavor = "multi_thread")]
async fn policy_eval_takes_a_bare_message_stdin_and_an_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let allowlist = wasm("tool_allowlist");
    let eval = |request: &str| {
        let mut c = bin();
        c.args(["policy", "eval"]).arg(&allowlist).args([
            "--settings",
            r#"{"allow":["echo"]}"#,
            "--request",
            request,
        ]);
        c
    };
    // What curl sends, what the logs show: no wrapper.
    let call = dir.path().join("call.json");
    std::fs::write(
        &call,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
    )
    .unwrap();
    let o = eval(call.to_str().unwrap()).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("decision: allow"), "{}", text(&o));

    // `-`: stdin.
    let o = with_stdin(
        eval("-"),
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_customer","arguments":{}}}"#,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("decision: hidden"), "{}", text(&o));

    // An audit decision record, piped from `audit query --format jsonl`.
    let audit = dir.path().join("audit");
    {
        let log = mcp_gateway::audit::AuditLog::open(mcp_gateway::audit::AuditConfig::with_dir(
            audit.clone(),
        ))
        .unwrap();
        for i in [0, 5] {
            log.append(crate::audit_support::decision(i)).await.unwrap();
        }
        log.close().await;
    }
    let record = |id: &str| {
        let o = bin()
            .args(["audit", "query"])
            .arg(&audit)
            .args(["--request-id", id, "--format", "jsonl"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        o.stdout
    };
    let guard = |extra: &[&str]| {
        let mut c = bin();
        c.args(["policy", "eval"])
            .arg(wasm("mutation_guard"))
            .args(["--settings", r#"{"deny":["delete_*"]}"#, "--request", "-"])
            .args(extra);
        c
    };
    // req-0: tools/call delete_customer on route crm, arguments recorded in full.
    let o = with_stdin(guard(&[]), &record("req-0"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("decision: deny — tool `delete_customer` is denied"),
        "{}",
        text(&o)
    );
    // req-5 keeps only a digest of its arguments: never guessed, the user is told how to give them.
    let o = with_stdin(guard(&[]), &record("req-5"));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("keeps only a digest of the arguments")
            && text(&o).contains("--arguments"),
        "{}",
        text(&o)
    );
    let o = with_stdin(guard(&["--arguments", r#"{"secret":5}"#]), &record("req-5"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("decision: deny"), "{}", text(&o));

    // Several records at once: one request, please.
    let mut two = record("req-0");
    two.extend(record("req-5"));
    let o = with_stdin(guard(&[]), &two);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("more than one JSON document"),
        "{}",
        text(&o)
    );

    // The wrapper: a typo is an error naming the key meant.
    let o = with_stdin(
        eval("-"),
        br#"{"message": {"jsonrpc":"2.0","id":1,"method":"ping"}, "tols": []}"#,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains(r#"unknown key "tols" — did you mean "tools"?"#),
        "{}",
        text(&o)
    );

    // The formats are in --help.
    let help = bin().args(["policy", "eval", "--help"]).output().unwrap();
    let h = text(&help);
    for want in [
        "A bare JSON-RPC message",
        "An audit decision record",
        "A wrapper with the context",
        "- for stdin",
    ] {
        assert!(h.contains(want), "missing {want:?} in:\n{h}");
    }
}

fn write_fixture(dir: &Path, name: &str, body: &str) {
    std::fs::write(
        dir.join(name),
        body.replace("WASM", &wasm("tool_allowlist").display().to_string()),
    )
    .unwrap();
}

/// Issue 17: typos in fixtures are errors naming the nearest key (they used to pass silently, or run the
/// case anonymous); the format is in --help and in a JSON Schema that the stock fixtures satisfy.
#[test]
fn policy_test_fixture_typos_fail_and_the_format_is_documented() {
    let cases = [
        (
            r#"{"policy": "WASM", "settings": {"allow": ["*"]}, "expect": "allow", "reason_contain": "x",
               "message": {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}}"#,
            r#"unknown key "reason_contain" — did you mean "reason_contains"?"#,
        ),
        (
            r#"{"policy": "WASM", "settings": {"allow": ["*"]},
               "cases": [{"expect": "allow", "principle": {"subject": "alice"},
                          "message": {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}}]}"#,
            r#"unknown key "principle" — did you mean "principal"?"#,
        ),
        (
            r#"{"policy": "WASM", "expect": "alow",
               "message": {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}}"#,
            r#"did you mean "allow"?"#,
        ),
        (
            r#"{"policy": "WASM", "expect": "allow", "context": {"rout": "crm"},
               "message": {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}}"#,
            r#"did you mean "route"?"#,
        ),
    ];
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("policies/fixtures/fixture.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (fixture, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), "f.json", fixture);
        let o = bin()
            .args(["policy", "test"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains(want) && text(&o).contains("0 passed, 1 failed"),
            "missing {want:?} in:\n{}",
            text(&o)
        );
        let doc: serde_json::Value = serde_json::from_str(fixture).unwrap();
        assert!(
            !validator.is_valid(&doc),
            "the schema accepts the typo {want}"
        );
    }
    // Every stock fixture is valid against the schema.
    for e in std::fs::read_dir(repo().join("policies/fixtures")).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".schema.json") {
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
    }
    let help = text(&bin().args(["policy", "test", "--help"]).output().unwrap());
    for want in [
        "\"expect\"",
        "reason_contains",
        "\"cases\"",
        "fixture.schema.json",
        "relative to the fixture file's directory",
        "Exit codes: 0",
    ] {
        assert!(help.contains(want), "missing {want:?} in:\n{help}");
    }
}

/// Issue 17: `policy test --config FILE --route R` runs the fixtures against the route's chain as the
/// gateway would (order, monitor mode, hidden tools, approvals as require_approval); `--format junit|json`
/// for CI; exit codes 0 / 1 / 2.
#[test]
fn policy_test_against_the_configured_chain_with_ci_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"tunnel_domain: t.example.test
tls: {{cert_file: tls.crt, key_file: tls.key}}
routes:
  crm: {{upstream: http://127.0.0.1:9000, policies: [strict, allowlist, guard]}}
  docs: {{upstream: http://127.0.0.1:9001, policies: [allowlist]}}
policies:
  cache_dir: {d}/cache
  modules:
    strict: {{path: {a}, mode: monitor, settings: {{allow: ["search_*"]}}}}
    allowlist: {{path: {a}, settings: {{allow: ["search_*", "delete_*"]}}}}
    guard: {{path: {g}, settings: {{require_approval: ["delete_*"]}}}}
"#,
            d = d.display(),
            a = wasm("tool_allowlist").display(),
            g = wasm("mutation_guard").display(),
        ),
    )
    .unwrap();
    let fixtures = d.join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
        )
    };
    std::fs::write(
        fixtures.join("chain.json"),
        format!(
            r#"{{"tools": [{{"name": "search_docs", "annotations": {{"readOnlyHint": true}}}}],
                "cases": [
                  {{"name": "search allowed", "expect": "allow", "message": {}}},
                  {{"name": "delete needs approval (the monitor's hide does not decide)", "expect": "require_approval",
                    "reason_contains": "needs approval", "message": {}}},
                  {{"name": "unlisted tool hidden", "expect": "hidden", "message": {}}}
                ]}}"#,
            call("search_docs"),
            call("delete_customer"),
            call("drop_table")
        ),
    )
    .unwrap();
    let test = |args: &[&str]| {
        bin()
            .args(["policy", "test", "--config"])
            .arg(&config)
            .args(args)
            .arg(&fixtures)
            .output()
            .unwrap()
    };
    let o = test(&["--route", "crm"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3 passed, 0 failed"), "{}", text(&o));

    // On `docs` (allowlist alone) the delete is allowed: the case fails, naming what each policy said.
    let o = test(&["--route", "docs", "--format", "junit"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let xml = String::from_utf8_lossy(&o.stdout);
    assert!(
        xml.starts_with("<?xml")
            && xml.contains(r#"<testsuites tests="3" failures="1""#)
            && xml.contains(r#"<testcase name="search allowed""#)
            && xml.contains("<failure message=\"expected require_approval, got allow"),
        "{xml}"
    );
    let o = test(&["--route", "docs", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["passed"], 2);
    assert_eq!(report["failed"], 1);
    assert_eq!(report["cases"][1]["decision"], "allow");
    assert!(
        report["cases"][1]["failure"]
            .as_str()
            .unwrap()
            .contains("allowlist said allow")
    );

    // Two routes and no --route or context.route: which chain is meant is asked, per case.
    let o = test(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("which route?"), "{}", text(&o));
    // A route that does not exist, or no fixtures: a usage error, exit 2.
    let o = test(&["--route", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("has no route `nope` (routes: crm, docs)"),
        "{}",
        text(&o)
    );
    let empty = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["policy", "test"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // --policy: one component for every case, whatever the fixtures name (a build under CARGO_TARGET_DIR).
    std::fs::write(
        empty.path().join("f.json"),
        format!(
            r#"{{"policy": "../target/nowhere.wasm", "settings": {{"allow": ["x"]}}, "expect": "allow", "message": {}}}"#,
            call("x")
        ),
    )
    .unwrap();
    let o = bin()
        .args(["policy", "test"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("relative to the fixture's directory"),
        "{}",
        text(&o)
    );
    let o = bin()
        .args(["policy", "test", "--policy"])
        .arg(wasm("tool_allowlist"))
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// The fenced block after the `<!-- {marker}` comment in a Markdown file.
fn block_after(markdown: &str, marker: &str) -> String {
    let at = markdown
        .find(&format!("<!-- {marker}"))
        .unwrap_or_else(|| panic!("no <!-- {marker} … --> in the README"));
    let rest = &markdown[at..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

/// Issue 17: the policy-sdk README's walkthrough is this test's script, run on a fresh directory:
/// `policy new` → `cargo test` → build for wasm32-wasip2 → `policy check` → `policy test` → `policy eval`.
/// And the `src/lib.rs` the README shows is the one `policy new` writes.
#[test]
fn policy_new_walkthrough_from_the_sdk_readme() {
    let readme = std::fs::read_to_string(repo().join("policy-sdk/README.md")).unwrap();
    let script = block_after(&readme, "walkthrough:");
    let work = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .args(["-euxo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
        // As a user runs it: the crate's own target/ (the README's paths), and the crates already fetched.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("MCP_POLICY_DIR")
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "the walkthrough failed:\n{out}");
    for want in [
        "created policy crate `my-policy`",
        "test result: ok. 3 passed",
        "loads as an mcp:policy@0.2.0 policy",
        "4 passed, 0 failed",
        "decision: deny — tool `delete_user` is blocked on this route (rule `delete_*`)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let crate_dir = work.path().join("my-policy");
    let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    assert_eq!(
        block_after(&readme, "lib.rs:"),
        lib,
        "policy-sdk/README.md shows another src/lib.rs than `policy new my-policy` writes"
    );
    // The dependency resolves from where the crate was made: a relative path to this checkout's SDK.
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("policy-sdk = { path = \"../"),
        "{manifest}"
    );
    // A second `policy new` into the same place refuses to overwrite.
    let o = bin()
        .args(["policy", "new", "my-policy"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("exists and is not empty"), "{}", text(&o));
}

/// Issue 17: relative paths in a config resolve against the config file's directory (not the working
/// directory), and an error about such a file says how its path came about.
#[test]
fn relative_config_paths_resolve_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("policies")).unwrap();
    std::fs::copy(wasm("tool_allowlist"), conf.join("policies/allowlist.wasm")).unwrap();
    mcp_gateway::certs::issue("t.example.test", mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(&conf.join("pki"))
        .unwrap();
    std::fs::write(
        conf.join("config.yaml"),
        r#"listen_addr: 127.0.0.1:0
tunnel_domain: t.example.test
tls: {cert_file: ./pki/tls.crt, key_file: pki/missing.key}
routes: {crm: "http://127.0.0.1:9"}
upstream: {allowed_ips: [127.0.0.0/8]}
audit: {dir: audit}
admin: {disabled: true}
policies:
  cache_dir: cache
  modules: {allowlist: {path: policies/allowlist.wasm, settings: {allow: ["*"]}}}
  default: [allowlist]
"#,
    )
    .unwrap();
    // Run from elsewhere: the working directory must not matter.
    let elsewhere = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["check", "--timeout", "1s", "--config"])
        .arg(conf.join("config.yaml"))
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let out = text(&o);
    let c = conf.display();
    assert!(out.contains("✓ policies"), "{out}");
    assert!(out.contains(&format!("{c}/audit will be created")), "{out}");
    assert!(
        out.contains(&format!("{c}/pki/missing.key"))
            && out.contains(&format!(
                "relative paths in the config resolve against the config file's directory: `tls.key_file: pki/missing.key` → {c}/pki/missing.key"
            )),
        "{out}"
    );
    let o = bin()
        .args(["serve", "--config"])
        .arg(conf.join("config.yaml"))
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!(
            "`tls.key_file: pki/missing.key` → {c}/pki/missing.key"
        )),
        "{}",
        text(&o)
    );
    assert!(!elsewhere.path().join("audit").exists());
}

/// Issue 17: README's quickstart config has its own audit directory (beside the config), so it neither needs
/// root nor collides with another gateway on the host.
#[test]
fn the_quickstart_config_has_its_own_audit_dir() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("cat > config.yaml <<'YAML'\n").unwrap();
    let yaml = &readme[start..];
    let yaml = &yaml[yaml.find('\n').unwrap() + 1..];
    let yaml = &yaml[..yaml.find("\nYAML\n").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let config = mcp_gateway::config::from_yaml(yaml, &dir.path().join("config.yaml")).unwrap();
    let audit = config.audit.expect("auditing on");
    assert!(
        audit.dir_configured,
        "the quickstart config sets no audit.dir"
    );
    assert_eq!(audit.dir, dir.path().join("audit"));
}

/// Issue 17: log lines carry colour escapes only on a terminal (never in a file, a pipe or CI).
#[test]
fn logs_have_no_colour_escapes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "listen_addr: 127.0.0.1:0\nlog_level: info\ntunnel_domain: t.test\ntls: {cert_file: c.crt, key_file: k.key}\nroutes: {docs: http://127.0.0.1:9}\nadmin: {disabled: true}\naudit: {dir: audit}\n",
    )
    .unwrap();
    let o = bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("starting mcp-gateway"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour escapes in a pipe: {err:?}");
}

/// Issue 17: the README's recipe for a test token (OpenSSL only) makes a JWT the gateway's verifier
/// accepts, with the subject and claims a principal-based policy reads.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_readme_test_token_recipe_mints_a_token_the_gateway_accepts() {
    let readme = std::fs::read_to_string(repo().join("policy-sdk/README.md")).unwrap();
    let script = block_after(&readme, "test-token:");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let yaml = format!(
        "tunnel_domain: t.test\ntls: {{cert_file: c, key_file: k}}\n{}",
        readme[readme
            .find("identity:\n  jwt: { issuer: https://idp.test/")
            .unwrap()..]
            .split("```")
            .next()
            .unwrap()
    );
    let config = mcp_gateway::config::from_yaml(&yaml, &dir.path().join("config.yaml")).unwrap();
    let verifier = mcp_gateway::identity::Verifier::new(config.identity.as_ref().unwrap());
    let token = std::fs::read_to_string(dir.path().join("alice.jwt")).unwrap();
    let p = verifier.verify(token.trim()).await.unwrap();
    assert_eq!(p.subject(), "alice");
    assert_eq!(p.claims()["groups"], serde_json::json!(["admins"]));
}
