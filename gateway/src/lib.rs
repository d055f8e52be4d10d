//! mcp-gateway: a policy gateway for MCP (Model Context Protocol) traffic.
//!
//! The request path, one module per stage (see `ARCHITECTURE.md`):
//! [`server`] (accept + [`tls`]) → [`pipeline`]: [`route`] → [`identity`] → [`upstream_gate`] → [`mcp`] → [`policy`] →
//! [`forward`], with [`reply`] the only place errors become responses. Beside it: [`reload`] (the serving
//! generation, swapped on config change), [`admin`] (health, readiness, [`metrics`], the [`approvals`] API
//! and page).

pub mod admin;
pub mod approvals;
pub mod arguments;
pub mod audit;
pub mod audit_stage;
pub mod body;
pub mod body_watch;
pub mod catalogue;
pub mod certs;
pub mod cli;
pub mod config;
pub mod ctx;
pub mod demo;
pub mod egress;
pub mod error;
pub mod error_class;
pub mod filter;
pub mod forward;
pub mod identity;
pub mod mcp;
pub mod metrics;
pub mod otel;
pub mod outbound;
pub mod pg;
pub mod pins;
pub mod pipeline;
pub mod policy;
pub mod reload;
pub mod reply;
pub mod route;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod tunnel;
pub mod upstream_gate;
