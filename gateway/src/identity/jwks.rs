//! The JSON Web Key Set tokens are verified against: read from a file or fetched from a URL, cached, refreshed
//! every `identity.jwt.refresh`, and fetched again when a token names a key id the cache does not know (key
//! rotation) — at most once per [`KID_REFETCH_MIN`], so a flood of made-up `kid`s cannot turn the gateway
//! into a load generator against the identity provider.
//!
//! Fetches are single-flight (one at a time; waiters reuse the result). When a refresh fails the keys already
//! held keep serving (a warning says so); with no keys at all, requests that carry a token are refused
//! (fail closed) and the next attempt waits [`RETRY_AFTER_FAILURE`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::JwksSource;

/// Least time between two fetches caused by an unknown `kid`.
pub const KID_REFETCH_MIN: Duration = Duration::from_secs(30);
/// Least time between two attempts after a failed fetch.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Deadline of one fetch (connect, TLS, answer).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set accepted.
const MAX_BYTES: usize = 1 << 20;

/// Why no key set is available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the key set {source_name}: {why}")]
    Unavailable { source_name: String, why: String },
}

/// One usable verification key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    /// The JWK's `alg`, if it names one (then only that algorithm may use it).
    alg: Option<String>,
    key: DecodingKey,
}

struct Loaded {
    keys: Vec<Key>,
    at: Instant,
}

#[derive(Default)]
struct FetchState {
    last_kid_refetch: Option<Instant>,
    last_failure: Option<(Instant, JwksError)>,
}

/// A cached key set.
pub struct JwksCache {
    source: JwksSource,
    ca_file: Option<PathBuf>,
    refresh: Duration,
    loaded: RwLock<Option<Arc<Loaded>>>,
    fetching: tokio::sync::Mutex<FetchState>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source)
            .field("fetches", &self.fetches())
            .finish()
    }
}

impl JwksCache {
    pub fn new(source: JwksSource, ca_file: Option<PathBuf>, refresh: Duration) -> JwksCache {
        JwksCache {
            source,
            ca_file,
            refresh,
            loaded: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Whether `other` reads the same keys the same way (so a reload may keep this cache).
    pub fn same_source(&self, other: &JwksCache) -> bool {
        self.source == other.source
            && self.ca_file == other.ca_file
            && self.refresh == other.refresh
    }

    /// How many times the key set was read or fetched (successfully or not).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The keys that may verify a token with this `kid` (all keys when it has none) and `alg`.
    pub async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<DecodingKey>, JwksError> {
        let loaded = match self.current() {
            Some(l) if l.at.elapsed() < self.refresh => l,
            stale => self.load(stale, false).await?,
        };
        let found = select(&loaded, kid, alg);
        if !found.is_empty() || kid.is_none() {
            return Ok(found);
        }
        // An unknown kid: the provider may have rotated its keys.
        let reloaded = self.load(Some(loaded), true).await?;
        Ok(select(&reloaded, kid, alg))
    }

    /// Fetches when needed (single-flight). `held`: what the caller saw; `for_kid`: an unknown-kid refetch.
    async fn load(
        &self,
        held: Option<Arc<Loaded>>,
        for_kid: bool,
    ) -> Result<Arc<Loaded>, JwksError> {
        let mut state = self.fetching.lock().await;
        // Someone else fetched while we waited: use theirs.
        if let Some(now) = self.current()
            && held.as_ref().is_none_or(|h| !Arc::ptr_eq(h, &now))
        {
            return Ok(now);
        }
        if for_kid {
            if let Some(h) = &held
                && state
                    .last_kid_refetch
                    .is_some_and(|t| t.elapsed() < KID_REFETCH_MIN)
            {
                return Ok(h.clone());
            }
            state.last_kid_refetch = Some(Instant::now());
        }
        if let Some((at, err)) = &state.last_failure
            && at.elapsed() < RETRY_AFTER_FAILURE
        {
            return match held {
                Some(h) => Ok(h),
                None => Err(err.clone()),
            };
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(jwks = %self.source, keys = keys.len(), "key set loaded");
                state.last_failure = None;
                let loaded = Arc::new(Loaded {
                    keys,
                    at: Instant::now(),
                });
                *self
                    .loaded
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(loaded.clone());
                Ok(loaded)
            }
            Err(why) => {
                let err = JwksError::Unavailable {
                    source_name: self.source.to_string(),
                    why,
                };
                state.last_failure = Some((Instant::now(), err.clone()));
                match held {
                    Some(h) => {
                        tracing::warn!("{err}; the keys fetched before keep serving");
                        Ok(h)
                    }
                    None => Err(err),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let bytes = match &self.source {
            JwksSource::File(path) => {
                let b = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
                if b.len() > MAX_BYTES {
                    return Err(format!("larger than {MAX_BYTES} bytes"));
                }
                Bytes::from(b)
            }
            JwksSource::Url(uri) => {
                tokio::time::timeout(FETCH_TIMEOUT, get(uri, self.ca_file.as_deref()))
                    .await
                    .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))??
            }
        };
        parse(&bytes)
    }
}

fn select(loaded: &Loaded, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
    let alg_name = format!("{alg:?}");
    loaded
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg_name))
        .filter(|k| k.key.family() == alg.family())
        .map(|k| k.key.clone())
        .collect()
}

/// `{"keys": [...]}`; keys that are not for signatures or that cannot be used are skipped (with a debug
/// line), so one exotic key does not take the whole set down.
fn parse(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWK set (no `keys` array)")?;
    let mut keys = Vec::new();
    for raw in list {
        let jwk: Jwk = match serde_json::from_value(raw.clone()) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(error = %e, "JWKS: skipping a key that cannot be read");
                continue;
            }
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            tracing::debug!(kid = ?jwk.common.key_id, "JWKS: skipping a key that cannot verify");
            continue;
        };
        if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            continue; // symmetric keys are never trusted (see config::JWT_ALGORITHMS)
        }
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
            key,
        });
    }
    if keys.is_empty() {
        return Err("the key set has no usable signature key".into());
    }
    Ok(keys)
}

/// One GET: https (system CAs plus `ca_file`) or http (loopback only, checked at config load).
async fn get(uri: &http::Uri, ca_file: Option<&std::path::Path>) -> Result<Bytes, String> {
    let answer = crate::outbound::request(
        uri,
        ca_file,
        http::Method::GET,
        &[(http::header::ACCEPT, "application/json".to_owned())],
        Bytes::new(),
        MAX_BYTES,
    )
    .await?;
    if answer.status != http::StatusCode::OK {
        return Err(format!("HTTP {}", answer.status));
    }
    Ok(answer.body)
}
