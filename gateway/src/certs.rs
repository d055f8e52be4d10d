//! Certificates the tunnel accepts: an ECDSA P-256 CA (5 years, `CA:TRUE` critical, SKI, keyCertSign) and a
//! server certificate signed directly by it (90 days, SAN `*.<tunnel_domain>` and the bare domain, AKI, EKU
//! serverAuth). Used by `mcp-gateway certs init`, the demo and the tests.

use std::io::Write;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

/// Key algorithm of the server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
}

impl KeyKind {
    fn alg(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

pub const CA_DAYS: i64 = 5 * 365;
pub const SERVER_DAYS: i64 = 90;

/// A freshly issued CA and server certificate, PEM encoded.
pub struct Issued {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Issues a CA and a server certificate for `*.<tunnel_domain>`.
pub fn issue(tunnel_domain: &str, kind: KeyKind) -> Result<Issued, rcgen::Error> {
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

    let key = KeyPair::generate_for(kind.alg())?;
    let mut params =
        CertificateParams::new(vec![format!("*.{tunnel_domain}"), tunnel_domain.to_owned()])?;
    params.distinguished_name = dn(&format!("*.{tunnel_domain}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(SERVER_DAYS);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        ca_cert_pem: issuer.pem(),
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "mcp-gateway");
    dn
}

impl Issued {
    /// Writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` into `dir` (created if needed); keys are mode 0600.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_file(&dir.join("ca.crt"), &self.ca_cert_pem, 0o644)?;
        write_file(&dir.join("ca.key"), &self.ca_key_pem, 0o600)?;
        write_file(&dir.join("tls.crt"), &self.cert_pem, 0o644)?;
        write_file(&dir.join("tls.key"), &self.key_pem, 0o600)
    }
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
