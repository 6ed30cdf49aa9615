//! The API server in-process on port 0: the execution event log and its subscriptions.

use std::sync::Arc;
use std::time::Duration;
use stigmer_proto::daemon::v1::GetStatusResponse;
use stigmer_proto::execution::{
    ExecutionEvent, ExecutionPhase, PhaseChanged, TokenDelta, ToolCallFinished, UnknownEvent,
};
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{AppendEventsRequest, NewEvent, SubscribeRequest};
use stigmer_server::{DaemonControl, ServerContext, serve};

mod approvals;
mod http;
mod run_context;
mod workflows;

struct NoDaemon;

impl DaemonControl for NoDaemon {
    fn status(&self) -> GetStatusResponse {
        GetStatusResponse::default()
    }

    fn request_shutdown(&self) {}
}

const TOKEN: &str = "test-token";

struct Server {
    address: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    server_with(None).await
}

async fn server_with(temporal: Option<stigmer_server::TemporalTarget>) -> Server {
    server_with_resources(temporal, Vec::new()).await
}

/// [`server_with`], with more resources in the store.
async fn server_with_resources(
    temporal: Option<stigmer_server::TemporalTarget>,
    resources: Vec<stigmer_resources::Resource>,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(stigmer_store::SqliteStore::open(&dir.path().join("db")).unwrap());
    // One agent to run.
    let agent = stigmer_resources::Resource {
        api_version: stigmer_resources::API_VERSION.into(),
        kind: stigmer_resources::Kind::Agent,
        metadata: stigmer_resources::Metadata {
            name: "hello".into(),
            id: Some("agt-hello".into()),
            ..Default::default()
        },
        spec: serde_json::json!({"instructions": "Say hello."}),
        status: None,
    };
    // Executions the event-log tests write to.
    let executions: Vec<stigmer_resources::Resource> = ["aex-1", "aex-2", "aex-3", "aex-4"]
        .into_iter()
        .map(|id| stigmer_resources::Resource {
            api_version: stigmer_resources::API_VERSION.into(),
            kind: stigmer_resources::Kind::AgentExecution,
            metadata: stigmer_resources::Metadata {
                name: id.into(),
                id: Some(id.into()),
                ..Default::default()
            },
            spec: serde_json::json!({"agent": "hello"}),
            status: Some(serde_json::json!({"phase": "pending"})),
        })
        .collect();
    stigmer_store::Store::put_all(store.as_ref(), &[agent]).unwrap();
    stigmer_store::Store::put_all(store.as_ref(), &executions).unwrap();
    stigmer_store::Store::put_all(store.as_ref(), &resources).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let context = ServerContext {
        api_token: TOKEN.into(),
        daemon: Arc::new(NoDaemon),
        store,
        temporal,
    };
    tokio::spawn(serve(listener, context, async move {
        let _ = stopped.await;
    }));
    Server {
        address,
        _stop: stop,
        _dir: dir,
    }
}

type Client = ExecutionServiceClient<stigmer_client::Authenticated>;

async fn clients(server: &Server) -> stigmer_client::ApiClients {
    stigmer_client::ApiClients::connect(
        &server.address.to_string(),
        TOKEN,
        stigmer_client::Timeouts::default(),
    )
    .await
    .unwrap()
}

async fn client(server: &Server) -> Client {
    clients(server).await.executions
}

fn event(key: &str) -> NewEvent {
    ExecutionEvent::from(TokenDelta {
        turn: 1,
        text: key.into(),
        parent: None,
    })
    .to_new_event(key)
}

fn terminal(key: &str) -> NewEvent {
    ExecutionEvent::from(PhaseChanged::new(ExecutionPhase::Completed, None)).to_new_event(key)
}

/// A tool call's end with a big result, as a busy run writes them.
fn big_event(key: &str, payload: &str) -> NewEvent {
    ExecutionEvent::from(ToolCallFinished {
        turn: 1,
        call_id: key.into(),
        name: "read_file".into(),
        result: payload.into(),
        is_error: false,
        parent: None,
    })
    .to_new_event(key)
}

async fn append(client: &mut Client, execution: &str, events: Vec<NewEvent>) -> Vec<u64> {
    client
        .append_events(AppendEventsRequest {
            execution_id: execution.into(),
            events,
        })
        .await
        .unwrap()
        .into_inner()
        .seqs
}

/// Collects a subscription to its end (or fails after a deadline).
async fn collect(client: &mut Client, execution: &str, after_seq: u64) -> Vec<(u64, String)> {
    let mut stream = client
        .subscribe(SubscribeRequest {
            execution_id: execution.into(),
            after_seq,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.message().await.unwrap() {
            seen.push((event.seq, event.kind));
        }
    })
    .await
    .expect("the subscription did not end");
    seen
}

#[tokio::test]
async fn a_subscription_replays_then_follows_and_ends_with_the_execution() {
    let server = server().await;
    let mut writer = client(&server).await;
    assert_eq!(
        append(&mut writer, "aex-1", vec![event("a"), event("b")]).await,
        [1, 2]
    );
    let mut reader = client(&server).await;
    let subscription = tokio::spawn(async move { collect(&mut reader, "aex-1", 0).await });
    // Retried writes are ignored.
    assert_eq!(
        append(&mut writer, "aex-1", vec![event("b"), event("c")]).await,
        [3]
    );
    append(&mut writer, "aex-1", vec![terminal("end")]).await;
    let seen = subscription.await.unwrap();
    assert_eq!(
        seen.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(seen[3].1, "phase_changed");

    // After the end, a subscription replays and ends at once.
    let mut late = client(&server).await;
    assert_eq!(collect(&mut late, "aex-1", 2).await.len(), 2);
}

#[tokio::test]
async fn reconnecting_subscribers_miss_nothing_and_see_nothing_twice() {
    let server = server().await;
    let mut writer = client(&server).await;
    let total = 600u64;
    let writing = tokio::spawn(async move {
        for batch in 0..(total / 20) {
            let events = (0..20)
                .map(|i| event(&format!("e{}", batch * 20 + i)))
                .collect();
            append(&mut writer, "aex-2", events).await;
            tokio::task::yield_now().await;
        }
        append(&mut writer, "aex-2", vec![terminal("end")]).await;
    });
    // Several readers; each reconnects twice, resuming after the last event it saw.
    let mut readers = Vec::new();
    for reader_index in 0..3u64 {
        let server_address = server.address.clone();
        readers.push(tokio::spawn(async move {
            let mut reader: Client = stigmer_client::ApiClients::connect(
                &server_address,
                TOKEN,
                stigmer_client::Timeouts::default(),
            )
            .await
            .unwrap()
            .executions;
            let mut seen: Vec<u64> = Vec::new();
            for round in 0..3u64 {
                let after = seen.last().copied().unwrap_or(0);
                let mut stream = reader
                    .subscribe(SubscribeRequest {
                        execution_id: "aex-2".into(),
                        after_seq: after,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                // Disconnect after a few events, except in the last round.
                let limit = if round < 2 {
                    50 + reader_index * 17
                } else {
                    u64::MAX
                };
                let mut taken = 0;
                while taken < limit {
                    match tokio::time::timeout(Duration::from_secs(20), stream.message()).await {
                        Ok(Ok(Some(event))) => {
                            seen.push(event.seq);
                            taken += 1;
                        }
                        Ok(Ok(None)) => break,
                        other => panic!("subscription failed: {other:?}"),
                    }
                }
            }
            seen
        }));
    }
    writing.await.unwrap();
    for reader in readers {
        let seen = reader.await.unwrap();
        let expected: Vec<u64> = (1..=total + 1).collect();
        assert_eq!(seen, expected, "a reader lost or repeated events");
    }
}

#[tokio::test]
async fn requests_without_the_token_are_refused() {
    let server = server().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous = ExecutionServiceClient::new(channel);
    let status = anonymous
        .append_events(AppendEventsRequest {
            execution_id: "aex-3".into(),
            events: vec![event("x")],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn events_of_an_unknown_execution_are_refused() {
    let server = server().await;
    let mut writer = client(&server).await;
    let status = writer
        .append_events(AppendEventsRequest {
            execution_id: "aex-none".into(),
            events: vec![event("x")],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = writer
        .subscribe(SubscribeRequest {
            execution_id: "aex-none".into(),
            after_seq: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn malformed_event_data_is_refused() {
    let server = server().await;
    let mut writer = client(&server).await;
    let status = writer
        .append_events(AppendEventsRequest {
            execution_id: "aex-4".into(),
            events: vec![NewEvent {
                key: "k".into(),
                kind: "usage".into(),
                data_json: "[1]".into(),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn events_are_read_through_the_typed_protocol() {
    let server = server().await;
    let mut writer = client(&server).await;
    // A known kind whose fields do not fit is refused, naming the event.
    let status = writer
        .append_events(AppendEventsRequest {
            execution_id: "aex-4".into(),
            events: vec![NewEvent {
                key: "bad".into(),
                kind: TokenDelta::KIND.into(),
                data_json: r#"{"turn":"one","text":3}"#.into(),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("\"bad\""), "{}", status.message());
    // A kind this build does not know (a newer runner) is stored as it came and replayed.
    let newer = NewEvent {
        key: "newer".into(),
        kind: "mcp_server_connected".into(),
        data_json: r#"{"server":"github","tools":12}"#.into(),
    };
    append(&mut writer, "aex-4", vec![newer, terminal("end")]).await;
    let mut stream = writer
        .subscribe(SubscribeRequest {
            execution_id: "aex-4".into(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("an event");
    assert_eq!(
        first.event(),
        ExecutionEvent::Unknown(UnknownEvent {
            kind: "mcp_server_connected".into(),
            data: serde_json::json!({"server": "github", "tools": 12}),
        })
    );
    let last = stream.message().await.unwrap().expect("the terminal event");
    assert_eq!(last.event().phase(), Some(ExecutionPhase::Completed));
    // A runner cannot put an execution back to pending.
    let status = writer
        .append_events(AppendEventsRequest {
            execution_id: "aex-3".into(),
            events: vec![
                ExecutionEvent::from(PhaseChanged::new(ExecutionPhase::Pending, None))
                    .to_new_event("p"),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

mod lifecycle {
    use super::*;
    use stigmer_proto::executions::v1::{
        CreateExecutionRequest, GetExecutionRequest, ListExecutionsRequest,
    };
    use stigmer_server::TemporalTarget;

    fn create(agent: &str) -> CreateExecutionRequest {
        CreateExecutionRequest {
            agent: agent.into(),
            message: "hi".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn creation_fails_at_once_when_temporal_does_not_answer() {
        let port = stigmer_test::free_port();
        let server = server_with(Some(TemporalTarget {
            address: format!("127.0.0.1:{port}"),
            namespace: "default".into(),
            pickup_timeout: Duration::from_secs(1),
        }))
        .await;
        let mut client = client(&server).await;
        let started = std::time::Instant::now();
        let status = client.create_execution(create("hello")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains(&port.to_string()), "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not at once: {:?}",
            started.elapsed()
        );
        let list = client
            .list_executions(ListExecutionsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let fixtures = 4;
        assert_eq!(
            list.executions_json.len(),
            fixtures,
            "nothing new may be left pending"
        );
    }

    #[tokio::test]
    async fn an_unknown_agent_is_named_with_a_suggestion() {
        let server = server().await;
        let mut client = client(&server).await;
        let status = client.create_execution(create("helo")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status.message(),
            "agent 'helo' not found (did you mean \"hello\"?)"
        );
    }

    #[tokio::test]
    async fn a_secret_typed_into_the_message_is_masked_in_the_stored_execution() {
        let temporal = stigmer_test::ExternalTemporal::start();
        let server = server_with(Some(TemporalTarget {
            address: temporal.address.clone(),
            namespace: "default".into(),
            pickup_timeout: Duration::from_secs(30),
        }))
        .await;
        let mut client = client(&server).await;
        let created = client
            .create_execution(CreateExecutionRequest {
                agent: "hello".into(),
                message: "log in with hunter2-long and hunter2, then report".into(),
                secrets: [
                    ("SHORT".to_owned(), "hunter2".to_owned()),
                    ("LONG".to_owned(), "hunter2-long".to_owned()),
                ]
                .into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            !created.execution_json.contains("hunter2"),
            "{}",
            created.execution_json
        );
        let execution: serde_json::Value = serde_json::from_str(&created.execution_json).unwrap();
        let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
        for json in [
            client
                .get_execution(GetExecutionRequest { execution_id: id })
                .await
                .unwrap()
                .into_inner()
                .execution_json,
            client
                .list_executions(ListExecutionsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .executions_json
                .join("\n"),
        ] {
            assert!(!json.contains("hunter2"), "{json}");
        }
        assert_eq!(
            execution["spec"]["message"],
            "log in with **** and ****, then report"
        );
        assert_eq!(
            execution["spec"]["secretNames"],
            serde_json::json!(["LONG", "SHORT"])
        );
    }

    #[tokio::test]
    async fn an_execution_nobody_picks_up_fails_with_the_reason_within_the_bound() {
        let temporal = stigmer_test::ExternalTemporal::start();
        let server = server_with(Some(TemporalTarget {
            address: temporal.address.clone(),
            namespace: "default".into(),
            pickup_timeout: Duration::from_secs(1),
        }))
        .await;
        let mut client = client(&server).await;
        let created = client
            .create_execution(create("hello"))
            .await
            .unwrap()
            .into_inner();
        let execution: serde_json::Value = serde_json::from_str(&created.execution_json).unwrap();
        let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(id.starts_with("aex-"));
        assert_eq!(execution["status"]["phase"], "pending");
        assert!(
            execution["spec"]["session"]
                .as_str()
                .unwrap()
                .starts_with("ses-")
        );

        let started = std::time::Instant::now();
        let seen = collect(&mut client, &id, 0).await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            seen.iter()
                .map(|(_, kind)| kind.as_str())
                .collect::<Vec<_>>(),
            ["phase_changed", "phase_changed"]
        );
        let got = client
            .get_execution(GetExecutionRequest {
                execution_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let got: serde_json::Value = serde_json::from_str(&got.execution_json).unwrap();
        assert_eq!(got["status"]["phase"], "failed");
        assert_eq!(
            got["status"]["reason"],
            "no agent-runner is polling task queue agent_execution_runner — see `stigmer server status`"
        );
        assert!(got["status"]["finishedAt"].is_string());
    }
}

fn create(agent: &str) -> stigmer_proto::executions::v1::CreateExecutionRequest {
    stigmer_proto::executions::v1::CreateExecutionRequest {
        agent: agent.into(),
        message: "hi".into(),
        ..Default::default()
    }
}

fn target(address: String, pickup_timeout: Duration) -> Option<stigmer_server::TemporalTarget> {
    Some(stigmer_server::TemporalTarget {
        address,
        namespace: "default".into(),
        pickup_timeout,
    })
}

#[tokio::test]
async fn the_server_reconnects_when_temporal_comes_back() {
    let port = stigmer_test::free_port();
    let server = server_with(target(format!("127.0.0.1:{port}"), Duration::from_secs(30))).await;
    let mut api = client(&server).await;
    let asked = std::time::Instant::now();
    let refused = api.create_execution(create("hello")).await.unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains(&format!("127.0.0.1:{port}")),
        "{refused:?}"
    );
    // Nothing was created for the refused request.
    let listed = api
        .list_executions(stigmer_proto::executions::v1::ListExecutionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.executions_json.len(), 4, "only the fixtures");

    // Temporal comes up on that address: the server reconnects by itself.
    let temporal =
        tokio::task::spawn_blocking(move || stigmer_test::ExternalTemporal::start_on(port))
            .await
            .unwrap();
    let created = api.create_execution(create("hello")).await.unwrap();
    assert!(created.into_inner().execution_json.contains("\"pending\""));
    drop(temporal);
}

#[tokio::test]
async fn nothing_is_written_to_an_execution_that_ended() {
    let server = server().await;
    let mut api = client(&server).await;
    append(&mut api, "aex-4", vec![event("a"), terminal("end")]).await;
    let late = api
        .append_events(AppendEventsRequest {
            execution_id: "aex-4".into(),
            events: vec![event("late")],
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    assert!(
        late.message().contains("already ended (completed)"),
        "{late:?}"
    );
}

/// Held by the tests that measure this process's memory or allocate much of it, so that they
/// do not run at the same time.
static MEMORY_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// A client on its own connection, with small HTTP/2 windows so that what it does not read
/// stays on the server side (the bound under test) rather than in this client.
async fn own_connection_client(server: &Server) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(64 * 1024)
        .connect()
        .await
        .unwrap();
    stigmer_client::ApiClients::over(channel, stigmer_client::Token::new(TOKEN).unwrap()).executions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_never_read_do_not_pin_the_log_in_memory() {
    let _alone = MEMORY_HEAVY.lock().await;
    let server = server().await;
    let mut writer = client(&server).await;
    // 20 subscribers, each on its own connection, that never read.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut reader = own_connection_client(&server).await;
        let stream = reader
            .subscribe(SubscribeRequest {
                execution_id: "aex-1".into(),
                after_seq: 0,
            })
            .await
            .unwrap()
            .into_inner();
        idle.push((reader, stream));
    }
    // Warm up the write path, then measure: a busy run writes 64 MiB of big events.
    let payload = "x".repeat(128 * 1024);
    let big = |key: String| big_event(&key, &payload);
    append(&mut writer, "aex-1", vec![big("warm".into())]).await;
    let before = resident_bytes();
    for batch in 0..64 {
        let events = (0..8).map(|i| big(format!("e{batch}-{i}"))).collect();
        append(&mut writer, "aex-1", events).await;
    }
    let grown = resident_bytes().saturating_sub(before);
    println!(
        "grown by {} KiB with 20 subscribers that do not read",
        grown / 1024
    );
    // Before the bound each subscriber queued up to 256 events (32 MiB here) and the hub
    // 1,024 more: 20 idle subscribers took hundreds of MiB.
    assert!(
        grown <= 64 * 1024 * 1024,
        "the server grew by {} MiB with 20 subscribers that do not read",
        grown / (1024 * 1024)
    );
    append(&mut writer, "aex-1", vec![terminal("end")]).await;
    // A paused subscriber resumes where it stopped and misses nothing.
    let (_reader, mut stream) = idle.pop().unwrap();
    let mut seqs = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = stream.message().await.unwrap() {
            seqs.push(event.seq);
        }
    })
    .await
    .expect("the paused subscriber did not finish");
    assert_eq!(seqs, (1..=514).collect::<Vec<u64>>());
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited_with_a_clear_error() {
    let server = server().await;
    let mut api = client(&server).await;
    let subscribe = |mut api: Client| async move {
        api.subscribe(SubscribeRequest {
            execution_id: "aex-2".into(),
            after_seq: 0,
        })
        .await
    };
    let mut open = Vec::new();
    for _ in 0..stigmer_server::MAX_SUBSCRIPTIONS_PER_CONNECTION {
        open.push(subscribe(api.clone()).await.unwrap().into_inner());
    }
    let refused = subscribe(api.clone()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused
            .message()
            .contains("this connection already holds 32 subscriptions"),
        "{refused:?}"
    );
    // Another connection is another client.
    let other = own_connection_client(&server).await;
    subscribe(other).await.unwrap();
    // A closed subscription gives its place back.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match subscribe(api.clone()).await {
            Ok(stream) => {
                open.push(stream.into_inner());
                break;
            }
            Err(status) if std::time::Instant::now() < deadline => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("the place was not given back: {status:?}"),
        }
    }
    append(&mut api, "aex-2", vec![event("a")]).await;
}

mod resources {
    use super::*;
    use stigmer_proto::resources::v1::resource_service_client::ResourceServiceClient;
    use stigmer_proto::resources::v1::{ApplyRequest, ListRequest};

    type Resources = ResourceServiceClient<stigmer_client::Authenticated>;

    async fn resources(server: &Server) -> Resources {
        clients(server).await.resources
    }

    fn agents(prefix: &str, count: usize) -> Vec<String> {
        (0..count)
            .map(|i| {
                serde_json::json!({
                    "apiVersion": stigmer_resources::API_VERSION,
                    "kind": "Agent",
                    "metadata": {"name": format!("{prefix}-{i}")},
                    "spec": {"instructions": format!("You are agent {i}.")},
                })
                .to_string()
            })
            .collect()
    }

    async fn stored_agents(api: &mut Resources) -> usize {
        api.list(ListRequest {
            kind: "Agent".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .resources_json
        .len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apply_whose_client_has_gone_stops_and_frees_the_lock() {
        let _alone = MEMORY_HEAVY.lock().await;
        let server = server().await;
        let mut api = resources(&server).await;
        let many = agents("many", 40_000);
        // How long the whole apply takes when its client waits (a dry run writes nothing).
        let started = std::time::Instant::now();
        let planned = api
            .apply(ApplyRequest {
                resources_json: many.clone(),
                dry_run: true,
            })
            .await
            .unwrap()
            .into_inner();
        let full = started.elapsed();
        assert_eq!(planned.results.len(), 40_000);
        // The same apply for real, from a client that gives up early.
        let mut impatient = api.clone();
        let gave_up = tokio::time::timeout(
            full / 4,
            impatient.apply(ApplyRequest {
                resources_json: many,
                dry_run: false,
            }),
        )
        .await;
        assert!(gave_up.is_err(), "the apply finished within {:?}", full / 4);
        // The next apply does not wait for the abandoned one to run to its end.
        let next = std::time::Instant::now();
        api.apply(ApplyRequest {
            resources_json: agents("next", 1),
            dry_run: false,
        })
        .await
        .unwrap();
        let waited = next.elapsed();
        println!("whole apply: {full:?}; the next one after an abandoned apply: {waited:?}");
        assert!(
            waited < full / 2,
            "the next apply waited {waited:?}; the whole apply takes {full:?}"
        );
        // All or nothing: the abandoned apply wrote nothing.
        assert_eq!(stored_agents(&mut api).await, 2, "hello and next-0");
    }

    #[tokio::test]
    async fn a_resource_above_the_size_limit_is_refused_by_name() {
        let server = server().await;
        let mut api = resources(&server).await;
        let mut documents = agents("small", 1);
        documents.push(
            serde_json::json!({
                "apiVersion": stigmer_resources::API_VERSION,
                "kind": "Agent",
                "metadata": {"name": "huge"},
                "spec": {"instructions": "x".repeat(stigmer_resources::MAX_RESOURCE_BYTES)},
            })
            .to_string(),
        );
        let response = api
            .apply(ApplyRequest {
                resources_json: documents,
                dry_run: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.errors.len(), 1, "{:?}", response.errors);
        assert_eq!(response.errors[0].index, 1);
        assert!(
            response.errors[0].message.starts_with(
                "Agent \"huge\" is 16.0 MiB as stored; a resource may be at most 16 MiB"
            ),
            "{}",
            response.errors[0].message
        );
        assert_eq!(stored_agents(&mut api).await, 1, "only the fixture");
    }
}
