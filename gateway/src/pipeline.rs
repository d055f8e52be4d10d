//! The request path, top to bottom. This file knows the order of the stages and nothing of their logic:
//!
//! tls (server.rs) → [`route`] → [`identity`] → [`upstream_gate`] → [`mcp`] parse → [`arguments`] → [`policy`] →
//! [`crate::audit::stage`] → [`forward`] → [`crate::filter`] → reply
//!
//! Every stage returns a typed error; [`reply`] is the only place errors and policy answers become responses.
//! A request reaches [`forward`] only with a [`Recorded`] (made only by the audit stage, from a
//! [`policy::Permitted`], which only the policy chain makes) and [`upstream_gate::GatedAddrs`] (made only by
//! the gate).

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::approvals::Approvals;
use crate::approvals::caller::{self, Before};
use crate::approvals::hold;
use crate::arguments;
use crate::audit::outcome::Outcome;
use crate::audit::stage::{Auditor, Recorded, Redaction};
use crate::body::Body;
use crate::catalogue::Catalogue;
use crate::config::{Config, Limits, UpstreamUrl};
use crate::ctx::{ConnInfo, REQUEST_ID_HEADER, RequestCtx};
use crate::filter::Listing;
use crate::forward::{self, UpstreamClient};
use crate::identity::{self, Verifier};
use crate::mcp;
use crate::metrics;
use crate::otel::Otel;
use crate::policy;
use crate::policy::{PolicyChain, PolicySet};
use crate::reply::{self, GatewayError};
use crate::route::RouteTable;
use crate::telemetry;
use crate::upstream_gate::{self, Resolve, UpstreamGate};

/// One configured route with everything a request on it needs.
#[derive(Debug)]
pub struct Route {
    pub key: String,
    pub upstream: UpstreamUrl,
    pub client: Arc<UpstreamClient>,
    pub policy: PolicyChain,
    /// What the upstream's `tools/list` said about each tool.
    pub catalogue: Arc<Catalogue>,
    pub validate_arguments: bool,
    /// How tool arguments of this route go into audit records (and approval requests).
    pub redaction: Redaction,
    /// This route's counters (shared by key across config reloads).
    pub stats: Arc<metrics::RouteStats>,
    /// Requests without a valid bearer token are refused (only with an `identity:` block).
    pub require_identity: bool,
    /// What a tool definition that differs from its pin does.
    pub on_tool_change: crate::config::OnToolChange,
}

/// The immutable, validated request path built from a [`Config`].
#[derive(Debug)]
pub struct Gateway {
    table: RouteTable,
    routes: Vec<Route>,
    gate: UpstreamGate,
    limits: Limits,
    auditor: Auditor,
    /// The approval workflow (process-wide, like the auditor); `None` without an `approvals:` block.
    approvals: Option<Arc<Approvals>>,
    /// Bearer-token verification; `None` without an `identity:` block.
    identity: Option<Verifier>,
    /// Trace export (process-wide, like the auditor); `None` without `telemetry.otlp:`.
    otel: Option<Arc<Otel>>,
    /// Tool pins (process-wide, like the auditor); `None` until [`Gateway::set_pins`].
    pins: Option<Arc<crate::pins::Pins>>,
}

impl Gateway {
    /// Builds the request path; `policies` must have been loaded from the same config.
    /// Builds the request path; `policies` must have been loaded from the same config, `auditor` opened on
    /// its audit settings.
    pub fn new(
        config: &Config,
        policies: &PolicySet,
        auditor: Auditor,
        resolver: Arc<dyn Resolve>,
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
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
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
                catalogue: Arc::new(Catalogue::default()),
                validate_arguments: r.validate_arguments,
                redaction: Redaction::for_route(config.audit.as_ref(), r),
                stats: metrics::route_stats(&r.key),
            })
            .collect();
        Ok(Gateway {
            table: RouteTable::new(config),
            routes,
            gate: UpstreamGate::new(config.ip_policy.clone(), resolver),
            limits: config.limits.clone(),
            auditor,
            approvals: None,
            identity: config.identity.as_ref().map(Verifier::new),
            otel: None,
            pins: None,
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn auditor(&self) -> &Auditor {
        &self.auditor
    }

    pub fn approvals(&self) -> Option<&Arc<Approvals>> {
        self.approvals.as_ref()
    }

    /// Attaches the process's approval workflow (opened once at start, kept across reloads).
    pub fn set_approvals(&mut self, approvals: Option<Arc<Approvals>>) {
        self.approvals = approvals;
    }

    pub fn otel(&self) -> Option<&Arc<Otel>> {
        self.otel.as_ref()
    }

    /// Attaches the process's trace exporter (built once at start, kept across reloads).
    pub fn set_otel(&mut self, otel: Option<Arc<Otel>>) {
        self.otel = otel;
    }

    pub fn pins(&self) -> Option<&Arc<crate::pins::Pins>> {
        self.pins.as_ref()
    }

    /// Attaches the process's tool pins (opened once at start, kept across reloads); call it after
    /// [`Gateway::inherit_catalogues`], since it sets each route's `on_tool_change` on its catalogue.
    pub fn set_pins(&mut self, pins: Option<Arc<crate::pins::Pins>>) {
        for r in &self.routes {
            r.catalogue
                .set_guard(pins.as_ref().map(|p| crate::catalogue::Guard {
                    pins: p.clone(),
                    route: r.key.clone(),
                    mode: r.on_tool_change,
                }));
        }
        self.pins = pins;
    }

    pub fn identity(&self) -> Option<&Verifier> {
        self.identity.as_ref()
    }

    /// Keeps `previous`'s fetched JWKS when the key source did not change.
    pub fn inherit_identity_keys(&mut self, previous: &Gateway) {
        if let (Some(new), Some(old)) = (&mut self.identity, &previous.identity) {
            new.inherit_keys(old);
        }
    }

    /// Keeps what `previous` learned of each upstream's tools, for routes whose key and upstream did not
    /// change (a config reload would otherwise refetch every catalogue).
    pub fn inherit_catalogues(&mut self, previous: &Gateway) {
        for r in &mut self.routes {
            if let Some(p) = previous
                .routes
                .iter()
                .find(|p| p.key == r.key && p.upstream == r.upstream)
            {
                r.catalogue = p.catalogue.clone();
            }
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
            error_response(&gw, &ctx, err)
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

/// The response for an error, logged and audited (also used by a call held on its own task).
pub(crate) fn error_response(gw: &Gateway, ctx: &RequestCtx, err: GatewayError) -> Response<Body> {
    telemetry::refusal(ctx, &err);
    gw.auditor.refusal(ctx, &err);
    if let GatewayError::Forward(e) = &err {
        gw.auditor
            .outcome(ctx, None, Some(telemetry::error_chain(e)));
    }
    reply::error(ctx, &err)
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
                    gw: gw.clone(),
                    approvals: approvals.clone(),
                    route: id,
                    addrs,
                    parts,
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
    forward(gw, ctx, id, addrs, parts, permitted).await
}

/// Audit, then forward, streaming the answer back: the one way out of the gateway for a [`policy::Permitted`]
/// request (allowed by the chain, or let through by an approval).
pub(crate) async fn forward(
    gw: &Gateway,
    ctx: &mut RequestCtx,
    route: usize,
    addrs: upstream_gate::GatedAddrs,
    parts: http::request::Parts,
    permitted: policy::Permitted,
) -> Result<Response<Body>, GatewayError> {
    let route = &gw.routes[route];
    // Forward, streaming the answer back. On policed routes every answer is judged on the way (listings
    // filtered, requests the server makes of the client decided; filter/mod.rs), whatever was asked.
    let policed = route.policy.is_configured();
    let listing = policed.then(|| Listing {
        chain: route.policy.clone(),
        catalogue: route.catalogue.clone(),
        context: crate::policy::view::context(ctx),
        modern: permitted.inbound().is_modern(),
    });
    // The requests an answer stream owes answers to (a refused stream answers them with errors).
    let pending: Vec<serde_json::Value> = match (policed, permitted.inbound()) {
        (true, mcp::Inbound::Post { payload, .. }) => payload
            .messages()
            .iter()
            .filter_map(|m| match m {
                mcp::Message::Request { id, .. } => Some(id.to_value()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    // What answering the server on the client's behalf needs (only on policed routes: no per-request copy
    // of the headers otherwise).
    let session = policed.then(|| {
        let mut headers = parts.headers.clone();
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), ctx.id.clone());
        (headers, parts.uri.path().to_owned())
    });
    // The outcome record is written when the answer's body ends (see `audit::outcome`).
    let outcome = gw.auditor.log().map(|log| Outcome {
        log: log.clone(),
        request_id: ctx.id_str().to_owned(),
        start: ctx.start,
        tool_call: permitted.inbound().single_request_method() == Some("tools/call"),
    });
    // A legacy client declaring elicitation at `initialize`: its session is remembered (caller confirmation).
    let elicits = gw
        .approvals
        .as_ref()
        .and_then(|a| a.caller())
        .filter(|_| caller::declares_elicitation(permitted.inbound()));
    // Audit: the decision is durable before anything is forwarded; if it cannot be written, nothing is.
    let span = ctx.trace.stage("audit.record");
    let recorded = gw.auditor.record(ctx, &route.redaction, permitted).await;
    span.result(&recorded);
    let recorded: Recorded = recorded?;
    drop(span);
    // The upstream's spans join this trace: its `traceparent` names the `upstream` span.
    let span = ctx.trace.client("upstream");
    let mut parts = parts;
    span.inject(&ctx.trace, &mut parts.headers);
    if policed {
        // The gateway reads what comes back, and decodes no content coding: ask for none.
        parts.headers.remove(http::header::ACCEPT_ENCODING);
    }
    let sent = Instant::now();
    let resp = route.client.send(ctx, &addrs, recorded, parts).await;
    route.stats.upstream(&resp, sent.elapsed());
    span.result(&resp);
    let resp = resp?;
    ctx.upstream_status = Some(resp.status().as_u16());
    if span.recording() {
        span.set("server.address", route.upstream.to_string());
        span.set(
            "http.response.status_code",
            i64::from(resp.status().as_u16()),
        );
        if resp.status().is_server_error() {
            span.fail(format!("upstream answered {}", resp.status()));
        }
        // It lasts until the answer's body has been passed on, as the request's root does.
        ctx.until_body_end.push(span.keep());
    }
    if let Some(c) = elicits
        && let Some(session) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        c.remember_session(session, crate::approvals::principal(ctx));
    }
    let resp = match listing.zip(session) {
        None => resp.map(|b| b.boxed()),
        Some((listing, (headers, path))) => {
            let police = crate::filter::server_requests::Police {
                chain: route.policy.clone(),
                context: listing.context.clone(),
                client: route.client.clone(),
                addrs,
                headers,
                path,
                audit: gw.auditor.server_requests(ctx),
            };
            let filter = crate::filter::ResponseFilter {
                listing,
                police,
                pending,
            };
            match crate::filter::apply(resp, filter).await {
                Ok(resp) => resp,
                Err(e) => {
                    let e = GatewayError::from(e);
                    if let Some(o) = outcome {
                        o.failed(ctx.upstream_status, telemetry::error_chain(&e));
                    }
                    return Err(e);
                }
            }
        }
    };
    Ok(match outcome {
        Some(o) => o.watch(resp),
        None => resp,
    })
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
