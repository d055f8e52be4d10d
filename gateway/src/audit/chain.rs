//! The hash chain and signed checkpoints.
//!
//! Every line of a segment is one record in canonical JSON (see [`crate::audit::record`]):
//!
//! ```text
//! {"data":{…},"hash":"<64 hex>","kind":"decision","prev_hash":"<64 hex>","seq":42,"time":"2026-11-22T01:09:30.123456Z"}
//! ```
//!
//! `hash_i = SHA-256(raw(prev_hash_i) ‖ canonical_bytes(record_i without its "hash" member))`, where
//! `raw(prev_hash_i)` is the 32 bytes the hex `prev_hash` stands for, `prev_hash_i = hash_{i-1}`, and the
//! genesis `prev_hash` (of seq 1) is 32 zero bytes ([`GENESIS`]). Because the members sort as
//! `data < hash < kind < prev_hash < seq < time`, the hashed bytes are the line with its `"hash":"…",`
//! member taken out; the writer builds both by splicing ([`seal`]).
//!
//! A checkpoint record (`kind: "checkpoint"`) states that the record with seq `count` has hash
//! `head_hash`, optionally signed with Ed25519 over [`checkpoint_message`] (a signed-note style text):
//!
//! ```text
//! mcp-gateway audit checkpoint v1
//! <count>
//! <head_hash hex>
//! ```
//!
//! The signing key is a PKCS#8 PEM Ed25519 private key: `openssl genpkey -algorithm ed25519 -out audit.key`
//! (keep it `0600`); the auditors' public key: `openssl pkey -in audit.key -pubout -out audit.pub`.
//! Each checkpoint is also logged (`tracing` target `audit_checkpoint`) so that a copy lives outside the
//! gateway's disk: a chain alone proves nothing against someone who can rewrite every file; a checkpoint
//! held elsewhere does (`mcp-gateway audit verify --checkpoint COUNT:HEAD_HASH`).

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

use super::AuditError;
use super::record::Prepared;

/// `prev_hash` of the very first record (seq 1): 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// A 32-byte SHA-256 value.
pub type Hash = [u8; 32];

/// Builds the line for `rec` with sequence number `seq` chained onto `prev`, appends it (with its final
/// newline) to `out`, and returns its hash. `scratch` is reused between calls.
pub fn seal(
    prev: &Hash,
    seq: u64,
    rec: &Prepared,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Hash {
    let mut prev_hex = [0u8; 64];
    hex_into(prev, &mut prev_hex);
    // The tail shared by the hashed form and the line: `"kind":…,"prev_hash":…,"seq":…,"time":…}`.
    scratch.clear();
    scratch.extend_from_slice(b"\"kind\":\"");
    scratch.extend_from_slice(rec.kind.as_bytes());
    scratch.extend_from_slice(b"\",\"prev_hash\":\"");
    scratch.extend_from_slice(&prev_hex);
    scratch.extend_from_slice(b"\",\"seq\":");
    scratch.extend_from_slice(itoa(seq, &mut [0u8; 20]));
    scratch.extend_from_slice(b",\"time\":\"");
    scratch.extend_from_slice(rec.time.as_bytes());
    scratch.extend_from_slice(b"\"}");

    let mut h = Sha256::new();
    h.update(prev);
    h.update(b"{\"data\":");
    h.update(&rec.data);
    h.update(b",");
    h.update(&scratch[..]);
    let hash: Hash = h.finalize().into();

    let mut hash_hex = [0u8; 64];
    hex_into(&hash, &mut hash_hex);
    out.extend_from_slice(b"{\"data\":");
    out.extend_from_slice(&rec.data);
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(&hash_hex);
    out.extend_from_slice(b"\",");
    out.extend_from_slice(scratch);
    out.push(b'\n');
    hash
}

/// SHA-256 over `prev ‖ unhashed`, where `unhashed` is a record's canonical bytes without `hash`.
pub fn chain_hash(prev: &Hash, unhashed: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(unhashed);
    h.finalize().into()
}

/// The text a checkpoint signature covers.
pub fn checkpoint_message(count: u64, head_hash_hex: &str) -> String {
    format!("mcp-gateway audit checkpoint v1\n{count}\n{head_hash_hex}\n")
}

/// First 16 hex digits of SHA-256 over the raw public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Signs checkpoints.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key_id", &self.id).finish()
    }
}

impl Signer {
    pub fn new(key: SigningKey) -> Signer {
        let id = key_id(&key.verifying_key());
        Signer { key, id }
    }

    /// Loads a PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem_file(path: &Path) -> Result<Signer, AuditError> {
        let pem = std::fs::read_to_string(path).map_err(|source| AuditError::KeyRead {
            path: path.to_owned(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| AuditError::Key {
            path: path.to_owned(),
            detail: format!("not a PKCS#8 PEM Ed25519 private key ({e})"),
        })?;
        Ok(Signer::new(key))
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// Hex signature over [`checkpoint_message`].
    pub fn sign(&self, count: u64, head_hash_hex: &str) -> String {
        let sig = self
            .key
            .sign(checkpoint_message(count, head_hash_hex).as_bytes());
        hex::encode(sig.to_bytes())
    }
}

/// Loads an auditor's public key: SPKI PEM (`-----BEGIN PUBLIC KEY-----`, `openssl pkey -pubout`).
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let pem = std::fs::read_to_string(path).map_err(|source| AuditError::KeyRead {
        path: path.to_owned(),
        source,
    })?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| AuditError::Key {
        path: path.to_owned(),
        detail: format!("not an SPKI PEM Ed25519 public key ({e})"),
    })
}

/// Checks a hex signature on a checkpoint.
pub fn verify_checkpoint(
    key: &VerifyingKey,
    count: u64,
    head_hash_hex: &str,
    signature_hex: &str,
) -> bool {
    let Ok(bytes) = hex::decode(signature_hex) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(checkpoint_message(count, head_hash_hex).as_bytes(), &sig)
        .is_ok()
}

/// Parses 64 hex digits.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    // Canonical form is lower-case.
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some(out)
}

fn hex_into(bytes: &Hash, out: &mut [u8; 64]) {
    // Cannot fail: the output is exactly twice the input.
    let _ = hex::encode_to_slice(bytes, out);
}

fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::canonical_bytes;
    use serde_json::Value;

    #[test]
    fn sealed_line_is_canonical_and_hash_matches_definition() {
        let rec = Prepared {
            kind: "decision",
            time: "2026-01-01T00:00:00.000001Z".into(),
            data: br#"{"a":1,"b":"x"}"#.to_vec(),
        };
        let prev = [7u8; 32];
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let hash = seal(&prev, 1234567890, &rec, &mut scratch, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let line = &out[..out.len() - 1];
        let mut v: Value = serde_json::from_slice(line).unwrap();
        let mut canon = Vec::new();
        canonical_bytes(&v, &mut canon);
        assert_eq!(canon, line);
        assert_eq!(v["hash"].as_str().unwrap(), hex::encode(hash));
        v.as_object_mut().unwrap().remove("hash");
        let mut unhashed = Vec::new();
        canonical_bytes(&v, &mut unhashed);
        assert_eq!(chain_hash(&prev, &unhashed), hash);
    }

    #[test]
    fn itoa_writes_decimal() {
        for n in [0u64, 9, 10, 1234, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn signatures_round_trip() {
        let s = Signer::new(SigningKey::from_bytes(&[3; 32]));
        let sig = s.sign(10, "ab");
        let pk = s.key.verifying_key();
        assert!(verify_checkpoint(&pk, 10, "ab", &sig));
        assert!(!verify_checkpoint(&pk, 11, "ab", &sig));
    }
}
