//! `GetRunContext` reads only the messages a step asks for: one message for a tool call, the
//! new ones for a model turn, whatever the length of the run.

use super::{NoDaemon, TOKEN};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use stigmer_proto::executions::v1::get_run_context_request::Messages;
use stigmer_proto::executions::v1::{
    GetRunContextRequest, MessagePlace as Place, RunContext, SaveMessagesRequest,
    SaveToolSnapshotRequest,
};
use stigmer_resources::{API_VERSION, Kind, Metadata, Resource};
use stigmer_server::{ServerContext, serve};
use stigmer_store::{
    MessagePlace, NewEvent, SqliteStore, Store, StoreError, StoredEvent, StoredMessage,
};

/// The real SQLite store, counting the conversation messages it reads.
struct CountingStore {
    inner: SqliteStore,
    messages_read: AtomicUsize,
}

impl CountingStore {
    fn counted(&self, messages: Vec<StoredMessage>) -> Vec<StoredMessage> {
        self.messages_read
            .fetch_add(messages.len(), Ordering::SeqCst);
        messages
    }

    /// The messages read since the last call.
    fn take_read(&self) -> usize {
        self.messages_read.swap(0, Ordering::SeqCst)
    }
}

impl Store for CountingStore {
    fn put_execution_state(
        &self,
        execution_id: &str,
        key: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.inner.put_execution_state(execution_id, key, data)
    }
    fn execution_state(
        &self,
        execution_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.inner.execution_state(execution_id, key)
    }
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, StoreError> {
        self.inner.get(kind, name)
    }
    fn contains(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        self.inner.contains(kind, name)
    }
    fn list(&self, kind: Kind) -> Result<Vec<Resource>, StoreError> {
        self.inner.list(kind)
    }
    fn names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        self.inner.names(kind)
    }
    fn put_all_unless(
        &self,
        resources: &[Resource],
        abandoned: &dyn Fn() -> bool,
    ) -> Result<(), StoreError> {
        self.inner.put_all_unless(resources, abandoned)
    }
    fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        self.inner.delete(kind, name)
    }
    fn append_events(
        &self,
        execution_id: &str,
        events: &[NewEvent],
        ts: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.append_events(execution_id, events, ts)
    }
    fn events_after(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_after(execution_id, after_seq, limit)
    }
    fn events_page(
        &self,
        execution_id: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner
            .events_page(execution_id, after_seq, limit, max_bytes)
    }
    fn put_messages(
        &self,
        session_id: &str,
        execution_id: &str,
        turn: u32,
        first_index: u32,
        messages: &[serde_json::Value],
    ) -> Result<(), StoreError> {
        self.inner
            .put_messages(session_id, execution_id, turn, first_index, messages)
    }
    fn session_messages(&self, session_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner
            .session_messages(session_id)
            .map(|m| self.counted(m))
    }
    fn execution_messages(
        &self,
        execution_id: &str,
        from: MessagePlace,
        through: MessagePlace,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner
            .execution_messages(execution_id, from, through)
            .map(|m| self.counted(m))
    }
}

fn resource(kind: Kind, name: &str, spec: serde_json::Value, phase: &str) -> Resource {
    Resource {
        api_version: API_VERSION.into(),
        kind,
        metadata: Metadata {
            name: name.into(),
            id: Some(name.into()),
            // The earlier execution first.
            created_at: Some(if name == "aex-early" {
                "2026-01-01T00:00:00.000Z".into()
            } else {
                "2026-01-01T00:00:01.000Z".into()
            }),
            ..Default::default()
        },
        spec,
        status: Some(serde_json::json!({ "phase": phase })),
    }
}

/// What a step gets: the turn and index of each message (the tests store them in the text).
fn places(context: &RunContext) -> Vec<(u64, u64)> {
    context
        .messages_json
        .iter()
        .map(|text| {
            let message: serde_json::Value = serde_json::from_str(text).unwrap();
            (
                message["turn"].as_u64().unwrap(),
                message["index"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The API server over `store` on a free port, for the rest of the test; its execution client.
async fn serve_store(
    store: Arc<dyn Store>,
) -> stigmer_proto::executions::v1::execution_service_client::ExecutionServiceClient<
    stigmer_client::Authenticated,
> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let context = ServerContext {
        api_token: TOKEN.into(),
        daemon: Arc::new(NoDaemon),
        store,
        temporal: None,
    };
    tokio::spawn(serve(listener, context, std::future::pending()));
    stigmer_client::ApiClients::connect(
        &address.to_string(),
        TOKEN,
        stigmer_client::Timeouts::default(),
    )
    .await
    .unwrap()
    .executions
}

fn place(turn: u32, index: u32) -> Place {
    Place { turn, index }
}

#[tokio::test]
async fn a_step_reads_only_the_messages_it_asks_for_however_long_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore {
        inner: SqliteStore::open(&dir.path().join("db")).unwrap(),
        messages_read: AtomicUsize::new(0),
    });
    // An earlier completed execution of the session, and the long run after it.
    store
        .put_all(&[
            resource(
                Kind::Agent,
                "hello",
                serde_json::json!({"instructions": "Say hello."}),
                "",
            ),
            resource(
                Kind::AgentExecution,
                "aex-early",
                serde_json::json!({"agent": "hello", "session": "ses-1"}),
                "completed",
            ),
            resource(
                Kind::AgentExecution,
                "aex-long-run",
                serde_json::json!({"agent": "hello", "session": "ses-1"}),
                "running",
            ),
        ])
        .unwrap();
    let message = |turn: u32, index: u32| {
        serde_json::json!({"role": "user", "text": "x", "turn": turn, "index": index}).to_string()
    };
    store
        .put_messages(
            "ses-1",
            "aex-early",
            0,
            0,
            &[serde_json::from_str(&message(7, 7)).unwrap()],
        )
        .unwrap();

    let mut api = serve_store(store.clone()).await;

    // A 50-turn run: the user's message, then per turn an answer and a tool result.
    let turns = 50;
    let mut save = async |turn: u32, count: u32| {
        api.save_messages(SaveMessagesRequest {
            execution_id: "aex-long-run".into(),
            turn,
            first_index: 0,
            messages_json: (0..count).map(|index| message(turn, index)).collect(),
        })
        .await
        .unwrap();
    };
    save(0, 1).await;
    for turn in 1..=turns {
        save(turn, 2).await;
    }
    let mut get = async |through_turn: u32, messages: Option<Messages>| {
        store.take_read();
        let context = api
            .get_run_context(GetRunContextRequest {
                execution_id: "aex-long-run".into(),
                through_turn,
                messages,
                with_tools: false,
            })
            .await
            .unwrap()
            .into_inner();
        (context, store.take_read())
    };

    // A tool call reads the one answer that asked for it.
    let (context, read) = get(turns, Some(Messages::At(place(30, 0)))).await;
    assert_eq!((places(&context), read), (vec![(30, 0)], 1));
    assert_eq!(context.last, Some(place(30, 0)));

    // A model turn after the first reads only what was stored since the last it read.
    let (context, read) = get(turns, Some(Messages::After(place(49, 1)))).await;
    assert_eq!((places(&context), read), (vec![(50, 0), (50, 1)], 2));
    assert_eq!(context.last, Some(place(50, 1)));
    // Each message comes with its place (a retried step finds which tool calls have results).
    assert_eq!(context.places, [place(50, 0), place(50, 1)]);
    let (context, read) = get(turns, Some(Messages::After(place(50, 1)))).await;
    assert_eq!((places(&context), read), (vec![], 0));
    assert_eq!(context.last, None);
    // Never past the turn asked for.
    let (context, read) = get(49, Some(Messages::After(place(48, 1)))).await;
    assert_eq!((places(&context), read), (vec![(49, 0), (49, 1)], 2));

    // The start step reads none.
    let (context, read) = get(0, Some(Messages::NoMessages(true))).await;
    assert_eq!((context.messages_json.len(), read), (0, 0));
    assert!(!context.execution_json.is_empty() && !context.agent_json.is_empty());

    // A runner that holds nothing (its first turn, or after a restart) reads it all: the
    // earlier completed execution of the session first, then this run through the turn.
    let (context, _) = get(turns, None).await;
    let all = places(&context);
    assert_eq!(all.len(), 1 + 1 + 2 * turns as usize);
    assert_eq!(
        (all[0], all[1], all[all.len() - 1]),
        ((7, 7), (0, 0), (50, 1))
    );
    assert_eq!(context.last, Some(place(50, 1)));
}

#[tokio::test]
async fn a_step_that_builds_its_tools_gets_the_agents_mcp_servers_and_skills_in_order() {
    let store: Arc<dyn Store> = Arc::new(stigmer_store::MemoryStore::default());
    let agent = serde_json::json!({
        "instructions": "Use tools.",
        "mcpServers": ["web", "files"],
        "skills": ["notes"],
    });
    store
        .put_all(&[
            resource(Kind::Agent, "helper", agent, ""),
            resource(
                Kind::McpServer,
                "files",
                serde_json::json!({"stdio": {"command": "node"}}),
                "",
            ),
            resource(
                Kind::McpServer,
                "web",
                serde_json::json!({"http": {"url": "http://127.0.0.1:1/mcp"}}),
                "",
            ),
            resource(
                Kind::Skill,
                "notes",
                serde_json::json!({"description": "d", "files": {"SKILL.md": "x"}}),
                "",
            ),
            resource(
                Kind::AgentExecution,
                "aex-tools",
                serde_json::json!({"agent": "helper", "session": "ses-1"}),
                "running",
            ),
        ])
        .unwrap();
    let mut api = serve_store(store.clone()).await;
    let request = |with_tools: bool| GetRunContextRequest {
        execution_id: "aex-tools".into(),
        through_turn: 0,
        messages: Some(Messages::NoMessages(true)),
        with_tools,
    };
    let names = |jsons: &[String]| -> Vec<String> {
        jsons
            .iter()
            .map(|text| {
                serde_json::from_str::<Resource>(text)
                    .unwrap()
                    .metadata
                    .name
            })
            .collect()
    };
    let without = api
        .get_run_context(request(false))
        .await
        .unwrap()
        .into_inner();
    assert!(without.mcp_servers_json.is_empty() && without.skills_json.is_empty());
    let with = api
        .get_run_context(request(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&with.mcp_servers_json), ["web", "files"]);
    assert_eq!(names(&with.skills_json), ["notes"]);
    assert_eq!(with.tool_snapshot_json, "");

    // The tool snapshot a first step saves comes back to every later step; a snapshot that is
    // not a JSON object is refused.
    let save = |snapshot_json: &str| SaveToolSnapshotRequest {
        execution_id: "aex-tools".into(),
        snapshot_json: snapshot_json.into(),
    };
    api.save_tool_snapshot(save(r#"{"servers":[{"server":"web","tools":[]}]}"#))
        .await
        .unwrap();
    let refused = api.save_tool_snapshot(save("[1]")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let saved = api
        .get_run_context(request(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        saved.tool_snapshot_json,
        r#"{"servers":[{"server":"web","tools":[]}]}"#
    );
    let without = api
        .get_run_context(request(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(without.tool_snapshot_json, "");

    // A server deleted under a running execution is named.
    store.delete(Kind::McpServer, "files").unwrap();
    let error = api.get_run_context(request(true)).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        error.message(),
        "the McpServer 'files' of agent 'helper' was deleted while its execution ran; apply it again"
    );
}
