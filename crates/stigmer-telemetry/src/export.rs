//! The export pipeline: an OTLP exporter (HTTP/protobuf or gRPC) behind a batch span processor
//! on the Tokio runtime, built only when an endpoint is configured.
//!
//! A run never waits for it: finished spans go into a bounded queue (dropped when it is full),
//! a background task sends them in batches, each export is bounded in time, and a failed
//! export is logged at most once a minute and otherwise forgotten. Shutting down flushes within
//! [`FLUSH_BOUND`], whether or not the collector answers.

use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::{ResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stigmer_config::{OtlpProtocol, TelemetrySettings};

/// The longest a shutdown waits for the last spans to go out.
pub const FLUSH_BOUND: Duration = Duration::from_millis(1500);
/// The longest one export may take (the collector is slow or unreachable).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a failing export is logged, at most.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Why the pipeline could not be built (a malformed endpoint); the process goes on without it.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {message}")]
pub struct InitError {
    pub endpoint: String,
    pub message: String,
}

/// The URL the exporter sends to: with HTTP, `/v1/traces` under the configured endpoint (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` means), unless it already ends with it; with gRPC, as given.
pub fn traces_url(endpoint: &str, protocol: OtlpProtocol) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    match protocol {
        OtlpProtocol::Grpc => endpoint.to_owned(),
        OtlpProtocol::HttpProtobuf if endpoint.ends_with("/v1/traces") => endpoint.to_owned(),
        OtlpProtocol::HttpProtobuf => format!("{endpoint}/v1/traces"),
    }
}

/// `key=value,key=value` (`OTEL_RESOURCE_ATTRIBUTES`), values percent-decoded; malformed pairs
/// are skipped.
pub fn resource_attributes(text: &str) -> Vec<KeyValue> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| KeyValue::new(key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%'
            && let Some(byte) = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            at += 3;
            continue;
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The resource of a component: `service.name` (the component's, or `OTEL_SERVICE_NAME`),
/// `service.instance.id`, `service.version`, the SDK's own attributes and
/// `OTEL_RESOURCE_ATTRIBUTES`. The process environment is not read: a runner's is cleared, and
/// the settings already hold what the user's environment said.
pub fn resource(settings: &TelemetrySettings, service_name: &str, instance_id: &str) -> Resource {
    let name = settings
        .service_name
        .clone()
        .unwrap_or_else(|| service_name.to_owned());
    let extra = settings
        .resource_attributes
        .as_deref()
        .map(resource_attributes)
        .unwrap_or_default();
    Resource::builder_empty()
        .with_attributes(
            TelemetryResourceDetector
                .detect()
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attributes(extra)
        .with_attributes([
            KeyValue::new("service.instance.id", instance_id.to_owned()),
            KeyValue::new("service.version", stigmer_config::VERSION),
            KeyValue::new("stigmer.component", service_name.to_owned()),
        ])
        .with_service_name(name)
        .build()
}

/// The running pipeline.
pub(crate) struct Pipeline {
    pub(crate) processor: SharedProcessor,
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Builds the exporter and the processor. Must run within a Tokio runtime (the processor's
    /// task and the gRPC channel live on it).
    pub(crate) fn build(
        settings: &TelemetrySettings,
        endpoint: &str,
        resource: Resource,
    ) -> Result<Pipeline, InitError> {
        // reqwest is built without a TLS crypto provider of its own (the workspace's
        // `rustls-no-provider`): the process's default must be set before a client is built,
        // and it is ring everywhere in Stigmer.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = traces_url(endpoint, settings.protocol);
        let failed = |error: opentelemetry_otlp::ExporterBuildError| InitError {
            endpoint: url.clone(),
            message: error.to_string(),
        };
        let exporter = match settings.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(failed)?,
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(failed)?,
        };
        let mut exporter = QuietExporter {
            inner: exporter,
            endpoint: url,
            failures: AtomicU64::new(0),
            last_logged: Mutex::new(None),
        };
        exporter.set_resource(&resource);
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(4096)
            .with_max_export_batch_size(512)
            .with_scheduled_delay(Duration::from_millis(500))
            // Beyond the exporter's own bound, so the exporter's answer (logged quietly) is
            // what ends a slow export.
            .with_max_export_timeout(EXPORT_TIMEOUT + Duration::from_secs(1))
            .build();
        let processor = SharedProcessor(Arc::new(
            BatchSpanProcessor::builder(exporter, Tokio)
                .with_batch_config(config)
                .build(),
        ));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor.clone())
            .with_resource(resource)
            .build();
        Ok(Pipeline {
            processor,
            provider,
        })
    }

    /// The provider (installed as the global one; shutting it down flushes the processor).
    pub(crate) fn provider(&self) -> SdkTracerProvider {
        self.provider.clone()
    }

    /// Sends what is queued and stops, within [`FLUSH_BOUND`].
    pub(crate) async fn shutdown(&self) {
        let provider = self.provider.clone();
        // The processor's shutdown blocks until its task has exported: on the blocking pool,
        // so the runtime's task can run meanwhile.
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        if tokio::time::timeout(FLUSH_BOUND, flush).await.is_err() {
            tracing::warn!(
                bound_ms = FLUSH_BOUND.as_millis() as u64,
                "Traces not all exported at shutdown: the collector did not answer in time."
            );
        }
    }
}

/// The batch processor, shared between the provider (which shuts it down) and the code that
/// hands it spans built elsewhere ([`crate::SpanRecord`]).
#[derive(Clone, Debug)]
pub(crate) struct SharedProcessor(Arc<BatchSpanProcessor<Tokio>>);

impl SharedProcessor {
    pub(crate) fn submit(&self, span: SpanData) {
        self.0.on_end(span);
    }
}

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}

/// The OTLP exporter, whose failures are logged rate-limited and never reported upwards: an
/// unreachable collector is the operator's concern, not the run's.
#[derive(Debug)]
struct QuietExporter {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    failures: AtomicU64,
    last_logged: Mutex<Option<Instant>>,
}

impl QuietExporter {
    fn note_failure(&self, error: &dyn std::fmt::Display) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|at| at.elapsed() >= ERROR_LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                endpoint = %self.endpoint,
                error = %error,
                failures,
                "Cannot export traces; spans are dropped (logged at most once a minute)."
            );
        }
    }
}

impl SpanExporter for QuietExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        match tokio::time::timeout(EXPORT_TIMEOUT, self.inner.export(batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.note_failure(&error),
            Err(_) => {
                self.note_failure(&format!("no answer within {} s", EXPORT_TIMEOUT.as_secs()))
            }
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _ = self.inner.shutdown_with_timeout(timeout);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_follows_the_protocol() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318/", OtlpProtocol::HttpProtobuf),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces", OtlpProtocol::HttpProtobuf),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4317", OtlpProtocol::Grpc),
            "http://c:4317"
        );
    }

    #[test]
    fn resource_attributes_are_parsed_and_decoded() {
        let attributes = resource_attributes("deployment.environment=dev, team=a%20b,broken,=x");
        assert_eq!(
            attributes,
            vec![
                KeyValue::new("deployment.environment", "dev"),
                KeyValue::new("team", "a b"),
            ]
        );
        let settings = TelemetrySettings {
            service_name: Some("agents".into()),
            resource_attributes: Some("team=a".into()),
            ..TelemetrySettings::default()
        };
        let resource = resource(&settings, "stigmer-server", "server@1");
        let get = |key: &'static str| resource.get(&opentelemetry::Key::from_static_str(key));
        assert_eq!(get("service.name").unwrap().as_str(), "agents");
        assert_eq!(get("service.instance.id").unwrap().as_str(), "server@1");
        assert_eq!(get("stigmer.component").unwrap().as_str(), "stigmer-server");
        assert_eq!(get("team").unwrap().as_str(), "a");
    }
}
