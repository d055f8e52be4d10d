//! The gateway's integration tests, one module per area, linked into a single test binary: each binary
//! links wasmtime, cranelift and the whole gateway, so one binary instead of sixteen saves minutes of
//! linking and gigabytes of disk on every CI run. Run one area with `cargo test --test it proxy::`.

mod audit_support;
mod common;

mod admin;
mod admin_reload;
mod approval_store;
mod approvals;
mod approvals_jwt;
mod approvals_replicas;
mod approvals_webhook;
mod audit;
mod audit_crash;
mod audit_outcome;
mod audit_pipeline;
mod audit_sync;
mod audit_tamper;
mod cli;
mod deploy;
mod fuzz_regressions;
mod identity;
mod layers;
mod leaks;
mod ops_certs;
mod ops_check;
mod ops_probe;
mod ops_rotation;
mod otel;
mod outbound;
mod pins;
mod policies;
mod proxy;
mod sandbox;
mod tunnel;
