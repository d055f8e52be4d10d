//! `certs renew`: reissue the server certificate from the existing CA when less than `renew_before` of its
//! validity is left — the same SAN, a fresh key (or the same one with `keep_key`), signed directly by the CA
//! with AKI = the CA's SKI. Files are replaced atomically (temp file + rename), so the running gateway's polled
//! TLS reload sees the old pair or the new one. With a new key, `tls.key` is renamed first and `tls.crt`
//! right after; a reload that lands between the two is refused (key mismatch) and the next poll loads the pair.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{Issuer, KeyPair};
use time::{Duration, OffsetDateTime};

use super::{CertError, KeyKind};

/// What to renew and how.
#[derive(Debug, Clone)]
pub struct RenewOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// Write `tls.crt`/`tls.key` here instead of over `cert`/`key`.
    pub out_dir: Option<PathBuf>,
    /// Renew only when less validity than this is left.
    pub renew_before: Duration,
    /// Validity of the new certificate (capped at the CA's own expiry).
    pub cert_duration: Duration,
    /// Key type of the new key; default: the type of the current certificate's key.
    pub key_kind: Option<KeyKind>,
    /// Reuse the current key (it must match the current certificate).
    pub keep_key: bool,
    pub now: OffsetDateTime,
}

/// What happened.
#[derive(Debug)]
pub enum Renewal {
    /// Enough validity left; nothing was written.
    NotDue {
        left: Duration,
        not_after: OffsetDateTime,
    },
    Renewed {
        cert: PathBuf,
        key: PathBuf,
        /// Validity the old certificate had left (negative: it had expired).
        old_left: Duration,
        not_after: OffsetDateTime,
        sans: Vec<String>,
        key_label: &'static str,
        new_key: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(
        "the CA key {path} cannot be used: {detail}. It must be an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`); \
         convert one with `openssl pkcs8 -topk8 -nocrypt -in ca.key -out ca.pk8.key`"
    )]
    CaKey { path: PathBuf, detail: String },
    #[error(
        "the CA key {key} does not belong to the CA certificate {cert}: keep the pair `certs init` wrote together"
    )]
    CaMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "{cert} was not issued by {ca} (its signature does not verify with the CA's key): renewing would switch CAs, \
         and the tunnel only accepts certificates from a CA registered in the Console. Point --ca-cert/--ca-key at the \
         CA that issued it, or make a new pair with `certs init` and register its CA"
    )]
    OtherCa { cert: PathBuf, ca: PathBuf },
    #[error(
        "{cert} has no DNS names in its SAN; issue a new one with `mcp-gateway certs init --tunnel-domain …`"
    )]
    NoSan { cert: PathBuf },
    #[error("--keep-key: the key {key} does not match {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "the certificate {cert} has a key type that cannot be reissued ({detail}); pass --key-type"
    )]
    KeyType { cert: PathBuf, detail: String },
}

fn read(path: &Path) -> Result<Vec<u8>, RenewError> {
    std::fs::read(path).map_err(|source| RenewError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse<'a>(
    der: &'a [u8],
    what: &Path,
) -> Result<x509_parser::certificate::X509Certificate<'a>, CertError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| CertError::Parse {
            what: what.display().to_string(),
            detail: e.to_string(),
        })
}

/// Renews if due. Reads everything and builds the new certificate before writing anything.
pub fn renew(o: &RenewOptions) -> Result<Renewal, RenewError> {
    let cert_pem = read(&o.cert)?;
    let cert_der = super::first_der(&cert_pem, &o.cert.display().to_string())?;
    let cert = parse(&cert_der, &o.cert)?;
    let not_after = cert.validity().not_after.to_datetime();
    let left = not_after - o.now;
    if left > o.renew_before {
        return Ok(Renewal::NotDue { left, not_after });
    }

    let ca_pem = read(&o.ca_cert)?;
    let ca_der = super::first_der(&ca_pem, &o.ca_cert.display().to_string())?;
    let ca = parse(&ca_der, &o.ca_cert)?;
    let ca_key_pem = String::from_utf8(read(&o.ca_key)?).map_err(|_| RenewError::CaKey {
        path: o.ca_key.clone(),
        detail: "not text".into(),
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| RenewError::CaKey {
        path: o.ca_key.clone(),
        detail: e.to_string(),
    })?;
    if rcgen::PublicKeyData::subject_public_key_info(&ca_key) != ca.public_key().raw {
        return Err(RenewError::CaMismatch {
            cert: o.ca_cert.clone(),
            key: o.ca_key.clone(),
        });
    }
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Err(RenewError::OtherCa {
            cert: o.cert.clone(),
            ca: o.ca_cert.clone(),
        });
    }
    let sans = super::inspect::dns_sans(&cert);
    if sans.is_empty() {
        return Err(RenewError::NoSan {
            cert: o.cert.clone(),
        });
    }
    let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(CertError::from)?;
    let until = (o.now + o.cert_duration).min(ca.validity().not_after.to_datetime());

    let (out_cert, out_key) = match &o.out_dir {
        Some(d) => {
            super::create_private_dir(d).map_err(|source| RenewError::Write {
                path: d.clone(),
                source,
            })?;
            (d.join("tls.crt"), d.join("tls.key"))
        }
        None => (o.cert.clone(), o.key.clone()),
    };
    let write = |path: &Path, text: &str, mode: u32| {
        super::write_atomic(path, text, mode).map_err(|source| RenewError::Write {
            path: path.to_owned(),
            source,
        })
    };

    let (new_cert_pem, key_label) = if o.keep_key {
        let key_pem = read(&o.key)?;
        let mut check = super::inspect::Report {
            facts: Vec::new(),
            findings: Vec::new(),
        };
        super::inspect::key_match_into(&mut check, &cert, &key_pem);
        if !check.passed() {
            return Err(RenewError::KeyMismatch {
                cert: o.cert.clone(),
                key: o.key.clone(),
            });
        }
        let spki = rcgen::SubjectPublicKeyInfo::from_der(cert.public_key().raw)
            .map_err(CertError::from)?;
        let pem = super::server_cert(&sans, &spki, &issuer, o.now, until)?;
        if out_key != o.key {
            let text = String::from_utf8_lossy(&key_pem).into_owned();
            write(&out_key, &text, 0o600)?;
        }
        write(&out_cert, &pem, 0o644)?;
        (pem, "the same key")
    } else {
        let kind = match o.key_kind {
            Some(k) => k,
            None => super::inspect::key_kind_of(&cert_pem)?.ok_or_else(|| RenewError::KeyType {
                cert: o.cert.clone(),
                detail: super::inspect::key_label_of(&cert),
            })?,
        };
        let key = kind.generate()?;
        let pem = super::server_cert(&sans, &key, &issuer, o.now, until)?;
        write(&out_key, &key.serialize_pem(), 0o600)?;
        write(&out_cert, &pem, 0o644)?;
        (pem, kind.label())
    };
    let not_after =
        OffsetDateTime::from_unix_timestamp(super::not_after_unix(new_cert_pem.as_bytes())?)
            .map_err(|e| CertError::Unusable {
                what: out_cert.display().to_string(),
                detail: e.to_string(),
            })?;
    Ok(Renewal::Renewed {
        cert: out_cert,
        key: out_key,
        old_left: left,
        not_after,
        sans,
        key_label,
        new_key: !o.keep_key,
    })
}
