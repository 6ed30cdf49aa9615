//! `tools/list_changed` from a minimal stdio server (a few lines of node speaking the legacy
//! lifecycle): a call to `grow` adds a tool and announces it, deterministically.

use std::time::Duration;

use serde_json::json;
use stigmer_mcp::Notice;

use crate::{command, connect, no_progress, stdio_config};

const GROWER: &str = r#"
const readline = require('readline');
const tools = [{ name: 'grow', inputSchema: { type: 'object' } }];
const send = (message) => process.stdout.write(JSON.stringify(message) + '\n');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const message = JSON.parse(line);
  if (message.id === undefined) return;
  const reply = (result) => send({ jsonrpc: '2.0', id: message.id, result });
  switch (message.method) {
    case 'initialize':
      reply({
        protocolVersion: message.params.protocolVersion,
        capabilities: { tools: { listChanged: true } },
        serverInfo: { name: 'grower', version: '1.0.0' },
      });
      break;
    case 'tools/list':
      reply({ tools });
      break;
    case 'tools/call':
      tools.push({ name: 'extra' + tools.length, inputSchema: { type: 'object' } });
      send({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
      reply({ content: [{ type: 'text', text: 'grown' }] });
      break;
    default:
      send({ jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'Method not found' } });
  }
});
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_sets_the_flag_and_sends_a_notice() {
    let config = stdio_config("grower", command("node", &["-e", GROWER]), "node -e GROWER");
    let (connection, mut notices) = connect(config).await;
    let mut connection = connection.expect("the grower starts");
    let names = |connection: &stigmer_mcp::Connection| -> Vec<String> {
        connection.tools().iter().map(|t| t.name.clone()).collect()
    };
    assert_eq!(names(&connection), ["grow"]);
    assert!(!connection.tools_changed());

    let outcome = connection.call("grow", json!({}), &no_progress).await;
    assert_eq!(outcome.text, "grown");
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice within 5 s");
    assert_eq!(
        notice,
        Some(Notice::ToolsChanged {
            server: "grower".to_owned()
        })
    );
    assert!(connection.tools_changed());

    connection
        .refresh_tools()
        .await
        .expect("the list refreshes");
    assert_eq!(names(&connection), ["grow", "extra1"]);
    assert!(!connection.tools_changed());
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_kills_a_server_that_ignores_stdin_eof() {
    let script = format!("{GROWER}\nsetInterval(() => {{}}, 1000);");
    let config = stdio_config(
        "stubborn",
        command("node", &["-e", &script]),
        "node -e GROWER",
    );
    let (connection, _notices) = connect(config).await;
    let connection = connection.expect("the grower starts");
    let pgid = connection.pid().unwrap();
    let started = std::time::Instant::now();
    connection.close().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "close took {elapsed:?}"
    );
    crate::wait_group_gone(pgid, Duration::from_secs(5)).await;
}
