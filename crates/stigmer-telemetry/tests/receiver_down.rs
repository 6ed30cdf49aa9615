//! With the collector down, exporting costs the caller nothing and stopping waits at most
//! `FLUSH_BOUND`.

use std::time::{Duration, Instant, SystemTime};
use stigmer_telemetry::spans::{self, ToolRun, ToolType};
use stigmer_telemetry::{FLUSH_BOUND, OtlpProtocol, TelemetrySettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_to_a_closed_port_never_blocks() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    {
        let protocol = OtlpProtocol::HttpProtobuf;
        let settings = TelemetrySettings {
            otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
            protocol,
            capture_content: true,
            ..TelemetrySettings::default()
        };
        let guard = stigmer_telemetry::init(&settings, "stigmer-server", "server@1").unwrap();
        assert!(stigmer_telemetry::capture_content());
        let started = Instant::now();
        let now = SystemTime::now();
        for n in 0..10_000 {
            let call_id = format!("call-{n}");
            stigmer_telemetry::export(spans::execute_tool(
                &ToolRun {
                    execution_id: "aex-down",
                    call_id: &call_id,
                    name: "glob",
                    tool_type: ToolType::Function,
                    turn: 1,
                    attempt: 1,
                    start: now,
                    end: now,
                    is_error: false,
                },
                None,
            ));
        }
        // Ten thousand spans (more than the queue holds: the rest are dropped) in well under a
        // second, whatever the collector does.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // Let the background task try (and fail) an export.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let stopping = Instant::now();
        guard.shutdown().await;
        assert!(
            stopping.elapsed() < FLUSH_BOUND + Duration::from_millis(500),
            "{:?}",
            stopping.elapsed()
        );
    }
}
