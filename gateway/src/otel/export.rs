//! The export side of tracing: the OTLP/HTTP exporter, the HTTP client it sends with, and the counters of
//! what was exported and what was lost.
//!
//! Spans leave the request path at `Span::end`: the SDK's `BatchSpanProcessor` queues them (bounded; a full
//! queue drops) and exports batches from its own thread. That thread hands each HTTP request to the gateway's
//! tokio runtime ([`OnRuntime`]) and waits for it; [`crate::outbound`] sends it (`http` or `https`, with the
//! system's roots plus `telemetry.otlp.ca_file`).
//! An export that fails or times out drops its batch: it is counted and logged, never retried into the
//! request path, and never seen by a request.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Spans handed to a successful export request.
pub static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);
/// Spans lost because their export request failed (receiver down, non-2xx answer, timeout).
pub static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Export requests that failed.
pub static EXPORT_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Sends the exporter's HTTP requests on the gateway's tokio runtime. The SDK's batch processor exports from
/// a plain thread (`futures_executor::block_on`), where hyper cannot run; awaiting a spawned task's handle
/// needs no reactor.
#[derive(Clone)]
pub struct OnRuntime {
    runtime: tokio::runtime::Handle,
    client: crate::outbound::Client,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnRuntime")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Largest receiver answer read (OTLP answers are a few bytes; a partial-success message at most).
const MAX_ANSWER_BYTES: usize = 64 << 10;

impl OnRuntime {
    pub fn new(
        runtime: tokio::runtime::Handle,
        timeout: std::time::Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        Ok(OnRuntime {
            runtime,
            client: crate::outbound::Client::new(ca_file)?,
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let headers: Vec<_> = parts
            .headers
            .iter()
            .filter(|(name, _)| *name != http::header::HOST)
            .filter_map(|(name, value)| Some((name.clone(), value.to_str().ok()?.to_owned())))
            .collect();
        let (client, timeout) = (self.client.clone(), self.timeout);
        let answer = self
            .runtime
            .spawn(async move {
                tokio::time::timeout(
                    timeout,
                    client.request(&parts.uri, parts.method, &headers, body, MAX_ANSWER_BYTES),
                )
                .await
            })
            .await?;
        let answer = match answer {
            Err(_) => return Err(format!("no answer within {timeout:?}").into()),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(a)) => a,
        };
        Ok(http::Response::builder()
            .status(answer.status)
            .body(answer.body)?)
    }
}

/// The OTLP exporter, counting what it exported and what it lost.
#[derive(Debug)]
pub struct Counted<E>(pub E);

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        match &result {
            Ok(()) => {
                SPANS_EXPORTED.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                SPANS_DROPPED.fetch_add(n, Ordering::Relaxed);
                EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(spans = n, error = %e, "OTLP trace export failed; the batch is dropped");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource)
    }
}

/// Sampled spans that ended and were handed to the batch queue. `ended − exported − dropped` is what is
/// still queued plus what a full queue dropped (the SDK drops silently when its queue is full).
pub static SPANS_ENDED: AtomicU64 = AtomicU64::new(0);

/// The batch processor, counting the spans handed to it.
#[derive(Debug)]
pub struct Queued<P>(pub P);

impl<P: opentelemetry_sdk::trace::SpanProcessor> opentelemetry_sdk::trace::SpanProcessor
    for Queued<P>
{
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx)
    }

    fn on_end(&self, span: SpanData) {
        SPANS_ENDED.fetch_add(1, Ordering::Relaxed);
        self.0.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource)
    }
}
