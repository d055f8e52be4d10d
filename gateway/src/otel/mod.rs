//! OpenTelemetry traces (optional, `telemetry.otlp:`): one span per request with a child span per stage
//! (route, identity, ip_gate, parse, policy → one `policy.evaluate` per module, approval.hold, audit.record,
//! upstream), exported over OTLP/HTTP off the request path (see [`export`]).
//!
//! A W3C `traceparent` on the incoming request continues the caller's trace; the `upstream` span's context
//! replaces it on the forwarded request, so the upstream's spans join the same trace. Without a
//! `telemetry.otlp:` block no span is made (a [`Trace`] is `None`: every call below is one branch) and an
//! incoming `traceparent` passes through to the upstream unchanged, as before.
//!
//! The exporter is built once at start and shared by every config generation, like the audit log; a reload
//! does not change it (a changed `telemetry:` block is logged as needing a restart).

pub mod body;
pub mod export;

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};

use crate::config::OtlpSettings;

/// The process's tracer and exporter.
pub struct Otel {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    settings: OtlpSettings,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel")
            .field("endpoint", &self.settings.endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("cannot set up the OTLP trace exporter for {endpoint}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error(
        "cannot set up TLS for the OTLP receiver {endpoint} (telemetry.otlp.ca_file): {detail}"
    )]
    Tls { endpoint: String, detail: String },
}

impl Otel {
    /// Builds the exporter and the batch processor; must run inside the gateway's tokio runtime (exports are
    /// sent on it).
    pub fn start(settings: &OtlpSettings) -> Result<Arc<Otel>, OtelError> {
        let client = export::OnRuntime::new(
            tokio::runtime::Handle::current(),
            settings.timeout,
            settings.ca_file.as_deref(),
        )
        .map_err(|detail| OtelError::Tls {
            endpoint: settings.endpoint.to_string(),
            detail,
        })?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.to_string())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(settings.timeout)
            .with_http_client(client)
            .with_headers(settings.headers.iter().cloned().collect())
            .build()
            .map_err(|source| OtelError::Exporter {
                endpoint: settings.endpoint.to_string(),
                source,
            })?;
        let processor = BatchSpanProcessor::builder(export::Counted(exporter)).build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(export::Queued(processor))
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("mcp-gateway");
        Ok(Arc::new(Otel {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            settings: settings.clone(),
        }))
    }

    pub fn settings(&self) -> &OtlpSettings {
        &self.settings
    }

    /// The root span of one request, continuing the caller's trace when `headers` carry a `traceparent`.
    pub fn request(
        self: &Arc<Self>,
        headers: &http::HeaderMap,
        method: &http::Method,
        path: &str,
    ) -> Trace {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        let span = self
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.as_str().to_owned()),
                KeyValue::new("url.path", path.to_owned()),
            ])
            .start_with_context(&self.tracer, &parent);
        Trace(Some(Node {
            otel: self.clone(),
            cx: parent.with_span(span),
        }))
    }

    /// Exports what is queued and stops the exporter. Blocks (up to the export timeout): call it off the
    /// runtime's worker threads (`spawn_blocking`).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP trace exporter did not shut down cleanly");
        }
    }
}

/// A position in a request's trace: the request's root span or a stage's span. `Trace::default()` is off.
#[derive(Clone, Default)]
pub struct Trace(Option<Node>);

#[derive(Clone)]
struct Node {
    otel: Arc<Otel>,
    cx: Context,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Trace(off)"),
            Some(n) => write!(f, "Trace({:?})", n.cx.span().span_context().trace_id()),
        }
    }
}

impl Trace {
    /// Whether attributes set here are kept (a span exists and was sampled): callers check it before they
    /// build attribute values that cost something.
    pub fn recording(&self) -> bool {
        self.0.as_ref().is_some_and(|n| n.cx.span().is_recording())
    }

    /// A child span for one stage; it ends when the [`Stage`] is dropped.
    pub fn stage(&self, name: &'static str) -> Stage {
        Stage(self.child(name, SpanKind::Internal))
    }

    /// A child span for a call out of the gateway (the upstream request).
    pub fn client(&self, name: &'static str) -> Stage {
        Stage(self.child(name, SpanKind::Client))
    }

    fn child(&self, name: &'static str, kind: SpanKind) -> Trace {
        // Below a span that was sampled out nothing would be kept: make no spans at all (the request's
        // root context still goes upstream, see `inject`).
        Trace(
            self.0
                .as_ref()
                .filter(|n| n.cx.span().span_context().is_sampled())
                .map(|n| {
                    let span = n
                        .otel
                        .tracer
                        .span_builder(name)
                        .with_kind(kind)
                        .start_with_context(&n.otel.tracer, &n.cx);
                    Node {
                        otel: n.otel.clone(),
                        cx: n.cx.with_span(span),
                    }
                }),
        )
    }

    /// Sets an attribute on this span.
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(n) = &self.0 {
            n.cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks this span failed, with a short description.
    pub fn fail(&self, description: impl Into<Cow<'static, str>>) {
        if let Some(n) = &self.0 {
            n.cx.span().set_status(Status::error(description));
        }
    }

    /// Marks the span failed when `result` is an error, naming it.
    pub fn result<T, E: std::fmt::Display>(&self, result: &Result<T, E>) {
        if let (Some(_), Err(e)) = (&self.0, result) {
            self.fail(e.to_string());
        }
    }

    /// Writes this span's context as `traceparent` (and `tracestate`) into outgoing headers, replacing the
    /// caller's; when this span was not made (sampled out), `fallback`'s (the request's root, not sampled).
    pub fn inject(&self, fallback: &Trace, headers: &mut http::HeaderMap) {
        if let Some(n) = self.0.as_ref().or(fallback.0.as_ref()) {
            n.otel
                .propagator
                .inject_context(&n.cx, &mut HeaderInjector(headers));
        }
    }

    /// Ends this span now (a root span is ended explicitly; stage spans end when dropped).
    pub fn end(&self) {
        if let Some(n) = &self.0 {
            n.cx.span().end();
        }
    }
}

/// A stage's span: a [`Trace`] that ends when dropped.
#[derive(Debug, Default)]
pub struct Stage(Trace);

impl std::ops::Deref for Stage {
    type Target = Trace;
    fn deref(&self) -> &Trace {
        &self.0
    }
}

impl Stage {
    /// The span, no longer ended when this is dropped: whoever holds it ends it (see [`body`]).
    pub fn keep(mut self) -> Trace {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.0.end();
    }
}
