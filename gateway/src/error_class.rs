//! What kind of error stopped a request, as one plain vocabulary: [`crate::error::GatewayError::class`] is
//! the one place an error is classified, and the wire mapping (`reply`), the refusal record
//! (`audit_stage`), the refusal counter (`metrics`) and the log line (`telemetry`) all read this class. A
//! leaf: it imports nothing of the gateway, so every layer may name it.

/// The class of a [`crate::error::GatewayError`]: fine enough for every reader (status, JSON-RPC code,
/// audit refusal kind, metrics `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No route for the host.
    NoRoute,
    /// The host names another route than the TLS SNI, or the connection has no SNI.
    SniMismatch,
    /// No host, or one that is not a host name.
    BadHost,
    /// The upstream resolved to an address outside `allowed_ips`.
    IpNotAllowed,
    /// The upstream's name did not resolve (or to no address).
    Unresolvable,
    /// An HTTP method MCP does not use.
    MethodNotAllowed,
    /// A media type or content coding the gateway does not take.
    UnsupportedMediaType,
    /// The body is over the size limit.
    BodyTooLarge,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body could not be read.
    BodyRead,
    /// The body is not JSON.
    JsonParse,
    /// The body is JSON but not valid JSON-RPC.
    InvalidJsonRpc,
    /// The MCP routing headers disagree with the body.
    HeaderMismatch,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream could not be reached or the request not built.
    UpstreamUnavailable,
    /// The upstream's answer could not be read strictly, so it was withheld.
    Unfilterable,
    /// The audit log cannot write.
    AuditUnavailable,
    /// The identity provider's keys are unavailable.
    IdentityUnavailable,
    /// No valid bearer token.
    Unauthenticated,
}

/// The `reason` labels of refusals (logs, the error's `data.reason`, `mcp_gateway_refusals_total`), in the
/// order of [`ErrorClass::reason_index`].
pub const REASONS: [&str; 15] = [
    "no_route",
    "sni_mismatch",
    "bad_host",
    "ip_not_allowed",
    "upstream_unresolvable",
    "parse_error",
    "header_mismatch",
    "body_too_large",
    "bad_request",
    "upstream_timeout",
    "upstream_unavailable",
    "unfilterable_response",
    "audit_unavailable",
    "unauthenticated",
    "identity_unavailable",
];

impl ErrorClass {
    /// The index of this class's `reason` in [`REASONS`].
    pub fn reason_index(self) -> usize {
        match self {
            ErrorClass::NoRoute => 0,
            ErrorClass::SniMismatch => 1,
            ErrorClass::BadHost => 2,
            ErrorClass::IpNotAllowed => 3,
            ErrorClass::Unresolvable => 4,
            ErrorClass::JsonParse | ErrorClass::InvalidJsonRpc => 5,
            ErrorClass::HeaderMismatch => 6,
            ErrorClass::BodyTooLarge => 7,
            ErrorClass::MethodNotAllowed
            | ErrorClass::UnsupportedMediaType
            | ErrorClass::BodyTimeout
            | ErrorClass::BodyRead => 8,
            ErrorClass::UpstreamTimeout => 9,
            ErrorClass::UpstreamUnavailable => 10,
            ErrorClass::Unfilterable => 11,
            ErrorClass::AuditUnavailable => 12,
            ErrorClass::Unauthenticated => 13,
            ErrorClass::IdentityUnavailable => 14,
        }
    }

    /// Short machine-readable reason, used in logs, the error body and metrics.
    pub fn reason(self) -> &'static str {
        REASONS[self.reason_index()]
    }
}

/// An error with its sources, each once (`outer: inner: innermost`), for logs and audit details.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = e.source();
    }
    s
}
