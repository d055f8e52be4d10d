//! `mcp-gateway check --config FILE`: the preflight checklist, each item ✓ / ! / ✗ with the fix, from the same
//! code the gateway runs at start (config loader, TLS identity loading, IP gate, policy loading) plus what it
//! only finds out later (upstreams that do not answer MCP, a certificate about to expire, an audit directory
//! it cannot write). Exit code 0 only when nothing failed. Nothing here writes to an existing audit log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::mcp_client::{self, Target};
use crate::certs::inspect::{self, Status};
use crate::config::{Config, RouteSpec, Scheme};
use crate::upstream_gate::{Resolve, SystemResolver, UpstreamGate};

/// One checklist item.
#[derive(Debug)]
pub struct Item {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
    /// Per-rule lines (the certificate's findings).
    pub sub: Vec<inspect::Finding>,
}

impl Item {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
            sub: Vec::new(),
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
            sub: Vec::new(),
        }
    }
}

/// Options of `check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub config: PathBuf,
    pub json: bool,
    /// Path of the MCP endpoint on upstreams.
    pub path: String,
    pub timeout: Duration,
    /// A certificate with less validity left is a warning.
    pub warn_within: time::Duration,
}

pub fn run(o: CheckOptions) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let items = rt.block_on(checklist(&o));
    let failed = items.iter().filter(|i| i.status == Status::Fail).count();
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&o.config, &items, failed))?
        );
    } else {
        print(&o.config, &items, failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every item, in order. A config that does not load ends the list (nothing else can be checked).
pub async fn checklist(o: &CheckOptions) -> Vec<Item> {
    let mut items = Vec::new();
    let config = match crate::config::load(&o.config) {
        Ok(c) => c,
        Err(e) => {
            items.push(Item::fail(
                "config",
                e.to_string(),
                "correct the file as the message says; nothing else can be checked until it loads",
            ));
            return items;
        }
    };
    items.push(Item::pass(
        "config",
        format!(
            "valid: {} route(s), tunnel_domain {}, listen {}",
            config.routes.len(),
            config.tunnel_domain.as_deref().unwrap_or("(none)"),
            config.listen
        ),
    ));
    items.extend(tls_items(&config, o.warn_within));
    let gate = UpstreamGate::new(config.ip_policy.clone(), Arc::new(SystemResolver));
    for route in &config.routes {
        items.extend(route_items(&config, route, &gate, o).await);
    }
    items.push(policies_item(&config).await);
    items.push(audit_item(&config));
    if let Some(item) = approvals_item(&config).await {
        items.push(item);
    }
    // A failure about a file the config named relative says where that path came from.
    for i in items.iter_mut().filter(|i| i.status == Status::Fail) {
        i.detail = config.explain_paths(&i.detail);
    }
    items
}

/// Whether the shared approval database (`approvals.postgres`) answers; nothing is written to it.
async fn approvals_item(config: &Config) -> Option<Item> {
    let crate::config::StoreSettings::Postgres(pg) = &config.approvals.as_ref()?.store else {
        return None;
    };
    Some(
        match crate::approvals::postgres::PostgresStore::probe(pg).await {
            Ok((server, schema)) => Item::pass(
                "approvals store",
                format!(
                    "PostgreSQL {server} at {} answers; {}",
                    pg.target,
                    match schema {
                        Some(v) => format!("approvals schema version {v}"),
                        None => "the approvals table is created at the first start".to_owned(),
                    }
                ),
            ),
            Err(e) => Item::fail(
                "approvals store",
                format!("PostgreSQL {}: {e}", pg.target),
                "check approvals.postgres (host, port, database, user, password, sslmode) and that the server \
                 accepts connections from here; the gateway does not start without its approval store",
            ),
        },
    )
}

/// The public host name a route answers to (what the certificate must cover).
pub fn public_host(config: &Config, route: &RouteSpec) -> String {
    match config.tunnel_domain.as_deref() {
        Some(td) if !route.key.ends_with(td) => format!("{}.{td}", route.key),
        _ => route.key.clone(),
    }
}

fn tls_items(config: &Config, warn_within: time::Duration) -> Vec<Item> {
    let (cert_file, key_file) = (&config.tls.cert_file, &config.tls.key_file);
    let mut items = Vec::new();
    let key_pem = match std::fs::read(key_file) {
        Ok(k) => {
            items.push(Item::pass(
                "tls key",
                format!("{} is readable", key_file.display()),
            ));
            Some(k)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let uid = rustix::process::getuid().as_raw();
            items.push(Item::fail(
                "tls key",
                format!("{}: permission denied (this process runs as uid {uid})", key_file.display()),
                format!(
                    "make the key readable by the gateway's uid, e.g. `chown {uid} {0}` or mode 0640 with a group it is in \
                     (Anthropic's container runs as 65532); check as the same user the gateway runs as",
                    key_file.display()
                ),
            ));
            None
        }
        Err(e) => {
            items.push(Item::fail(
                "tls key",
                format!("cannot read {}: {e}", key_file.display()),
                "point tls.key_file at the server key (`mcp-gateway certs init` writes tls.key)",
            ));
            None
        }
    };
    let cert_pem = match std::fs::read(cert_file) {
        Ok(c) => c,
        Err(e) => {
            items.push(Item::fail(
                "tls certificate",
                format!("cannot read {}: {e}", cert_file.display()),
                "point tls.cert_file at the server certificate (`mcp-gateway certs init` writes tls.crt)",
            ));
            return items;
        }
    };
    let hosts: Vec<String> = config
        .routes
        .iter()
        .map(|r| public_host(config, r))
        .filter(|h| h.parse::<std::net::IpAddr>().is_err())
        .collect();
    let opts = inspect::Options {
        tunnel_domain: config.tunnel_domain.as_deref(),
        hosts,
        key_pem: key_pem.as_deref(),
        warn_within,
        ..inspect::Options::default()
    };
    match inspect::inspect(&cert_pem, &cert_file.display().to_string(), &opts) {
        Err(e) => items.push(Item::fail(
            "tls certificate",
            e.to_string(),
            "tls.cert_file must hold the PEM server certificate",
        )),
        Ok(report) => {
            let worst = report
                .findings
                .iter()
                .map(|f| f.status)
                .max_by_key(|s| match s {
                    Status::Pass => 0,
                    Status::Warn => 1,
                    Status::Fail => 2,
                })
                .unwrap_or(Status::Pass);
            let valid = report
                .findings
                .iter()
                .find(|f| f.check == "validity")
                .map(|f| f.detail.clone())
                .unwrap_or_default();
            let fix = match worst {
                Status::Pass => None,
                _ => Some(
                    "see the lines above; `mcp-gateway certs renew` reissues an expiring or expired certificate, \
                     `mcp-gateway certs inspect FILE --tunnel-domain D` explains one"
                        .into(),
                ),
            };
            items.push(Item {
                name: "tls certificate".into(),
                status: worst,
                detail: format!("{}: {valid}", cert_file.display()),
                fix,
                sub: report
                    .findings
                    .into_iter()
                    .filter(|f| f.status != Status::Pass)
                    .collect(),
            });
        }
    }
    // What the gateway itself does at start (rustls accepts the pair); only worth saying when it disagrees.
    if key_pem.is_some()
        && let Err(e) = crate::tls::load_identity(config)
        && !items.iter().any(|i| i.status == Status::Fail)
    {
        items.push(Item::fail(
            "tls identity",
            e.to_string(),
            "the gateway would refuse to start with this pair",
        ));
    }
    items
}

async fn route_items(
    config: &Config,
    route: &RouteSpec,
    gate: &UpstreamGate,
    o: &CheckOptions,
) -> Vec<Item> {
    let name = format!("route {}", route.key);
    let up = &route.upstream;
    // Resolve once for display (every address), then the gate's own verdict.
    let shown = match up.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, up.port)],
        Err(_) => {
            match tokio::time::timeout(o.timeout, SystemResolver.resolve(&up.host, up.port)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    return vec![Item::fail(
                        format!("{name}: IP gate"),
                        format!("{up}: cannot resolve {:?}: {e}", up.host),
                        "fix the upstream host name or the DNS this machine uses (the gateway resolves it the same way)",
                    )];
                }
                Err(_) => {
                    return vec![Item::fail(
                        format!("{name}: IP gate"),
                        format!(
                            "{up}: resolving {:?} took longer than {:?}",
                            up.host, o.timeout
                        ),
                        "check the resolver",
                    )];
                }
            }
        }
    };
    let listed = shown
        .iter()
        .map(|a| {
            let mark = if gate.allows(a.ip()) {
                "allowed"
            } else {
                "NOT allowed"
            };
            format!("{} ({mark})", a.ip().to_canonical())
        })
        .collect::<Vec<_>>()
        .join(", ");
    let gated = match gate.check(up).await {
        Ok(g) => g,
        Err(e) => {
            return vec![Item::fail(
                format!("{name}: IP gate"),
                format!("{up} → {listed}: {e}"),
                "add the upstream's network to upstream.allowed_ips (it REPLACES the RFC 1918 default; loopback \
                 127.0.0.0/8 only for local tests), or point the route at an address inside it",
            )];
        }
    };
    let mut items = vec![Item::pass(
        format!("{name}: IP gate"),
        format!("{up} → {listed}"),
    )];
    items.push(mcp_item(config, route, gated.addrs()[0], o).await);
    items
}

async fn mcp_item(
    config: &Config,
    route: &RouteSpec,
    addr: std::net::SocketAddr,
    o: &CheckOptions,
) -> Item {
    let name = format!("route {}: MCP", route.key);
    let up = &route.upstream;
    let tls = match up.scheme {
        Scheme::Http => None,
        Scheme::Https => {
            let cfg = match crate::forward::upstream_tls_config(&config.upstream_tls) {
                Ok(c) => c,
                Err(e) => {
                    return Item::fail(
                        name,
                        e.to_string(),
                        "fix upstream.tls.ca_file / include_system_cas",
                    );
                }
            };
            let sni = match rustls_pki_types::ServerName::try_from(up.host.clone()) {
                Ok(s) => s,
                Err(e) => {
                    return Item::fail(
                        name,
                        e.to_string(),
                        "use a DNS name or IP for https upstreams",
                    );
                }
            };
            Some((tokio_rustls::TlsConnector::from(cfg), sni))
        }
    };
    let target = Target {
        addr,
        host: up.authority(),
        path: o.path.clone(),
        tls,
        timeout: o.timeout,
    };
    let fix_down = format!(
        "start the MCP server at {up}{} or correct routes.{} (the MCP endpoint path is `--path`, default /mcp)",
        o.path, route.key
    );
    let (steps, session) = match mcp_client::open(&target).await {
        Ok(x) => x,
        Err(e) => return Item::fail(name, crate::error_class::error_chain(e.as_ref()), fix_down),
    };
    let Some(session) = session else {
        let last = steps.last().map(describe).unwrap_or_default();
        return Item::fail(
            name,
            format!(
                "{up}{}: neither server/discover nor initialize succeeded: {last}",
                o.path
            ),
            fix_down,
        );
    };
    match session
        .request(&target, 3, "tools/list", json!({}), None)
        .await
    {
        Ok(step) => match step.result().and_then(mcp_client::tool_count) {
            Some(n) => Item::pass(
                name,
                format!(
                    "{up}{}: {} ({}), tools/list: {n} tool(s)",
                    o.path,
                    if session.era == mcp_client::MODERN {
                        "server/discover"
                    } else {
                        "initialize"
                    },
                    [session.era, session.server.as_str()].join(", ")
                ),
            ),
            None => Item::fail(
                name,
                format!("tools/list: {}", describe(&step)),
                "the upstream must serve tools/list",
            ),
        },
        Err(e) => Item::fail(name, crate::error_class::error_chain(e.as_ref()), fix_down),
    }
}

/// `HTTP 404, error -32601 Method not found` style.
pub fn describe(s: &mcp_client::Step) -> String {
    let what = match &s.answer {
        mcp_client::Answer::Result(_) => "a result".to_owned(),
        mcp_client::Answer::Error { code, message, .. } => format!("error {code} {message}"),
        mcp_client::Answer::Empty => "no body".to_owned(),
        mcp_client::Answer::Other(t) => format!("unexpected body {t:?}"),
    };
    format!("{} → HTTP {}, {what}", s.method, s.status.as_u16())
}

async fn policies_item(config: &Config) -> Item {
    let Some(pc) = &config.policies else {
        return Item {
            name: "policies".into(),
            status: Status::Warn,
            detail: "no `policies:` block: every message is allowed (drop-in mode)".into(),
            fix: Some("add a `policies:` block to police tool calls (see README, Policies)".into()),
            sub: Vec::new(),
        };
    };
    let names: Vec<&str> = pc.modules.iter().map(|m| m.name.as_str()).collect();
    let cfg = config.clone();
    match tokio::task::spawn_blocking(move || crate::policy::PolicySet::load(&cfg)).await {
        Ok(Ok(_)) => Item::pass(
            "policies",
            format!(
                "{} module(s) load with their settings: {}",
                names.len(),
                names.join(", ")
            ),
        ),
        Ok(Err(e)) => Item::fail(
            "policies",
            crate::error_class::error_chain(&e),
            "fix the module's path, sha256 or settings as the message says; `mcp-gateway policy check FILE --settings JSON` tries one module",
        ),
        Err(e) => Item::fail("policies", e.to_string(), "policy loading crashed"),
    }
}

/// Whether the audit directory can be written, without touching an existing log: the directory (or the
/// nearest existing parent, when it is still to be created) gets a probe file that is created exclusively,
/// locked (as `serve` locks DIR/.lock), synced and removed. A directory whose lock another gateway holds fails:
/// `serve` would refuse it.
fn audit_item(config: &Config) -> Item {
    let Some(a) = &config.audit else {
        return Item {
            name: "audit".into(),
            status: Status::Warn,
            detail: "auditing is disabled (audit: { disabled: true }): decisions are not recorded"
                .into(),
            fix: Some("remove `disabled: true` to record every decision".into()),
            sub: Vec::new(),
        };
    };
    let dir = match std::env::var_os(crate::server::AUDIT_DIR_ENV) {
        Some(d) if !a.dir_configured => PathBuf::from(d),
        _ => a.dir.clone(),
    };
    let uid = rustix::process::getuid().as_raw();
    let fix = format!(
        "set audit.dir to a directory uid {uid} can write (created mode 0700 at start), or create it: \
         `install -d -m 0700 -o <gateway user> {}`",
        dir.display()
    );
    if let Some(key) = &a.signing_key_file
        && let Err(e) = crate::audit::chain::Signer::from_pem_file(key)
    {
        return Item::fail(
            "audit",
            e.to_string(),
            "audit.signing_key_file must be an Ed25519 PKCS#8 PEM the gateway can read",
        );
    }
    match probe_dir(&dir) {
        Ok(ProbeResult::Writable) => Item::pass("audit", format!("{} is writable", dir.display())),
        Ok(ProbeResult::WillCreate(parent)) => Item::pass(
            "audit",
            format!(
                "{} will be created (mode 0700) inside writable {}",
                dir.display(),
                parent.display()
            ),
        ),
        Ok(ProbeResult::InUse) => Item::fail(
            "audit",
            format!(
                "{} is locked by another gateway (its .lock is held): `serve` with this config would refuse \
                 to start",
                dir.display()
            ),
            "give every gateway its own audit.dir (e.g. `audit: { dir: ./audit }` beside the config), or stop \
             the gateway that holds it",
        ),
        Err(e) => Item::fail("audit", format!("{}: {e}", dir.display()), fix),
    }
}

enum ProbeResult {
    Writable,
    WillCreate(PathBuf),
    InUse,
}

fn probe_dir(dir: &Path) -> std::io::Result<ProbeResult> {
    let mut existing = dir.to_path_buf();
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p.to_path_buf(),
            _ => existing = PathBuf::from("."),
        }
    }
    if !existing.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    let probe = existing.join(format!(
        ".mcp-gateway-check-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    let synced = f.sync_all();
    // `serve` takes an exclusive lock on DIR/.lock: check that this file system grants one, on the probe.
    let locked = match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::other(
            "a fresh file could not be locked exclusively",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    };
    drop(f);
    std::fs::remove_file(&probe)?;
    synced?;
    locked.map_err(|e| {
        std::io::Error::other(format!(
            "files in {} cannot be locked, and `serve` locks DIR/.lock so that one gateway writes a log: {e}",
            existing.display()
        ))
    })?;
    if existing != dir {
        return Ok(ProbeResult::WillCreate(existing));
    }
    // A running gateway holds an exclusive lock on DIR/.lock; only look, never create it.
    if let Ok(lock) = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(".lock"))
    {
        match lock.try_lock() {
            Ok(()) => {
                let _ = lock.unlock();
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(ProbeResult::InUse),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(ProbeResult::Writable)
}

fn print(config: &Path, items: &[Item], failed: usize) {
    println!("mcp-gateway check {}", config.display());
    for i in items {
        println!("{} {}: {}", super::certs::mark(i.status), i.name, i.detail);
        for f in &i.sub {
            println!(
                "    {} {}: {}",
                super::certs::mark(f.status),
                f.check,
                f.detail
            );
        }
        if let Some(fix) = &i.fix {
            println!("    fix: {fix}");
        }
    }
    let warned = items.iter().filter(|i| i.status == Status::Warn).count();
    if failed == 0 {
        println!("OK: {} checks passed ({warned} warning(s))", items.len());
    } else {
        println!("FAIL: {failed} of {} checks failed", items.len());
    }
}

fn to_json(config: &Path, items: &[Item], failed: usize) -> serde_json::Value {
    let status = |s: Status| match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
    };
    json!({
        "config": config.display().to_string(),
        "ok": failed == 0,
        "failed": failed,
        "checks": items.iter().map(|i| json!({
            "name": i.name,
            "status": status(i.status),
            "detail": i.detail,
            "fix": i.fix,
            "findings": i.sub.iter().map(|f| json!({"check": f.check, "status": status(f.status), "detail": f.detail})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
