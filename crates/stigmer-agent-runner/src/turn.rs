//! The steps of an agent run, independent of Temporal: one model turn and one tool call, each
//! reporting what happens as execution events through an [`EventSink`].
//!
//! Temporal activities wrap these (a crash then repeats at most the step that was running);
//! keeping them free of Temporal lets tests drive them directly against the scripted LLM.
//! Event keys are derived from the turn, the attempt and a counter, so a retried write is
//! stored once, while a retried *attempt* (after a crash) is visible as such.

use crate::api::ApiError;
use futures::future::BoxFuture;
use std::time::Duration;
use stigmer_llm::{
    LlmClient, LlmError, Message, StreamEvent, ToolCall, ToolImage, ToolSpec, TurnResult,
};
use stigmer_proto::execution::{
    ExecutionEvent, MessageCompleted, MessageStarted, Todo, TodoStatus, TodosUpdated, TokenDelta,
    ToolCallFinished, ToolCallRef, ToolCallStarted, ToolProgress, Usage,
};
use stigmer_tools::{ToolBudget, ToolOutput, Workspace};
use tokio::sync::mpsc;

/// Longest tool result text put into an event (the model gets the whole result).
pub const EVENT_RESULT_LIMIT: usize = 2000;
/// How long text deltas are gathered before they are sent as one event.
const DELTA_WINDOW: Duration = Duration::from_millis(15);

/// One event to record: (idempotency key, event).
pub type PendingEvent = (String, ExecutionEvent);

/// Where a step's events go (the API server, in production).
pub trait EventSink: Send + Sync {
    fn emit(&self, events: Vec<PendingEvent>) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// Which step this is, for event keys.
#[derive(Clone, Copy, Debug)]
pub struct StepId {
    pub turn: u32,
    pub attempt: u32,
}

impl StepId {
    fn key(&self, what: &str) -> String {
        format!("t{}.a{}.{what}", self.turn, self.attempt)
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("cannot record events: {0}")]
    Events(#[source] ApiError),
}

/// Runs one model turn: streams the answer, emitting `message_started`, batched
/// `token_delta`s, `message_completed` and `usage`.
pub async fn model_turn(
    client: &LlmClient,
    messages: &[Message],
    tools: &[ToolSpec],
    step: StepId,
    sink: &dyn EventSink,
) -> Result<TurnResult, StepError> {
    sink.emit(vec![(
        step.key("started"),
        MessageStarted {
            turn: step.turn,
            attempt: step.attempt,
            parent: None,
        }
        .into(),
    )])
    .await
    .map_err(StepError::Events)?;

    // Deltas arrive in a synchronous callback; a forwarder batches them to the sink.
    let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
    let forward = async {
        let mut index = 0usize;
        while let Some(first) = receiver.recv().await {
            let mut text = first;
            let deadline = tokio::time::Instant::now() + DELTA_WINDOW;
            while let Ok(Some(more)) = tokio::time::timeout_at(deadline, receiver.recv()).await {
                text.push_str(&more);
            }
            index += 1;
            sink.emit(vec![(
                step.key(&format!("delta.{index}")),
                TokenDelta {
                    turn: step.turn,
                    text,
                    parent: None,
                }
                .into(),
            )])
            .await?;
        }
        Ok::<(), ApiError>(())
    };
    let call = async {
        let mut on_event = move |event: StreamEvent| match event {
            StreamEvent::TextDelta(text) => {
                let _ = sender.send(text);
            }
        };
        // The sender lives in the callback; dropping the callback ends the forwarder.
        client.stream_turn(messages, tools, &mut on_event).await
    };
    let (result, forwarded) = tokio::join!(call, forward);
    forwarded.map_err(StepError::Events)?;
    let result = result?;

    sink.emit(vec![
        (
            step.key("completed"),
            MessageCompleted {
                turn: step.turn,
                text: result.text.clone(),
                tool_calls: result
                    .tool_calls
                    .iter()
                    .map(|call| ToolCallRef {
                        id: call.id.clone(),
                        name: call.name.clone(),
                    })
                    .collect(),
                parent: None,
            }
            .into(),
        ),
        (
            step.key("usage"),
            Usage {
                turn: step.turn,
                input_tokens: result.usage.input_tokens,
                output_tokens: result.usage.output_tokens,
                model: Some(client.config().model.clone()),
                provider: Some(client.config().provider.as_str().to_owned()),
                parent: None,
            }
            .into(),
        ),
    ])
    .await
    .map_err(StepError::Events)?;
    Ok(result)
}

/// How long one built-in tool call may run: past it the tool stops and the model reads an
/// error saying so ("`glob` took longer than 30 s and was stopped"); the run goes on.
pub const TOOL_DEADLINE: Duration = Duration::from_secs(30);
/// How long past its deadline a tool is waited for before the step gives up on it (a tool
/// checks its deadline in every loop, so only one stuck in a single system call needs this).
const TOOL_GRACE: Duration = Duration::from_secs(5);

/// Runs one built-in tool call, emitting `tool_call_started`, `tool_call_finished` (with the
/// result trimmed for display) and, for `write_todos`, `todos_updated`. The tool runs on a
/// blocking thread within [`TOOL_DEADLINE`]; dropping the returned future (a cancelled
/// activity) cancels the tool, so its thread stops at its next check.
pub async fn tool_call(
    workspace: &Workspace,
    call: &ToolCall,
    step: StepId,
    sink: &dyn EventSink,
) -> Result<ToolOutput, StepError> {
    tool_call_within(workspace, call, step, sink, TOOL_DEADLINE).await
}

/// [`tool_call`] with a chosen deadline.
pub async fn tool_call_within(
    workspace: &Workspace,
    call: &ToolCall,
    step: StepId,
    sink: &dyn EventSink,
    deadline: Duration,
) -> Result<ToolOutput, StepError> {
    let result = tool_call_with(call, step, sink, |_| async move {
        ToolResult::from(run_builtin(workspace, call, deadline).await)
    })
    .await?;
    Ok(result.output)
}

/// What a tool call returns to the model: the tool's output and, from an MCP tool, the images
/// of its result (which the model sees where its provider takes them).
#[derive(Clone, Debug)]
pub struct ToolResult {
    pub output: ToolOutput,
    pub images: Vec<ToolImage>,
}

impl From<ToolOutput> for ToolResult {
    fn from(output: ToolOutput) -> ToolResult {
        ToolResult {
            output,
            images: Vec::new(),
        }
    }
}

/// How far a running tool call has come, as its tool reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressReport {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// Where a running tool reports progress; each report becomes a `tool_progress` event.
pub type ProgressSender = mpsc::UnboundedSender<ProgressReport>;

/// Runs one tool call through `run`, emitting `tool_call_started`, a `tool_progress` per
/// report `run` sends, `tool_call_finished` (the result trimmed for display, an image as its
/// one-line label) and, for `write_todos`, `todos_updated`.
pub async fn tool_call_with<F>(
    call: &ToolCall,
    step: StepId,
    sink: &dyn EventSink,
    run: impl FnOnce(ProgressSender) -> F,
) -> Result<ToolResult, StepError>
where
    F: std::future::Future<Output = ToolResult>,
{
    sink.emit(vec![(
        step.key(&format!("tool.{}.started", call.id)),
        ToolCallStarted {
            turn: step.turn,
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            parent: None,
        }
        .into(),
    )])
    .await
    .map_err(StepError::Events)?;
    let (progress, mut reports) = mpsc::unbounded_channel::<ProgressReport>();
    let running = run(progress);
    let forward = async {
        let mut count = 0usize;
        while let Some(report) = reports.recv().await {
            count += 1;
            sink.emit(vec![(
                step.key(&format!("tool.{}.progress.{count}", call.id)),
                ToolProgress {
                    turn: step.turn,
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    progress: report.progress,
                    total: report.total,
                    message: report.message,
                    parent: None,
                }
                .into(),
            )])
            .await?;
        }
        Ok::<(), ApiError>(())
    };
    // The sender lives in `running`; when it finishes the forwarder drains and ends.
    let (result, forwarded) = tokio::join!(running, forward);
    forwarded.map_err(StepError::Events)?;
    let output = &result.output;
    let mut events = vec![(
        step.key(&format!("tool.{}.finished", call.id)),
        ToolCallFinished {
            turn: step.turn,
            call_id: call.id.clone(),
            name: call.name.clone(),
            result: trim(&shown(&output.content, &result.images), EVENT_RESULT_LIMIT),
            is_error: output.is_error,
            parent: None,
        }
        .into(),
    )];
    if let Some(todos) = &output.todos {
        events.push((
            step.key(&format!("tool.{}.todos", call.id)),
            TodosUpdated {
                turn: step.turn,
                todos: todos.iter().map(todo).collect(),
                parent: None,
            }
            .into(),
        ));
    }
    sink.emit(events).await.map_err(StepError::Events)?;
    Ok(result)
}

/// A result as events show it: its text, then a line per image.
fn shown(content: &str, images: &[ToolImage]) -> String {
    let mut text = content.to_owned();
    for image in images {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&image.label());
    }
    text
}

/// A todo of `write_todos` as the protocol carries it.
fn todo(item: &stigmer_tools::Todo) -> Todo {
    Todo {
        content: item.content.clone(),
        status: match item.status {
            stigmer_tools::TodoStatus::Pending => TodoStatus::Pending,
            stigmer_tools::TodoStatus::InProgress => TodoStatus::InProgress,
            stigmer_tools::TodoStatus::Completed => TodoStatus::Completed,
        },
    }
}

/// Runs a built-in tool on a blocking thread (file tools block) within `deadline`, without
/// events (the caller reports them).
pub async fn run_builtin(workspace: &Workspace, call: &ToolCall, deadline: Duration) -> ToolOutput {
    let (workspace, name, arguments) =
        (workspace.clone(), call.name.clone(), call.arguments.clone());
    run_blocking(&call.name, deadline, move |budget| {
        stigmer_tools::execute(&workspace, &name, &arguments, budget)
    })
    .await
}

/// Runs `job` on a blocking thread with a budget of `deadline`. The budget's guard lives in
/// this future: if the future is dropped (a cancelled activity), the job is cancelled and its
/// thread ends at the job's next check.
async fn run_blocking(
    name: &str,
    deadline: Duration,
    job: impl FnOnce(&ToolBudget) -> ToolOutput + Send + 'static,
) -> ToolOutput {
    let budget = ToolBudget::new(deadline);
    let guard = budget.cancel_on_drop();
    let job_budget = budget.clone();
    let task = tokio::task::spawn_blocking(move || job(&job_budget));
    let output = match tokio::time::timeout(deadline + TOOL_GRACE, task).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => tool_error(format!("the tool crashed: {error}")),
        Err(_) => {
            budget.cancel();
            tool_error(format!(
                "`{name}` {}",
                stigmer_tools::Stopped::Deadline { limit: deadline }
            ))
        }
    };
    guard.disarm();
    output
}

fn tool_error(message: String) -> ToolOutput {
    ToolOutput {
        content: format!("Error: {message}"),
        is_error: true,
        todos: None,
    }
}

/// At most `limit` characters, marking what was cut.
pub fn trim(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let kept: String = text.chars().take(limit).collect();
    format!("{kept}… ({} more characters)", text.chars().count() - limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;
    use stigmer_config::LlmProvider;
    use stigmer_llm::ModelConfig;
    use stigmer_test::llm::{Fault, ScriptedLlm, Turn};

    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<PendingEvent>>,
    }

    impl EventSink for Recorder {
        fn emit(&self, events: Vec<PendingEvent>) -> BoxFuture<'_, Result<(), ApiError>> {
            self.events.lock().unwrap().extend(events);
            Box::pin(async { Ok(()) })
        }
    }

    impl Recorder {
        fn kinds(&self) -> Vec<String> {
            self.events
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.1.kind().to_owned())
                .collect()
        }
    }

    fn client(server: &ScriptedLlm) -> LlmClient {
        LlmClient::new(ModelConfig {
            provider: LlmProvider::Ollama,
            base_url: server.base_url(),
            model: "scripted".into(),
            api_key: None,
            temperature: None,
            max_tokens: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_model_turn_streams_deltas_and_reports_usage() {
        let server = ScriptedLlm::start(vec![
            Turn::text("Hello there, this streams in words")
                .with_chunk_delay(Duration::from_millis(20)),
        ]);
        let recorder = Recorder::default();
        let step = StepId {
            turn: 1,
            attempt: 1,
        };
        let result = model_turn(
            &client(&server),
            &[Message::User { text: "hi".into() }],
            &[],
            step,
            &recorder,
        )
        .await
        .unwrap();
        assert_eq!(result.text, "Hello there, this streams in words");
        let kinds = recorder.kinds();
        assert_eq!(kinds.first().unwrap(), "message_started");
        assert_eq!(&kinds[kinds.len() - 2..], ["message_completed", "usage"]);
        let deltas: Vec<String> = recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.1 {
                ExecutionEvent::TokenDelta(delta) => Some(delta.text.clone()),
                _ => None,
            })
            .collect();
        assert!(
            deltas.len() > 1,
            "tokens must arrive as they stream: {deltas:?}"
        );
        assert_eq!(deltas.concat(), result.text);
        let keys: Vec<String> = recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0.clone())
            .collect();
        let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "keys must be unique: {keys:?}");
    }

    #[tokio::test]
    async fn a_failed_turn_reports_the_classified_error() {
        let server = ScriptedLlm::start(vec![Turn::fault(Fault::Status(401, "bad key".into()))]);
        let recorder = Recorder::default();
        let error = model_turn(
            &client(&server),
            &[Message::User { text: "hi".into() }],
            &[],
            StepId {
                turn: 1,
                attempt: 1,
            },
            &recorder,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, StepError::Llm(LlmError::Fatal { .. })),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_tool_call_edits_the_workspace_and_reports_todos() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(dir.path()).unwrap();
        let recorder = Recorder::default();
        let step = StepId {
            turn: 2,
            attempt: 1,
        };
        let write = ToolCall {
            id: "c1".into(),
            name: "write_file".into(),
            arguments: json!({"path": "notes.md", "content": "hello"}),
        };
        let output = tool_call(&workspace, &write, step, &recorder)
            .await
            .unwrap();
        assert!(!output.is_error, "{output:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes.md")).unwrap(),
            "hello"
        );
        let todos = ToolCall {
            id: "c2".into(),
            name: "write_todos".into(),
            arguments: json!({"todos": [{"content": "ship it", "status": "in_progress"}]}),
        };
        tool_call(&workspace, &todos, step, &recorder)
            .await
            .unwrap();
        assert_eq!(
            recorder.kinds(),
            [
                "tool_call_started",
                "tool_call_finished",
                "tool_call_started",
                "tool_call_finished",
                "todos_updated"
            ]
        );
        let escape = ToolCall {
            id: "c3".into(),
            name: "read_file".into(),
            arguments: json!({"path": "../../etc/passwd"}),
        };
        let refused = tool_call(&workspace, &escape, step, &recorder)
            .await
            .unwrap();
        assert!(refused.is_error && refused.content.contains("outside the workspace"));
    }

    #[tokio::test]
    async fn a_tool_past_its_deadline_is_stopped_and_the_model_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(dir.path()).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("b")).unwrap();
        let recorder = Recorder::default();
        let step = StepId {
            turn: 1,
            attempt: 1,
        };
        let glob = ToolCall {
            id: "c1".into(),
            name: "glob".into(),
            arguments: json!({"pattern": "**/*"}),
        };
        let stopped = tool_call_within(&workspace, &glob, step, &recorder, Duration::ZERO)
            .await
            .unwrap();
        assert!(stopped.is_error, "{stopped:?}");
        assert!(
            stopped
                .content
                .contains("`glob` took longer than 0 s and was stopped"),
            "{stopped:?}"
        );
        // Within the default deadline the same walk over the link cycle ends with an answer.
        let answered = tool_call(&workspace, &glob, step, &recorder).await.unwrap();
        assert_eq!(answered.content, "a\nb");
        let finished = recorder.events.lock().unwrap()[1].1.clone();
        assert!(
            matches!(&finished, ExecutionEvent::ToolCallFinished(f) if f.is_error),
            "{finished:?}"
        );
    }

    #[tokio::test]
    async fn dropping_a_tool_call_stops_its_thread() {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (ended_tx, ended_rx) = std::sync::mpsc::channel();
        let running = run_blocking("spin", Duration::from_secs(3600), move |budget| {
            started_tx.send(()).unwrap();
            // Work that only its budget can stop.
            while budget.check().is_ok() {
                std::thread::yield_now();
            }
            ended_tx.send(budget.check()).unwrap();
            tool_error("stopped".into())
        });
        let mut running = Box::pin(running);
        // Poll the call until the job runs, then drop it like a cancelled activity does.
        tokio::select! {
            _ = &mut running => panic!("the job cannot finish by itself"),
            started = tokio::time::timeout(Duration::from_secs(10), started_rx) => {
                started.expect("the job did not start within 10 s").unwrap();
            }
        }
        drop(running);
        let ended =
            tokio::task::spawn_blocking(move || ended_rx.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap();
        assert_eq!(ended, Ok(Err(stigmer_tools::Stopped::Cancelled)));
    }

    #[test]
    fn long_results_are_trimmed_for_display() {
        assert_eq!(trim("short", 10), "short");
        assert_eq!(trim("abcdefghij", 4), "abcd… (6 more characters)");
    }
}
