//! Telemetry: JSON logs on stdout, OpenTelemetry trace export over OTLP/HTTP and the
//! Prometheus metrics recorder.
//!
//! Logs never carry tokens, secrets or file contents: handlers record ids and paths as span
//! fields, never request bodies or headers. Metrics carry no tenant or principal labels, so
//! one tenant can never learn about another through `/metrics`, and cardinality stays bounded.
//!
//! Trace export is off unless `FE_OTLP_ENDPOINT` is set; then every `tracing` span is also an
//! OpenTelemetry span (service name `file-engine`) exported in batches as protobuf to
//! `<endpoint>/v1/traces`. [`set_parent_from_traceparent`] joins a span to a caller's W3C trace.

use std::collections::HashMap;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// The `service.name` resource attribute of every exported span.
pub const SERVICE_NAME: &str = "file-engine";

/// Why the trace exporter could not be built (export is then skipped, logs still work).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("building the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The exporter's HTTP client is built without TLS to keep the build small; a collector
    /// is expected next to the process (sidecar or node agent) on plain HTTP.
    #[error("OTLP endpoint {0} uses https, which this build does not support; use http://")]
    TlsUnsupported(String),
}

/// Keeps the trace pipeline alive; dropping it flushes the spans still queued and shuts the
/// exporter down, so hold it until the process exits.
#[must_use = "dropping the guard stops trace export"]
#[derive(Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // `shutdown` exports everything still queued before stopping the batch thread.
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "flushing the trace exporter failed");
            }
        }
    }
}

/// Installs the JSON log subscriber once per process (later calls are no-ops, which lets
/// tests start several services in one process).
pub fn init_logging(level: &str) {
    // Without an endpoint the guard owns nothing, so dropping it at once is harmless.
    let _ = init(level, None);
}

/// Installs the JSON log subscriber and, when `otlp_endpoint` is set, an OpenTelemetry layer
/// exporting spans to `<otlp_endpoint>/v1/traces`. Only the first call in a process installs
/// anything; later calls return an inert guard.
pub fn init(level: &str, otlp_endpoint: Option<&str>) -> TelemetryGuard {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_writer(std::io::stdout);
    let (provider, build_error) = match otlp_endpoint.filter(|e| !e.trim().is_empty()) {
        None => (None, None),
        Some(endpoint) => match tracer_provider(endpoint) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(SERVICE_NAME)));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(otel)
        .try_init()
        .is_ok();
    if let Some(e) = build_error {
        tracing::warn!(error = %e, "trace export disabled");
    }
    match provider {
        Some(p) if installed => {
            tracing::info!(endpoint = otlp_endpoint, "exporting traces over OTLP/HTTP");
            TelemetryGuard { provider: Some(p) }
        }
        Some(p) => {
            // Another subscriber won the race: this provider would never see a span.
            let _ = p.shutdown();
            TelemetryGuard::default()
        }
        None => TelemetryGuard::default(),
    }
}

/// The OTLP/HTTP protobuf exporter behind a batch span processor (its own thread, so export
/// never blocks request handling).
fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        return Err(TelemetryError::TlsUnsupported(endpoint.to_owned()));
    }
    let url = format!("{endpoint}/v1/traces");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()?;
    let resource = Resource::builder().with_service_name(SERVICE_NAME).build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Makes the caller's W3C trace the OpenTelemetry parent of `span`, so exported spans carry
/// the client's trace id. Returns whether it was applied: false for an invalid header or
/// when no OpenTelemetry layer is installed.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) -> bool {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder; `None` only if another recorder was installed first.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let buckets = [
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()
                .and_then(|b| b.install_recorder().ok())
        })
        .clone()
}
