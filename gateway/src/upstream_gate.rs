//! Stage 3 — upstream IP gate: resolve the route's upstream and admit it only if every address falls inside
//! `allowed_ips` (IPv4-mapped IPv6 compared as IPv4).
//!
//! The result is a [`GatedAddrs`], which only this module can build, and the forwarder dials only those
//! addresses — never the name again — so a DNS answer that changes between check and connect (rebinding)
//! cannot slip another address in.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{IpPolicy, UpstreamUrl};

/// Why an upstream may not be dialled.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("IP validation failed: {ip} is not in allowed_ips")]
    NotAllowed { ip: IpAddr },
    #[error("cannot resolve upstream host {host:?}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("upstream host {host:?} resolved to no address")]
    NoAddress { host: String },
}

/// Addresses that passed the gate, in resolver order. Only [`UpstreamGate::check`] makes one.
#[derive(Debug, Clone)]
pub struct GatedAddrs {
    addrs: Vec<SocketAddr>,
}

impl GatedAddrs {
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Name resolution, replaceable in tests (to simulate rebinding).
pub trait Resolve: Send + Sync + std::fmt::Debug {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamGate {
    policy: IpPolicy,
    resolver: Arc<dyn Resolve>,
}

impl UpstreamGate {
    pub fn new(policy: IpPolicy, resolver: Arc<dyn Resolve>) -> Self {
        UpstreamGate { policy, resolver }
    }

    /// Resolves `upstream` (IP literals need no lookup) and checks every address.
    pub async fn check(&self, upstream: &UpstreamUrl) -> Result<GatedAddrs, GateError> {
        let addrs = match upstream.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, upstream.port)],
            Err(_) => self
                .resolver
                .resolve(&upstream.host, upstream.port)
                .await
                .map_err(|source| GateError::Resolve {
                    host: upstream.host.clone(),
                    source,
                })?,
        };
        if addrs.is_empty() {
            return Err(GateError::NoAddress {
                host: upstream.host.clone(),
            });
        }
        // Every address must pass: a name that sometimes points outside the allowed networks is refused outright.
        for a in &addrs {
            if !self.allows(a.ip()) {
                return Err(GateError::NotAllowed {
                    ip: a.ip().to_canonical(),
                });
            }
        }
        Ok(GatedAddrs { addrs })
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        match &self.policy {
            IpPolicy::Disabled => true,
            IpPolicy::Allowed(nets) => {
                let ip = ip.to_canonical();
                nets.iter().any(|n| n.contains(&ip))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::validate::parse_upstream;
    use std::sync::Mutex;

    /// Answers each lookup with the next of a fixed list of answers (the last one repeats).
    #[derive(Debug)]
    pub struct ScriptedResolver(pub Mutex<Vec<Vec<SocketAddr>>>);

    impl Resolve for ScriptedResolver {
        fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> ResolveFuture<'a> {
            let mut answers = self.0.lock().unwrap();
            let next = if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            };
            Box::pin(async move { Ok(next) })
        }
    }

    fn gate(nets: &[&str], answers: Vec<Vec<&str>>) -> UpstreamGate {
        let answers = answers
            .into_iter()
            .map(|a| a.into_iter().map(|s| s.parse().unwrap()).collect())
            .collect();
        UpstreamGate::new(
            IpPolicy::Allowed(nets.iter().map(|n| n.parse().unwrap()).collect()),
            Arc::new(ScriptedResolver(Mutex::new(answers))),
        )
    }

    #[tokio::test]
    async fn default_is_rfc1918_ipv4_only() {
        let g = UpstreamGate::new(IpPolicy::rfc1918(), Arc::new(SystemResolver));
        for ok in [
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(g.allows(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "172.32.0.1",
            "169.254.169.254",
            "8.8.8.8",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!g.allows(bad.parse().unwrap()), "{bad}");
        }
        let e = g
            .check(&parse_upstream("http://127.0.0.1:80").unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "IP validation failed: 127.0.0.1 is not in allowed_ips"
        );
    }

    #[tokio::test]
    async fn ipv6_networks_and_mapped_addresses() {
        let g = gate(
            &["fd00::/8", "127.0.0.0/8"],
            vec![vec!["[::ffff:127.0.0.1]:80"]],
        );
        assert!(g.allows("fd12::1".parse().unwrap()));
        assert!(!g.allows("fe80::1".parse().unwrap()));
        let ok = g
            .check(&parse_upstream("http://name.test:80").unwrap())
            .await
            .unwrap();
        assert_eq!(ok.addrs().len(), 1);
        let e = g
            .check(&parse_upstream("http://[::ffff:8.8.8.8]:80").unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "IP validation failed: 8.8.8.8 is not in allowed_ips"
        );
    }

    #[tokio::test]
    async fn any_address_outside_refuses_the_whole_answer() {
        let g = gate(
            &["10.0.0.0/8"],
            vec![vec!["10.0.0.5:80", "169.254.169.254:80"]],
        );
        let e = g
            .check(&parse_upstream("http://svc.test:80").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, GateError::NotAllowed { ip } if ip.to_string() == "169.254.169.254"));
    }

    #[tokio::test]
    async fn rebinding_gets_the_checked_address_or_a_refusal() {
        // First lookup is private, the second (an attacker's short-TTL rebinding) points at the metadata service.
        let g = gate(
            &["10.0.0.0/8"],
            vec![vec!["10.0.0.5:80"], vec!["169.254.169.254:80"]],
        );
        let up = parse_upstream("http://svc.test:80").unwrap();
        let first = g.check(&up).await.unwrap();
        assert_eq!(
            first.addrs(),
            &["10.0.0.5:80".parse::<SocketAddr>().unwrap()]
        );
        assert!(matches!(
            g.check(&up).await.unwrap_err(),
            GateError::NotAllowed { .. }
        ));
    }

    #[tokio::test]
    async fn disabled_admits_anything() {
        let g = UpstreamGate::new(IpPolicy::Disabled, Arc::new(SystemResolver));
        assert!(
            g.check(&parse_upstream("http://8.8.8.8:80").unwrap())
                .await
                .is_ok()
        );
    }
}
