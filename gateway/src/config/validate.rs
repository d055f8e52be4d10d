//! File → [`Config`]: every check a user could trip over, each with a message that says what to change.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::file::{FileConfig, FilePolicies, FileRoutes};
use super::{
    AdminSettings, AuditSettings, Config, ConfigError, DEFAULT_ADMIN_LISTEN, DEFAULT_AUDIT_DIR,
    IpPolicy, Limits, LogFormat, LogLevel, LogSettings, MAX_MODULE_MEMORY_MB, ModuleLimits,
    ModuleSpec, OnToolChange, Overrides, PolicyConfig, PolicyMode, Redact, RouteSpec, Scheme,
    TlsFiles, UpstreamTls, UpstreamUrl,
};

/// Parses and validates YAML text read from `path`. Relative paths in it resolve against `path`'s directory
/// (see [`super::paths`]).
pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
    from_yaml_with(text, path, &Overrides::default())
}

/// Like [`from_yaml`], with the command line's `overrides` applied over the file before validation.
pub fn from_yaml_with(
    text: &str,
    path: &Path,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut file: FileConfig = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| syntax_error(e, path, text))?
    };
    let relative = super::paths::resolve(&mut file, path.parent().unwrap_or(Path::new("")));
    let validator = Validator { path };
    if let Some(d) = &overrides.tunnel_domain {
        // Checked here so a bad flag is named as the flag, not as the file's key.
        validator.hostname("-tunnel-domain", d)?;
        file.tunnel_domain = Some(d.clone());
    }
    let validated = validator.config(file);
    match validated {
        Ok(mut c) => {
            c.relative_paths = relative;
            c.overrides = overrides.clone();
            Ok(c)
        }
        Err(ConfigError::Invalid {
            path,
            field,
            mut message,
        }) => {
            if let Some(why) = super::paths::explain(&relative, &message) {
                message = format!("{message} {why}");
            }
            Err(ConfigError::Invalid {
                path,
                field,
                message,
            })
        }
        Err(e) => Err(e),
    }
}

/// The 1-based line (column 1) of the marker that starts a YAML text's second document, if it has one.
fn second_document(text: &str) -> Option<(usize, usize)> {
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            if seen_content {
                return Some((i + 1, 1));
            }
            seen_content = true; // an explicit start of the first document
        } else if !t.is_empty() && !t.starts_with('#') {
            seen_content = true;
        }
    }
    None
}

fn syntax_error(e: serde_yaml_ng::Error, path: &Path, text: &str) -> ConfigError {
    let mut message = e.to_string();
    let location = e.location().map(|l| (l.line(), l.column())).or_else(|| {
        // A second YAML document has no position from the parser: point at its `---`.
        message
            .contains("more than one document")
            .then(|| second_document(text))
            .flatten()
    });
    // The parser appends its own " at line L column C"; the location is already in front of the message.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    if let Some(hint) = did_you_mean(&message) {
        message.push_str(&hint);
    }
    ConfigError::Syntax {
        path: path.to_owned(),
        location,
        message,
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the nearest known key, if any is close.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (unknown, expected) = rest.split_once('`')?;
    nearest(unknown, expected.split('`').skip(1).step_by(2))
        .map(|k| format!(" — did you mean `{k}`?"))
}

/// The candidate closest to `word` (fewest edits, transpositions counting once), if it is close enough
/// to be a likely typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let (dist, sim, best) = candidates
        .map(|c| {
            (
                strsim::damerau_levenshtein(word, c),
                strsim::jaro_winkler(word, c),
                c,
            )
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))?;
    (dist <= (word.len() / 3).max(1) || sim >= 0.85).then_some(best)
}

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn config(&self, f: FileConfig) -> Result<Config, ConfigError> {
        let listen = self.listen_addr(f.listen_addr.as_deref().unwrap_or(":8080"))?;
        let log = LogSettings {
            level: self.log_level(f.log_level.as_deref().unwrap_or("info"))?,
            format: match f.log_format.as_deref().unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(
                        self.invalid("log_format", format!("`{other}` is not one of text, json"))
                    );
                }
            },
        };
        let shutdown_timeout =
            self.duration("shutdown_timeout", f.shutdown_timeout.as_deref(), 30)?;
        let tunnel_domain = match f.tunnel_domain {
            Some(d) => Some(self.hostname("tunnel_domain", &d)?),
            None => None,
        };
        let tls = self.tls(f.tls)?;
        let require_written: Vec<(String, Option<bool>)> = f
            .routes
            .0
            .iter()
            .map(|(k, r)| {
                (
                    k.trim().trim_matches('.').to_ascii_lowercase(),
                    r.require_identity,
                )
            })
            .collect();
        let mut routes = self.routes(f.routes, tunnel_domain.as_deref())?;
        let policies = match f.policies {
            Some(p) => Some(self.policies(p, &mut routes)?),
            None => {
                if let Some(r) = routes.iter().find(|r| !r.policies.is_empty()) {
                    return Err(self.invalid(
                        &format!("routes.{}.policies", r.key),
                        "names policies, but there is no `policies:` block defining `modules`",
                    ));
                }
                None
            }
        };
        let upstream = f.upstream.unwrap_or_default();
        let ip_policy = match (
            upstream.allowed_ips,
            upstream.disable_ip_validation.unwrap_or(false),
        ) {
            (Some(_), true) => {
                return Err(self.invalid(
                    "upstream.allowed_ips",
                    "`allowed_ips` and `disable_ip_validation: true` are mutually exclusive: keep one",
                ));
            }
            (None, true) => IpPolicy::Disabled,
            (None, false) => IpPolicy::rfc1918(),
            (Some(list), false) => IpPolicy::Allowed(self.allowed_ips(&list)?),
        };
        let utls = upstream.tls.unwrap_or_default();
        let upstream_tls = UpstreamTls {
            ca_file: utls.ca_file.map(PathBuf::from),
            include_system_cas: utls.include_system_cas.unwrap_or(false),
        };
        if upstream_tls.ca_file.is_none()
            && !upstream_tls.include_system_cas
            && let Some(r) = routes.iter().find(|r| r.upstream.scheme == Scheme::Https)
        {
            return Err(self.invalid(
                    &format!("routes.{}", r.key),
                    format!(
                        "upstream {} uses https:// but there is no trust anchor: set `upstream.tls.ca_file` \
                         or `upstream.tls.include_system_cas: true`",
                        r.upstream
                    ),
                ));
        }
        let limits = self.limits(f.limits.unwrap_or_default())?;
        let audit = self.audit(f.audit.unwrap_or_default())?;
        let admin = self.admin(f.admin.unwrap_or_default())?;
        let identity = self.identity(f.identity, &mut routes, &require_written)?;
        let approvals = match f.approvals {
            Some(a) => Some(self.approvals(a, audit.as_ref(), &routes, identity.as_ref())?),
            None => None,
        };
        let telemetry = match f.telemetry.and_then(|t| t.otlp) {
            Some(o) => Some(self.otlp(o)?),
            None => None,
        };
        Ok(Config {
            listen,
            log,
            shutdown_timeout,
            tunnel_domain,
            tls,
            routes,
            ip_policy,
            upstream_tls,
            limits,
            policies,
            audit,
            admin,
            approvals,
            identity,
            telemetry,
            relative_paths: Vec::new(),
            overrides: Overrides::default(),
        })
    }

    fn admin(&self, a: super::file::FileAdmin) -> Result<Option<AdminSettings>, ConfigError> {
        match (a.disabled.unwrap_or(false), a.listen) {
            (true, Some(_)) => Err(self.invalid(
                "admin.listen",
                "`listen` and `disabled: true` contradict each other: keep one",
            )),
            (true, None) => Ok(None),
            (false, None) => Ok(Some(AdminSettings {
                listen: DEFAULT_ADMIN_LISTEN.parse().expect("static address"),
                explicit: false,
            })),
            (false, Some(l)) => Ok(Some(AdminSettings {
                listen: self.socket_addr("admin.listen", &l)?,
                explicit: true,
            })),
        }
    }

    fn redact(&self, field: &str, s: &str) -> Result<Redact, ConfigError> {
        match s {
            "full" => Ok(Redact::Full),
            "digest" => Ok(Redact::Digest),
            "omit" => Ok(Redact::Omit),
            other => {
                Err(self.invalid(field, format!("`{other}` is not one of full, digest, omit")))
            }
        }
    }

    fn audit(&self, a: super::file::FileAudit) -> Result<Option<AuditSettings>, ConfigError> {
        if a.disabled == Some(true) {
            return Ok(None);
        }
        let redact_tools = a
            .redact_tools
            .unwrap_or_default()
            .into_iter()
            .map(|(glob, mode)| {
                Ok((
                    glob.clone(),
                    self.redact(&format!("audit.redact_tools.{glob}"), &mode)?,
                ))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let checkpoint_every = a.checkpoint_every.unwrap_or(1000);
        if checkpoint_every == 0 {
            return Err(self.invalid("audit.checkpoint_every", "must be at least 1"));
        }
        let segment_max_mb = a.segment_max_mb.unwrap_or(64);
        if segment_max_mb == 0 {
            return Err(self.invalid("audit.segment_max_mb", "must be at least 1"));
        }
        Ok(Some(AuditSettings {
            dir_configured: a.dir.is_some(),
            dir: PathBuf::from(a.dir.unwrap_or_else(|| DEFAULT_AUDIT_DIR.to_owned())),
            redact: self.redact("audit.redact", a.redact.as_deref().unwrap_or("digest"))?,
            redact_tools,
            segment_max_bytes: segment_max_mb << 20,
            segment_max_age: self.duration(
                "audit.segment_max_age",
                a.segment_max_age.as_deref(),
                3600,
            )?,
            retention: match a.retention.as_deref() {
                Some(r) => Some(self.duration("audit.retention", Some(r), 0)?),
                None => None,
            },
            checkpoint_every,
            checkpoint_interval: self.duration(
                "audit.checkpoint_interval",
                a.checkpoint_interval.as_deref(),
                60,
            )?,
            signing_key_file: a.signing_key_file.map(PathBuf::from),
        }))
    }

    fn policies(
        &self,
        p: FilePolicies,
        routes: &mut [RouteSpec],
    ) -> Result<PolicyConfig, ConfigError> {
        let mut modules = Vec::with_capacity(p.modules.len());
        for (name, m) in p.modules {
            let field = format!("policies.modules.{name}");
            if m.path.trim().is_empty() {
                return Err(self.invalid(
                    &format!("{field}.path"),
                    "is empty: give the path of the policy's .wasm component",
                ));
            }
            let sha256 = match m.sha256 {
                Some(h) => {
                    let h = h.trim().to_ascii_lowercase();
                    let h = h.strip_prefix("sha256:").unwrap_or(&h).to_owned();
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(self.invalid(
                            &format!("{field}.sha256"),
                            format!("`{h}` is not 64 hex digits (`sha256sum FILE` prints it)"),
                        ));
                    }
                    Some(h)
                }
                None => None,
            };
            let mode = match m.mode.as_deref().unwrap_or("enforce") {
                "enforce" => PolicyMode::Enforce,
                "monitor" => PolicyMode::Monitor,
                other => {
                    return Err(self.invalid(
                        &format!("{field}.mode"),
                        format!("`{other}` is not one of enforce, monitor"),
                    ));
                }
            };
            let d = ModuleLimits::default();
            let l = m.limits.unwrap_or_default();
            let memory_mb = l.memory_mb.unwrap_or(d.memory_bytes >> 20);
            if !(1..=MAX_MODULE_MEMORY_MB).contains(&memory_mb) {
                return Err(self.invalid(
                    &format!("{field}.limits.memory_mb"),
                    format!("{memory_mb} is outside 1..={MAX_MODULE_MEMORY_MB}"),
                ));
            }
            let timeout_ms = l.timeout_ms.unwrap_or(d.timeout.as_millis() as u64);
            if !(1..=60_000).contains(&timeout_ms) {
                return Err(self.invalid(
                    &format!("{field}.limits.timeout_ms"),
                    format!("{timeout_ms} is outside 1..=60000"),
                ));
            }
            if l.fuel == Some(0) {
                return Err(self.invalid(
                    &format!("{field}.limits.fuel"),
                    "0 would stop every evaluation; omit it for no fuel limit",
                ));
            }
            let settings = m.settings.unwrap_or_else(|| serde_json::json!({}));
            modules.push(ModuleSpec {
                name,
                path: PathBuf::from(m.path),
                sha256,
                settings: settings.to_string(),
                mode,
                limits: ModuleLimits {
                    memory_bytes: memory_mb << 20,
                    timeout: Duration::from_millis(timeout_ms),
                    fuel: l.fuel,
                },
            });
        }
        let known: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
        let check = |field: &str, chain: &[String]| -> Result<(), ConfigError> {
            for name in chain {
                if !known.contains(&name.as_str()) {
                    let hint = nearest(name, known.iter().copied())
                        .map(|k| format!(" — did you mean `{k}`?"))
                        .unwrap_or_default();
                    return Err(self.invalid(
                        field,
                        format!(
                            "names policy `{name}`, which `policies.modules` does not define{hint}"
                        ),
                    ));
                }
            }
            Ok(())
        };
        if let Some(d) = &p.default {
            check("policies.default", d)?;
        }
        for r in routes.iter_mut() {
            let field = format!("routes.{}.policies", r.key);
            match (&r.chain_written, &p.default) {
                (Some(own), _) => check(&field, own)?,
                (None, Some(d)) => r.policies = d.clone(),
                (None, None) => {
                    return Err(self.invalid(
                        &format!("routes.{}", r.key),
                        "has no policy chain: give it `policies: [..]`, set `policies.default`, or write `policies: []` to allow everything on this route",
                    ));
                }
            }
        }
        let max_concurrency = p.max_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        if max_concurrency == 0 {
            return Err(self.invalid("policies.max_concurrency", "must be at least 1"));
        }
        Ok(PolicyConfig {
            modules,
            cache_dir: p.cache_dir.map(PathBuf::from),
            max_concurrency,
        })
    }

    fn listen_addr(&self, s: &str) -> Result<SocketAddr, ConfigError> {
        self.socket_addr("listen_addr", s)
    }

    fn socket_addr(&self, field: &str, s: &str) -> Result<SocketAddr, ConfigError> {
        let bad = || {
            self.invalid(
                field,
                format!("`{s}` is not an address: use `:8080` (all interfaces), `127.0.0.1:8443` or `[::1]:8443`"),
            )
        };
        if let Some(port) = s.strip_prefix(':') {
            let port: u16 = port.parse().map_err(|_| bad())?;
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(a);
        }
        match s.rsplit_once(':') {
            Some(("localhost", port)) => Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port.parse().map_err(|_| bad())?,
            )),
            _ => Err(bad()),
        }
    }

    fn log_level(&self, s: &str) -> Result<LogLevel, ConfigError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => {
                return Err(self.invalid(
                    "log_level",
                    format!("`{s}` is not one of debug, info, warn, error"),
                ));
            }
        })
    }

    fn duration(
        &self,
        field: &str,
        s: Option<&str>,
        default_secs: u64,
    ) -> Result<Duration, ConfigError> {
        match s {
            None => Ok(Duration::from_secs(default_secs)),
            Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
                self.invalid(
                    field,
                    format!("`{s}` is not a duration ({e}); write e.g. `30s`, `2m`, `1m30s`"),
                )
            }),
        }
    }

    fn hostname(&self, field: &str, raw: &str) -> Result<String, ConfigError> {
        let h = raw
            .trim()
            .trim_end_matches('.')
            .trim_start_matches('.')
            .to_ascii_lowercase();
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
            });
        if ok {
            Ok(h)
        } else {
            Err(self.invalid(field, format!("`{raw}` is not a host name")))
        }
    }

    fn tls(&self, tls: Option<super::file::FileTls>) -> Result<TlsFiles, ConfigError> {
        const EXAMPLE: &str = "the gateway terminates the inner TLS; set for example\n  tls:\n    cert_file: /data/tls.crt\n    key_file: /data/tls.key";
        let tls = tls.ok_or_else(|| self.invalid("tls", format!("missing: {EXAMPLE}")))?;
        let cert_file = tls
            .cert_file
            .ok_or_else(|| self.invalid("tls.cert_file", format!("missing: {EXAMPLE}")))?;
        let key_file = tls
            .key_file
            .ok_or_else(|| self.invalid("tls.key_file", format!("missing: {EXAMPLE}")))?;
        Ok(TlsFiles {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            reload_interval: self.duration(
                "tls.reload_interval",
                tls.reload_interval.as_deref(),
                10,
            )?,
        })
    }

    fn routes(
        &self,
        routes: FileRoutes,
        tunnel_domain: Option<&str>,
    ) -> Result<Vec<RouteSpec>, ConfigError> {
        if routes.0.is_empty() {
            return Err(self.invalid(
                "routes",
                format!("no routes configured: {}", super::file::ROUTES_EXAMPLE),
            ));
        }
        let mut out: Vec<RouteSpec> = Vec::with_capacity(routes.0.len());
        for (raw_key, route) in routes.0 {
            let field = format!("routes.{raw_key}");
            let key = self.hostname(&field, &raw_key)?;
            if !key.contains('.') && tunnel_domain.is_none() {
                return Err(self.invalid(
                    &field,
                    format!("`{key}` is a bare subdomain but `tunnel_domain` is not set: set `tunnel_domain` or use the full host name as the key"),
                ));
            }
            let upstream = parse_upstream(&route.upstream).map_err(|why| {
                self.invalid(
                    &field,
                    format!(
                        "invalid upstream `{}` (must be scheme://host:port): {why}",
                        route.upstream
                    ),
                )
            })?;
            let policies = route.policies.clone().unwrap_or_default();
            let redact = match route.redact.as_deref() {
                Some(r) => Some(self.redact(&format!("{field}.redact"), r)?),
                None => None,
            };
            let on_tool_change = match route.on_tool_change.as_deref() {
                None | Some("hide") => OnToolChange::Hide,
                Some("record") => OnToolChange::Record,
                Some("deny_all") => OnToolChange::DenyAll,
                Some(other) => {
                    return Err(self.invalid(
                        &format!("{field}.on_tool_change"),
                        format!("`{other}` is not one of `hide` (the default: the changed tool is hidden and refused until accepted), `record` (accept and record) or `deny_all` (refuse every tools/call on the route until accepted)"),
                    ));
                }
            };
            out.push(RouteSpec {
                on_tool_change,
                require_identity: route.require_identity.unwrap_or(false),
                redact,
                key,
                upstream,
                chain_written: route.policies,
                policies,
                validate_arguments: route.validate_arguments.unwrap_or(true),
            });
        }
        // `docs` and `docs.<tunnel_domain>` would be two keys for one host.
        if let Some(td) = tunnel_domain {
            for r in &out {
                if let Some(sub) = r.key.strip_suffix(td).and_then(|s| s.strip_suffix('.'))
                    && out.iter().any(|o| o.key == sub)
                {
                    return Err(self.invalid(
                        &format!("routes.{}", r.key),
                        format!(
                            "routes `{sub}` and `{}` name the same host; keep one",
                            r.key
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn allowed_ips(&self, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
        if list.is_empty() {
            return Err(self.invalid(
                "upstream.allowed_ips",
                "the list is empty, so no upstream could be reached: remove it for the RFC 1918 default, or list networks such as 10.0.0.0/8",
            ));
        }
        list.iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        self.invalid(
                            "upstream.allowed_ips",
                            format!("`{s}` is neither a CIDR network (10.0.0.0/8) nor an address"),
                        )
                    })
            })
            .collect()
    }

    fn limits(&self, l: super::file::FileLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let secs = |x: Duration| x.as_secs();
        let max_body_bytes = l.max_body_bytes.unwrap_or(d.max_body_bytes);
        if max_body_bytes == 0 {
            return Err(self.invalid("limits.max_body_bytes", "must be greater than 0"));
        }
        Ok(Limits {
            max_body_bytes,
            tls_handshake_timeout: self.duration(
                "limits.tls_handshake_timeout",
                l.tls_handshake_timeout.as_deref(),
                secs(d.tls_handshake_timeout),
            )?,
            request_header_timeout: self.duration(
                "limits.request_header_timeout",
                l.request_header_timeout.as_deref(),
                secs(d.request_header_timeout),
            )?,
            request_body_timeout: self.duration(
                "limits.request_body_timeout",
                l.request_body_timeout.as_deref(),
                secs(d.request_body_timeout),
            )?,
            idle_timeout: self.duration(
                "limits.idle_timeout",
                l.idle_timeout.as_deref(),
                secs(d.idle_timeout),
            )?,
            upstream_connect_timeout: self.duration(
                "limits.upstream_connect_timeout",
                l.upstream_connect_timeout.as_deref(),
                secs(d.upstream_connect_timeout),
            )?,
            upstream_response_timeout: self.duration(
                "limits.upstream_response_timeout",
                l.upstream_response_timeout.as_deref(),
                secs(d.upstream_response_timeout),
            )?,
        })
    }
}

/// `scheme://host:port` with nothing else (a trailing `/` is tolerated).
pub fn parse_upstream(s: &str) -> Result<UpstreamUrl, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("no scheme; write e.g. http://10.0.12.7:9000")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("scheme `{other}` is not http or https")),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(format!(
            "it has a path `{path}`; routes match host names only, so put the path in the client URL"
        ));
    }
    if authority.contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or("unclosed `[` in IPv6 address")?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
        (h.to_owned(), p.strip_prefix(':').ok_or("no port")?)
    } else {
        let (h, p) = authority.rsplit_once(':').ok_or("no port")?;
        (h.to_ascii_lowercase(), p)
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{port}` is not a port"))?;
    Ok(UpstreamUrl { scheme, host, port })
}

mod approvals;
mod identity;
mod telemetry;

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
