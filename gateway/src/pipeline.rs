//! The request path, top to bottom. This file knows the order of the stages and nothing of their logic:
//!
//! tls (server.rs) → [`route`] → [`upstream_gate`] → [`mcp`] parse → [`policy`] → [`forward`] → reply
//!
//! Every stage returns a typed error; [`reply::error`] is the only place errors become responses. A request
//! reaches [`forward`] only with a [`policy::Permitted`] (made only by the policy chain) and a
//! [`upstream_gate::GatedAddrs`] (made only by the gate).

use std::sync::Arc;

use http::{HeaderName, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::{Config, Limits, UpstreamUrl};
use crate::ctx::{ConnInfo, REQUEST_ID_HEADER, RequestCtx};
use crate::forward::{self, UpstreamClient};
use crate::mcp;
use crate::policy;
use crate::policy::PolicyChain;
use crate::reply::{self, Body, GatewayError};
use crate::route::RouteTable;
use crate::telemetry;
use crate::upstream_gate::{self, Resolve, UpstreamGate};

/// One configured route with everything a request on it needs.
#[derive(Debug)]
pub struct Route {
    pub key: String,
    pub upstream: UpstreamUrl,
    pub client: UpstreamClient,
    pub policy: PolicyChain,
}

/// The immutable, validated request path built from a [`Config`].
#[derive(Debug)]
pub struct Gateway {
    table: RouteTable,
    routes: Vec<Route>,
    gate: UpstreamGate,
    limits: Limits,
}

impl Gateway {
    pub fn with_resolver(config: &Config, resolver: Arc<dyn Resolve>) -> std::io::Result<Self> {
        let needs_tls = config
            .routes
            .iter()
            .any(|r| r.upstream.scheme == crate::config::Scheme::Https);
        let tls = if needs_tls {
            Some(forward::upstream_tls_config(&config.upstream_tls)?)
        } else {
            None
        };
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                key: r.key.clone(),
                upstream: r.upstream.clone(),
                client: UpstreamClient::new(&r.upstream, tls.clone(), &config.limits),
                policy: PolicyChain::Unconfigured,
            })
            .collect();
        Ok(Gateway {
            table: RouteTable::new(config),
            routes,
            gate: UpstreamGate::new(config.ip_policy.clone(), resolver),
            limits: config.limits.clone(),
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Handles one request; never fails (errors become responses here).
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut ctx = RequestCtx::new(conn, req.method(), req.uri().path());
    let mut resp = match run(&gw, &mut ctx, req).await {
        Ok(resp) => resp,
        Err(err) => {
            telemetry::refusal(&ctx, &err);
            reply::error(&ctx, &err)
        }
    };
    resp.headers_mut()
        .insert(HeaderName::from_static(REQUEST_ID_HEADER), ctx.id.clone());
    telemetry::access(&ctx, resp.status());
    resp
}

async fn run(
    gw: &Gateway,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = req.into_parts();

    // Route: Host (or :authority) must route, and to the same route as the TLS SNI.
    let (id, host) = gw
        .table
        .route(request_host(&parts), ctx.conn.sni.as_deref())?;
    let route = &gw.routes[id];
    ctx.host = Some(host);
    ctx.route = Some(route.key.clone());

    // Upstream IP gate: resolve once, check every address; only these addresses will be dialled.
    let addrs: upstream_gate::GatedAddrs = gw.gate.check(&route.upstream).await?;

    // MCP parse: the whole body, strictly, before anything is forwarded.
    let inbound = match mcp::classify(
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        gw.limits.max_body_bytes,
    )? {
        Some(inbound) => inbound,
        None => {
            mcp::read_post(
                &parts.headers,
                body,
                gw.limits.max_body_bytes,
                gw.limits.request_body_timeout,
            )
            .await?
        }
    };
    ctx.note(&inbound);

    // Policy: the only source of a `Permitted`.
    let permitted: policy::Permitted = route.policy.decide(inbound);

    // Forward, streaming the answer back.
    let resp = route.client.send(ctx, &addrs, permitted, parts).await?;
    ctx.upstream_status = Some(resp.status().as_u16());
    Ok(resp.map(|b| b.boxed()))
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
