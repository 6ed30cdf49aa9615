//! Agent executions through the whole stack: the release binary, managed Temporal, a
//! zero-latency scripted LLM (so what is measured is Stigmer's and Temporal's own work).
//!
//! - orchestration overhead per model turn: a 10-turn and a 50-turn execution (turns that each
//!   call the `ls` tool, then an answer), from `CreateExecution` to the terminal event, divided
//!   by the number of turns (the two must not differ: a step reads only what it needs);
//! - one-turn execution, create → completed;
//! - 20 executions created at once: wall time until all completed, executions per minute;
//! - a tool call per turn, MCP against built-in (after the above, in the same stack): an agent
//!   with one McpServer (`@modelcontextprotocol/server-everything` over stdio, under
//!   `stigmer internal exec`, as `scripts/setup` installs it) runs 10-turn and 50-turn
//!   executions whose turns each call `everything__echo`, alternating with the same executions
//!   calling the built-in `ls` (the same agent, so both start the server), and a one-turn
//!   execution of it next to one of the agent without servers (what starting the server adds to
//!   an execution). `BENCH_MCP=0` skips it; with `BENCH_BREAKDOWN=1`, a 50-turn execution of
//!   each tool is broken down too.
//!
//! `cargo bench -p stigmer --bench executions` (RUNS=5 by default).

use serde_json::json;
use std::time::Instant;
use stigmer_proto::execution::ExecutionPhase;
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{CreateExecutionRequest, SubscribeRequest};
use stigmer_test::TestHome;
use stigmer_test::llm::{ScriptedLlm, Turn};

type Client = ExecutionServiceClient<stigmer_client::Authenticated>;

/// Creates an execution of agent `bench` and follows it to its end; returns the terminal phase.
async fn run_one(client: Client, message: &str) -> Option<ExecutionPhase> {
    run_agent(client, "bench", message).await
}

/// Creates an execution of `agent` and follows it to its end; returns the terminal phase.
async fn run_agent(mut client: Client, agent: &str, message: &str) -> Option<ExecutionPhase> {
    let created = client
        .create_execution(CreateExecutionRequest {
            agent: agent.into(),
            message: message.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let execution: serde_json::Value = serde_json::from_str(&created.execution_json).unwrap();
    let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
    *LAST_EXECUTION.lock().unwrap() = id.clone();
    let mut stream = client
        .subscribe(SubscribeRequest {
            execution_id: id,
            after_seq: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut phase = None;
    while let Some(event) = stream.message().await.expect("stream") {
        if let Some(changed) = event.event().phase() {
            phase = Some(changed);
        }
    }
    phase
}

/// The id of the execution `run_one` created last.
static LAST_EXECUTION: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Where the time of one execution went, from its workflow history (`BENCH_BREAKDOWN=1`):
/// per activity and per workflow task, the mean time from scheduled to started (Temporal's
/// dispatch) and from started to completed (the runner's work), and the mean gap from one
/// step's end to the next one's start.
fn print_breakdown(temporal_address: &str, workflow_id: &str) {
    let output = std::process::Command::new("temporal")
        .args(["workflow", "show", "--workflow-id", workflow_id])
        .args(["--address", temporal_address, "--output", "json"])
        .output()
        .expect("cannot run `temporal workflow show`");
    let history: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the history as JSON");
    let events = history["events"].as_array().expect("history events");
    let time = |event: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(event["eventTime"].as_str().unwrap())
            .unwrap()
            .timestamp_micros() as f64
            / 1000.0
    };
    let id_of = |event: &serde_json::Value| event["eventId"].as_str().unwrap().to_owned();
    let mut at = std::collections::HashMap::new();
    let mut spans: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut kinds: std::collections::HashMap<String, String> = Default::default();
    let mut last_end: Option<f64> = None;
    for event in events {
        let kind = event["eventType"].as_str().unwrap_or_default();
        let now = time(event);
        at.insert(id_of(event), now);
        let attributes = event
            .as_object()
            .unwrap()
            .iter()
            .find(|(key, _)| key.ends_with("Attributes"))
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let since = |field: &str| {
            attributes[field]
                .as_str()
                .and_then(|id| at.get(id))
                .map(|then| now - then)
        };
        let mut push = |name: &str, value: Option<f64>| {
            if let Some(value) = value {
                spans.entry(name.to_owned()).or_default().push(value);
            }
        };
        match kind {
            "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" => {
                kinds.insert(
                    id_of(event),
                    attributes["activityType"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            "EVENT_TYPE_ACTIVITY_TASK_STARTED" => {
                push("activity scheduled → started", since("scheduledEventId"));
            }
            "EVENT_TYPE_ACTIVITY_TASK_COMPLETED" => {
                let activity = attributes["scheduledEventId"]
                    .as_str()
                    .and_then(|id| kinds.get(id))
                    .cloned()
                    .unwrap_or_default();
                push(
                    &format!("activity started → completed ({activity})"),
                    since("startedEventId"),
                );
                last_end = Some(now);
            }
            "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED" => {
                push(
                    "step end → workflow task scheduled",
                    last_end.map(|end| now - end),
                );
            }
            "EVENT_TYPE_WORKFLOW_TASK_STARTED" => {
                push(
                    "workflow task scheduled → started",
                    since("scheduledEventId"),
                );
            }
            "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" => {
                push("workflow task started → completed", since("startedEventId"));
                last_end = Some(now);
            }
            _ => {}
        }
    }
    let first = events.first().map(time).unwrap_or_default();
    let last = events.last().map(time).unwrap_or_default();
    println!(
        "  breakdown of {workflow_id}: {} events, {:.0} ms from start to close",
        events.len(),
        last - first
    );
    for (name, values) in spans {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        println!("    {name}: {mean:.1} ms mean over {}", values.len());
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(5);
    let llm = ScriptedLlm::start(vec![]);
    let home = TestHome::new(env!("CARGO_BIN_EXE_stigmer"));
    // `BENCH_TEMPORAL_ADDRESS=host:port` runs against a Temporal started by hand instead of
    // the managed one, to try server settings (e.g. `--dynamic-config-value
    // system.enableActivityEagerExecution=true`).
    let temporal = match std::env::var("BENCH_TEMPORAL_ADDRESS") {
        Ok(address) => format!("server:\n  port: 0\ntemporal:\n  address: {address}\n"),
        Err(_) => stigmer_test::TEST_CONFIG.to_owned(),
    };
    home.write_config(&format!(
        "{temporal}llm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        llm.v1_url()
    ));
    home.start();
    let manifest = home.path().join("bench.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: bench\nspec:\n  instructions: Benchmark.\n",
    )
    .unwrap();
    let applied = home.run(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    // The MCP comparison needs server-everything (`everything_script` panics, saying to run
    // `scripts/setup`, when it is not installed).
    let everything = (std::env::var("BENCH_MCP").as_deref() != Ok("0"))
        .then(|| std::panic::catch_unwind(stigmer_test::mcp::everything_script).ok())
        .flatten();
    if let Some(script) = &everything {
        let manifest = home.path().join("bench-mcp.yaml");
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata:\n  name: everything\nspec:\n  stdio:\n    command: node\n    args: [{script}, stdio]\n---\n\
apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: bench-mcp\nspec:\n  instructions: Benchmark.\n  mcpServers: [everything]\n",
                script = script.display()
            ),
        )
        .unwrap();
        let applied = home.run(&["apply", "-f", manifest.to_str().unwrap()]);
        assert_eq!(applied.code, 0, "{applied}");
    }

    let state = home.state().unwrap();
    let address = state["server_address"].as_str().unwrap().to_owned();
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

    // Warm up: Temporal's first workflow after a start is slower.
    llm.push([Turn::text("warm")]);
    runtime.block_on(run_one(client.clone(), "warm up"));

    let mut one_turn = Vec::new();
    let mut per_turn = Vec::new();
    let mut per_turn_50 = Vec::new();
    for _ in 0..runs {
        llm.push([Turn::text("done")]);
        let started = Instant::now();
        assert_eq!(
            runtime.block_on(run_one(client.clone(), "one")),
            Some(ExecutionPhase::Completed)
        );
        one_turn.push(started.elapsed().as_secs_f64() * 1000.0);

        for (turns, per_turn) in [(10, &mut per_turn), (50, &mut per_turn_50)] {
            llm.push((1..turns).map(|_| Turn::tool_call("ls", json!({}))));
            llm.push([Turn::text("done")]);
            let started = Instant::now();
            assert_eq!(
                runtime.block_on(run_one(client.clone(), &format!("{turns} turns"))),
                Some(ExecutionPhase::Completed)
            );
            per_turn.push(started.elapsed().as_secs_f64() * 1000.0 / turns as f64);
        }
    }

    let concurrent = 20;
    let mut walls = Vec::new();
    for _ in 0..runs.min(3) {
        llm.push((0..concurrent).map(|_| Turn::text("done")));
        let started = Instant::now();
        let phases = runtime.block_on(async {
            let tasks: Vec<_> = (0..concurrent)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move { run_one(client, &format!("c{i}")).await })
                })
                .collect();
            let mut phases = Vec::new();
            for task in tasks {
                phases.push(task.await.unwrap());
            }
            phases
        });
        assert!(
            phases
                .iter()
                .all(|phase| *phase == Some(ExecutionPhase::Completed)),
            "{phases:?}"
        );
        walls.push(started.elapsed().as_secs_f64());
    }
    let wall = median(walls);
    let mcp = everything
        .is_some()
        .then(|| tool_calls(&runtime, &client, &llm, runs));
    if mcp.is_some() && std::env::var_os("BENCH_BREAKDOWN").is_some() {
        let address = state["temporal_address"].as_str().unwrap().to_owned();
        for (tool, arguments) in [
            ("ls", json!({})),
            ("everything__echo", json!({"message": "bench"})),
        ] {
            llm.push((1..50).map(|_| Turn::tool_call(tool, arguments.clone())));
            llm.push([Turn::text("done")]);
            runtime.block_on(run_agent(client.clone(), "bench-mcp", "breakdown"));
            println!("  (agent bench-mcp, 50 turns calling {tool})");
            print_breakdown(&address, &LAST_EXECUTION.lock().unwrap().clone());
        }
    }
    if std::env::var_os("BENCH_BREAKDOWN").is_some() {
        llm.push((1..10).map(|_| Turn::tool_call("ls", json!({}))));
        llm.push([Turn::text("done")]);
        runtime.block_on(run_one(client.clone(), "breakdown"));
        let address = state["temporal_address"].as_str().unwrap().to_owned();
        let id = LAST_EXECUTION.lock().unwrap().clone();
        print_breakdown(&address, &id);
    }
    println!("executions: {runs} runs (medians)");
    println!(
        "  one-turn execution, create → completed: {:.0} ms",
        median(one_turn)
    );
    println!(
        "  orchestration per model turn (10-turn execution with a tool call per turn): {:.0} ms",
        median(per_turn)
    );
    println!(
        "  orchestration per model turn (50-turn execution with a tool call per turn): {:.0} ms",
        median(per_turn_50)
    );
    println!(
        "  {concurrent} concurrent executions: all completed in {:.2} s = {:.0} executions/min",
        wall,
        concurrent as f64 / wall * 60.0
    );
    if let Some(mcp) = mcp {
        mcp.print(runs);
    } else {
        println!("  (MCP against built-in skipped: BENCH_MCP=0 or server-everything missing)");
    }
}

/// Per-turn figures (ms) of executions whose turns each call one tool.
#[derive(Default)]
struct ToolCalls {
    /// One-turn executions (no tool): the agent without servers, the agent with one.
    one_turn: Vec<f64>,
    one_turn_mcp: Vec<f64>,
    /// Whole executions, by tool (`ls`, MCP `echo`) and number of turns (10, 50).
    ls: [Vec<f64>; 2],
    echo: [Vec<f64>; 2],
}

const TURNS: [usize; 2] = [10, 50];

/// The MCP comparison: per run, a one-turn execution of each agent, then 10 and 50 turns each
/// calling `ls`, then `everything__echo`, all of agent `bench-mcp`.
fn tool_calls(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    llm: &ScriptedLlm,
    runs: usize,
) -> ToolCalls {
    let run = |agent: &str, message: &str| {
        let started = Instant::now();
        assert_eq!(
            runtime.block_on(run_agent(client.clone(), agent, message)),
            Some(ExecutionPhase::Completed)
        );
        started.elapsed().as_secs_f64() * 1000.0
    };
    // Warm up: the first start of node and of the server is slower.
    llm.push([Turn::tool_call(
        "everything__echo",
        json!({"message": "warm"}),
    )]);
    llm.push([Turn::text("warm")]);
    run("bench-mcp", "warm up");
    let mut figures = ToolCalls::default();
    for _ in 0..runs {
        llm.push([Turn::text("done")]);
        figures.one_turn.push(run("bench", "one"));
        llm.push([Turn::text("done")]);
        figures.one_turn_mcp.push(run("bench-mcp", "one"));
        for (slot, turns) in TURNS.into_iter().enumerate() {
            llm.push((1..turns).map(|_| Turn::tool_call("ls", json!({}))));
            llm.push([Turn::text("done")]);
            figures.ls[slot].push(run("bench-mcp", &format!("{turns} turns of ls")));
            llm.push(
                (1..turns)
                    .map(|_| Turn::tool_call("everything__echo", json!({"message": "bench"}))),
            );
            llm.push([Turn::text("done")]);
            figures.echo[slot].push(run("bench-mcp", &format!("{turns} turns of echo")));
        }
    }
    figures
}

impl ToolCalls {
    fn print(self, runs: usize) {
        println!("tool call per turn, MCP against built-in: {runs} runs (medians)");
        println!(
            "  one-turn execution, create → completed: no MCP server {:.0} ms, one stdio server {:.0} ms",
            median(self.one_turn),
            median(self.one_turn_mcp)
        );
        let mut whole = [[0.0; 2]; 2];
        for (row, (name, series)) in [
            ("built-in ls", self.ls),
            ("MCP everything__echo", self.echo),
        ]
        .into_iter()
        .enumerate()
        {
            for (slot, (turns, values)) in TURNS.into_iter().zip(series).enumerate() {
                whole[row][slot] = median(values);
                println!(
                    "  per model turn, {turns}-turn execution calling {name}: {:.1} ms",
                    whole[row][slot] / turns as f64
                );
            }
        }
        let extra = (TURNS[1] - TURNS[0]) as f64;
        println!(
            "  per added turn ((50-turn − 10-turn) / 40): built-in ls {:.1} ms, MCP echo {:.1} ms",
            (whole[0][1] - whole[0][0]) / extra,
            (whole[1][1] - whole[1][0]) / extra
        );
    }
}
