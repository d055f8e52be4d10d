//! `mcp-gateway tools changes|accept`: tool definitions that changed since they were pinned
//! ([`crate::pins`]). `changes --config FILE` reads the pins where that config's gateway keeps them — the
//! approval store's PostgreSQL database, or the pins file beside the audit directory (no running gateway
//! needed); otherwise both go through the admin API ([`crate::admin::tools`]) with an
//! approver's token.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::approvals::Conn;

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Pending tool definition changes (hidden or refused until accepted).
    Changes {
        /// Read the pins file of this config's gateway directly instead of asking the admin API.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Accept the new definition of TOOL on ROUTE: it becomes the pin and the tool is served again.
    Accept { route: String, tool: String },
}

pub fn run(conn: Conn, cmd: ToolsCommand) -> anyhow::Result<ExitCode> {
    let v = match &cmd {
        ToolsCommand::Changes { config: Some(path) } => {
            let config = crate::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let changes = match config.approvals.as_ref().map(|a| &a.store) {
                Some(crate::config::StoreSettings::Postgres(pg)) => {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(crate::pins::postgres::read_changes(pg))
                        .with_context(|| {
                            format!("reading the tool pins of PostgreSQL {}", pg.target)
                        })?
                }
                _ => {
                    let Some(dir) = crate::server::effective_audit_dir(&config) else {
                        anyhow::bail!(
                            "auditing is disabled in {}: the pins then live in the running gateway's memory only; ask its admin API (drop --config)",
                            path.display()
                        );
                    };
                    let file = crate::pins::Pins::path_beside(&dir);
                    crate::pins::read_changes(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                }
            };
            serde_json::json!({ "changes": changes })
        }
        ToolsCommand::Changes { config: None } => {
            super::approvals::request(&conn, http::Method::GET, "/tools/changes", None)?
        }
        ToolsCommand::Accept { route, tool } => super::approvals::request(
            &conn,
            http::Method::POST,
            &format!("/tools/changes/{}/{}/accept", enc(route), enc(tool)),
            None,
        )?,
    };
    if conn.json() {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        ToolsCommand::Changes { .. } => {
            let items = v["changes"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no pending tool changes");
            }
            for c in items {
                let fields: Vec<&str> = c["changed"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!(
                    "{}/{}  changed: {}  {} -> {}  seen {}",
                    s(&c["route"]),
                    s(&c["tool"]),
                    fields.join(","),
                    s(&c["old_digest"]),
                    s(&c["new_digest"]),
                    s(&c["seen_at"]),
                );
            }
        }
        ToolsCommand::Accept { .. } => println!(
            "{}/{} accepted by {} ({})",
            s(&v["route"]),
            s(&v["tool"]),
            s(&v["accepted_by"]),
            s(&v["new_digest"])
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// Percent-encodes a path segment.
fn enc(seg: &str) -> String {
    seg.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
