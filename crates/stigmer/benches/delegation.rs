//! Sub-agents and approvals through the whole stack (issue 16): the release binary, managed
//! Temporal, both runners and a zero-latency scripted LLM, so what is measured is Stigmer's
//! and Temporal's own work.
//!
//! - sub-agent start overhead: from the parent's model request whose answer is a `task` call
//!   to the sub-agent's first model request (the parent's turn stored, the sub-agent's
//!   execution created, its child workflow started, its first step run), both as the scripted
//!   LLM received them;
//! - approval latency: from sending `DecideApprovals` (approve) for a call that waits to the
//!   `tool_call_started` of that call (the decision through the API server, the Temporal
//!   update, the workflow, the next step), by the server's timestamp of the event, and the
//!   decision's own round trip.
//!
//! `cargo bench -p stigmer --bench delegation` (RUNS=10 by default); each figure is the p50
//! (median) with min and max.

use serde_json::{Value, json};
use std::time::{Instant, SystemTime};
use stigmer_proto::execution::ExecutionEvent;
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{
    CreateExecutionRequest, DecideApprovalsRequest, SubscribeRequest,
};
use stigmer_test::TestHome;
use stigmer_test::llm::{ScriptedLlm, Turn};

type Client = ExecutionServiceClient<stigmer_client::Authenticated>;

const AGENTS: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: lead
spec:
  instructions: You lead.
  subAgents:
    - name: researcher
      instructions: You research.
---
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: careful
spec:
  instructions: You ask first.
  shell:
    enabled: true
  approval:
    tools: [execute]
";

async fn create(client: &mut Client, agent: &str, message: &str) -> String {
    let created = client
        .create_execution(CreateExecutionRequest {
            agent: agent.into(),
            message: message.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let execution: Value = serde_json::from_str(&created.execution_json).unwrap();
    execution["metadata"]["name"].as_str().unwrap().to_owned()
}

/// Follows an execution's events until `stop` says so (or its end); returns them with their
/// server timestamps.
async fn follow(
    client: &mut Client,
    id: &str,
    stop: impl Fn(&ExecutionEvent) -> bool,
) -> Vec<(ExecutionEvent, String)> {
    let mut stream = client
        .subscribe(SubscribeRequest {
            execution_id: id.to_owned(),
            after_seq: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("stream") {
        let typed = ExecutionEvent::from_wire_json_lenient(&event.kind, &event.data_json);
        let done = stop(&typed);
        events.push((typed, event.ts.clone()));
        if done {
            break;
        }
    }
    events
}

fn millis_since_epoch(ts: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .timestamp_micros() as f64
        / 1000.0
}

fn report(name: &str, mut values: Vec<f64>) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  {name}: p50 {:.1} ms (min {:.1}, max {:.1}, {} runs)",
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
        values.len()
    );
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(10);
    let llm = ScriptedLlm::start(vec![]);
    let home = TestHome::new(env!("CARGO_BIN_EXE_stigmer"));
    home.write_config(&format!(
        "{}llm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
        llm.v1_url()
    ));
    home.start();
    let manifest = home.path().join("agents.yaml");
    std::fs::write(&manifest, AGENTS).unwrap();
    let applied = home.run(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    let state = home.state().unwrap();
    let address = state["server_address"].as_str().unwrap().to_owned();
    let token = std::fs::read_to_string(home.path().join("run/api-token")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut client = runtime.block_on(async {
        stigmer_client::ApiClients::connect(&address, &token, stigmer_client::Timeouts::default())
            .await
            .unwrap()
            .executions
    });

    let mut starts = Vec::new();
    let mut approvals = Vec::new();
    let mut round_trips = Vec::new();
    // One warm-up of each, then the timed runs.
    for run in 0..=runs {
        // Sub-agent start: parent request → the sub-agent's first request.
        llm.push([
            Turn {
                tool_calls: vec![(
                    "task".into(),
                    json!({"subagent": "researcher", "description": "Find it."}),
                )],
                ..Turn::default()
            },
            Turn::text("Found."),
            Turn::text("Done."),
        ]);
        let before = llm.requests().len();
        runtime.block_on(async {
            let id = create(&mut client, "lead", "Delegate").await;
            follow(&mut client, &id, |_| false).await;
        });
        let requests = llm.requests();
        let (parent, child) = (&requests[before], &requests[before + 1]);
        assert!(
            child.body.to_string().contains("You research."),
            "the second request is the sub-agent's"
        );
        if run > 0 {
            starts.push(child.at.duration_since(parent.at).as_secs_f64() * 1000.0);
        }

        // Approval: decision → the tool starts.
        llm.push([
            Turn::tool_call("execute", json!({"command": "true"})),
            Turn::text("Ran it."),
        ]);
        runtime.block_on(async {
            let id = create(&mut client, "careful", "Run true").await;
            follow(&mut client, &id, |event| {
                matches!(event, ExecutionEvent::PhaseChanged(changed)
                    if changed.phase == stigmer_proto::execution::ExecutionPhase::Waiting)
            })
            .await;
            let decided_at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                * 1000.0;
            let sent = Instant::now();
            client
                .decide_approvals(DecideApprovalsRequest {
                    execution_id: id.clone(),
                    all: true,
                    approve: true,
                    ..Default::default()
                })
                .await
                .expect("decide");
            let round_trip = sent.elapsed();
            let events = follow(&mut client, &id, |_| false).await;
            let started = events
                .iter()
                .find(|(event, _)| {
                    matches!(event, ExecutionEvent::ToolCallStarted(call) if call.name == "execute")
                })
                .map(|(_, ts)| millis_since_epoch(ts))
                .expect("the approved call started");
            if run > 0 {
                approvals.push(started - decided_at);
                round_trips.push(round_trip.as_secs_f64() * 1000.0);
            }
        });
    }
    println!("delegation: {runs} runs");
    report(
        "sub-agent start (parent's task call → the sub-agent's first model request)",
        starts,
    );
    report(
        "approval latency (DecideApprovals sent → the approved tool starts)",
        approvals,
    );
    report("  of which the DecideApprovals round trip", round_trips);
}
