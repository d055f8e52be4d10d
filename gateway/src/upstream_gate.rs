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
pub(crate) mod tests;
