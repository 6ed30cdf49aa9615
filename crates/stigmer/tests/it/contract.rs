//! The runner launch contract as the real runner binary enforces it.

use std::process::{Command, Stdio};

/// Runs the agent runner with exactly `env` (plus PATH).
fn run_runner(env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stigmer"));
    command
        .args(["internal", "agent-runner"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("cannot run the runner")
}

fn runner(env: &[(&str, &str)]) -> (i32, String) {
    let output = run_runner(env);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn complete_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("STIGMER_RUNNER_ROLE", "agent"),
        ("STIGMER_HOME", "/tmp/stigmer-contract-test"),
        // Nothing listens on port 1, so a runner that accepted this environment would fail
        // later with a connection error, not with a refusal.
        ("STIGMER_TEMPORAL_ADDRESS", "127.0.0.1:1"),
        ("STIGMER_TEMPORAL_NAMESPACE", "default"),
        ("STIGMER_TASK_QUEUE", "agent_execution_runner"),
        ("STIGMER_WORKER_IDENTITY", "agent-runner@test"),
        ("STIGMER_API_ENDPOINT", "http://127.0.0.1:1"),
        ("STIGMER_API_TOKEN", "secret-token-value"),
        (
            "STIGMER_WORKSPACE_DIR",
            "/tmp/stigmer-contract-test/workspace",
        ),
        ("STIGMER_LOG", "info"),
        ("STIGMER_LLM_PROVIDER", "ollama"),
        ("STIGMER_LLM_MODEL", "qwen2.5-coder:7b"),
        ("STIGMER_LLM_BASE_URL", "http://127.0.0.1:1"),
        ("STIGMER_OPENAI_API_KEY", "sk-openai-secret"),
    ]
}

#[test]
fn a_runner_refuses_a_missing_variable_and_names_it() {
    let env: Vec<_> = complete_env()
        .into_iter()
        .filter(|(name, _)| *name != "STIGMER_TASK_QUEUE")
        .collect();
    let (code, stderr) = runner(&env);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("STIGMER_TASK_QUEUE is missing"), "{stderr}");
}

#[test]
fn a_runner_refuses_an_unknown_variable_and_names_it() {
    let mut env = complete_env();
    // The original system's daemon wrote this name while its runner read another one.
    env.push(("STIGMER_BACKEND_URL", "http://localhost:7234"));
    let (code, stderr) = runner(&env);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("STIGMER_BACKEND_URL"), "{stderr}");
    assert!(
        stderr.contains("not part of the runner launch contract"),
        "{stderr}"
    );
}

#[test]
fn a_runner_refuses_the_wrong_role() {
    let mut env = complete_env();
    env[0] = ("STIGMER_RUNNER_ROLE", "workflow");
    let (code, stderr) = runner(&env);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("STIGMER_RUNNER_ROLE"), "{stderr}");
}

#[test]
fn a_runner_with_a_complete_environment_logs_its_configuration_without_secrets() {
    let output = run_runner(&complete_env());
    let stdout = String::from_utf8_lossy(&output.stdout);
    // It accepted the contract, logged its configuration, then failed to reach Temporal.
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {stdout}"));
    assert_eq!(first["message"], "Runner starting.");
    assert_eq!(first["component"], "agent-runner");
    assert!(first["config"].as_str().unwrap().contains("127.0.0.1:1"));
    assert!(!stdout.contains("secret-token-value"), "{stdout}");
    assert!(!stdout.contains("sk-openai-secret"), "{stdout}");
    assert!(stdout.contains("cannot connect to Temporal"), "{stdout}");
}
