//! The packaging under `gateway/deploy/`, checked without Docker, Kubernetes or systemd: every path the
//! Dockerfile copies exists or is produced by its build steps; the compose file, the systemd units and every
//! Helm template (rendered by a small renderer for the template subset the chart uses) parse and carry the
//! documented hardening; the example configs load with the gateway's own config loader; and the command
//! lines the packaging runs are accepted by the binary.

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

// ---- Helm ----

/// Renders the Go-template subset the chart uses: `.Values.*`, `.Release.Name`, `.Chart.*` references,
/// `quote`, `toYaml`, `nindent N`, `if`/`else`/`end`, and `{{-` / `-}}` trimming. Anything else panics, so a
/// template that outgrows the subset fails here instead of being checked wrongly.
fn render(tpl: &str, values: &Value, chart: &Value) -> String {
    let root = serde_json::json!({"Values": values, "Release": {"Name": "gw", "Namespace": "mcp"}, "Chart": chart});
    let mut out = String::new();
    let mut stack: Vec<(bool, bool)> = Vec::new(); // (this branch taken, enclosing branch active)
    let active = |s: &Vec<(bool, bool)>| s.last().is_none_or(|(taken, outer)| *taken && *outer);
    let mut rest = tpl;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let end = start + rest[start..].find("}}").expect("unclosed {{");
        let mut action = &rest[start + 2..end];
        if let Some(a) = action.strip_prefix('-') {
            text = text.trim_end();
            action = a;
        }
        trim_next = action.ends_with('-');
        let action = action.trim_end_matches('-').trim();
        if active(&stack) {
            out.push_str(text);
        }
        rest = &rest[end + 2..];
        if action.starts_with("/*") {
            continue;
        }
        if let Some(cond) = action.strip_prefix("if ") {
            let outer = active(&stack);
            stack.push((truthy(&eval(cond, &root)), outer));
        } else if action == "else" {
            let top = stack.last_mut().expect("else without if");
            top.0 = !top.0;
        } else if action == "end" {
            stack.pop().expect("end without if");
        } else if active(&stack) {
            out.push_str(&eval_text(action, &root));
        }
    }
    assert!(stack.is_empty(), "unclosed if");
    out.push_str(if trim_next { rest.trim_start() } else { rest });
    out
}

fn lookup<'a>(path: &str, root: &'a Value) -> &'a Value {
    let path = path
        .strip_prefix('.')
        .unwrap_or_else(|| panic!("unsupported expression {path:?}"));
    path.split('.').fold(root, |v, k| &v[k])
}

fn eval(expr: &str, root: &Value) -> Value {
    let expr = expr.trim();
    if let Some(arg) = expr.strip_prefix("toYaml ") {
        return Value::String(to_yaml(lookup(arg.trim(), root)));
    }
    lookup(expr, root).clone()
}

fn to_yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap().trim_end().to_owned()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => panic!("template references a value that is not set"),
        other => other.to_string(),
    }
}

fn eval_text(action: &str, root: &Value) -> String {
    let mut parts = action.split('|').map(str::trim);
    let mut v = scalar(&eval(parts.next().unwrap(), root));
    for f in parts {
        v = match f.split_once(' ') {
            None if f == "quote" => serde_json::to_string(&v).unwrap(),
            Some(("nindent", n)) => {
                let pad = " ".repeat(n.parse().unwrap());
                format!(
                    "\n{}",
                    v.lines()
                        .map(|l| format!("{pad}{l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            }
            _ => panic!("unsupported template function {f:?}"),
        };
    }
    v
}

/// Renders every template with `values` and parses the documents.
fn render_chart(values: &Value) -> Vec<Value> {
    let dir = deploy().join("helm/mcp-gateway");
    let chart = yaml(&read(&dir.join("Chart.yaml")));
    let chart = serde_json::json!({"Name": chart["name"], "AppVersion": chart["appVersion"], "Version": chart["version"]});
    let mut docs = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let rendered = render(&read(&p), values, &chart);
        for doc in serde_yaml_ng::Deserializer::from_str(&rendered) {
            let v = <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| {
                panic!(
                    "{}: invalid YAML after rendering: {e}\n{rendered}",
                    p.display()
                )
            });
            if v.is_null() {
                continue;
            }
            assert!(
                v["apiVersion"].is_string() && v["kind"].is_string(),
                "{}: {v:#}",
                p.display()
            );
            assert!(
                v["metadata"]["name"].as_str().unwrap().starts_with("gw"),
                "{}",
                p.display()
            );
            docs.push(v);
        }
    }
    docs
}

fn values() -> Value {
    yaml(&read(&deploy().join("helm/mcp-gateway/values.yaml")))
}

fn kind<'a>(docs: &'a [Value], k: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == k)
}

#[test]
fn helm_chart_renders_to_hardened_manifests() {
    let v = values();
    let docs = render_chart(&v);

    // The config the chart writes is the values' block, and the gateway loads it.
    let cm = kind(&docs, "ConfigMap").unwrap();
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    assert_eq!(yaml(text), v["gateway"]["config"]);
    let config = mcp_gateway::config::from_yaml(text, Path::new("values.yaml")).unwrap();
    assert_eq!(config.routes.len(), 2);

    let sts = kind(&docs, "StatefulSet").unwrap();
    assert_eq!(sts["spec"]["replicas"], v["replicas"]);
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "gateway + cloudflared");
    for c in containers {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    }
    assert_eq!(containers[1]["args"][4], "http://localhost:8080");
    let tls = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(
        tls["secret"]["secretName"],
        v["external"]["serverCertSecretName"]
    );
    let args: Vec<String> = serde_json::from_value(containers[0]["args"].clone()).unwrap();
    accepted(&[args, vec!["--help".into()]].concat());

    let np = kind(&docs, "NetworkPolicy").unwrap();
    assert_eq!(
        np["spec"]["egress"][0],
        v["networkPolicy"]["egress"]["mcpServers"][0]
    );
    assert_eq!(np["spec"]["ingress"], serde_json::json!([]));

    let cron = kind(&docs, "CronJob").unwrap();
    let job = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let renew: Vec<String> =
        serde_json::from_value(job["initContainers"][0]["args"].clone()).unwrap();
    assert_eq!(renew[..4], ["certs", "renew", "--renew-before", "720h"]);
    let out = accepted(&renew);
    assert!(out.contains("cannot read /in/tls.crt"), "{out}");
    assert!(kind(&docs, "Role").is_some() && kind(&docs, "RoleBinding").is_some());
    assert!(kind(&docs, "Service").is_none());
}

#[test]
fn helm_chart_toggles() {
    let mut v = values();
    v["networkPolicy"]["enabled"] = false.into();
    v["serverCert"]["renew"]["enabled"] = false.into();
    v["cloudflared"]["enabled"] = false.into();
    v["approvals"]["postgres"]["enabled"] = true.into();
    v["service"]["enabled"] = true.into();
    let docs = render_chart(&v);
    assert!(kind(&docs, "NetworkPolicy").is_none());
    assert!(kind(&docs, "CronJob").is_none());
    assert_eq!(
        kind(&docs, "Service").unwrap()["spec"]["ports"][0]["port"],
        8080
    );
    let pod = &kind(&docs, "StatefulSet").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    // The approvals database's connection string is mounted as the file `approvals.postgres.url_file` names.
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "approvals-db")
        .expect("approvals-db mount");
    assert_eq!(mount["mountPath"], "/etc/mcp-gateway/approvals-db");
    let vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "approvals-db")
        .expect("approvals-db volume");
    assert_eq!(
        vol["secret"]["secretName"],
        v["approvals"]["postgres"]["existingSecret"]
    );
    assert_eq!(
        vol["secret"]["items"][0]["key"],
        v["approvals"]["postgres"]["secretKey"]
    );
    assert_eq!(vol["secret"]["items"][0]["path"], "url");
    let values = include_str!("../../deploy/helm/mcp-gateway/values.yaml");
    assert!(values.contains("postgres: { url_file: /etc/mcp-gateway/approvals-db/url }"));
}

#[test]
fn renderer_refuses_what_it_does_not_know() {
    let r =
        std::panic::catch_unwind(|| render("{{ include \"x\" . }}", &Value::Null, &Value::Null));
    assert!(r.is_err());
    let v = serde_json::json!({"a": {"on": true, "list": [1, 2]}});
    let out = render(
        "x:{{- if .Values.a.on }} {{ .Values.a.list | quote }}{{- else }} no{{- end }}\ny:\n  {{- toYaml .Values.a.list | nindent 2 }}",
        &v,
        &Value::Null,
    );
    assert_eq!(out, "x: \"[1,2]\"\ny:\n  - 1\n  - 2");
}
