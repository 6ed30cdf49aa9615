//! Sub-agents in real runs: a `task` call runs its sub-agent as a child workflow (an agent
//! execution of its own, in the parent's workspace), and only its answer reaches the parent.

use crate::runs::Stack;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use stigmer_proto::execution::ExecutionEvent;
use stigmer_test::llm::{Fault, Turn};
use stigmer_test::wait_until;

const AGENT: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: lead
spec:
  instructions: You lead the work.
  subAgents:
    - name: researcher
      description: Finds facts.
      instructions: You research, briefly.
    - name: writer
      description: Writes text.
      instructions: You write, briefly.
";

fn task(sub_agent: &str, description: &str) -> (String, Value) {
    (
        "task".to_owned(),
        json!({"subagent": sub_agent, "description": description}),
    )
}

fn calls(calls: Vec<(String, Value)>) -> Turn {
    Turn {
        tool_calls: calls,
        ..Turn::default()
    }
}

/// The chat requests the scripted LLM received, in order.
fn requests(stack: &Stack) -> Vec<String> {
    stack
        .llm
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/chat/completions"))
        .map(|request| request.body.to_string())
        .collect()
}

fn event<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["kind"] == kind)
        .collect()
}

#[test]
fn a_task_call_runs_its_sub_agent_and_only_its_answer_reaches_the_parent() {
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![task("researcher", "Find the answer to everything.")]),
            Turn::text("The answer is 42."),
            Turn::text("Everything is 42, says my researcher."),
        ],
        "",
        AGENT,
    );
    let (outcome, events) = stack.run_json(&["lead", "What is the answer?"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let parent_id = events[0]["execution_id"].as_str().unwrap().to_owned();

    // The parent's log names the sub-agent's execution under the `task` call.
    let started = event(&events, "subagent_started");
    assert_eq!(started.len(), 1, "{events:#?}");
    assert_eq!(started[0]["data"]["name"], "researcher");
    let child_id = started[0]["data"]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(child_id, parent_id);
    let finished = event(&events, "tool_call_finished");
    assert_eq!(finished[0]["data"]["name"], "task");
    assert_eq!(finished[0]["data"]["result"], "The answer is 42.");

    // The child had its own instructions and only the task; the parent read only the answer.
    let seen = requests(&stack);
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert!(seen[1].contains("You research, briefly."), "{}", seen[1]);
    assert!(seen[1].contains("Find the answer to everything."));
    assert!(!seen[1].contains("What is the answer?"), "{}", seen[1]);
    assert!(!seen[1].contains("You lead the work."));
    assert!(
        !seen[1].contains("\"task\""),
        "a sub-agent is offered no task tool"
    );
    assert!(seen[2].contains("The answer is 42."), "{}", seen[2]);
    assert!(!seen[2].contains("You research, briefly."));

    // The child is an execution of its own, with the parent and the call as its parent, in
    // the parent's session; the parent's status lists it.
    let mut api = stack.api();
    let child = api.get(&child_id);
    let parent = api.get(&parent_id);
    assert_eq!(child["spec"]["subAgent"], "researcher", "{child:#}");
    assert_eq!(child["spec"]["parent"]["executionId"], parent_id);
    assert_eq!(child["spec"]["session"], parent["spec"]["session"]);
    assert_eq!(child["status"]["phase"], "completed");
    let runs = parent["status"]["subAgents"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{parent:#}");
    assert_eq!(runs[0]["name"], "researcher");
    assert_eq!(runs[0]["executionId"], child_id);
    assert_eq!(runs[0]["phase"], "completed");
    assert_eq!(runs[0]["answer"], "The answer is 42.");

    // A later run of the session does not read the sub-agent's conversation.
    stack.llm.push([Turn::text("Still 42.")]);
    let session = parent["spec"]["session"].as_str().unwrap();
    let again = stack
        .home
        .run(&["run", "lead", "And again?", "--session", session]);
    assert_eq!(again.code, 0, "{again}");
    let last = requests(&stack).pop().unwrap();
    assert!(last.contains("What is the answer?"), "{last}");
    assert!(
        !last.contains("You research, briefly."),
        "the sub-agent's conversation stays its own: {last}"
    );
}

#[test]
fn two_task_calls_of_one_turn_run_at_the_same_time() {
    let slow = Duration::from_secs(3);
    let answer = |text: &str| Turn {
        fault: Some(Fault::Delay(slow)),
        ..Turn::text(text)
    };
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![
                task("researcher", "Look up the facts."),
                task("writer", "Draft the intro."),
            ]),
            answer("one part"),
            answer("another part"),
            Turn::text("Both parts are in."),
        ],
        "",
        AGENT,
    );
    let began = Instant::now();
    let (outcome, events) = stack.run_json(&["lead", "Write the report."]);
    let took = began.elapsed();
    assert_eq!(outcome.code, 0, "{outcome}");
    assert_eq!(event(&events, "subagent_started").len(), 2);
    // Each sub-agent's model takes 3 s: one after the other would take 6 s.
    assert!(
        took < slow * 2 - Duration::from_millis(500),
        "the two sub-agents took {took:?}: they did not run at the same time"
    );
    let last = requests(&stack).pop().unwrap();
    assert!(
        last.contains("one part") && last.contains("another part"),
        "{last}"
    );
}

#[test]
fn a_sub_agent_that_fails_is_a_tool_error_the_parent_handles() {
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![task("researcher", "Find something.")]),
            Turn::fault(Fault::Status(400, "the model refuses this request".into())),
            Turn::text("My researcher failed, so I answer myself."),
        ],
        "",
        AGENT,
    );
    let (outcome, events) = stack.run_json(&["lead", "Find out."]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let finished = event(&events, "tool_call_finished");
    assert_eq!(finished[0]["data"]["is_error"], true, "{finished:#?}");
    let result = finished[0]["data"]["result"].as_str().unwrap();
    assert!(
        result.starts_with("Error: the sub-agent `researcher` did not finish"),
        "{result}"
    );
    assert!(
        result.contains("the model refuses this request"),
        "{result}"
    );
    let last = requests(&stack).pop().unwrap();
    assert!(last.contains("did not finish"), "{last}");
    let child_id = event(&events, "subagent_started")[0]["data"]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(stack.api().get(&child_id)["status"]["phase"], "failed");
}

#[test]
fn a_bad_task_call_is_explained_to_the_model_and_starts_nothing() {
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![task("painter", "Paint.")]),
            Turn::text("No painter, then."),
        ],
        "",
        AGENT,
    );
    let (outcome, events) = stack.run_json(&["lead", "Paint it."]);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert!(event(&events, "subagent_started").is_empty());
    let last = requests(&stack).pop().unwrap();
    assert!(
        last.contains("there is no sub-agent `painter`; use one of: researcher, writer"),
        "{last}"
    );
}

#[test]
fn cancelling_the_parent_cancels_its_sub_agents_and_leaves_no_process() {
    use crate::agent_tools::{everything_stdio, marked_processes, unique};
    let marker = unique("sub-cancel");
    let manifest = format!(
        "{}apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: lead\nspec:\n  instructions: You lead.\n  subAgents:\n    - name: worker\n      instructions: You work.\n      mcpServers: [everything]\n",
        everything_stdio("everything", &marker, "")
    );
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![task("worker", "Run the long operation.")]),
            calls(vec![(
                "everything__trigger-long-running-operation".to_owned(),
                json!({"duration": 300, "steps": 300}),
            )]),
        ],
        "",
        &manifest,
    );
    let mut api = stack.api();
    let parent = api
        .create(crate::runs::create("lead", "Delegate it"))
        .unwrap();
    let parent_id = parent["metadata"]["name"].as_str().unwrap().to_owned();
    let events = api.events_until(&parent_id, |events| {
        events
            .iter()
            .any(|event| matches!(event.event, ExecutionEvent::SubAgentStarted(_)))
    });
    let child_id = events
        .iter()
        .find_map(|event| match &event.event {
            ExecutionEvent::SubAgentStarted(started) => Some(started.execution_id.clone()),
            _ => None,
        })
        .unwrap();
    api.events_until(&child_id, |events| {
        events
            .iter()
            .any(|event| matches!(event.event, ExecutionEvent::ToolProgress(_)))
    });
    assert!(!marked_processes(&marker).is_empty());
    let cancelled = stack.home.run(&["execution", "cancel", &parent_id]);
    assert_eq!(cancelled.code, 0, "{cancelled}");
    for id in [&parent_id, &child_id] {
        wait_until(Duration::from_secs(15), "the run to be cancelled", || {
            (api.get(id)["status"]["phase"] == "cancelled").then_some(())
        });
    }
    wait_until(
        Duration::from_secs(10),
        "the sub-agent's MCP server to end",
        || marked_processes(&marker).is_empty().then_some(()),
    );
}

#[test]
fn a_runner_killed_while_a_sub_agent_works_loses_nothing_and_repeats_nothing() {
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![task("researcher", "Note the facts.")]),
            Turn::tool_call("write_file", json!({"path": "facts.txt", "content": "42"})),
            Turn::fault(Fault::Hang),
            Turn::text("Noted in facts.txt."),
            Turn::text("The researcher noted the facts."),
        ],
        "",
        AGENT,
    );
    let mut api = stack.api();
    let parent = api
        .create(crate::runs::create("lead", "Get the facts"))
        .unwrap();
    let parent_id = parent["metadata"]["name"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(30),
        "the sub-agent's second model turn",
        || (requests(&stack).len() == 3).then_some(()),
    );
    let runner = stigmer_test::TestHome::component(&stack.home.status(), "agent-runner")["pid"]
        .as_u64()
        .unwrap() as u32;
    stigmer_test::signal(runner, nix::sys::signal::Signal::SIGKILL);

    let events = api.events(&parent_id, 0, None);
    let last_phase = events.iter().rev().find_map(|event| match &event.event {
        ExecutionEvent::PhaseChanged(changed) => Some(changed.phase),
        _ => None,
    });
    assert_eq!(
        last_phase,
        Some(stigmer_proto::execution::ExecutionPhase::Completed),
        "{events:#?}"
    );
    let started: Vec<String> = events
        .iter()
        .filter_map(|event| match &event.event {
            ExecutionEvent::SubAgentStarted(started) => Some(started.execution_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1, "one sub-agent run: {events:#?}");
    let child = api.events(&started[0], 0, None);
    let writes = child
        .iter()
        .filter(|event| matches!(&event.event, ExecutionEvent::ToolCallStarted(call) if call.name == "write_file"))
        .count();
    assert_eq!(writes, 1, "the sub-agent's write ran once");
    // Parent turn 1, sub-agent turns 1, 2 (killed), 2 again, parent turn 2: nothing else.
    let seen = requests(&stack);
    assert_eq!(seen.len(), 5, "{seen:#?}");
    assert!(seen[4].contains("Noted in facts.txt."), "{}", seen[4]);
}

/// A parent that delegates to its researcher, which writes a file and answers.
fn delegating_stack() -> Stack {
    Stack::start_with(
        "openai",
        vec![
            calls(vec![task("researcher", "Note the facts.")]),
            Turn::tool_call("write_file", json!({"path": "facts.txt", "content": "42"})),
            Turn::text("Noted in facts.txt."),
            Turn::text("The researcher noted the facts."),
        ],
        "",
        AGENT,
    )
}

/// The index of the first line at or after `from` that starts with `prefix`.
fn line_at(lines: &[&str], from: usize, prefix: &str, shown: &str) -> usize {
    lines[from..]
        .iter()
        .position(|line| line.starts_with(prefix))
        .map(|index| from + index)
        .unwrap_or_else(|| panic!("no line {prefix:?} after line {from}:\n{shown}"))
}

#[test]
fn run_shows_a_sub_agents_work_under_its_task_call_marked_with_its_name() {
    let stack = delegating_stack();
    let outcome = stack.home.run(&["run", "lead", "Get the facts"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert!(
        outcome.stdout.contains("The researcher noted the facts."),
        "{outcome}"
    );
    let shown = outcome.stderr.as_str();
    let lines: Vec<&str> = shown.lines().collect();
    let call = line_at(&lines, 0, "> task(", shown);
    let started = line_at(
        &lines,
        call,
        "  - sub-agent researcher started (aex-",
        shown,
    );
    let write = line_at(&lines, started, "  [researcher] > write_file(", shown);
    let written = line_at(&lines, write, "  [researcher]   [ok] write_file", shown);
    let answer = line_at(&lines, written, "  [researcher] Noted in facts.txt.", shown);
    line_at(&lines, answer, "  [ok] task: Noted in facts.txt.", shown);
}

#[test]
fn run_json_carries_a_sub_agents_events_naming_their_parent() {
    let stack = delegating_stack();
    let (outcome, events) = stack.run_json(&["lead", "Get the facts"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let parent_id = events[0]["execution_id"].as_str().unwrap().to_owned();
    let started = event(&events, "subagent_started");
    let call_id = started[0]["data"]["call_id"].as_str().unwrap().to_owned();
    let child_id = started[0]["data"]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (own, nested): (Vec<&Value>, Vec<&Value>) = events
        .iter()
        .partition(|event| event["execution_id"] == parent_id.as_str());
    assert!(
        own.iter()
            .all(|event| event.get("parent_execution_id").is_none())
    );
    assert!(!nested.is_empty(), "{events:#?}");
    for event in &nested {
        assert_eq!(event["execution_id"], child_id.as_str(), "{event:#}");
        assert_eq!(
            event["parent_execution_id"],
            parent_id.as_str(),
            "{event:#}"
        );
        assert_eq!(
            event["data"]["parent"],
            json!({"kind": "tool_call", "id": call_id}),
            "{event:#}"
        );
    }
    // The sub-agent's work, all of it (to its end) before the `task` call's result, and the
    // parent's end last.
    let position = |found: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .position(found)
            .unwrap_or_else(|| panic!("{events:#?}"))
    };
    let write = position(&|event| {
        event["execution_id"] == child_id.as_str()
            && event["kind"] == "tool_call_started"
            && event["data"]["name"] == "write_file"
    });
    let child_end = position(&|event| {
        event["execution_id"] == child_id.as_str()
            && event["kind"] == "phase_changed"
            && event["data"]["phase"] == "completed"
    });
    let result = position(&|event| {
        event["execution_id"] == parent_id.as_str()
            && event["kind"] == "tool_call_finished"
            && event["data"]["call_id"] == call_id.as_str()
    });
    assert!(write < child_end && child_end < result, "{events:#?}");
    let last = events.last().unwrap();
    assert_eq!(last["execution_id"], parent_id.as_str());
    assert_eq!(last["data"]["phase"], "completed", "{last:#}");
}

#[test]
fn execution_get_lists_the_sub_agent_runs() {
    let stack = delegating_stack();
    let (outcome, events) = stack.run_json(&["lead", "Get the facts"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let parent_id = events[0]["execution_id"].as_str().unwrap().to_owned();
    let child_id = event(&events, "subagent_started")[0]["data"]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = stack
        .home
        .run(&["execution", "get", &parent_id, "-o", "table"]);
    assert_eq!(got.code, 0, "{got}");
    let lines: Vec<&str> = got.stdout.lines().collect();
    let heading = line_at(&lines, 0, "SUB-AGENTS", &got.stdout);
    let header: Vec<&str> = lines[heading + 1].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "EXECUTION", "PHASE", "DURATION", "ANSWER"],
        "{got}"
    );
    let run: Vec<&str> = lines[heading + 2].split_whitespace().collect();
    assert_eq!(
        &run[..3],
        ["researcher", child_id.as_str(), "completed"],
        "{got}"
    );
    assert!(lines[heading + 2].ends_with("Noted in facts.txt."), "{got}");
}

/// A `stigmer` process the test started, killed if the test ends before it.
struct Running(Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn run_on_a_terminal_asks_about_a_sub_agents_call_and_decides_it_on_its_execution() {
    use crate::agent_tools::{everything_stdio, unique};
    use std::io::{Read, Write};
    use std::process::Stdio;
    // `script` (util-linux) gives `stigmer run` a terminal and passes on what the test types.
    assert!(
        std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok(),
        "no `script` to give the run a terminal: run scripts/setup (it installs bsdutils)"
    );
    let marker = unique("sub-approval");
    let manifest = format!(
        "{}apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: lead\nspec:\n  instructions: You lead.\n  subAgents:\n    - name: worker\n      instructions: You work.\n      mcpServers: [everything]\n",
        everything_stdio("everything", &marker, "  requireApproval: always\n")
    );
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![task("worker", "Echo it.")]),
            Turn::tool_call("everything__echo", json!({"message": "hi"})),
            Turn::text("Echoed hi."),
            Turn::text("The worker echoed."),
        ],
        "",
        &manifest,
    );
    let run = stack.home.command(&["run", "lead", "Echo"]);
    let line = std::iter::once(run.get_program())
        .chain(run.get_args())
        .map(|part| format!("'{}'", part.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-qfec", &line, "/dev/null"]);
    for (name, value) in run.get_envs() {
        match value {
            Some(value) => script.env(name, value),
            None => script.env_remove(name),
        };
    }
    script
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut running = Running(Some(script.spawn().unwrap()));
    let child = running.0.as_mut().unwrap();
    let mut typed = child.stdin.take().unwrap();
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut output = child.stdout.take().unwrap();
    let into = screen.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = output.read(&mut buffer) {
            if read == 0 {
                return;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    });
    let shown = |text: &str| {
        let text = text.to_owned();
        let screen = screen.clone();
        move || screen.lock().unwrap().contains(&text).then_some(())
    };
    wait_until(
        Duration::from_secs(60),
        "the question about the sub-agent's call",
        shown(
            r#"Allow everything__echo {"message":"hi"} (sub-agent worker)? [y]es / [n]o / [a]ll"#,
        ),
    );
    typed.write_all(b"y\r").unwrap();
    typed.flush().unwrap();
    wait_until(Duration::from_secs(120), "`stigmer run` to end", || {
        running.0.as_mut().unwrap().try_wait().unwrap()
    });
    let screen = screen.lock().unwrap().replace('\r', "");
    assert!(screen.contains("The worker echoed."), "{screen}");
    // The call waited under the `task` call, with the commands naming the sub-agent's run.
    let child_id = screen
        .split("sub-agent worker started (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no sub-agent line: {screen}"))
        .to_owned();
    assert!(child_id.starts_with("aex-"), "{screen}");
    assert!(
        screen.contains(&format!(
            "[worker]   approve: stigmer execution approve {child_id} call_0"
        )),
        "{screen}"
    );
    assert!(
        screen.contains("[worker] ✓ approved everything__echo call_0"),
        "{screen}"
    );
    let mut api = stack.api();
    assert_eq!(api.get(&child_id)["status"]["phase"], "completed");
    // The sub-agent's model read the echo's output: the call ran once approved.
    let seen = requests(&stack);
    assert!(seen[2].contains("Echo: hi"), "{}", seen[2]);
}

#[test]
fn the_team_example_applies_and_delegates() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/team.yaml"
    ))
    .unwrap();
    let stack = Stack::start_with(
        "openai",
        vec![
            calls(vec![task("researcher", "List the files.")]),
            Turn::text("There are no files yet."),
            Turn::text("The folder is empty."),
        ],
        "",
        &manifest,
    );
    let (outcome, events) = stack.run_json(&["team-lead", "What is here?"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert_eq!(event(&events, "subagent_started").len(), 1, "{events:#?}");
}

#[test]
fn an_ended_run_replayed_without_a_daemon_shows_its_sub_agents_work() {
    let stack = delegating_stack();
    let (outcome, events) = stack.run_json(&["lead", "Get the facts"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let parent_id = events[0]["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(stack.home.run(&["server", "stop"]).code, 0);

    let watched = stack.home.run(&["execution", "watch", &parent_id]);
    assert_eq!(watched.code, 0, "{watched}");
    let shown = watched.stderr.as_str();
    let lines: Vec<&str> = shown.lines().collect();
    let call = line_at(&lines, 0, "> task(", shown);
    let write = line_at(&lines, call, "  [researcher] > write_file(", shown);
    let answer = line_at(&lines, write, "  [researcher] Noted in facts.txt.", shown);
    line_at(&lines, answer, "  [ok] task: Noted in facts.txt.", shown);

    // The same with --json: the sub-agent's events, naming their parent, before the result.
    let replayed = stack
        .home
        .run(&["execution", "watch", &parent_id, "--json"]);
    assert_eq!(replayed.code, 0, "{replayed}");
    let lines: Vec<Value> = replayed
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let nested: Vec<&Value> = lines
        .iter()
        .filter(|line| line["parent_execution_id"] == parent_id.as_str())
        .collect();
    assert!(!nested.is_empty(), "{lines:#?}");
    assert!(
        nested
            .iter()
            .all(|line| line["data"]["parent"]["kind"] == "tool_call"),
        "{nested:#?}"
    );
}
