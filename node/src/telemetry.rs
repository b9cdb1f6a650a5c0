//! What leaves the node for operators: logs (stderr), traces and metrics (OTLP over
//! gRPC to `telemetry.otlp_endpoint`), and Prometheus text (`telemetry.prometheus_listen`,
//! see [`prometheus`]).
//!
//! Traces follow a request across nodes: a client's W3C `traceparent` becomes the parent
//! of the node's `request` span ([`adopt`]), and a forwarded request carries the
//! forwarding span's context to the leader ([`propagate`]). With no endpoint the
//! OpenTelemetry layer is not installed: spans stay plain `tracing` spans, [`adopt`] and
//! [`propagate`] do nothing, and nothing is exported. The spans and their fields:
//! [`spans`].

pub mod events;
pub mod log_filter;
pub mod prometheus;
pub mod spans;
pub mod traffic;

pub use spans::{TraceParent, exporting};

use crate::context::Metrics;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use shoal_cluster_config::NodeConfig;
use shoal_protocol::TraceContext;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How often metrics are pushed to the OTLP endpoint.
pub const METRICS_EXPORT_INTERVAL_MS: u64 = 10_000;
/// Longest a flush of traces and metrics may take at shutdown.
pub const FLUSH_TIMEOUT_MS: u64 = 5_000;
/// Longest accepted `traceparent` / `tracestate`, in bytes (longer ones are ignored).
pub const TRACE_HEADER_BYTES_MAX: usize = 512;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint {endpoint}: {message}; check the URL or remove the key")]
pub struct TelemetryError {
    endpoint: String,
    message: String,
}

/// The exporters, kept to flush them at shutdown.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.tracer.is_some())
            .field("metrics", &self.meter.is_some())
            .finish()
    }
}

/// Installs the process's `tracing` subscriber: the log filter (`SHOAL_LOG`, else
/// `telemetry.log_filter`), logs on stderr, and, with `telemetry.otlp_endpoint`, the
/// OpenTelemetry layer. Must run inside the Tokio runtime (the gRPC exporter needs it).
/// A second call in one process keeps the first subscriber.
pub fn init(config: &NodeConfig) -> Result<Telemetry, TelemetryError> {
    let directives = std::env::var("SHOAL_LOG")
        .ok()
        .filter(|d| tracing_subscriber::EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| config.telemetry.log_filter.clone());
    // Reloadable: `shoalctl admin log-filter` replaces it at run time.
    let filter = log_filter::reloadable(&directives);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let Some(endpoint) = config.telemetry.otlp_endpoint.clone() else {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .try_init();
        return Ok(Telemetry::default());
    };
    let failed = |e: &dyn std::fmt::Display| TelemetryError {
        endpoint: endpoint.clone(),
        message: e.to_string(),
    };
    let t = &config.telemetry;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .with_attributes(
            std::iter::once(KeyValue::new(
                "shoal.node.id",
                config.node.id.as_str().to_owned(),
            ))
            .chain(
                t.resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            ),
        )
        .build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| failed(&e))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        t.sampling_ratio.as_f64(),
    )));
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_sampler(sampler)
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| failed(&e))?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metrics)
        .with_interval(Duration::from_millis(METRICS_EXPORT_INTERVAL_MS))
        .build();
    let meter = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(tracer.tracer("shoal-node"));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(layer)
        .try_init();
    if installed.is_ok() {
        spans::set_exporting();
    }
    tracing::info!(%endpoint, "exporting traces and metrics over OTLP");
    Ok(Telemetry {
        tracer: Some(tracer),
        meter: Some(meter),
    })
}

impl Telemetry {
    /// Exports the node's metrics through this telemetry's meter, if any: the gauges
    /// and counters of [`Metrics`] ([`prometheus::READINGS`]), read at each export, and
    /// its histograms.
    pub fn export_metrics(&self, metrics: &Arc<Metrics>) {
        let Some(provider) = &self.meter else {
            return;
        };
        let meter = provider.meter("shoal-node");
        for r in prometheus::READINGS {
            let metrics = metrics.clone();
            let read = r.read;
            match r.kind {
                prometheus::Kind::Gauge => {
                    let _gauge = meter
                        .u64_observable_gauge(r.name)
                        .with_description(r.help)
                        .with_callback(move |observer| observer.observe(read(&metrics), &[]))
                        .build();
                }
                prometheus::Kind::Counter => {
                    let _counter = meter
                        .u64_observable_counter(r.name)
                        .with_description(r.help)
                        .with_callback(move |observer| observer.observe(read(&metrics), &[]))
                        .build();
                }
            }
        }
        metrics.histograms().attach_otlp(&meter);
    }

    /// Flushes and stops the exporters (bounded by [`FLUSH_TIMEOUT_MS`] each, on a
    /// blocking thread: the SDK waits synchronously).
    pub async fn shutdown(self) {
        let Telemetry { tracer, meter } = self;
        let flushed = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_millis(FLUSH_TIMEOUT_MS);
            if let Some(tracer) = tracer
                && let Err(e) = tracer.shutdown_with_timeout(timeout)
            {
                eprintln!("telemetry: traces not flushed: {e}");
            }
            if let Some(meter) = meter
                && let Err(e) = meter.shutdown_with_timeout(timeout)
            {
                eprintln!("telemetry: metrics not flushed: {e}");
            }
        });
        let _ = flushed.await;
    }
}

/// Makes `span` a child of the caller's trace, when the request carried a valid W3C
/// trace context. Does nothing without the OpenTelemetry layer.
pub fn adopt(span: &tracing::Span, trace: Option<&TraceContext>) {
    let Some(trace) = trace else {
        return;
    };
    if trace.traceparent.len() > TRACE_HEADER_BYTES_MAX
        || trace
            .tracestate
            .as_ref()
            .is_some_and(|s| s.len() > TRACE_HEADER_BYTES_MAX)
    {
        return;
    }
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), trace.traceparent.clone());
    if let Some(state) = &trace.tracestate {
        carrier.insert("tracestate".to_owned(), state.clone());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Fails only without the OpenTelemetry layer (nothing to join) or for a span
    // already started (never: it was just made).
    let _ = span.set_parent(parent);
}

/// The trace context to send with a request made from inside `span` (a forward to
/// another node): `span`'s own context when it is recorded, else `fallback` (the
/// caller's, passed on unchanged when this node exports nothing).
pub fn propagate(span: &tracing::Span, fallback: Option<TraceContext>) -> Option<TraceContext> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    match carrier.remove("traceparent") {
        Some(traceparent) => Some(TraceContext {
            traceparent,
            tracestate: carrier.remove("tracestate").filter(|s| !s.is_empty()),
        }),
        None => fallback,
    }
}
