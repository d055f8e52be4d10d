//! Stage 2b — identity: who is calling, from the `Authorization: Bearer` JWT, checked against the configured
//! issuer, audience, algorithms and key set ([`jwks`]).
//!
//! Runs right after routing (the route says whether a token is required) and before anything else looks at
//! the request, so a refused caller costs no DNS lookup, no body read and never reaches the upstream. A
//! [`Principal`] has private fields: only [`Verifier::authenticate`] makes one, so whatever policies and
//! audit records see as the caller was verified here.
//!
//! Outcomes:
//! - no `Authorization: Bearer` header → anonymous (refused with 401 on routes that require identity);
//! - a valid token → the principal (`sub` + the configured claims);
//! - a token that is present but invalid → refused with 401 on *every* route, also those that do not require
//!   identity: a caller who presents a credential that fails (expired, wrong audience, forged) is not
//!   silently downgraded to anonymous, which would hide misconfigured clients and let a stale or forged
//!   token still act (anonymously) where anonymous access is allowed;
//! - the key set cannot be obtained → refused (503): the gateway cannot tell, so it does not guess.

pub mod jwks;

use std::sync::Arc;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::config::{IdentityConfig, JwtSettings};
pub use jwks::{JwksCache, JwksError};

/// The authenticated caller: the token's subject and the claims the config selects.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    subject: String,
    claims: Map<String, Value>,
}

impl Principal {
    /// The token's `sub`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The selected claims (only those present in the token).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// Why a request carries no usable identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no bearer token: this route requires identity")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("malformed token: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("token algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(Algorithm),
    #[error("no key in the key set matches the token (kid {kid:?})")]
    UnknownKey { kid: Option<String> },
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("the token has no string `sub` claim")]
    NoSubject,
    #[error("cannot verify tokens: {0}")]
    Jwks(#[from] JwksError),
}

impl IdentityError {
    /// Short machine-readable reason (logs, metrics, the error body).
    pub fn kind(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind as K;
        match self {
            IdentityError::Missing => "token_missing",
            IdentityError::Jwks(_) => "identity_unavailable",
            IdentityError::Invalid(e) => match e.kind() {
                K::ExpiredSignature => "token_expired",
                K::ImmatureSignature => "token_not_yet_valid",
                K::InvalidAudience => "token_wrong_audience",
                K::InvalidIssuer => "token_wrong_issuer",
                K::InvalidSignature => "token_bad_signature",
                _ => "token_invalid",
            },
            _ => "token_invalid",
        }
    }

    /// What the caller is told in `error_description` (no key ids or internals).
    pub fn description(&self) -> &'static str {
        match self.kind() {
            "token_missing" => "a bearer token is required",
            "token_expired" => "the token has expired",
            "token_not_yet_valid" => "the token is not valid yet",
            "token_wrong_audience" => "the token is not issued for this resource",
            "token_wrong_issuer" => "the token is not issued by the trusted issuer",
            "token_bad_signature" => "the token signature is invalid",
            _ => "the token is invalid",
        }
    }
}

/// A request refused by the identity stage, with where the client finds how to get a token.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Unauthenticated {
    /// Absolute URL of the OAuth protected resource metadata (RFC 9728) for the `WWW-Authenticate` challenge.
    pub resource_metadata: String,
    #[source]
    pub error: IdentityError,
}

/// The protected resource metadata URL for a request to `host` (as the client wrote it, port included)
/// and `path`: RFC 9728 §3.1 inserts the well-known segment between host and path.
pub fn resource_metadata_url(host: &str, path: &str) -> String {
    let path = if path == "/" { "" } else { path };
    format!("https://{host}/.well-known/oauth-protected-resource{path}")
}

/// Verifies bearer tokens for one generation of the config; its key cache may outlive it (see
/// [`Verifier::inherit_keys`]).
#[derive(Debug)]
pub struct Verifier {
    jwt: JwtSettings,
    keys: Arc<JwksCache>,
    forward_authorization: bool,
    resource_metadata: Option<String>,
}

impl Verifier {
    pub fn new(cfg: &IdentityConfig) -> Verifier {
        Verifier {
            keys: Arc::new(JwksCache::new(
                cfg.jwt.jwks.clone(),
                cfg.jwt.jwks_ca_file.clone(),
                cfg.jwt.refresh,
            )),
            jwt: cfg.jwt.clone(),
            forward_authorization: cfg.forward_authorization,
            resource_metadata: cfg.resource_metadata.clone(),
        }
    }

    /// Keeps `previous`'s fetched keys when the key source is the same (a reload does not refetch).
    pub fn inherit_keys(&mut self, previous: &Verifier) {
        if previous.keys.same_source(&self.keys) {
            self.keys = previous.keys.clone();
        }
    }

    pub fn keys(&self) -> &Arc<JwksCache> {
        &self.keys
    }

    pub fn forward_authorization(&self) -> bool {
        self.forward_authorization
    }

    /// The configured protected resource metadata URL, if any.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.resource_metadata.as_deref()
    }

    /// The caller's identity: `Ok(None)` when no bearer token was sent.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Principal>, IdentityError> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = bearer_token(value).ok_or(IdentityError::NotBearer)?;
        self.verify(token).await.map(Some)
    }

    /// Verifies one compact JWS.
    pub async fn verify(&self, token: &str) -> Result<Principal, IdentityError> {
        let header = jsonwebtoken::decode_header(token).map_err(IdentityError::Malformed)?;
        if !self.jwt.algorithms.contains(&header.alg) {
            return Err(IdentityError::AlgorithmNotAllowed(header.alg));
        }
        let candidates = self
            .keys
            .keys_for(header.kid.as_deref(), header.alg)
            .await?;
        if candidates.is_empty() {
            return Err(IdentityError::UnknownKey { kid: header.kid });
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.jwt.issuer]);
        validation.set_audience(self.jwt.audience.as_slice());
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.jwt.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut last = None;
        for key in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
                Ok(data) => return self.principal(data.claims),
                // Another key (same kid-less family) may still verify it; every other error is final.
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    last = Some(e)
                }
                Err(e) => return Err(IdentityError::Invalid(e)),
            }
        }
        Err(IdentityError::Invalid(
            last.expect("at least one key was tried"),
        ))
    }

    fn principal(&self, mut claims: Map<String, Value>) -> Result<Principal, IdentityError> {
        let subject = match claims.remove("sub") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(IdentityError::NoSubject),
        };
        let claims = self
            .jwt
            .claims
            .iter()
            .filter_map(|name| claims.remove(name).map(|v| (name.clone(), v)))
            .collect();
        Ok(Principal { subject, claims })
    }
}

/// The identity stage for one request: the principal (or `None`, anonymous), or why the request is refused.
/// `require`: the route requires a valid token (discovery documents are exempt: clients fetch them to learn
/// how to get one). `host` is the request's host as the client wrote it, `path` its path (for the challenge).
pub async fn identify(
    verifier: &Verifier,
    require: bool,
    parts: &http::request::Parts,
    host: &str,
) -> Result<Option<Principal>, Unauthenticated> {
    let refuse = |error| Unauthenticated {
        resource_metadata: verifier
            .resource_metadata()
            .map(str::to_owned)
            .unwrap_or_else(|| resource_metadata_url(host, parts.uri.path())),
        error,
    };
    match verifier.authenticate(&parts.headers).await {
        Ok(Some(principal)) => Ok(Some(principal)),
        Ok(None) if require && !crate::mcp::is_discovery(&parts.method, parts.uri.path()) => {
            Err(refuse(IdentityError::Missing))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(refuse(e)),
    }
}

/// `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1), the token in its b64token alphabet.
fn bearer_token(value: &http::HeaderValue) -> Option<&str> {
    let v = value.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)))
    .then_some(token)
}
