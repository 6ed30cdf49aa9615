//! The HTTP API through the real server and SQLite store, on loopback:
//! - SSE latency: from a runner appending one event over gRPC to an HTTP client receiving it on
//!   `GET /api/v1/executions/{id}/events` (what the dashboard's page listens to);
//! - the executions list with 10,000 executions stored: first page, a filtered page, a text
//!   search and a page deep in the list, each the median of repeated requests.
//!
//!     cargo bench -p stigmer-server --bench http_api        (EVENTS=1000, EXECUTIONS=10000)

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stigmer_proto::daemon::v1::GetStatusResponse;
use stigmer_proto::execution::{ExecutionEvent, TokenDelta};
use stigmer_proto::executions::v1::AppendEventsRequest;
use stigmer_server::{DaemonControl, ServerContext, serve};

struct NoDaemon;

impl DaemonControl for NoDaemon {
    fn status(&self) -> GetStatusResponse {
        GetStatusResponse::default()
    }

    fn request_shutdown(&self) {}
}

const TOKEN: &str = "bench";

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// An agent execution as a finished run leaves it.
fn execution(n: usize) -> stigmer_resources::Resource {
    let id = format!("aex-{n:06}");
    let phase = match n % 10 {
        0 => "failed",
        1 => "cancelled",
        _ => "completed",
    };
    serde_json::from_value(json!({
        "apiVersion": stigmer_resources::API_VERSION,
        "kind": "AgentExecution",
        "metadata": {"name": id, "id": id,
                     "createdAt": format!("2026-12-01T{:02}:{:02}:{:02}.000Z", n / 3600 % 24, n / 60 % 60, n % 60)},
        "spec": {"agent": format!("agent-{}", n % 7), "session": format!("ses-{n:06}"),
                 "message": format!("Summarise the report number {n} and list the three most important findings with their sources.")},
        "status": {"phase": phase, "startedAt": "2026-12-01T00:00:00.000Z",
                   "finishedAt": "2026-12-01T00:00:02.000Z",
                   "reason": if phase == "failed" { Some("the model is unreachable") } else { None },
                   "totals": {"turns": 3, "toolCalls": 2, "inputTokens": 4200, "outputTokens": 310,
                              "model": "qwen3:8b", "provider": "ollama"}},
    }))
    .expect("execution")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = env_number("EVENTS", 1000);
    let executions = env_number("EXECUTIONS", 10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(stigmer_store::SqliteStore::open(&dir.path().join("db")).expect("store"));
    let mut stored: Vec<_> = (0..executions).map(execution).collect();
    // The execution the latency part writes to, still running.
    let mut live = execution(executions);
    live.metadata.name = "aex-live".into();
    live.status = Some(json!({"phase": "running"}));
    stored.push(live);
    stigmer_store::Store::put_all(store.as_ref(), &stored).expect("executions");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let context = ServerContext {
        api_token: TOKEN.into(),
        daemon: Arc::new(NoDaemon),
        store,
        temporal: None,
    };
    tokio::spawn(serve(listener, context, std::future::pending()));
    let http = reqwest::Client::new();

    // SSE latency.
    let mut writer =
        stigmer_client::ApiClients::connect(&address, TOKEN, stigmer_client::Timeouts::default())
            .await
            .expect("connect")
            .executions;
    let mut stream = http
        .get(format!(
            "http://{address}/api/v1/executions/aex-live/events"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("events");
    assert!(stream.status().is_success());
    let mut latencies = Vec::with_capacity(events);
    for index in 0..events {
        let sent = Instant::now();
        writer
            .append_events(AppendEventsRequest {
                execution_id: "aex-live".into(),
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
        let wanted = format!("id: {}\n", index + 1);
        let mut received = String::new();
        while !received.contains(&wanted) {
            let chunk = stream.chunk().await.expect("chunk").expect("open stream");
            received.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    println!(
        "SSE: {events} events, one at a time (append RPC → HTTP client receives the SSE message)"
    );
    println!(
        "  p50 {}  p99 {}  max {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("events"))
    );

    // The list with many executions stored.
    let list = |query: &'static str| {
        let http = http.clone();
        let url = format!("http://{address}/api/v1/executions?{query}");
        async move {
            let mut times = Vec::new();
            let mut bytes = 0;
            let mut body = serde_json::Value::Null;
            for _ in 0..21 {
                let started = Instant::now();
                let response = http
                    .get(&url)
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .expect("list");
                let text = response.text().await.expect("body");
                times.push(started.elapsed());
                bytes = text.len();
                body = serde_json::from_str(&text).expect("json");
            }
            times.sort();
            (percentile(&times, 0.5), bytes, body)
        }
    };
    println!("executions list, {executions} stored (median of 21 requests, whole response):");
    let (time, bytes, first) = list("limit=50").await;
    println!(
        "  first page of 50            {}  ({bytes} bytes)",
        ms(time)
    );
    let (time, _, page) = list("phase=failed,cancelled&limit=50").await;
    println!(
        "  phase=failed,cancelled      {}  ({} match)",
        ms(time),
        page["total"]
    );
    let (time, _, page) = list("q=report%20number%209999&limit=50").await;
    println!(
        "  q=\"report number 9999\"      {}  ({} match)",
        ms(time),
        page["total"]
    );
    assert_eq!(first["total"], executions + 1);
    // A page deep in the list: follow `next` 100 pages down, then time that page.
    let mut next = first["next"].as_str().expect("next").to_owned();
    for _ in 0..99 {
        let page: serde_json::Value = http
            .get(format!(
                "http://{address}/api/v1/executions?limit=50&before={next}"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        next = page["next"].as_str().unwrap_or_default().to_owned();
    }
    let deep: &'static str = Box::leak(format!("limit=50&before={next}").into_boxed_str());
    let (time, _, _) = list(deep).await;
    println!("  page 101 (cursor)           {}", ms(time));
}
