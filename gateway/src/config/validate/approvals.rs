//! Validation of the `approvals:` block (see [`crate::approvals`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Validator;
use crate::config::file::FileApprovals;
use crate::config::{
    ApprovalSettings, Approver, ApproverJwt, AuditSettings, ConfigError, DEFAULT_AUDIT_DIR,
    IdentityConfig, Webhook,
};

impl Validator<'_> {
    pub(super) fn approvals(
        &self,
        a: FileApprovals,
        audit: Option<&AuditSettings>,
        identity: Option<&IdentityConfig>,
    ) -> Result<ApprovalSettings, ConfigError> {
        let db = match a.db {
            Some(p) if p.trim().is_empty() => {
                return Err(self.invalid("approvals.db", "is empty: give a file path"));
            }
            Some(p) => PathBuf::from(p),
            None => {
                // Beside the audit directory: /var/lib/mcp-gateway/audit → /var/lib/mcp-gateway/approvals.db.
                let audit_dir = audit
                    .map(|a| a.dir.clone())
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_DIR));
                audit_dir
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .join("approvals.db")
            }
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
                if url.scheme_str() != Some("http") || url.host().is_none() {
                    return Err(self.invalid(
                        "approvals.webhook.url",
                        format!("`{}`: only http://host[:port]/path is supported (put a relay in front of an HTTPS endpoint)", w.url),
                    ));
                }
                let attempts = w.attempts.unwrap_or(5);
                if attempts == 0 {
                    return Err(self.invalid("approvals.webhook.attempts", "must be at least 1"));
                }
                Some(Webhook { url, attempts })
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
            db,
            wait,
            expire,
            grant_ttl,
            grant_uses,
            keepalive,
            poll_interval,
            webhook,
            approvers,
            jwt,
        })
    }
}
