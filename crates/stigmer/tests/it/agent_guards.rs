//! What keeps a run within bounds: loop detection (the same call again and again) and context
//! compaction (a conversation that outgrows the model's window), in real runs.

use crate::runs::Stack;
use serde_json::{Value, json};
use std::time::Duration;
use stigmer_test::llm::Turn;

const SUMMARY_NEEDLE: &str = "You summarize the conversation";

fn agent(extra: &str) -> String {
    format!(
        "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n{extra}"
    )
}

/// The chat requests the scripted LLM received, without the runner's summarizing calls.
fn model_turns(stack: &Stack) -> Vec<Value> {
    stack
        .llm
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/chat/completions"))
        .map(|request| request.body)
        .filter(|body| !body.to_string().contains(SUMMARY_NEEDLE))
        .collect()
}

/// The text of the tool results of a request, in order.
fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_same_call_is_warned_from_the_third_time_and_ends_the_run_at_the_fifth() {
    let same = || Turn::tool_call("ls", json!({"path": "."}));
    let stack = Stack::start_with(
        "openai",
        vec![same(), same(), same(), same(), same(), Turn::text("never")],
        "",
        &agent(""),
    );
    let (outcome, events) = stack.run_json(&["helper", "look around"]);
    assert_ne!(outcome.code, 0, "{outcome}");
    let finished = events
        .iter()
        .filter(|event| event["kind"] == "tool_call_finished")
        .count();
    assert_eq!(finished, 4, "the fifth identical call does not run");
    let failed = events
        .iter()
        .rev()
        .find(|event| event["kind"] == "phase_changed")
        .unwrap();
    assert_eq!(failed["data"]["phase"], "failed", "{failed}");
    assert_eq!(
        failed["data"]["reason"], "loop detected: ls called 5 times with the same arguments",
        "{failed}"
    );
    // Requests 2..5 carry 1..4 results; the third and fourth are warned, the first two not.
    let turns = model_turns(&stack);
    assert_eq!(turns.len(), 5, "five model turns asked for the five calls");
    let results = tool_results(&turns[4]);
    assert_eq!(results.len(), 4);
    for (n, result) in results.iter().enumerate() {
        let warned = result.contains("times in a row with the same arguments");
        assert_eq!(warned, n >= 2, "result {}: {result}", n + 1);
    }
    assert!(results[2].contains("called 3 times"), "{}", results[2]);
    assert!(results[3].contains("called 4 times"), "{}", results[3]);
}

#[test]
fn a_conversation_that_outgrows_a_small_window_is_compacted_and_never_split() {
    // Each turn writes a file of 5,000 characters (about 1,250 tokens in its arguments); a
    // 4,096-token window holds about two of them.
    let write = |name: &str| {
        Turn::tool_call(
            "write_file",
            json!({"path": name, "content": format!("{name} ").repeat(1000)}),
        )
    };
    let stack = Stack::start_with(
        "openai",
        vec![
            write("a.txt"),
            write("b.txt"),
            write("c.txt"),
            write("d.txt"),
            Turn::text("All four files are written."),
        ],
        "",
        &agent("  model:\n    contextWindow: 4096\n"),
    );
    stack.llm.answer_when(
        SUMMARY_NEEDLE,
        "SUMMARY: the user asked for files; a.txt and b.txt are written.",
    );
    let (outcome, events) = stack.run_json(&["helper", "write the four files"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let compacted: Vec<&Value> = events
        .iter()
        .filter(|event| event["kind"] == "context_compacted")
        .collect();
    assert!(!compacted.is_empty(), "no compaction: {events:#?}");
    let first = &compacted[0]["data"];
    assert!(first["messages"].as_u64().unwrap() >= 2, "{first}");
    assert!(
        first["tokens_after"].as_u64().unwrap() < first["tokens_before"].as_u64().unwrap(),
        "{first}"
    );
    assert_eq!(first["window"], 4096);
    let execution_id = events[0]["execution_id"].as_str().unwrap();
    assert_eq!(
        first["history_path"],
        format!(".stigmer/history/{execution_id}.md")
    );

    // The whole history is in the workspace, the user's message and the first call included.
    let workspace = std::fs::read_dir(stack.home.path().join("workspace"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let history =
        std::fs::read_to_string(workspace.join(first["history_path"].as_str().unwrap())).unwrap();
    assert!(history.contains("write the four files"), "{history}");
    assert!(history.contains("a.txt"), "{history}");

    // The summarizing call was made, and the model turns after it read the summary, which
    // names the history file; every request stays under the window (a token being about four
    // characters of the request) and keeps each tool result with the call that asked for it.
    let summaries = stack
        .llm
        .requests()
        .into_iter()
        .filter(|request| request.body.to_string().contains(SUMMARY_NEEDLE))
        .count();
    assert!(summaries >= 1);
    let turns = model_turns(&stack);
    assert_eq!(turns.len(), 5, "{turns:#?}");
    let last = turns.last().unwrap().to_string();
    assert!(last.contains("SUMMARY: the user asked for files"), "{last}");
    assert!(last.contains(".stigmer/history/"), "{last}");
    assert!(
        last.contains("write the four files"),
        "the last user message is kept"
    );
    for (n, request) in turns.iter().enumerate() {
        let messages = request["messages"].as_array().unwrap();
        let size = serde_json::to_string(messages).unwrap().len()
            + serde_json::to_string(&request["tools"]).unwrap().len();
        assert!(size / 4 < 4096, "request {n} is {size} bytes");
        for (index, message) in messages.iter().enumerate() {
            if message["role"] != "tool" {
                continue;
            }
            let id = &message["tool_call_id"];
            let asked = messages[..index].iter().any(|earlier| {
                earlier["tool_calls"]
                    .as_array()
                    .is_some_and(|calls| calls.iter().any(|call| &call["id"] == id))
            });
            assert!(asked, "request {n}: the result {id} lost its call");
        }
    }
}

#[test]
fn a_runner_killed_while_a_call_waits_for_approval_asks_once_and_runs_it_once() {
    use stigmer_proto::execution::{ExecutionEvent, ExecutionPhase};
    use stigmer_test::wait_until;
    let stack = Stack::start_with(
        "openai",
        vec![
            Turn::tool_call("execute", json!({"command": "echo x >> count.txt"})),
            Turn::text("Counted."),
        ],
        "",
        &agent("  shell:\n    enabled: true\n  approval:\n    tools: [execute]\n"),
    );
    let mut api = stack.api();
    let created = api
        .create(crate::runs::create("helper", "Count once"))
        .unwrap();
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    let waiting = |events: &[crate::runs::Event]| {
        events.iter().any(|event| {
            matches!(&event.event, ExecutionEvent::PhaseChanged(changed)
                if changed.phase == ExecutionPhase::Waiting)
        })
    };
    api.events_until(&id, waiting);
    let runner = stigmer_test::TestHome::component(&stack.home.status(), "agent-runner")["pid"]
        .as_u64()
        .unwrap() as u32;
    stigmer_test::signal(runner, nix::sys::signal::Signal::SIGKILL);
    // A new runner takes over (the supervisor restarts it); the call still waits.
    wait_until(
        Duration::from_secs(30),
        "the agent runner's restart",
        || {
            let status = stack.home.status();
            let component = stigmer_test::TestHome::component(&status, "agent-runner");
            (component["restarts"] == 1 && component["state"] == "running").then_some(())
        },
    );
    assert_eq!(
        api.get(&id)["status"]["pendingApprovals"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let approved = stack.home.run(&["execution", "approve", &id, "--all"]);
    assert_eq!(approved.code, 0, "{approved}");
    let events = api.events(&id, 0, None);
    let requested = events
        .iter()
        .filter(|event| matches!(event.event, ExecutionEvent::ApprovalRequested(_)))
        .count();
    assert_eq!(requested, 1, "asked once: {events:#?}");
    let last = events.iter().rev().find_map(|event| match &event.event {
        ExecutionEvent::PhaseChanged(changed) => Some(changed.phase),
        _ => None,
    });
    assert_eq!(last, Some(ExecutionPhase::Completed), "{events:#?}");
    let workspace = std::fs::read_dir(stack.home.path().join("workspace"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(workspace.join("count.txt")).unwrap(),
        "x\n",
        "the approved call ran exactly once"
    );
}

#[test]
fn a_sub_agent_that_loops_fails_alone_and_its_parent_reads_why() {
    let same = || Turn::tool_call("ls", json!({"path": "."}));
    let stack = Stack::start_with(
        "openai",
        vec![
            Turn {
                tool_calls: vec![(
                    "task".to_owned(),
                    json!({"subagent": "looper", "description": "Look around."}),
                )],
                ..Turn::default()
            },
            same(),
            same(),
            same(),
            same(),
            same(),
            Turn::text("The sub-agent got stuck; I stop here."),
        ],
        "",
        &agent("  subAgents:\n    - name: looper\n      instructions: You look.\n"),
    );
    let (outcome, events) = stack.run_json(&["helper", "Have a look"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let result = events
        .iter()
        .find(|event| event["kind"] == "tool_call_finished" && event["data"]["name"] == "task")
        .map(|event| event["data"]["result"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(
        result.ends_with("loop detected: ls called 5 times with the same arguments"),
        "{result}"
    );
}

#[test]
fn a_call_that_waits_for_approval_shows_its_arguments_with_secrets_masked() {
    use stigmer_proto::execution::{ExecutionEvent, ExecutionPhase};
    let stack = Stack::start_with(
        "openai",
        vec![
            Turn::tool_call(
                "execute",
                json!({"command": "curl -H 'token: s3cr3t-value' example.invalid"}),
            ),
            Turn::text("Denied, then."),
        ],
        "",
        &agent("  shell:\n    enabled: true\n  approval:\n    tools: [execute]\n"),
    );
    let started = stack.home.run(&[
        "run",
        "helper",
        "Fetch it",
        "--secret",
        "TOKEN=s3cr3t-value",
        "--no-follow",
    ]);
    assert_eq!(started.code, 0, "{started}");
    let id = started.stdout.trim().to_owned();
    let mut api = stack.api();
    let events = api.events_until(&id, |events| {
        events.iter().any(|event| {
            matches!(&event.event, ExecutionEvent::PhaseChanged(changed)
                if changed.phase == ExecutionPhase::Waiting)
        })
    });
    let requested = events
        .iter()
        .find_map(|event| match &event.event {
            ExecutionEvent::ApprovalRequested(requested) => Some(requested.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        requested.arguments["command"],
        "curl -H 'token: ****' example.invalid"
    );
    assert_eq!(
        requested.reason,
        "the agent's spec.approval.tools lists `execute`"
    );
    let status = api.get(&id);
    let pending = &status["status"]["pendingApprovals"][0];
    assert_eq!(
        pending["arguments"]["command"],
        "curl -H 'token: ****' example.invalid"
    );
    let shown = stack.home.run(&["execution", "get", &id]);
    assert!(!shown.stdout.contains("s3cr3t"), "{shown}");
    let denied = stack.home.run(&["execution", "deny", &id, "--all"]);
    assert_eq!(denied.code, 0, "{denied}");
}
