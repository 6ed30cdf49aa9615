//! server-everything over streamable HTTP.

use std::time::{Duration, Instant};

use serde_json::json;
use stigmer_mcp::{Notice, Phase};
use stigmer_test::mcp::EverythingHttp;

use crate::{Recorder, connect, http_config, no_progress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_echoes_and_times_out_over_http() {
    let server = EverythingHttp::start();
    let mut config = http_config("remote", &server.url(), Vec::new());
    config.tool_timeout = Duration::from_millis(1500);
    let (connection, _notices) = connect(config).await;
    let connection = connection.expect("server-everything over HTTP starts");
    assert!(connection.pid().is_none());
    let names: Vec<&str> = connection.tools().iter().map(|t| t.name.as_str()).collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );
    assert!(connection.instructions().is_some());

    let outcome = connection
        .call("echo", json!({"message": "over http"}), &no_progress)
        .await;
    assert_eq!(outcome.text, "Echo: over http");
    assert!(!outcome.is_error);

    let recorder = Recorder::default();
    let callback = recorder.callback();
    let outcome = connection
        .call(
            "trigger-long-running-operation",
            json!({"duration": 3, "steps": 3}),
            &callback,
        )
        .await;
    assert!(!outcome.is_error, "{outcome:?}");
    assert!(recorder.seen().len() >= 2, "{:?}", recorder.seen());

    let started = Instant::now();
    let outcome = connection
        .call(
            "trigger-long-running-operation",
            json!({"duration": 5, "steps": 1}),
            &no_progress,
        )
        .await;
    assert!(outcome.is_error, "{outcome:?}");
    assert!(
        outcome
            .text
            .contains("did not answer within 1.5 s (toolTimeoutSeconds)"),
        "{}",
        outcome.text
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    let outcome = connection
        .call(
            "echo",
            json!({"message": "after the timeout"}),
            &no_progress,
        )
        .await;
    assert_eq!(outcome.text, "Echo: after the timeout");

    let started = Instant::now();
    connection.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_reported() {
    let server = EverythingHttp::start();
    let (connection, mut notices) = connect(http_config("remote", &server.url(), Vec::new())).await;
    let connection = connection.expect("server-everything over HTTP starts");
    drop(server);

    let outcome = connection
        .call("echo", json!({"message": "anyone?"}), &no_progress)
        .await;
    assert!(outcome.is_error, "{outcome:?}");
    assert!(
        outcome
            .text
            .starts_with("the MCP server `remote` is not running: "),
        "{}",
        outcome.text
    );
    let failure = loop {
        let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
            .await
            .expect("a notice within 5 s")
            .expect("the channel is open");
        if let Notice::Failed(failure) = notice {
            break failure;
        }
    };
    assert_eq!(failure.phase, Phase::Call);
    assert!(!connection.is_alive());
    connection.close().await;
}
