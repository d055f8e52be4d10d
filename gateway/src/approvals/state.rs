//! The integrity-protected `requestState` of a caller confirmation (2026-07-28 `input_required`, see
//! [`super::caller`]).
//!
//! The 2026-07-28 protocol is stateless: the gateway asks the caller to confirm a call by answering it with
//! `resultType: "input_required"`, and the client retries the identical call with the answer and the
//! `requestState` it was given. The state is the only memory of the question, so it carries what the
//! question was about — confirmation id, route, tool, SHA-256 of the canonical arguments, principal, session,
//! expiry, and the upstream's own `requestState` / `inputResponses` when the call was itself an upstream
//! retry — and an HMAC-SHA256 over all of it under a key only the gateway holds:
//!
//! `mcpgw1.` base64url(JSON payload) `.` base64url(HMAC-SHA256(key, "mcpgw1." base64url(payload)))
//!
//! [`StateKey::open`] checks, in this order, the form, the MAC (constant time), the expiry and the binding
//! to the retried call; any failure refuses the call. The payload is not secret (the caller sent all of it),
//! only unforgeable.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use super::store::Millis;

/// What every gateway `requestState` starts with (what tells it from an upstream's state).
pub const PREFIX: &str = "mcpgw1.";

/// The longest state the gateway accepts (a nested upstream state is included).
pub const MAX_STATE_BYTES: usize = 256 * 1024;

/// What a confirmation state remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The confirmation id (`cnf_…`): names it in audit records and makes it single-use.
    pub id: String,
    pub route: String,
    pub tool: String,
    /// Hex SHA-256 of the canonical JSON arguments.
    pub args: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Expiry, Unix milliseconds.
    pub exp: Millis,
    /// The policy that asked (for the decision record of the retry).
    pub policy: String,
    /// The upstream's own `requestState` the asked call carried (restored on the retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_state: Option<String>,
    /// The upstream's `inputResponses` the asked call carried (restored on the retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_responses: Option<Value>,
}

/// What the retried call must match.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub route: &'a str,
    pub tool: &'a str,
    pub args: &'a str,
    pub principal: Option<&'a str>,
    pub session: Option<&'a str>,
}

/// Why a `requestState` is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("the requestState is malformed")]
    Malformed,
    #[error("the requestState's signature does not verify (altered, or made under another key)")]
    BadSignature,
    #[error("confirmation {id} expired")]
    Expired { id: String },
    #[error("confirmation {id} was for a different {field}")]
    Mismatch { id: String, field: &'static str },
    #[error("confirmation {id} was already used")]
    Replayed { id: String },
}

impl StateError {
    /// The confirmation id, when the state's signature verified (so the id is the gateway's own).
    pub fn id(&self) -> Option<&str> {
        match self {
            StateError::Malformed | StateError::BadSignature => None,
            StateError::Expired { id }
            | StateError::Mismatch { id, .. }
            | StateError::Replayed { id } => Some(id),
        }
    }
}

/// The HMAC key of confirmation states (from `secret_file`, or random per process).
#[derive(Clone)]
pub struct StateKey(Vec<u8>);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl StateKey {
    pub fn new(secret: Vec<u8>) -> StateKey {
        StateKey(secret)
    }

    /// 32 bytes from the operating system's CSPRNG.
    pub fn random() -> Result<StateKey, getrandom::Error> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(StateKey(key))
    }

    fn mac(&self, signed: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(signed);
        mac
    }

    /// The wire form of `state`.
    pub fn seal(&self, state: &State) -> String {
        let payload = serde_json::to_vec(state).expect("a state serialises");
        let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = self.mac(signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Verifies `wire` (form, MAC, expiry at `now`, binding) and returns what it remembers.
    pub fn open(&self, wire: &str, now: Millis, expect: &Binding<'_>) -> Result<State, StateError> {
        if wire.len() > MAX_STATE_BYTES || !wire.starts_with(PREFIX) {
            return Err(StateError::Malformed);
        }
        let (signed, tag) = wire.rsplit_once('.').ok_or(StateError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StateError::Malformed)?;
        self.mac(signed.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| StateError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| StateError::Malformed)?;
        let state: State = serde_json::from_slice(&payload).map_err(|_| StateError::Malformed)?;
        if now >= state.exp {
            return Err(StateError::Expired { id: state.id });
        }
        let mismatch = |field| {
            Err(StateError::Mismatch {
                id: state.id.clone(),
                field,
            })
        };
        if state.route != expect.route {
            return mismatch("route");
        }
        if state.tool != expect.tool {
            return mismatch("tool");
        }
        if state.args != expect.args {
            return mismatch("set of arguments");
        }
        if state.principal.as_deref() != expect.principal {
            return mismatch("caller");
        }
        if state.session.as_deref() != expect.session {
            return mismatch("session");
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests;
