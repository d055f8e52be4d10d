//! Requests the server makes of the client on an SSE stream — `sampling/createMessage`,
//! `elicitation/create`, `roots/list`, … — are decided by the route's chain (direction server-to-client)
//! before the client sees them. A refused one is withheld, and the server is answered on the client's behalf
//! with a JSON-RPC error, posted on the same session, so it does not wait forever.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Value, json};

use crate::audit_stage::ServerRequestAudit;
use crate::forward::UpstreamClient;
use crate::mcp::{Message, jsonrpc};
use crate::policy::PolicyChain;
use crate::policy::bindings::types::RequestContext;
use crate::policy::verdict::Outcome;
use crate::reply::POLICY_DENIED;
use crate::upstream_gate::GatedAddrs;

/// What policing one stream needs.
pub struct Police {
    pub chain: PolicyChain,
    pub context: RequestContext,
    pub client: Arc<UpstreamClient>,
    pub addrs: GatedAddrs,
    /// The client's request headers (session id, protocol version, credentials travel on the answer).
    pub headers: HeaderMap,
    /// The MCP endpoint path the stream belongs to.
    pub path: String,
    /// Where the decisions are recorded (`None` with auditing off).
    pub audit: Option<ServerRequestAudit>,
}

impl Police {
    /// Whether the request `v` may reach the client. When the chain refuses it (or it is not a well-formed
    /// request), it is withheld and the server is answered with an error on the client's behalf.
    pub async fn allows(&self, v: &Value) -> bool {
        let msg = match jsonrpc::message(v.clone()) {
            Ok(m @ Message::Request { .. }) => m,
            Ok(_) | Err(_) => {
                tracing::warn!(request_id = %self.context.request_id, "a server-to-client request the gateway cannot read is withheld");
                return false;
            }
        };
        let verdict = self
            .chain
            .decide_server_request(self.context.clone(), &msg)
            .await;
        let recorded = match &self.audit {
            Some(audit) => audit.record(&msg, &verdict).await,
            None => Ok(()),
        };
        let (policy, reason) = match (&verdict.outcome, recorded) {
            (_, Err(e)) => {
                tracing::error!(request_id = %self.context.request_id, error = %e, "cannot record a server-to-client request's decision; withholding it");
                (
                    Arc::from(crate::policy::verdict::GATEWAY),
                    "the gateway cannot record this request in its audit log".to_owned(),
                )
            }
            (Outcome::Allow, Ok(())) => return true,
            (
                Outcome::Deny { policy, reason } | Outcome::RequireApproval { policy, reason },
                Ok(()),
            ) => (policy.clone(), reason.clone()),
            (Outcome::Hidden { policy, .. }, Ok(())) => (policy.clone(), "hidden".to_owned()),
        };
        let method = msg.method().unwrap_or("?");
        tracing::info!(
            request_id = %self.context.request_id, policy = &*policy, method,
            "server-to-client request refused by policy: {reason}"
        );
        crate::metrics::COUNTERS
            .policy_denials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = msg.id().map(|i| i.to_value()).unwrap_or(Value::Null);
        let answer = json!({"jsonrpc": "2.0", "id": id, "error": {"code": POLICY_DENIED,
            "message": format!("Blocked by policy '{policy}': {reason}. Gateway request id: {}.", self.context.request_id),
            "data": {"policy": &*policy, "reason": reason, "request_id": self.context.request_id}}});
        match self
            .client
            .post_message(&self.addrs, &self.headers, &self.path, answer.to_string())
            .await
        {
            Ok(status) => {
                tracing::debug!(%status, "refusal of a server-to-client request sent to the upstream")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not send the refusal of a server-to-client request to the upstream")
            }
        }
        false
    }
}
