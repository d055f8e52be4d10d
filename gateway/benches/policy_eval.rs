//! One policy evaluation as the gateway runs it: a fresh pooled instance in a fresh limited store, per
//! request. Stock policies on a typical `tools/call`, and chains of 1, 4 and 16 policies.
//!
//! Needs the components: `bash policies/build.sh`. Run: `cargo bench -p mcp-gateway --bench policy_eval`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_gateway::catalogue::Catalogue;
use mcp_gateway::config::{ModuleLimits, ModuleSpec, PolicyConfig, PolicyMode};
use mcp_gateway::mcp::{Payload, jsonrpc};
use mcp_gateway::policy::bindings::types::RequestContext;
use mcp_gateway::policy::engine::PolicyEngine;
use mcp_gateway::policy::{evaluate_blocking, module};
use serde_json::json;

fn wasm(name: &str) -> PathBuf {
    let dir = std::env::var_os("MCP_POLICY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/policy")
        });
    dir.join(format!("{name}.wasm"))
}

fn spec(name: &str, file: &str, settings: serde_json::Value) -> ModuleSpec {
    ModuleSpec {
        name: name.into(),
        path: wasm(file),
        sha256: None,
        settings: settings.to_string(),
        mode: PolicyMode::Enforce,
        limits: ModuleLimits::default(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let allow = spec(
        "allowlist",
        "tool_allowlist",
        json!({"allow": ["search_*", "get_customer"]}),
    );
    let guard = spec(
        "guard",
        "mutation_guard",
        json!({"deny": ["drop_*"], "require_approval": ["delete_*"]}),
    );
    let config = PolicyConfig {
        modules: vec![allow.clone(), guard.clone()],
        cache_dir: None,
        max_concurrency: 1,
    };
    let engine = PolicyEngine::new(&config).unwrap();
    let load = |s: &ModuleSpec| Arc::new(module::load(&engine, s).unwrap());
    let (allowlist, mutation_guard) = (load(&allow), load(&guard));

    let catalogue = Catalogue::default();
    catalogue.learn(&[json!({"name": "search_docs", "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}},
        "annotations": {"readOnlyHint": true, "openWorldHint": false}})]);
    let body = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "search_docs", "arguments": {"query": "refund policy for enterprise customers"}}})
    .to_string();
    let Payload::Single(msg) = jsonrpc::parse(body.as_bytes()).unwrap() else {
        unreachable!()
    };
    let ctx = RequestContext {
        route: "crm".into(),
        host: "crm.abcd.tunnel.example.com".into(),
        client_address: "10.1.2.3".into(),
        principal: None,
        session_id: None,
        protocol_version: Some("2026-07-28".into()),
        request_id: "0199a1b2-0000-7000-8000-000000000000".into(),
    };

    let mut g = c.benchmark_group("one policy, fresh instance per evaluation");
    for (name, m) in [
        ("tool-allowlist", &allowlist),
        ("mutation-guard", &mutation_guard),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let v = evaluate_blocking(
                    &engine,
                    std::slice::from_ref(m),
                    ctx.clone(),
                    &msg,
                    &catalogue,
                );
                assert!(v.is_allow());
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("chain");
    for n in [1usize, 4, 16] {
        let chain: Vec<_> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    allowlist.clone()
                } else {
                    mutation_guard.clone()
                }
            })
            .collect();
        g.bench_function(format!("{n} policies"), |b| {
            b.iter(|| {
                let v = evaluate_blocking(&engine, &chain, ctx.clone(), &msg, &catalogue);
                assert!(v.is_allow());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
