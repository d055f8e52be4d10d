//! Stage 2 — hostname routing: `Host` (or `:authority`) → route, and the route must agree with the TLS SNI.
//!
//! Lookup follows Anthropic's proxy: the exact full host first, then the host with `.<tunnel_domain>` stripped.
//! A request whose Host routes differently from its SNI is refused (no domain fronting), as is one without SNI.

use std::collections::HashMap;

use crate::config::{Config, RouteSpec};

/// Index of a route in [`RouteTable::routes`].
pub type RouteId = usize;

/// Why a request has no route. All fail closed before any upstream is contacted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("no route for host {host:?}")]
    NoRoute { host: String },
    #[error("request has no Host header or :authority")]
    MissingHost,
    #[error("Host {host:?} is not a valid host name")]
    BadHost { host: String },
    #[error("TLS client sent no SNI; connect using the route's host name")]
    MissingSni,
    #[error("Host {host:?} does not match TLS SNI {sni:?}")]
    SniMismatch { host: String, sni: String },
}

/// The immutable routing table built from config.
#[derive(Debug)]
pub struct RouteTable {
    by_key: HashMap<String, RouteId>,
    /// `.<tunnel_domain>`, with the leading dot.
    suffix: Option<String>,
}

impl RouteTable {
    pub fn new(config: &Config) -> Self {
        Self::from_specs(&config.routes, config.tunnel_domain.as_deref())
    }

    pub fn from_specs(routes: &[RouteSpec], tunnel_domain: Option<&str>) -> Self {
        RouteTable {
            by_key: routes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.key.clone(), i))
                .collect(),
            suffix: tunnel_domain.map(|d| format!(".{d}")),
        }
    }

    /// Routes a normalised host name.
    pub fn lookup(&self, host: &str) -> Option<RouteId> {
        if let Some(&id) = self.by_key.get(host) {
            return Some(id);
        }
        let sub = host.strip_suffix(self.suffix.as_deref()?)?;
        self.by_key.get(sub).copied()
    }

    /// Routes a request: `raw_host` as received (port, case and trailing dot allowed), `sni` from the handshake.
    pub fn route(
        &self,
        raw_host: Option<&str>,
        sni: Option<&str>,
    ) -> Result<(RouteId, String), RouteError> {
        let host = normalize_host(raw_host.ok_or(RouteError::MissingHost)?)?;
        let id = self
            .lookup(&host)
            .ok_or_else(|| RouteError::NoRoute { host: host.clone() })?;
        let sni = sni.ok_or(RouteError::MissingSni)?;
        let sni_host = normalize_host(sni).unwrap_or_else(|_| sni.to_owned());
        if sni_host != host && self.lookup(&sni_host) != Some(id) {
            return Err(RouteError::SniMismatch {
                host,
                sni: sni_host,
            });
        }
        Ok((id, host))
    }
}

/// `Docs.Example.COM.:8443` → `docs.example.com`; `[::1]:443` → `::1`.
pub fn normalize_host(raw: &str) -> Result<String, RouteError> {
    let bad = || RouteError::BadHost {
        host: raw.to_owned(),
    };
    let raw = raw.trim();
    let host = if let Some(v6) = raw.strip_prefix('[') {
        v6.split_once(']').ok_or_else(bad)?.0
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return Err(bad()),
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if !valid {
        return Err(bad());
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::parse_upstream;

    fn table() -> RouteTable {
        let spec = |k: &str| RouteSpec {
            key: k.into(),
            upstream: parse_upstream("http://10.0.0.1:80").unwrap(),
            policies: vec![],
            chain_written: None,
            validate_arguments: true,
            redact: None,
            require_identity: false,
            on_tool_change: Default::default(),
        };
        RouteTable::from_specs(
            &[spec("docs"), spec("crm"), spec("api.internal.corp")],
            Some("t.example.com"),
        )
    }

    #[test]
    fn host_is_normalised() {
        assert_eq!(
            normalize_host("Docs.T.Example.com.:8443").unwrap(),
            "docs.t.example.com"
        );
        assert_eq!(normalize_host("[::1]:443").unwrap(), "::1");
        assert_eq!(normalize_host("docs").unwrap(), "docs");
        assert!(normalize_host("docs:abc").is_err());
        assert!(normalize_host("a b").is_err());
        assert!(normalize_host("").is_err());
    }

    #[test]
    fn exact_host_then_tunnel_suffix() {
        let t = table();
        assert_eq!(t.lookup("docs.t.example.com"), Some(0));
        assert_eq!(t.lookup("crm.t.example.com"), Some(1));
        assert_eq!(t.lookup("api.internal.corp"), Some(2));
        assert_eq!(t.lookup("docs"), Some(0));
        assert_eq!(t.lookup("x.docs.t.example.com"), None);
        assert_eq!(t.lookup("docs.t.example.com.evil"), None);
        assert_eq!(t.lookup("docst.example.com"), None);
    }

    #[test]
    fn unknown_host_is_refused() {
        let e = table()
            .route(Some("nope.t.example.com"), Some("nope.t.example.com"))
            .unwrap_err();
        assert_eq!(
            e,
            RouteError::NoRoute {
                host: "nope.t.example.com".into()
            }
        );
        assert_eq!(
            table().route(None, Some("docs.t.example.com")).unwrap_err(),
            RouteError::MissingHost
        );
    }

    #[test]
    fn host_must_agree_with_sni() {
        let t = table();
        assert_eq!(
            t.route(Some("DOCS.t.example.com:8443"), Some("docs.t.example.com"))
                .unwrap(),
            (0, "docs.t.example.com".into())
        );
        let e = t
            .route(Some("crm.t.example.com"), Some("docs.t.example.com"))
            .unwrap_err();
        assert!(matches!(e, RouteError::SniMismatch { .. }), "{e}");
        let e = t
            .route(Some("crm.t.example.com"), Some("unknown.t.example.com"))
            .unwrap_err();
        assert!(matches!(e, RouteError::SniMismatch { .. }), "{e}");
        assert_eq!(
            t.route(Some("crm.t.example.com"), None).unwrap_err(),
            RouteError::MissingSni
        );
    }
}
