//! What a guest can reach cannot block or vary (issue 12 §1): a policy that sleeps is denied as a `timeout`
//! within its deadline, its evaluation slot is free again and other routes never notice; the clocks read one
//! instant per evaluation; random bytes are one fixed stream. And the contract is versioned: a component
//! built against an older `mcp:policy` is refused at load with a message that says to rebuild it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use mcp_gateway::demo::upstream;
use serde_json::{Value, json};

use crate::common::{Gw, TD, call, wasm};

async fn bind(policies: &str, routes: &str) -> anyhow::Result<Gw> {
    let dir = tempfile::tempdir().unwrap();
    mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
        .unwrap()
        .write_to(dir.path())
        .unwrap();
    let yaml = format!(
        "listen_addr: 127.0.0.1:0\nshutdown_timeout: 2s\ntunnel_domain: {TD}\ntls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key}}\n\
         upstream: {{allowed_ips: [127.0.0.0/8]}}\naudit: {{dir: {d}/audit}}\npolicies:\n  cache_dir: {d}/cache\n{policies}\nroutes:\n{routes}\n",
        d = dir.path().display()
    );
    let config = mcp_gateway::config::from_yaml(&yaml, Path::new("test.yaml"))?;
    let server = mcp_gateway::server::Server::bind(config).await?;
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Ok(Gw {
        dir,
        addr,
        stop: Some(tx),
        task,
    })
}

async fn route(name: &str, chain: &str) -> String {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    format!(
        "  {name}: {{ upstream: 'http://{}', policies: {chain} }}\n",
        up.addr
    )
}

fn search(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"query": "q"}}})
}

fn text(v: &Value) -> String {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_policy_is_denied_as_timeout_and_other_routes_never_notice() {
    // Two evaluation slots; eight calls to a policy that sleeps an hour would hold both for that hour if a
    // guest could block.
    let policies = format!(
        "  max_concurrency: 2\n  modules:\n    sleepy: {{ path: {h}, settings: {{ mode: sleep }}, limits: {{ timeout_ms: 300 }} }}\n    \
         allow: {{ path: {a}, settings: {{ allow: ['*'] }} }}",
        h = wasm("hostile_policy").display(),
        a = wasm("tool_allowlist").display()
    );
    let routes = format!(
        "{}{}",
        route("sleepy", "[sleepy]").await,
        route("good", "[allow]").await
    );
    let gw = Arc::new(bind(&policies, &routes).await.unwrap());
    let started = Instant::now();
    let sleepers: Vec<_> = (0..8)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(20), call(&gw, "sleepy", search(i), &[]))
                    .await
                    .expect("a sleeping policy held its call")
            })
        })
        .collect();
    for _ in 0..5 {
        let (status, v) =
            tokio::time::timeout(Duration::from_secs(20), call(&gw, "good", search(100), &[]))
                .await
                .expect("the good route stalled behind a sleeping policy");
        assert_eq!(status, StatusCode::OK);
        assert!(text(&v).contains("results"), "{v}");
    }
    for s in sleepers {
        let (status, v) = s.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["result"]["isError"], true, "{v}");
        assert!(
            text(&v).contains("Blocked by policy 'sleepy'") && text(&v).contains("timed out"),
            "{v}"
        );
    }
    eprintln!(
        "8 sleeping evaluations and 5 good calls answered in {:?}",
        started.elapsed()
    );
    Arc::into_inner(gw).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sees_one_instant_per_evaluation_and_a_fixed_random_stream() {
    let policies = format!(
        "  modules:\n    clock: {{ path: {h}, settings: {{ mode: clock }} }}\n    random: {{ path: {h}, settings: {{ mode: random }} }}",
        h = wasm("hostile_policy").display()
    );
    let routes = format!(
        "{}{}",
        route("clock", "[clock]").await,
        route("random", "[random]").await
    );
    let gw = bind(&policies, &routes).await.unwrap();
    let mut walls = Vec::new();
    for i in 0..2 {
        let (_, v) = call(&gw, "clock", search(i), &[]).await;
        let t = text(&v);
        // "… clock: wall <w1> <w2> monotonic-elapsed <ns>. …"
        let words: Vec<&str> = t
            .split("clock: wall ")
            .nth(1)
            .unwrap_or_else(|| panic!("{t}"))
            .split([' ', '.'])
            .collect();
        let (w1, w2, elapsed) = (words[0], words[1], words[3]);
        assert_eq!(w1, w2, "the wall clock moved during one evaluation: {t}");
        assert_eq!(
            elapsed, "0",
            "the monotonic clock moved during one evaluation: {t}"
        );
        let w: u128 = w1.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(
            now - w < 60_000_000_000,
            "the instant is the evaluation's, not made up: {t}"
        );
        walls.push(w);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        walls[1] > walls[0],
        "each evaluation reads its own instant: {walls:?}"
    );
    let (_, a) = call(&gw, "random", search(1), &[]).await;
    let (_, b) = call(&gw, "random", search(2), &[]).await;
    let bytes = |v: &Value| {
        let t = text(v);
        t.split("random: ").nth(1).unwrap_or_else(|| panic!("{t}"))[..32].to_owned()
    };
    assert_eq!(
        bytes(&a),
        bytes(&b),
        "random bytes differ between evaluations"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_against_an_older_contract_is_refused_with_a_rebuild_message() {
    let dir = tempfile::tempdir().unwrap();
    // The same component with every `mcp:policy@0.2.0` name turned into `@0.1.0` (same length, so the
    // binary stays well-formed): what a policy built with the 0.1 SDK imports.
    let mut bytes = std::fs::read(wasm("tool_allowlist")).unwrap();
    let (from, to) = (b"mcp:policy/log@0.2.0", b"mcp:policy/log@0.1.0");
    let mut patched = 0;
    for i in 0..bytes.len().saturating_sub(from.len()) {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            patched += 1;
        }
    }
    assert!(patched > 0);
    let old = dir.path().join("old.wasm");
    std::fs::write(&old, bytes).unwrap();
    let e = bind(
        &format!(
            "  modules:\n    old: {{ path: {}, settings: {{ allow: ['*'] }} }}",
            old.display()
        ),
        "  crm: { upstream: 'http://127.0.0.1:9', policies: [old] }\n",
    )
    .await
    .err()
    .expect("an 0.1 component was loaded");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("policy `old` was built against mcp:policy@0.1.0")
            && msg.contains("rebuild it with the policy-sdk of this gateway"),
        "{msg}"
    );
}
