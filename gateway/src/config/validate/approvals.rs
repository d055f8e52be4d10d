//! Validation of the `approvals:` block (see [`crate::approvals`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Validator;
use crate::config::file::{FileApprovals, FileCallerConfirmation, FilePostgres};
use crate::config::{
    ApprovalSettings, Approver, ApproverJwt, AuditSettings, CallerConfirmation, ConfigError,
    DEFAULT_AUDIT_DIR, IdentityConfig, PostgresSettings, RouteSpec, StoreSettings, Webhook,
};

impl Validator<'_> {
    pub(super) fn approvals(
        &self,
        a: FileApprovals,
        audit: Option<&AuditSettings>,
        routes: &[RouteSpec],
        identity: Option<&IdentityConfig>,
    ) -> Result<ApprovalSettings, ConfigError> {
        let store = match (a.db, a.postgres) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "approvals.postgres",
                    "and `approvals.db` are both set: `db` is the embedded SQLite file, `postgres` the database \
                     shared by replicas; give one",
                ));
            }
            (None, Some(pg)) => StoreSettings::Postgres(self.postgres(pg)?),
            (Some(p), None) if p.trim().is_empty() => {
                return Err(self.invalid("approvals.db", "is empty: give a file path"));
            }
            (Some(p), None) => StoreSettings::Sqlite(PathBuf::from(p)),
            (None, None) => StoreSettings::Sqlite({
                // Beside the audit directory: /var/lib/mcp-gateway/audit → /var/lib/mcp-gateway/approvals.db.
                let audit_dir = audit
                    .map(|a| a.dir.clone())
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_DIR));
                audit_dir
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .join("approvals.db")
            }),
        };
        let positive = |field: &str, s: Option<&str>, default: Duration| {
            let d = match s {
                None => default,
                Some(_) => self.duration(field, s, 0)?,
            };
            if d.is_zero() {
                return Err(self.invalid(field, "must be longer than 0s"));
            }
            Ok(d)
        };
        let wait = positive("approvals.wait", a.wait.as_deref(), Duration::from_secs(30))?;
        let expire = positive(
            "approvals.expire",
            a.expire.as_deref(),
            Duration::from_secs(3600),
        )?;
        if expire < wait {
            return Err(self.invalid(
                "approvals.expire",
                format!(
                    "({expire:?}) is shorter than `approvals.wait` ({wait:?}): a held call would outlive its request"
                ),
            ));
        }
        let grant_ttl = positive(
            "approvals.grant_ttl",
            a.grant_ttl.as_deref(),
            Duration::from_secs(3600),
        )?;
        let keepalive = positive(
            "approvals.keepalive",
            a.keepalive.as_deref(),
            Duration::from_secs(5),
        )?;
        let poll_interval = positive(
            "approvals.poll_interval",
            a.poll_interval.as_deref(),
            Duration::from_millis(500),
        )?;
        let grant_uses = a.grant_uses.unwrap_or(1);
        if grant_uses == 0 {
            return Err(self.invalid("approvals.grant_uses", "must be at least 1"));
        }
        let webhook = match a.webhook {
            None => None,
            Some(w) => {
                let url: http::Uri = w.url.parse().map_err(|e| {
                    self.invalid(
                        "approvals.webhook.url",
                        format!("`{}` is not a URL ({e})", w.url),
                    )
                })?;
                if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
                    return Err(self.invalid(
                        "approvals.webhook.url",
                        format!(
                            "`{}`: give https://host[:port]/path or http://host[:port]/path",
                            w.url
                        ),
                    ));
                }
                let attempts = w.attempts.unwrap_or(5);
                if attempts == 0 {
                    return Err(self.invalid("approvals.webhook.attempts", "must be at least 1"));
                }
                let ca_file = match w.ca_file {
                    None => None,
                    Some(f) => {
                        if url.scheme_str() != Some("https") {
                            return Err(self.invalid(
                                "approvals.webhook.ca_file",
                                "is only used with an https:// url",
                            ));
                        }
                        std::fs::metadata(&f).map_err(|e| {
                            self.invalid("approvals.webhook.ca_file", format!("{f}: {e}"))
                        })?;
                        Some(PathBuf::from(f))
                    }
                };
                let secret = match w.secret_file {
                    None => None,
                    Some(f) => {
                        let s = std::fs::read(&f).map_err(|e| {
                            self.invalid("approvals.webhook.secret_file", format!("{f}: {e}"))
                        })?;
                        let s = s.trim_ascii_end().to_vec();
                        if s.len() < 16 {
                            return Err(self.invalid(
                                "approvals.webhook.secret_file",
                                format!("{f} holds fewer than 16 bytes"),
                            ));
                        }
                        Some(s)
                    }
                };
                Some(Webhook {
                    url,
                    attempts,
                    ca_file,
                    secret,
                })
            }
        };
        let mut approvers: Vec<Approver> = Vec::with_capacity(a.approvers.len());
        for (i, ap) in a.approvers.into_iter().enumerate() {
            let field = format!("approvals.approvers[{i}]");
            let name = ap.name.trim().to_owned();
            if name.is_empty() {
                return Err(self.invalid(&format!("{field}.name"), "is empty"));
            }
            let token_sha256: [u8; 32] = match (ap.token_sha256, ap.token_file) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(self.invalid(
                        &field,
                        "give exactly one of `token_sha256` (hex SHA-256 of the token) and `token_file`",
                    ));
                }
                (Some(hex_digest), None) => {
                    let bytes = hex::decode(hex_digest.trim())
                        .ok()
                        .filter(|b| b.len() == 32);
                    bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
                        self.invalid(
                            &format!("{field}.token_sha256"),
                            "is not 64 hex digits: use `printf %s \"$TOKEN\" | sha256sum`",
                        )
                    })?
                }
                (None, Some(file)) => {
                    let token = std::fs::read_to_string(&file).map_err(|e| {
                        self.invalid(
                            &format!("{field}.token_file"),
                            format!("cannot read {file}: {e}"),
                        )
                    })?;
                    let token = token.trim_end();
                    if token.len() < 16 {
                        return Err(self.invalid(
                            &format!("{field}.token_file"),
                            format!("{file} holds a token shorter than 16 characters"),
                        ));
                    }
                    Sha256::digest(token.as_bytes()).into()
                }
            };
            if approvers.iter().any(|o| o.name == name) {
                return Err(self.invalid(
                    &format!("{field}.name"),
                    format!("`{name}` is listed twice"),
                ));
            }
            if approvers.iter().any(|o| o.token_sha256 == token_sha256) {
                return Err(self.invalid(
                    &field,
                    format!("`{name}` has the same token as another approver"),
                ));
            }
            approvers.push(Approver { name, token_sha256 });
        }
        let caller_confirmation = match a.caller_confirmation {
            Some(c) => Some(self.caller_confirmation(c, routes)?),
            None => None,
        };
        let jwt = match (a.role, a.jwt) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(self.invalid(
                    "approvals.jwt",
                    "is set but `approvals.role` is not: say which claim makes a token holder an approver, \
                     for example `role: { claim: roles, value: mcp-approver }`",
                ));
            }
            (Some(role), jwt) => {
                let mut jwt = match (jwt, identity) {
                    (Some(j), _) => self.jwt(j, "approvals.jwt")?,
                    (None, Some(i)) => i.jwt.clone(),
                    (None, None) => {
                        return Err(self.invalid(
                            "approvals.role",
                            "needs a way to verify approvers' tokens: an `approvals.jwt` block (issuer, audience, \
                             jwks_url or jwks_file) or an `identity.jwt` block to share",
                        ));
                    }
                };
                let role_claim = role.claim.unwrap_or_else(|| "roles".into());
                if role_claim.trim().is_empty() || role_claim == "sub" {
                    return Err(self.invalid(
                        "approvals.role.claim",
                        "must name a claim such as `roles` or `groups`",
                    ));
                }
                if role.value.trim().is_empty() {
                    return Err(self.invalid("approvals.role.value", "is empty"));
                }
                jwt.claims = vec![role_claim.clone()];
                Some(ApproverJwt {
                    jwt,
                    role_claim,
                    role: role.value,
                })
            }
        };
        Ok(ApprovalSettings {
            store,
            wait,
            expire,
            grant_ttl,
            grant_uses,
            keepalive,
            poll_interval,
            webhook,
            approvers,
            caller_confirmation,
            jwt,
        })
    }

    fn caller_confirmation(
        &self,
        c: FileCallerConfirmation,
        routes: &[RouteSpec],
    ) -> Result<CallerConfirmation, ConfigError> {
        const F: &str = "approvals.caller_confirmation";
        if c.tools.is_empty() || c.tools.iter().any(|t| t.trim().is_empty()) {
            return Err(self.invalid(
                &format!("{F}.tools"),
                "must list the tool globs the caller may confirm, e.g. [\"delete_*\"]",
            ));
        }
        if let Some(rs) = &c.routes
            && let Some(unknown) = rs.iter().find(|r| !routes.iter().any(|s| &s.key == *r))
        {
            return Err(self.invalid(
                &format!("{F}.routes"),
                format!("`{unknown}` is not a configured route"),
            ));
        }
        let secret = match c.secret_file {
            None => None,
            Some(file) => {
                let bytes = std::fs::read(&file).map_err(|e| {
                    self.invalid(
                        &format!("{F}.secret_file"),
                        format!("cannot read {file}: {e}"),
                    )
                })?;
                if bytes.len() < 32 {
                    return Err(self.invalid(
                        &format!("{F}.secret_file"),
                        format!("{file} holds {} bytes; it needs at least 32 (e.g. `head -c 32 /dev/urandom > {file}`)", bytes.len()),
                    ));
                }
                Some(bytes)
            }
        };
        let expire = match c.expire.as_deref() {
            None => Duration::from_secs(300),
            s => self.duration(&format!("{F}.expire"), s, 0)?,
        };
        if expire.is_zero() || expire > Duration::from_secs(3600) {
            return Err(self.invalid(
                &format!("{F}.expire"),
                "must be between 1s and 1h (the caller answers while they wait)",
            ));
        }
        Ok(CallerConfirmation {
            tools: c.tools,
            routes: c.routes,
            secret,
            expire,
        })
    }
}

impl Validator<'_> {
    /// `approvals.postgres`: the connection string (inline or from a file) parsed here, so a typo stops the
    /// start with the field named; the string itself never appears in a message (it may hold a password).
    fn postgres(&self, pg: FilePostgres) -> Result<PostgresSettings, ConfigError> {
        let (field, url) = match (pg.url, pg.url_file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(self.invalid(
                    "approvals.postgres",
                    "give exactly one of `url` (the connection string) and `url_file` (a file holding it)",
                ));
            }
            (Some(url), None) => ("approvals.postgres.url", url),
            (None, Some(file)) => {
                let url = std::fs::read_to_string(&file).map_err(|e| {
                    self.invalid(
                        "approvals.postgres.url_file",
                        format!("cannot read {file}: {e}"),
                    )
                })?;
                ("approvals.postgres.url_file", url)
            }
        };
        let url = url.trim().to_owned();
        if url.is_empty() {
            return Err(self.invalid(field, "is empty: give a connection string, e.g. postgres://gateway@db:5432/approvals?sslmode=require"));
        }
        if url.contains("sslmode=verify-full") || url.contains("sslmode=verify-ca") {
            return Err(self.invalid(
                field,
                "`sslmode=verify-full`/`verify-ca`: write `sslmode=require` — the gateway always verifies the server's \
                 certificate and name (system roots plus `approvals.postgres.ca_file`)",
            ));
        }
        let parsed: tokio_postgres::Config = url.parse().map_err(|e| {
            self.invalid(
                field,
                format!("is not a PostgreSQL connection string ({e}); expected postgres://user:password@host:5432/dbname?sslmode=require"),
            )
        })?;
        if parsed.get_hosts().is_empty() {
            return Err(self.invalid(field, "names no host"));
        }
        if parsed.get_dbname().is_none() {
            return Err(self.invalid(field, "names no database (postgres://…/dbname)"));
        }
        let ca_file = match pg.ca_file {
            None => None,
            Some(f) => {
                let pem = std::fs::read(&f).map_err(|e| {
                    self.invalid(
                        "approvals.postgres.ca_file",
                        format!("cannot read {f}: {e}"),
                    )
                })?;
                use rustls_pki_types::pem::PemObject;
                let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.invalid("approvals.postgres.ca_file", format!("{f}: {e}")))?;
                if certs.is_empty() {
                    return Err(self.invalid(
                        "approvals.postgres.ca_file",
                        format!("{f} holds no PEM certificate"),
                    ));
                }
                Some(PathBuf::from(f))
            }
        };
        Ok(PostgresSettings {
            target: describe(&parsed),
            url,
            ca_file,
        })
    }
}

/// `user@host:port/dbname sslmode=…` — what the connection string points at, without its password.
fn describe(c: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::{Host, SslMode};
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = c
                .get_ports()
                .get(i)
                .or(c.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(h) => format!("{h}:{port}"),
                Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    let sslmode = match c.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    };
    format!(
        "{}@{}/{} sslmode={sslmode}",
        c.get_user().unwrap_or("-"),
        hosts.join(","),
        c.get_dbname().unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests;
