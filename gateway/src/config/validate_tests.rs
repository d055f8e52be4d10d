//! Tests of config validation: every mistake a user makes gets a message that says what to change.

use super::*;

const ANTHROPIC_DOC: &str = r#"
listen_addr: ":8080"            # Go-style ":port" means all interfaces
log_level: info                 # debug | info | warn | error
shutdown_timeout: 30s           # drain in-flight requests on SIGTERM
tunnel_domain: abcd1234.tunnel.anthropic.com
tls:
  cert_file: /data/tls.crt
  key_file: /data/tls.key
routes:                         # a MAP: key = bare subdomain or full hostname; value = scheme://host:port
  docs: http://docs-mcp.example.corp:8080
  search: http://10.0.12.7:9000
upstream:
  allowed_ips: [10.0.0.0/8]     # REPLACES the default (10/8, 172.16/12, 192.168/16); CIDR or single address
  # disable_ip_validation: false   # mutually exclusive with allowed_ips
  # tls: { ca_file: /data/upstream-ca.pem, include_system_cas: false }   # for https:// upstreams
"#;

fn load(text: &str) -> Result<Config, String> {
    from_yaml(text, Path::new("config.yaml")).map_err(|e| e.to_string())
}

fn base(extra: &str) -> String {
    format!("tunnel_domain: t.example\ntls: {{cert_file: c, key_file: k}}\n{extra}")
}

#[test]
fn anthropic_documented_config_loads_unchanged() {
    let c = load(ANTHROPIC_DOC).unwrap();
    assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(
        c.tunnel_domain.as_deref(),
        Some("abcd1234.tunnel.anthropic.com")
    );
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].key, "docs");
    assert_eq!(
        c.routes[0].upstream.authority(),
        "docs-mcp.example.corp:8080"
    );
    assert_eq!(
        c.ip_policy,
        IpPolicy::Allowed(vec!["10.0.0.0/8".parse().unwrap()])
    );
}

#[test]
fn routes_as_a_list_explains_the_map_shape() {
    let e = load(&base("routes:\n  - docs: http://10.0.0.1:80\n")).unwrap_err();
    assert!(
        e.contains("routes must be a map of host → upstream URL"),
        "{e}"
    );
    assert!(e.contains("config.yaml:4:"), "position missing: {e}");
}

#[test]
fn upstream_with_path_or_without_port_is_rejected() {
    let e = load(&base("routes: {docs: http://10.0.0.1:80/mcp}")).unwrap_err();
    assert!(
        e.contains("invalid upstream") && e.contains("path `/mcp`"),
        "{e}"
    );
    let e = load(&base("routes: {docs: http://10.0.0.1}")).unwrap_err();
    assert!(
        e.contains("must be scheme://host:port") && e.contains("no port"),
        "{e}"
    );
    let e = load(&base("routes: {docs: ftp://10.0.0.1:21}")).unwrap_err();
    assert!(e.contains("scheme `ftp`"), "{e}");
    assert!(load(&base("routes: {docs: 'http://10.0.0.1:80/'}")).is_ok());
    let c = load(&base("routes: {docs: 'http://[fd00::1]:80'}")).unwrap();
    assert_eq!(c.routes[0].upstream.authority(), "[fd00::1]:80");
}

#[test]
fn unknown_key_suggests_the_nearest_one() {
    let e = load(&base(
        "listen_adr: ':1'\nroutes: {docs: http://10.0.0.1:80}",
    ))
    .unwrap_err();
    assert!(
        e.contains("unknown field `listen_adr`") && e.contains("did you mean `listen_addr`?"),
        "{e}"
    );
    let e = load(&base(
        "routes: {docs: http://10.0.0.1:80}\nupstream: {allowed_ip: [10.0.0.0/8]}",
    ))
    .unwrap_err();
    assert!(e.contains("did you mean `allowed_ips`?"), "{e}");
    let e = load(&base("routes: {docs: {upstrem: 'http://10.0.0.1:80'}}")).unwrap_err();
    assert!(e.contains("did you mean `upstream`?"), "{e}");
}

#[test]
fn allowed_ips_and_disable_are_mutually_exclusive() {
    let e = load(&base("routes: {docs: http://10.0.0.1:80}\nupstream: {allowed_ips: [10.0.0.0/8], disable_ip_validation: true}")).unwrap_err();
    assert!(e.contains("mutually exclusive"), "{e}");
    let c = load(&base(
        "routes: {docs: http://10.0.0.1:80}\nupstream: {disable_ip_validation: true}",
    ))
    .unwrap();
    assert_eq!(c.ip_policy, IpPolicy::Disabled);
}

#[test]
fn allowed_ips_accepts_single_addresses_and_ipv6() {
    let c = load(&base("routes: {docs: http://10.0.0.1:80}\nupstream: {allowed_ips: [127.0.0.1, 'fd00::/8', 10.1.2.3/8]}")).unwrap();
    let IpPolicy::Allowed(nets) = c.ip_policy else {
        panic!()
    };
    let expect: Vec<IpNet> = ["127.0.0.1/32", "fd00::/8", "10.0.0.0/8"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nets, expect);
    let e = load(&base(
        "routes: {docs: http://10.0.0.1:80}\nupstream: {allowed_ips: [nonsense]}",
    ))
    .unwrap_err();
    assert!(e.contains("`nonsense` is neither"), "{e}");
}

#[test]
fn https_upstream_needs_a_trust_anchor() {
    let e = load(&base("routes: {docs: https://10.0.0.1:443}")).unwrap_err();
    assert!(e.contains("no trust anchor"), "{e}");
    assert!(
        load(&base(
            "routes: {docs: https://10.0.0.1:443}\nupstream: {tls: {include_system_cas: true}}"
        ))
        .is_ok()
    );
}

#[test]
fn bare_key_without_tunnel_domain_is_explained() {
    let e =
        load("tls: {cert_file: c, key_file: k}\nroutes: {docs: http://10.0.0.1:80}").unwrap_err();
    assert!(e.contains("tunnel_domain` is not set"), "{e}");
}

#[test]
fn missing_tls_and_routes_are_explained() {
    let e = load("routes: {a.b: http://10.0.0.1:80}").unwrap_err();
    assert!(
        e.contains("`tls`") && e.contains("cert_file: /data/tls.crt"),
        "{e}"
    );
    let e = load("tls: {cert_file: c, key_file: k}").unwrap_err();
    assert!(e.contains("no routes configured"), "{e}");
}

#[test]
fn durations_and_listen_forms() {
    let c = load(&base(
        "routes: {docs: http://10.0.0.1:80}\nshutdown_timeout: 1m30s\nlisten_addr: '[::1]:9443'",
    ))
    .unwrap();
    assert_eq!(c.shutdown_timeout, Duration::from_secs(90));
    assert_eq!(c.listen, "[::1]:9443".parse().unwrap());
    let e = load(&base(
        "routes: {docs: http://10.0.0.1:80}\nshutdown_timeout: soon",
    ))
    .unwrap_err();
    assert!(
        e.contains("shutdown_timeout") && e.contains("not a duration"),
        "{e}"
    );
}

#[test]
fn same_host_twice_is_rejected() {
    let e = load(&base(
        "routes: {docs: http://10.0.0.1:80, docs.t.example: http://10.0.0.2:80}",
    ))
    .unwrap_err();
    assert!(e.contains("name the same host"), "{e}");
}

const POLICIES: &str = "policies:\n  modules:\n    allowlist: { path: /p/a.wasm, settings: { allow: [\"search_*\"] } }\n    guard: { path: /p/g.wasm, sha256: \"AB00000000000000000000000000000000000000000000000000000000000000\", mode: monitor, limits: { memory_mb: 8, timeout_ms: 20, fuel: 1000000 } }\n";

#[test]
fn policies_block_with_default_and_route_chains() {
    let c = load(&base(&format!("{POLICIES}  default: [guard]\nroutes:\n  docs: http://10.0.0.1:80\n  crm: {{ upstream: 'http://10.0.0.2:80', policies: [allowlist, guard], validate_arguments: false }}\n  open: {{ upstream: 'http://10.0.0.3:80', policies: [] }}"))).unwrap();
    let chain = |k: &str| {
        c.routes
            .iter()
            .find(|r| r.key == k)
            .unwrap()
            .policies
            .clone()
    };
    assert_eq!(chain("docs"), ["guard"]);
    assert_eq!(chain("crm"), ["allowlist", "guard"]);
    assert!(chain("open").is_empty());
    assert!(
        !c.routes
            .iter()
            .find(|r| r.key == "crm")
            .unwrap()
            .validate_arguments
    );
    let p = c.policies.unwrap();
    let guard = p.modules.iter().find(|m| m.name == "guard").unwrap();
    assert_eq!(guard.mode, PolicyMode::Monitor);
    assert_eq!(
        guard.sha256.as_deref(),
        Some(&*format!("ab{}", "0".repeat(62)))
    );
    assert_eq!(
        guard.limits,
        ModuleLimits {
            memory_bytes: 8 << 20,
            timeout: Duration::from_millis(20),
            fuel: Some(1_000_000)
        }
    );
    let allow = p.modules.iter().find(|m| m.name == "allowlist").unwrap();
    assert_eq!(allow.settings, r#"{"allow":["search_*"]}"#);
}

#[test]
fn nothing_falls_open_silently() {
    let e = load(&base(&format!(
        "{POLICIES}routes:\n  docs: http://10.0.0.1:80"
    )))
    .unwrap_err();
    assert!(
        e.contains("routes.docs")
            && e.contains("has no policy chain")
            && e.contains("policies: []"),
        "{e}"
    );
    let e = load(&base(&format!(
        "{POLICIES}  default: [gaurd]\nroutes:\n  docs: http://10.0.0.1:80"
    )))
    .unwrap_err();
    assert!(
        e.contains("`gaurd`") && e.contains("did you mean `guard`?"),
        "{e}"
    );
    let e = load(&base(
        "routes:\n  docs: { upstream: 'http://10.0.0.1:80', policies: [x] }",
    ))
    .unwrap_err();
    assert!(e.contains("no `policies:` block"), "{e}");
    let c = load(&base("routes: {docs: 'http://10.0.0.1:80'}")).unwrap();
    assert!(
        c.policies.is_none(),
        "an Anthropic config has no policies block"
    );
}

#[test]
fn module_mistakes_are_explained() {
    let bad = |m: &str| {
        load(&base(&format!("policies:\n  modules:\n    g: {m}\n  default: [g]\nroutes: {{docs: 'http://10.0.0.1:80'}}"))).unwrap_err()
    };
    assert!(bad("{ path: /g.wasm, sha256: abc }").contains("64 hex digits"));
    assert!(bad("{ path: /g.wasm, mode: audit }").contains("enforce, monitor"));
    assert!(bad("{ path: /g.wasm, limits: { memory_mb: 0 } }").contains("outside 1..="));
    assert!(
        bad("{ path: /g.wasm, limits: { timeout: 5 } }").contains("did you mean `timeout_ms`?")
    );
}

#[test]
fn audit_block_defaults_and_overrides() {
    let c = load(&base("routes: {docs: 'http://10.0.0.1:80'}")).unwrap();
    let a = c.audit.unwrap();
    assert_eq!(
        (a.dir.to_str().unwrap(), a.dir_configured, a.redact),
        (DEFAULT_AUDIT_DIR, false, Redact::Digest)
    );
    let c = load(&base("routes: {docs: {upstream: 'http://10.0.0.1:80', redact: full}}\naudit: {dir: /tmp/a, redact: omit, redact_tools: {'run_*': full}, retention: 30d, signing_key_file: /k.pem}")).unwrap();
    let a = c.audit.unwrap();
    assert_eq!(
        (a.redact, a.redact_tools.clone(), a.retention),
        (
            Redact::Omit,
            vec![("run_*".to_owned(), Redact::Full)],
            Some(Duration::from_secs(30 * 86400))
        )
    );
    assert_eq!(c.routes[0].redact, Some(Redact::Full));
    assert!(
        load(&base(
            "routes: {docs: 'http://10.0.0.1:80'}\naudit: {disabled: true}"
        ))
        .unwrap()
        .audit
        .is_none()
    );
    let e = load(&base(
        "routes: {docs: 'http://10.0.0.1:80'}\naudit: {redact: hash}",
    ))
    .unwrap_err();
    assert!(e.contains("full, digest, omit"), "{e}");
    let e = load(&base(
        "routes: {docs: 'http://10.0.0.1:80'}\naudit: {dri: /x}",
    ))
    .unwrap_err();
    assert!(e.contains("did you mean `dir`?"), "{e}");
}

#[test]
fn admin_block_defaults_to_loopback_and_can_be_moved_or_disabled() {
    let c = load(&base("routes: {docs: 'http://10.0.0.1:80'}")).unwrap();
    let a = c.admin.unwrap();
    assert_eq!(
        (a.listen.to_string(), a.explicit),
        ("127.0.0.1:9090".to_owned(), false)
    );
    let c = load(&base(
        "routes: {docs: 'http://10.0.0.1:80'}\nadmin: {listen: '127.0.0.1:9901'}",
    ))
    .unwrap();
    assert_eq!(
        c.admin,
        Some(AdminSettings {
            listen: "127.0.0.1:9901".parse().unwrap(),
            explicit: true
        })
    );
    let c = load(&base(
        "routes: {docs: 'http://10.0.0.1:80'}\nadmin: {disabled: true}",
    ))
    .unwrap();
    assert!(c.admin.is_none());
    let e = load(&base(
        "routes: {docs: 'http://10.0.0.1:80'}\nadmin: {disabled: true, listen: ':9090'}",
    ))
    .unwrap_err();
    assert!(e.contains("admin.listen") && e.contains("keep one"), "{e}");
    let e = load(&base(
        "routes: {docs: 'http://10.0.0.1:80'}\nadmin: {listen: 'nine'}",
    ))
    .unwrap_err();
    assert!(
        e.contains("admin.listen") && e.contains("not an address"),
        "{e}"
    );
}

#[test]
fn anthropic_config_has_no_identity() {
    let c = load(ANTHROPIC_DOC).unwrap();
    assert!(c.identity.is_none());
    assert!(c.routes.iter().all(|r| !r.require_identity));
}

const JWT: &str = "jwt: {issuer: 'https://idp.example.com/', audience: mcp-gateway, jwks_url: 'https://idp.example.com/jwks.json'}";

#[test]
fn identity_block_and_route_requirements() {
    let c = load(&base(&format!(
        "identity:\n  {JWT}\n  require: true\n  forward_authorization: false\nroutes:\n  crm: http://10.0.0.1:80\n  docs: {{upstream: http://10.0.0.2:80, require_identity: false}}\n"
    )))
    .unwrap();
    let i = c.identity.unwrap();
    assert!(!i.forward_authorization);
    assert_eq!(i.jwt.audience, ["mcp-gateway"]);
    assert_eq!(
        i.jwt.algorithms,
        [
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::Algorithm::EdDSA
        ]
    );
    assert_eq!(i.jwt.refresh, Duration::from_secs(600));
    assert_eq!(i.jwt.leeway, Duration::from_secs(30));
    let req: Vec<_> = c
        .routes
        .iter()
        .map(|r| (r.key.as_str(), r.require_identity))
        .collect();
    assert_eq!(req, [("crm", true), ("docs", false)]);
}

#[test]
fn identity_mistakes_are_explained() {
    let with =
        |identity: &str, routes: &str| load(&base(&format!("{identity}routes:\n{routes}\n")));
    let one = "  crm: http://10.0.0.1:80";
    let err = with(
        "",
        "  crm: {upstream: http://10.0.0.1:80, require_identity: true}",
    )
    .unwrap_err();
    assert!(
        err.contains("routes.crm.require_identity") && err.contains("no `identity:` block"),
        "{err}"
    );
    let err = with("identity: {require: true}\n", one).unwrap_err();
    assert!(
        err.contains("identity.jwt") && err.contains("missing"),
        "{err}"
    );
    let err = with("identity:\n  jwt: {issuer: x, jwks_file: /k.json}\n", one).unwrap_err();
    assert!(err.contains("identity.jwt.audience"), "{err}");
    let err = with("identity:\n  jwt: {issuer: x, audience: a}\n", one).unwrap_err();
    assert!(err.contains("jwks_url` or `jwks_file"), "{err}");
    let err = with(
        "identity:\n  jwt: {issuer: x, audience: a, jwks_url: 'http://idp.example.com/k'}\n",
        one,
    )
    .unwrap_err();
    assert!(err.contains("loopback"), "{err}");
    with(
        "identity:\n  jwt: {issuer: x, audience: [a, b], jwks_url: 'http://127.0.0.1:9/k'}\n",
        one,
    )
    .unwrap();
    for (alg, says) in [
        ("none", "never accepted"),
        ("HS256", "shared-secret"),
        ("ES265", "did you mean `ES256`"),
    ] {
        let err = with(
            &format!(
                "identity:\n  jwt: {{issuer: x, audience: a, jwks_file: /k, algorithms: [{alg}]}}\n"
            ),
            one,
        )
        .unwrap_err();
        assert!(
            err.contains("identity.jwt.algorithms") && err.contains(says),
            "{alg}: {err}"
        );
    }
    let err = with(
        "identity:\n  jwt: {issuer: x, audience: a, jwks_file: /k, leeway: 1h}\n",
        one,
    )
    .unwrap_err();
    assert!(err.contains("identity.jwt.leeway"), "{err}");
    let err = with(
        "identity:\n  jwt: {issuer: x, audience: a, jwks_file: /k, isuer: y}\n",
        one,
    )
    .unwrap_err();
    assert!(err.contains("did you mean `issuer`"), "{err}");
}

#[test]
fn caller_confirmation_is_off_by_default_and_checked_when_on() {
    let routes = "routes: {crm: http://10.0.0.1:80, docs: http://10.0.0.2:80}\n";
    let c = load(&base(&format!("{routes}approvals: {{}}\n"))).unwrap();
    assert_eq!(c.approvals.unwrap().caller_confirmation, None);

    let c = load(&base(&format!(
        "{routes}approvals: {{caller_confirmation: {{tools: [\"delete_*\"], routes: [crm]}}}}\n"
    )))
    .unwrap();
    let cc = c.approvals.unwrap().caller_confirmation.unwrap();
    assert_eq!(cc.expire, Duration::from_secs(300));
    assert_eq!(cc.secret, None);
    assert!(cc.covers("crm", "delete_customer"));
    assert!(!cc.covers("docs", "delete_customer"));
    assert!(!cc.covers("crm", "get_customer"));

    for (block, want) in [
        ("{}", "caller_confirmation.tools"),
        ("{tools: [\"\"]}", "caller_confirmation.tools"),
        (
            "{tools: [x], routes: [nope]}",
            "`nope` is not a configured route",
        ),
        ("{tools: [x], expire: 2h}", "between 1s and 1h"),
        (
            "{tools: [x], secret_file: /nonexistent/secret}",
            "cannot read /nonexistent/secret",
        ),
    ] {
        let e = load(&base(&format!(
            "{routes}approvals: {{caller_confirmation: {block}}}\n"
        )))
        .unwrap_err();
        assert!(e.contains(want), "{block}: {e}");
    }

    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"too short").unwrap();
    let e = load(&base(&format!(
        "{routes}approvals: {{caller_confirmation: {{tools: [x], secret_file: {}}}}}\n",
        short.display()
    )))
    .unwrap_err();
    assert!(e.contains("at least 32"), "{e}");
    let good = dir.path().join("good");
    std::fs::write(&good, [7u8; 32]).unwrap();
    let c = load(&base(&format!(
        "{routes}approvals: {{caller_confirmation: {{tools: [x], secret_file: {}}}}}\n",
        good.display()
    )))
    .unwrap();
    assert_eq!(
        c.approvals.unwrap().caller_confirmation.unwrap().secret,
        Some(vec![7u8; 32])
    );
}

#[test]
fn otlp_endpoints_are_http_or_https_and_a_ca_file_goes_with_https_only() {
    let c = load(&base(
        "routes: {a: http://10.0.0.1:80}\ntelemetry: {otlp: {endpoint: 'https://otel.example:4318'}}\n",
    ))
    .unwrap();
    let t = c.telemetry.unwrap();
    assert_eq!(
        t.endpoint.to_string(),
        "https://otel.example:4318/v1/traces"
    );
    assert_eq!(t.ca_file, None);

    let ca = tempfile::NamedTempFile::new().unwrap();
    let c = load(&base(&format!(
        "routes: {{a: http://10.0.0.1:80}}\ntelemetry: {{otlp: {{endpoint: 'https://otel.example/custom/traces', ca_file: '{}'}}}}\n",
        ca.path().display()
    )))
    .unwrap();
    let t = c.telemetry.unwrap();
    assert_eq!(t.endpoint.to_string(), "https://otel.example/custom/traces");
    assert_eq!(t.ca_file.as_deref(), Some(ca.path()));

    let e = load(&base(&format!(
        "routes: {{a: http://10.0.0.1:80}}\ntelemetry: {{otlp: {{endpoint: 'http://127.0.0.1:4318', ca_file: '{}'}}}}\n",
        ca.path().display()
    )))
    .unwrap_err();
    assert!(
        e.contains("telemetry.otlp.ca_file") && e.contains("only used with an https:// endpoint"),
        "{e}"
    );
    let e = load(&base(
        "routes: {a: http://10.0.0.1:80}\ntelemetry: {otlp: {endpoint: 'https://otel.example', ca_file: /no/such/ca.pem}}\n",
    ))
    .unwrap_err();
    assert!(
        e.contains("telemetry.otlp.ca_file") && e.contains("/no/such/ca.pem"),
        "{e}"
    );
    let e = load(&base(
        "routes: {a: http://10.0.0.1:80}\ntelemetry: {otlp: {endpoint: 'grpc://otel.example:4317'}}\n",
    ))
    .unwrap_err();
    assert!(
        e.contains("must be http://host:port or https://host:port"),
        "{e}"
    );
}

#[test]
fn the_tunnel_domain_flag_sets_or_replaces_the_files() {
    let flag = |d: &str| Overrides {
        tunnel_domain: Some(d.to_owned()),
    };
    let with = |text: &str, o: &Overrides| {
        from_yaml_with(text, Path::new("config.yaml"), o).map_err(|e| e.to_string())
    };
    // Replaces the file's value (Anthropic's managed mode passes the tunnel's domain on the command line).
    let c = with(ANTHROPIC_DOC, &flag("Other.Tunnel.Example.")).unwrap();
    assert_eq!(c.tunnel_domain.as_deref(), Some("other.tunnel.example"));
    assert_eq!(c.overrides, flag("Other.Tunnel.Example."));
    // Sets it where the file has none: bare route keys then resolve under it.
    let bare = "tls: {cert_file: c, key_file: k}\nroutes: {docs: http://10.0.0.1:80}";
    assert!(load(bare).is_err());
    let c = with(bare, &flag("t.example")).unwrap();
    assert_eq!(c.tunnel_domain.as_deref(), Some("t.example"));
    // A bad value is refused, named as the flag.
    let e = with(bare, &flag("not a domain")).unwrap_err();
    assert!(
        e.contains("-tunnel-domain") && e.contains("is not a host name"),
        "{e}"
    );
    // Without the flag nothing changes.
    let c = with(ANTHROPIC_DOC, &Overrides::default()).unwrap();
    assert_eq!(
        c.tunnel_domain.as_deref(),
        Some("abcd1234.tunnel.anthropic.com")
    );
}

#[test]
fn on_tool_change_is_hide_by_default_and_a_wrong_value_is_explained() {
    let c = load(&base(
        "routes:\n  crm: http://10.0.0.1:80\n  docs: {upstream: http://10.0.0.2:80, on_tool_change: deny_all}\n",
    ))
    .unwrap();
    let mode = |k: &str| c.routes.iter().find(|r| r.key == k).unwrap().on_tool_change;
    assert_eq!(mode("crm"), crate::config::OnToolChange::Hide);
    assert_eq!(mode("docs"), crate::config::OnToolChange::DenyAll);
    let err = load(&base(
        "routes:\n  crm: {upstream: http://10.0.0.1:80, on_tool_change: warn}\n",
    ))
    .unwrap_err();
    assert!(
        err.contains("routes.crm.on_tool_change") && err.contains("`warn` is not one of `hide`"),
        "{err}"
    );
}
