//! Tool calls that wait for approval, end to end: the real binary and Temporal, the scripted
//! LLM (OpenAI's format, whose call ids are `call_<index in the turn>`), decisions from the CLI.

use crate::runs::{Api, Event, Stack};
use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::time::Duration;
use stigmer_proto::execution::{ExecutionEvent, ExecutionPhase};
use stigmer_test::llm::{RecordedRequest, Turn};
use stigmer_test::{Outcome, wait_until};

/// An agent with the shell whose `execute` calls wait for approval (`extra` goes under
/// `approval:`).
fn agent(extra: &str) -> String {
    format!(
        "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  shell:\n    enabled: true\n  approval:\n    tools: [execute]\n{extra}"
    )
}

/// A model turn that calls several tools at once.
fn calls(calls: &[(&str, Value)]) -> Turn {
    Turn {
        tool_calls: calls
            .iter()
            .map(|(name, arguments)| (name.to_string(), arguments.clone()))
            .collect(),
        input_tokens: 30,
        output_tokens: 10,
        ..Turn::default()
    }
}

/// The call with a side effect the tests count: one `x` line per run of the command.
fn count_call() -> (&'static str, Value) {
    ("execute", json!({"command": "echo x >> count.txt"}))
}

fn stack(script: Vec<Turn>, extra: &str) -> Stack {
    Stack::start_with("openai", script, "", &agent(extra))
}

/// `stigmer run helper MESSAGE --no-follow`: the execution's id.
fn start_run(stack: &Stack, message: &str) -> String {
    let outcome = stack.home.run(&["run", "helper", message, "--no-follow"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    outcome.stdout.trim().to_owned()
}

/// Events from the start until the execution waits with `count` calls requested.
fn until_waiting(api: &mut Api, id: &str, count: usize) -> Vec<Event> {
    api.events_until(id, |events| {
        let requested = events
            .iter()
            .filter(|event| matches!(event.event, ExecutionEvent::ApprovalRequested(_)))
            .count();
        requested >= count && phase_is(events, ExecutionPhase::Waiting)
    })
}

/// Events from the start to the execution's end.
fn until_ended(api: &mut Api, id: &str) -> Vec<Event> {
    api.events_until(id, |events| {
        events.iter().any(|event| event.event.is_terminal())
    })
}

/// Whether the last phase change in `events` is to `phase`.
fn phase_is(events: &[Event], phase: ExecutionPhase) -> bool {
    events.iter().rev().find_map(|event| match &event.event {
        ExecutionEvent::PhaseChanged(changed) => Some(changed.phase),
        _ => None,
    }) == Some(phase)
}

fn last_phase(events: &[Event]) -> Option<ExecutionPhase> {
    events.iter().rev().find_map(|event| match &event.event {
        ExecutionEvent::PhaseChanged(changed) => Some(changed.phase),
        _ => None,
    })
}

/// The seq of the first event `matches` accepts.
fn seq_of(events: &[Event], matches: impl Fn(&ExecutionEvent) -> bool) -> Option<u64> {
    events
        .iter()
        .find(|event| matches(&event.event))
        .map(|event| event.seq)
}

/// `stigmer execution get ID -o json`, parsed.
fn execution_json(stack: &Stack, id: &str) -> Value {
    let outcome = stack.home.run(&["execution", "get", id, "-o", "json"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    serde_json::from_str(&outcome.stdout).unwrap_or_else(|error| panic!("{error}: {outcome}"))
}

/// The ids of the calls `execution get` lists as waiting.
fn pending_calls(stack: &Stack, id: &str) -> Vec<String> {
    execution_json(stack, id)["status"]["pendingApprovals"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|call| call["callId"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The stack's one session workspace.
fn workspace(stack: &Stack) -> std::path::PathBuf {
    let sessions: Vec<_> = std::fs::read_dir(stack.home.path().join("workspace"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    sessions[0].clone()
}

/// How many times the counted command ran.
fn runs_of_count_call(stack: &Stack) -> usize {
    std::fs::read_to_string(workspace(stack).join("count.txt"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// The tool results a request to the model carried (OpenAI's shape), in order.
fn tool_results(request: &RecordedRequest) -> Vec<String> {
    request.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn decide(stack: &Stack, args: &[&str]) -> Outcome {
    let mut all = vec!["execution"];
    all.extend_from_slice(args);
    stack.home.run(&all)
}

#[test]
fn a_call_that_needs_approval_waits_while_the_others_of_its_turn_run() {
    let stack = stack(
        vec![
            calls(&[("ls", json!({"path": "."})), count_call()]),
            Turn::text("Counted."),
        ],
        "",
    );
    let mut api = stack.api();
    let id = start_run(&stack, "List and count");
    until_waiting(&mut api, &id, 1);
    // The free call runs at once, while the held one waits (nobody decided anything yet).
    let waiting = api.events_until(&id, |events| {
        events.iter().any(|event| {
            matches!(
                &event.event,
                ExecutionEvent::ToolCallFinished(finished) if finished.name == "ls"
            )
        })
    });
    assert!(
        waiting.iter().any(|event| matches!(
            &event.event,
            ExecutionEvent::ToolCallFinished(finished) if finished.name == "ls" && !finished.is_error
        )),
        "{waiting:#?}"
    );
    assert!(
        !waiting.iter().any(|event| matches!(
            &event.event,
            ExecutionEvent::ToolCallFinished(finished) if finished.name == "execute"
        )),
        "{waiting:#?}"
    );
    assert_eq!(runs_of_count_call(&stack), 0);
    let execution = execution_json(&stack, &id);
    assert_eq!(execution["status"]["phase"], "waiting", "{execution:#}");
    let pending = execution["status"]["pendingApprovals"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{execution:#}");
    assert_eq!(pending[0]["callId"], "call_1");
    assert_eq!(pending[0]["name"], "execute");
    assert_eq!(
        pending[0]["arguments"],
        json!({"command": "echo x >> count.txt"})
    );
    // The table shows it with the commands that decide it.
    let table = stack.home.run(&["execution", "get", &id, "-o", "table"]);
    assert!(table.stdout.contains("WAITING FOR APPROVAL"), "{table}");
    assert!(table.stdout.contains("call_1"), "{table}");

    let approved = decide(&stack, &["approve", &id, "call_1"]);
    assert_eq!(approved.code, 0, "{approved}");
    assert_eq!(
        approved.stdout.trim(),
        "approved execute call_1",
        "{approved}"
    );

    let events = until_ended(&mut api, &id);
    assert_eq!(
        last_phase(&events),
        Some(ExecutionPhase::Completed),
        "{events:#?}"
    );
    assert_eq!(runs_of_count_call(&stack), 1);
    let ls_done = seq_of(&events, |event| {
        matches!(event, ExecutionEvent::ToolCallFinished(finished) if finished.name == "ls")
    })
    .unwrap();
    let decided = seq_of(&events, |event| {
        matches!(event, ExecutionEvent::ApprovalDecided(decided)
            if decided.call_id == "call_1" && decided.approved && decided.by == "user")
    })
    .expect("the decision is in the log");
    let executed = seq_of(&events, |event| {
        matches!(event, ExecutionEvent::ToolCallFinished(finished) if finished.name == "execute")
    })
    .expect("the approved call ran");
    assert!(ls_done < decided && decided < executed, "{events:#?}");
    // Recorded once, though both the server and the runner write it.
    let decisions = events
        .iter()
        .filter(|event| matches!(event.event, ExecutionEvent::ApprovalDecided(_)))
        .count();
    assert_eq!(decisions, 1, "{events:#?}");
    assert!(pending_calls(&stack, &id).is_empty());
}

#[test]
fn a_denial_reaches_the_model_with_its_message_and_the_run_goes_on() {
    let stack = stack(
        vec![calls(&[count_call()]), Turn::text("Understood, not now.")],
        "",
    );
    let mut api = stack.api();
    let id = start_run(&stack, "Count");
    until_waiting(&mut api, &id, 1);
    let denied = decide(&stack, &["deny", &id, "call_0", "--message", "not now"]);
    assert_eq!(denied.code, 0, "{denied}");
    assert_eq!(denied.stdout.trim(), "denied execute call_0", "{denied}");
    let events = until_ended(&mut api, &id);
    assert_eq!(
        last_phase(&events),
        Some(ExecutionPhase::Completed),
        "{events:#?}"
    );
    assert_eq!(runs_of_count_call(&stack), 0);
    let requests = stack.llm.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        tool_results(&requests[1]),
        ["The user denied this call: not now"]
    );
    assert!(events.iter().any(|event| matches!(
        &event.event,
        ExecutionEvent::ApprovalDecided(decided)
            if !decided.approved && decided.message.as_deref() == Some("not now")
    )));
}

#[test]
fn deciding_a_call_that_does_not_wait_fails_saying_which_calls_do() {
    let stack = stack(vec![calls(&[count_call()]), Turn::text("Done.")], "");
    let mut api = stack.api();
    let id = start_run(&stack, "Count");
    until_waiting(&mut api, &id, 1);

    let unknown = decide(&stack, &["approve", &id, "call_7"]);
    assert_eq!(unknown.code, 1, "{unknown}");
    assert!(unknown.stderr.contains("call_7"), "{unknown}");
    assert!(
        unknown
            .stderr
            .contains("the calls that wait: call_0 (execute)"),
        "{unknown}"
    );
    // A message goes with a denial only; calls or --all, one of the two.
    let usage = decide(&stack, &["approve", &id]);
    assert_eq!(usage.code, 2, "{usage}");
    let usage = decide(&stack, &["approve", &id, "call_0", "--all"]);
    assert_eq!(usage.code, 2, "{usage}");
    let missing = decide(&stack, &["approve", "aex-nope", "call_0"]);
    assert_eq!(missing.code, 1, "{missing}");
    assert!(missing.stderr.contains("not found"), "{missing}");
    assert_eq!(runs_of_count_call(&stack), 0);

    let approved = decide(&stack, &["approve", &id, "--all"]);
    assert_eq!(approved.code, 0, "{approved}");
    assert_eq!(
        approved.stdout.trim(),
        "approved execute call_0",
        "{approved}"
    );
    // Twice: the call no longer waits (or the run has ended meanwhile); either way it says so.
    let twice = decide(&stack, &["deny", &id, "call_0"]);
    assert_eq!(twice.code, 1, "{twice}");
    assert!(
        twice.stderr.contains("call_0") || twice.stderr.contains("already ended"),
        "{twice}"
    );
    let events = until_ended(&mut api, &id);
    assert_eq!(
        last_phase(&events),
        Some(ExecutionPhase::Completed),
        "{events:#?}"
    );
    assert_eq!(runs_of_count_call(&stack), 1);
    let nothing = decide(&stack, &["approve", &id, "--all"]);
    assert_eq!(nothing.code, 1, "{nothing}");
}

#[test]
fn an_undecided_call_is_denied_when_its_time_is_up() {
    let stack = stack(
        vec![calls(&[count_call()]), Turn::text("It timed out.")],
        "    timeoutSeconds: 2\n",
    );
    let mut api = stack.api();
    let id = start_run(&stack, "Count");
    let events = until_ended(&mut api, &id);
    assert_eq!(
        last_phase(&events),
        Some(ExecutionPhase::Completed),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|event| matches!(
            &event.event,
            ExecutionEvent::ApprovalDecided(decided)
                if !decided.approved && decided.by == "timeout" && decided.call_id == "call_0"
        )),
        "{events:#?}"
    );
    assert_eq!(runs_of_count_call(&stack), 0);
    let requests = stack.llm.requests();
    assert_eq!(requests.len(), 2);
    let results = tool_results(&requests[1]);
    assert_eq!(results.len(), 1);
    assert!(results[0].contains("approval timed out"), "{results:?}");
    assert!(pending_calls(&stack, &id).is_empty());
}

#[test]
fn a_call_still_waits_after_a_restart_and_runs_once_when_approved() {
    let stack = stack(vec![calls(&[count_call()]), Turn::text("Counted.")], "");
    let id = {
        let mut api = stack.api();
        let id = start_run(&stack, "Count");
        until_waiting(&mut api, &id, 1);
        id
    };
    let stopped = stack.home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    stack.home.start();
    assert_eq!(pending_calls(&stack, &id), ["call_0"]);
    assert_eq!(execution_json(&stack, &id)["status"]["phase"], "waiting");

    let approved = decide(&stack, &["approve", &id, "call_0"]);
    assert_eq!(approved.code, 0, "{approved}");
    let mut api = stack.api();
    let events = until_ended(&mut api, &id);
    assert_eq!(
        last_phase(&events),
        Some(ExecutionPhase::Completed),
        "{events:#?}"
    );
    assert_eq!(runs_of_count_call(&stack), 1);
}

/// A `stigmer` process the test started, killed if the test ends before it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn run_without_a_terminal_prints_the_commands_that_decide_a_call() {
    let stack = stack(vec![calls(&[count_call()]), Turn::text("Counted.")], "");
    let mut command = stack.home.command(&["run", "helper", "Count"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut running = Running(Some(command.spawn().unwrap()));
    // Decided from elsewhere, once it waits.
    let id = wait_until(Duration::from_secs(60), "the execution to exist", || {
        let listed = stack.home.run(&["execution", "list", "-o", "json"]);
        let listed: Value = serde_json::from_str(&listed.stdout).ok()?;
        listed["items"][0]["metadata"]["name"]
            .as_str()
            .map(str::to_owned)
    });
    let mut api = stack.api();
    until_waiting(&mut api, &id, 1);
    let approved = decide(&stack, &["approve", &id, "call_0"]);
    assert_eq!(approved.code, 0, "{approved}");
    let status = wait_until(Duration::from_secs(120), "`stigmer run` to end", || {
        running.0.as_mut().unwrap().try_wait().unwrap()
    });
    // It has ended: what it wrote is in the pipes.
    let output = running.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "{stderr}");
    for command in [
        format!("stigmer execution approve {id} call_0"),
        format!("stigmer execution deny {id} call_0"),
    ] {
        assert_eq!(stderr.matches(&command).count(), 1, "{command}: {stderr}");
    }
    assert!(stderr.contains("waits for approval"), "{stderr}");
    assert!(stderr.contains("approved execute call_0"), "{stderr}");
    assert_eq!(runs_of_count_call(&stack), 1);
}

/// What a process wrote, gathered by a thread as it comes.
fn gather(
    mut from: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let gathered = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let into = gathered.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = from.read(&mut buffer) {
            if read == 0 {
                return;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    });
    gathered
}

#[test]
fn run_on_a_terminal_asks_and_sends_the_answers() {
    // `script` (util-linux) gives `stigmer run` a terminal and passes on what the test types.
    assert!(
        std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok(),
        "no `script` to give the run a terminal: run scripts/setup (it installs bsdutils)"
    );
    let stack = stack(
        vec![
            calls(&[
                ("execute", json!({"command": "echo z >> other.txt"})),
                count_call(),
            ]),
            Turn::text("One of two."),
        ],
        "",
    );
    let run = stack.home.command(&["run", "helper", "Count"]);
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
    let screen = gather(child.stdout.take().unwrap());
    let shown = |text: &str| {
        let text = text.to_owned();
        let screen = screen.clone();
        move || screen.lock().unwrap().contains(&text).then_some(())
    };
    let type_line = |typed: &mut std::process::ChildStdin, text: &str| {
        use std::io::Write;
        typed.write_all(format!("{text}\r").as_bytes()).unwrap();
        typed.flush().unwrap();
    };
    wait_until(
        Duration::from_secs(60),
        "the first question",
        shown(r#"Allow execute {"command":"echo z >> other.txt"}? [y]es / [n]o / [a]ll"#),
    );
    type_line(&mut typed, "n");
    wait_until(
        Duration::from_secs(10),
        "the reason's question",
        shown("Reason for the model"),
    );
    type_line(&mut typed, "too risky");
    wait_until(
        Duration::from_secs(30),
        "the second question",
        shown(r#"Allow execute {"command":"echo x >> count.txt"}?"#),
    );
    type_line(&mut typed, "y");
    wait_until(Duration::from_secs(120), "`stigmer run` to end", || {
        running.0.as_mut().unwrap().try_wait().unwrap()
    });
    let screen = screen.lock().unwrap().clone();
    assert!(screen.contains("One of two."), "{screen}");
    assert_eq!(runs_of_count_call(&stack), 1, "{screen}");
    assert!(!workspace(&stack).join("other.txt").exists(), "{screen}");
    // The model reads both results in call order: the denial with its reason, then the output.
    let results = tool_results(&stack.llm.requests()[1]);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0], "The user denied this call: too risky");
}
