//! The packaging under `gateway/deploy/`, checked without Docker, Kubernetes or systemd: every path the
//! Dockerfile copies exists or is produced by its build steps; the compose file and the systemd units parse
//! and carry the documented hardening; the example configs load with the gateway's own config loader; and the
//! command lines the packaging runs are accepted by the binary. The Helm chart is rendered and linted by Helm
//! itself and the Dockerfile linted by hadolint in `tests/deploy/` (pytest).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
}

/// Runs the binary with `args`; asserts clap accepted them (usage errors exit 2) and returns the output text.
fn accepted(args: &[String]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .args(args)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_ne!(
        o.status.code(),
        Some(2),
        "the binary rejects {args:?}:\n{out}"
    );
    out
}

// ---- Dockerfile ----

/// Instructions with continuation lines joined and comments dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

#[test]
fn dockerfile_copies_only_what_exists_or_is_built() {
    let text = read(&deploy().join("Dockerfile"));
    let ins = instructions(&text);
    let runs: String = ins
        .iter()
        .filter(|i| i.starts_with("RUN "))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert!(
        froms[0].starts_with("FROM rust:1.95") && froms[0].ends_with("AS builder"),
        "{froms:?}"
    );
    assert!(
        froms.last().unwrap().contains("distroless"),
        "runtime image has no shell: {froms:?}"
    );
    let mut copies = 0;
    for i in ins.iter().filter(|i| i.starts_with("COPY ")) {
        copies += 1;
        let words: Vec<&str> = i.split_whitespace().skip(1).collect();
        let from_builder = words.contains(&"--from=builder");
        let paths: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (srcs, _dst) = paths.split_at(paths.len() - 1);
        for src in srcs {
            if !from_builder {
                assert!(
                    repo().join(src).exists(),
                    "COPY {src}: not in the repository"
                );
                continue;
            }
            if *src == "/src/target/release/mcp-gateway" {
                assert!(
                    runs.contains("cargo build --release --locked -p mcp-gateway"),
                    "{runs}"
                );
                assert!(
                    read(&repo().join("gateway/Cargo.toml"))
                        .contains("name = \"mcp-gateway\"\npath = \"src/main.rs\"")
                );
            } else if let Some(wasm) = src.strip_prefix("/src/target/wasm32-wasip2/policy/") {
                let package = wasm.trim_end_matches(".wasm").replace('_', "-");
                assert!(
                    runs.contains("bash policies/build.sh") && runs.contains(&package),
                    "{package} is not built: {runs}"
                );
                assert!(
                    repo()
                        .join("policies")
                        .join(&package)
                        .join("Cargo.toml")
                        .exists(),
                    "{package}"
                );
                let built = repo().join("target/wasm32-wasip2/policy").join(wasm);
                assert!(
                    built.exists(),
                    "{}: run `bash policies/build.sh`",
                    built.display()
                );
            } else if *src == "/out/audit" {
                assert!(runs.contains("install -d -m 0700 /out/audit"), "{runs}");
            } else {
                panic!("COPY --from=builder {src}: no build step known to produce it");
            }
        }
    }
    assert!(copies >= 8, "{copies}");
    assert!(ins.contains(&"USER 65532:65532".to_owned()), "{ins:?}");
    let entry = ins.iter().find(|i| i.starts_with("ENTRYPOINT ")).unwrap();
    assert_eq!(
        entry, "ENTRYPOINT [\"/usr/local/bin/mcp-gateway\"]",
        "exec form: no shell"
    );
    let cmd = ins.iter().find(|i| i.starts_with("CMD ")).unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).unwrap();
    let out = accepted(&[cmd, vec!["--help".into()]].concat());
    assert!(out.contains("Config file"), "{out}");
}

#[test]
fn example_config_loads() {
    let p = deploy().join("config.example.yaml");
    let c = mcp_gateway::config::load(&p).unwrap();
    assert_eq!(
        c.audit.unwrap().dir,
        Path::new("/var/lib/mcp-gateway/audit")
    );
    let modules = c.policies.unwrap().modules;
    assert!(
        modules
            .iter()
            .all(|m| m.path.starts_with("/usr/share/mcp-gateway/policies"))
    );
}

// ---- compose ----

#[test]
fn compose_runs_cloudflared_in_the_gateways_network_with_hardening() {
    let dir = deploy().join("compose");
    let c = yaml(&read(&dir.join("docker-compose.yml")));
    let gw = &c["services"]["gateway"];
    let cf = &c["services"]["cloudflared"];
    assert_eq!(cf["network_mode"], "service:gateway");
    assert!(
        cf["command"]
            .as_str()
            .unwrap()
            .contains("run --url http://localhost:8080")
    );
    for s in [gw, cf] {
        assert_eq!(s["user"], "65532:65532");
        assert_eq!(s["read_only"], true);
        assert_eq!(s["cap_drop"], serde_json::json!(["ALL"]));
        assert!(
            s["security_opt"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "no-new-privileges:true")
        );
    }
    assert!(gw["tmpfs"][0].as_str().unwrap().starts_with("/tmp"));
    let context = dir.join(gw["build"]["context"].as_str().unwrap());
    assert!(
        context
            .join(gw["build"]["dockerfile"].as_str().unwrap())
            .exists()
    );
    assert!(
        gw["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "audit:/var/lib/mcp-gateway/audit")
    );
    // stop_grace_period = shutdown_timeout of the config the image ships.
    let shipped = yaml(&read(&deploy().join("config.example.yaml")));
    assert_eq!(gw["stop_grace_period"], shipped["shutdown_timeout"]);
}

// ---- systemd ----

fn unit(name: &str) -> Vec<(String, String)> {
    let text = read(&deploy().join("systemd").join(name)).replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: not key=value: {l}"));
            (
                k.to_owned(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

fn get<'a>(u: &'a [(String, String)], key: &str) -> &'a str {
    u.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}="))
}

#[test]
fn systemd_units_are_hardened_and_run_valid_commands() {
    let s = unit("mcp-gateway.service");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", ""),
        ("ReadWritePaths", "/var/lib/mcp-gateway/audit"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("User", "mcp-gateway"),
    ] {
        assert_eq!(get(&s, k), v, "{k}");
    }
    assert!(
        get(&s, "StateDirectory")
            .split(' ')
            .any(|d| d == "mcp-gateway")
    );
    let start: Vec<String> = get(&s, "ExecStart")
        .split(' ')
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert_eq!(start[..2], ["serve", "--config"]);

    let r = unit("mcp-gateway-cert-renew.service");
    let renew: Vec<String> = get(&r, "ExecStart")
        .split(' ')
        .skip(1)
        .map(str::to_owned)
        .collect();
    let out = accepted(&renew);
    assert!(
        out.contains("cannot read /etc/mcp-gateway/tls/tls.crt"),
        "{out}"
    );
    let t = unit("mcp-gateway-cert-renew.timer");
    assert_eq!(get(&t, "OnCalendar"), "daily");
}
