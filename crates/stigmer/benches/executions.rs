//! Agent executions through the whole stack: the release binary, managed Temporal, a
//! zero-latency scripted LLM (so what is measured is Stigmer's and Temporal's own work).
//!
//! - orchestration overhead per model turn: a 10-turn execution (9 turns that each call the
//!   `ls` tool, then an answer), from `CreateExecution` to the terminal event, divided by 10;
//! - one-turn execution, create → completed;
//! - 20 executions created at once: wall time until all completed, executions per minute.
//!
//! `cargo bench -p stigmer --bench executions` (RUNS=5 by default).

use serde_json::json;
use std::time::Instant;
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{CreateExecutionRequest, SubscribeRequest};
use stigmer_test::TestHome;
use stigmer_test::llm::{ScriptedLlm, Turn};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = ExecutionServiceClient<InterceptedService<Channel, Token>>;

#[derive(Clone)]
struct Token(String);

impl tonic::service::Interceptor for Token {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(request)
    }
}

/// Creates an execution and follows it to its end; returns the terminal phase.
async fn run_one(mut client: Client, message: &str) -> String {
    let created = client
        .create_execution(CreateExecutionRequest {
            agent: "bench".into(),
            message: message.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let execution: serde_json::Value = serde_json::from_str(&created.execution_json).unwrap();
    let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
    let mut stream = client
        .subscribe(SubscribeRequest {
            execution_id: id,
            after_seq: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut phase = String::new();
    while let Some(event) = stream.message().await.expect("stream") {
        if event.kind == "phase_changed" {
            let data: serde_json::Value = serde_json::from_str(&event.data_json).unwrap();
            phase = data["phase"].as_str().unwrap_or_default().to_owned();
        }
    }
    phase
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
    home.write_config(&format!(
        "{}llm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
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

    let state = home.state().unwrap();
    let address = state["server_address"].as_str().unwrap().to_owned();
    let token = std::fs::read_to_string(home.path().join("run/api-token")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client: Client = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        ExecutionServiceClient::with_interceptor(channel, Token(token.trim().to_owned()))
    });

    // Warm up: Temporal's first workflow after a start is slower.
    llm.push([Turn::text("warm")]);
    runtime.block_on(run_one(client.clone(), "warm up"));

    let mut one_turn = Vec::new();
    let mut per_turn = Vec::new();
    for _ in 0..runs {
        llm.push([Turn::text("done")]);
        let started = Instant::now();
        assert_eq!(
            runtime.block_on(run_one(client.clone(), "one")),
            "completed"
        );
        one_turn.push(started.elapsed().as_secs_f64() * 1000.0);

        let turns = 10;
        llm.push((1..turns).map(|_| Turn::tool_call("ls", json!({}))));
        llm.push([Turn::text("done")]);
        let started = Instant::now();
        assert_eq!(
            runtime.block_on(run_one(client.clone(), "ten")),
            "completed"
        );
        per_turn.push(started.elapsed().as_secs_f64() * 1000.0 / turns as f64);
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
            phases.iter().all(|phase| phase == "completed"),
            "{phases:?}"
        );
        walls.push(started.elapsed().as_secs_f64());
    }
    let wall = median(walls);
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
        "  {concurrent} concurrent executions: all completed in {:.2} s = {:.0} executions/min",
        wall,
        concurrent as f64 / wall * 60.0
    );
}
