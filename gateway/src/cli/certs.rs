//! `mcp-gateway certs init | renew | inspect`: the tunnel's certificates made, renewed and explained.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use sha2::Digest as _;

use crate::certs::inspect::{self, Report, Status};
use crate::certs::renew::{self, Renewal};
use crate::certs::{self, KeyKind};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA (ECDSA P-256, 5 years) and a server certificate for `*.<tunnel-domain>` (90 days) in DIR:
    /// ca.crt (register it with the tunnel), ca.key, tls.crt, tls.key. Keys are written 0600, DIR 0700.
    Init {
        #[arg(long)]
        tunnel_domain: String,
        #[arg(long)]
        out: PathBuf,
        /// Key type of the server certificate.
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        key_type: KeyKind,
        /// Overwrite an existing CA or key in DIR (a registered CA is lost).
        #[arg(long)]
        force: bool,
    },
    /// Reissue the server certificate from the existing CA when less than --renew-before is left (otherwise a
    /// no-op). Same SAN, a fresh key of the same type; files replaced atomically so a running gateway reloads them.
    Renew {
        /// Renew when less validity than this is left: `720h`, `30d`, `90m`.
        #[arg(long, default_value = "720h", value_parser = parse_duration)]
        renew_before: time::Duration,
        /// Directory holding tls.crt, tls.key, ca.crt, ca.key (each overridable below).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        #[arg(long)]
        ca_key: Option<PathBuf>,
        /// Write the new tls.crt/tls.key into this directory instead of replacing the current files.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity of the new certificate (capped at the CA's expiry).
        #[arg(long, default_value = "2160h", value_parser = parse_duration)]
        cert_duration: time::Duration,
        /// Key type of the new key (default: the current certificate's).
        #[arg(long, value_enum)]
        key_type: Option<KeyKind>,
        /// Keep the current key instead of making a new one.
        #[arg(long, conflicts_with = "key_type")]
        keep_key: bool,
    },
    /// Explain a certificate against the tunnel's rules: expiry, SAN coverage, key type, key match, chain to
    /// the CA, EKU, CA flags. Exit code 1 when a rule fails.
    Inspect {
        /// PEM certificate (a server certificate or a CA).
        file: PathBuf,
        /// The tunnel domain the SAN must cover (`*.<domain>`).
        #[arg(long)]
        tunnel_domain: Option<String>,
        /// Private key that must match the certificate.
        #[arg(long)]
        key: Option<PathBuf>,
        /// CA certificate that must have signed it directly.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Less validity than this left is reported as expiring soon.
        #[arg(long, default_value = "720h", value_parser = parse_duration)]
        warn_within: time::Duration,
    },
}

/// `720h`, `30d`, `90m`, `1h30m` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 720h, 30d or 90m: {e}"))?;
    time::Duration::try_from(d).map_err(|e| e.to_string())
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertsCommand::Init {
            tunnel_domain,
            out,
            key_type,
            force,
        } => init(&tunnel_domain, &out, key_type, force).map(|()| ExitCode::SUCCESS),
        CertsCommand::Renew {
            renew_before,
            dir,
            cert,
            key,
            ca_cert,
            ca_key,
            out,
            cert_duration,
            key_type,
            keep_key,
        } => {
            let opts = renew::RenewOptions {
                cert: cert.unwrap_or_else(|| dir.join("tls.crt")),
                key: key.unwrap_or_else(|| dir.join("tls.key")),
                ca_cert: ca_cert.unwrap_or_else(|| dir.join("ca.crt")),
                ca_key: ca_key.unwrap_or_else(|| dir.join("ca.key")),
                out_dir: out,
                renew_before,
                cert_duration,
                key_kind: key_type,
                keep_key,
                now: time::OffsetDateTime::now_utc(),
            };
            renew_cmd(&opts).map(|()| ExitCode::SUCCESS)
        }
        CertsCommand::Inspect {
            file,
            tunnel_domain,
            key,
            ca,
            warn_within,
        } => {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
            let pem = read(&file)?;
            let key_pem = key.as_deref().map(read).transpose()?;
            let ca_pem = ca.as_deref().map(read).transpose()?;
            let opts = inspect::Options {
                tunnel_domain: tunnel_domain.as_deref(),
                key_pem: key_pem.as_deref(),
                ca_pem: ca_pem.as_deref(),
                warn_within,
                ..inspect::Options::default()
            };
            let report = inspect::inspect(&pem, &file.display().to_string(), &opts)?;
            println!("{}", file.display());
            print_report(&report, "  ");
            let problems = report
                .findings
                .iter()
                .filter(|f| f.status == Status::Fail)
                .count();
            if problems == 0 {
                println!("OK: the certificate meets the tunnel's rules that could be checked");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("FAIL: {problems} problem(s)");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Prints facts, then one ✓ / ! / ✗ line per finding.
pub fn print_report(r: &Report, indent: &str) {
    for (k, v) in &r.facts {
        println!("{indent}{k:<10} {v}");
    }
    for f in &r.findings {
        println!("{indent}{} {}: {}", mark(f.status), f.check, f.detail);
    }
}

pub fn mark(s: Status) -> &'static str {
    match s {
        Status::Pass => "✓",
        Status::Warn => "!",
        Status::Fail => "✗",
    }
}

fn init(tunnel_domain: &str, out: &Path, kind: KeyKind, force: bool) -> anyhow::Result<()> {
    let tunnel_domain = tunnel_domain.trim().trim_matches('.').to_ascii_lowercase();
    anyhow::ensure!(
        !tunnel_domain.is_empty() && !tunnel_domain.contains(['*', '/', ':', ' ']),
        "--tunnel-domain must be a domain name like abcd1234.tunnel.anthropic.com"
    );
    if !force {
        for f in ["ca.key", "tls.key"] {
            let p = out.join(f);
            anyhow::ensure!(
                !p.exists(),
                "{} already exists; a CA registered with the tunnel would be lost. Use `certs renew` to reissue the \
                 server certificate, another --out, or --force to replace everything",
                p.display()
            );
        }
    }
    let issued = certs::issue(&tunnel_domain, kind)?;
    issued
        .write_to(out)
        .with_context(|| format!("cannot write the certificates into {}", out.display()))?;
    let d = out.display();
    let ca_der = certs::first_der(issued.ca_cert_pem.as_bytes(), "ca.crt")?;
    println!("wrote, in {d}:");
    println!(
        "  ca.crt   CA certificate (ECDSA P-256, {} days)",
        certs::CA_DAYS
    );
    println!(
        "  ca.key   CA private key, mode 0600 — keep it offline or in a secret store; `certs renew` needs it"
    );
    println!(
        "  tls.crt  server certificate for *.{tunnel_domain} ({}, {} days, signed directly by the CA)",
        kind.label(),
        certs::SERVER_DAYS
    );
    println!("  tls.key  server private key, mode 0600 — readable by the gateway's user only");
    println!();
    println!("Upload to the Anthropic Console (your MCP tunnel → certificate authorities):");
    println!(
        "  {d}/ca.crt  ({} bytes, SHA-256 fingerprint {})",
        issued.ca_cert_pem.len(),
        fingerprint(&ca_der)
    );
    println!("  Never upload ca.key or tls.key.");
    println!();
    println!("Point the gateway at the server pair (config.yaml):");
    println!("  tunnel_domain: {tunnel_domain}");
    println!("  tls: {{ cert_file: {d}/tls.crt, key_file: {d}/tls.key }}");
    println!(
        "Renew daily before it expires: mcp-gateway certs renew --dir {d} --renew-before 720h"
    );
    Ok(())
}

/// Colon-separated uppercase hex SHA-256 of a DER certificate (as the Console and openssl show it).
fn fingerprint(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn renew_cmd(opts: &renew::RenewOptions) -> anyhow::Result<()> {
    match renew::renew(opts)? {
        Renewal::NotDue { left, not_after } => {
            println!(
                "{}: {} left (until {}), more than --renew-before {}: nothing to do",
                opts.cert.display(),
                inspect::human(left),
                inspect::rfc3339(not_after),
                inspect::human(opts.renew_before)
            );
        }
        Renewal::Renewed {
            cert,
            key,
            old_left,
            not_after,
            sans,
            key_label,
            new_key,
        } => {
            let was = if old_left.is_negative() {
                format!("had expired {} ago", inspect::human(old_left))
            } else {
                format!("had {} left", inspect::human(old_left))
            };
            println!("renewed: the old certificate {was}");
            println!(
                "  {}  SAN {}, valid until {}, signed by {}",
                cert.display(),
                sans.join(", "),
                inspect::rfc3339(not_after),
                opts.ca_cert.display()
            );
            if new_key {
                println!("  {}  new {key_label} key, mode 0600", key.display());
            } else {
                println!("  {}  {key_label} as before", key.display());
            }
            println!("A running gateway loads the new pair at its next tls.reload_interval poll.");
        }
    }
    Ok(())
}
