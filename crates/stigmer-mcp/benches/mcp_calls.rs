//! MCP tool calls against `@modelcontextprotocol/server-everything` (installed by
//! `scripts/setup`), over stdio and over streamable HTTP:
//!
//! - one `echo` call through [`Connection::call`] and, in the same run on a second connection
//!   to the same kind of server, through a plain `rmcp` client (`().serve(transport)`,
//!   `call_tool`): the difference is what our facade adds to the round trip (the timeouts,
//!   progress routing, cancellation guard and rendering of the result). The two are called
//!   alternately, so that both see the same machine;
//! - a server's start until its tools are listed: `Connection::connect` over stdio (spawn,
//!   handshake, `tools/list`) and over HTTP (a running server), each next to the same with
//!   plain rmcp; and `Connection::close` of a stdio server (what the last turn of a run waits
//!   for).
//!
//! `cargo bench -p stigmer-mcp --bench mcp_calls` (CALLS=500 calls after 50 of warm-up,
//! STARTS=10 starts by default).

use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::json;
use stigmer_mcp::{Connection, Notice, Progress, ServerConfig, Transport};
use stigmer_test::mcp::{EverythingHttp, everything_script};
use tokio::sync::mpsc;

const WARM_UP: usize = 50;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `node <server-everything> stdio` the way the runner prepares a command: a scrubbed
/// environment and a process group of its own.
fn node_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(everything_script())
        .arg("stdio")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".to_owned()),
        )
        .process_group(0);
    command
}

fn config(name: &str, transport: Transport) -> ServerConfig {
    ServerConfig {
        name: name.to_owned(),
        transport,
        enabled_tools: None,
        startup_timeout: Duration::from_secs(30),
        tool_timeout: Duration::from_secs(30),
    }
}

fn stdio_transport() -> Transport {
    Transport::Stdio {
        command: node_command(),
        display: "node server-everything stdio".to_owned(),
    }
}

fn http_transport(url: &str) -> Transport {
    Transport::Http {
        url: url.to_owned(),
        headers: Vec::new(),
    }
}

/// Our facade's connection; its notices are dropped.
async fn connect(config: ServerConfig) -> Connection {
    let (notices, _) = mpsc::unbounded_channel::<Notice>();
    let connection = Connection::connect(config, notices)
        .await
        .expect("server-everything starts");
    assert!(connection.tools().iter().any(|tool| tool.name == "echo"));
    connection
}

type Plain = RunningService<RoleClient, ()>;

/// A plain rmcp client over stdio (stderr dropped, like ours keeps only a tail).
async fn plain_stdio() -> Plain {
    let (transport, _) = TokioChildProcess::builder(node_command())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    ().serve(transport).await.expect("rmcp handshake")
}

async fn plain_http(url: &str) -> Plain {
    ().serve(StreamableHttpClientTransport::from_uri(url.to_owned()))
        .await
        .expect("rmcp handshake over HTTP")
}

fn no_progress(_: Progress) {}

async fn call_ours(connection: &Connection) -> Duration {
    let started = Instant::now();
    let outcome = connection
        .call("echo", json!({"message": "bench"}), &no_progress)
        .await;
    let elapsed = started.elapsed();
    assert!(
        !outcome.is_error && outcome.text == "Echo: bench",
        "{outcome:?}"
    );
    elapsed
}

async fn call_plain(plain: &Plain) -> Duration {
    let started = Instant::now();
    let arguments = json!({"message": "bench"}).as_object().cloned().unwrap();
    let result = plain
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await
        .expect("rmcp call_tool");
    let elapsed = started.elapsed();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    elapsed
}

/// Alternates calls through ours and through plain rmcp; returns both series (milliseconds).
async fn alternate(connection: &Connection, plain: &Plain, calls: usize) -> (Vec<f64>, Vec<f64>) {
    for _ in 0..WARM_UP {
        call_ours(connection).await;
        call_plain(plain).await;
    }
    let mut ours = Vec::with_capacity(calls);
    let mut direct = Vec::with_capacity(calls);
    for i in 0..calls {
        // Alternate which goes first, so neither always follows the other.
        if i % 2 == 0 {
            ours.push(ms(call_ours(connection).await));
            direct.push(ms(call_plain(plain).await));
        } else {
            direct.push(ms(call_plain(plain).await));
            ours.push(ms(call_ours(connection).await));
        }
    }
    (ours, direct)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The value below which `fraction` of the values lie (nearest rank).
fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report_calls(what: &str, ours: &[f64], direct: &[f64]) {
    let (ours50, ours99) = (percentile(ours, 0.5), percentile(ours, 0.99));
    let (direct50, direct99) = (percentile(direct, 0.5), percentile(direct, 0.99));
    println!("  echo over {what}, {} calls:", ours.len());
    println!("    stigmer_mcp::Connection::call  p50 {ours50:.3} ms  p99 {ours99:.3} ms");
    println!("    plain rmcp call_tool           p50 {direct50:.3} ms  p99 {direct99:.3} ms");
    println!(
        "    ours − plain                   p50 {:+.3} ms  p99 {:+.3} ms",
        ours50 - direct50,
        ours99 - direct99
    );
}

fn report_starts(what: &str, ours: &[f64], direct: &[f64]) {
    println!(
        "  {what}, {} starts: ours median {:.1} ms (max {:.1}), plain rmcp median {:.1} ms (max {:.1})",
        ours.len(),
        percentile(ours, 0.5),
        percentile(ours, 1.0),
        percentile(direct, 0.5),
        percentile(direct, 1.0)
    );
}

fn main() {
    let calls = env_count("CALLS", 500);
    let starts = env_count("STARTS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // reqwest is built without a TLS provider; plain rmcp over HTTP needs one installed too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = EverythingHttp::start();
    let url = http.url();

    println!("mcp_calls: server-everything `echo`, medians (p50) and p99");
    runtime.block_on(async {
        // Calls over stdio.
        let connection = connect(config("everything", stdio_transport())).await;
        let plain = plain_stdio().await;
        let (ours, direct) = alternate(&connection, &plain, calls).await;
        report_calls("stdio", &ours, &direct);
        connection.close().await;
        let _ = plain.cancel().await;

        // Calls over streamable HTTP (one server, a session each).
        let connection = connect(config("web", http_transport(&url))).await;
        let plain = plain_http(&url).await;
        let (ours, direct) = alternate(&connection, &plain, calls).await;
        report_calls("streamable HTTP", &ours, &direct);
        connection.close().await;
        let _ = plain.cancel().await;

        // Starts: spawn (or connect) until the tools are listed.
        let mut ours = Vec::new();
        let mut direct = Vec::new();
        let mut closes = Vec::new();
        for _ in 0..starts {
            let started = Instant::now();
            let connection = connect(config("everything", stdio_transport())).await;
            ours.push(ms(started.elapsed()));
            let started = Instant::now();
            connection.close().await;
            closes.push(ms(started.elapsed()));

            let started = Instant::now();
            let plain = plain_stdio().await;
            let tools = plain.list_all_tools().await.expect("tools/list");
            direct.push(ms(started.elapsed()));
            assert!(tools.iter().any(|tool| tool.name == "echo"));
            let _ = plain.cancel().await;
        }
        report_starts("stdio start → tools listed", &ours, &direct);
        println!(
            "  stdio Connection::close (stdin closed, the process exits or its group is killed after 1 s): median {:.1} ms (max {:.1})",
            percentile(&closes, 0.5),
            percentile(&closes, 1.0)
        );

        let mut ours = Vec::new();
        let mut direct = Vec::new();
        for _ in 0..starts {
            let started = Instant::now();
            let connection = connect(config("web", http_transport(&url))).await;
            ours.push(ms(started.elapsed()));
            connection.close().await;

            let started = Instant::now();
            let plain = plain_http(&url).await;
            let tools = plain.list_all_tools().await.expect("tools/list");
            direct.push(ms(started.elapsed()));
            assert!(tools.iter().any(|tool| tool.name == "echo"));
            let _ = plain.cancel().await;
        }
        report_starts(
            "HTTP connect → tools listed (server running)",
            &ours,
            &direct,
        );
    });
    drop(http);
}
