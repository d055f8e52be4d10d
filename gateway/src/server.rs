//! The listener: accepts TCP, terminates the inner TLS (stage 1), serves HTTP/1.1 and HTTP/2 on it, and hands
//! every request to [`pipeline::handle`] with the gateway of the serving [`reload::Generation`] (loaded per
//! request, so a reload applies to open connections too). Beside it: the admin listener ([`admin`]), the
//! certificate poller, and — with [`Server::with_config_file`] — the config reloader and SIGHUP.
//! On shutdown it stops accepting and drains for `shutdown_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::audit::{AuditConfig, AuditLog};
use crate::audit_stage::Auditor;
use crate::config::{AdminSettings, Config, IpPolicy, StoreSettings};
use crate::ctx::ConnInfo;
use crate::metrics::COUNTERS;
use crate::pipeline::{self, Gateway};
use crate::reload::{self, Live};
use crate::tls;
use crate::tunnel;
use crate::upstream_gate::{Resolve, SystemResolver};

/// A bound, ready-to-run gateway.
pub struct Server {
    listener: TcpListener,
    admin: Option<TcpListener>,
    acceptor: TlsAcceptor,
    live: Arc<Live>,
    config_file: Option<PathBuf>,
}

impl Server {
    /// Loads the TLS identity, builds the request path and binds the listener; every start-up error is here.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Self::bind_with_resolver(config, Arc::new(SystemResolver)).await
    }

    /// [`Server::bind`] with another name resolver for upstreams (tests use it to simulate DNS rebinding).
    pub async fn bind_with_resolver(
        config: Config,
        dns: Arc<dyn Resolve>,
    ) -> anyhow::Result<Server> {
        let identity = tls::load_identity(&config)?;
        let resolver = tls::ReloadingResolver::new(identity);
        let acceptor = TlsAcceptor::from(tls::server_config(resolver.clone()));
        let policies = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || crate::policy::PolicySet::load(&config)).await??
        };
        let auditor = open_audit(&config)?;
        let approvals = open_approvals(&config, &auditor).await?;
        let pins = open_pins(&config, &auditor).await?;
        let otel = match &config.telemetry {
            Some(otlp) => {
                let otel = crate::otel::Otel::start(otlp)?;
                tracing::info!(endpoint = %otlp.endpoint, sample_ratio = otlp.sample_ratio, "exporting traces over OTLP/HTTP");
                Some(otel)
            }
            None => None,
        };
        let shared = crate::pipeline::Shared {
            auditor,
            approvals,
            pins: Some(Arc::new(pins)),
            otel,
            resolver: dns.clone(),
        };
        let gateway = Gateway::new(&config, &policies, shared, None)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin = bind_admin(config.admin.as_ref()).await?;
        Ok(Server {
            listener,
            admin,
            acceptor,
            live: Live::new(config, gateway, resolver, dns),
            config_file: None,
        })
    }

    /// Reload from `path` (the file the config was loaded from) when it changes and on SIGHUP.
    pub fn with_config_file(mut self, path: PathBuf) -> Self {
        self.config_file = Some(path);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The admin listener's address, unless it is disabled (or the default address was taken).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// What is serving (the generation, the TLS identity).
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let admin_addr = self.admin_addr();
        let Server {
            listener,
            admin,
            acceptor,
            live,
            config_file,
        } = self;
        let config = live.config();
        log_start(&config, &live.gateway(), listener.local_addr()?, admin_addr);
        let mut background = vec![tls::spawn_reloader(live.tls.clone(), {
            let live = live.clone();
            move || live.config()
        })];
        if let Some(approvals) = live.gateway().approvals() {
            background.push(approvals.spawn_sweeper());
        }
        if let Some(admin) = admin {
            let router = admin::router(live.clone());
            background.push(tokio::spawn(async move {
                if let Err(e) = admin::serve(admin, router).await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            }));
        }
        if let Some(path) = config_file {
            let (trigger, task) = reload::spawn(live.clone(), path.clone());
            background.push(task);
            background.push(reload::spawn_sighup(trigger)?);
            tracing::info!(config = %path.display(), "config reload on change (polled every {:?}) and on SIGHUP", reload::POLL);
        }

        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.limits.request_header_timeout)
            .keep_alive(true);
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(config.limits.idle_timeout)
            .keep_alive_timeout(config.limits.idle_timeout)
            .max_concurrent_streams(256);
        let http = Arc::new(http);
        let graceful = GracefulShutdown::new();
        let handshake_timeout = config.limits.tls_handshake_timeout;

        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, live, http, watcher) = (
                acceptor.clone(),
                live.clone(),
                http.clone(),
                graceful.watcher(),
            );
            tokio::spawn(async move {
                // One listener, two shapes: TLS directly, or cloudflared's WebSocket carrying TLS.
                let opening = match tokio::time::timeout(handshake_timeout, tunnel::opening(&tcp))
                    .await
                {
                    Ok(Ok(o)) => o,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return tracing::debug!(client = %peer, "connection closed before sending anything");
                    }
                    Ok(Err(e)) => return handshake_failed(peer, &e.to_string()),
                    Err(_) => {
                        return handshake_failed(
                            peer,
                            &format!("nothing received within {handshake_timeout:?}"),
                        );
                    }
                };
                let conn = Connection {
                    peer,
                    acceptor,
                    live,
                    http,
                    watcher,
                    handshake_timeout,
                };
                match opening {
                    tunnel::Opening::Tls => conn.serve(tcp).await,
                    tunnel::Opening::Http => match tunnel::accept(tcp, handshake_timeout).await {
                        Ok(carried) => {
                            tracing::debug!(client = %peer, "WebSocket tunnel open; TLS follows inside it");
                            conn.serve(carried).await
                        }
                        Err(e) => {
                            tracing::warn!(client = %peer, "refused a plaintext connection: {e}")
                        }
                    },
                }
            });
        }

        drop(listener);
        live.set_draining();
        let shutdown_timeout = live.config().shutdown_timeout;
        tracing::info!(timeout = ?shutdown_timeout, "shutting down: no new connections, draining in-flight requests");
        match tokio::time::timeout(shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections drained"),
            Err(_) => tracing::warn!("shutdown_timeout reached; closing the remaining connections"),
        }
        for task in background {
            task.abort();
        }
        if let Some(log) = live.gateway().auditor().log() {
            log.close().await;
            tracing::info!("audit log flushed and closed");
        }
        if let Some(otel) = live.gateway().otel().cloned() {
            // Exports what is queued; blocks on the exporter thread, so not on a worker.
            let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
            tracing::info!("trace exporter flushed");
        }
        Ok(())
    }
}

/// One accepted connection, whatever carries it: terminates the inner TLS and serves HTTP/1.1 or HTTP/2 on it.
struct Connection {
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    live: Arc<reload::Live>,
    http: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    handshake_timeout: std::time::Duration,
}

impl Connection {
    async fn serve<IO>(self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            acceptor,
            live,
            http,
            watcher,
            handshake_timeout,
        } = self;
        let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
            Ok(Ok(s)) => s,
            // A TCP probe (load balancer, readiness check) that closes before sending a ClientHello.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return tracing::debug!(client = %peer, "connection closed before the TLS handshake");
            }
            Ok(Err(e)) => return handshake_failed(peer, &e.to_string()),
            Err(_) => {
                return handshake_failed(peer, &format!("timed out after {handshake_timeout:?}"));
            }
        };
        let sni = stream.get_ref().1.server_name().map(str::to_owned);
        let conn = Arc::new(ConnInfo { peer, sni });
        let svc = service_fn(move |req| {
            let (gateway, conn) = (live.gateway(), conn.clone());
            async move { Ok::<_, Infallible>(pipeline::handle(gateway, conn, req).await) }
        });
        let serving = http
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        if let Err(e) = watcher.watch(serving).await {
            tracing::debug!(client = %peer, error = %e, "connection closed with error");
        }
    }
}

/// Environment override of the default audit directory (used when the config names none).
pub const AUDIT_DIR_ENV: &str = "MCP_GATEWAY_AUDIT_DIR";

/// Opens the audit log the config asks for; `None` only when the config disables auditing explicitly.
/// Opens the approval store when the config has an `approvals:` block (a store that cannot be opened stops
/// the start: calls needing approval would otherwise have nowhere to wait).
/// The tool pins: in the approval store's PostgreSQL database when there is one (shared by every replica),
/// else in `tool-pins.json` beside the audit directory, else (auditing disabled) in memory.
async fn open_pins(config: &Config, auditor: &Auditor) -> anyhow::Result<crate::pins::Pins> {
    use crate::pins::Pins;
    let audit = auditor.log().cloned();
    let pins = match config.approvals.as_ref().map(|a| &a.store) {
        Some(StoreSettings::Postgres(pg)) => Pins::open_shared(pg, audit)
            .await
            .map_err(|e| anyhow::anyhow!("{e}: the tool pins (see `on_tool_change`) are kept in the approval database; check `approvals.postgres`"))?,
        _ => Pins::open(effective_audit_dir(config).map(|d| Pins::path_beside(&d)), audit)
            .map_err(|e| anyhow::anyhow!("{e}: the tool pins file (see `on_tool_change`) must be readable JSON; restore it from a backup or remove it to pin every tool afresh"))?,
    };
    tracing::info!(store = %pins.describe(), "tool pins: each tool's definition is pinned as first seen");
    Ok(pins)
}

async fn open_approvals(
    config: &Config,
    auditor: &Auditor,
) -> anyhow::Result<Option<Arc<crate::approvals::Approvals>>> {
    let Some(settings) = &config.approvals else {
        return Ok(None);
    };
    let approvals = crate::approvals::Approvals::open(settings, auditor.clone())
        .await
        .with_context(|| match &settings.store {
            StoreSettings::Sqlite(db) => format!(
                "cannot open the approval database {} (set `approvals.db` to a writable path)",
                db.display()
            ),
            StoreSettings::Postgres(pg) => format!(
                "cannot open the approval database PostgreSQL {} (check `approvals.postgres`: is the server up, \
                 the database created, the user allowed?)",
                pg.target
            ),
        })?;
    tracing::info!(
        store = %settings.store.describe(), wait = ?settings.wait, expire = ?settings.expire,
        approvers = settings.approvers.len(), webhook = settings.webhook.is_some(),
        "approvals: calls a policy sends for approval are held for an approver"
    );
    if settings.approvers.is_empty() {
        tracing::warn!("approvals: no `approvers` configured, so nobody can approve a held call");
    }
    if config.admin.is_none() {
        tracing::warn!(
            "approvals: the admin listener is disabled, so the approvals API and page are unreachable"
        );
    }
    Ok(Some(approvals))
}

/// The audit directory the gateway uses for `config` (the environment's override applies when the config
/// does not name one); `None` when auditing is disabled.
pub fn effective_audit_dir(config: &Config) -> Option<std::path::PathBuf> {
    let a = config.audit.as_ref()?;
    Some(match std::env::var_os(AUDIT_DIR_ENV) {
        Some(d) if !a.dir_configured => std::path::PathBuf::from(d),
        _ => a.dir.clone(),
    })
}

fn open_audit(config: &Config) -> anyhow::Result<Auditor> {
    let Some(a) = &config.audit else {
        tracing::warn!(
            "AUDITING IS DISABLED (audit: {{ disabled: true }}): decisions are not recorded"
        );
        return Ok(Auditor::new(None));
    };
    let dir = match std::env::var_os(AUDIT_DIR_ENV) {
        Some(d) if !a.dir_configured => std::path::PathBuf::from(d),
        _ => a.dir.clone(),
    };
    let cfg = AuditConfig {
        dir: dir.clone(),
        segment_max_bytes: a.segment_max_bytes,
        segment_max_age: a.segment_max_age,
        retention: a.retention,
        checkpoint_every: a.checkpoint_every,
        checkpoint_interval: a.checkpoint_interval,
        signing_key_file: a.signing_key_file.clone(),
        ..AuditConfig::with_dir(dir.clone())
    };
    let log = AuditLog::open(cfg).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the audit log in {}: {}. Every decision is written there before a request is forwarded, \
             so the gateway does not start without it: set `audit.dir` to a directory the gateway (uid {}) can \
             write (it is created mode 0700), or turn auditing off explicitly with `audit: {{ disabled: true }}`",
            dir.display(),
            crate::error_class::error_chain(&e),
            rustix::process::getuid().as_raw()
        )
    })?;
    tracing::info!(dir = %dir.display(), redact = ?a.redact, signed = a.signing_key_file.is_some(), "audit log open");
    Ok(Auditor::new(Some(log)))
}

/// Binds the admin listener. An explicitly configured address must bind; the default one being taken (by
/// another process on this host) only costs the admin endpoints, with a warning.
async fn bind_admin(admin: Option<&AdminSettings>) -> anyhow::Result<Option<TcpListener>> {
    let Some(a) = admin else {
        return Ok(None);
    };
    match TcpListener::bind(a.listen).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !a.explicit => {
            tracing::warn!(
                "admin listener not started: cannot listen on the default {} ({e}); set `admin.listen` to a free \
                 address, or `admin: {{ disabled: true }}`",
                a.listen
            );
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot listen on {} for the admin listener (`admin.listen`): {e}",
            a.listen
        )),
    }
}

fn handshake_failed(peer: SocketAddr, why: &str) {
    COUNTERS
        .tls_handshake_failures
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(client = %peer, "tls handshake failed: {why}");
}

fn log_start(config: &Config, gateway: &Gateway, addr: SocketAddr, admin: Option<SocketAddr>) {
    for r in gateway.routes() {
        let host = match &config.tunnel_domain {
            Some(td) if !r.key.contains('.') => format!("{}.{td}", r.key),
            _ => r.key.clone(),
        };
        tracing::info!(route = %r.key, host = %host, upstream = %r.upstream, "route configured");
    }
    match &config.ip_policy {
        IpPolicy::Disabled => tracing::warn!(
            "upstream IP validation is DISABLED (upstream.disable_ip_validation: true)"
        ),
        IpPolicy::Allowed(nets) => {
            let list = nets
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if nets.iter().any(|n| n.prefix_len() == 0) {
                tracing::warn!(allowed_ips = %list, "allowed_ips admits every address; use this only in isolated tests");
            } else {
                tracing::info!(allowed_ips = %list, "upstream IP gate");
            }
        }
    }
    match &config.policies {
        None => tracing::warn!(
            "no `policies:` block configured: every MCP message is ALLOWED and forwarded (policy enforcement is off)"
        ),
        Some(p) => {
            for r in &config.routes {
                if r.policies.is_empty() {
                    tracing::warn!(route = %r.key, "route has an empty policy chain (`policies: []`): every message on it is allowed");
                } else {
                    tracing::info!(route = %r.key, chain = %r.policies.join(" → "), "policy chain");
                }
            }
            tracing::info!(
                modules = p.modules.len(),
                max_concurrency = p.max_concurrency,
                "policy engine ready"
            );
        }
    }
    match admin {
        Some(a) if !a.ip().is_loopback() => tracing::warn!(
            listen = %a,
            "admin listener (healthz, readyz, metrics) is reachable beyond loopback and has no authentication"
        ),
        Some(a) => {
            tracing::info!(listen = %a, "admin listener: http://{a}/healthz, /readyz, /metrics")
        }
        None => tracing::info!("admin listener off"),
    }
    tracing::info!(listen = %addr, tls_cert = %config.tls.cert_file.display(), "mcp-gateway listening (TLS, h2 + http/1.1)");
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
