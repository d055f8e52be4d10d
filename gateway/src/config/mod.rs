//! Configuration: the file as written ([`file`]) and the validated, immutable [`Config`] built from it once
//! ([`validate`]). Nothing looks config up by string at request time.

pub mod file;
pub mod glob;
pub mod paths;
pub mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use validate::from_yaml;

/// Default config path, as in Anthropic's proxy container.
pub const DEFAULT_PATH: &str = "/etc/mcp-gateway/config.yaml";

/// A validated configuration. Built only by [`validate`].
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub log: LogSettings,
    pub shutdown_timeout: Duration,
    /// Lowercase, without leading/trailing dots.
    pub tunnel_domain: Option<String>,
    pub tls: TlsFiles,
    /// Sorted by key; at least one.
    pub routes: Vec<RouteSpec>,
    pub ip_policy: IpPolicy,
    pub upstream_tls: UpstreamTls,
    pub limits: Limits,
    /// `None` when the file has no `policies:` block (every message allowed, said loudly at start).
    pub policies: Option<PolicyConfig>,
    /// `None` only when the config says `audit: { disabled: true }`.
    pub audit: Option<AuditSettings>,
    /// `None` only when the config says `admin: { disabled: true }`.
    pub admin: Option<AdminSettings>,
    /// `None` when the config has no `approvals:` block (calls needing approval are refused).
    pub approvals: Option<ApprovalSettings>,
    /// `None` when the file has no `identity:` block: tokens are not looked at (they still pass through).
    pub identity: Option<IdentityConfig>,
    /// `None` when the file has no `telemetry.otlp:` block: no spans are made.
    pub telemetry: Option<OtlpSettings>,
    /// The paths the file wrote relative, resolved against its directory (for error messages).
    pub relative_paths: Vec<paths::RelativePath>,
    /// What the command line set over the file; a reload of the file applies it again.
    pub overrides: Overrides,
}

impl Config {
    /// `message` followed by how the relative config paths it names were resolved, if it names any.
    pub fn explain_paths(&self, message: &str) -> String {
        match paths::explain(&self.relative_paths, message) {
            Some(why) => format!("{message} {why}"),
            None => message.to_owned(),
        }
    }
}

/// Settings given on the command line that take precedence over the config file's, like the flags Anthropic's
/// proxy container is started with (`-tunnel-domain D` in its chart's managed mode). Kept in the [`Config`] so a
/// reload of the file applies them again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Replaces (or sets) `tunnel_domain`, before the routes are resolved against it.
    pub tunnel_domain: Option<String>,
}

/// The validated `telemetry.otlp:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// Full URL of the traces endpoint (`…/v1/traces`), `http://` or `https://`.
    pub endpoint: http::Uri,
    /// Extra CA for an `https://` endpoint.
    pub ca_file: Option<PathBuf>,
    pub service_name: String,
    /// 0.0–1.0.
    pub sample_ratio: f64,
    /// Header names are valid HTTP names, values valid header values.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The validated `approvals:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalSettings {
    /// Where approval state lives.
    pub store: StoreSettings,
    pub wait: Duration,
    pub expire: Duration,
    pub grant_ttl: Duration,
    pub grant_uses: u32,
    pub keepalive: Duration,
    pub poll_interval: Duration,
    pub webhook: Option<Webhook>,
    /// Names are unique; so are tokens.
    pub approvers: Vec<Approver>,
    /// `None`: every approval goes to the operators (the default).
    pub caller_confirmation: Option<CallerConfirmation>,
    /// JWT approvers; `None` without `approvals.role`.
    pub jwt: Option<ApproverJwt>,
}

/// The validated `approvals.caller_confirmation:` block: which `RequireApproval` calls the caller may
/// confirm in the protocol (see [`crate::approvals::caller`]).
#[derive(Clone, PartialEq, Eq)]
pub struct CallerConfirmation {
    /// Tool globs (non-empty).
    pub tools: Vec<String>,
    /// Route keys (checked against the routes); `None`: every route.
    pub routes: Option<Vec<String>>,
    /// The `requestState` HMAC key; `None`: made at random when the workflow opens.
    pub secret: Option<Vec<u8>>,
    pub expire: Duration,
}

impl CallerConfirmation {
    /// Whether the caller may confirm `tool` on `route`.
    pub fn covers(&self, route: &str, tool: &str) -> bool {
        self.routes
            .as_ref()
            .is_none_or(|rs| rs.iter().any(|r| r == route))
            && self.tools.iter().any(|g| glob::glob_match(g, tool))
    }
}

impl std::fmt::Debug for CallerConfirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerConfirmation")
            .field("tools", &self.tools)
            .field("routes", &self.routes)
            .field("secret", &self.secret.as_ref().map(|_| "<from file>"))
            .field("expire", &self.expire)
            .finish()
    }
}

/// The approval store: the embedded SQLite file (default) or a PostgreSQL database shared by replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    Sqlite(PathBuf),
    Postgres(PostgresSettings),
}

impl StoreSettings {
    /// What the store is, for logs and messages (never the password).
    pub fn describe(&self) -> String {
        match self {
            StoreSettings::Sqlite(p) => format!("SQLite {}", p.display()),
            StoreSettings::Postgres(pg) => format!("PostgreSQL {}", pg.target),
        }
    }
}

/// The validated `approvals.postgres:` block.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// The connection string (`postgres://…` or `key=value …`); it may hold a password, so it is never
    /// logged or shown (`Debug` prints [`PostgresSettings::target`] only).
    pub url: String,
    /// `user@host:port/dbname sslmode=…`, for logs and messages.
    pub target: String,
    /// Extra PEM root certificates for TLS to the server (the system's are always trusted).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("target", &self.target)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Approvers who authenticate with a JWT: verified like callers (issuer, audience, keys, algorithms, expiry),
/// then required to carry `role` in claim `role_claim`. The approver recorded is the token's `sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApproverJwt {
    /// `claims` includes `role_claim`.
    pub jwt: JwtSettings,
    pub role_claim: String,
    pub role: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: http::Uri,
    pub attempts: u32,
    pub ca_file: Option<PathBuf>,
    /// The signing secret (`secret_file`); never logged.
    pub secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .field("ca_file", &self.ca_file)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Approver {
    pub name: String,
    /// SHA-256 of the bearer token.
    pub token_sha256: [u8; 32],
}

impl std::fmt::Debug for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approver")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The validated `identity:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityConfig {
    pub jwt: JwtSettings,
    /// Pass the caller's `Authorization` header to the upstream (otherwise it is removed).
    pub forward_authorization: bool,
    /// Absolute URL of the protected resource metadata for 401 challenges; `None`: derived from the request.
    pub resource_metadata: Option<String>,
}

/// Algorithms `identity.jwt.algorithms` may name: asymmetric only (a shared HMAC secret would let the
/// gateway, and anyone who reads its config, mint tokens), never `none`.
pub const JWT_ALGORITHMS: &[(&str, jsonwebtoken::Algorithm)] = {
    use jsonwebtoken::Algorithm::*;
    &[
        ("RS256", RS256),
        ("RS384", RS384),
        ("RS512", RS512),
        ("PS256", PS256),
        ("PS384", PS384),
        ("PS512", PS512),
        ("ES256", ES256),
        ("ES384", ES384),
        ("EdDSA", EdDSA),
    ]
};

/// The validated `identity.jwt:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    pub issuer: String,
    /// At least one.
    pub audience: Vec<String>,
    pub jwks: JwksSource,
    /// Extra PEM trust anchor for an `https://` JWKS URL.
    pub jwks_ca_file: Option<PathBuf>,
    /// At least one, each from [`JWT_ALGORITHMS`].
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Claim names copied into the principal (besides `sub`).
    pub claims: Vec<String>,
    pub refresh: Duration,
    pub leeway: Duration,
}

/// Where the JSON Web Key Set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// `https://…`, or `http://` to a loopback address.
    Url(http::Uri),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => write!(f, "{u}"),
        }
    }
}

/// Default admin listener address when the config names none.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// The validated `admin:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Whether `listen` was written in the config: then failing to bind it stops the start; the default
    /// address being taken only logs a warning (an Anthropic config, which has no `admin:`, must start).
    pub explicit: bool,
}

/// Default audit directory when the config names none.
pub const DEFAULT_AUDIT_DIR: &str = "/var/lib/mcp-gateway/audit";

/// How tool arguments go into decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redact {
    Full,
    /// SHA-256 of the canonical arguments, and their size.
    Digest,
    Omit,
}

/// The validated `audit:` block.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub dir: PathBuf,
    /// Whether `dir` was written in the config (for the start-up error message).
    pub dir_configured: bool,
    pub redact: Redact,
    /// Tool-name glob → mode, in file order.
    pub redact_tools: Vec<(String, Redact)>,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
    pub retention: Option<Duration>,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub signing_key_file: Option<PathBuf>,
}

/// The validated `policies:` block.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Sorted by name.
    pub modules: Vec<ModuleSpec>,
    pub cache_dir: Option<PathBuf>,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    Enforce,
    Monitor,
}

#[derive(Debug, Clone)]
pub struct ModuleSpec {
    pub name: String,
    pub path: PathBuf,
    /// Lowercase hex.
    pub sha256: Option<String>,
    /// The settings as JSON text (`{}` when absent).
    pub settings: String,
    pub mode: PolicyMode,
    pub limits: ModuleLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleLimits {
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub fuel: Option<u64>,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits {
            memory_bytes: 16 << 20,
            timeout: Duration::from_millis(50),
            fuel: None,
        }
    }
}

/// Largest `memory_mb` a module may ask for.
pub const MAX_MODULE_MEMORY_MB: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub reload_interval: Duration,
}

/// One `routes:` entry.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The key as written, lowercased: a bare subdomain of `tunnel_domain` or a full host name.
    pub key: String,
    pub upstream: UpstreamUrl,
    /// Module names in evaluation order (resolved against `policies.modules`; `default` applied). Empty when
    /// there is no `policies:` block, or when the route says `policies: []`.
    pub policies: Vec<String>,
    /// The route's own `policies:` as written (`None`: the default chain applies).
    pub chain_written: Option<Vec<String>>,
    pub validate_arguments: bool,
    /// The route's argument redaction, when it overrides `audit.redact`.
    pub redact: Option<Redact>,
    /// Requests without a valid bearer token are refused (401). Only with an `identity:` block.
    pub require_identity: bool,
    /// What a tool definition that differs from its pin does (`on_tool_change:`).
    pub on_tool_change: OnToolChange,
}

/// A route's answer to a tool whose definition changed since it was first seen (see `pins.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnToolChange {
    /// The tool is hidden from listings and its calls refused until an operator accepts the change.
    #[default]
    Hide,
    /// The new definition is accepted at once (and recorded).
    Record,
    /// Every `tools/call` on the route is refused while any change is pending.
    DenyAll,
}

impl OnToolChange {
    pub fn label(self) -> &'static str {
        match self {
            OnToolChange::Hide => "hide",
            OnToolChange::Record => "record",
            OnToolChange::DenyAll => "deny_all",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// `scheme://host:port`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets), lowercase.
    pub host: String,
    pub port: u16,
}

impl UpstreamUrl {
    /// `host:port` as it goes into the upstream `Host` header (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

/// Which upstream addresses may be dialled.
#[derive(Debug, Clone, PartialEq)]
pub enum IpPolicy {
    /// Only addresses inside these networks (IPv4-mapped IPv6 addresses are compared as IPv4).
    Allowed(Vec<IpNet>),
    /// `disable_ip_validation: true`: any address.
    Disabled,
}

impl IpPolicy {
    /// RFC 1918, the default when `allowed_ips` is absent.
    pub fn rfc1918() -> Self {
        IpPolicy::Allowed(
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
                .iter()
                .map(|n| n.parse().expect("static network"))
                .collect(),
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub include_system_cas: bool,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub tls_handshake_timeout: Duration,
    pub request_header_timeout: Duration,
    pub request_body_timeout: Duration,
    pub idle_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            request_header_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(20),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(300),
        }
    }
}

/// Why a config could not be loaded. Every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Syntax {
        path: PathBuf,
        /// Line and column (1-based) where the YAML parser gives one.
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("{path}: `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &Overrides::default())
}

/// Reads and validates a config file, with the command line's `overrides` applied over it.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    validate::from_yaml_with(&text, path, overrides)
}
