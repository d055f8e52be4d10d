//! The admin listener: plaintext HTTP, loopback by default, separate from the TLS listener. `/healthz` (the
//! process answers), `/readyz` ([`ready`]: 200 only when every check passes, else 503, both with the checks as
//! JSON), `/metrics` (Prometheus text, [`crate::metrics`]).
//!
//! [`router`] is the one place its routes are built; the approvals API and page ([`crate::approvals::api`])
//! are merged in when approvals are configured. Health, readiness and metrics have no authentication (keep
//! the listener on loopback or a private interface); the approvals routes and the tool-change routes ([`tools`]) require an approver's token.

pub mod ready;
pub mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics;
use crate::reload::Live;

/// Every admin route, on the serving state.
pub fn router(live: Arc<Live>) -> Router {
    let approvals = live.gateway().approvals().cloned();
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .merge(tools::router())
        .with_state(live);
    match approvals {
        // The approvers' API and page (they authenticate approvers themselves).
        Some(a) => router.merge(crate::approvals::api::router(a)),
        None => router,
    }
}

/// Serves `router` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"alive"}"#,
    )
}

async fn readyz(State(live): State<Arc<Live>>) -> impl IntoResponse {
    let report = ready::check(&live, time::OffsetDateTime::now_utc());
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        report.to_json(),
    )
}

async fn scrape(State(live): State<Arc<Live>>) -> impl IntoResponse {
    let gateway = live.gateway();
    let view = metrics::Live {
        audit: gateway
            .auditor()
            .log()
            .map(|log| (log.metrics(), log.health() == crate::audit::Health::Ok)),
        cert_not_after: crate::tls::validity(&live.tls.current()).map(|(_, not_after)| not_after),
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        reloads: live.reloads.read(),
    };
    (
        [(header::CONTENT_TYPE, metrics::encode::CONTENT_TYPE)],
        metrics::render(&view),
    )
}
