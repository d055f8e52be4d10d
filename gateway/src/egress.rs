//! The way out for one permitted call: audit the decision (durable first), send it upstream, and pass the
//! answer back through the response filter and the outcome watcher. The orchestrator ([`crate::pipeline`])
//! hands an allowed call here; an approval stage hands a held call here once it is released
//! ([`crate::approvals`]), with the same [`Egress`] value — nobody calls back up into the orchestrator.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, Response};
use http_body_util::BodyExt;

use crate::audit_stage::outcome::Outcome;
use crate::audit_stage::{Auditor, Recorded, Redaction};
use crate::body::Body;
use crate::catalogue::Catalogue;
use crate::config::UpstreamUrl;
use crate::ctx::{REQUEST_ID_HEADER, RequestCtx};
use crate::error::GatewayError;
use crate::error_class::error_chain;
use crate::filter::Listing;
use crate::forward::UpstreamClient;
use crate::mcp;
use crate::metrics;
use crate::policy::{self, PolicyChain};
use crate::reply;
use crate::telemetry;
use crate::upstream_gate::GatedAddrs;

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

/// Told the `Mcp-Session-Id` the upstream gave an answer (caller confirmation remembers the sessions of
/// legacy clients that declared elicitation at `initialize`).
pub type SessionHook = Box<dyn FnOnce(&str) + Send>;

/// What one permitted call of a route needs to leave the gateway (owned and cheap to clone: a held call
/// carries it onto its own task).
#[derive(Debug, Clone)]
pub struct Egress {
    pub route: Arc<Route>,
    pub auditor: Auditor,
}

impl Egress {
    /// Audit, then forward, streaming the answer back: the one way out of the gateway for a
    /// [`policy::Permitted`] request (allowed by the chain, or let through by an approval).
    pub async fn send(
        &self,
        ctx: &mut RequestCtx,
        addrs: GatedAddrs,
        parts: http::request::Parts,
        permitted: policy::Permitted,
        on_session: Option<SessionHook>,
    ) -> Result<Response<Body>, GatewayError> {
        let route = &*self.route;
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
        // What answering the server on the client's behalf needs (only on policed routes: no per-request
        // copy of the headers otherwise).
        let session = policed.then(|| {
            let mut headers = parts.headers.clone();
            headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), ctx.id.clone());
            (headers, parts.uri.path().to_owned())
        });
        // The outcome record is written when the answer's body ends (see `audit_stage::outcome`).
        let outcome = self.auditor.log().map(|log| Outcome {
            log: log.clone(),
            request_id: ctx.id_str().to_owned(),
            start: ctx.start,
            tool_call: permitted.inbound().single_request_method() == Some("tools/call"),
        });
        // Audit: the decision is durable before anything is forwarded; if it cannot be written, nothing is.
        let span = ctx.trace.stage("audit.record");
        let recorded = self.auditor.record(ctx, &route.redaction, permitted).await;
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
        if let Some(hook) = on_session
            && let Some(session) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
        {
            hook(session);
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
                    audit: self.auditor.server_requests(ctx),
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
                            o.failed(ctx.upstream_status, error_chain(&e));
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

    /// The response for an error, logged and audited (also used by a call held on its own task).
    pub fn error_response(&self, ctx: &RequestCtx, err: GatewayError) -> Response<Body> {
        error_response(&self.auditor, ctx, err)
    }
}

/// One call's way out, owned: what a held call keeps until it is released or refused.
pub struct Exit {
    pub egress: Egress,
    /// The gated addresses of the route's upstream (the only ones dialled).
    pub addrs: GatedAddrs,
    /// The request's head, as it is forwarded.
    pub parts: http::request::Parts,
}

impl Exit {
    /// [`Egress::send`] for this call.
    pub async fn send(
        self,
        ctx: &mut RequestCtx,
        permitted: policy::Permitted,
        on_session: Option<SessionHook>,
    ) -> Result<Response<Body>, GatewayError> {
        self.egress
            .send(ctx, self.addrs, self.parts, permitted, on_session)
            .await
    }
}

/// The response for an error, logged and audited.
pub fn error_response(auditor: &Auditor, ctx: &RequestCtx, err: GatewayError) -> Response<Body> {
    telemetry::refusal(ctx, &err);
    auditor.refusal(ctx, err.class(), &err);
    if let GatewayError::Forward(e) = &err {
        auditor.outcome(ctx, None, Some(error_chain(e)));
    }
    reply::error(ctx, &err)
}
