//! [`GatewayError`]: everything that can stop a request before or while forwarding, and its one
//! classification ([`GatewayError::class`]) that the wire mapping (`reply`), the refusal record
//! (`audit_stage`), the refusal counter (`metrics`) and the log line (`telemetry`) all read. Each stage's
//! own error type stays beside the stage; this sum of them sits above the stages that raise them.

use crate::error_class::ErrorClass;
use crate::filter::FilterError;
use crate::forward::ForwardError;
use crate::identity::{IdentityError, Unauthenticated};
use crate::mcp::{McpError, ParseError};
use crate::route::RouteError;
use crate::upstream_gate::GateError;

/// Everything that can stop a request before or while forwarding.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Mcp(#[from] McpError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("audit log unavailable: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("unauthenticated: {0}")]
    Identity(#[from] Unauthenticated),
}

impl GatewayError {
    /// The one classification of an error. Every arm names its variants, so a new variant of any stage
    /// error does not compile until it is classified here.
    pub fn class(&self) -> ErrorClass {
        match self {
            GatewayError::Route(e) => match e {
                RouteError::NoRoute { .. } => ErrorClass::NoRoute,
                RouteError::SniMismatch { .. } | RouteError::MissingSni => ErrorClass::SniMismatch,
                RouteError::MissingHost | RouteError::BadHost { .. } => ErrorClass::BadHost,
            },
            GatewayError::Gate(e) => match e {
                GateError::NotAllowed { .. } => ErrorClass::IpNotAllowed,
                GateError::Resolve { .. } | GateError::NoAddress { .. } => ErrorClass::Unresolvable,
            },
            GatewayError::Mcp(e) => match e {
                McpError::MethodNotAllowed(_) => ErrorClass::MethodNotAllowed,
                McpError::UnsupportedMediaType(_) | McpError::UnsupportedEncoding(_) => {
                    ErrorClass::UnsupportedMediaType
                }
                McpError::TooLarge { .. } => ErrorClass::BodyTooLarge,
                McpError::BodyTimeout(_) => ErrorClass::BodyTimeout,
                McpError::BodyRead(_) => ErrorClass::BodyRead,
                McpError::Parse(ParseError::Json(_)) => ErrorClass::JsonParse,
                McpError::Parse(ParseError::Invalid(_)) => ErrorClass::InvalidJsonRpc,
                McpError::Header(_) => ErrorClass::HeaderMismatch,
            },
            GatewayError::Forward(e) => match e {
                ForwardError::Timeout { .. } => ErrorClass::UpstreamTimeout,
                ForwardError::Unavailable { .. } | ForwardError::Request(_) => {
                    ErrorClass::UpstreamUnavailable
                }
            },
            GatewayError::Filter(e) => match e {
                FilterError::Read(_)
                | FilterError::NotJson(_)
                | FilterError::Encoded(_)
                | FilterError::Withheld => ErrorClass::Unfilterable,
            },
            GatewayError::Audit(_) => ErrorClass::AuditUnavailable,
            GatewayError::Identity(u) => match u.error {
                IdentityError::Jwks(_) => ErrorClass::IdentityUnavailable,
                IdentityError::Missing
                | IdentityError::NotBearer
                | IdentityError::Malformed(_)
                | IdentityError::AlgorithmNotAllowed(_)
                | IdentityError::UnknownKey { .. }
                | IdentityError::Invalid(_)
                | IdentityError::NoSubject => ErrorClass::Unauthenticated,
            },
        }
    }

    /// Short machine-readable reason (the class's `reason`), used in logs, the error body and metrics.
    pub fn kind(&self) -> &'static str {
        self.class().reason()
    }
}
