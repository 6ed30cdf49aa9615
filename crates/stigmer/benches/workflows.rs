//! Workflow executions through the whole stack (issue 15): the release binary, managed
//! Temporal, the workflow runner, a zero-latency scripted LLM and a local HTTP server, so what
//! is measured is Stigmer's and Temporal's own work. Each figure is from `CreateExecution` to
//! the terminal phase event on `Subscribe`.
//!
//! - a 100-task workflow of `set` and `switch` tasks (goal ≤ 200 ms: no Temporal round trip
//!   per pure task); its workflow history is counted (events, workflow tasks, activities by
//!   type) with `temporal workflow show`;
//! - per `call: http` overhead: a workflow with 10 sequential GETs against a local server,
//!   minus the same workflow without them, divided by 10 (goal ≤ 40 ms);
//! - a `for` over 1,000 items (each iteration a `set`);
//! - `call: agent` overhead beyond the agent run itself: a one-turn agent execution, and the
//!   same one-turn run as the only task of a workflow (`call: agent`).
//!
//! The workflows alternate within each run; the histories of the warm-up executions and of
//! the last timed ones are printed with where their time went (Temporal's dispatch against the
//! runners' work). `cargo bench -p stigmer --bench workflows` (RUNS=5 by default;
//! `BENCH_AGENT=0` leaves out the agent runs).

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;
use stigmer_proto::execution::ExecutionPhase;
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{
    CreateExecutionRequest, GetExecutionRequest, SubscribeRequest,
};
use stigmer_test::TestHome;
use stigmer_test::http::{HttpFixture, Reply};
use stigmer_test::llm::{ScriptedLlm, Turn};

type Client = ExecutionServiceClient<stigmer_client::Authenticated>;

/// One finished execution: its id, the milliseconds from create to the terminal phase event,
/// and how many events its log had.
struct Finished {
    id: String,
    ms: f64,
    events: usize,
}

/// Creates the execution and follows it to its terminal phase; fails unless it completed.
async fn run(mut client: Client, request: CreateExecutionRequest) -> Finished {
    let started = Instant::now();
    let created = client
        .create_execution(request)
        .await
        .expect("create")
        .into_inner();
    let execution: Value = serde_json::from_str(&created.execution_json).unwrap();
    let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
    let mut stream = client
        .subscribe(SubscribeRequest {
            execution_id: id.clone(),
            after_seq: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut phase = None;
    let mut events = 0;
    while let Some(event) = stream.message().await.expect("stream") {
        events += 1;
        if let Some(changed) = event.event().phase()
            && changed.is_terminal()
        {
            phase = Some(changed);
            break;
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if phase != Some(ExecutionPhase::Completed) {
        let execution = output_of(&mut client, &id).await;
        panic!("{id} ended {phase:?}: {execution:#}");
    }
    Finished { id, ms, events }
}

/// The execution resource.
async fn output_of(client: &mut Client, id: &str) -> Value {
    let reply = client
        .get_execution(GetExecutionRequest {
            execution_id: id.to_owned(),
        })
        .await
        .expect("get")
        .into_inner();
    serde_json::from_str(&reply.execution_json).unwrap()
}

fn workflow(name: &str, input: Value) -> CreateExecutionRequest {
    CreateExecutionRequest {
        workflow: name.into(),
        input_json: input.to_string(),
        ..Default::default()
    }
}

/// A Workflow manifest (JSON, which is YAML) with `tasks` as its `do`.
fn manifest(name: &str, tasks: Value) -> String {
    json!({
        "apiVersion": "agentic.stigmer.ai/v1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"do": tasks},
    })
    .to_string()
}

/// `set` then `switch`, 50 times; each `set` counts, each `switch` tests the count (never
/// true) and jumps to the next `set` by name. Output `{"n": 50, "label": "step 49"}`.
fn hundred_tasks() -> Value {
    let mut tasks = Vec::new();
    for i in 0..50 {
        tasks.push(json!({ format!("set{i}"): {
            "set": {
                "n": "${ (.n // 0) + 1 }",
                "label": "${ \"step \" + ((.n // 0) | tostring) }",
            }
        }}));
        let next = if i == 49 {
            "end".to_owned()
        } else {
            format!("set{}", i + 1)
        };
        tasks.push(json!({ format!("switch{i}"): {
            "switch": [
                { "tooMany": { "when": ".n > 1000", "then": "end" } },
                { "onward": { "then": next } },
            ]
        }}));
    }
    Value::Array(tasks)
}

/// `gets` sequential GETs of the input's `url`, then a `set`.
fn http_gets(gets: usize) -> Value {
    let mut tasks: Vec<Value> = (0..gets)
        .map(|i| {
            json!({ format!("get{i}"): {
                "call": "http",
                "with": {"method": "get", "endpoint": "${ $workflow.input.url }"},
            }})
        })
        .collect();
    tasks.push(json!({"done": {"set": {"ok": true}}}));
    Value::Array(tasks)
}

/// The workflow's history: how many events, workflow tasks and activities (by type).
fn history(temporal_address: &str, workflow_id: &str) -> String {
    let output = std::process::Command::new("temporal")
        .args(["workflow", "show", "--workflow-id", workflow_id])
        .args(["--address", temporal_address, "--output", "json"])
        .output();
    let Ok(output) = output else {
        return "(`temporal` CLI not found)".into();
    };
    let Ok(history) = serde_json::from_slice::<Value>(&output.stdout) else {
        return format!(
            "(no history: {})",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    };
    let events = history["events"].as_array().cloned().unwrap_or_default();
    let mut workflow_tasks = 0;
    let mut activities: BTreeMap<String, usize> = BTreeMap::new();
    let mut children = 0;
    let mut timers = 0;
    // Means of scheduled → started (Temporal's dispatch) and started → completed (the
    // runner's work), for activities and workflow tasks, from the events' times.
    let time = |event: &Value| {
        chrono::DateTime::parse_from_rfc3339(event["eventTime"].as_str().unwrap_or_default())
            .map(|time| time.timestamp_micros() as f64 / 1000.0)
            .unwrap_or_default()
    };
    let mut at = std::collections::HashMap::new();
    let mut spans: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for event in &events {
        let now = time(event);
        at.insert(
            event["eventId"].as_str().unwrap_or_default().to_owned(),
            now,
        );
        let attributes = event
            .as_object()
            .and_then(|object| {
                object
                    .iter()
                    .find(|(key, _)| key.ends_with("Attributes"))
                    .map(|(_, value)| value.clone())
            })
            .unwrap_or_default();
        let since = |field: &str| {
            attributes[field]
                .as_str()
                .and_then(|id| at.get(id))
                .map(|then| now - then)
        };
        let span = match event["eventType"].as_str().unwrap_or_default() {
            "EVENT_TYPE_ACTIVITY_TASK_STARTED" => {
                Some(("activity scheduled → started", since("scheduledEventId")))
            }
            "EVENT_TYPE_ACTIVITY_TASK_COMPLETED" => {
                Some(("activity started → completed", since("startedEventId")))
            }
            "EVENT_TYPE_WORKFLOW_TASK_STARTED" => Some((
                "workflow task scheduled → started",
                since("scheduledEventId"),
            )),
            "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" => {
                Some(("workflow task started → completed", since("startedEventId")))
            }
            _ => None,
        };
        if let Some((name, Some(value))) = span {
            spans.entry(name).or_default().push(value);
        }
        match event["eventType"].as_str().unwrap_or_default() {
            "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" => workflow_tasks += 1,
            "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" => {
                let name = event["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                *activities.entry(name).or_default() += 1;
            }
            "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED" => children += 1,
            "EVENT_TYPE_TIMER_STARTED" => timers += 1,
            _ => {}
        }
    }
    let activities: Vec<String> = activities
        .into_iter()
        .map(|(name, count)| format!("{count} × {name}"))
        .collect();
    let spans: Vec<String> = spans
        .into_iter()
        .map(|(name, values)| {
            format!(
                "{name} {:.1} ms",
                values.iter().sum::<f64>() / values.len() as f64
            )
        })
        .collect();
    let whole = match (events.first(), events.last()) {
        (Some(first), Some(last)) => time(last) - time(first),
        _ => 0.0,
    };
    format!(
        "{} history events over {whole:.0} ms, {workflow_tasks} workflow tasks, activities: [{}], {children} child workflows, {timers} timers\n      means: {}",
        events.len(),
        activities.join(", "),
        spans.join(", ")
    )
}

/// Median, min and max.
fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn show(name: &str, values: &[f64]) -> f64 {
    let (median, min, max) = summary(values.to_vec());
    println!("  {name}: median {median:.0} ms (min {min:.0}, max {max:.0})");
    median
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(5);
    // `BENCH_AGENT=0` leaves out the agent runs (to see how the others fare without them).
    let agents = std::env::var("BENCH_AGENT").as_deref() != Ok("0");
    let llm = ScriptedLlm::start(vec![]);
    let server = HttpFixture::start(|_, _| Reply::json(json!({"ok": true})));
    let home = TestHome::new(env!("CARGO_BIN_EXE_stigmer"));
    home.write_config(&format!(
        "{}llm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
        llm.v1_url()
    ));
    home.start();
    let items: Vec<u64> = (1..=1000).collect();
    let manifests = [
        "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: bench\nspec:\n  instructions: Benchmark.\n".to_owned(),
        manifest("hundred", hundred_tasks()),
        manifest("gets0", http_gets(0)),
        manifest("gets10", http_gets(10)),
        manifest(
            "loop",
            json!([{ "loop": {
                "for": { "each": "item", "in": ".items" },
                "do": [{ "add": { "set": { "sum": "${ (.sum // 0) + $item }" } } }],
            }}]),
        ),
        manifest(
            "ask",
            json!([{ "ask": {
                "call": "agent",
                "with": { "agent": "bench", "message": "one" },
            }}]),
        ),
    ];
    let path = home.path().join("bench-workflows.yaml");
    std::fs::write(&path, manifests.join("\n---\n")).unwrap();
    let applied = home.run(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");

    let state = home.state().unwrap();
    let address = state["server_address"].as_str().unwrap().to_owned();
    let temporal_address = state["temporal_address"].as_str().unwrap_or("").to_owned();
    let token = std::fs::read_to_string(home.path().join("run/api-token")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client: Client = runtime.block_on(async {
        stigmer_client::ApiClients::connect(&address, &token, stigmer_client::Timeouts::default())
            .await
            .expect("connect")
            .executions
    });
    let url = json!({ "url": format!("{}/ping", server.url()) });
    let loop_input = json!({ "items": items });
    let timed = |request: CreateExecutionRequest| runtime.block_on(run(client.clone(), request));
    let output = |id: &str| {
        runtime.block_on(async { output_of(&mut client.clone(), id).await })["status"]["output"]
            .clone()
    };

    // Warm up (Temporal's first workflow after a start is slower), checking each output once.
    let mut first = BTreeMap::new();
    for (name, input, expected) in [
        ("hundred", json!({}), json!({"n": 50, "label": "step 49"})),
        ("gets0", url.clone(), json!({"ok": true})),
        ("gets10", url.clone(), json!({"ok": true})),
        ("loop", loop_input.clone(), json!({"sum": 500_500})),
    ] {
        let finished = timed(workflow(name, input));
        assert_eq!(output(&finished.id), expected, "{name}");
        first.insert(name, finished);
    }
    if agents {
        llm.push([Turn::text("warm")]);
        let asked = timed(workflow("ask", json!({})));
        assert_eq!(output(&asked.id)["text"], json!("warm"));
        llm.push([Turn::text("warm")]);
        timed(CreateExecutionRequest {
            agent: "bench".into(),
            message: "warm".into(),
            ..Default::default()
        });
        first.insert("ask", asked);
    }
    // The same 10 GETs again after the other warm-up runs: whether Temporal's dispatch
    // changed in between (see the histories).
    first.insert("gets10 again", timed(workflow("gets10", url.clone())));
    let requests_before = server.requests().len();

    let mut hundred = Vec::new();
    let mut gets0 = Vec::new();
    let mut gets10 = Vec::new();
    let mut looped = Vec::new();
    let mut agent = Vec::new();
    let mut agent_call = Vec::new();
    let mut last = BTreeMap::new();
    for _ in 0..runs {
        hundred.push(timed(workflow("hundred", json!({}))).ms);
        gets0.push(timed(workflow("gets0", url.clone())).ms);
        let finished = timed(workflow("gets10", url.clone()));
        gets10.push(finished.ms);
        last.insert("gets10", finished);
        looped.push(timed(workflow("loop", loop_input.clone())).ms);
        if !agents {
            continue;
        }
        llm.push([Turn::text("done")]);
        agent.push(
            timed(CreateExecutionRequest {
                agent: "bench".into(),
                message: "one".into(),
                ..Default::default()
            })
            .ms,
        );
        llm.push([Turn::text("done")]);
        let finished = timed(workflow("ask", json!({})));
        agent_call.push(finished.ms);
        last.insert("ask", finished);
    }
    assert_eq!(server.requests().len() - requests_before, 10 * runs);

    println!("workflows: {runs} runs (create → terminal phase event)");
    let median = show("100-task set/switch workflow", &hundred);
    println!("    per task: {:.2} ms", median / 100.0);
    let zero = show("0 GETs (one set)", &gets0);
    let ten = show("10 sequential GETs + the set", &gets10);
    let per_call: Vec<f64> = gets10
        .iter()
        .zip(&gets0)
        .map(|(ten, zero)| (ten - zero) / 10.0)
        .collect();
    let (paired, min, max) = summary(per_call);
    println!(
        "    per call: http, (median 10 − median 0) / 10: {:.1} ms; per run pair: median {paired:.1} ms (min {min:.1}, max {max:.1})",
        (ten - zero) / 10.0
    );
    let median = show("for over 1,000 items (a set each)", &looped);
    println!("    per iteration: {:.2} ms", median / 1000.0);
    if agents {
        let plain = show("one-turn agent execution", &agent);
        let called = show("workflow with one call: agent (the same run)", &agent_call);
        println!("    call: agent overhead: {:.0} ms", called - plain);
    }

    println!("histories (the warm-up executions, then the last timed ones):");
    for (name, finished) in first.iter().chain(&last) {
        println!(
            "  {name} ({}, {} execution events, {:.0} ms): {}",
            finished.id,
            finished.events,
            finished.ms,
            history(&temporal_address, &finished.id)
        );
    }
}
