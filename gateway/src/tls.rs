//! Stage 1 — inner TLS: the server identity (PEM chain + key, RSA or ECDSA), TLS 1.2/1.3, ALPN `h2` and
//! `http/1.1`, and hot reload of the certificate files without dropping connections.
//!
//! Loading checks what users get wrong (unreadable key, key/cert mismatch, SAN not covering the routes) and
//! says how to fix it. A reload that fails keeps the old identity and says why.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read TLS key file {path}: permission denied (the gateway runs as uid {uid}). Make the key readable by \
         uid {uid}, e.g. `chown {uid} {path}` or mode 0640 with a group the gateway is in (Anthropic's container runs as 65532)"
    )]
    KeyPermission { path: PathBuf, uid: u32 },
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable private key (PKCS#8, PKCS#1 RSA or SEC1 EC, PEM): {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("the certificate in {cert} does not match the private key in {key}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {cert} cannot be parsed: {detail}")]
    BadCertificate { cert: PathBuf, detail: String },
    #[error(
        "the certificate in {cert} does not cover host {host:?} (route `{route}`): its SAN must include {wanted}"
    )]
    NotCovered {
        cert: PathBuf,
        host: String,
        route: String,
        wanted: String,
    },
}

/// Loads and checks the identity named in config.
pub fn load_identity(config: &Config) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_file = &config.tls.cert_file;
    let key_file = &config.tls.key_file;
    let chain = read_chain(cert_file)?;
    let key = read_key(key_file)?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_file.clone(),
            key: key_file.clone(),
        },
        other => TlsError::BadKey {
            path: key_file.clone(),
            detail: other.to_string(),
        },
    })?;
    check_coverage(&ck, config)?;
    Ok(Arc::new(ck))
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| {
        if what == "TLS key file" && source.kind() == io::ErrorKind::PermissionDenied {
            TlsError::KeyPermission {
                path: path.to_owned(),
                uid: rustix::process::getuid().as_raw(),
            }
        } else {
            TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file("TLS certificate file", path)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            cert: path.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file("TLS key file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::BadKey {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// Every route's public host name must be covered by the leaf certificate's SAN.
fn check_coverage(ck: &CertifiedKey, config: &Config) -> Result<(), TlsError> {
    let cert_file = &config.tls.cert_file;
    let leaf = webpki::EndEntityCert::try_from(ck.end_entity_cert().map_err(|e| {
        TlsError::BadCertificate {
            cert: cert_file.clone(),
            detail: e.to_string(),
        }
    })?)
    .map_err(|e| TlsError::BadCertificate {
        cert: cert_file.clone(),
        detail: e.to_string(),
    })?;
    for route in &config.routes {
        let (host, wanted) = match config.tunnel_domain.as_deref() {
            Some(td) if !route.key.ends_with(td) => {
                let host = format!("{}.{td}", route.key);
                let wanted = format!("`*.{td}` or `{host}`");
                (host, wanted)
            }
            _ => (route.key.clone(), format!("`{}`", route.key)),
        };
        let Ok(name) = ServerName::try_from(host.as_str()) else {
            continue; // IP-literal or otherwise non-DNS keys cannot be SNI names; routing refuses them anyway.
        };
        if leaf.verify_is_valid_for_subject_name(&name).is_err() {
            return Err(TlsError::NotCovered {
                cert: cert_file.clone(),
                host,
                route: route.key.clone(),
                wanted,
            });
        }
    }
    Ok(())
}

/// Serves the current identity; [`spawn_reloader`] swaps it when the files change.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server config: TLS 1.2 and 1.3, ALPN h2 then http/1.1, identity from `resolver`.
pub fn server_config(resolver: Arc<ReloadingResolver>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(8192);
    Arc::new(cfg)
}

impl ReloadingResolver {
    pub fn new(initial: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(ReloadingResolver {
            current: ArcSwap::new(initial),
        })
    }

    /// The identity new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Serves `ck` from the next handshake on (a config reload uses it when it loaded the identity itself).
    pub fn set(&self, ck: Arc<CertifiedKey>) {
        self.current.store(ck);
    }
}

/// The leaf certificate's validity period (notBefore, notAfter) as Unix seconds, if it parses.
pub fn validity(ck: &CertifiedKey) -> Option<(i64, i64)> {
    let der = ck.end_entity_cert().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn fingerprint(config: &Config) -> Vec<Option<(SystemTime, u64)>> {
    [&config.tls.cert_file, &config.tls.key_file]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

/// Polls the certificate and key files of the serving config (`config` gives it; a config reload may change
/// the paths); when either file changes, loads and checks them and swaps the identity. Open connections keep
/// the identity they were made with; new handshakes get the new one.
pub fn spawn_reloader(
    resolver: Arc<ReloadingResolver>,
    config: impl Fn() -> Arc<Config> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut watched = config();
        let mut seen = fingerprint(&watched);
        loop {
            tokio::time::sleep(watched.tls.reload_interval).await;
            let latest = config();
            if latest.tls.cert_file != watched.tls.cert_file
                || latest.tls.key_file != watched.tls.key_file
            {
                // The config reload that changed the paths loaded the identity from them already.
                seen = fingerprint(&latest);
                watched = latest;
                continue;
            }
            watched = latest;
            let now = fingerprint(&watched);
            if now == seen {
                continue;
            }
            seen = now;
            let cfg = watched.clone();
            match tokio::task::spawn_blocking(move || load_identity(&cfg)).await {
                Ok(Ok(ck)) => {
                    resolver.set(ck);
                    tracing::info!(cert_file = %watched.tls.cert_file.display(), "tls certificate reloaded");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "tls certificate reload failed; still serving the previous certificate")
                }
                Err(e) => tracing::error!(error = %e, "tls certificate reload task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;
    use crate::config::from_yaml;

    fn config(dir: &Path, routes: &str) -> Config {
        let yaml = format!(
            "tunnel_domain: t.example.test\ntls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key}}\nroutes: {{{routes}}}",
            d = dir.display()
        );
        from_yaml(&yaml, Path::new("test.yaml")).unwrap()
    }

    #[test]
    fn issued_identity_loads_and_covers_routes() {
        let dir = tempfile::tempdir().unwrap();
        certs::issue("t.example.test", certs::KeyKind::EcdsaP256)
            .unwrap()
            .write_to(dir.path())
            .unwrap();
        let c = config(
            dir.path(),
            "docs: 'http://10.0.0.1:80', crm.t.example.test: 'http://10.0.0.1:80'",
        );
        let ck = load_identity(&c).unwrap();
        let (not_before, not_after) = validity(&ck).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            not_before <= now && now < not_after,
            "{not_before} {now} {not_after}"
        );
        // certs::issue makes 90-day server certificates.
        assert!(
            (not_after - now - 90 * 86400).abs() < 2 * 86400,
            "{}",
            not_after - now
        );
    }

    #[test]
    fn cert_not_covering_a_route_is_named() {
        let dir = tempfile::tempdir().unwrap();
        certs::issue("other.test", certs::KeyKind::EcdsaP256)
            .unwrap()
            .write_to(dir.path())
            .unwrap();
        let e = load_identity(&config(dir.path(), "docs: 'http://10.0.0.1:80'")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("does not cover host \"docs.t.example.test\"")
                && msg.contains("*.t.example.test"),
            "{msg}"
        );
    }

    #[test]
    fn key_of_another_cert_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        certs::issue("t.example.test", certs::KeyKind::EcdsaP256)
            .unwrap()
            .write_to(dir.path())
            .unwrap();
        let other = tempfile::tempdir().unwrap();
        certs::issue("t.example.test", certs::KeyKind::EcdsaP256)
            .unwrap()
            .write_to(other.path())
            .unwrap();
        std::fs::copy(other.path().join("tls.key"), dir.path().join("tls.key")).unwrap();
        let e = load_identity(&config(dir.path(), "docs: 'http://10.0.0.1:80'")).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    }

    #[test]
    fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_identity(&config(dir.path(), "docs: 'http://10.0.0.1:80'"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.crt") && e.contains("No such file"), "{e}");
    }

    #[test]
    fn unreadable_key_names_path_uid_and_fix() {
        let e = TlsError::KeyPermission {
            path: "/data/tls.key".into(),
            uid: 65532,
        }
        .to_string();
        assert!(
            e.contains("/data/tls.key") && e.contains("uid 65532") && e.contains("chown 65532"),
            "{e}"
        );
    }
}
