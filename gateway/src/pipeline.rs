//! The request path, top to bottom. This file knows the order of the stages and nothing of their logic:
//!
//! tls (server.rs) → [`route`] → [`identity`] → [`upstream_gate`] → [`mcp`] parse → [`arguments`] → [`policy`] →
//! [`crate::audit_stage`] → [`forward`] → [`crate::filter`] → reply
//!
//! Every stage returns a typed error; [`reply`] is the only place errors and policy answers become responses.
//! A request reaches [`forward`] only with a [`Recorded`] (made only by the audit stage, from a
//! [`policy::Permitted`], which only the policy chain makes) and [`upstream_gate::GatedAddrs`] (made only by
//! the gate).

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, Request, Response};
use hyper::body::Incoming;

use crate::approvals::Approvals;
use crate::approvals::caller::{self, Before};
use crate::approvals::hold;
use crate::arguments;
use crate::audit_stage::{Auditor, Redaction};
use crate::body::Body;
use crate::config::{Config, Limits};
use crate::ctx::{ConnInfo, REQUEST_ID_HEADER, RequestCtx};
pub use crate::egress::Route;
use crate::egress::{self, Egress, Exit};
use crate::error::GatewayError;
use crate::forward::{self, UpstreamClient};
use crate::identity::{self, Verifier};
use crate::mcp;
use crate::metrics;
use crate::otel::Otel;
use crate::pins::Pins;
use crate::policy;
use crate::policy::{PolicyChain, PolicySet};
use crate::reply;
use crate::route::RouteTable;
use crate::telemetry;
use crate::upstream_gate::{self, Resolve, UpstreamGate};

/// What every config generation shares: opened once at start and kept across reloads.
pub struct Shared {
    /// The audit log (one hash chain for the process).
    pub auditor: Auditor,
    /// The approval workflow; `None` without an `approvals:` block.
    pub approvals: Option<Arc<Approvals>>,
    /// Tool pins; `None` where none are kept.
    pub pins: Option<Arc<Pins>>,
    /// Trace export; `None` without `telemetry.otlp:`.
    pub otel: Option<Arc<Otel>>,
    pub resolver: Arc<dyn Resolve>,
}

/// The immutable, validated request path built from a [`Config`].
#[derive(Debug)]
pub struct Gateway {
    table: RouteTable,
    routes: Vec<Arc<Route>>,
    gate: UpstreamGate,
    limits: Limits,
    auditor: Auditor,
    /// The approval workflow (process-wide, like the auditor); `None` without an `approvals:` block.
    approvals: Option<Arc<Approvals>>,
    /// Bearer-token verification; `None` without an `identity:` block.
    identity: Option<Verifier>,
    /// Trace export (process-wide, like the auditor); `None` without `telemetry.otlp:`.
    otel: Option<Arc<Otel>>,
    /// Tool pins (process-wide, like the auditor).
    pins: Option<Arc<Pins>>,
}

impl Gateway {
    /// Builds the request path in one go; `policies` must have been loaded from the same config, `shared`
    /// opened on its settings. With the `previous` generation, what it learned is kept: each upstream's
    /// tools (for routes whose key and upstream did not change) and the fetched JWKS (when the key source
    /// did not change).
    pub fn new(
        config: &Config,
        policies: &PolicySet,
        shared: Shared,
        previous: Option<&Gateway>,
    ) -> std::io::Result<Self> {
        let needs_tls = config
            .routes
            .iter()
            .any(|r| r.upstream.scheme == crate::config::Scheme::Https);
        let tls = if needs_tls {
            Some(forward::upstream_tls_config(&config.upstream_tls)?)
        } else {
            None
        };
        let strip_authorization = config
            .identity
            .as_ref()
            .is_some_and(|i| !i.forward_authorization);
        let Shared {
            auditor,
            approvals,
            pins,
            otel,
            resolver,
        } = shared;
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let inherited = previous.and_then(|p| {
                    p.routes
                        .iter()
                        .find(|p| p.key == r.key && p.upstream == r.upstream)
                });
                let catalogue = inherited.map_or_else(Arc::default, |p| p.catalogue.clone());
                catalogue.set_guard(pins.as_ref().map(|p| crate::catalogue::Guard {
                    pins: p.clone(),
                    route: r.key.clone(),
                    mode: r.on_tool_change,
                }));
                Arc::new(Route {
                    key: r.key.clone(),
                    upstream: r.upstream.clone(),
                    client: Arc::new({
                        let c = UpstreamClient::new(&r.upstream, tls.clone(), &config.limits);
                        if strip_authorization {
                            c.without_authorization()
                        } else {
                            c
                        }
                    }),
                    require_identity: r.require_identity,
                    on_tool_change: r.on_tool_change,
                    policy: policies.chain_for(r),
                    catalogue,
                    validate_arguments: r.validate_arguments,
                    redaction: Redaction::for_route(config.audit.as_ref(), r),
                    stats: metrics::route_stats(&r.key),
                })
            })
            .collect();
        let mut identity = config.identity.as_ref().map(Verifier::new);
        if let (Some(new), Some(old)) = (&mut identity, previous.and_then(|p| p.identity.as_ref()))
        {
            new.inherit_keys(old);
        }
        Ok(Gateway {
            table: RouteTable::new(config),
            routes,
            gate: UpstreamGate::new(config.ip_policy.clone(), resolver),
            limits: config.limits.clone(),
            auditor,
            approvals,
            identity,
            otel,
            pins,
        })
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    pub fn auditor(&self) -> &Auditor {
        &self.auditor
    }

    pub fn approvals(&self) -> Option<&Arc<Approvals>> {
        self.approvals.as_ref()
    }

    pub fn otel(&self) -> Option<&Arc<Otel>> {
        self.otel.as_ref()
    }

    pub fn pins(&self) -> Option<&Arc<Pins>> {
        self.pins.as_ref()
    }

    pub fn identity(&self) -> Option<&Verifier> {
        self.identity.as_ref()
    }

    /// The way out for a permitted call on route `id`.
    fn egress(&self, id: usize) -> Egress {
        Egress {
            route: self.routes[id].clone(),
            auditor: self.auditor.clone(),
        }
    }
}

/// Handles one request; never fails (errors become responses here).
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut ctx = RequestCtx::new(conn, req.method(), req.uri().path());
    if let Some(otel) = &gw.otel {
        ctx.trace = otel.request(req.headers(), req.method(), req.uri().path());
    }
    let result = run(&gw, &mut ctx, req).await;
    let mut refusal = None;
    let mut resp = match result {
        Ok(resp) => {
            count(&gw, &ctx, true);
            resp
        }
        Err(err) => {
            count(&gw, &ctx, false);
            refusal = Some(err.kind());
            egress::error_response(&gw.auditor, &ctx, err)
        }
    };
    resp.headers_mut()
        .insert(HeaderName::from_static(REQUEST_ID_HEADER), ctx.id.clone());
    telemetry::access(&ctx, resp.status());
    telemetry::end_trace(&ctx, resp.status(), refusal);
    if ctx.trace.recording() {
        let mut spans = vec![ctx.trace.clone()];
        spans.append(&mut ctx.until_body_end);
        resp = crate::otel::body::until_body_ends(resp, spans);
    }
    resp
}

fn count(gw: &Gateway, ctx: &RequestCtx, ok: bool) {
    let stats = match ctx.route_index {
        Some(i) => &*gw.routes[i].stats,
        None => &metrics::UNROUTED,
    };
    let decision = match (ok, ctx.decision) {
        (true, d) => d.unwrap_or("allow"),
        (false, None) => "refused",
        (false, Some(_)) => "error",
    };
    stats.request(ctx.mcp_method.as_deref(), decision);
}

async fn run(
    gw: &Arc<Gateway>,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = req.into_parts();

    // Route: Host (or :authority) must route, and to the same route as the TLS SNI. The host is noted
    // first, so a refusal's log line and audit record name it too.
    ctx.host = request_host(&parts).and_then(|h| crate::route::normalize_host(h).ok());
    let span = ctx.trace.stage("route");
    let routed = gw
        .table
        .route(request_host(&parts), ctx.conn.sni.as_deref());
    span.result(&routed);
    let (id, host) = routed?;
    let route = &gw.routes[id];
    ctx.route_index = Some(id);
    ctx.host = Some(host);
    ctx.route = Some(route.key.clone());
    if span.recording() {
        span.set("mcp_gateway.route", route.key.clone());
        ctx.trace.set("mcp_gateway.route", route.key.clone());
    }
    drop(span);

    // Identity: who is calling, before anything else looks at the request (a refused caller costs no DNS
    // lookup and no body read). Only this stage sets `ctx.principal`.
    if let Some(verifier) = &gw.identity {
        let raw_host = request_host(&parts).unwrap_or_default();
        let span = ctx.trace.stage("identity");
        let identified =
            identity::identify(verifier, route.require_identity, &parts, raw_host).await;
        span.result(&identified);
        ctx.principal = identified?;
        span.set("mcp_gateway.authenticated", ctx.principal.is_some());
    }

    // Upstream IP gate: resolve once, check every address; only these addresses will be dialled.
    let span = ctx.trace.stage("ip_gate");
    let gated = gw.gate.check(&route.upstream).await;
    span.result(&gated);
    let addrs: upstream_gate::GatedAddrs = gated?;
    drop(span);

    // MCP parse: the whole body, strictly, before anything is forwarded.
    let span = ctx.trace.stage("parse");
    let parsed = match mcp::classify(
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        gw.limits.max_body_bytes,
    ) {
        Ok(Some(inbound)) => Ok(inbound),
        Ok(None) => {
            mcp::read_post(
                &parts.headers,
                body,
                gw.limits.max_body_bytes,
                gw.limits.request_body_timeout,
            )
            .await
        }
        Err(e) => Err(e),
    };
    span.result(&parsed);
    let inbound = parsed?;
    ctx.note(&parts.headers, &inbound);
    if span.recording() {
        telemetry::trace_message(&span, ctx, &inbound);
    }
    drop(span);

    // Caller confirmation (approvals/caller.rs): a legacy client's answer to the gateway's own elicitation,
    // and the 2026-07-28 retry of a call the gateway asked the caller to confirm, belong to the gateway.
    let mut confirmed = None;
    let inbound = match gw.approvals.as_ref().and_then(|a| Some((a, a.caller()?))) {
        Some((approvals, c)) => {
            if let (mcp::Inbound::EndSession, Some(s)) = (&inbound, &ctx.session_id) {
                c.forget_session(s);
            }
            match caller::before_policy(approvals, c, ctx, &route.redaction, inbound).await? {
                Before::Answered(resp) => return Ok(resp),
                Before::Refused(resp) => {
                    ctx.decision = Some("deny");
                    return Ok(resp);
                }
                Before::Continue(inbound, c) => {
                    confirmed = c;
                    inbound
                }
            }
        }
        None => inbound,
    };

    // Catalogue and argument validation, on routes whose config has a `policies:` block.
    if route.policy.is_configured() {
        learn_called_tool(route, ctx, &addrs, &parts, &inbound).await;
        let invalid = if route.validate_arguments {
            arguments::check(&inbound, &route.catalogue)
        } else {
            Vec::new()
        };
        if !invalid.is_empty() {
            ctx.decision = Some("invalid_arguments");
            gw.auditor
                .invalid_arguments(ctx, &route.redaction, &inbound, &invalid);
            return Ok(reply::invalid_arguments(ctx, &inbound, &invalid));
        }
    }

    // Policy: the only source of a `Permitted`. A refusal is an MCP answer (HTTP 200), not an error.
    let timed = matches!(&route.policy, PolicyChain::Chain { modules, .. } if !modules.is_empty());
    let started = timed.then(Instant::now);
    let span = ctx.trace.stage("policy");
    let decided = route
        .policy
        .decide(ctx, inbound, &route.catalogue, &span)
        .await;
    if let Some(t) = started {
        metrics::POLICY_SECONDS.observe_duration(t.elapsed());
    }
    span.set(
        "mcp_gateway.decision",
        match &decided {
            Ok(_) => "allow",
            Err(refused) => refused_label(refused),
        },
    );
    drop(span);
    let permitted: policy::Permitted = match decided {
        Ok(permitted) => permitted,
        Err(refused) => {
            ctx.decision = Some(refused_label(&refused));
            // A single tools/call sent for approval: held until an approver decides (approvals/hold.rs).
            if let Some(approvals) = &gw.approvals
                && let Some(call) = hold::Call::of(&refused, ctx, &route.redaction)
            {
                let held = hold::Held {
                    exit: Exit {
                        egress: gw.egress(id),
                        addrs,
                        parts,
                    },
                    approvals: approvals.clone(),
                    refused,
                    call,
                };
                // The caller confirms it in the protocol when allowed and able, else operators approve it.
                return caller::respond(held, ctx, confirmed).await;
            }
            telemetry::policy_refusal(ctx, &refused);
            gw.auditor.refused(ctx, &route.redaction, &refused);
            return Ok(reply::policy_answer(ctx, &refused));
        }
    };
    ctx.decision = Some(if permitted.verdicts().is_empty() {
        "unpoliced"
    } else {
        "allow"
    });
    let on_session = caller::session_hook(gw.approvals.as_ref(), ctx, permitted.inbound());
    gw.egress(id)
        .send(ctx, addrs, parts, permitted, on_session)
        .await
}

/// A `tools/call` naming a tool the catalogue has not seen: fetch the upstream's list first, so policies see
/// the tool's annotations and schema. A failed fetch is logged; policies then see the spec defaults
/// (destructive, not read-only), the cautious reading.
async fn learn_called_tool(
    route: &Route,
    ctx: &RequestCtx,
    addrs: &upstream_gate::GatedAddrs,
    parts: &http::request::Parts,
    inbound: &mcp::Inbound,
) {
    let mcp::Inbound::Post { payload, .. } = inbound else {
        return;
    };
    // The first call (single or batched) of a tool the catalogue has not seen.
    let Some((msg, name)) = payload.messages().iter().find_map(|m| {
        crate::policy::view::called_tool(m)
            .filter(|n| route.catalogue.get(n).is_none())
            .map(|n| (m, n))
    }) else {
        return;
    };
    if !route.catalogue.claim_fetch() {
        return;
    }
    let meta = inbound.is_modern().then(|| {
        let m = msg.params().and_then(|p| p.get("_meta"));
        let pick = |k: &str, d: serde_json::Value| m.and_then(|m| m.get(k)).cloned().unwrap_or(d);
        serde_json::json!({
            "io.modelcontextprotocol/protocolVersion": pick("io.modelcontextprotocol/protocolVersion", mcp::headers::MODERN_VERSION.into()),
            "io.modelcontextprotocol/clientCapabilities": pick("io.modelcontextprotocol/clientCapabilities", serde_json::json!({})),
        })
    });
    match route
        .client
        .fetch_tool_list(ctx, addrs, parts, meta.as_ref())
        .await
    {
        Ok(tools) => {
            route.catalogue.learn(&tools);
            tracing::debug!(request_id = ctx.id_str(), route = %route.key, tools = tools.len(), "tool catalogue fetched from the upstream");
        }
        Err(e) => tracing::warn!(
            request_id = ctx.id_str(), route = %route.key, error = %e,
            "cannot fetch the upstream's tool list; policies see `{name}` with the spec's default annotations"
        ),
    }
}

fn refused_label(refused: &policy::Refused) -> &'static str {
    use policy::verdict::Outcome;
    let outcomes = || refused.verdicts.iter().map(|v| &v.outcome);
    if outcomes().any(|o| matches!(o, Outcome::Hidden { .. })) {
        "hidden"
    } else if outcomes().any(|o| matches!(o, Outcome::Deny { .. })) {
        "deny"
    } else {
        "require_approval"
    }
}

/// `:authority` (HTTP/2, or an absolute-form HTTP/1.1 target) wins over `Host`, per RFC 9110/9113.
fn request_host(parts: &http::request::Parts) -> Option<&str> {
    parts.uri.authority().map(|a| a.as_str()).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}
