//! Our own rmcp server, in process over streamable HTTP behind a bearer-token check: what
//! server-everything lacks (auth, `readOnlyHint`/`idempotentHint` annotations). rmcp's server
//! implements the 2026-07-28 lifecycle, so this also covers the `server/discover` path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, SubscriptionFilter, TextContent,
    Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext, SubscriptionSink};
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::json;
use stigmer_mcp::Phase;

use crate::{connect, http_config, no_progress};

const TOKEN: &str = "t0ken-for-tests";

/// The tools: `read` (readOnlyHint), `put` (idempotentHint), `write` (no annotations),
/// `weird` (a string schema) and `wait`, which runs until cancelled and says so in `cancelled`.
/// `grow` adds a tool named `extra` and announces it on the client's `subscriptions/listen`
/// stream (the 2026-07-28 way), kept in `sink`.
#[derive(Clone, Default)]
struct Notes {
    cancelled: Arc<AtomicBool>,
    grown: Arc<AtomicBool>,
    sink: Arc<Mutex<Option<SubscriptionSink>>>,
}

fn schema(value: serde_json::Value) -> Arc<serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => Arc::new(map),
        _ => unreachable!("schemas here are objects"),
    }
}

impl rmcp::ServerHandler for Notes {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_instructions("Notes: read with `read`, write with `write`.")
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        *self.sink.lock().unwrap() = Some(context.sink().clone());
        context.cancelled().await;
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let object = json!({"type": "object", "properties": {"key": {"type": "string"}}});
        let mut tools = vec![
            Tool::new("read", "Reads a note", schema(object.clone()))
                .with_annotations(ToolAnnotations::new().read_only(true)),
            Tool::new("put", "Sets a note", schema(object.clone())).with_annotations(
                ToolAnnotations::from_raw(None, None, None, Some(true), None),
            ),
            Tool::new("write", "Appends to a note", schema(object)),
            Tool::new(
                "weird",
                "Not an object schema",
                schema(json!({"type": "string"})),
            ),
            Tool::new(
                "wait",
                "Waits until cancelled",
                schema(json!({"type": "object"})),
            ),
            Tool::new("grow", "Adds a tool", schema(json!({"type": "object"}))),
        ];
        if self.grown.load(Ordering::SeqCst) {
            tools.push(Tool::new(
                "extra",
                "Added by grow",
                schema(json!({"type": "object"})),
            ));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "grow" {
            self.grown.store(true, Ordering::SeqCst);
            let sink = self.sink.lock().unwrap().clone();
            if let Some(sink) = sink {
                let _ = sink.notify_tool_list_changed().await;
            }
        }
        if request.name == "wait" {
            tokio::select! {
                _ = context.ct.cancelled() => self.cancelled.store(true, Ordering::SeqCst),
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
        let key = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("key"))
            .and_then(|key| key.as_str())
            .unwrap_or("none")
            .to_owned();
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::Text(TextContent::new(format!("{} {key}", request.name))),
        ])))
    }
}

/// Serves `Notes` on `127.0.0.1:0` at `/mcp`, refusing requests without the bearer token.
async fn serve() -> (String, tokio::task::JoinHandle<()>, Notes) {
    let notes = Notes::default();
    let factory_notes = notes.clone();
    let service = StreamableHttpService::new(
        move || Ok(factory_notes.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    async fn check_token(
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let expected = format!("Bearer {TOKEN}");
        let authorized = request
            .headers()
            .get("authorization")
            .is_some_and(|value| value.as_bytes() == expected.as_bytes());
        if authorized {
            next.run(request).await
        } else {
            axum::response::IntoResponse::into_response((
                axum::http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer")],
                "unauthorized",
            ))
        }
    }
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(check_token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (
        format!("http://127.0.0.1:{}/mcp", address.port()),
        task,
        notes,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_annotations_and_schemas() {
    let (url, server, notes) = serve().await;
    let headers = vec![("Authorization".to_owned(), format!("Bearer {TOKEN}"))];
    let (connection, _notices) = connect(http_config("notes", &url, headers)).await;
    let connection = connection.expect("the right token is accepted");
    let tools: Vec<(&str, bool)> = connection
        .tools()
        .iter()
        .map(|tool| (tool.name.as_str(), tool.read_only))
        .collect();
    // `weird` has a string schema: dropped, the others keep the server's order.
    assert_eq!(
        tools,
        [
            ("read", true),
            ("put", true),
            ("write", false),
            ("wait", false),
            ("grow", false)
        ]
    );
    assert_eq!(
        connection.instructions(),
        Some("Notes: read with `read`, write with `write`.")
    );
    let outcome = connection
        .call("write", json!({"key": "k1"}), &no_progress)
        .await;
    assert_eq!(outcome.text, "write k1");
    assert!(!outcome.is_error);

    // Dropping a call's future cancels it on the server.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        connection.call("wait", json!({}), &no_progress),
    )
    .await;
    assert!(abandoned.is_err(), "the call should still be running");
    let until = Instant::now() + Duration::from_secs(5);
    while !notes.cancelled.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < until,
            "the server never saw the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcome = connection
        .call("read", json!({"key": "k2"}), &no_progress)
        .await;
    assert_eq!(outcome.text, "read k2");

    let started = Instant::now();
    connection.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_the_start_with_401() {
    let (url, server, _notes) = serve().await;
    let headers = vec![("Authorization".to_owned(), "Bearer wrong".to_owned())];
    let (connection, _notices) = connect(http_config("notes", &url, headers)).await;
    let failure = connection.expect_err("a wrong token is refused");
    assert_eq!(failure.phase, Phase::Start);
    assert_eq!(failure.server, "notes");
    assert!(
        failure.reason.contains("refused the credentials"),
        "{failure:?}"
    );
    assert!(failure.reason.contains("401"), "{failure:?}");
    assert!(
        !failure.reason.contains("wrong"),
        "the token leaked: {failure:?}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_on_a_2026_connection_comes_through_listen() {
    let (url, server, notes) = serve().await;
    let headers = vec![("Authorization".to_owned(), format!("Bearer {TOKEN}"))];
    let (connection, mut notices) = connect(http_config("notes", &url, headers)).await;
    let mut connection = connection.expect("the right token is accepted");
    // The subscription is opened in the background after the start.
    let until = Instant::now() + Duration::from_secs(5);
    while notes.sink.lock().unwrap().is_none() {
        assert!(Instant::now() < until, "no subscriptions/listen arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!connection.tools_changed());
    let outcome = connection.call("grow", json!({}), &no_progress).await;
    assert!(!outcome.is_error, "{outcome:?}");
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice within 5 s");
    assert_eq!(
        notice,
        Some(stigmer_mcp::Notice::ToolsChanged {
            server: "notes".to_owned()
        })
    );
    assert!(connection.tools_changed());
    connection
        .refresh_tools()
        .await
        .expect("the list refreshes");
    assert!(connection.tools().iter().any(|tool| tool.name == "extra"));
    assert!(!connection.tools_changed());
    let started = Instant::now();
    connection.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.abort();
}
