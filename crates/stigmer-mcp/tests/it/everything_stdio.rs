//! server-everything over stdio (`node <script> stdio`).

use std::time::{Duration, Instant};

use serde_json::json;
use stigmer_mcp::{INSTRUCTIONS_LIMIT, Notice, Phase, ServerConfig};
use stigmer_test::mcp::everything_script;

use crate::{
    Recorder, command, connect, group_members, no_progress, stdio_config, wait_group_gone,
};

fn everything(name: &str) -> ServerConfig {
    let script = everything_script();
    let mut command = command("node", &[]);
    command
        .arg(&script)
        .arg("stdio")
        .env("STIGMER_MCP_TEST_MARK", "mark-7f3a");
    stdio_config(name, command, &format!("node {} stdio", script.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_tools_calls_them_and_closes_the_group() {
    let (connection, _notices) = connect(everything("everything")).await;
    let connection = connection.expect("server-everything starts");
    assert_eq!(connection.name(), "everything");
    assert!(connection.is_alive());

    let names: Vec<&str> = connection.tools().iter().map(|t| t.name.as_str()).collect();
    for expected in [
        "echo",
        "get-sum",
        "get-env",
        "get-structured-content",
        "get-tiny-image",
        "trigger-long-running-operation",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // Sampling and elicitation tools appear only for clients declaring those capabilities.
    assert!(!names.iter().any(|n| n.contains("sampling")), "{names:?}");
    let echo = connection
        .tools()
        .iter()
        .find(|t| t.name == "echo")
        .unwrap();
    assert_eq!(echo.input_schema["type"], "object");

    let instructions = connection
        .instructions()
        .expect("server-everything has instructions");
    assert!(!instructions.is_empty());
    assert!(instructions.len() <= INSTRUCTIONS_LIMIT + '…'.len_utf8());

    let outcome = connection
        .call("echo", json!({"message": "hello"}), &no_progress)
        .await;
    assert!(!outcome.is_error, "{outcome:?}");
    assert_eq!(outcome.text, "Echo: hello");

    let outcome = connection
        .call(
            "get-structured-content",
            json!({"location": "Chicago"}),
            &no_progress,
        )
        .await;
    assert!(!outcome.is_error, "{outcome:?}");
    let value: serde_json::Value = serde_json::from_str(&outcome.text).expect("compact JSON");
    assert!(value["temperature"].is_number(), "{value}");
    assert!(!outcome.text.contains('\n'));

    let outcome = connection
        .call("get-tiny-image", json!({}), &no_progress)
        .await;
    assert!(!outcome.is_error, "{outcome:?}");
    // The image is kept aside for the model; the text around it stays.
    assert_eq!(
        outcome.text,
        "Here's the image you requested:\nThe image above is the MCP logo."
    );
    assert_eq!(outcome.images.len(), 1, "{outcome:?}");
    assert_eq!(outcome.images[0].mime_type, "image/png");
    assert!(outcome.images[0].data.starts_with("iVBORw0KGgo"));

    let outcome = connection.call("get-env", json!({}), &no_progress).await;
    assert!(outcome.text.contains("mark-7f3a"), "{}", outcome.text);

    let outcome = connection
        .call("no-such-tool", json!({}), &no_progress)
        .await;
    assert!(outcome.is_error, "{outcome:?}");
    assert!(outcome.text.contains("no-such-tool"), "{}", outcome.text);

    let outcome = connection.call("echo", json!([1, 2]), &no_progress).await;
    assert!(
        outcome.is_error && outcome.text.contains("JSON object"),
        "{outcome:?}"
    );

    let pgid = connection.pid().expect("a stdio server has a pid");
    assert!(!group_members(pgid).is_empty());
    let started = Instant::now();
    connection.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "close took {:?}",
        started.elapsed()
    );
    wait_group_gone(pgid, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_keeps_a_slow_call_alive() {
    let mut config = everything("everything");
    config.tool_timeout = Duration::from_millis(1500);
    let (connection, _notices) = connect(config).await;
    let connection = connection.expect("server-everything starts");
    let recorder = Recorder::default();
    let callback = recorder.callback();
    let started = Instant::now();
    let outcome = connection
        .call(
            "trigger-long-running-operation",
            json!({"duration": 3, "steps": 3}),
            &callback,
        )
        .await;
    assert!(!outcome.is_error, "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    let seen = recorder.seen();
    assert!(seen.len() >= 2, "progress seen: {seen:?}");
    assert_eq!(seen[0].total, Some(3.0));
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_progress_times_out_and_the_connection_stays_usable() {
    let mut config = everything("slow");
    config.tool_timeout = Duration::from_millis(800);
    let (connection, _notices) = connect(config).await;
    let connection = connection.expect("server-everything starts");
    let started = Instant::now();
    let outcome = connection
        .call(
            "trigger-long-running-operation",
            json!({"duration": 5, "steps": 1}),
            &no_progress,
        )
        .await;
    let elapsed = started.elapsed();
    assert!(outcome.is_error, "{outcome:?}");
    assert_eq!(
        outcome.text,
        "`trigger-long-running-operation` on MCP server `slow` did not answer within 0.8 s \
         (toolTimeoutSeconds); the call was cancelled"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "timed out after {elapsed:?}"
    );

    let outcome = connection
        .call("echo", json!({"message": "still here"}), &no_progress)
        .await;
    assert_eq!(outcome.text, "Echo: still here");
    assert!(connection.is_alive());
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_tools_are_filtered_in_server_order() {
    let mut config = everything("everything");
    config.enabled_tools = Some(vec!["get-sum".to_owned(), "echo".to_owned()]);
    let (connection, _notices) = connect(config).await;
    let connection = connection.expect("server-everything starts");
    let names: Vec<&str> = connection.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["echo", "get-sum"]);
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_connection_kills_its_group() {
    let (connection, _notices) = connect(everything("everything")).await;
    let connection = connection.expect("server-everything starts");
    let pgid = connection.pid().unwrap();
    drop(connection);
    wait_group_gone(pgid, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_is_reported_once() {
    let (connection, mut notices) = connect(everything("fragile")).await;
    let connection = connection.expect("server-everything starts");
    let pgid = connection.pid().unwrap();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_group_gone(pgid, Duration::from_secs(5)).await;

    let outcome = connection
        .call("echo", json!({"message": "anyone?"}), &no_progress)
        .await;
    assert!(outcome.is_error, "{outcome:?}");
    assert!(
        outcome
            .text
            .starts_with("the MCP server `fragile` is not running: "),
        "{}",
        outcome.text
    );
    assert!(!connection.is_alive());

    let failure = loop {
        let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
            .await
            .expect("a notice within 5 s")
            .expect("the channel is open");
        if let Notice::Failed(failure) = notice {
            break failure;
        }
    };
    assert_eq!(failure.server, "fragile");
    assert_eq!(failure.phase, Phase::Call);
    assert!(
        failure.reason.contains("SIGKILL") || failure.reason.contains("signal"),
        "{failure:?}"
    );

    // A second call reports the same death without a second notice.
    let again = connection.call("echo", json!({}), &no_progress).await;
    assert!(again.is_error && again.text.contains("is not running"));
    assert!(
        !std::iter::from_fn(|| notices.try_recv().ok())
            .any(|notice| matches!(notice, Notice::Failed(_))),
        "a second Failed notice"
    );
    connection.close().await;
}
