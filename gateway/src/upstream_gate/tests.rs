//! Unit tests of `upstream_gate.rs`.

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
