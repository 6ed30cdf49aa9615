//! Built-in tools in a real run: a walk over a link cycle ends, and a cancelled run leaves the
//! agent-runner idle.

use crate::runs::{Stack, create, phases};
use serde_json::json;
use std::time::{Duration, Instant};
use stigmer_proto::execution::ExecutionPhase::{Cancelled, Completed, Pending, Running};
use stigmer_proto::execution::{ExecutionEvent, ToolCallFinished};
use stigmer_proto::executions::v1::CreateExecutionRequest;
use stigmer_test::llm::{Fault, Turn};
use stigmer_test::{TestHome, wait_until};

/// Kernel clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time `pid` has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    // utime and stime: the 14th and 15th fields, counted from the pid.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Resident memory of `pid` in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

#[test]
fn a_glob_over_a_link_cycle_ends_and_a_cancelled_run_leaves_the_runner_idle() {
    let stack = Stack::start(
        "openai",
        vec![
            Turn::text("Ready."),
            Turn::tool_call("glob", json!({"pattern": "**/*"})),
            Turn::fault(Fault::Hang),
        ],
    );
    let mut api = stack.api();
    // A first run creates the session and its workspace …
    let first = api.create(create("helper", "Get ready")).unwrap();
    let first_id = first["metadata"]["name"].as_str().unwrap().to_owned();
    let session = first["spec"]["session"].as_str().unwrap().to_owned();
    assert_eq!(
        phases(&api.events(&first_id, 0, None)),
        [Pending, Running, Completed]
    );
    // … in which the links `a -> .` and `b -> .` make a cycle.
    let workspace = stack.home.path().join("workspace").join(&session);
    std::os::unix::fs::symlink(".", workspace.join("a")).unwrap();
    std::os::unix::fs::symlink(".", workspace.join("b")).unwrap();
    std::fs::write(workspace.join("notes.txt"), "notes\n").unwrap();

    // The second run globs everything, then waits on a model that never answers.
    let second = api
        .create(CreateExecutionRequest {
            session_id: session,
            ..create("helper", "Find every file")
        })
        .unwrap();
    let id = second["metadata"]["name"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(60),
        "the model turn after the glob",
        || (stack.llm.requests().len() == 3).then_some(()),
    );
    let asked = stack.llm.requests()[2].body.to_string();
    assert!(
        asked.contains(r"a\nb\nnotes.txt"),
        "the model must get the glob's answer: {asked}"
    );

    let cancelled = stack.home.run(&["execution", "cancel", &id]);
    assert_eq!(cancelled.code, 0, "{cancelled}");
    let events = api.events(&id, 0, None);
    assert_eq!(phases(&events), [Pending, Running, Cancelled]);
    let glob: Vec<&ToolCallFinished> = events
        .iter()
        .filter_map(|event| match &event.event {
            ExecutionEvent::ToolCallFinished(finished) => Some(finished),
            _ => None,
        })
        .collect();
    assert_eq!(glob.len(), 1, "{events:#?}");
    assert!(!glob[0].is_error, "{events:#?}");

    // Afterwards the runner is idle: under a fifth of a core over a whole second.
    let runner = TestHome::component(&stack.home.status(), "agent-runner")["pid"]
        .as_u64()
        .unwrap() as u32;
    let mut since = (Instant::now(), cpu_ticks(runner));
    let share = wait_until(
        Duration::from_secs(30),
        "the agent-runner to use less than 20 % of a core",
        || {
            let elapsed = since.0.elapsed();
            if elapsed < Duration::from_secs(1) {
                return None;
            }
            let used = (cpu_ticks(runner) - since.1) as f64 / TICKS_PER_SECOND;
            let share = used / elapsed.as_secs_f64();
            since = (Instant::now(), cpu_ticks(runner));
            (share < 0.2).then_some(share)
        },
    );
    assert!(share < 0.2);
    let resident = resident_kib(runner);
    assert!(
        resident < 512 * 1024,
        "the agent-runner holds {resident} KiB"
    );
    let status = stack.home.status();
    assert_eq!(
        TestHome::component(&status, "agent-runner")["restarts"],
        0,
        "{status:#}"
    );
}
