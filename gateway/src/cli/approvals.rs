//! `mcp-gateway approvals list|show|approve|deny`: the approvers' API ([`crate::approvals::api`]) from a
//! terminal. `--admin` is the admin listener's URL, `--token` (or `MCP_GATEWAY_APPROVER_TOKEN`) the
//! approver's bearer token.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct Conn {
    /// The gateway's admin listener.
    #[arg(long, default_value = "http://127.0.0.1:9090", global = true)]
    admin: String,
    /// The approver's bearer token.
    #[arg(
        long,
        env = "MCP_GATEWAY_APPROVER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approval requests, newest first.
    List {
        /// pending, approved, denied, expired or all.
        #[arg(long, default_value = "pending")]
        status: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One approval request in full.
    Show { id: String },
    /// Approve a request: the held call proceeds (or its identical retry passes).
    Approve {
        id: String,
        #[arg(long, short = 'm')]
        comment: Option<String>,
    },
    /// Deny a request: the held call is refused.
    Deny {
        id: String,
        #[arg(long, short = 'm')]
        comment: Option<String>,
    },
}

pub fn run(conn: Conn, cmd: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (method, path, body) = match &cmd {
            ApprovalsCommand::List { status, limit } => (
                http::Method::GET,
                format!("/approvals?status={status}&limit={limit}"),
                None,
            ),
            ApprovalsCommand::Show { id } => (http::Method::GET, format!("/approvals/{id}"), None),
            ApprovalsCommand::Approve { id, comment } => (
                http::Method::POST,
                format!("/approvals/{id}/approve"),
                Some(json!({"comment": comment})),
            ),
            ApprovalsCommand::Deny { id, comment } => (
                http::Method::POST,
                format!("/approvals/{id}/deny"),
                Some(json!({"comment": comment})),
            ),
        };
        let v = call(&conn, method, &path, body).await?;
        if conn.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::SUCCESS);
        }
        match cmd {
            ApprovalsCommand::List { .. } => {
                let items = v["approvals"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    println!("no approval requests");
                }
                for a in items {
                    println!(
                        "{}  {:<8}  {}/{}  caller={}  age={}s  {}: {}",
                        s(&a["id"]),
                        s(&a["status"]),
                        s(&a["route"]),
                        s(&a["tool"]),
                        a["principal"].as_str().unwrap_or("-"),
                        a["age_seconds"],
                        s(&a["policy"]),
                        s(&a["reason"]),
                    );
                }
            }
            ApprovalsCommand::Show { .. } => println!("{}", serde_json::to_string_pretty(&v)?),
            ApprovalsCommand::Approve { .. } | ApprovalsCommand::Deny { .. } => println!(
                "{} {} by {}",
                s(&v["id"]),
                s(&v["status"]),
                s(&v["approver"])
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

impl Conn {
    pub fn json(&self) -> bool {
        self.json
    }
}

/// One admin API call on its own runtime (for the other operator commands, e.g. `tools`).
pub fn request(
    conn: &Conn,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(call(conn, method, path, body))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

async fn call(
    conn: &Conn,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let Some(token) = conn.token.as_deref() else {
        bail!("give the approver's token with --token or MCP_GATEWAY_APPROVER_TOKEN");
    };
    let url = format!("{}{path}", conn.admin.trim_end_matches('/'));
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!(
            "--admin must be an http:// URL (the admin listener is plain HTTP on a private interface)"
        );
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .context("the admin listener did not answer within 30s")?
        .with_context(|| format!("cannot reach {}", conn.admin))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = v["error"].as_str().map(str::to_owned).unwrap_or_else(|| {
            if status == http::StatusCode::NOT_FOUND && v.is_null() {
                "not found (are approvals configured on this gateway?)".to_owned()
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            }
        });
        bail!("HTTP {status}: {msg}");
    }
    Ok(v)
}
