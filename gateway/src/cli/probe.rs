//! `mcp-gateway probe URL [--connect ADDR] [--ca FILE] [--call TOOL --args JSON]`: what people get wrong when
//! testing a gateway by hand, done right — connect to ADDR while sending the URL's host as SNI and `Host`,
//! then show the decision path: the TLS handshake and certificate (subject, SAN match, chain), and for each MCP
//! request the HTTP status, the `x-gateway-request-id`, and the JSON-RPC result or error with the gateway's
//! error codes explained.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::mcp_client::{self, Answer, Step, Target};
use crate::certs::inspect::{self, Status};

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub url: String,
    pub connect: Option<String>,
    pub ca: Option<PathBuf>,
    pub call: Option<String>,
    pub args: Option<String>,
    pub timeout: Duration,
}

pub fn run(o: ProbeOptions) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = rt.block_on(probe(&o))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What a JSON-RPC error code from the gateway means and where to look.
pub fn explain(code: i64) -> Option<&'static str> {
    Some(match code {
        -32001 => {
            "routing (-32001): the gateway has no route for this host, or Host ≠ SNI. The URL's host must be a \
             `routes` key or `<route>.<tunnel_domain>`; check tunnel_domain, the route keys, and restart after config edits"
        }
        -32002 => {
            "IP gate (-32002): the route's upstream resolves outside upstream.allowed_ips (which REPLACES the RFC 1918 \
             default) or does not resolve; the gateway log has `IP validation failed: <ip>`; `mcp-gateway check` shows the addresses"
        }
        -32003 => {
            "upstream (-32003): the gateway could not get an answer from the upstream MCP server (down, refused, \
             timed out, TLS to it failed); the gateway log has the cause under this request id"
        }
        -32004 => {
            "audit (-32004): the audit log cannot be written (disk full, I/O error), so nothing is forwarded until it recovers"
        }
        -31001 => {
            "policy (-31001): a policy refused this method; the message names the policy and the reason"
        }
        -32602 => {
            "invalid params (-32602): for tools/call `Unknown tool` — the tool does not exist or a policy hides it"
        }
        -32020 => "header mismatch (-32020): an Mcp-Method/Mcp-Name header disagrees with the body",
        -32600 | -32700 => "malformed request: the body is not a valid JSON-RPC 2.0 request",
        -32601 => "method not found (-32601): the server does not implement this method",
        _ => return None,
    })
}

/// Records the certificate the server presented, whatever the verdict, and delegates the verdict.
#[derive(Debug)]
struct Capture {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("capture lock") = Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

struct Url {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(s: &str) -> anyhow::Result<Url> {
    let uri: http::Uri = s.parse().with_context(|| format!("`{s}` is not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => anyhow::bail!("`{s}`: the URL must start with https:// (or http://)"),
    };
    let host = uri
        .host()
        .with_context(|| format!("`{s}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") => "/".to_owned(),
        Some(p) => p.to_owned(),
    };
    Ok(Url {
        https,
        host,
        port,
        path,
    })
}

async fn probe(o: &ProbeOptions) -> anyhow::Result<bool> {
    let url = parse_url(&o.url)?;
    let addr: SocketAddr = match &o.connect {
        Some(c) => match c.parse() {
            Ok(a) => a,
            Err(_) => tokio::net::lookup_host(c.as_str())
                .await
                .with_context(|| format!("--connect {c}: not an address (host:port)"))?
                .next()
                .with_context(|| format!("--connect {c} resolved to nothing"))?,
        },
        None => tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("cannot resolve {}; pass --connect ADDR", url.host))?
            .next()
            .with_context(|| format!("{} resolved to nothing; pass --connect ADDR", url.host))?,
    };
    let default_port = if url.https { 443 } else { 80 };
    let authority = if url.port == default_port {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    println!(
        "probe {} — connecting to {addr}, SNI {}, Host {authority}",
        o.url, url.host
    );

    let tls = if url.https {
        match tls_step(o, &url, addr).await? {
            Some(t) => Some(t),
            None => return Ok(false),
        }
    } else {
        println!("TLS\n  - plain http: no TLS (the gateway's listener needs https://)");
        None
    };
    let target = Target {
        addr,
        host: authority,
        path: url.path.clone(),
        tls,
        timeout: o.timeout,
    };

    println!("MCP");
    let (steps, session) = mcp_client::open(&target).await?;
    let mut ok = true;
    for s in &steps {
        ok &= show(s, None);
    }
    let Some(session) = session else {
        println!("FAIL: no MCP session could be opened (see the last answer above)");
        return Ok(false);
    };
    println!(
        "  = session: protocol {}{}",
        session.era,
        if session.server.is_empty() {
            String::new()
        } else {
            format!(", server {}", session.server)
        }
    );
    let list = session
        .request(&target, 10, "tools/list", json!({}), None)
        .await?;
    let names: Vec<String> = list
        .result()
        .and_then(|r| r["tools"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ok &= show(&list, Some(&names));
    if let Some(tool) = &o.call {
        let args: Value = match &o.args {
            Some(a) => {
                serde_json::from_str(a).with_context(|| format!("--args is not JSON: {a}"))?
            }
            None => json!({}),
        };
        let call = session
            .request(
                &target,
                11,
                "tools/call",
                json!({"name": tool, "arguments": args}),
                Some(tool.as_str()),
            )
            .await?;
        ok &= show(&call, None);
    }
    println!(
        "{}",
        if ok {
            "OK"
        } else {
            "FAIL: see the lines marked ✗"
        }
    );
    Ok(ok)
}

/// Handshakes once to show the certificate and whether it verifies; returns the connector for the MCP steps.
async fn tls_step(
    o: &ProbeOptions,
    url: &Url,
    addr: SocketAddr,
) -> anyhow::Result<Option<(tokio_rustls::TlsConnector, ServerName<'static>)>> {
    println!("TLS");
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = match &o.ca {
        Some(p) => {
            let pem =
                std::fs::read(p).with_context(|| format!("cannot read --ca {}", p.display()))?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                roots.add(c.with_context(|| format!("--ca {}", p.display()))?)?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "--ca {} holds no certificate",
                p.display()
            );
            Some(pem)
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "no system CA certificates found; pass --ca FILE (the tunnel CA, e.g. ca.crt)"
            );
            None
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let capture = Arc::new(Capture {
        inner,
        seen: Mutex::new(None),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let sni = ServerName::try_from(url.host.clone())
        .with_context(|| format!("{} cannot be an SNI name", url.host))?;

    let tcp = match tokio::time::timeout(o.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            println!(
                "  ✗ connect {addr}: {e}\nFAIL: nothing listens there (is the gateway running? is --connect right?)"
            );
            return Ok(None);
        }
        Err(_) => {
            println!("  ✗ connect {addr}: timed out after {:?}\nFAIL", o.timeout);
            return Ok(None);
        }
    };
    let handshake = tokio::time::timeout(o.timeout, connector.connect(sni.clone(), tcp)).await;
    let seen = capture.seen.lock().expect("capture lock").clone();
    let verdict = match handshake {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            println!(
                "  ✓ handshake: {}, ALPN {}",
                conn.protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default(),
                conn.alpn_protocol()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .unwrap_or_else(|| "none".into())
            );
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake within {:?}", o.timeout)),
    };
    if let Some(der) = &seen {
        let pem = to_pem(der.as_ref());
        let opts = inspect::Options {
            hosts: vec![url.host.clone()],
            ca_pem: ca_pem.as_deref(),
            ..inspect::Options::default()
        };
        let report = inspect::inspect(pem.as_bytes(), "server certificate", &opts)?;
        for (k, v) in report
            .facts
            .iter()
            .filter(|(k, _)| matches!(*k, "subject" | "issuer" | "SAN" | "key"))
        {
            println!("    {k:<8} {v}");
        }
        for f in &report.findings {
            if f.status != Status::Pass
                || matches!(
                    f.check.as_str(),
                    "validity" | "SAN coverage" | "signed by CA"
                )
            {
                println!(
                    "  {} {}: {}",
                    super::certs::mark(f.status),
                    f.check,
                    f.detail
                );
            }
        }
    }
    match verdict {
        Ok(()) => {
            println!(
                "  ✓ chain: verified against {}",
                o.ca.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the system roots".into())
            );
            Ok(Some((connector, sni)))
        }
        Err(e) => {
            println!("  ✗ handshake failed: {e}");
            println!("{}", tls_hint(&e));
            println!("FAIL");
            Ok(None)
        }
    }
}

/// A certificate as PEM text (for [`inspect::inspect`], which reads PEM).
fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn tls_hint(e: &str) -> &'static str {
    if e.contains("UnknownIssuer") || e.contains("BadSignature") {
        // BadSignature: a CA of the same name but another key (e.g. a second `certs init`).
        "  = the certificate was not issued by the CA you trust here: pass the tunnel CA with --ca (e.g. ca.crt from `certs init`)"
    } else if e.contains("NotValidForName") || e.contains("not valid for name") {
        "  = the certificate's SAN does not cover this host name: it must include `*.<tunnel_domain>` (see `certs inspect`)"
    } else if e.contains("Expired") || e.contains("expired") {
        "  = the certificate has expired: `mcp-gateway certs renew`"
    } else if e.contains("wrong version number")
        || e.contains("InvalidContentType")
        || e.contains("corrupt message")
    {
        "  = the other side does not speak TLS here (a plain HTTP port?)"
    } else {
        "  = see the gateway log for `tls handshake failed`"
    }
}

/// Prints one step; false when it is a failure.
fn show(s: &Step, tool_names: Option<&[String]>) -> bool {
    let rid = s
        .request_id()
        .map(|r| format!(", x-gateway-request-id {r}"))
        .unwrap_or_else(|| ", no x-gateway-request-id (not a gateway?)".into());
    let head = format!("{}: HTTP {}{rid}", s.method, s.status.as_u16());
    match &s.answer {
        Answer::Result(r) => {
            if r.get("isError") == Some(&Value::Bool(true)) {
                let text = r["content"][0]["text"].as_str().unwrap_or("");
                println!("  ✗ {head}: isError result: {text}");
                if text.starts_with("Blocked by policy") {
                    println!(
                        "    = policy: the route's policy chain refused this call (the reason is above)"
                    );
                }
                return false;
            }
            let what = match (s.method.as_str(), tool_names) {
                ("tools/list", Some(names)) => {
                    format!("{} tool(s): {}", names.len(), names.join(", "))
                }
                ("server/discover", _) => format!(
                    "versions {}",
                    r["supportedVersions"]
                        .as_array()
                        .map(|v| v
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                ),
                ("initialize", _) => {
                    format!("protocol {}", r["protocolVersion"].as_str().unwrap_or("?"))
                }
                ("tools/call", _) => r["content"][0]["text"]
                    .as_str()
                    .map(|t| format!("result: {t}"))
                    .unwrap_or_else(|| "result".into()),
                _ => "result".into(),
            };
            println!("  ✓ {head}: {what}");
            true
        }
        Answer::Error { code, message, .. } => {
            // A modern probe the server does not know is how the fallback to `initialize` starts.
            let fallback = s.method == "server/discover" && !(-32004..=-32001).contains(code);
            println!(
                "  {} {head}: error {code} {message}",
                if fallback { "-" } else { "✗" }
            );
            if fallback {
                println!(
                    "    = the server does not speak 2026-07-28; trying initialize (2025-11-25)"
                );
            } else if let Some(x) = explain(*code) {
                println!("    = {x}");
            }
            fallback
        }
        Answer::Empty => {
            let ok = s.status.is_success();
            println!("  {} {head}", if ok { "✓" } else { "✗" });
            ok
        }
        Answer::Other(t) => {
            let fallback = s.method == "server/discover";
            println!("  {} {head}: {t}", if fallback { "-" } else { "✗" });
            fallback
        }
    }
}
