//! Spans exported over OTLP/gRPC reach a gRPC trace collector (the OTLP `TraceService`, served
//! here by tonic), with the resource of the component.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::time::{Duration, SystemTime};
use stigmer_telemetry::spans::{self, ChatCall, ChatOutcome};
use stigmer_telemetry::{OtlpProtocol, TelemetrySettings, ids};
use tokio::sync::mpsc;

struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_collector() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, mut received) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(sender)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let settings = TelemetrySettings {
        otlp_endpoint: Some(format!("http://{address}")),
        protocol: OtlpProtocol::Grpc,
        ..TelemetrySettings::default()
    };
    let guard = stigmer_telemetry::init(&settings, "stigmer-agent-runner", "agent-runner@1")
        .expect("an endpoint builds a pipeline");
    assert!(stigmer_telemetry::enabled());
    assert!(!stigmer_telemetry::capture_content());
    let start = SystemTime::now();
    stigmer_telemetry::export(spans::chat(
        &ChatCall {
            execution_id: "aex-grpc",
            provider: "ollama",
            model: "m",
            base_url: "http://localhost:11434",
            turn: 1,
            attempt: 1,
            start,
            end: start + Duration::from_millis(5),
        },
        &ChatOutcome::Answered {
            input_tokens: 3,
            output_tokens: 4,
            finish_reason: Some("stop"),
            tool_calls: 0,
        },
        None,
    ));
    guard.shutdown().await;
    let request = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the collector got nothing")
        .unwrap();
    let resource_spans = &request.resource_spans[0];
    let service = resource_spans
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .unwrap();
    assert_eq!(
        format!("{:?}", service.value),
        format!(
            "{:?}",
            Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "stigmer-agent-runner".into()
                    )
                )
            })
        )
    );
    let span = &resource_spans.scope_spans[0].spans[0];
    assert_eq!(span.name, "chat m");
    assert_eq!(span.trace_id, ids::trace_id("aex-grpc").to_bytes().to_vec());
    assert_eq!(
        span.parent_span_id,
        ids::root_span_id("aex-grpc").to_bytes().to_vec()
    );
}
