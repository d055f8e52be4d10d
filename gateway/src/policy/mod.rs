//! Stage 5 — policy: every MCP message is decided by the route's chain of sandboxed WebAssembly policy
//! components before it can be forwarded.
//!
//! The only way to obtain a [`Permitted`] — which the forwarder requires — is [`PolicyChain::decide`], so a
//! new code path that skips the decision does not compile. A config without a `policies:` block gets
//! [`PolicyChain::Unconfigured`] (every message allowed, said loudly at start), like a drop-in for
//! Anthropic's proxy must; once the block exists every route has an explicit chain, possibly `[]`.
//!
//! Files: `bindings` (generated from `wit/`), `engine` (the one wasmtime Engine, cache, ticker), `module`
//! (loading and checks), `sandbox` (every Store, limits, failure classification), `host` (imports),
//! `view` (what a policy sees), `verdict` (answers and chain semantics).

pub mod bindings;
pub mod engine;
pub mod host;
pub mod module;
pub mod sandbox;
pub mod verdict;
pub mod view;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bindings::types::{Decision, Direction, Listing, Request, RequestContext, ToolInfo};
use engine::PolicyEngine;
use module::PolicyModule;
use sandbox::Failure;
use verdict::{Answer, PolicyAnswer, Verdict};

use crate::catalogue::Catalogue;
use crate::config::{Config, PolicyMode, RouteSpec};
use crate::ctx::RequestCtx;
use crate::mcp::Inbound;

/// Longest reason a policy may give (it is shown to the model and written to the audit log).
pub const MAX_REASON_BYTES: usize = 4096;

/// All loaded policy modules of a config.
#[derive(Debug, Default)]
pub struct PolicySet {
    engine: Option<Arc<PolicyEngine>>,
    modules: BTreeMap<String, Arc<PolicyModule>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicySetError {
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Load(#[from] module::LoadError),
}

impl PolicySet {
    /// Loads every module of `config` (blocking: compiles). Any module that fails stops the whole set.
    pub fn load(config: &Config) -> Result<PolicySet, PolicySetError> {
        let Some(pc) = &config.policies else {
            return Ok(PolicySet::default());
        };
        let engine = PolicyEngine::new(pc)?;
        let mut modules = BTreeMap::new();
        for spec in &pc.modules {
            let started = Instant::now();
            let m = module::load(&engine, spec)?;
            tracing::info!(
                policy = %m.name, path = %m.path.display(), sha256 = %m.sha256, mode = ?m.mode,
                cached = m.from_cache, load_ms = started.elapsed().as_millis() as u64, "policy loaded"
            );
            modules.insert(spec.name.clone(), Arc::new(m));
        }
        Ok(PolicySet {
            engine: Some(engine),
            modules,
        })
    }

    pub fn is_configured(&self) -> bool {
        self.engine.is_some()
    }

    /// The chain of `route` (names were checked against the modules when the config was validated).
    pub fn chain_for(&self, route: &RouteSpec) -> PolicyChain {
        match &self.engine {
            None => PolicyChain::Unconfigured,
            Some(engine) => PolicyChain::Chain {
                engine: engine.clone(),
                modules: route
                    .policies
                    .iter()
                    .filter_map(|n| self.modules.get(n).cloned())
                    .collect(),
            },
        }
    }
}

/// The decision chain of a route.
#[derive(Debug, Clone)]
pub enum PolicyChain {
    /// No `policies:` block in the config: every message is allowed.
    Unconfigured,
    /// Modules in evaluation order; empty when the route says `policies: []`.
    Chain {
        engine: Arc<PolicyEngine>,
        modules: Vec<Arc<PolicyModule>>,
    },
}

/// Proof that the policy chain allowed a request. Private fields: only [`PolicyChain::decide`] makes one.
#[derive(Debug)]
pub struct Permitted {
    inbound: Inbound,
    verdicts: Vec<Verdict>,
    /// The approval that let a `RequireApproval` call through (see [`Permitted::by_approval`]).
    approval: Option<crate::approvals::store::Approval>,
    /// The caller's own confirmation that let it through (see [`Permitted::by_confirmation`]).
    confirmation: Option<crate::approvals::caller::Confirmation>,
}

impl Permitted {
    /// A call the chain sent for approval, let through because the approval store consumed a grant for
    /// it. Only possible with a [`crate::approvals::Granted`] (private field, made only by the approvals
    /// module), and only for a payload every message of which was allowed or sent for approval (a deny or
    /// a hidden tool stays refused: `Err`).
    pub fn by_approval(
        refused: Refused,
        granted: crate::approvals::Granted,
    ) -> Result<Permitted, Box<Refused>> {
        let approvable = refused.verdicts.iter().all(|v| {
            matches!(
                v.outcome,
                verdict::Outcome::Allow | verdict::Outcome::RequireApproval { .. }
            )
        });
        if !approvable {
            return Err(Box::new(refused));
        }
        Ok(Permitted {
            inbound: refused.inbound,
            verdicts: refused.verdicts,
            approval: Some(granted.approval().clone()),
            confirmation: None,
        })
    }

    /// A call the chain sent for approval, let through because the caller confirmed it in the protocol.
    /// Only possible with a [`crate::approvals::caller::Confirmed`] (private field, made only by
    /// `approvals::caller` once the caller's answer verified), and only when the payload is one `tools/call`
    /// whose outcome is `RequireApproval` (a deny or a hidden tool stays refused: `Err`).
    pub fn by_confirmation(
        refused: Refused,
        confirmed: crate::approvals::caller::Confirmed,
    ) -> Result<Permitted, Box<Refused>> {
        let approvable = matches!(
            refused.verdicts.as_slice(),
            [v] if matches!(v.outcome, verdict::Outcome::RequireApproval { .. })
        ) && refused.inbound.single_request_method() == Some("tools/call");
        if !approvable {
            return Err(Box::new(refused));
        }
        Ok(Permitted {
            inbound: refused.inbound,
            verdicts: refused.verdicts,
            approval: None,
            confirmation: Some(confirmed.confirmation().clone()),
        })
    }

    /// The caller confirmation that let this request through, if any.
    pub fn confirmation(&self) -> Option<&crate::approvals::caller::Confirmation> {
        self.confirmation.as_ref()
    }

    /// The approval whose grant let this request through, if any.
    pub fn approval(&self) -> Option<&crate::approvals::store::Approval> {
        self.approval.as_ref()
    }

    pub fn inbound(&self) -> &Inbound {
        &self.inbound
    }

    /// One verdict per message (empty for requests without messages: GET streams, DELETE, discovery).
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }
}

/// A request the chain did not allow: answered as MCP results / JSON-RPC errors, never an HTTP 4xx.
#[derive(Debug)]
pub struct Refused {
    pub inbound: Inbound,
    /// One verdict per message of the payload, in order.
    pub verdicts: Vec<Verdict>,
}

/// One message to decide, prepared on the reactor and evaluated off it.
struct Job {
    request: Option<Request>,
    /// For a `tools/call`, `resources/read` or `prompts/get`: what it names, which a policy may answer
    /// `hidden` about. (A tool call's request carries the tool as the upstream lists it, or `tool: none` when
    /// it does not, so a policy can tell an unlisted tool from a listed one.)
    target: Option<(verdict::Hideable, String)>,
    /// The gateway's own answer, decided before any policy: a tool whose definition changed and waits for
    /// an operator (`pins.rs`).
    forced: Option<verdict::Outcome>,
}

impl Job {
    fn new(context: RequestContext, msg: &crate::mcp::Message, catalogue: &Catalogue) -> Job {
        let name = view::called_tool(msg);
        let listed = name.and_then(|n| catalogue.get(n)).map(|t| t.info.clone());
        let forced = name.and_then(|n| {
            Some(match catalogue.blocked(n)? {
                crate::pins::Block::Hidden => verdict::Outcome::Hidden {
                    policy: Arc::from(verdict::GATEWAY),
                    kind: verdict::Hideable::Tool,
                    name: n.to_owned(),
                },
                crate::pins::Block::DenyAll { tool } => verdict::Outcome::Deny {
                    policy: Arc::from(verdict::GATEWAY),
                    reason: format!(
                        "the definition of tool `{tool}` on this route changed and waits for an operator to accept it (on_tool_change: deny_all)"
                    ),
                },
            })
        });
        Job {
            request: view::request(context, msg, listed, Direction::ClientToServer),
            target: view::hideable(msg).map(|(k, n)| (k, n.to_owned())),
            forced,
        }
    }
}

/// Decides one message with `modules`, on the calling thread (the `policy` CLI and benchmarks use this; the
/// gateway goes through [`PolicyChain::decide`], which runs the same code off the reactor).
pub fn evaluate_blocking(
    engine: &PolicyEngine,
    modules: &[Arc<PolicyModule>],
    context: RequestContext,
    msg: &crate::mcp::Message,
    catalogue: &Catalogue,
) -> Verdict {
    let request_id: Arc<str> = Arc::from(context.request_id.as_str());
    evaluate(
        engine,
        modules,
        &Job::new(context, msg, catalogue),
        &request_id,
        &Default::default(),
    )
}

impl PolicyChain {
    /// Decides every message of `inbound`. Requests without a message (GET streams, DELETE, OAuth discovery)
    /// are allowed here; what flows on a stream is policed as it flows.
    pub async fn decide(
        &self,
        ctx: &RequestCtx,
        inbound: Inbound,
        catalogue: &Catalogue,
        trace: &crate::otel::Trace,
    ) -> Result<Permitted, Refused> {
        let (engine, modules) = match self {
            PolicyChain::Unconfigured => {
                return Ok(Permitted {
                    approval: None,
                    confirmation: None,
                    inbound,
                    verdicts: Vec::new(),
                });
            }
            PolicyChain::Chain { engine, modules } => (engine, modules),
        };
        let Inbound::Post { payload, .. } = &inbound else {
            return Ok(Permitted {
                approval: None,
                confirmation: None,
                inbound,
                verdicts: Vec::new(),
            });
        };
        if modules.is_empty() {
            let verdicts = payload
                .messages()
                .iter()
                .map(|_| Verdict::allow_unpoliced())
                .collect();
            return Ok(Permitted {
                inbound,
                verdicts,
                approval: None,
                confirmation: None,
            });
        }
        let context = view::context(ctx);
        let jobs: Vec<Job> = payload
            .messages()
            .iter()
            .map(|m| Job::new(context.clone(), m, catalogue))
            .collect();
        let request_id: Arc<str> = Arc::from(ctx.id_str());
        let trace = trace.clone();
        let verdicts = run_blocking(engine, modules, move |engine, modules| {
            jobs.iter()
                .map(|job| evaluate(engine, modules, job, &request_id, &trace))
                .collect::<Vec<_>>()
        })
        .await;
        if verdicts.iter().all(Verdict::is_allow) {
            Ok(Permitted {
                inbound,
                verdicts,
                approval: None,
                confirmation: None,
            })
        } else {
            Err(Refused { inbound, verdicts })
        }
    }

    /// Whether responses on this route are inspected (tool catalogue, `tools/list` filtering): only when
    /// the config has a `policies:` block; a drop-in config passes responses through untouched.
    pub fn is_configured(&self) -> bool {
        matches!(self, PolicyChain::Chain { .. })
    }

    /// Decides a request the *server* makes of the client on an SSE stream (sampling, elicitation, roots).
    pub async fn decide_server_request(
        &self,
        context: RequestContext,
        msg: &crate::mcp::Message,
    ) -> Verdict {
        let (engine, modules) = match self {
            PolicyChain::Chain { engine, modules } if !modules.is_empty() => (engine, modules),
            _ => return Verdict::allow_unpoliced(),
        };
        let request_id: Arc<str> = Arc::from(context.request_id.as_str());
        let job = Job {
            request: view::request(context, msg, None, Direction::ServerToClient),
            target: None,
            forced: None,
        };
        run_blocking(engine, modules, move |engine, modules| {
            evaluate(engine, modules, &job, &request_id, &Default::default())
        })
        .await
    }

    /// Names of `tools` that some enforcing policy of the chain hides. A failing policy hides them all.
    pub async fn hidden_tools(
        &self,
        context: RequestContext,
        tools: Vec<ToolInfo>,
    ) -> HashSet<String> {
        self.hidden(context, Listing::Tools(tools)).await
    }

    /// What of one listing page some enforcing policy of the chain hides (tool names, resource URIs,
    /// templates, prompt names). A failing policy hides the whole page.
    pub async fn hidden(&self, context: RequestContext, listing: Listing) -> HashSet<String> {
        let (engine, modules) = match self {
            PolicyChain::Chain { engine, modules }
                if !modules.is_empty() && !listing_ids(&listing).is_empty() =>
            {
                (engine, modules)
            }
            _ => return HashSet::new(),
        };
        let request_id: Arc<str> = Arc::from(context.request_id.as_str());
        run_blocking(engine, modules, move |engine, modules| {
            let mut hidden = HashSet::new();
            for m in modules {
                match hidden_by(engine, m, &context, &listing, &request_id) {
                    Ok(names) if m.mode == PolicyMode::Enforce => hidden.extend(names),
                    Ok(names) => {
                        if !names.is_empty() {
                            tracing::info!(policy = %m.name, request_id = %request_id, hidden = ?names, "monitor: policy would hide listed entries");
                        }
                    }
                    Err(f) => {
                        crate::metrics::counters::policy_failure(&m.name, f.kind());
                        tracing::warn!(policy = %m.name, request_id = %request_id, error = %f, "hidden failed; hiding the whole listing page (fail closed)");
                        if m.mode == PolicyMode::Enforce {
                            hidden.extend(listing_ids(&listing).into_iter().map(str::to_owned));
                        }
                    }
                }
            }
            hidden
        })
        .await
    }
}

/// Every entry's identifier, as `hidden` names them.
fn listing_ids(listing: &Listing) -> Vec<&str> {
    match listing {
        Listing::Tools(t) => t.iter().map(|t| t.name.as_str()).collect(),
        Listing::Resources(r) => r.iter().map(|r| r.uri.as_str()).collect(),
        Listing::ResourceTemplates(r) => r.iter().map(|r| r.uri_template.as_str()).collect(),
        Listing::Prompts(p) => p.iter().map(|p| p.name.as_str()).collect(),
    }
}

/// Runs `f` on the blocking pool, at most `max_concurrency` at a time, so evaluations never stall the reactor
/// and never oversubscribe the cores (which would also cause spurious epoch timeouts).
async fn run_blocking<R: Send + 'static>(
    engine: &Arc<PolicyEngine>,
    modules: &[Arc<PolicyModule>],
    f: impl FnOnce(&PolicyEngine, &[Arc<PolicyModule>]) -> R + Send + 'static,
) -> R {
    let permit = engine
        .permits()
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let (engine, modules) = (engine.clone(), modules.to_vec());
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&engine, &modules)
    })
    .await
    .expect("policy evaluation task panicked")
}

/// Runs the chain on one message.
fn evaluate(
    engine: &PolicyEngine,
    modules: &[Arc<PolicyModule>],
    job: &Job,
    request_id: &Arc<str>,
    trace: &crate::otel::Trace,
) -> Verdict {
    let Some(request) = &job.request else {
        // A client's response to a server request: it was policed when the server's request passed.
        return Verdict::allow_unpoliced();
    };
    if let Some(outcome) = &job.forced {
        return Verdict {
            outcome: outcome.clone(),
            answers: Vec::new(),
        };
    }
    let mut answers = Vec::with_capacity(modules.len());
    for m in modules {
        let span = trace.stage("policy.evaluate");
        let started = Instant::now();
        let answer = match evaluate_one(engine, m, request, job.target.is_some(), request_id) {
            Ok(a) => a,
            Err(f) => {
                span.fail(format!("policy failed: {}", f.kind()));
                crate::metrics::counters::policy_failure(&m.name, f.kind());
                tracing::warn!(policy = %m.name, request_id = %request_id, kind = f.kind(), "policy evaluation failed: {f}");
                Answer::Failed(f)
            }
        };
        if span.recording() {
            span.set("mcp_gateway.policy", m.name.clone());
            span.set("mcp_gateway.policy.answer", answer.label());
            let mode = match m.mode {
                PolicyMode::Enforce => "enforce",
                PolicyMode::Monitor => "monitor",
            };
            span.set("mcp_gateway.policy.mode", mode);
        }
        drop(span);
        if m.mode == PolicyMode::Monitor && answer != Answer::Allow {
            tracing::info!(policy = %m.name, request_id = %request_id, would = answer.label(), answer = ?answer, "monitor: policy would not allow");
        }
        let a = PolicyAnswer {
            policy: m.name.clone(),
            sha256: m.sha256.clone(),
            settings_digest: m.settings_digest.clone(),
            mode: m.mode,
            answer,
            elapsed: started.elapsed(),
        };
        let stop = verdict::is_final(&a);
        answers.push(a);
        if stop {
            break;
        }
    }
    let outcome = verdict::combine(&answers, job.target.as_ref().map(|(k, n)| (*k, n.as_str())));
    if answers
        .iter()
        .any(|a| a.mode == PolicyMode::Monitor && a.answer != Answer::Allow)
    {
        let would = match verdict::would(&answers) {
            verdict::Outcome::Allow => None,
            _ if outcome != verdict::Outcome::Allow => None, // refused anyway
            verdict::Outcome::Deny { .. } => Some(0),
            verdict::Outcome::RequireApproval { .. } => Some(1),
            verdict::Outcome::Hidden { .. } => Some(2),
        };
        if let Some(i) = would {
            crate::metrics::COUNTERS.monitor_would[i]
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Verdict { outcome, answers }
}

/// One policy on one message, in one fresh sandbox, with one call: `evaluate` (which, for a tool call, also
/// answers `hidden` when the policy hides the tool — see `wit/policy.wit`).
fn evaluate_one(
    engine: &PolicyEngine,
    m: &PolicyModule,
    request: &Request,
    hideable: bool,
    request_id: &Arc<str>,
) -> Result<Answer, Failure> {
    let mut store = sandbox::store(engine, &m.limits, &m.name, request_id);
    let instance = m
        .pre
        .instantiate(&mut store)
        .map_err(|e| sandbox::classify(e, &m.limits))?;
    let decision = instance
        .call_evaluate(&mut store, &m.settings, request)
        .map_err(|e| sandbox::classify(e, &m.limits))?;
    Ok(match decision {
        Decision::Allow => Answer::Allow,
        Decision::Hidden if hideable => Answer::Hidden,
        Decision::Hidden => {
            return Err(Failure::BadAnswer(
                "answered `hidden` to a message that is not a tools/call, resources/read or prompts/get"
                    .into(),
            ));
        }
        Decision::Deny(r) | Decision::RequireApproval(r) if r.len() > MAX_REASON_BYTES => {
            return Err(Failure::OversizedOutput(r.len()));
        }
        Decision::Deny(r) => Answer::Deny(r),
        Decision::RequireApproval(r) => Answer::RequireApproval(r),
    })
}

fn hidden_by(
    engine: &PolicyEngine,
    m: &PolicyModule,
    context: &RequestContext,
    listing: &Listing,
    request_id: &Arc<str>,
) -> Result<Vec<String>, Failure> {
    let mut store = sandbox::store(engine, &m.limits, &m.name, request_id);
    let instance = m
        .pre
        .instantiate(&mut store)
        .map_err(|e| sandbox::classify(e, &m.limits))?;
    let names = instance
        .call_hidden(&mut store, &m.settings, context, listing)
        .map_err(|e| sandbox::classify(e, &m.limits))?;
    let total: usize = names.iter().map(String::len).sum();
    if total > listing_ids(listing).iter().map(|n| n.len()).sum::<usize>() + MAX_REASON_BYTES {
        return Err(Failure::OversizedOutput(total));
    }
    Ok(names)
}
