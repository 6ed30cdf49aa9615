//! Agent executions end to end: the real binary and Temporal, the scripted LLM.

use crate::home;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use stigmer_proto::execution::ExecutionPhase::{Cancelled, Completed, Failed, Pending, Running};
use stigmer_proto::execution::{ExecutionEvent, ExecutionPhase, ToolCallFinished};
use stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient;
use stigmer_proto::executions::v1::{
    CreateExecutionRequest, GetExecutionRequest, SubscribeRequest,
};
use stigmer_test::llm::{Fault, ScriptedLlm, Turn};
use stigmer_test::{Outcome, TestHome, wait_until};

/// A running stack whose default model is the scripted LLM, speaking `provider`.
pub struct Stack {
    pub home: TestHome,
    pub llm: ScriptedLlm,
}

pub const AGENT: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: helper
spec:
  instructions: You help.
";

impl Stack {
    pub fn start(provider: &str, script: Vec<Turn>) -> Stack {
        Stack::start_with(provider, script, "", AGENT)
    }

    /// `extra_config` is appended to the test config; `agents` is applied before returning.
    pub fn start_with(
        provider: &str,
        script: Vec<Turn>,
        extra_config: &str,
        agents: &str,
    ) -> Stack {
        let llm = ScriptedLlm::start(script);
        let base_url = match provider {
            "ollama" => llm.base_url(),
            _ => llm.v1_url(),
        };
        let mut home = home();
        home.write_config(&format!(
            "{}llm:\n  provider: {provider}\n  model: scripted\n  base_url: {base_url}\n{extra_config}",
            stigmer_test::TEST_CONFIG
        ));
        home.set_env("OPENAI_API_KEY", "sk-test-openai");
        home.set_env("ANTHROPIC_API_KEY", "sk-test-anthropic");
        home.start();
        let manifest = home.path().join("agents.yaml");
        std::fs::write(&manifest, agents).unwrap();
        let applied = home.run(&["apply", "-f", manifest.to_str().unwrap()]);
        assert_eq!(applied.code, 0, "{applied}");
        Stack { home, llm }
    }

    /// `stigmer run ... --json`: the outcome and the events it printed.
    pub fn run_json(&self, args: &[&str]) -> (Outcome, Vec<Value>) {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.push("--json");
        let outcome = self.home.run(&all);
        let events = outcome
            .stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("not a JSON event ({error}): {line}\n{outcome}"))
            })
            .collect();
        (outcome, events)
    }

    pub fn api(&self) -> Api {
        Api::connect(&self.home)
    }
}

/// The execution API, straight over gRPC (for what the CLI does not show).
pub struct Api {
    runtime: tokio::runtime::Runtime,
    client: ExecutionServiceClient<stigmer_client::Authenticated>,
}

impl Api {
    pub fn connect(home: &TestHome) -> Api {
        let state = home.state().expect("the daemon recorded no state");
        let address = state["server_address"].as_str().unwrap().to_owned();
        let token = std::fs::read_to_string(home.path().join("run/api-token")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let clients = runtime
            .block_on(stigmer_client::ApiClients::connect(
                &address,
                &token,
                stigmer_client::Timeouts::default(),
            ))
            .unwrap();
        Api {
            runtime,
            client: clients.executions,
        }
    }

    pub fn create(&mut self, request: CreateExecutionRequest) -> Result<Value, tonic::Status> {
        let reply = self
            .runtime
            .block_on(self.client.create_execution(request))?;
        Ok(serde_json::from_str(&reply.into_inner().execution_json).unwrap())
    }

    pub fn get(&mut self, id: &str) -> Value {
        let reply = self
            .runtime
            .block_on(self.client.get_execution(GetExecutionRequest {
                execution_id: id.to_owned(),
            }))
            .unwrap();
        serde_json::from_str(&reply.into_inner().execution_json).unwrap()
    }

    /// Events after `after_seq`: all of them to the end, or the first `limit` (then the
    /// subscription is dropped, like a client that disconnects). Each is read through the
    /// typed protocol: a known kind whose fields do not fit fails the test.
    pub fn events(&mut self, id: &str, after_seq: u64, limit: Option<usize>) -> Vec<Event> {
        self.runtime.block_on(async {
            let mut stream = self
                .client
                .subscribe(SubscribeRequest {
                    execution_id: id.to_owned(),
                    after_seq,
                })
                .await
                .unwrap()
                .into_inner();
            let mut events = Vec::new();
            while let Some(event) = tokio::time::timeout(Duration::from_secs(120), stream.message())
                .await
                .expect("no event for 120 s")
                .unwrap()
            {
                let typed = ExecutionEvent::from_wire_json(&event.kind, &event.data_json)
                    .unwrap_or_else(|error| panic!("event {}: {error}", event.seq));
                events.push(Event {
                    seq: event.seq,
                    event: typed,
                });
                if limit.is_some_and(|limit| events.len() == limit) {
                    break;
                }
            }
            events
        })
    }
}

impl Api {
    /// Events from the start until `enough` says so (each new event is waited for up to
    /// 120 s; the log ending first fails the test).
    pub fn events_until(&mut self, id: &str, enough: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        self.runtime.block_on(async {
            let mut stream = self
                .client
                .subscribe(SubscribeRequest {
                    execution_id: id.to_owned(),
                    after_seq: 0,
                })
                .await
                .unwrap()
                .into_inner();
            let mut events = Vec::new();
            while !enough(&events) {
                let event = tokio::time::timeout(Duration::from_secs(120), stream.message())
                    .await
                    .expect("no event for 120 s")
                    .unwrap()
                    .unwrap_or_else(|| panic!("the log ended first: {events:#?}"));
                let typed = ExecutionEvent::from_wire_json(&event.kind, &event.data_json)
                    .unwrap_or_else(|error| panic!("event {}: {error}", event.seq));
                events.push(Event {
                    seq: event.seq,
                    event: typed,
                });
            }
            events
        })
    }
}

pub fn create(agent: &str, message: &str) -> CreateExecutionRequest {
    CreateExecutionRequest {
        agent: agent.into(),
        message: message.into(),
        ..Default::default()
    }
}

/// One event of an execution as the API serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub event: ExecutionEvent,
}

pub fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|event| event.event.kind()).collect()
}

pub fn phases(events: &[Event]) -> Vec<ExecutionPhase> {
    events
        .iter()
        .filter_map(|event| match &event.event {
            ExecutionEvent::PhaseChanged(changed) => Some(changed.phase),
            _ => None,
        })
        .collect()
}

pub fn text_of(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|event| match &event.event {
            ExecutionEvent::TokenDelta(delta) => Some(delta.text.as_str()),
            _ => None,
        })
        .collect()
}

fn id_of(execution: &Value) -> String {
    execution["metadata"]["name"].as_str().unwrap().to_owned()
}

/// The reason of the last phase change.
fn reason_of(events: &[Event]) -> String {
    events
        .iter()
        .rev()
        .find_map(|event| match &event.event {
            ExecutionEvent::PhaseChanged(changed) => {
                Some(changed.reason.clone().unwrap_or_default())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// What `stigmer run --json` printed, read as JSON on purpose: its shape (`seq`, `kind`,
/// `data`, `execution_id`) is the CLI's output contract under test.
pub mod printed {
    use serde_json::Value;

    pub fn phases(events: &[Value]) -> Vec<&str> {
        events
            .iter()
            .filter(|event| event["kind"] == "phase_changed")
            .map(|event| event["data"]["phase"].as_str().unwrap())
            .collect()
    }

    pub fn text_of(events: &[Value]) -> String {
        events
            .iter()
            .filter(|event| event["kind"] == "token_delta")
            .map(|event| event["data"]["text"].as_str().unwrap())
            .collect()
    }
}

/// The chat messages a recorded LLM request carried (all three wire formats keep them under
/// `messages`).
fn messages_of(request: &stigmer_test::llm::RecordedRequest) -> String {
    request.body["messages"].to_string()
}

#[test]
fn every_provider_streams_a_completed_run() {
    for (provider, path) in [
        ("ollama", "/api/chat"),
        ("openai", "/v1/chat/completions"),
        ("anthropic", "/v1/messages"),
    ] {
        let stack = Stack::start(provider, vec![Turn::text("Hello there, friend.")]);
        let mut api = stack.api();
        let id = id_of(&api.create(create("helper", "Say hello")).unwrap());
        let events = api.events(&id, 0, None);
        assert_eq!(
            phases(&events),
            [Pending, Running, Completed],
            "{provider}: {events:#?}"
        );
        assert_eq!(text_of(&events), "Hello there, friend.", "{provider}");
        let usage = events
            .iter()
            .find_map(|e| match &e.event {
                ExecutionEvent::Usage(usage) => Some(usage),
                _ => None,
            })
            .unwrap();
        assert_eq!(usage.input_tokens, 20, "{provider}");
        let requests = stack.llm.requests();
        assert_eq!(requests.len(), 1, "{provider}");
        assert_eq!(requests[0].path, path, "{provider}");
        assert!(
            messages_of(&requests[0]).contains("Say hello"),
            "{provider}"
        );
        // The key reaches the provider that needs it, and only that one.
        match provider {
            "openai" => assert_eq!(
                requests[0].header("authorization"),
                Some("Bearer sk-test-openai")
            ),
            "anthropic" => assert_eq!(requests[0].header("x-api-key"), Some("sk-test-anthropic")),
            _ => assert_eq!(requests[0].header("authorization"), None),
        }
        let execution = api.get(&id);
        assert_eq!(execution["status"]["phase"], "completed");
        assert!(execution["status"]["startedAt"].is_string());
        assert!(execution["status"]["finishedAt"].is_string());
    }
}

#[test]
fn a_tool_loop_edits_a_file_in_the_session_workspace_and_stays_inside_it() {
    let stack = Stack::start(
        "openai",
        vec![
            Turn::tool_call(
                "write_todos",
                json!({"todos": [{"content": "write the notes", "status": "in_progress"}]}),
            ),
            Turn::tool_call(
                "write_file",
                json!({"path": "notes.txt", "content": "draft v1\n"}),
            ),
            Turn::tool_call(
                "edit_file",
                json!({"path": "notes.txt", "old_string": "draft", "new_string": "final"}),
            ),
            Turn::tool_call("read_file", json!({"path": "../../../../etc/hostname"})),
            Turn::text("Done."),
        ],
    );
    let mut api = stack.api();
    let execution = api.create(create("helper", "Write notes")).unwrap();
    let id = id_of(&execution);
    let session = execution["spec"]["session"].as_str().unwrap().to_owned();
    let events = api.events(&id, 0, None);
    assert_eq!(
        phases(&events),
        [Pending, Running, Completed],
        "{events:#?}"
    );
    let file = stack
        .home
        .path()
        .join("workspace")
        .join(&session)
        .join("notes.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "final v1\n");

    let finished: Vec<&ToolCallFinished> = events
        .iter()
        .filter_map(|e| match &e.event {
            ExecutionEvent::ToolCallFinished(finished) => Some(finished),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = finished.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["write_todos", "write_file", "edit_file", "read_file"]
    );
    assert_eq!(
        finished.iter().map(|e| e.is_error).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    let refused = &finished[3].result;
    assert!(refused.contains("outside the workspace"), "{refused}");
    let todos = events
        .iter()
        .find_map(|e| match &e.event {
            ExecutionEvent::TodosUpdated(todos) => Some(todos),
            _ => None,
        })
        .unwrap();
    assert_eq!(todos.todos[0].content, "write the notes");
    let started = events
        .iter()
        .find_map(|e| match &e.event {
            ExecutionEvent::ToolCallStarted(started) => Some(started),
            _ => None,
        })
        .unwrap();
    assert_eq!(started.arguments["todos"][0]["status"], "in_progress");

    // The model saw each tool's result before its next turn.
    let requests = stack.llm.requests();
    assert_eq!(requests.len(), 5);
    assert!(
        messages_of(&requests[2]).contains("notes.txt"),
        "{}",
        messages_of(&requests[2])
    );
    assert!(messages_of(&requests[4]).contains("outside the workspace"));
}

#[test]
fn a_runaway_loop_fails_at_the_turn_limit() {
    let agent = format!("{AGENT}  maxTurns: 3\n");
    let stack = Stack::start_with(
        "openai",
        (0..5).map(|_| Turn::tool_call("ls", json!({}))).collect(),
        "",
        &agent,
    );
    let mut api = stack.api();
    let id = id_of(&api.create(create("helper", "Loop")).unwrap());
    let events = api.events(&id, 0, None);
    assert_eq!(phases(&events), [Pending, Running, Failed]);
    assert!(
        reason_of(&events).contains("exceeded 3 model turns"),
        "{events:#?}"
    );
    assert_eq!(stack.llm.requests().len(), 3);
}

#[test]
fn a_cancel_takes_effect_within_seconds() {
    let stack = Stack::start("openai", vec![Turn::fault(Fault::Hang)]);
    let mut api = stack.api();
    let id = id_of(&api.create(create("helper", "Think forever")).unwrap());
    wait_until(Duration::from_secs(30), "the model call", || {
        (stack.llm.requests().len() == 1).then_some(())
    });
    let asked = Instant::now();
    let cancelled = stack.home.run(&["execution", "cancel", &id]);
    assert_eq!(cancelled.code, 0, "{cancelled}");
    let events = api.events(&id, 0, None);
    let took = asked.elapsed();
    assert_eq!(phases(&events), [Pending, Running, Cancelled]);
    assert!(took < Duration::from_secs(3), "cancel took {took:?}");
    // A second cancel says the execution already ended.
    let again = stack.home.run(&["execution", "cancel", &id]);
    assert_ne!(again.code, 0, "{again}");
    assert!(again.stderr.contains("already ended"), "{again}");
}

#[test]
fn a_runner_killed_mid_turn_resumes_without_repeating_finished_turns() {
    let stack = Stack::start(
        "openai",
        vec![
            Turn::tool_call("write_file", json!({"path": "a.txt", "content": "one"})),
            Turn::fault(Fault::Hang),
            Turn::text("All done."),
        ],
    );
    let mut api = stack.api();
    let id = id_of(&api.create(create("helper", "Write a file")).unwrap());
    wait_until(Duration::from_secs(30), "the second model turn", || {
        (stack.llm.requests().len() == 2).then_some(())
    });
    let status = stack.home.status();
    let runner = TestHome::component(&status, "agent-runner")["pid"]
        .as_u64()
        .unwrap() as u32;
    stigmer_test::signal(runner, nix::sys::signal::Signal::SIGKILL);

    let events = api.events(&id, 0, None);
    assert_eq!(
        phases(&events),
        [Pending, Running, Completed],
        "{events:#?}"
    );
    assert_eq!(text_of(&events), "All done.");
    let requests = stack.llm.requests();
    // Turn 1 once, turn 2 twice (the killed attempt and its retry), nothing else.
    assert_eq!(requests.len(), 3);
    assert_eq!(messages_of(&requests[1]), messages_of(&requests[2]));
    let tool_runs = events
        .iter()
        .filter(|e| matches!(e.event, ExecutionEvent::ToolCallStarted(_)))
        .count();
    assert_eq!(tool_runs, 1);
    let retried = events
        .iter()
        .filter_map(|e| match &e.event {
            ExecutionEvent::MessageStarted(started) if started.turn == 2 => Some(started.attempt),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(retried, [1, 2]);
    let component = TestHome::component(&stack.home.status(), "agent-runner");
    assert_eq!(component["restarts"], 1);
}

#[test]
fn a_subscriber_that_reconnects_misses_nothing_and_sees_nothing_twice() {
    let slow = Turn::text("one two three four five six seven eight nine ten eleven twelve")
        .with_chunk_delay(Duration::from_millis(40));
    let stack = Stack::start("ollama", vec![slow]);
    let mut api = stack.api();
    let id = id_of(&api.create(create("helper", "Count")).unwrap());
    let mut seen = api.events(&id, 0, Some(3));
    for _ in 0..3 {
        let last = seen.last().unwrap().seq;
        seen.extend(api.events(&id, last, Some(2)));
    }
    let last = seen.last().unwrap().seq;
    seen.extend(api.events(&id, last, None));
    let replay = api.events(&id, 0, None);
    assert_eq!(seen, replay);
    let seqs: Vec<u64> = replay.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        kinds(&replay)
            .iter()
            .filter(|k| **k == "token_delta")
            .count()
            > 1
    );
}

#[test]
fn model_errors_are_retried_or_reported_as_the_provider_said() {
    let stack = Stack::start(
        "openai",
        vec![
            Turn::fault(Fault::Status(429, "slow down".into())),
            Turn::text("Worth the wait."),
            Turn::fault(Fault::Status(401, "Incorrect API key provided".into())),
        ],
    );
    let mut api = stack.api();
    // 429, then OK: retried with backoff, completed.
    let id = id_of(&api.create(create("helper", "Try")).unwrap());
    let events = api.events(&id, 0, None);
    assert_eq!(
        phases(&events),
        [Pending, Running, Completed],
        "{events:#?}"
    );
    assert_eq!(text_of(&events), "Worth the wait.");
    assert_eq!(stack.llm.requests().len(), 2);
    // 401: fails at once with the provider's message, no retry.
    let id = id_of(&api.create(create("helper", "Again")).unwrap());
    let events = api.events(&id, 0, None);
    assert_eq!(phases(&events), [Pending, Running, Failed]);
    assert!(
        reason_of(&events).contains("Incorrect API key provided"),
        "{events:#?}"
    );
    assert_eq!(stack.llm.requests().len(), 3);
}

#[test]
fn an_unreachable_model_fails_the_run_with_the_reason_after_retries() {
    let stack = Stack::start("openai", vec![]);
    // Point the stack at a port where nothing listens.
    let closed = stigmer_test::free_port();
    stack.home.write_config(&format!(
        "{}llm:\n  provider: openai\n  model: scripted\n  base_url: http://127.0.0.1:{closed}/v1\n",
        stigmer_test::TEST_CONFIG
    ));
    let restarted = stack.home.run(&["server", "restart"]);
    assert_eq!(restarted.code, 0, "{restarted}");
    let mut api = stack.api();
    let id = id_of(&api.create(create("helper", "Anyone there?")).unwrap());
    let events = api.events(&id, 0, None);
    assert_eq!(phases(&events), [Pending, Running, Failed]);
    let reason = reason_of(&events);
    assert!(reason.contains(&closed.to_string()), "{reason}");
    let attempts = events
        .iter()
        .filter(|e| matches!(e.event, ExecutionEvent::MessageStarted(_)))
        .count();
    assert_eq!(attempts, 4, "{events:#?}");
}

#[test]
fn secrets_stay_out_of_events_logs_and_the_store() {
    const SECRET: &str = "s3cr3t-value-8817";
    let agent = format!("{AGENT}  env:\n    API_TOKEN:\n      secret: true\n");
    let stack = Stack::start_with(
        "openai",
        vec![
            Turn::tool_call(
                "write_todos",
                json!({"todos": [{"content": format!("use {SECRET}")}]}),
            ),
            Turn::text(&format!("Your token is {SECRET} ok")),
        ],
        "",
        &agent,
    );
    let mut api = stack.api();
    // A secret declared by the agent must be given, and only as a secret.
    let missing = api.create(create("helper", "Go")).unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    assert!(
        missing.message().contains("--secret API_TOKEN"),
        "{missing:?}"
    );
    let mut as_env = create("helper", "Go");
    as_env.env.insert("API_TOKEN".into(), SECRET.into());
    let refused = api.create(as_env).unwrap_err();
    assert!(refused.message().contains("is a secret"), "{refused:?}");

    let mut request = create("helper", "Go");
    request.secrets.insert("API_TOKEN".into(), SECRET.into());
    let execution = api.create(request).unwrap();
    assert_eq!(execution["spec"]["secretNames"], json!(["API_TOKEN"]));
    let id = id_of(&execution);
    let events = api.events(&id, 0, None);
    assert_eq!(phases(&events), [Pending, Running, Completed]);
    assert_eq!(text_of(&events), "Your token is **** ok");
    for event in &events {
        let wire = serde_json::to_string(&event.event).unwrap();
        assert!(!wire.contains(SECRET), "{wire}");
    }
    let stop = stack.home.run(&["server", "stop"]);
    assert_eq!(stop.code, 0, "{stop}");
    // Nothing under the home — logs, the store, Temporal's database — holds it in clear
    // (the workspace is the agent's own files, and holds none here either).
    let mut leaks = Vec::new();
    let mut pending = vec![stack.home.path().to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()))
            {
                leaks.push(path);
            }
        }
    }
    assert!(leaks.is_empty(), "the secret is in clear in {leaks:?}");
}

#[test]
fn the_model_is_the_agents_then_the_runs_then_the_stacks() {
    let agents = format!(
        "{AGENT}---\napiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: pinned\nspec:\n  instructions: Pinned.\n  model:\n    name: llama-missing\n"
    );
    let stack = Stack::start_with(
        "ollama",
        vec![
            Turn::text("default"),
            Turn::text("flag"),
            Turn::fault(Fault::Status(
                404,
                "model \"llama-missing\" not found, try pulling it first".into(),
            )),
        ],
        "",
        &agents,
    );
    let mut api = stack.api();
    let model_used = |index: usize| stack.llm.requests()[index].body["model"].clone();

    let id = id_of(&api.create(create("helper", "Hi")).unwrap());
    assert_eq!(phases(&api.events(&id, 0, None)).last(), Some(&Completed));
    assert_eq!(model_used(0), "scripted");

    let mut request = create("helper", "Hi");
    request.model = "flag-model".into();
    let id = id_of(&api.create(request).unwrap());
    assert_eq!(phases(&api.events(&id, 0, None)).last(), Some(&Completed));
    assert_eq!(model_used(1), "flag-model");

    // The agent's own model wins over --model; Ollama lacks it, and the reason says what to do.
    let mut request = create("pinned", "Hi");
    request.model = "flag-model".into();
    let id = id_of(&api.create(request).unwrap());
    let events = api.events(&id, 0, None);
    assert_eq!(phases(&events), [Pending, Running, Failed]);
    assert_eq!(model_used(2), "llama-missing");
    let reason = reason_of(&events);
    assert!(reason.contains("ollama pull llama-missing"), "{reason}");
    assert_eq!(
        stack.llm.requests().len(),
        3,
        "a missing model is not retried"
    );
}

#[test]
fn a_session_continues_with_its_history_and_workspace_across_restarts() {
    let stack = Stack::start(
        "anthropic",
        vec![
            Turn::text("Nice to meet you, Ada."),
            Turn::tool_call("write_file", json!({"path": "memo.txt", "content": "Ada"})),
            Turn::text("Saved."),
            Turn::text("Your name is Ada."),
        ],
    );
    let mut api = stack.api();
    let first = api.create(create("helper", "My name is Ada.")).unwrap();
    let session = first["spec"]["session"].as_str().unwrap().to_owned();
    assert!(session.starts_with("ses-"), "{first}");
    api.events(&id_of(&first), 0, None);

    let mut request = create("helper", "Write my name down.");
    request.session_id = session.clone();
    let second = api.create(request).unwrap();
    assert_eq!(
        phases(&api.events(&id_of(&second), 0, None)).last(),
        Some(&Completed)
    );

    let restarted = stack.home.run(&["server", "restart"]);
    assert_eq!(restarted.code, 0, "{restarted}");
    let mut api = stack.api();
    let mut request = create("helper", "What is my name?");
    request.session_id = session.clone();
    let third = api.create(request).unwrap();
    assert_eq!(
        phases(&api.events(&id_of(&third), 0, None)).last(),
        Some(&Completed)
    );
    let requests = stack.llm.requests();
    let history = messages_of(&requests[3]);
    for earlier in [
        "My name is Ada.",
        "Nice to meet you, Ada.",
        "Write my name down.",
        "Saved.",
        "What is my name?",
    ] {
        assert!(
            history.contains(earlier),
            "{earlier:?} missing from {history}"
        );
    }
    let memo = stack
        .home
        .path()
        .join("workspace")
        .join(&session)
        .join("memo.txt");
    assert_eq!(std::fs::read_to_string(memo).unwrap(), "Ada");

    // A new execution without a session starts a new one, with no history.
    let fresh = api.create(create("helper", "Hello?")).unwrap();
    assert_ne!(fresh["spec"]["session"], json!(session));
}

/// The execution ids `stigmer execution list -o json` shows, with their phases.
fn listed(home: &TestHome) -> Vec<(String, String)> {
    let outcome = home.run(&["execution", "list", "-o", "json"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let list: Value = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}):\n{outcome}"));
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                id_of(item),
                item["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn stigmer_run_starts_the_stack_streams_the_answer_and_summarises() {
    let stack = Stack::start(
        "ollama",
        vec![
            Turn::tool_call(
                "write_todos",
                json!({"todos": [{"content": "greet", "status": "completed"}]}),
            ),
            Turn::text("Hello from the agent."),
            Turn::text("Second answer."),
        ],
    );
    // `run` starts the daemon when it is not running.
    let stopped = stack.home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    let outcome = stack.home.run(&["run", "helper", "Say hello"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    // The answer alone on stdout; progress, tools, todos and the summary on stderr.
    assert_eq!(outcome.stdout.trim(), "Hello from the agent.", "{outcome}");
    for expected in [
        "running",
        "write_todos",
        "greet",
        "completed in",
        "2 model turns",
        "1 tool call",
        "50 tokens in / 14 out",
    ] {
        assert!(
            outcome.stderr.contains(expected),
            "{expected:?} missing:\n{outcome}"
        );
    }
    let status = stack.home.status();
    assert_eq!(
        TestHome::component(&status, "agent-runner")["state"],
        "running"
    );

    // --json: one event per line, in order, ending with the terminal phase.
    let (outcome, events) = stack.run_json(&["helper", "-m", "Again"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert_eq!(
        printed::phases(&events),
        ["pending", "running", "completed"]
    );
    assert_eq!(printed::text_of(&events), "Second answer.");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let id = events[0]["execution_id"].as_str().unwrap().to_owned();

    // The execution commands see it; watch replays exactly what run printed.
    assert!(listed(&stack.home).contains(&(id.clone(), "completed".to_owned())));
    let got = stack.home.run(&["execution", "get", &id, "-o", "json"]);
    assert_eq!(got.code, 0, "{got}");
    let execution: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(execution["spec"]["message"], "Again");
    let watched = stack.home.run(&["execution", "watch", &id, "--json"]);
    assert_eq!(watched.code, 0, "{watched}");
    assert_eq!(watched.stdout, outcome.stdout);
    let table = stack.home.run(&["get", "executions"]);
    assert_eq!(table.code, 0, "{table}");
    assert!(table.stdout.contains(&id), "{table}");
}

#[test]
fn stigmer_run_exits_1_with_the_reason_and_names_unknown_agents() {
    let agent = format!("{AGENT}  maxTurns: 1\n");
    let stack = Stack::start_with(
        "openai",
        vec![Turn::tool_call("ls", json!({})), Turn::text("never")],
        "",
        &agent,
    );
    let outcome = stack.home.run(&["run", "helper", "Loop"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome.stderr.contains("exceeded 1 model turns"),
        "{outcome}"
    );

    let unknown = stack.home.run(&["run", "helpr", "Hi"]);
    assert_ne!(unknown.code, 0, "{unknown}");
    assert!(
        unknown
            .stderr
            .contains("agent 'helpr' not found (did you mean \"helper\"?)"),
        "{unknown}"
    );
    // Nothing was created for it.
    assert_eq!(listed(&stack.home).len(), 1);

    let no_message = stack.home.run(&["run", "helper"]);
    assert_eq!(no_message.code, 2, "{no_message}");
}

#[test]
fn ctrl_c_cancels_the_run_and_exits_130() {
    let stack = Stack::start("openai", vec![Turn::fault(Fault::Hang)]);
    let child = stack
        .home
        .command(&["run", "helper", "Think forever"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = stigmer_test::ChildGuard(child);
    wait_until(Duration::from_secs(30), "the model call", || {
        (stack.llm.requests().len() == 1).then_some(())
    });
    let interrupted = Instant::now();
    stigmer_test::signal(child.id(), nix::sys::signal::Signal::SIGINT);
    let status = wait_until(Duration::from_secs(15), "run to exit", || {
        child.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(130));
    assert!(
        interrupted.elapsed() < Duration::from_secs(5),
        "{:?}",
        interrupted.elapsed()
    );
    let executions = listed(&stack.home);
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].1, "cancelled");
}

#[test]
fn a_run_started_without_following_can_be_watched_to_its_end() {
    let stack = Stack::start(
        "anthropic",
        vec![Turn::text("Later answer.").with_chunk_delay(Duration::from_millis(50))],
    );
    let started = stack.home.run(&["run", "helper", "Hi", "--no-follow"]);
    assert_eq!(started.code, 0, "{started}");
    let id = started.stdout.trim().to_owned();
    assert!(id.starts_with("aex-"), "{started}");
    let watched = stack.home.run(&["execution", "watch", &id]);
    assert_eq!(watched.code, 0, "{watched}");
    assert_eq!(watched.stdout.trim(), "Later answer.");
    assert!(watched.stderr.contains("completed in"), "{watched}");
    let unknown = stack.home.run(&["execution", "watch", "aex-nope"]);
    assert_ne!(unknown.code, 0, "{unknown}");
    assert!(unknown.stderr.contains("not found"), "{unknown}");
}

#[test]
fn with_temporal_down_a_run_fails_at_once_saying_so() {
    let temporal = stigmer_test::ExternalTemporal::start();
    let llm = ScriptedLlm::start(vec![]);
    let mut home = home();
    home.write_config(&format!(
        "{}llm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
        llm.v1_url()
    ));
    home.set_env("TEMPORAL_ADDRESS", &temporal.address);
    home.start();
    let manifest = home.path().join("agents.yaml");
    std::fs::write(&manifest, AGENT).unwrap();
    assert_eq!(
        home.run(&["apply", "-f", manifest.to_str().unwrap()]).code,
        0
    );
    let address = temporal.address.clone();
    drop(temporal);

    let asked = Instant::now();
    let outcome = home.run(&["run", "helper", "Hi"]);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_ne!(outcome.code, 0, "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "the Temporal workflow engine at {address} is unavailable"
        )),
        "{outcome}"
    );
    assert!(
        listed(&home).is_empty(),
        "nothing is created while Temporal is down"
    );
}
