//! Daemon memory with subscribers that never read, on a busy run: against a running daemon
//! (started by `benches/subscribers.sh`), creates an execution of `AGENT` whose model never
//! answers, opens `SUBSCRIBERS` subscriptions (each on its own connection, default HTTP/2
//! windows) that never read, appends `MIB` MiB of 128 KiB tool outputs to the execution as a
//! runner would, and prints the daemon's resident memory before and at its peak.
//!
//!     ADDRESS=127.0.0.1:PORT TOKEN=… DAEMON_PID=… AGENT=helper \
//!         cargo bench -p stigmer-server --bench slow_subscribers

use std::time::{Duration, Instant};
use stigmer_proto::execution::{ExecutionEvent, ToolCallFinished};
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{
    AppendEventsRequest, CancelExecutionRequest, CreateExecutionRequest, GetExecutionRequest,
    NewEvent, SubscribeRequest,
};

type Client = ExecutionServiceClient<stigmer_client::Authenticated>;

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name}"))
}

async fn connect(address: &str, token: &str) -> Client {
    stigmer_client::ApiClients::connect(address, token, stigmer_client::Timeouts::default())
        .await
        .expect("connect")
        .executions
}

fn resident_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (address, token, pid) = (setting("ADDRESS"), setting("TOKEN"), setting("DAEMON_PID"));
    let agent = std::env::var("AGENT").unwrap_or_else(|_| "helper".into());
    let subscribers: usize = std::env::var("SUBSCRIBERS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let mib: usize = std::env::var("MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(64);
    let mut api = connect(&address, &token).await;
    let created = api
        .create_execution(CreateExecutionRequest {
            agent,
            message: "Work hard".into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let execution: serde_json::Value = serde_json::from_str(&created.execution_json).expect("json");
    let id = execution["metadata"]["name"]
        .as_str()
        .expect("id")
        .to_owned();
    // Running: the runner has started the model call that never returns.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = api
            .get_execution(GetExecutionRequest {
                execution_id: id.clone(),
            })
            .await
            .expect("get")
            .into_inner();
        if got.execution_json.contains("\"running\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the execution never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let payload = "x".repeat(128 * 1024);
    let big = |key: String| {
        ExecutionEvent::from(ToolCallFinished {
            turn: 1,
            call_id: key.clone(),
            name: "read_file".into(),
            result: payload.clone(),
            is_error: false,
            parent: None,
        })
        .to_new_event(key)
    };
    let append = |events: Vec<NewEvent>| {
        let mut api = api.clone();
        let id = id.clone();
        async move {
            api.append_events(AppendEventsRequest {
                execution_id: id,
                events,
            })
            .await
            .expect("append");
        }
    };
    append(vec![big("warm".into())]).await;
    let idle = resident_kib(&pid);
    let mut open = Vec::new();
    for _ in 0..subscribers {
        let mut reader = connect(&address, &token).await;
        let stream = reader
            .subscribe(SubscribeRequest {
                execution_id: id.clone(),
                after_seq: 0,
            })
            .await
            .expect("subscribe")
            .into_inner();
        open.push((reader, stream));
    }
    let mut peak = idle;
    for batch in 0..mib {
        append((0..8).map(|i| big(format!("e{batch}-{i}"))).collect()).await;
        peak = peak.max(resident_kib(&pid));
    }
    // Let the server settle, then sample once more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak = peak.max(resident_kib(&pid));
    println!(
        "daemon RSS idle: {:.1} MB; peak with {subscribers} non-reading subscribers and {mib} MiB of events: {:.1} MB (+{:.1} MB)",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak - idle) as f64 / 1024.0
    );
    drop(open);
    let _ = api
        .cancel_execution(CancelExecutionRequest { execution_id: id })
        .await;
}
