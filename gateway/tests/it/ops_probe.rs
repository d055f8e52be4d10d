//! `mcp-gateway probe` against a running gateway (in-process, 127.0.0.1 only) in front of the sample MCP
//! upstream: the good path, a tool call, an unknown host (-32001 explained) and an untrusted certificate.

use crate::common;

use std::process::{Command, Output};

use common::{Gw, TD};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn probe(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .arg("probe")
            .args(["--timeout", "5s"])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn gateway() -> Gw {
    let sample = mcp_gateway::demo::upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Gw::start(
        &format!("  crm: http://{}", sample.addr),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await
}

fn args(gw: &Gw, host: &str, ca: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        format!("https://{host}:{}/mcp", gw.addr.port()),
        "--connect".into(),
        gw.addr.to_string(),
        "--ca".into(),
        ca.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn good_path_shows_tls_request_ids_and_tools() {
    let gw = gateway().await;
    let ca = gw.dir.path().join("ca.crt");
    let o = probe(args(
        &gw,
        &format!("crm.{TD}"),
        &ca,
        &["--call", "search_docs", "--args", r#"{"query":"refunds"}"#],
    ))
    .await;
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "SNI crm.t.example.test, Host crm.t.example.test:",
        "✓ handshake: TLSv1_3",
        "✓ SAN coverage: covers crm.t.example.test",
        "✓ signed by CA",
        "✓ chain: verified against",
        "server/discover: HTTP 200, x-gateway-request-id ",
        "session: protocol 2026-07-28",
        "tools/list: HTTP 200",
        "6 tool(s): search_docs",
        "tools/call: HTTP 200",
        "result: 3 results for \"refunds\"",
        "\nOK",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_is_explained_as_routing() {
    let gw = gateway().await;
    let ca = gw.dir.path().join("ca.crt");
    let o = probe(args(&gw, &format!("nope.{TD}"), &ca, &[])).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        "✓ chain: verified",
        "server/discover: HTTP 421, x-gateway-request-id",
        "error -32001 No route configured for host 'nope.t.example.test'",
        "= routing (-32001): the gateway has no route for this host",
        "FAIL",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // A gateway refusal is final: no fallback to initialize.
    assert!(!out.contains("initialize"), "{out}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_certificate_is_explained() {
    let gw = gateway().await;
    let other = tempfile::tempdir().unwrap();
    mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(other.path())
        .unwrap();
    let o = probe(args(
        &gw,
        &format!("crm.{TD}"),
        &other.path().join("ca.crt"),
        &[],
    ))
    .await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        "✗ signed by CA",
        "✗ handshake failed",
        "not issued by the CA you trust here",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        !out.contains("MCP\n"),
        "no MCP step after a failed handshake:\n{out}"
    );
    gw.stop().await;
}
