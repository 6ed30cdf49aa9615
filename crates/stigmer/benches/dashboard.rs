//! The dashboard in a real browser (Chromium through ChromeDriver), against the whole stack
//! (the binary under test, managed Temporal, the scripted LLM):
//!
//! - event → page: an agent execution whose model never answers stays `running`; the bench
//!   appends `token_delta` events to it one at a time with the client library's AppendEvents,
//!   and its page, open in the browser, records when each arrived over SSE
//!   (`performance.timeOrigin + performance.now()`, into `window.__eventTimes`). The latency
//!   is that time minus the wall clock just before the append (same machine, same clock).
//!   p50/p99/max over EVENTS (200 by default).
//! - the executions page's first render with SEED (10,000 by default) executions stored
//!   (written into the SQLite store before the daemon starts): navigation start to the list
//!   rendered (the page's `executions-rendered` performance mark), the median of 5 loads.
//!
//! `scripts/setup-browser` installs Chromium and ChromeDriver.
//!
//!     cargo bench -p stigmer --bench dashboard

#[allow(dead_code)]
#[path = "../tests/it/dashboard/browser.rs"]
mod browser;

use browser::{Browser, browser_available, dashboard_link};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use stigmer_proto::execution::{ExecutionEvent, TokenDelta};
use stigmer_proto::executions::v1::{AppendEventsRequest, CreateExecutionRequest};
use stigmer_resources::{API_VERSION, Kind, Metadata, Resource};
use stigmer_test::TestHome;
use stigmer_test::llm::{Fault, ScriptedLlm, Turn};

const AGENT: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: bench
spec:
  instructions: You help.
";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is before 1970")
        .as_secs_f64()
        * 1000.0
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

/// `count` finished agent executions, one a second apart, as the daemon's store would hold
/// them.
fn seeded_executions(count: usize) -> Vec<Resource> {
    let start = chrono::Utc::now() - chrono::Duration::seconds(count as i64 + 60);
    (0..count)
        .map(|index| {
            let created = start + chrono::Duration::seconds(index as i64);
            let finished = created + chrono::Duration::milliseconds(1500);
            let rfc3339 = |time: chrono::DateTime<chrono::Utc>| {
                time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            };
            let id = format!("aex-seed{index:06}");
            Resource {
                api_version: API_VERSION.into(),
                kind: Kind::AgentExecution,
                metadata: Metadata {
                    name: id.clone(),
                    id: Some(id),
                    created_at: Some(rfc3339(created)),
                    ..Default::default()
                },
                spec: json!({
                    "agent": "bench",
                    "session": format!("ses-seed{index:06}"),
                    "message": format!("Seeded message number {index}"),
                }),
                status: Some(json!({
                    "phase": if index % 10 == 0 { "failed" } else { "completed" },
                    "startedAt": rfc3339(created),
                    "finishedAt": rfc3339(finished),
                })),
            }
        })
        .collect()
}

fn main() {
    if !browser_available() {
        return;
    }
    let events = setting("EVENTS", 200);
    let seed = setting("SEED", 10_000);
    let llm = ScriptedLlm::start(vec![Turn::fault(Fault::Hang)]);
    let home = TestHome::new(env!("CARGO_BIN_EXE_stigmer"));
    home.write_config(&format!(
        "{}llm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
        llm.v1_url()
    ));
    // Stored before the daemon opens the store: what 10,000 earlier runs leave behind.
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).expect("cannot create the data directory");
    let store = stigmer_store::SqliteStore::open(&data.join("stigmer.db")).expect("store");
    stigmer_store::Store::put_all(&store, &seeded_executions(seed)).expect("seed");
    drop(store);
    home.start();
    let manifest = home.path().join("agent.yaml");
    std::fs::write(&manifest, AGENT).expect("cannot write the agent");
    let applied = home.run(&["apply", "-f", manifest.to_str().expect("a UTF-8 path")]);
    assert_eq!(applied.code, 0, "{applied}");

    let browser = Browser::start();
    browser.goto(&dashboard_link(&home));
    browser.wait_for_element("main h1");

    // The executions page, loaded afresh each time, with `seed` executions stored.
    let url = browser.current_url();
    let base = url.split('#').next().unwrap_or(&url).to_owned();
    let mut renders = Vec::new();
    for _ in 0..5 {
        browser.goto("about:blank");
        browser.goto(&format!("{base}#/executions"));
        let rendered = browser.wait_for(
            "the executions list",
            "const mark = performance.getEntriesByName('executions-rendered')[0]; \
             return mark && document.querySelectorAll('#executions tbody tr').length > 0 \
               ? mark.startTime : null",
            |mark| mark.as_f64(),
        );
        renders.push(rendered);
    }
    let rows = browser.js("return document.querySelectorAll('#executions tbody tr').length");
    renders.sort_by(f64::total_cmp);

    // Event → page latency, one event at a time.
    let state = home.state().expect("no run/state.json");
    let address = state["server_address"]
        .as_str()
        .expect("an address")
        .to_owned();
    let token = std::fs::read_to_string(home.path().join("run/api-token")).expect("token");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = runtime
        .block_on(stigmer_client::ApiClients::connect(
            &address,
            token.trim(),
            stigmer_client::Timeouts::default(),
        ))
        .expect("connect")
        .executions;
    let created = runtime
        .block_on(client.create_execution(CreateExecutionRequest {
            agent: "bench".into(),
            message: "Wait".into(),
            ..Default::default()
        }))
        .expect("create")
        .into_inner();
    let execution: Value = serde_json::from_str(&created.execution_json).expect("JSON");
    let id = execution["metadata"]["name"]
        .as_str()
        .expect("an id")
        .to_owned();
    browser.js("window.__eventTimes = {}; return null");
    browser.js(&format!("location.hash = '#/executions/{id}'; return null"));
    browser.wait_for_text("#phase", "running");
    browser.wait_for_text("#stream-state", "live");
    let mut latencies = Vec::with_capacity(events);
    for index in 0..events {
        let sent = wall_clock_ms();
        let appended = runtime
            .block_on(client.append_events(AppendEventsRequest {
                execution_id: id.clone(),
                events: vec![
                    ExecutionEvent::from(TokenDelta {
                        turn: 1,
                        text: format!("token {index} "),
                        parent: None,
                    })
                    .to_new_event(format!("bench-{index}")),
                ],
            }))
            .expect("append")
            .into_inner();
        let seq = appended.seqs[0];
        let received = browser.wait_for(
            &format!("event {seq} on the page"),
            &format!("return window.__eventTimes[{seq}] ?? null"),
            |time| time.as_f64(),
        );
        latencies.push(received - sent);
    }
    latencies.sort_by(f64::total_cmp);
    let errors = browser.js("return window.__errors");
    drop(browser);

    println!(
        "dashboard, Chromium {} headless, the binary under test",
        chromium_version()
    );
    println!(
        "executions page first render ({seed} executions stored, {rows} rows shown): \
         median {:.0} ms, min {:.0} ms, max {:.0} ms (navigation start → list rendered, 5 loads)",
        percentile(&renders, 0.5),
        renders[0],
        renders[renders.len() - 1]
    );
    println!(
        "event → page over SSE ({events} token_delta events, one at a time, AppendEvents → \
         EventSource onmessage): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    assert_eq!(errors, json!([]), "the page recorded JavaScript errors");
}

fn chromium_version() -> String {
    std::process::Command::new("/usr/bin/chromium")
        .arg("--version")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}
