//! Stage 5 — policy: every [`Inbound`] is decided before it can be forwarded.
//!
//! The only way to obtain a [`Permitted`] — which the forwarder requires — is [`PolicyChain::decide`], so a
//! new code path that skips the decision does not compile. The Wasm policy engine (WIT contract, sandboxed
//! components, per-route chains) plugs in here; until a `policies:` block is configured the chain is
//! [`PolicyChain::Unconfigured`], which allows every message and says so loudly at start, like a drop-in for
//! Anthropic's proxy must.

use crate::mcp::Inbound;

/// The decision chain for a route.
#[derive(Debug, Clone)]
pub enum PolicyChain {
    /// No `policies:` block in the config: every message is allowed.
    Unconfigured,
}

/// Proof that the policy chain allowed this request. Private field: only [`PolicyChain::decide`] makes one.
#[derive(Debug)]
pub struct Permitted {
    inbound: Inbound,
}

impl Permitted {
    pub fn inbound(&self) -> &Inbound {
        &self.inbound
    }
}

impl PolicyChain {
    /// Decides one request. Infallible today because the only chain is [`PolicyChain::Unconfigured`]; the
    /// Wasm chain returns a refusal that is answered as an MCP result or JSON-RPC error, never an HTTP 4xx.
    pub fn decide(&self, inbound: Inbound) -> Permitted {
        match self {
            PolicyChain::Unconfigured => Permitted { inbound },
        }
    }
}
