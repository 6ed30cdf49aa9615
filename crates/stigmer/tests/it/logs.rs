//! `stigmer server logs` against a real stack: every component in time order, the execution
//! filter after real runs, following through rotation, and Ctrl-C.

use crate::home;
use crate::runs::{AGENT, Stack};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stigmer_test::llm::Turn;
use stigmer_test::{ChildGuard, TestHome, wait_until};

const COMPONENTS: [&str; 5] = [
    "daemon",
    "temporal",
    "server",
    "agent-runner",
    "workflow-runner",
];

/// `stigmer server logs ARGS --json`: the exit code and the lines, parsed.
fn logs_json(home: &TestHome, args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["server", "logs", "--json"];
    all.extend_from_slice(args);
    let outcome = home.run(&all);
    let lines = outcome
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}\n{outcome}"))
        })
        .collect();
    (outcome.code, lines)
}

fn assert_in_time_order(lines: &[Value]) {
    for pair in lines.windows(2) {
        let (before, after) = (pair[0]["ts"].as_str(), pair[1]["ts"].as_str());
        assert!(before <= after, "out of order:\n{}\n{}", pair[0], pair[1]);
    }
}

fn messages(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            format!(
                "{} {}",
                line["component"].as_str().unwrap(),
                line["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn every_component_in_time_order_also_when_the_daemon_is_stopped() {
    let home = home();
    home.start();
    // Each component has written something by the time the stack is ready, the API server in
    // its own file although it runs inside the daemon.
    let lines = wait_until(
        Duration::from_secs(10),
        "a line from every component",
        || {
            let (code, lines) = logs_json(&home, &["-n", "all"]);
            assert_eq!(code, 0);
            COMPONENTS
                .iter()
                .all(|component| lines.iter().any(|line| line["component"] == *component))
                .then_some(lines)
        },
    );
    assert_in_time_order(&lines);
    for line in &lines {
        for key in ["ts", "component", "level", "message"] {
            assert!(line.get(key).is_some(), "no {key}: {line}");
        }
    }
    assert!(messages(&lines).contains(&"server API server serving.".to_owned()));

    // Only some components, only warnings and worse: still in order, nothing else.
    let (code, some) = logs_json(&home, &["server", "agent-runner", "-n", "all"]);
    assert_eq!(code, 0);
    assert!(!some.is_empty());
    assert!(
        some.iter()
            .all(|line| line["component"] == "server" || line["component"] == "agent-runner")
    );
    let (_, tail) = logs_json(&home, &["-n", "7"]);
    assert_eq!(tail.len(), 7);

    // Stopped: the files are still there to read, in the human format too.
    let stopped = home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    let (code, after) = logs_json(&home, &["-n", "all"]);
    assert_eq!(code, 0);
    assert!(after.len() > lines.len(), "the stop was logged");
    assert_in_time_order(&after);
    let human = home.run(&["server", "logs", "-n", "3", "daemon"]);
    assert_eq!(human.code, 0, "{human}");
    assert_eq!(human.stdout.lines().count(), 3, "{human}");
    for line in human.stdout.lines() {
        assert!(line.contains(" daemon "), "{line}");
        assert!(!line.contains('\x1b'), "NO_COLOR is set: {line}");
    }

    let unknown = home.run(&["server", "logs", "scheduler"]);
    assert_eq!(unknown.code, 2, "{unknown}");
    assert!(
        unknown
            .stderr
            .contains("daemon, temporal, server, agent-runner, workflow-runner"),
        "{unknown}"
    );
}

#[test]
fn the_execution_filter_shows_one_execution_across_components() {
    let stack = Stack::start(
        "ollama",
        vec![
            Turn::tool_call("ls", json!({})),
            Turn::text("Nothing here."),
            Turn::text("Still nothing."),
        ],
    );
    let execution_id = |args: &[&str]| -> String {
        let (outcome, events) = stack.run_json(args);
        assert_eq!(outcome.code, 0, "{outcome}");
        events[0]["execution_id"].as_str().unwrap().to_owned()
    };
    let first = execution_id(&["helper", "What is here?"]);
    let second = execution_id(&["helper", "And now?"]);
    let lines = wait_until(
        Duration::from_secs(10),
        "the end of the execution in the logs",
        || {
            let (code, lines) = logs_json(&stack.home, &["--execution", &first, "-n", "all"]);
            assert_eq!(code, 0);
            messages(&lines)
                .contains(&"server Execution ended.".to_owned())
                .then_some(lines)
        },
    );
    assert_in_time_order(&lines);
    for line in &lines {
        let tagged = line["execution_id"] == first.as_str() || line["wf-id"] == first.as_str();
        assert!(tagged, "not of {first}: {line}");
    }
    let seen = messages(&lines);
    let expected = [
        "server Execution created.",
        "agent-runner Execution started.",
        "agent-runner Model turn finished.",
        "agent-runner Tool call finished.",
        "agent-runner Model turn finished.",
        "server Execution ended.",
    ];
    let mut position = 0;
    for message in &seen {
        if position < expected.len() && message == expected[position] {
            position += 1;
        }
    }
    assert_eq!(
        position,
        expected.len(),
        "expected {expected:?} in order, got {seen:#?}"
    );
    let turn = lines
        .iter()
        .find(|line| line["message"] == "Model turn finished.")
        .unwrap();
    assert_eq!(turn["turn"], 1);
    assert_eq!(turn["tool_calls"], 1);
    assert_eq!(turn["step"], "model_turn");
    // The other execution has its own slice.
    let (_, others) = logs_json(&stack.home, &["--execution", &second, "-n", "all"]);
    assert!(!others.is_empty());
    assert!(
        others
            .iter()
            .all(|line| line["execution_id"] != first.as_str())
    );
    // Filters combine: only the runner's finished model turns of the first execution.
    let (_, turns) = logs_json(
        &stack.home,
        &[
            "agent-runner",
            "--execution",
            &first,
            "--grep",
            "^Model turn",
            "--level",
            "info",
            "-n",
            "all",
        ],
    );
    assert_eq!(turns.len(), 2, "{turns:#?}");
}

/// `stigmer server logs ARGS` running in the background, its stdout collected.
struct Following {
    child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Following {
    fn start(home: &TestHome, args: &[&str]) -> Following {
        let mut all = vec!["server", "logs"];
        all.extend_from_slice(args);
        let mut child = home
            .command(&all)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        Following {
            child: ChildGuard(child),
            lines,
        }
    }

    fn json(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Ctrl-C, and the exit code.
    fn interrupt(mut self) -> i32 {
        stigmer_test::signal(self.child.id(), nix::sys::signal::Signal::SIGINT);
        let status = self.child.0.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

#[test]
fn following_keeps_time_order_through_rotation_and_stops_on_ctrl_c() {
    // Small files, so the runner's and the server's logs rotate during a run.
    let stack = Stack::start_with(
        "ollama",
        vec![
            Turn::tool_call("ls", json!({})),
            Turn::tool_call("ls", json!({})),
            Turn::tool_call("ls", json!({})),
            Turn::text("Done."),
        ],
        "logs:\n  max_file_bytes: 3000\n  max_files: 3\n",
        AGENT,
    );
    // The last line of history shows that the files are open: from there on nothing is missed.
    let following = Following::start(&stack.home, &["-f", "-n", "1", "--json"]);
    wait_until(Duration::from_secs(10), "the last line of history", || {
        (!following.json().is_empty()).then_some(())
    });
    let (outcome, events) = stack.run_json(&["helper", "Look around."]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let id = events[0]["execution_id"].as_str().unwrap().to_owned();
    let lines = wait_until(
        Duration::from_secs(10),
        "the end of the run while following",
        || {
            let lines = following.json();
            lines
                .iter()
                .any(|line| {
                    line["message"] == "Execution ended." && line["execution_id"] == id.as_str()
                })
                .then_some(lines)
        },
    );
    assert!(
        !stigmer_logs::rotated_paths(&stack.home.path().join("logs/agent-runner.log")).is_empty(),
        "the agent-runner's log should have rotated"
    );
    assert_in_time_order(&lines);
    let of_run: Vec<String> = lines
        .iter()
        .filter(|line| line["execution_id"] == id.as_str())
        .map(|line| line["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        of_run
            .iter()
            .filter(|m| *m == "Tool call finished.")
            .count(),
        3,
        "no line lost through rotation: {of_run:#?}"
    );
    assert_eq!(
        of_run
            .iter()
            .filter(|m| *m == "Model turn finished.")
            .count(),
        4,
        "{of_run:#?}"
    );
    assert_eq!(following.interrupt(), 130);
}

#[test]
fn ctrl_c_stops_a_long_history_at_once() {
    let home = home();
    let logs = home.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    const LINES: usize = 300_000;
    let mut text = String::with_capacity(LINES * 110);
    for n in 0..LINES {
        text.push_str(&format!(
            "{{\"ts\":\"2026-11-23T10:00:00.000Z\",\"component\":\"daemon\",\"level\":\"INFO\",\"message\":\"Line {n} of a long history.\"}}\n"
        ));
    }
    std::fs::write(logs.join("daemon.log"), text).unwrap();

    let mut child = ChildGuard(
        home.command(&["server", "logs", "-n", "all", "--no-color"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    // Printing has begun (and blocks on the full pipe until it is read): interrupt it.
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("Line 0 "), "{first}");
    stigmer_test::signal(child.id(), nix::sys::signal::Signal::SIGINT);
    let printed = 1 + stdout.lines().map_while(Result::ok).count();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        printed < LINES,
        "Ctrl-C should stop the history: {printed} of {LINES} lines printed"
    );
}
