//! The in-process API server fixture: it serves, a client applies and reads through it, and it
//! stops cleanly, freeing its port.

use std::time::Duration;
use stigmer_proto::executions::v1::{ListExecutionsRequest, SubscribeRequest};
use stigmer_proto::resources::v1::{ApplyRequest, GetRequest};
use stigmer_resources::Kind;
use stigmer_test::server::{InProcessServer, resource};

fn agent_manifest(name: &str) -> String {
    serde_json::json!({
        "apiVersion": stigmer_resources::API_VERSION,
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"instructions": "Say hello."},
    })
    .to_string()
}

/// True when nothing listens on `address` any more: binding it again succeeds.
fn is_free(address: std::net::SocketAddr) -> bool {
    std::net::TcpListener::bind(address).is_ok()
}

#[tokio::test]
async fn a_client_applies_and_reads_then_the_server_stops_and_frees_its_port() {
    let server = InProcessServer::start().await;
    let address = server.address();
    assert!(address.ip().is_loopback(), "{address}");
    assert!(!is_free(address), "the server does not hold its port");

    let mut clients = server.clients().await;
    let applied = clients
        .resources
        .apply(ApplyRequest {
            resources_json: vec![agent_manifest("hello")],
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(applied.results[0].action, "created");
    let got = clients
        .resources
        .get(GetRequest {
            kind: "Agent".into(),
            name: "hello".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let got: serde_json::Value = serde_json::from_str(&got.resource_json).unwrap();
    assert_eq!(got["spec"]["instructions"], "Say hello.");
    // What the API wrote is in the store the test can see.
    assert!(server.store().contains(Kind::Agent, "hello").unwrap());

    // The token is checked as in the daemon.
    let stranger = stigmer_client::ApiClients::connect(
        &server.endpoint(),
        "not-the-token",
        stigmer_client::Timeouts::default(),
    )
    .await
    .unwrap();
    let refused = stranger
        .resources
        .clone()
        .get(GetRequest {
            kind: "Agent".into(),
            name: "hello".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    drop((clients, stranger));
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(is_free(address), "the port is still held after stop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopping took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_sqlite_server_starts_with_its_resources_and_stops_under_an_open_stream() {
    let server = InProcessServer::builder()
        .sqlite()
        .resources([
            resource(
                Kind::Agent,
                "hello",
                serde_json::json!({"instructions": "Hi."}),
                None,
            ),
            resource(
                Kind::AgentExecution,
                "aex-1",
                serde_json::json!({"agent": "hello", "session": "ses-1", "message": "Go."}),
                Some(serde_json::json!({"phase": "running"})),
            ),
        ])
        .start()
        .await;
    let address = server.address();
    let mut clients = server.clients().await;
    let listed = clients
        .executions
        .list_executions(ListExecutionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.executions_json.len(), 1);
    // A subscription of a running execution stays open until the server stops.
    let _open = clients
        .executions
        .subscribe(SubscribeRequest {
            execution_id: "aex-1".into(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    server.stop().await;
    assert!(is_free(address), "the port is still held after stop");
}
