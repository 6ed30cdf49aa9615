//! The API server's limits against the real daemon: subscribers that never read leave its
//! memory bounded while a busy run writes its event log; `get` output applied again keeps the
//! stored secrets.

use crate::home;
use crate::runs::{Stack, create};
use std::time::Duration;
use stigmer_proto::execution::{ExecutionEvent, ToolCallFinished};
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{AppendEventsRequest, NewEvent, SubscribeRequest};
use stigmer_test::llm::{Fault, Turn};
use stigmer_test::wait_until;

type Client = ExecutionServiceClient<stigmer_client::Authenticated>;

/// A client on a connection of its own, with the transport's default windows.
async fn connect(address: &str, token: &str) -> Client {
    stigmer_client::ApiClients::connect(address, token, stigmer_client::Timeouts::default())
        .await
        .expect("connect")
        .executions
}

async fn append(writer: &mut Client, id: &str, events: Vec<NewEvent>) {
    writer
        .append_events(AppendEventsRequest {
            execution_id: id.to_owned(),
            events,
        })
        .await
        .unwrap();
}

/// The resident memory of a process, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
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

#[test]
fn twenty_subscribers_that_never_read_leave_the_daemon_within_64_mib_of_idle() {
    // The model never answers, so the run stays running while the test writes its log.
    let stack = Stack::start("openai", vec![Turn::fault(Fault::Hang)]);
    let mut api = stack.api();
    let execution = api.create(create("helper", "Work hard")).unwrap();
    let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(30), "the model call", || {
        (stack.llm.requests().len() == 1).then_some(())
    });
    let (daemon, _) = stack.home.lock_holder().expect("no daemon");
    let address = stack.home.state().unwrap()["server_address"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = std::fs::read_to_string(stack.home.path().join("run/api-token")).unwrap();
    let token = token.trim();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut writer = connect(&address, token).await;
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
        append(&mut writer, &id, vec![big("warm".into())]).await;
        let idle = resident_bytes(daemon);
        let mut subscribers = Vec::new();
        for _ in 0..20 {
            let mut reader = connect(&address, token).await;
            let stream = reader
                .subscribe(SubscribeRequest {
                    execution_id: id.clone(),
                    after_seq: 0,
                })
                .await
                .unwrap()
                .into_inner();
            subscribers.push((reader, stream));
        }
        // A busy run: 64 MiB of tool output in 512 events.
        let mut peak = idle;
        for batch in 0..64 {
            append(
                &mut writer,
                &id,
                (0..8).map(|i| big(format!("e{batch}-{i}"))).collect(),
            )
            .await;
            peak = peak.max(resident_bytes(daemon));
        }
        let grown = peak.saturating_sub(idle);
        println!(
            "daemon idle: {} MiB, peak with 20 non-reading subscribers: {} MiB",
            idle / (1024 * 1024),
            peak / (1024 * 1024)
        );
        assert!(
            grown <= 64 * 1024 * 1024,
            "the daemon grew by {} MiB (idle {} MiB) with 20 subscribers that do not read",
            grown / (1024 * 1024),
            idle / (1024 * 1024)
        );
        drop(subscribers);
    });
    let cancelled = stack.home.run(&["execution", "cancel", &id]);
    assert_eq!(cancelled.code, 0, "{cancelled}");
}

#[test]
fn get_output_applied_again_keeps_the_stored_secret() {
    let home = home();
    home.start();
    let manifest = home.path().join("env.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata: {name: prod}\n\
         spec:\n  variables:\n    TOKEN: {value: super-secret-value-42, secret: true}\n",
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    assert_eq!(home.run(&["apply", "-f", manifest]).code, 0);
    // `stigmer get env prod -o yaml > f; stigmer apply -f f`
    let shown = home.run(&["get", "env", "prod", "-o", "yaml"]);
    assert_eq!(shown.code, 0, "{shown}");
    assert!(shown.stdout.contains("****"), "{shown}");
    let round_trip = home.path().join("shown.yaml");
    std::fs::write(&round_trip, &shown.stdout).unwrap();
    let applied = home.run(&["apply", "-f", round_trip.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    assert!(applied.stdout.contains("unchanged"), "{applied}");
    // A mask with no stored secret behind it is refused, naming the field.
    let new = home.path().join("new.yaml");
    std::fs::write(&new, shown.stdout.replace("name: prod", "name: staging")).unwrap();
    let refused = home.run(&["apply", "-f", new.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains("spec.variables.TOKEN.value")
            && refused.stderr.contains("write the real value"),
        "{refused}"
    );
    // The store still holds the secret itself.
    assert_eq!(home.run(&["server", "stop"]).code, 0);
    let store = stigmer_store::SqliteStore::open(&home.path().join("data/stigmer.db")).unwrap();
    let stored = stigmer_store::Store::get(&store, stigmer_resources::Kind::Environment, "prod")
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.spec["variables"]["TOKEN"]["value"],
        "super-secret-value-42"
    );
    assert!(
        stigmer_store::Store::get(&store, stigmer_resources::Kind::Environment, "staging")
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_eight_mib_answer_goes_from_the_model_through_runner_and_server_to_the_cli() {
    // 8 MiB of text, more than gRPC's default 4 MiB limit, ending with a marker (no spaces:
    // the scripted model streams it as one chunk).
    let line = "All-work-and-no-play-makes-a-very-long-answer-for-the-message-limits.\n";
    let mut answer = line.repeat(8 * 1024 * 1024 / line.len() + 1);
    answer.push_str("THE END");
    assert!(answer.len() > 8 * 1024 * 1024);
    let stack = Stack::start("ollama", vec![Turn::text(&answer)]);
    let outcome = stack.home.run(&["run", "helper", "Tell me everything."]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        outcome.stdout.trim_end(),
        answer,
        "the answer arrived changed"
    );
    // Stored whole: a second turn in the same session would send it back to the model.
    let listed = stack.home.run(&["execution", "list", "-o", "json"]);
    assert_eq!(listed.code, 0, "{listed}");
    assert!(listed.stdout.contains("completed"), "{listed}");
}
