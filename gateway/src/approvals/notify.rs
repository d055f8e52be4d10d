//! Telling someone a call waits for approval: a JSON POST to the configured webhook, on its own task so it
//! never delays the call. Retried with exponential backoff (500 ms, 1 s, 2 s, …) up to `attempts`; the
//! result (delivered or not, attempts, last error) is an `approval_notified` audit record, and failures are
//! logged.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use super::store::Approval;
use super::{record, rfc3339};
use crate::audit::ApprovalEvent;
use crate::audit::stage::Auditor;
use crate::config::Webhook;

/// Deadline of one delivery attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The JSON body of a notification.
pub fn payload(a: &Approval) -> serde_json::Value {
    json!({
        "type": "approval_requested",
        "approval_id": a.id,
        "route": a.route,
        "tool": a.tool,
        "arguments": a.arguments,
        "args_digest": format!("sha256:{}", a.args_digest),
        "principal": a.principal,
        "policy": a.policy,
        "reason": a.reason,
        "created_at": rfc3339(a.created_at),
        "expires_at": rfc3339(a.expires_at),
        "text": format!("{} wants to call `{}` on route `{}`: {} (policy {}). Approve or deny approval {}.",
            a.principal.as_deref().unwrap_or("A caller"), a.tool, a.route, a.reason, a.policy, a.id),
    })
}

/// Delivers the notification for `a` in the background.
pub fn spawn(hook: Webhook, a: Approval, auditor: Auditor) {
    tokio::spawn(async move {
        let body = Bytes::from(payload(&a).to_string());
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut backoff = Duration::from_millis(500);
        let mut last_error = None;
        let mut attempts = 0;
        for attempt in 1..=hook.attempts {
            attempts = attempt;
            let req = http::Request::post(hook.url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(
                    http::header::USER_AGENT,
                    concat!("mcp-gateway/", env!("CARGO_PKG_VERSION")),
                )
                .body(Full::new(body.clone()))
                .expect("a valid request");
            let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook answered HTTP {status}"))
                }
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")));
            match outcome {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                Err(e) => {
                    tracing::warn!(approval = %a.id, attempt, error = %e, "approval webhook delivery failed");
                    last_error = Some(e);
                }
            }
            if attempt < hook.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if let Some(e) = &last_error {
            tracing::error!(approval = %a.id, attempts, error = %e, "approval webhook: giving up");
        }
        if let Some(log) = auditor.log() {
            let mut r = record(ApprovalEvent::Notified, &a, None);
            r.delivered = Some(last_error.is_none());
            r.attempts = Some(attempts);
            r.error = last_error;
            log.append_later(crate::audit::Record::Approval(r));
        }
    });
}
