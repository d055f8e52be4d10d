//! Hot reload: the serving [`Generation`] (validated config + the [`Gateway`] built from it) lives in an
//! [`ArcSwap`]; the server loads it once per request, so a swap never changes a request half-way through:
//! requests in flight finish on the generation they started with, and it is dropped with the last of them.
//!
//! A reload (config file changed — polled every [`POLL`], content hashed, policy module files by mtime and
//! size — or SIGHUP, which reloads even if nothing changed) builds the whole new generation beside the
//! running one: the file is parsed and validated, the TLS identity loaded and checked against the new routes,
//! every policy compiled (off the reactor), the gateway built. Only if every step succeeds are the identity
//! and the generation swapped; otherwise the reason is logged, `mcp_gateway_config_reloads_total{result=
//! "failure"}` counts it, and the old generation keeps serving. Invariant 5 holds per generation: each one is
//! validated once and immutable.
//!
//! What a reload cannot change (the listeners, log settings, the server's connection timeouts, the open
//! audit log — the decisions of both generations go into the one chain — and the approval workflow, whose
//! held calls span generations) keeps its start-up value, with a warning that a restart is needed. Route
//! redaction settings do apply, and so does `telemetry:`: a changed block gets a new trace exporter (one that
//! cannot be set up rejects the reload), and the old one is flushed and stopped once the requests that still
//! use it are done (see [`retire`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::{self, AuditSettings, Config, ConfigError};
use crate::metrics::Reloads;
use crate::pipeline::Gateway;
use crate::policy::{PolicySet, PolicySetError};
use crate::tls::{self, ReloadingResolver, TlsError};
use crate::upstream_gate::Resolve;

/// How often the config file (and the policy modules it names) is checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// One validated config and the request path built from it.
#[derive(Debug)]
pub struct Generation {
    pub config: Arc<Config>,
    pub gateway: Arc<Gateway>,
    /// 1 for the config the process started with, then +1 per successful reload.
    pub number: u64,
}

/// Why a new config was not taken; the old one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Policies(#[from] PolicySetError),
    #[error("cannot build the request path: {0}")]
    Build(#[source] std::io::Error),
    #[error("the reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Telemetry(#[from] crate::otel::OtelError),
}

/// The last reload that was rejected (cleared by a successful one), for `/readyz`.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub at: time::OffsetDateTime,
    pub error: String,
}

/// What is serving now, shared by the listener, the reloader and the admin listener.
pub struct Live {
    current: ArcSwap<Generation>,
    /// The config the listeners and the audit log were opened with: what a reload cannot change.
    startup: Arc<Config>,
    pub tls: Arc<ReloadingResolver>,
    dns: Arc<dyn Resolve>,
    rejected: Mutex<Option<Rejected>>,
    draining: AtomicBool,
    /// Reload counters, exported by `/metrics`.
    pub reloads: Reloads,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("generation", &self.current.load().number)
            .finish()
    }
}

impl Live {
    pub fn new(
        config: Config,
        gateway: Gateway,
        tls: Arc<ReloadingResolver>,
        dns: Arc<dyn Resolve>,
    ) -> Arc<Live> {
        let config = Arc::new(config);
        let reloads = Reloads::default();
        reloads
            .last_success_unix
            .store(unix_now(), Ordering::Relaxed);
        Arc::new(Live {
            current: ArcSwap::from_pointee(Generation {
                config: config.clone(),
                gateway: Arc::new(gateway),
                number: 1,
            }),
            startup: config,
            tls,
            dns,
            rejected: Mutex::new(None),
            draining: AtomicBool::new(false),
            reloads,
        })
    }

    /// The request path for one request (cheap: no lock, one reference count).
    #[inline]
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load().gateway.clone()
    }

    pub fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// The config the process started with.
    pub fn startup(&self) -> &Config {
        &self.startup
    }

    pub fn rejected(&self) -> Option<Rejected> {
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Set once shutdown begins (`/readyz` then says not ready).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Loads `path` and, if everything in it is valid, swaps it in. Counts and logs the result.
    pub async fn reload(&self, path: &Path) -> Result<u64, ReloadError> {
        let result = self.try_reload(path).await;
        match &result {
            Ok(number) => {
                self.reloads.succeeded.fetch_add(1, Ordering::Relaxed);
                self.reloads.last_failed.store(0, Ordering::Relaxed);
                self.reloads
                    .last_success_unix
                    .store(unix_now(), Ordering::Relaxed);
                *self.rejected.lock().unwrap_or_else(PoisonError::into_inner) = None;
                tracing::info!(config = %path.display(), generation = number, "config reloaded");
            }
            Err(e) => {
                self.reloads.failed.fetch_add(1, Ordering::Relaxed);
                self.reloads.last_failed.store(1, Ordering::Relaxed);
                let error = crate::error_class::error_chain(e);
                tracing::error!(config = %path.display(), "config reload rejected, the previous config keeps serving: {error}");
                *self.rejected.lock().unwrap_or_else(PoisonError::into_inner) = Some(Rejected {
                    at: time::OffsetDateTime::now_utc(),
                    error,
                });
            }
        }
        result
    }

    async fn try_reload(&self, path: &Path) -> Result<u64, ReloadError> {
        let path = path.to_owned();
        // What the command line set (`-tunnel-domain`) holds for every generation.
        let overrides = self.current.load().config.overrides.clone();
        let (config, identity, policies) = tokio::task::spawn_blocking(move || {
            let config = config::load_with(&path, &overrides)?;
            let identity = tls::load_identity(&config)?;
            let policies = PolicySet::load(&config)?;
            Ok::<_, ReloadError>((config, identity, policies))
        })
        .await??;
        let old = self.current.load_full();
        warn_restart_required(&self.startup, &config);
        // The audit log stays the one opened at start (see the module doc).
        let auditor = old.gateway.auditor().clone();
        // The trace exporter is kept while `telemetry:` is unchanged, else replaced.
        let telemetry_changed = config.telemetry != old.config.telemetry;
        let otel = match (&config.telemetry, telemetry_changed) {
            (_, false) => old.gateway.otel().cloned(),
            (Some(otlp), true) => Some(crate::otel::Otel::start(otlp)?),
            (None, true) => None,
        };
        let shared = crate::pipeline::Shared {
            auditor,
            // Like the audit log, the approval workflow and the tool pins opened at start serve every
            // generation.
            approvals: old.gateway.approvals().cloned(),
            pins: old.gateway.pins().cloned(),
            otel,
            resolver: self.dns.clone(),
        };
        let gateway = Gateway::new(&config, &policies, shared, Some(&old.gateway))
            .map_err(ReloadError::Build)?;
        log_route_changes(&old.config, &config);
        let number = old.number + 1;
        self.tls.set(identity);
        match (&config.telemetry, telemetry_changed) {
            (Some(t), true) => {
                tracing::info!(endpoint = %t.endpoint, sample_ratio = t.sample_ratio,
                "`telemetry:` changed: exporting traces with the new settings")
            }
            (None, true) => tracing::info!("`telemetry:` removed: no more traces are made"),
            _ => {}
        }
        self.current.store(Arc::new(Generation {
            config: Arc::new(config),
            gateway: Arc::new(gateway),
            number,
        }));
        if telemetry_changed && let Some(previous) = old.gateway.otel().cloned() {
            drop(old);
            retire(previous);
        }
        Ok(number)
    }
}

/// Longest wait for the requests of a replaced trace exporter before it is flushed anyway.
pub const RETIRE_WITHIN: Duration = Duration::from_secs(300);

/// Flushes and stops a replaced trace exporter once nothing uses it any more: the old generation and its
/// requests hold it until their spans have ended (at most [`RETIRE_WITHIN`]).
fn retire(otel: Arc<crate::otel::Otel>) {
    tokio::spawn(async move {
        let deadline = std::time::Instant::now() + RETIRE_WITHIN;
        while Arc::strong_count(&otel) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Exports what is queued; blocks on the exporter thread, so not on a worker.
        let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
        tracing::info!("the replaced trace exporter is flushed and stopped");
    });
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Settings only a restart applies: a warning for each one the new file changes.
fn warn_restart_required(running: &Config, new: &Config) {
    let mut changed = Vec::new();
    if running.listen != new.listen {
        changed.push("listen_addr");
    }
    if running.admin != new.admin {
        changed.push("admin");
    }
    if running.log.level != new.log.level || running.log.format != new.log.format {
        changed.push("log_level/log_format");
    }
    let (a, b) = (&running.limits, &new.limits);
    if a.tls_handshake_timeout != b.tls_handshake_timeout
        || a.request_header_timeout != b.request_header_timeout
        || a.idle_timeout != b.idle_timeout
    {
        changed.push("limits.tls_handshake_timeout/request_header_timeout/idle_timeout");
    }
    if running.approvals != new.approvals {
        changed.push("approvals");
    }
    if audit_log_differs(running.audit.as_ref(), new.audit.as_ref()) {
        changed.push(
            "audit (the open log keeps its directory and settings; redaction changes do apply)",
        );
    }
    for what in changed {
        tracing::warn!(
            "config reload: `{what}` changed, but only a restart applies it; the running value is kept"
        );
    }
}

/// Whether the settings of the open audit log (not the per-record redaction) differ.
fn audit_log_differs(a: Option<&AuditSettings>, b: Option<&AuditSettings>) -> bool {
    match (a, b) {
        (None, None) => false,
        (Some(a), Some(b)) => {
            a.dir != b.dir
                || a.segment_max_bytes != b.segment_max_bytes
                || a.segment_max_age != b.segment_max_age
                || a.retention != b.retention
                || a.checkpoint_every != b.checkpoint_every
                || a.checkpoint_interval != b.checkpoint_interval
                || a.signing_key_file != b.signing_key_file
        }
        _ => true,
    }
}

fn log_route_changes(old: &Config, new: &Config) {
    for r in &new.routes {
        match old.routes.iter().find(|o| o.key == r.key) {
            None => tracing::info!(route = %r.key, upstream = %r.upstream, "route added"),
            Some(o) if o.upstream != r.upstream || o.policies != r.policies => {
                tracing::info!(route = %r.key, upstream = %r.upstream, chain = %r.policies.join(" → "), "route changed")
            }
            Some(_) => {}
        }
    }
    for o in &old.routes {
        if !new.routes.iter().any(|r| r.key == o.key) {
            tracing::info!(route = %o.key, "route removed");
        }
    }
}

/// What a change to the config shows: the file's content hash, and mtime + size of each policy module the
/// serving config names.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    content: Option<[u8; 32]>,
    modules: Vec<Option<(SystemTime, u64)>>,
}

fn content_hash(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

fn module_stamps(config: &Config) -> Vec<Option<(SystemTime, u64)>> {
    config
        .policies
        .iter()
        .flat_map(|p| &p.modules)
        .map(|m| {
            std::fs::metadata(&m.path)
                .ok()
                .map(|md| (md.modified().unwrap_or(SystemTime::UNIX_EPOCH), md.len()))
        })
        .collect()
}

/// A way to ask for a reload (SIGHUP's handler uses it; so can tests).
#[derive(Debug, Clone)]
pub struct Trigger(mpsc::Sender<()>);

impl Trigger {
    pub fn reload(&self) {
        let _ = self.0.try_send(());
    }
}

/// Watches `path`: reloads when its content (or a policy module it names) changes, and whenever the
/// [`Trigger`] fires. One reload at a time; a rejected change is not retried until the file changes again.
pub fn spawn(live: Arc<Live>, path: PathBuf) -> (Trigger, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let mut seen = Fingerprint {
            content: content_hash(&path),
            modules: module_stamps(&live.config()),
        };
        loop {
            let forced = tokio::select! {
                () = tokio::time::sleep(POLL) => false,
                got = rx.recv() => match got {
                    Some(()) => true,
                    None => return,
                },
            };
            let now = Fingerprint {
                content: content_hash(&path),
                modules: module_stamps(&live.config()),
            };
            if !forced && now == seen {
                continue;
            }
            let _ = live.reload(&path).await;
            // The file as hashed before this attempt read it (a write since then is seen next time), and the
            // modules the serving config — perhaps just swapped in — names.
            seen = Fingerprint {
                content: now.content,
                modules: module_stamps(&live.config()),
            };
        }
    });
    (Trigger(tx), task)
}

/// Forwards SIGHUP to `trigger` for as long as the task runs.
pub fn spawn_sighup(trigger: Trigger) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the config");
            trigger.reload();
        }
    }))
}
