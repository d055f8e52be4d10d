//! Command line: `serve` (also reached with Anthropic's `-config FILE` form), `demo`,
//! `certs init|renew|inspect`, `check`, `probe`, `policy new|check|eval|test`, `audit verify|query|tail|stats`,
//! `approvals list|show|approve|deny`, `sample-upstream`.

mod approvals;
mod audit;
mod certs;
mod check;
mod mcp_client;
mod policy;
mod policy_input;
mod policy_new;
mod probe;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

#[derive(Debug, Parser)]
#[command(name = "mcp-gateway", version, about = "Policy gateway for MCP traffic", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default; `mcp-gateway -config FILE` works as with Anthropic's proxy).
    Serve {
        /// Config file (Anthropic's proxy schema plus mcp-gateway's extensions).
        #[arg(long, short = 'c', default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Sets the tunnel domain over the config file's `tunnel_domain` (also after a reload), as Anthropic's
        /// chart passes it to the proxy container (`-tunnel-domain D`).
        #[arg(long, value_name = "DOMAIN")]
        tunnel_domain: Option<String>,
    },
    /// Self-contained demo: throwaway CA, a sample MCP server, the gateway in front, a few calls through it.
    Demo,
    /// Certificates for the inner TLS.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Preflight: every item the gateway needs (config, TLS key and certificate, each route's IP gate and MCP
    /// answer, policies, audit directory), each ✓ / ✗ with the fix. Exit code 0 only if nothing failed.
    Check {
        #[arg(long, short = 'c', default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Machine-readable output (for CI).
        #[arg(long)]
        json: bool,
        /// Path of the MCP endpoint on the upstreams.
        #[arg(long, default_value = "/mcp")]
        path: String,
        /// Bound on each network step.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// A certificate with less validity left is a warning.
        #[arg(long, default_value = "720h", value_parser = certs::parse_duration)]
        warn_within: time::Duration,
    },
    /// Call a gateway the way a client does — connect to ADDR with the URL's host as SNI and Host — and show the
    /// decision path: TLS, HTTP status, request id, JSON-RPC answer (gateway error codes explained), tools.
    Probe {
        /// e.g. https://crm.abcd1234.tunnel.anthropic.com/mcp
        url: String,
        /// Address to connect to instead of resolving the URL's host (like curl --resolve).
        #[arg(long)]
        connect: Option<String>,
        /// CA certificate to trust (the tunnel CA, e.g. ca.crt); default: the system roots.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Also call this tool.
        #[arg(long)]
        call: Option<String>,
        /// Arguments of --call, as JSON.
        #[arg(long, requires = "call")]
        args: Option<String>,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Tools for policy authors: scaffold a policy crate, load and check a component, evaluate it on a request,
    /// run fixture files.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Tools for auditors: verify the audit log's hash chain and signatures, query, tail, stats.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// For approvers: list, show, approve or deny calls held for approval (through the admin listener's API).
    Approvals {
        #[command(flatten)]
        conn: approvals::Conn,
        #[command(subcommand)]
        command: approvals::ApprovalsCommand,
    },
    /// For operators: tool definitions that changed since they were pinned — list them, accept one.
    Tools {
        #[command(flatten)]
        conn: approvals::Conn,
        #[command(subcommand)]
        command: tools::ToolsCommand,
    },
    /// Run the sample upstream MCP server used by the demo and the benchmarks (plain HTTP, path /mcp).
    SampleUpstream {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
}

/// Rewrites Go-style single-dash long flags (`-config`, `-tunnel-domain`) and a missing subcommand into `serve`.
fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = args
        .into_iter()
        .map(|a| match a.as_str() {
            "-config" | "-tunnel-domain" => format!("-{a}"),
            s if s.starts_with("-config=") || s.starts_with("-tunnel-domain=") => format!("-{s}"),
            _ => a,
        })
        .collect();
    let first = out.get(1).map(String::as_str);
    let needs_serve = match first {
        None => true,
        Some(f) => f.starts_with('-') && !matches!(f, "-h" | "--help" | "-V" | "--version"),
    };
    if needs_serve {
        out.insert(1.min(out.len()), "serve".to_owned());
    }
    out
}

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args()));
    let result = match cli.command {
        Command::Serve {
            config,
            tunnel_domain,
        } => serve(config, config::Overrides { tunnel_domain }),
        Command::Demo => runtime().and_then(|rt| rt.block_on(crate::demo::run())),
        Command::Certs { command } => return exit(certs::run(command)),
        Command::Check {
            config,
            json,
            path,
            timeout,
            warn_within,
        } => {
            return exit(check::run(check::CheckOptions {
                config,
                json,
                path,
                timeout,
                warn_within,
            }));
        }
        Command::Probe {
            url,
            connect,
            ca,
            call,
            args,
            timeout,
        } => {
            return exit(probe::run(probe::ProbeOptions {
                url,
                connect,
                ca,
                call,
                args,
                timeout,
            }));
        }
        Command::Policy { command } => return exit(policy::run(command)),
        Command::Audit { command } => audit::run(command),
        Command::Approvals { conn, command } => return exit(approvals::run(conn, command)),
        Command::Tools { conn, command } => return exit(tools::run(conn, command)),
        Command::SampleUpstream { listen } => runtime().and_then(|rt| {
            rt.block_on(async {
                let sample = crate::demo::upstream::spawn(listen).await?;
                eprintln!(
                    "sample MCP upstream listening on http://{}/mcp",
                    sample.addr
                );
                tokio::select! {
                    r = sample.task => r??,
                    () = crate::server::shutdown_signal() => {}
                }
                Ok(())
            })
        }),
    };
    exit(result.map(|()| ExitCode::SUCCESS))
}

/// The exit code of a command; an error is printed with its causes.
fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::error_class::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(path: PathBuf, overrides: config::Overrides) -> anyhow::Result<()> {
    let config = config::load_with(&path, &overrides)?;
    crate::telemetry::init(&config.log);
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "starting mcp-gateway");
    if let Some(d) = &config.overrides.tunnel_domain {
        tracing::info!(tunnel_domain = %d, "tunnel_domain set by -tunnel-domain (over the config file's)");
    }
    let relative = config.relative_paths.clone();
    let result = runtime()?.block_on(async {
        let server = crate::server::Server::bind(config)
            .await?
            .with_config_file(path);
        server.run(crate::server::shutdown_signal()).await
    });
    // An error about a file the config named relative says where that path came from.
    result.map_err(|e| {
        let message = crate::error_class::error_chain(e.as_ref());
        match config::paths::explain(&relative, &message) {
            Some(why) => anyhow::anyhow!("{message} {why}"),
            None => e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_args;

    fn n(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn anthropic_flag_form_runs_serve() {
        assert_eq!(
            n(&["gw", "-config", "/x.yaml"]),
            ["gw", "serve", "--config", "/x.yaml"]
        );
        assert_eq!(
            n(&["gw", "-config=/x.yaml"]),
            ["gw", "serve", "--config=/x.yaml"]
        );
        assert_eq!(n(&["gw"]), ["gw", "serve"]);
        assert_eq!(
            n(&["gw", "serve", "--config", "c"]),
            ["gw", "serve", "--config", "c"]
        );
        assert_eq!(
            n(&["gw", "-config", "/x.yaml", "-tunnel-domain", "t.example"]),
            [
                "gw",
                "serve",
                "--config",
                "/x.yaml",
                "--tunnel-domain",
                "t.example"
            ]
        );
        assert_eq!(
            n(&["gw", "-tunnel-domain=t.example"]),
            ["gw", "serve", "--tunnel-domain=t.example"]
        );
        assert_eq!(n(&["gw", "--help"]), ["gw", "--help"]);
        assert_eq!(n(&["gw", "demo"]), ["gw", "demo"]);
    }
}
