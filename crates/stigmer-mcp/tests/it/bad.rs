//! Servers that cannot start: each gives a `ServerFailure` in phase `start`, quickly, with a
//! reason that says what happened, and leaves no process behind.

use std::time::{Duration, Instant};

use stigmer_mcp::{Phase, ServerFailure};

use crate::{command, connect, http_config, stdio_config};

/// Pids whose command line contains `marker` (each test sleeps a unique number of seconds).
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let close = stat.rfind(')')?;
                stat[close + 1..]
                    .split_whitespace()
                    .next()
                    .map(|s| s == "Z")
            })
            .unwrap_or(true);
        if !zombie && cmdline.contains(marker) {
            found.push(pid);
        }
    }
    found
}

async fn assert_gone(marker: &str) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "left behind: {left:?} ({marker})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_stdio(program: &str, args: &[&str], startup: Duration) -> (ServerFailure, Duration) {
    let mut config = stdio_config(
        "bad",
        command(program, args),
        format!("{program} {}", args.join(" ")).trim(),
    );
    config.startup_timeout = startup;
    let started = Instant::now();
    let (connection, _notices) = connect(config).await;
    let failure = connection.expect_err("the start fails");
    assert_eq!(failure.phase, Phase::Start);
    assert_eq!(failure.server, "bad");
    (failure, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_stdout() {
    let (failure, elapsed) = start_stdio(
        "sh",
        &["-c", "echo garbage; exec sleep 1001.25"],
        Duration::from_secs(30),
    )
    .await;
    assert!(failure.reason.contains("`garbage`"), "{failure:?}");
    assert!(failure.reason.contains("not an MCP message"), "{failure:?}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    assert_gone("1001.25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_at_once_with_stderr() {
    let (failure, elapsed) = start_stdio(
        "sh",
        &["-c", "echo boom >&2; exit 3"],
        Duration::from_secs(30),
    )
    .await;
    assert!(failure.reason.contains("boom"), "{failure:?}");
    assert!(failure.reason.contains("exit status: 3"), "{failure:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answers_within_the_startup_timeout() {
    let (failure, elapsed) = start_stdio("sleep", &["1002.5"], Duration::from_secs(2)).await;
    assert!(
        failure
            .reason
            .contains("within 2 s (startupTimeoutSeconds)"),
        "{failure:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert_gone("1002.5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_child_is_killed_with_the_group() {
    // The shell exits at once; the `sleep` it left in the group must not survive.
    let (failure, _) = start_stdio(
        "sh",
        &["-c", "sleep 1003.75 & echo bye >&2; exit 1"],
        Duration::from_secs(10),
    )
    .await;
    assert!(failure.reason.contains("bye"), "{failure:?}");
    assert_gone("1003.75").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command() {
    let (failure, elapsed) =
        start_stdio("stigmer-no-such-mcp-server", &[], Duration::from_secs(30)).await;
    assert!(
        failure
            .reason
            .contains("command not found: `stigmer-no-such-mcp-server`"),
        "{failure:?}"
    );
    assert!(elapsed < Duration::from_secs(1));
}

/// An HTTP server answering everything with `status` and an HTML page.
async fn html_server(status: u16) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::from_u16(status).unwrap(),
            [("content-type", "text/html")],
            "<html><body>Hello</body></html>",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}/mcp"), task)
}

async fn start_http(url: &str) -> (ServerFailure, Duration) {
    let started = Instant::now();
    let (connection, _notices) = connect(http_config("web", url, Vec::new())).await;
    let failure = connection.expect_err("the start fails");
    assert_eq!(failure.phase, Phase::Start);
    (failure, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_404() {
    let (url, server) = html_server(404).await;
    let (failure, elapsed) = start_http(&url).await;
    assert!(failure.reason.contains("404"), "{failure:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_html_page() {
    let (url, server) = html_server(200).await;
    let (failure, elapsed) = start_http(&url).await;
    assert!(
        failure.reason.contains("did not answer like an MCP server"),
        "{failure:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_closed_port() {
    let port = stigmer_test::free_port();
    let (failure, elapsed) = start_http(&format!("http://127.0.0.1:{port}/mcp")).await;
    assert!(failure.reason.contains("cannot connect"), "{failure:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}
