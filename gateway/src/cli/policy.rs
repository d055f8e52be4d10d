//! `mcp-gateway policy …`: what a policy author runs before a policy reaches a gateway.
//!
//! - `new NAME [--dir DIR]`: scaffold a policy crate (see [`super::policy_new`]).
//! - `check WASM [--settings JSON]`: load it as the gateway would (import allow-list, settings validation);
//!   list imports and exports.
//! - `eval WASM --settings JSON --request FILE|- [--repeat N]`: decide one request and time it. The request
//!   forms are in [`super::policy_input::REQUEST_FORMATS`] (also `policy eval --help`).
//! - `test [--policy WASM | --config FILE [--route R]] [--format text|json|junit] DIR`: run fixture files
//!   (format: [`super::policy_input::FIXTURE_FORMAT`], also `policy test --help`) against one module each, or
//!   against a route's configured chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::policy_input::{self as input, FIXTURE_FORMAT, Input, REQUEST_FORMATS};
use crate::catalogue::Catalogue;
use crate::config::{ModuleLimits, ModuleSpec, PolicyMode};
use crate::policy::engine::PolicyEngine;
use crate::policy::module::{self, PolicyModule};
use crate::policy::verdict::{Answer, Outcome, Verdict};
use crate::policy::{PolicyChain, PolicySet};

const TEST_EXIT_CODES: &str = "\
Exit codes: 0 every case passed; 1 at least one case failed (a wrong decision or reason, or a case that could \
not run: a fixture with an unknown key, a module that does not load); 2 the command itself was wrong (no \
fixtures in DIR, an unreadable DIR or config, a route that does not exist).";

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy crate: Cargo.toml (policy-sdk dependency, the stock policies' release profile),
    /// src/lib.rs with a small working policy and unit tests, fixtures/ with allow and deny cases, README.
    #[command(
        after_long_help = "Then, in the new directory:\n  cargo test\n  cargo build --target wasm32-wasip2 --release\n  mcp-gateway policy test fixtures/\n\n(`--answers`, an answer policy, comes with the answers issue: its WIT contract does not exist yet.)"
    )]
    New {
        /// Crate name (letters, digits, `-`, `_`; the component is NAME with `-` → `_`, `.wasm`).
        name: String,
        /// Where to create it (default: ./NAME). Must not exist, or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The policy-sdk crate to depend on (default: the checkout this binary was built from, if present;
        /// else the git repository).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
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
    #[command(after_long_help = REQUEST_FORMATS)]
    Eval {
        wasm: PathBuf,
        #[arg(long, default_value = "{}")]
        settings: String,
        /// Request file, or `-` for stdin: a bare JSON-RPC message, an audit decision record, or a wrapper
        /// with context and tool definitions (formats below, in `--help`).
        #[arg(long)]
        request: PathBuf,
        /// The `tools/call` arguments, for an audit record that keeps only their digest.
        #[arg(long)]
        arguments: Option<String>,
        /// Evaluate this many times and report the median and p99.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        #[arg(long, default_value_t = 50)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 16)]
        memory_mb: u64,
    },
    /// Run every fixture (`*.json`) in a directory: against the module each names, or against a configured
    /// route's chain (--config).
    #[command(after_long_help = format!("{FIXTURE_FORMAT}\n\n{TEST_EXIT_CODES}"))]
    Test {
        dir: PathBuf,
        /// Use this component for every case instead of each fixture's "policy".
        #[arg(long, conflicts_with = "config")]
        policy: Option<PathBuf>,
        /// Evaluate against the chain a gateway with this config runs (order, monitor mode, hidden tools).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// The route whose chain decides (default: the case's context.route, else the config's only route).
        #[arg(long, requires = "config")]
        route: Option<String>,
        /// Report format: text (default), json, or junit (JUnit XML for CI).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    // Evaluations expect a tokio runtime to exist (WASI's sync adapters use it), as they do in the gateway.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    match cmd {
        PolicyCommand::New { name, dir, sdk } => {
            super::policy_new::run(&name, dir.as_deref(), sdk.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check {
            wasm,
            settings,
            memory_mb,
        } => check(&wasm, &settings, memory_mb).map(|()| ExitCode::SUCCESS),
        PolicyCommand::Eval {
            wasm,
            settings,
            request,
            arguments,
            repeat,
            timeout_ms,
            memory_mb,
        } => {
            let limits = ModuleLimits {
                memory_bytes: memory_mb << 20,
                timeout: Duration::from_millis(timeout_ms),
                fuel: None,
            };
            let arguments: Option<Value> = arguments
                .map(|a| serde_json::from_str(&a).context("--arguments is not JSON"))
                .transpose()?;
            let doc = input::read_document(&request)?;
            let origin = if request == Path::new("-") {
                "stdin".to_owned()
            } else {
                request.display().to_string()
            };
            let req = input::request(&doc, &origin, &[], arguments.as_ref())?;
            let (engine, m) = load(&wasm, &settings, limits)?;
            let (verdict, times) = eval(&engine, std::slice::from_ref(&m), &req, repeat.max(1));
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
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test {
            dir,
            policy,
            config,
            route,
            format,
        } => {
            let target = match config {
                Some(c) => match Target::configured(&c, route) {
                    Ok(t) => t,
                    Err(e) => return usage_error(e),
                },
                None => Target::Modules {
                    policy,
                    loaded: HashMap::new(),
                },
            };
            test(&dir, target, format)
        }
    }
}

/// A command-line mistake of `policy test`: exit code 2.
fn usage_error(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    eprintln!("error: {}", crate::error_class::error_chain(e.as_ref()));
    Ok(ExitCode::from(2))
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

fn eval(
    engine: &PolicyEngine,
    modules: &[Arc<PolicyModule>],
    req: &Input,
    repeat: u32,
) -> (Verdict, Vec<Duration>) {
    let catalogue = Catalogue::default();
    catalogue.learn(&req.tools);
    let mut times = Vec::with_capacity(repeat as usize);
    let mut verdict = None;
    for _ in 0..repeat {
        let started = Instant::now();
        let v = crate::policy::evaluate_blocking(
            engine,
            modules,
            req.context.clone(),
            &req.message,
            &catalogue,
        );
        times.push(started.elapsed());
        verdict = Some(v);
    }
    (verdict.expect("repeat ≥ 1"), times)
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
        println!("  {}", answer_line(a));
    }
}

fn answer_line(a: &crate::policy::verdict::PolicyAnswer) -> String {
    let detail = match &a.answer {
        Answer::Failed(f) => format!(" ({f})"),
        _ => String::new(),
    };
    let mode = match a.mode {
        PolicyMode::Monitor => " [monitor: does not decide]",
        PolicyMode::Enforce => "",
    };
    format!(
        "{} said {}{detail} in {:?}{mode}",
        a.policy,
        a.answer.label(),
        a.elapsed
    )
}

/// What decides the fixtures.
enum Target {
    /// Each case's own module (or the `--policy` one) with its settings.
    Modules {
        policy: Option<PathBuf>,
        loaded: HashMap<(PathBuf, String), (Arc<PolicyEngine>, Arc<PolicyModule>)>,
    },
    /// The chains of a configured gateway.
    Configured {
        config: PathBuf,
        set: PolicySet,
        routes: Vec<crate::config::RouteSpec>,
        route: Option<String>,
    },
}

impl Target {
    fn configured(path: &Path, route: Option<String>) -> anyhow::Result<Target> {
        let config = crate::config::load(path)?;
        if config.policies.is_none() {
            bail!(
                "{} has no `policies:` block: every message would be allowed, there is no chain to test",
                path.display()
            );
        }
        let set = PolicySet::load(&config)?;
        if let Some(r) = &route
            && !config.routes.iter().any(|s| &s.key == r)
        {
            bail!(
                "{} has no route `{r}` (routes: {})",
                path.display(),
                route_names(&config.routes)
            );
        }
        Ok(Target::Configured {
            config: path.to_owned(),
            set,
            routes: config.routes,
            route,
        })
    }
}

fn route_names(routes: &[crate::config::RouteSpec]) -> String {
    routes
        .iter()
        .map(|r| r.key.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One case's result.
struct CaseResult {
    name: String,
    file: String,
    /// `None`: passed.
    failure: Option<String>,
    decision: Option<&'static str>,
    reason: String,
    elapsed: Duration,
}

fn test(dir: &Path, mut target: Target, format: Format) -> anyhow::Result<ExitCode> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter(|p| !p.to_string_lossy().ends_with(".schema.json"))
            .collect(),
        Err(e) => return usage_error(anyhow::anyhow!("cannot read {}: {e}", dir.display())),
    };
    files.sort();
    if files.is_empty() {
        return usage_error(anyhow::anyhow!(
            "no *.json fixtures in {} (see `mcp-gateway policy test --help` for the format)",
            dir.display()
        ));
    }
    let mut results = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let cases = match read_fixture_file(&file) {
            Ok(c) => c,
            Err(e) => {
                results.push(CaseResult {
                    name: shown.clone(),
                    file: shown,
                    failure: Some(format!("{e:#}")),
                    decision: None,
                    reason: String::new(),
                    elapsed: Duration::ZERO,
                });
                continue;
            }
        };
        for (name, case) in cases {
            let started = Instant::now();
            let r = run_case(&file, &name, &case, &mut target);
            let elapsed = started.elapsed();
            let (failure, decision, reason) = match r {
                Ok((None, d, r)) => (None, Some(d), r),
                Ok((Some(why), d, r)) => (Some(why), Some(d), r),
                Err(e) => (Some(format!("{e:#}")), None, String::new()),
            };
            results.push(CaseResult {
                name,
                file: shown.clone(),
                failure,
                decision,
                reason,
                elapsed,
            });
        }
    }
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let passed = results.len() - failed;
    match format {
        Format::Text => {
            if let Target::Configured { config, route, .. } = &target {
                println!(
                    "chain of {} in {}",
                    route
                        .as_deref()
                        .map_or("each case's route".to_owned(), |r| format!("route `{r}`")),
                    config.display()
                );
            }
            for r in &results {
                match &r.failure {
                    None => println!("✓ {}", r.name),
                    Some(why) => println!("✗ {}: {why}", r.name),
                }
            }
            println!("\n{passed} passed, {failed} failed");
        }
        Format::Json => {
            let cases: Vec<Value> = results
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "file": r.file,
                        "passed": r.failure.is_none(),
                        "decision": r.decision,
                        "reason": if r.reason.is_empty() { None } else { Some(&r.reason) },
                        "failure": r.failure,
                        "seconds": r.elapsed.as_secs_f64(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"passed": passed, "failed": failed, "cases": cases})
                )?
            );
        }
        Format::Junit => print!("{}", junit(dir, &results, failed)),
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn junit(dir: &Path, results: &[CaseResult], failed: usize) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let total: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{n}\" failures=\"{failed}\" time=\"{total:.6}\">\n  <testsuite name=\"{name}\" tests=\"{n}\" failures=\"{failed}\" time=\"{total:.6}\">\n",
        n = results.len(),
        name = esc(&format!("mcp-gateway policy test {}", dir.display())),
    );
    for r in results {
        out.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.6}\"",
            esc(&r.name),
            esc(&r.file),
            r.elapsed.as_secs_f64()
        ));
        match &r.failure {
            None => out.push_str("/>\n"),
            Some(why) => out.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                esc(why),
                esc(why)
            )),
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The cases of one fixture file, each with its name, merged with what the file gives them all.
fn read_fixture_file(file: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?;
    let doc = input::parse_document(&text, &shown)?;
    let obj = doc
        .as_object()
        .with_context(|| format!("{shown}: a fixture must be a JSON object"))?;
    // With `cases`, what only a case can say (its message, expectation, name) is not allowed in the file:
    // it would be silently ignored.
    let single_only = ["name", "expect", "reason_contains", "message"];
    if obj.contains_key("cases")
        && let Some(k) = single_only.iter().find(|k| obj.contains_key(**k))
    {
        bail!("{shown}: \"{k}\" is given beside \"cases\": it belongs in each case");
    }
    let file_keys: Vec<&str> = input::FIXTURE_FILE_KEYS
        .iter()
        .chain(["message", "context", "principal", "tools", "tool"].iter())
        .copied()
        .filter(|k| {
            if obj.contains_key("cases") {
                !single_only.contains(k)
            } else {
                *k != "cases"
            }
        })
        .collect();
    input::check_keys(obj, &file_keys, &shown)?;
    let Some(cases) = obj.get("cases") else {
        let name = doc
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| shown.clone(), str::to_owned);
        return Ok(vec![(name, doc)]);
    };
    let cases = cases
        .as_array()
        .with_context(|| format!("{shown}: \"cases\" must be a list"))?;
    let case_keys: Vec<&str> = input::FIXTURE_CASE_KEYS
        .iter()
        .chain(["message", "context", "principal", "tools", "tool"].iter())
        .copied()
        .collect();
    let mut out = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let name = case
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{shown}#{i}"), str::to_owned);
        let c = case
            .as_object()
            .with_context(|| format!("{shown}: cases[{i}] must be an object"))?;
        input::check_keys(c, &case_keys, &format!("{shown}: cases[{i}] ({name})"))?;
        out.push((name, merge(obj, c)));
    }
    Ok(out)
}

/// A case inherits what it does not give itself from its file (`principal` and `context.principal` count as
/// one: a case giving either replaces the file's).
fn merge(file: &serde_json::Map<String, Value>, case: &serde_json::Map<String, Value>) -> Value {
    let mut out = case.clone();
    for k in [
        "policy",
        "settings",
        "context",
        "tools",
        "tool",
        "principal",
    ] {
        if out.contains_key(k) {
            continue;
        }
        let Some(v) = file.get(k) else { continue };
        if k == "principal"
            && case
                .get("context")
                .and_then(|c| c.get("principal"))
                .is_some()
        {
            continue;
        }
        let mut v = v.clone();
        if k == "context"
            && out.contains_key("principal")
            && let Some(o) = v.as_object_mut()
        {
            o.remove("principal");
        }
        out.insert(k.to_owned(), v);
    }
    Value::Object(out)
}

type CaseOutcome = (Option<String>, &'static str, String);

fn run_case(
    file: &Path,
    name: &str,
    case: &Value,
    target: &mut Target,
) -> anyhow::Result<CaseOutcome> {
    let where_ = format!("{} ({name})", file.display());
    let expect = input::expectation(case.get("expect"), &where_)?;
    let req_doc = strip(case, input::FIXTURE_FILE_KEYS);
    let mut req = input::request(&req_doc, &where_, &[], None)?;
    let verdict = match target {
        Target::Modules { policy, loaded } => {
            let wasm = match (policy.as_ref(), case.get("policy")) {
                (Some(p), _) => p.clone(),
                (None, Some(Value::String(p))) => file.parent().unwrap_or(Path::new(".")).join(p),
                (None, Some(_)) => bail!("{where_}: \"policy\" must be a path"),
                (None, None) => bail!(
                    "{where_}: no \"policy\" (the .wasm, relative to the fixture's directory; or run with \
                     --policy WASM or --config FILE)"
                ),
            };
            let settings = case
                .get("settings")
                .cloned()
                .unwrap_or(Value::Object(Default::default()))
                .to_string();
            let key = (wasm.clone(), settings.clone());
            if !loaded.contains_key(&key) {
                let l = load(&wasm, &settings, ModuleLimits::default()).with_context(|| {
                    format!(
                        "{where_}: policy {} (a fixture's \"policy\" is relative to the fixture's directory)",
                        wasm.display()
                    )
                })?;
                loaded.insert(key.clone(), l);
            }
            let (engine, m) = &loaded[&key];
            eval(engine, std::slice::from_ref(m), &req, 1).0
        }
        Target::Configured {
            set, routes, route, ..
        } => {
            for k in ["policy", "settings"] {
                if case.get(k).is_some() {
                    bail!(
                        "{where_}: \"{k}\" is given, but with --config the route's configured chain decides"
                    );
                }
            }
            let written = case
                .get("context")
                .and_then(|c| c.get("route"))
                .and_then(Value::as_str);
            let key = match (route.as_deref(), written) {
                (Some(r), _) => r.to_owned(),
                (None, Some(r)) => r.to_owned(),
                (None, None) if routes.len() == 1 => routes[0].key.clone(),
                (None, None) => bail!(
                    "{where_}: which route? give --route R or context.route (routes: {})",
                    route_names(routes)
                ),
            };
            let Some(spec) = routes.iter().find(|r| r.key == key) else {
                bail!(
                    "{where_}: the config has no route `{key}` (routes: {})",
                    route_names(routes)
                );
            };
            if written.is_none() {
                req.context.route = key.clone();
            }
            match set.chain_for(spec) {
                PolicyChain::Unconfigured => Verdict::allow_unpoliced(),
                PolicyChain::Chain { engine, modules } => eval(&engine, &modules, &req, 1).0,
            }
        }
    };
    let (got, reason) = label(&verdict);
    let detail = || {
        let mut d = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        if matches!(target, Target::Configured { .. }) {
            for a in &verdict.answers {
                d.push_str(&format!("\n    {}", answer_line(a)));
            }
        }
        d
    };
    if got != expect {
        return Ok((
            Some(format!("expected {expect}, got {got}{}", detail())),
            got,
            reason,
        ));
    }
    if let Some(want) = case.get("reason_contains") {
        let want = want
            .as_str()
            .with_context(|| format!("{where_}: \"reason_contains\" must be a string"))?;
        if !reason.contains(want) {
            return Ok((
                Some(format!("reason {reason:?} does not contain {want:?}")),
                got,
                reason,
            ));
        }
    }
    Ok((None, got, reason))
}

/// `case` without the fixture-only keys: what remains is a request in the wrapper form.
fn strip(case: &Value, keys: &[&str]) -> Value {
    let mut v = case.clone();
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    v
}
