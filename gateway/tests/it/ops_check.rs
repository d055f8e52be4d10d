//! `mcp-gateway check --config FILE` against a good setup (the sample MCP upstream in-process, real policy
//! components, a temp audit dir) and against each way a setup breaks, with its exit code.

use crate::common;
use common::wasm;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

const TD: &str = "t.example.test";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A working setup in a temp dir; `edit` changes the YAML before it is written.
struct Setup {
    dir: tempfile::TempDir,
    upstream: SocketAddr,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
            .unwrap()
            .write_to(dir.path())
            .unwrap();
        let sample = mcp_gateway::demo::upstream::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Setup {
            dir,
            upstream: sample.addr,
        }
    }

    fn yaml(&self) -> String {
        format!(
            r#"listen_addr: 127.0.0.1:0
tunnel_domain: {TD}
tls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key}}
routes:
  crm: http://{up}
upstream: {{allowed_ips: [127.0.0.0/8]}}
audit: {{dir: {d}/audit}}
policies:
  cache_dir: {d}/cache
  modules:
    allowlist: {{path: {w}, settings: {{allow: ["search_*"]}}}}
  default: [allowlist]
"#,
            d = self.dir.path().display(),
            up = self.upstream,
            w = wasm("tool_allowlist").display()
        )
    }

    /// Runs `check` on `yaml` (off the async runtime, so the in-process upstream keeps serving).
    async fn check(&self, yaml: String, extra: &[&str]) -> Output {
        let cfg = self.dir.path().join("config.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
                .args(["check", "--timeout", "3s", "--config"])
                .arg(&cfg)
                .args(&extra)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }
}

fn assert_fails_with(o: &Output, wants: &[&str]) {
    let out = text(o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for w in wants {
        assert!(out.contains(w), "missing {w:?} in:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn good_setup_passes_every_item() {
    let s = Setup::new().await;
    let o = s.check(s.yaml(), &[]).await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "✓ config: valid: 1 route(s), tunnel_domain t.example.test",
        "✓ tls key:",
        "✓ tls certificate:",
        "✓ route crm: IP gate: http://127.0.0.1:",
        "127.0.0.1 (allowed)",
        "✓ route crm: MCP:",
        "tools/list: 6 tool(s)",
        "✓ policies: 1 module(s) load with their settings: allowlist",
        "✓ audit:",
        "will be created (mode 0700)",
        "OK: 7 checks passed",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // `check` creates nothing: the audit directory is still to be made by the gateway.
    assert!(!s.dir.path().join("audit").exists());

    let o = s.check(s.yaml(), &["--json"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["checks"].as_array().unwrap().len(), 7);
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "pass"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_config_stops_the_list() {
    let s = Setup::new().await;
    let yaml = s.yaml().replace("routes:\n  crm: ", "routes:\n  - crm: ");
    let o = s.check(yaml, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ config:",
            "routes must be a map of host → upstream URL",
            "FAIL: 1 of 1",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_certificate_and_expired_certificate() {
    let s = Setup::new().await;
    let yaml = s.yaml().replace("tls.crt", "missing.crt");
    let o = s.check(yaml, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ tls certificate: cannot read",
            "missing.crt",
            "fix: point tls.cert_file",
        ],
    );

    // A certificate from the same CA whose validity ended yesterday.
    let d = s.dir.path();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(d.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(d.join("ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = mcp_gateway::certs::KeyKind::EcdsaP256.generate().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let pem = mcp_gateway::certs::server_cert(
        &[format!("*.{TD}")],
        &key,
        &issuer,
        now - time::Duration::days(91),
        now - time::Duration::days(1),
    )
    .unwrap();
    std::fs::write(d.join("tls.crt"), pem).unwrap();
    std::fs::write(d.join("tls.key"), key.serialize_pem()).unwrap();
    let o = s.check(s.yaml(), &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ tls certificate:",
            "✗ validity: EXPIRED 1 days",
            "certs renew",
        ],
    );
    // The rest of the list still ran.
    assert!(text(&o).contains("✓ route crm: MCP:"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_not_covering_a_route_host() {
    let s = Setup::new().await;
    let yaml = s
        .yaml()
        .replace("tunnel_domain: t.example.test", "tunnel_domain: other.test");
    let o = s.check(yaml, &[]).await;
    assert_fails_with(&o, &["✗ SAN coverage: does not cover crm.other.test"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_outside_the_ip_gate() {
    let s = Setup::new().await;
    let yaml = s.yaml().replace("[127.0.0.0/8]", "[10.0.0.0/8]");
    let o = s.check(yaml, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ route crm: IP gate:",
            "127.0.0.1 (NOT allowed)",
            "IP validation failed: 127.0.0.1 is not in allowed_ips",
            "REPLACES the RFC 1918 default",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down() {
    let s = Setup::new().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let yaml = s.yaml().replace(&s.upstream.to_string(), &dead.to_string());
    let o = s.check(yaml, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✓ route crm: IP gate",
            "✗ route crm: MCP:",
            "cannot connect",
            "start the MCP server",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_that_is_not_mcp() {
    let s = Setup::new().await;
    // The realistic mistake: a route pointing at an HTTP service that is not an MCP server.
    let echo = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        let mut r = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from("not found"),
                        ));
                        *r.status_mut() = http::StatusCode::NOT_FOUND;
                        Ok::<_, std::convert::Infallible>(r)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        a
    };
    let yaml = s.yaml().replace(&s.upstream.to_string(), &echo.to_string());
    let o = s.check(yaml, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ route crm: MCP:",
            "neither server/discover nor initialize succeeded",
            "HTTP 404",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_with_bad_settings() {
    let s = Setup::new().await;
    let yaml = s.yaml().replace("settings: {allow:", "settings: {alow:");
    let o = s.check(yaml, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ policies:",
            "rejected its settings",
            "mcp-gateway policy check",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_dir_that_cannot_be_written() {
    let s = Setup::new().await;
    // A path through a regular file: unwritable for every user, root included.
    std::fs::write(s.dir.path().join("plain-file"), "x").unwrap();
    let yaml = s.yaml().replace("/audit}", "/plain-file/audit}");
    let o = s.check(yaml, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ audit:",
            "plain-file is not a directory",
            "fix: set audit.dir",
        ],
    );

    if rustix::process::getuid().as_raw() != 0 {
        let ro = s.dir.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
        let yaml = s.yaml().replace("/audit}", "/read-only}");
        let o = s.check(yaml, &[]).await;
        assert_fails_with(&o, &["✗ audit:", "ermission denied"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_audit_log_is_left_untouched() {
    let s = Setup::new().await;
    // A log a gateway has opened and closed (its lock file and whatever it wrote).
    let audit = s.dir.path().join("audit");
    {
        let cfg = mcp_gateway::audit::AuditConfig::with_dir(audit.clone());
        let log = mcp_gateway::audit::AuditLog::open(cfg).unwrap();
        log.close().await;
    }
    let snapshot = |dir: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&audit);
    let o = s.check(s.yaml(), &[]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("✓ audit: {} is writable", audit.display())),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&audit), before);

    // While another gateway holds the log, `serve` would refuse it: so does check (✗, exit 1), and it still
    // does not touch it.
    let cfg = mcp_gateway::audit::AuditConfig::with_dir(audit.clone());
    let log = mcp_gateway::audit::AuditLog::open(cfg).unwrap();
    let before = snapshot(&audit);
    let o = s.check(s.yaml(), &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ audit:",
            "is locked by another gateway",
            "would refuse to start",
            "fix: give every gateway its own audit.dir",
        ],
    );
    assert_eq!(snapshot(&audit), before);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_postgres_store_reachable_or_not() {
    let s = Setup::new().await;
    let pg = tokio::task::spawn_blocking(common::postgres::PgCluster::start)
        .await
        .unwrap();
    let url = tokio::task::block_in_place(|| pg.create_db("approvals"));
    let url_file = s.dir.path().join("db-url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let with_store = format!(
        "{}approvals:\n  postgres: {{url_file: {}}}\n",
        s.yaml(),
        url_file.display()
    );
    let o = s.check(with_store.clone(), &[]).await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("✓ approvals store: PostgreSQL 1")
            && out.contains("postgres@127.0.0.1:")
            && out.contains("the approvals table is created at the first start"),
        "{out}"
    );
    // `check` wrote nothing to the database.
    let tables = tokio::task::block_in_place(|| {
        pg.psql(
            "approvals",
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'mcp_gateway%'",
        )
    });
    assert_eq!(tables, "0");
    // The server down: the item fails, naming the database and what to check.
    tokio::task::block_in_place(|| pg.stop());
    let o = s.check(with_store, &[]).await;
    assert_fails_with(
        &o,
        &[
            "✗ approvals store: PostgreSQL postgres@127.0.0.1:",
            "check approvals.postgres",
        ],
    );
}
