//! Event latency: from a runner appending one event over gRPC to a subscriber receiving it,
//! on loopback, through the real server and the real SQLite store. Prints p50/p99/max.
//!
//!     cargo bench -p stigmer-server --bench event_latency            (EVENTS=2000 by default)

use std::sync::Arc;
use std::time::{Duration, Instant};
use stigmer_proto::daemon::v1::GetStatusResponse;
use stigmer_proto::execution::{ExecutionEvent, TokenDelta};
use stigmer_proto::executions::v1::{AppendEventsRequest, SubscribeRequest};
use stigmer_server::{DaemonControl, ServerContext, serve};

struct NoDaemon;

impl DaemonControl for NoDaemon {
    fn status(&self) -> GetStatusResponse {
        GetStatusResponse::default()
    }

    fn request_shutdown(&self) {}
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(stigmer_store::SqliteStore::open(&dir.path().join("db")).expect("store"));
    let execution = stigmer_resources::Resource {
        api_version: stigmer_resources::API_VERSION.into(),
        kind: stigmer_resources::Kind::AgentExecution,
        metadata: stigmer_resources::Metadata {
            name: "aex-bench".into(),
            id: Some("aex-bench".into()),
            ..Default::default()
        },
        spec: serde_json::json!({"agent": "bench"}),
        status: Some(serde_json::json!({"phase": "running"})),
    };
    stigmer_store::Store::put_all(store.as_ref(), &[execution]).expect("execution");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let context = ServerContext {
        api_token: "bench".into(),
        daemon: Arc::new(NoDaemon),
        store,
        temporal: None,
    };
    tokio::spawn(serve(listener, context, std::future::pending()));

    let connect = || async {
        stigmer_client::ApiClients::connect(&address, "bench", stigmer_client::Timeouts::default())
            .await
            .expect("connect")
            .executions
    };
    let mut writer = connect().await;
    let mut reader = connect().await;
    let mut stream = reader
        .subscribe(SubscribeRequest {
            execution_id: "aex-bench".into(),
            after_seq: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();

    let mut latencies = Vec::with_capacity(events);
    for index in 0..events {
        let sent = Instant::now();
        writer
            .append_events(AppendEventsRequest {
                execution_id: "aex-bench".into(),
                events: vec![
                    ExecutionEvent::from(TokenDelta {
                        turn: 1,
                        text: format!("token {index} "),
                        parent: None,
                    })
                    .to_new_event(format!("k{index}")),
                ],
            })
            .await
            .expect("append");
        let event = stream.message().await.expect("stream").expect("event");
        latencies.push(sent.elapsed());
        assert_eq!(event.seq, index as u64 + 1);
    }
    latencies.sort();
    let show = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "events: {events} (one at a time, append RPC → subscriber receives, SQLite WAL store)"
    );
    println!("p50: {}", show(percentile(&latencies, 0.50)));
    println!("p99: {}", show(percentile(&latencies, 0.99)));
    println!("max: {}", show(*latencies.last().expect("events")));
}
