//! `certs inspect`: a certificate explained against the tunnel's rules (`shared/design/compat-anthropic-proxy.md`):
//! validity and time left, SAN coverage of the tunnel domain, key type and strength, signature algorithm, EKU,
//! CA flags, whether a private key matches, and whether a CA signed it directly (signature + AKI/SKI).
//!
//! Everything is read with x509-parser; signatures are verified with ring through it. Used by
//! `mcp-gateway certs inspect` and by `mcp-gateway check`.

use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::CertError;

/// How a finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Works today but needs attention (e.g. expiring within the renew window).
    Warn,
    Fail,
}

/// One checked property, with what to do about it when it is not a pass.
#[derive(Debug, Clone)]
pub struct Finding {
    pub status: Status,
    pub check: String,
    pub detail: String,
}

/// What to check the certificate against.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The tunnel domain: a server certificate must cover `*.<domain>` (or every host in `hosts`).
    pub tunnel_domain: Option<&'a str>,
    /// Public host names that must be covered (e.g. each route's `<route>.<tunnel_domain>`).
    pub hosts: Vec<String>,
    /// A private key (PEM) that must belong to the certificate.
    pub key_pem: Option<&'a [u8]>,
    /// The CA certificate (PEM) that must have signed it directly.
    pub ca_pem: Option<&'a [u8]>,
    pub now: OffsetDateTime,
    /// Less validity than this left is a warning (the renew window).
    pub warn_within: Duration,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            tunnel_domain: None,
            hosts: Vec::new(),
            key_pem: None,
            ca_pem: None,
            now: OffsetDateTime::now_utc(),
            warn_within: Duration::days(30),
        }
    }
}

/// Facts about the certificate, then the findings.
#[derive(Debug, Clone)]
pub struct Report {
    pub facts: Vec<(&'static str, String)>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// No finding failed.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.status != Status::Fail)
    }

    fn add(&mut self, status: Status, check: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding {
            status,
            check: check.into(),
            detail: detail.into(),
        });
    }
}

/// Parses every certificate in `pem` (`what` names it in messages).
fn parse_all(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>, CertError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|r| r.map(|d| d.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Parse {
            what: what.into(),
            detail: e.to_string(),
        })?;
    if ders.is_empty() {
        return Err(CertError::NoCertificate { what: what.into() });
    }
    for der in &ders {
        parse(der, what)?;
    }
    Ok(ders)
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, CertError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| CertError::Parse {
            what: what.into(),
            detail: e.to_string(),
        })
}

/// Inspects the first certificate of `cert_pem` (a server certificate or a CA).
pub fn inspect(cert_pem: &[u8], what: &str, opts: &Options<'_>) -> Result<Report, CertError> {
    let ders = parse_all(cert_pem, what)?;
    let cert = parse(&ders[0], what)?;
    let mut r = Report {
        facts: Vec::new(),
        findings: Vec::new(),
    };
    r.facts.push(("subject", cert.subject().to_string()));
    r.facts.push(("issuer", cert.issuer().to_string()));
    r.facts.push((
        "valid",
        format!(
            "{} → {}",
            rfc3339(cert.validity().not_before.to_datetime()),
            rfc3339(cert.validity().not_after.to_datetime())
        ),
    ));
    r.facts.push(("key", key_label_of(&cert)));
    r.facts.push(("signature", sig_label(&cert).0.to_owned()));
    if ders.len() > 1 {
        r.facts.push((
            "file",
            format!("{} certificates; the first is inspected", ders.len()),
        ));
    }

    validity(&mut r, "validity", &cert, opts);
    strength(&mut r, &cert);
    if is_ca(&cert) {
        r.facts.push(("kind", "CA certificate".into()));
        ca_rules(&mut r, "", &cert, cert_pem.len(), ders.len());
    } else {
        r.facts
            .push(("kind", "server (end-entity) certificate".into()));
        let sans = dns_sans(&cert);
        r.facts.push((
            "SAN",
            if sans.is_empty() {
                "(none)".into()
            } else {
                sans.join(", ")
            },
        ));
        coverage(&mut r, &sans, opts);
        eku(&mut r, &cert);
        if aki(&cert).is_some() {
            r.add(Status::Pass, "authority key id", "present");
        } else {
            r.add(
                Status::Fail,
                "authority key id",
                "missing: the tunnel requires AuthorityKeyIdentifier = the CA's SubjectKeyIdentifier; reissue with `mcp-gateway certs renew`",
            );
        }
    }
    if let Some(key_pem) = opts.key_pem {
        key_match_into(&mut r, &cert, key_pem);
    }
    if let Some(ca_pem) = opts.ca_pem {
        let ca_ders = parse_all(ca_pem, "CA certificate")?;
        let ca = parse(&ca_ders[0], "CA certificate")?;
        chain(&mut r, &cert, &ca);
        validity(&mut r, "CA validity", &ca, opts);
        ca_rules(&mut r, "CA ", &ca, ca_pem.len(), ca_ders.len());
    }
    Ok(r)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `89 days 23 h` style.
pub fn human(d: Duration) -> String {
    let secs = d.whole_seconds().abs();
    let (days, hours, mins) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if days > 0 {
        format!("{days} days {hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else {
        format!("{mins} min")
    }
}

fn validity(r: &mut Report, check: &str, cert: &X509Certificate<'_>, opts: &Options<'_>) {
    let nb = cert.validity().not_before.to_datetime();
    let na = cert.validity().not_after.to_datetime();
    if opts.now < nb {
        r.add(
            Status::Fail,
            check,
            format!(
                "not valid yet (starts {}, in {}): check the clock of this machine and the issuer's",
                rfc3339(nb),
                human(nb - opts.now)
            ),
        );
    } else if opts.now >= na {
        r.add(
            Status::Fail,
            check,
            format!(
                "EXPIRED {} ago (on {}): TLS handshakes fail with `bad certificate`; reissue with `mcp-gateway certs renew`",
                human(opts.now - na),
                rfc3339(na)
            ),
        );
    } else if na - opts.now < opts.warn_within {
        r.add(
            Status::Warn,
            check,
            format!(
                "expires soon: {} left (until {}); renew now with `mcp-gateway certs renew`",
                human(na - opts.now),
                rfc3339(na)
            ),
        );
    } else {
        r.add(
            Status::Pass,
            check,
            format!("{} left (until {})", human(na - opts.now), rfc3339(na)),
        );
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// `(label, acceptable)`: SHA-256 or better with RSA, ECDSA or RSASSA-PSS.
fn sig_label(cert: &X509Certificate<'_>) -> (&'static str, bool) {
    match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.10045.4.3.2" => ("ecdsa-with-SHA256", true),
        "1.2.840.10045.4.3.3" => ("ecdsa-with-SHA384", true),
        "1.2.840.10045.4.3.4" => ("ecdsa-with-SHA512", true),
        "1.2.840.113549.1.1.11" => ("sha256WithRSAEncryption", true),
        "1.2.840.113549.1.1.12" => ("sha384WithRSAEncryption", true),
        "1.2.840.113549.1.1.13" => ("sha512WithRSAEncryption", true),
        "1.2.840.113549.1.1.10" => ("RSASSA-PSS", true),
        "1.3.101.112" => ("Ed25519", false),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => ("sha1WithRSAEncryption", false),
        "1.2.840.10045.4.1" => ("ecdsa-with-SHA1", false),
        "1.2.840.113549.1.1.4" => ("md5WithRSAEncryption", false),
        _ => ("unknown algorithm", false),
    }
}

/// The key type: `(label, acceptable to the tunnel)`.
fn key_kind(cert: &X509Certificate<'_>) -> (String, bool) {
    let spki = cert.public_key();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("ECDSA P-256".into(), true),
                Some("1.3.132.0.34") => ("ECDSA P-384".into(), true),
                Some("1.3.132.0.35") => ("ECDSA P-521".into(), true),
                Some(other) => (format!("ECDSA on curve {other}"), false),
                None => ("ECDSA (curve not named)".into(), false),
            }
        }
        "1.2.840.113549.1.1.1" => {
            let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
            (format!("RSA {bits}"), bits >= 2048)
        }
        "1.3.101.112" => ("Ed25519".into(), false),
        other => (format!("unknown key algorithm {other}"), false),
    }
}

pub(super) fn key_label_of(cert: &X509Certificate<'_>) -> String {
    key_kind(cert).0
}

/// The [`super::KeyKind`] that reissues a certificate like this one (RSA of any size → RSA-4096).
pub fn key_kind_of(cert_pem: &[u8]) -> Result<Option<super::KeyKind>, CertError> {
    let der = super::first_der(cert_pem, "certificate")?;
    let cert = parse(&der, "certificate")?;
    let (label, _) = key_kind(&cert);
    Ok(match label.as_str() {
        "ECDSA P-256" => Some(super::KeyKind::EcdsaP256),
        "ECDSA P-384" => Some(super::KeyKind::EcdsaP384),
        l if l.starts_with("RSA ") => Some(super::KeyKind::Rsa4096),
        _ => None,
    })
}

fn strength(r: &mut Report, cert: &X509Certificate<'_>) {
    let (key, key_ok) = key_kind(cert);
    if key_ok {
        r.add(Status::Pass, "key type", key);
    } else {
        r.add(
            Status::Fail,
            "key type",
            format!("{key}: the tunnel accepts RSA ≥ 2048 or ECDSA ≥ P-256"),
        );
    }
    let (sig, sig_ok) = sig_label(cert);
    if sig_ok {
        r.add(Status::Pass, "signature algorithm", sig);
    } else {
        r.add(
            Status::Fail,
            "signature algorithm",
            format!("{sig}: the tunnel needs SHA-256 or better (RSA or ECDSA)"),
        );
    }
}

/// The rules for a CA the tunnel registers.
fn ca_rules(r: &mut Report, prefix: &str, ca: &X509Certificate<'_>, pem_len: usize, count: usize) {
    match ca.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca && bc.critical => {
            r.add(Status::Pass, format!("{prefix}basic constraints"), "CA:TRUE, critical")
        }
        Ok(Some(bc)) if bc.value.ca => r.add(
            Status::Fail,
            format!("{prefix}basic constraints"),
            "CA:TRUE but not marked critical: the tunnel requires it critical; make a new CA with `mcp-gateway certs init`",
        ),
        _ => r.add(
            Status::Fail,
            format!("{prefix}basic constraints"),
            "not a CA (no CA:TRUE): register the CA certificate that signed the server certificate",
        ),
    }
    if ski(ca).is_some() {
        r.add(Status::Pass, format!("{prefix}subject key id"), "present");
    } else {
        r.add(
            Status::Fail,
            format!("{prefix}subject key id"),
            "missing: the tunnel requires a SubjectKeyIdentifier on the CA",
        );
    }
    match ca.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() => {
            let crl = if ku.value.crl_sign() { ", cRLSign" } else { "" };
            r.add(
                Status::Pass,
                format!("{prefix}key usage"),
                format!("keyCertSign{crl}"),
            )
        }
        _ => r.add(
            Status::Fail,
            format!("{prefix}key usage"),
            "keyCertSign missing: the CA cannot sign certificates the tunnel accepts",
        ),
    }
    if prefix.is_empty() {
        // Only when the CA itself is inspected: the file is what gets uploaded.
        if count == 1 && pem_len <= 8192 {
            r.add(
                Status::Pass,
                "upload",
                format!("one PEM certificate, {pem_len} bytes (limit 8 kB)"),
            );
        } else {
            r.add(
                Status::Fail,
                "upload",
                format!(
                    "{count} certificate(s), {pem_len} bytes: the Console takes a single PEM certificate of at most 8 kB"
                ),
            );
        }
        if ca.subject().as_raw() == ca.issuer().as_raw() {
            match ca.verify_signature(None) {
                Ok(()) => r.add(Status::Pass, "self-signature", "verifies"),
                Err(e) => r.add(
                    Status::Fail,
                    "self-signature",
                    format!("does not verify: {e}"),
                ),
            }
        }
    }
}

fn ski<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
}

fn aki<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
}

/// DNS names in the SAN, lowercased.
pub fn dns_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// DNS names in the SAN of the first certificate in `pem`.
pub fn dns_sans_of(pem: &[u8]) -> Result<Vec<String>, CertError> {
    let der = super::first_der(pem, "certificate")?;
    Ok(dns_sans(&parse(&der, "certificate")?))
}

/// Whether SAN entry `name` covers `host` (TLS rules: `*` stands for exactly one whole left-most label).
pub fn covers(name: &str, host: &str) -> bool {
    let (name, host) = (name.to_ascii_lowercase(), host.to_ascii_lowercase());
    let host = host.trim_end_matches('.');
    match name.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => name == host,
    }
}

fn coverage(r: &mut Report, sans: &[String], opts: &Options<'_>) {
    if sans.is_empty() {
        r.add(
            Status::Fail,
            "SAN",
            "no DNS names: clients ignore the CN; reissue with `mcp-gateway certs init --tunnel-domain …`",
        );
        return;
    }
    if !opts.hosts.is_empty() {
        let missing: Vec<&String> = opts
            .hosts
            .iter()
            .filter(|h| !sans.iter().any(|n| covers(n, h)))
            .collect();
        if missing.is_empty() {
            r.add(
                Status::Pass,
                "SAN coverage",
                format!("covers {}", opts.hosts.join(", ")),
            );
        } else {
            let hint = opts
                .tunnel_domain
                .map(|d| format!("`*.{d}` or each host"))
                .unwrap_or_else(|| "each host".into());
            r.add(
                Status::Fail,
                "SAN coverage",
                format!(
                    "does not cover {}: the SAN must include {hint} (TLS handshakes fail otherwise)",
                    missing
                        .iter()
                        .map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        return;
    }
    if let Some(d) = opts.tunnel_domain {
        let d = d.trim_matches('.').to_ascii_lowercase();
        let wildcard = format!("*.{d}");
        if sans.contains(&wildcard) {
            r.add(
                Status::Pass,
                "SAN coverage",
                format!("`{wildcard}` covers every route host of the tunnel"),
            );
        } else {
            let some: Vec<&String> = sans
                .iter()
                .filter(|n| n.split_once('.').is_some_and(|(_, rest)| rest == d))
                .collect();
            if some.is_empty() {
                r.add(
                    Status::Fail,
                    "SAN coverage",
                    format!("no name under {d}: the SAN must include `{wildcard}` (or each `<route>.{d}`)"),
                );
            } else {
                r.add(
                    Status::Warn,
                    "SAN coverage",
                    format!(
                        "no `{wildcard}`; covers only {}: every route host must be listed",
                        some.iter()
                            .map(|h| h.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
}

fn eku(r: &mut Report, cert: &X509Certificate<'_>) {
    match cert.extended_key_usage() {
        Ok(None) => r.add(Status::Pass, "extended key usage", "none (any use)"),
        Ok(Some(e)) if e.value.server_auth || e.value.any => {
            r.add(Status::Pass, "extended key usage", "serverAuth")
        }
        Ok(Some(_)) => r.add(
            Status::Fail,
            "extended key usage",
            "present without serverAuth: TLS clients refuse it as a server certificate",
        ),
        Err(e) => r.add(
            Status::Fail,
            "extended key usage",
            format!("unreadable: {e}"),
        ),
    }
}

pub(super) fn key_match_into(r: &mut Report, cert: &X509Certificate<'_>, key_pem: &[u8]) {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(e) => {
            r.add(
                Status::Fail,
                "private key",
                format!("no usable PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {e}"),
            );
            return;
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let spki = provider
        .key_provider
        .load_private_key(key)
        .ok()
        .and_then(|k| k.public_key().map(|spki| spki.as_ref().to_vec()));
    match spki {
        None => r.add(
            Status::Fail,
            "private key",
            "cannot be loaded (unsupported type or corrupt)",
        ),
        Some(spki) if spki == cert.public_key().raw => {
            r.add(Status::Pass, "private key", "matches the certificate")
        }
        Some(_) => r.add(
            Status::Fail,
            "private key",
            "does NOT match the certificate: tls.key belongs to another certificate; keep the pair together",
        ),
    }
}

fn chain(r: &mut Report, cert: &X509Certificate<'_>, ca: &X509Certificate<'_>) {
    if cert.issuer().as_raw() == ca.subject().as_raw() {
        r.add(
            Status::Pass,
            "issuer",
            format!("is the CA ({})", ca.subject()),
        );
    } else {
        r.add(
            Status::Fail,
            "issuer",
            format!(
                "{} is not the CA ({}): the tunnel wants the server certificate signed directly by a registered CA",
                cert.issuer(),
                ca.subject()
            ),
        );
    }
    match (aki(cert), ski(ca)) {
        (Some(a), Some(s)) if a == s => {
            r.add(Status::Pass, "AKI = CA SKI", hex::encode(a));
        }
        (Some(a), Some(s)) => r.add(
            Status::Fail,
            "AKI = CA SKI",
            format!(
                "authority key id {} ≠ CA subject key id {}: signed by another CA",
                hex::encode(a),
                hex::encode(s)
            ),
        ),
        (None, _) => r.add(Status::Fail, "AKI = CA SKI", "the certificate has no AKI"),
        (_, None) => r.add(Status::Fail, "AKI = CA SKI", "the CA has no SKI"),
    }
    match cert.verify_signature(Some(ca.public_key())) {
        Ok(()) => r.add(Status::Pass, "signed by CA", "signature verifies with the CA's key"),
        Err(e) => r.add(
            Status::Fail,
            "signed by CA",
            format!("signature does NOT verify with the CA's key ({e}): register the CA that issued it, or reissue"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(covers("*.t.example.test", "crm.t.example.test"));
        assert!(covers("*.T.example.test", "CRM.t.example.test."));
        assert!(!covers("*.t.example.test", "a.b.t.example.test"));
        assert!(!covers("*.t.example.test", "t.example.test"));
        assert!(covers("crm.t.example.test", "crm.t.example.test"));
        assert!(!covers("crm.t.example.test", "docs.t.example.test"));
    }

    #[test]
    fn issued_pair_passes_every_rule() {
        let i = super::super::issue("t.example.test", super::super::KeyKind::EcdsaP256).unwrap();
        let opts = Options {
            tunnel_domain: Some("t.example.test"),
            key_pem: Some(i.key_pem.as_bytes()),
            ca_pem: Some(i.ca_cert_pem.as_bytes()),
            ..Options::default()
        };
        let r = inspect(i.cert_pem.as_bytes(), "tls.crt", &opts).unwrap();
        assert!(
            r.findings.iter().all(|f| f.status == Status::Pass),
            "{:#?}",
            r.findings
        );
        let ca = inspect(i.ca_cert_pem.as_bytes(), "ca.crt", &Options::default()).unwrap();
        assert!(
            ca.findings.iter().all(|f| f.status == Status::Pass),
            "{:#?}",
            ca.findings
        );
        assert!(
            ca.facts
                .iter()
                .any(|(k, v)| *k == "kind" && v.contains("CA"))
        );
    }

    #[test]
    fn another_ca_and_another_key_fail() {
        let i = super::super::issue("t.example.test", super::super::KeyKind::EcdsaP256).unwrap();
        let other =
            super::super::issue("t.example.test", super::super::KeyKind::EcdsaP256).unwrap();
        let opts = Options {
            tunnel_domain: Some("other.test"),
            key_pem: Some(other.key_pem.as_bytes()),
            ca_pem: Some(other.ca_cert_pem.as_bytes()),
            ..Options::default()
        };
        let r = inspect(i.cert_pem.as_bytes(), "tls.crt", &opts).unwrap();
        assert!(!r.passed());
        let failed: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .map(|f| f.check.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "SAN coverage",
                "private key",
                "AKI = CA SKI",
                "signed by CA"
            ],
            "{:#?}",
            r.findings
        );
    }
}
