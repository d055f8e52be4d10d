//! The config file as written: serde structs that mirror the YAML 1:1, unknown keys rejected.
//!
//! Anthropic's MCP-tunnel proxy config loads unchanged; our own keys (`limits`, `log_format`, route maps with
//! `upstream:`) sit beside theirs. Nothing here is interpreted: [`super::validate`] turns it into [`super::Config`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `:8080` (Go style: all interfaces), `127.0.0.1:8443`, `[::]:8443`. Default `:8080`.
    pub listen_addr: Option<String>,
    /// `debug | info | warn | error`. Default `info`.
    pub log_level: Option<String>,
    /// Extension: `text | json`. Default `text`.
    pub log_format: Option<String>,
    /// How long to drain in-flight requests on SIGTERM, e.g. `30s`. Default `30s`.
    pub shutdown_timeout: Option<String>,
    /// `abcd1234.tunnel.anthropic.com`: route keys may be bare subdomains of it.
    pub tunnel_domain: Option<String>,
    pub tls: Option<FileTls>,
    #[serde(default)]
    pub routes: FileRoutes,
    pub upstream: Option<FileUpstream>,
    /// Extension: sizes and timeouts.
    pub limits: Option<FileLimits>,
    /// Extension: Wasm policy modules and chains. Absent: every message is allowed (drop-in mode).
    pub policies: Option<FilePolicies>,
    /// Extension: the decision log. Absent: on, in the default directory.
    pub audit: Option<FileAudit>,
    /// Extension: the admin listener (health, readiness, metrics). Absent: on `127.0.0.1:9090`.
    pub admin: Option<FileAdmin>,
    /// Extension: human approval of calls a policy marks "require approval". Absent: such calls are refused.
    pub approvals: Option<FileApprovals>,
    /// Extension: caller identity (JWT bearer tokens). Absent: no validation, every principal is none.
    pub identity: Option<FileIdentity>,
    /// Extension: OpenTelemetry trace export. Absent: no spans are made or exported.
    pub telemetry: Option<FileTelemetry>,
}

/// `telemetry:` — OpenTelemetry trace export (read at start; a reload does not change it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTelemetry {
    pub otlp: Option<FileOtlp>,
}

/// `telemetry.otlp:` — where spans go (OTLP/HTTP, protobuf).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOtlp {
    /// `http://host:port` or `https://host:port` of the OTLP/HTTP receiver (`/v1/traces` is appended unless a
    /// path is given).
    pub endpoint: Option<String>,
    /// PEM file of a CA that signs the receiver's certificate, trusted besides the system's roots (https only).
    pub ca_file: Option<String>,
    /// `service.name` resource attribute. Default `mcp-gateway`.
    pub service_name: Option<String>,
    /// Fraction of new traces sampled, 0.0–1.0. Default 1.0. A sampled incoming `traceparent` is followed.
    pub sample_ratio: Option<f64>,
    /// Extra HTTP headers on every export request (e.g. an API key).
    pub headers: Option<BTreeMap<String, String>>,
    /// Deadline of one export request. Default `10s`.
    pub timeout: Option<String>,
}

/// `approvals:` — hold calls that need a human approval, and who may approve them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApprovals {
    /// SQLite database of approval requests. Default: `approvals.db` beside the audit directory
    /// (`/var/lib/mcp-gateway/approvals.db`). Exclusive with `postgres`.
    pub db: Option<String>,
    /// A PostgreSQL database instead of SQLite, shared by several gateway replicas.
    pub postgres: Option<FilePostgres>,
    /// How long a call waits for a decision before it is answered "pending, retry after approval". Default `30s`.
    pub wait: Option<String>,
    /// How long an approval request can be decided before it expires. Default `1h`.
    pub expire: Option<String>,
    /// How long after the approval its grant lets the identical call through. Default `1h`.
    pub grant_ttl: Option<String>,
    /// How many identical calls one approval lets through. Default 1.
    pub grant_uses: Option<u32>,
    /// Interval of SSE keep-alives (and progress notifications) to a held client. Default `5s`.
    pub keepalive: Option<String>,
    /// How often a held call re-reads its request (decisions made by another replica). Default `500ms`.
    pub poll_interval: Option<String>,
    /// Optional webhook told about every new approval request (JSON POST, retried).
    pub webhook: Option<FileWebhook>,
    /// Who may approve, each with a bearer token (given as its SHA-256, or in a file).
    #[serde(default)]
    pub approvers: Vec<FileApprover>,
    /// Optional: let the caller confirm some calls themselves, in the protocol (elicitation /
    /// `input_required`), when their client can. Absent: every approval goes to the operators.
    pub caller_confirmation: Option<FileCallerConfirmation>,
    /// Approvers with JWTs: how their tokens are verified (the keys of `identity.jwt`). Default: the
    /// `identity.jwt` block. Only used together with `role`.
    pub jwt: Option<FileJwt>,
    /// The claim (and value) a JWT must carry to approve. Setting it turns JWT approvers on.
    pub role: Option<FileApproverRole>,
}

/// `approvals.caller_confirmation:` — which calls the caller may confirm themselves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCallerConfirmation {
    /// Tool name globs (`*`, `?`) whose "require approval" the caller may satisfy. Required, non-empty.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Route keys where this applies. Default: every route.
    pub routes: Option<Vec<String>>,
    /// A file of at least 32 bytes: the HMAC key of `requestState` (2026-07-28). Default: a random key made
    /// at start (states then do not survive a restart and are not accepted by other replicas).
    pub secret_file: Option<String>,
    /// How long a confirmation request stays answerable (legacy: how long the call waits for the answer;
    /// 2026-07-28: lifetime of the `requestState`). Default `5m`.
    pub expire: Option<String>,
}

/// `approvals.postgres:` — the shared approval database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePostgres {
    /// Connection string, `postgres://user:password@host:5432/dbname?sslmode=require` (or libpq's
    /// `key=value` form). Prefer `url_file` when it holds a password.
    pub url: Option<String>,
    /// Or: a file holding the connection string (trailing whitespace ignored), e.g. a mounted Secret.
    pub url_file: Option<String>,
    /// Extra PEM root certificates for TLS to the server (`sslmode=require`); the system's are always trusted.
    pub ca_file: Option<String>,
}

/// `approvals.role:` — e.g. `{ claim: roles, value: mcp-approver }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApproverRole {
    /// Claim name. Default `roles`.
    pub claim: Option<String>,
    /// The value the claim must be, or contain (a list, or a space-separated string like `scope`).
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    /// `https://host/path` or `http://host:port/path`.
    pub url: String,
    /// Attempts before giving up (with exponential backoff from 500ms). Default 5.
    pub attempts: Option<u32>,
    /// Extra PEM root certificates for an `https` webhook (the system's are always trusted).
    pub ca_file: Option<String>,
    /// A file holding a shared secret (at least 16 bytes): every notification then carries
    /// `X-MCP-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
    pub secret_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApprover {
    /// The approver's identity: shown in records and compared with the caller's principal.
    pub name: String,
    /// Hex SHA-256 of the approver's bearer token (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: Option<String>,
    /// Or: a file holding the token itself (trailing whitespace ignored).
    pub token_file: Option<String>,
}

/// `identity:` — who is calling, from the `Authorization: Bearer` token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIdentity {
    pub jwt: Option<FileJwt>,
    /// Whether routes require a valid token unless they say otherwise (`require_identity:`). Default false.
    pub require: Option<bool>,
    /// Pass the caller's `Authorization` header to the upstream unchanged. Default true.
    pub forward_authorization: Option<bool>,
    /// Absolute URL of the OAuth protected resource metadata (RFC 9728) named in 401 challenges. Default:
    /// `https://<host>/.well-known/oauth-protected-resource<path>` on the host the client used (served by the
    /// upstream through the gateway's discovery pass-through).
    pub resource_metadata: Option<String>,
}

/// `identity.jwt:` — how tokens are verified.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwt {
    /// Required `iss`, exactly as the IdP writes it.
    pub issuer: Option<String>,
    /// Accepted `aud` value(s): one string or a list.
    pub audience: Option<OneOrMany>,
    /// `https://…` JWKS endpoint (`http://` only on loopback, for tests).
    pub jwks_url: Option<String>,
    /// JWKS file (re-read when it changes).
    pub jwks_file: Option<String>,
    /// Extra trust anchor (PEM) for an `https://` `jwks_url`, besides the system CAs.
    pub jwks_ca_file: Option<String>,
    /// Allowed `alg` values. Default `[RS256, ES256, EdDSA]`; asymmetric ones only.
    pub algorithms: Option<Vec<String>>,
    /// Claims copied into the principal besides `sub`, e.g. `[email, groups]`.
    pub claims: Option<Vec<String>>,
    /// How often the key set is refreshed. Default `10m`.
    pub refresh: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`. Default `30s`, at most `5m`.
    pub leeway: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `admin:` — the plaintext HTTP listener for `/healthz`, `/readyz` and `/metrics`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// `true` turns the admin listener off.
    pub disabled: Option<bool>,
    /// Address to listen on, e.g. `127.0.0.1:9090` (the default). It has no authentication: keep it on
    /// loopback or a private interface.
    pub listen: Option<String>,
}

/// `audit:` — where and how decisions are recorded.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAudit {
    /// `true` turns auditing off (said loudly at start).
    pub disabled: Option<bool>,
    /// Directory of the log segments. Default `/var/lib/mcp-gateway/audit`.
    pub dir: Option<String>,
    /// How tool arguments are recorded: `full`, `digest` (SHA-256 and size; default) or `omit`.
    pub redact: Option<String>,
    /// Per-tool overrides of `redact`, by tool-name glob.
    pub redact_tools: Option<BTreeMap<String, String>>,
    pub segment_max_mb: Option<u64>,
    /// e.g. `1h`.
    pub segment_max_age: Option<String>,
    /// Delete segments older than this, e.g. `90d`. Default: keep everything.
    pub retention: Option<String>,
    /// A checkpoint (record count + head hash, signed if a key is set) every this many records…
    pub checkpoint_every: Option<u64>,
    /// …or this often.
    pub checkpoint_interval: Option<String>,
    /// Ed25519 private key (PKCS#8 PEM) signing the checkpoints.
    pub signing_key_file: Option<String>,
}

/// `policies:` — named modules, and the chain for routes that name none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicies {
    #[serde(default)]
    pub modules: BTreeMap<String, FileModule>,
    /// Chain for routes without their own `policies:`.
    pub default: Option<Vec<String>>,
    /// Where compiled modules are cached (default: a `mcp-gateway` folder in the system temp directory).
    pub cache_dir: Option<String>,
    /// How many evaluations may run at once (default: the number of CPUs).
    pub max_concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModule {
    pub path: String,
    /// Hex SHA-256 the file must have.
    pub sha256: Option<String>,
    /// Any YAML value; handed to the policy as JSON.
    pub settings: Option<serde_json::Value>,
    /// `enforce` (default) or `monitor` (log the would-be decision, allow).
    pub mode: Option<String>,
    pub limits: Option<FileModuleLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModuleLimits {
    /// Linear memory cap. Default 16.
    pub memory_mb: Option<u64>,
    /// Wall-clock deadline per evaluation. Default 50.
    pub timeout_ms: Option<u64>,
    /// Optional deterministic CPU budget (wasmtime fuel units).
    pub fuel: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Extension: how often the certificate files are polled for changes, e.g. `10s`.
    pub reload_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub allowed_ips: Option<Vec<String>>,
    pub disable_ip_validation: Option<bool>,
    pub tls: Option<FileUpstreamTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTls {
    pub ca_file: Option<String>,
    pub include_system_cas: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Largest POST body accepted, in bytes. Default 4 MiB.
    pub max_body_bytes: Option<u64>,
    /// TLS handshake deadline. Default `10s`.
    pub tls_handshake_timeout: Option<String>,
    /// Deadline for a client to send a request's headers (slowloris guard). Default `10s`.
    pub request_header_timeout: Option<String>,
    /// Deadline for a client to send a whole request body. Default `30s`.
    pub request_body_timeout: Option<String>,
    /// An HTTP/2 connection with no answer to a keep-alive ping for this long is closed. Default `20s`.
    pub idle_timeout: Option<String>,
    /// TCP (and TLS) connect deadline towards an upstream. Default `5s`.
    pub upstream_connect_timeout: Option<String>,
    /// Deadline for an upstream to start answering (status line and headers). Streams are never cut. Default `300s`.
    pub upstream_response_timeout: Option<String>,
}

/// `routes:` — a map of host → upstream. Written as a YAML list it fails with an example of the right shape.
#[derive(Debug, Default)]
pub struct FileRoutes(pub BTreeMap<String, FileRoute>);

/// One route value: Anthropic's `scheme://host:port` string, or our map form with `upstream:` plus our keys.
#[derive(Debug, Default)]
pub struct FileRoute {
    pub upstream: String,
    /// This route's policy chain (names from `policies.modules`); `[]` explicitly allows everything.
    pub policies: Option<Vec<String>>,
    /// Validate `tools/call` arguments against the tool's `inputSchema` (default true).
    pub validate_arguments: Option<bool>,
    /// This route's `audit.redact` (`full`, `digest`, `omit`).
    pub redact: Option<String>,
    /// Require a valid bearer token on this route (default: `identity.require`).
    pub require_identity: Option<bool>,
    /// What a changed tool definition does (`hide`, `record`, `deny_all`; default `hide`).
    pub on_tool_change: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRouteMap {
    upstream: String,
    policies: Option<Vec<String>>,
    validate_arguments: Option<bool>,
    redact: Option<String>,
    require_identity: Option<bool>,
    on_tool_change: Option<String>,
}

pub const ROUTES_EXAMPLE: &str = "routes must be a map of host → upstream URL, for example:\n  routes:\n    docs: http://10.0.12.7:9000\n    crm: { upstream: http://10.0.12.8:9000 }";

impl<'de> Deserialize<'de> for FileRoutes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileRoutes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of host → upstream URL")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileRoutes, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: FileRoute = map.next_value()?;
                    if out.insert(key.clone(), value).is_some() {
                        return Err(de::Error::custom(format!("route `{key}` is defined twice")));
                    }
                }
                Ok(FileRoutes(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<FileRoutes, A::Error> {
                Err(de::Error::custom(format!(
                    "`routes` is a list, but {ROUTES_EXAMPLE}"
                )))
            }
            fn visit_unit<E: de::Error>(self) -> Result<FileRoutes, E> {
                Ok(FileRoutes::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FileRoute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileRoute;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an upstream URL `scheme://host:port`, or a map with `upstream:`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileRoute, E> {
                Ok(FileRoute {
                    upstream: v.to_owned(),
                    ..FileRoute::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRoute, A::Error> {
                let m = FileRouteMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FileRoute {
                    upstream: m.upstream,
                    policies: m.policies,
                    validate_arguments: m.validate_arguments,
                    redact: m.redact,
                    require_identity: m.require_identity,
                    on_tool_change: m.on_tool_change,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<FileRoute, A::Error> {
                Err(de::Error::custom(format!(
                    "a route value is a list, but {ROUTES_EXAMPLE}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}
