//! Telling someone a call waits for approval: a JSON POST to the configured webhook (`http` or `https`,
//! through [`crate::outbound`]), on its own task so it never delays the call. Retried with exponential backoff
//! (500 ms, 1 s, 2 s, …) up to `attempts`; the result (delivered or not, attempts, last error) is an
//! `approval_notified` audit record, and failures are logged. With `secret_file`, each POST carries
//! `X-MCP-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">` so the receiver can
//! check it came from the gateway and is fresh.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::store::Approval;
use super::{record, rfc3339};
use crate::audit::ApprovalEvent;
use crate::audit_stage::Auditor;
use crate::config::Webhook;

/// Deadline of one delivery attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The header carrying the notification's signature (with `secret_file`).
pub const SIGNATURE_HEADER: &str = "x-mcp-gateway-signature";

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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
        let mut backoff = Duration::from_millis(500);
        let mut last_error = None;
        let mut attempts = 0;
        for attempt in 1..=hook.attempts {
            attempts = attempt;
            let mut headers = vec![(http::header::CONTENT_TYPE, "application/json".to_owned())];
            if let Some(secret) = &hook.secret {
                headers.push((
                    http::HeaderName::from_static(SIGNATURE_HEADER),
                    signature(secret, unix_now(), &body),
                ));
            }
            let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
                let answer = crate::outbound::request(
                    &hook.url,
                    hook.ca_file.as_deref(),
                    http::Method::POST,
                    &headers,
                    body.clone(),
                    64 << 10,
                )
                .await?;
                if answer.status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook answered HTTP {}", answer.status))
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
