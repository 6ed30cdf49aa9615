//! OpenTelemetry traces of executions (GenAI semantic conventions), exported over OTLP.
//!
//! - [`init`] builds the export pipeline of a process (the daemon's API server, a runner) when
//!   an endpoint is configured, and nothing otherwise: then every function here is a no-op
//!   that costs a check of one static.
//! - [`ids`]: the trace id and the root span id of an execution are derived from its id, so
//!   every process and every attempt of a step lands in the one trace of the execution without
//!   anything stored or passed around.
//! - [`spans`]: the spans themselves as plain [`SpanRecord`]s (names, attributes, parents, times)
//!   built from what the callers know, tested without any export; [`export`] hands one to the
//!   pipeline.
//!
//! **Invariants:** exporting never blocks or fails a run (a bounded queue, bounded exports,
//! failures logged at most once a minute); prompt and tool contents are put on spans only when
//! `telemetry.capture_content` is on, and then only after the caller masked the run's secrets.

mod export;
pub mod ids;
pub mod spans;

pub use export::{FLUSH_BOUND, InitError, resource, resource_attributes, traces_url};
pub use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
pub use opentelemetry::{KeyValue, Value};
pub use spans::SpanRecord;
pub use stigmer_config::{OtlpProtocol, TelemetrySettings};

use export::Pipeline;
use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, global};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The pipeline of this process, once [`init`] built one.
struct Active {
    pipeline: Pipeline,
    capture_content: bool,
    scope: InstrumentationScope,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// Builds and installs (as the global tracer provider too) the export pipeline of this
/// process, if `settings` name an endpoint; `service_name` is the component
/// (`stigmer-server`, `stigmer-agent-runner`, `stigmer-workflow-runner`) unless
/// `OTEL_SERVICE_NAME` replaced it, `instance_id` its `service.instance.id`. Call it within the
/// Tokio runtime, once per process; keep the guard and [`TelemetryGuard::shutdown`] it before
/// exiting. A malformed endpoint is logged and the process runs without traces.
pub fn init(
    settings: &TelemetrySettings,
    service_name: &str,
    instance_id: &str,
) -> Option<TelemetryGuard> {
    let endpoint = settings.otlp_endpoint.as_deref()?;
    let resource = export::resource(settings, service_name, instance_id);
    let pipeline = match Pipeline::build(settings, endpoint, resource) {
        Ok(pipeline) => pipeline,
        Err(error) => {
            tracing::warn!(error = %error, "Traces are not exported.");
            return None;
        }
    };
    let provider = pipeline.provider();
    let active = Active {
        pipeline,
        capture_content: settings.capture_content,
        scope: InstrumentationScope::builder("stigmer")
            .with_version(stigmer_config::VERSION)
            .build(),
    };
    if ACTIVE.set(active).is_err() {
        tracing::warn!("Telemetry was already set up in this process; keeping the first.");
        return None;
    }
    global::set_tracer_provider(provider);
    tracing::info!(
        endpoint,
        protocol = settings.protocol.as_str(),
        capture_content = settings.capture_content,
        "Exporting traces."
    );
    Some(TelemetryGuard {
        shut_down: AtomicBool::new(false),
    })
}

/// Whether this process exports spans (callers skip building them otherwise).
pub fn enabled() -> bool {
    ACTIVE.get().is_some()
}

/// Whether prompts, answers and tool contents go on spans (`telemetry.capture_content`).
pub fn capture_content() -> bool {
    ACTIVE.get().is_some_and(|active| active.capture_content)
}

/// Hands a finished span to the pipeline; nothing when telemetry is off. Never blocks: a full
/// queue drops the span.
pub fn export(record: SpanRecord) {
    if let Some(active) = ACTIVE.get() {
        active
            .pipeline
            .processor
            .submit(span_data(record, active.scope.clone()));
    }
}

/// A new random span id (for spans that happen once, like a model call's attempt).
pub fn new_span_id() -> SpanId {
    RandomIdGenerator::default().new_span_id()
}

fn span_data(record: SpanRecord, scope: InstrumentationScope) -> SpanData {
    let mut links = SpanLinks::default();
    links.links = record
        .links
        .into_iter()
        .map(opentelemetry::trace::Link::with_context)
        .collect();
    SpanData {
        span_context: SpanContext::new(
            record.trace_id,
            record.span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: record.parent_span_id,
        parent_span_is_remote: record.parent_span_id != SpanId::INVALID,
        span_kind: record.kind,
        name: record.name.into(),
        start_time: record.start,
        end_time: record.end.max(record.start),
        attributes: record.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status: record.status,
        instrumentation_scope: scope,
    }
}

/// Flushes the pipeline when the process stops: [`TelemetryGuard::shutdown`] within
/// [`FLUSH_BOUND`]; dropped without it, the drop flushes within the same bound.
pub struct TelemetryGuard {
    shut_down: AtomicBool,
}

impl TelemetryGuard {
    /// Exports what is queued, waiting at most [`FLUSH_BOUND`] (a collector that is down
    /// costs that much at most).
    pub async fn shutdown(self) {
        self.shut_down.store(true, Ordering::SeqCst);
        if let Some(active) = ACTIVE.get() {
            active.pipeline.shutdown().await;
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(active) = ACTIVE.get() else { return };
        // Not awaited: flush on a thread of its own and wait for it within the bound, so a
        // runtime that is itself stopping cannot hold the exit.
        let provider = active.pipeline.provider();
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("otel-flush".into())
            .spawn(move || {
                let _ = provider.shutdown();
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = finished.recv_timeout(FLUSH_BOUND);
        }
    }
}
