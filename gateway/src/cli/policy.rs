//! `mcp-gateway policy …`: what a policy author runs before a policy reaches a gateway.
//!
//! - `check WASM [--settings JSON]`: load it as the gateway would (import allow-list, settings validation);
//!   list imports and exports.
//! - `eval WASM --settings JSON --request FILE [--repeat N]`: decide one request and time it.
//! - `test DIR`: run fixture files (request + expected decision) and report each.
//!
//! A request file holds the MCP message as on the wire, and optionally the route context and the upstream's
//! tool list (so annotations and schemas are what the gateway would see):
//! `{"message": {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{…}}, "context": {"route":"crm"},
//!   "tools": [{"name":"delete_customer","annotations":{"destructiveHint":true}}]}`.
//! A fixture adds `"policy"` (path relative to the fixture), `"settings"`, and
//! `"expect": "allow" | "deny" | "require_approval" | "hidden"` with optional `"reason_contains"`; a file may
//! also hold `{"cases": [ … ]}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::Value;

use crate::catalogue::Catalogue;
use crate::config::{ModuleLimits, ModuleSpec, PolicyMode};
use crate::mcp::{Payload, jsonrpc};
use crate::policy::bindings::types::{Principal, RequestContext};
use crate::policy::engine::PolicyEngine;
use crate::policy::module::{self, PolicyModule};
use crate::policy::verdict::{Answer, Outcome, Verdict};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a component as the gateway would and validate its settings.
    Check {
        wasm: PathBuf,
        /// Settings as JSON (default `{}`).
        #[arg(long, default_value = "{}")]
        settings: String,
        #[arg(long, default_value_t = 16)]
        memory_mb: u64,
    },
    /// Evaluate a component on one request and print the decision and the time it took.
    Eval {
        wasm: PathBuf,
        #[arg(long, default_value = "{}")]
        settings: String,
        /// Request file (see `mcp-gateway policy --help`).
        #[arg(long)]
        request: PathBuf,
        /// Evaluate this many times and report the median and p99.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        #[arg(long, default_value_t = 50)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 16)]
        memory_mb: u64,
    },
    /// Run every fixture (`*.json`) in a directory.
    Test { dir: PathBuf },
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    // Evaluations expect a tokio runtime to exist (WASI's sync adapters use it), as they do in the gateway.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    match cmd {
        PolicyCommand::Check {
            wasm,
            settings,
            memory_mb,
        } => check(&wasm, &settings, memory_mb),
        PolicyCommand::Eval {
            wasm,
            settings,
            request,
            repeat,
            timeout_ms,
            memory_mb,
        } => {
            let limits = ModuleLimits {
                memory_bytes: memory_mb << 20,
                timeout: Duration::from_millis(timeout_ms),
                fuel: None,
            };
            let (engine, m) = load(&wasm, &settings, limits)?;
            let req = read_json(&request)?;
            let (verdict, times) = eval(&engine, &m, &req, repeat.max(1))?;
            print_verdict(&verdict);
            let mut times = times;
            times.sort();
            let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
            println!(
                "time: {:?} (median of {}), p99 {:?} — fresh sandbox each time",
                pct(0.5),
                times.len(),
                pct(0.99)
            );
            Ok(())
        }
        PolicyCommand::Test { dir } => test(&dir),
    }
}

fn load(
    wasm: &Path,
    settings: &str,
    limits: ModuleLimits,
) -> anyhow::Result<(Arc<PolicyEngine>, Arc<PolicyModule>)> {
    let settings: Value = serde_json::from_str(settings).context("--settings is not JSON")?;
    let engine = PolicyEngine::standalone(false, limits.memory_bytes)?;
    let name = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("policy")
        .to_owned();
    let spec = ModuleSpec {
        name,
        path: wasm.to_owned(),
        sha256: None,
        settings: settings.to_string(),
        mode: PolicyMode::Enforce,
        limits,
    };
    let m = module::load(&engine, &spec)?;
    Ok((engine, Arc::new(m)))
}

fn check(wasm: &Path, settings: &str, memory_mb: u64) -> anyhow::Result<()> {
    let limits = ModuleLimits {
        memory_bytes: memory_mb << 20,
        ..ModuleLimits::default()
    };
    let started = Instant::now();
    let (_, m) = load(wasm, settings, limits)?;
    println!(
        "✓ {} loads as an mcp:policy@0.2.0 policy ({} ms)",
        wasm.display(),
        started.elapsed().as_millis()
    );
    println!("  sha256   {}", m.sha256);
    println!("  settings ✓ accepted: {}", m.settings);
    println!("  imports  (all allowed)");
    for i in &m.imports {
        println!("    {i}");
    }
    println!("  exports");
    for e in &m.exports {
        println!("    {e}");
    }
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn context(v: Option<&Value>) -> RequestContext {
    let s = |k: &str, d: &str| {
        v.and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .unwrap_or(d)
            .to_owned()
    };
    let o = |k: &str| {
        v.and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    RequestContext {
        route: s("route", "test"),
        host: s("host", "test.local"),
        client_address: s("client_address", "127.0.0.1"),
        principal: v.and_then(|c| c.get("principal")).map(|p| Principal {
            subject: p
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            claims: p
                .get("claims")
                .cloned()
                .unwrap_or(Value::Object(Default::default()))
                .to_string(),
        }),
        session_id: o("session_id"),
        protocol_version: o("protocol_version"),
        request_id: s("request_id", "cli"),
    }
}

fn eval(
    engine: &PolicyEngine,
    m: &Arc<PolicyModule>,
    req: &Value,
    repeat: u32,
) -> anyhow::Result<(Verdict, Vec<Duration>)> {
    let message = req
        .get("message")
        .context("the request file has no \"message\"")?;
    let Payload::Single(msg) = jsonrpc::parse(message.to_string().as_bytes())? else {
        bail!("\"message\" must be one JSON-RPC message, not a batch");
    };
    let catalogue = Catalogue::default();
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        catalogue.learn(tools);
    }
    let ctx = context(req.get("context"));
    let mut times = Vec::with_capacity(repeat as usize);
    let mut verdict = None;
    for _ in 0..repeat {
        let started = Instant::now();
        let v = crate::policy::evaluate_blocking(
            engine,
            std::slice::from_ref(m),
            ctx.clone(),
            &msg,
            &catalogue,
        );
        times.push(started.elapsed());
        verdict = Some(v);
    }
    Ok((verdict.expect("repeat ≥ 1"), times))
}

fn label(v: &Verdict) -> (&'static str, String) {
    match &v.outcome {
        Outcome::Allow => ("allow", String::new()),
        Outcome::Deny { reason, .. } => ("deny", reason.clone()),
        Outcome::RequireApproval { reason, .. } => ("require_approval", reason.clone()),
        Outcome::Hidden { kind, name, .. } => {
            ("hidden", format!("{} {name} is hidden", kind.label()))
        }
    }
}

fn print_verdict(v: &Verdict) {
    let (decision, reason) = label(v);
    println!(
        "decision: {decision}{}",
        if reason.is_empty() {
            String::new()
        } else {
            format!(" — {reason}")
        }
    );
    for a in &v.answers {
        let detail = match &a.answer {
            Answer::Failed(f) => format!(" ({f})"),
            _ => String::new(),
        };
        println!(
            "  {} said {}{detail} in {:?}",
            a.policy,
            a.answer.label(),
            a.elapsed
        );
    }
}

fn test(dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no *.json fixtures in {}", dir.display());
    }
    let (mut passed, mut failed) = (0, 0);
    let mut loaded = Loaded::default();
    for file in files {
        let doc = read_json(&file)?;
        let cases: Vec<Value> = match doc.get("cases").and_then(Value::as_array) {
            Some(cases) => cases.iter().map(|c| merge(&doc, c)).collect(),
            None => vec![doc.clone()],
        };
        for (i, case) in cases.iter().enumerate() {
            let name = case
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{}#{i}", file.display()));
            match run_case(&file, case, &mut loaded) {
                Ok(None) => {
                    passed += 1;
                    println!("✓ {name}");
                }
                Ok(Some(why)) | Err(why) => {
                    failed += 1;
                    println!("✗ {name}: {why}");
                }
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} fixture(s) failed");
    }
    Ok(())
}

/// A case inherits `policy`, `settings`, `context` and `tools` from its file.
fn merge(doc: &Value, case: &Value) -> Value {
    let mut out = case.clone();
    for k in ["policy", "settings", "context", "tools"] {
        if out.get(k).is_none()
            && let Some(v) = doc.get(k)
        {
            out[k] = v.clone();
        }
    }
    out
}

type Loaded = std::collections::HashMap<(PathBuf, String), (Arc<PolicyEngine>, Arc<PolicyModule>)>;

fn run_case(file: &Path, case: &Value, loaded: &mut Loaded) -> Result<Option<String>, String> {
    let policy = case
        .get("policy")
        .and_then(Value::as_str)
        .ok_or("no \"policy\" path")?;
    let wasm = file.parent().unwrap_or(Path::new(".")).join(policy);
    let settings = case
        .get("settings")
        .cloned()
        .unwrap_or(Value::Object(Default::default()))
        .to_string();
    let key = (wasm.clone(), settings.clone());
    if !loaded.contains_key(&key) {
        let l = load(&wasm, &settings, ModuleLimits::default()).map_err(|e| format!("{e:#}"))?;
        loaded.insert(key.clone(), l);
    }
    let (engine, m) = &loaded[&key];
    let expect = case
        .get("expect")
        .and_then(Value::as_str)
        .ok_or("no \"expect\"")?;
    let (verdict, _) = eval(engine, m, case, 1).map_err(|e| format!("{e:#}"))?;
    let (got, reason) = label(&verdict);
    if got != expect {
        return Ok(Some(format!(
            "expected {expect}, got {got}{}",
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        )));
    }
    if let Some(want) = case.get("reason_contains").and_then(Value::as_str)
        && !reason.contains(want)
    {
        return Ok(Some(format!("reason {reason:?} does not contain {want:?}")));
    }
    Ok(None)
}
