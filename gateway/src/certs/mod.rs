//! Certificates the tunnel accepts: an ECDSA P-256 CA (5 years, `CA:TRUE` critical, SKI, keyCertSign) and a
//! server certificate signed directly by it (90 days, SAN `*.<tunnel_domain>` and the bare domain, AKI, EKU
//! serverAuth; ECDSA P-256, P-384 or RSA-4096 key). Used by `mcp-gateway certs`, the demo and the tests.
//!
//! [`renew`] reissues the server certificate from the existing CA; [`inspect`] explains a certificate against
//! the tunnel's rules. Parsing is x509-parser's, never ours.

pub mod inspect;
pub mod renew;

use std::io::Write;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// Key algorithm of the server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    /// What Anthropic's setup tool makes for the server certificate.
    #[value(name = "rsa-4096")]
    Rsa4096,
}

impl KeyKind {
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::EcdsaP384 => "ECDSA P-384",
            KeyKind::Rsa4096 => "RSA 4096",
        }
    }

    /// A fresh key pair. RSA keys come from the `rsa` crate (ring can sign with RSA but not make keys) and
    /// are handed to rcgen as PKCS#8, so the PEM written is `PRIVATE KEY` like the ECDSA ones.
    pub fn generate(self) -> Result<KeyPair, CertError> {
        match self {
            KeyKind::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
            KeyKind::EcdsaP384 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?),
            KeyKind::Rsa4096 => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 4096)
                    .map_err(|e| CertError::Rsa(e.to_string()))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| CertError::Rsa(e.to_string()))?;
                Ok(KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(der.as_bytes()),
                    &rcgen::PKCS_RSA_SHA256,
                )?)
            }
        }
    }
}

pub const CA_DAYS: i64 = 5 * 365;
pub const SERVER_DAYS: i64 = 90;

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Rcgen(#[from] rcgen::Error),
    #[error("RSA key generation failed: {0}")]
    Rsa(String),
    #[error("{what} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { what: String },
    #[error("{what}: not a valid PEM/X.509 certificate: {detail}")]
    Parse { what: String, detail: String },
    #[error("{what}: {detail}")]
    Unusable { what: String, detail: String },
}

/// A freshly issued CA and server certificate, PEM encoded.
pub struct Issued {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Issues a CA and a server certificate for `*.<tunnel_domain>`.
pub fn issue(tunnel_domain: &str, kind: KeyKind) -> Result<Issued, CertError> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = dn(&format!("mcp-gateway CA for {tunnel_domain}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - Duration::hours(1);
    ca.not_after = now + Duration::days(CA_DAYS);
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(ca, ca_key)?;

    let key = kind.generate()?;
    let names = vec![format!("*.{tunnel_domain}"), tunnel_domain.to_owned()];
    let cert_pem = server_cert(
        &names,
        &key,
        &issuer,
        now,
        now + Duration::days(SERVER_DAYS),
    )?;
    Ok(Issued {
        ca_cert_pem: issuer.pem(),
        ca_key_pem,
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

/// A server certificate for `names` (the first is also the CN) valid from an hour before `not_before`
/// until `not_after`, signed directly by `issuer`.
pub fn server_cert<S: rcgen::SigningKey>(
    names: &[String],
    key: &impl PublicKeyData,
    issuer: &Issuer<'_, S>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, CertError> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = dn(names.first().map(String::as_str).unwrap_or("mcp-gateway"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before - Duration::hours(1);
    params.not_after = not_after;
    Ok(params.signed_by(key, issuer)?.pem())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "mcp-gateway");
    dn
}

/// The DER of the first certificate in a PEM file.
pub fn first_der(pem: &[u8], what: &str) -> Result<CertificateDer<'static>, CertError> {
    match CertificateDer::pem_slice_iter(pem).next() {
        None => Err(CertError::NoCertificate { what: what.into() }),
        Some(Err(e)) => Err(CertError::Parse {
            what: what.into(),
            detail: e.to_string(),
        }),
        Some(Ok(der)) => Ok(der),
    }
}

/// `notAfter` of the first certificate in `pem`, as Unix seconds (for the cert-expiry metric and checks).
pub fn not_after_unix(pem: &[u8]) -> Result<i64, CertError> {
    let der = first_der(pem, "certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Parse {
        what: "certificate".into(),
        detail: e.to_string(),
    })?;
    Ok(cert.validity().not_after.timestamp())
}

/// Seconds until the first certificate in `pem` expires (negative once it has).
pub fn seconds_until_expiry(pem: &[u8]) -> Result<i64, CertError> {
    Ok(not_after_unix(pem)? - OffsetDateTime::now_utc().unix_timestamp())
}

impl Issued {
    /// Writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` into `dir` (created mode 0700 if needed); keys are
    /// mode 0600, certificates 0644.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        create_private_dir(dir)?;
        write_file(&dir.join("ca.crt"), &self.ca_cert_pem, 0o644)?;
        write_file(&dir.join("ca.key"), &self.ca_key_pem, 0o600)?;
        write_file(&dir.join("tls.crt"), &self.cert_pem, 0o644)?;
        write_file(&dir.join("tls.key"), &self.key_pem, 0o600)
    }
}

/// Creates `dir` and missing parents with mode 0700; an existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Replaces `path` atomically: the contents go to a temporary file in the same directory (with `mode`, and the
/// owner and group of the file it replaces), which is synced and renamed over `path`, then the directory is
/// synced. A reader (the gateway's polled TLS reload) sees the old file or the new one, never a partial one,
/// and never one it may not read: when the owner cannot be kept (not root, another user's file) nothing is
/// replaced and the error says so.
pub fn write_atomic(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = write_file(&tmp, contents, mode)
        .and_then(|()| keep_owner(path, &tmp))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    std::fs::File::open(dir)?.sync_all()
}

/// Gives `tmp` the owner and group of `original` (if it exists and they differ).
fn keep_owner(original: &Path, tmp: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(old) = std::fs::metadata(original) else {
        return Ok(());
    };
    let new = std::fs::metadata(tmp)?;
    if (old.uid(), old.gid()) == (new.uid(), new.gid()) {
        return Ok(());
    }
    std::os::unix::fs::chown(tmp, Some(old.uid()), Some(old.gid())).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot keep the owner (uid {} gid {}) of {}: {e}; run as that user or as root",
                old.uid(),
                old.gid(),
                original.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_4096_server_key_is_pkcs8_and_loads_in_rustls() {
        let issued = issue("t.example.test", KeyKind::Rsa4096).unwrap();
        assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key =
            rustls_pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
        let chain = vec![first_der(issued.cert_pem.as_bytes(), "tls.crt").unwrap()];
        rustls::sign::CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
            .expect("RSA key and certificate match");
        let der = first_der(issued.cert_pem.as_bytes(), "tls.crt").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.public_key().parsed().unwrap().key_size(), 4096);
    }

    #[test]
    fn expiry_seconds_follow_not_after() {
        let issued = issue("t.example.test", KeyKind::EcdsaP256).unwrap();
        let left = seconds_until_expiry(issued.cert_pem.as_bytes()).unwrap();
        let ninety = SERVER_DAYS * 86400;
        assert!((ninety - 60..=ninety).contains(&left), "{left}");
        assert!(not_after_unix(b"not a pem").is_err());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tls.key");
        write_atomic(&p, "one", 0o600).unwrap();
        write_atomic(&p, "two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
