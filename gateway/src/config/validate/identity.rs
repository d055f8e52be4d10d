//! Validation of the `identity:` block and each route's `require_identity` (see [`crate::identity`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Validator, nearest};
use crate::config::{
    ConfigError, IdentityConfig, JWT_ALGORITHMS, JwksSource, JwtSettings, RouteSpec,
};

/// The shape of a minimal `identity:` block, quoted in messages.
const JWT_EXAMPLE: &str = "for example\n  identity:\n    jwt:\n      issuer: https://idp.example.com/\n      audience: mcp-gateway\n      jwks_url: https://idp.example.com/.well-known/jwks.json";

impl Validator<'_> {
    /// `identity:`, and each route's `require_identity` (written, or the block's `require` default).
    pub(super) fn identity(
        &self,
        i: Option<crate::config::file::FileIdentity>,
        routes: &mut [RouteSpec],
        require_written: &[(String, Option<bool>)],
    ) -> Result<Option<IdentityConfig>, ConfigError> {
        let Some(i) = i else {
            if let Some((key, _)) = require_written.iter().find(|(_, r)| *r == Some(true)) {
                return Err(self.invalid(
                    &format!("routes.{key}.require_identity"),
                    format!("is true, but there is no `identity:` block saying how tokens are verified: {JWT_EXAMPLE}"),
                ));
            }
            return Ok(None);
        };
        let jwt = i
            .jwt
            .ok_or_else(|| self.invalid("identity.jwt", format!("missing: {JWT_EXAMPLE}")))?;
        let jwt = self.jwt(jwt, "identity.jwt")?;
        let default = i.require.unwrap_or(false);
        for r in routes.iter_mut() {
            r.require_identity = require_written
                .iter()
                .find(|(k, _)| *k == r.key)
                .and_then(|(_, w)| *w)
                .unwrap_or(default);
        }
        let resource_metadata = match i.resource_metadata {
            Some(u) => {
                let ok = u.parse::<http::Uri>().ok().is_some_and(|uri| {
                    matches!(uri.scheme_str(), Some("https" | "http")) && uri.host().is_some()
                });
                if !ok || u.contains('"') {
                    return Err(self.invalid(
                        "identity.resource_metadata",
                        format!("`{u}` is not an absolute URL such as https://mcp.example.com/.well-known/oauth-protected-resource"),
                    ));
                }
                Some(u)
            }
            None => None,
        };
        Ok(Some(IdentityConfig {
            jwt,
            forward_authorization: i.forward_authorization.unwrap_or(true),
            resource_metadata,
        }))
    }

    pub(super) fn jwt(
        &self,
        j: crate::config::file::FileJwt,
        prefix: &str,
    ) -> Result<JwtSettings, ConfigError> {
        use crate::config::file::OneOrMany;
        let issuer = match j.issuer {
            Some(s) if !s.trim().is_empty() => s,
            _ => {
                return Err(self.invalid(
                    &format!("{prefix}.issuer"),
                    format!("missing: give the `iss` your identity provider writes into tokens; {JWT_EXAMPLE}"),
                ));
            }
        };
        let audience = match j.audience {
            Some(OneOrMany::One(a)) => vec![a],
            Some(OneOrMany::Many(list)) => list,
            None => Vec::new(),
        };
        if audience.is_empty() || audience.iter().any(|a| a.trim().is_empty()) {
            return Err(self.invalid(
                &format!("{prefix}.audience"),
                "missing or empty: give the `aud` tokens for this gateway carry (a string or a list);                  without it a token issued for any other service would be accepted",
            ));
        }
        let jwks = match (j.jwks_url, j.jwks_file) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    &format!("{prefix}.jwks_url"),
                    "`jwks_url` and `jwks_file` are mutually exclusive: keep one",
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    prefix,
                    format!("needs `jwks_url` or `jwks_file` (the keys tokens are signed with); {JWT_EXAMPLE}"),
                ));
            }
            (None, Some(f)) => JwksSource::File(PathBuf::from(f)),
            (Some(u), None) => JwksSource::Url(self.jwks_url(&u, prefix)?),
        };
        let algorithms = match j.algorithms {
            None => vec![
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::Algorithm::EdDSA,
            ],
            Some(list) if list.is_empty() => {
                return Err(self.invalid(
                    &format!("{prefix}.algorithms"),
                    "is empty, so no token could be accepted: list e.g. [RS256, ES256], or remove it for the default",
                ));
            }
            Some(list) => list
                .iter()
                .map(|name| self.jwt_algorithm(name, prefix))
                .collect::<Result<_, _>>()?,
        };
        let claims = j.claims.unwrap_or_default();
        if let Some(c) = claims.iter().find(|c| c.trim().is_empty() || *c == "sub") {
            return Err(self.invalid(
                &format!("{prefix}.claims"),
                format!("`{c}`: list claim names such as email, groups (`sub` is always the principal's subject)"),
            ));
        }
        let refresh = self.duration(&format!("{prefix}.refresh"), j.refresh.as_deref(), 600)?;
        if refresh < Duration::from_secs(10) {
            return Err(self.invalid(&format!("{prefix}.refresh"), "must be at least 10s"));
        }
        let leeway = self.duration(&format!("{prefix}.leeway"), j.leeway.as_deref(), 30)?;
        if leeway > Duration::from_secs(300) {
            return Err(self.invalid(
                &format!("{prefix}.leeway"),
                "must be at most 5m: it lets expired tokens through for that long",
            ));
        }
        Ok(JwtSettings {
            issuer,
            audience,
            jwks,
            jwks_ca_file: j.jwks_ca_file.map(PathBuf::from),
            algorithms,
            claims,
            refresh,
            leeway,
        })
    }

    fn jwt_algorithm(
        &self,
        name: &str,
        prefix: &str,
    ) -> Result<jsonwebtoken::Algorithm, ConfigError> {
        if let Some((_, a)) = JWT_ALGORITHMS.iter().find(|(n, _)| *n == name) {
            return Ok(*a);
        }
        let known = JWT_ALGORITHMS.iter().map(|(n, _)| *n);
        let why = if name.eq_ignore_ascii_case("none") {
            "unsigned tokens are never accepted".to_owned()
        } else if name.to_ascii_uppercase().starts_with("HS") {
            "shared-secret (HMAC) algorithms are not supported: whoever holds the secret can mint tokens;              use your identity provider's asymmetric keys (RS256, ES256, EdDSA)"
                .to_owned()
        } else {
            let hint = nearest(name, known.clone())
                .map(|k| format!(" — did you mean `{k}`?"))
                .unwrap_or_default();
            format!(
                "is not one of {}{hint}",
                known.collect::<Vec<_>>().join(", ")
            )
        };
        Err(self.invalid(&format!("{prefix}.algorithms"), format!("`{name}`: {why}")))
    }

    fn jwks_url(&self, u: &str, prefix: &str) -> Result<http::Uri, ConfigError> {
        let bad = |why: &str| {
            self.invalid(
                &format!("{prefix}.jwks_url"),
                format!("`{u}` {why}; write e.g. https://idp.example.com/.well-known/jwks.json"),
            )
        };
        let uri: http::Uri = u.parse().map_err(|_| bad("is not a URL"))?;
        let host = uri.host().ok_or_else(|| bad("has no host"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") => {
                let h = host.trim_start_matches('[').trim_end_matches(']');
                let loopback =
                    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
                if !loopback {
                    return Err(bad(
                        "uses http://, which anyone on the path could answer with their own keys: use https://                          (http:// is only accepted to a loopback address)",
                    ));
                }
            }
            _ => return Err(bad("is not an https:// URL")),
        }
        Ok(uri)
    }
}
