//! The durable agent loop: the `stigmer.AgentExecution` workflow and its activities.
//!
//! The workflow only orders steps: start, then model turns, until a turn asks for no tool or
//! the turn limit is reached. Each turn's step first runs the tool calls of the turn before,
//! storing each result as it finishes, then calls the model. Every turn is an activity with
//! heartbeats and a retry policy, so a runner killed mid-turn loses only that turn: Temporal
//! notices the missing heartbeat, and the restarted runner repeats the one step (tool calls
//! whose result is stored are not run again). The start step, short and idempotent, is a
//! local activity: it costs no workflow task of its own.
//!
//! Large data stays out of the workflow history: the conversation lives in the API server,
//! and activities exchange only ids, turn numbers and counts with the workflow.

use crate::api::{Api, ApiError, ApiSink, MessagePlace, Redactor, RunContext, Wanted};
use crate::conversation::Conversations;
use crate::toolbox::{self, ToolEnvironment, Toolbox, Toolboxes};
use crate::turn::{self, StepError, StepId};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use stigmer_config::{LlmProvider, RunnerLaunchSpec};
use stigmer_llm::{LlmClient, LlmError, Message, ModelConfig};
use stigmer_proto::execution::{ExecutionPhase, PhaseChanged};
use stigmer_resources::{AgentSpec, Provider};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, LocalActivityOptions,
    WorkflowContext, WorkflowResult, WorkflowTermination,
};
use temporalio_workflow::RetryPolicy;
use tracing::Instrument;

/// The workflow type name the API server starts.
pub const AGENT_WORKFLOW: &str = "stigmer.AgentExecution";
/// Model turns an execution may take when its agent sets no `maxTurns`.
pub const DEFAULT_MAX_TURNS: u32 = 50;
/// A step that stops heartbeating for this long is considered lost (its runner died) and is
/// retried; it also bounds how long a cancelled step may run on.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a running step heartbeats (the SDK sends at most one per 0.8 × the timeout).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// What the start step tells the workflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub max_turns: u32,
}

/// Which model turn to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TurnInput {
    pub execution_id: String,
    pub turn: u32,
    /// The step first runs the tool calls the turn before asked for that have no stored
    /// result yet (false in runs started before steps did so: they run `stigmer.ToolCall`).
    #[serde(default)]
    pub runs_tool_calls: bool,
}

/// The patch of the workflow after which the start step is a local activity and a model
/// turn's step runs the tool calls of the turn before: one activity and one workflow task per
/// turn instead of one per step. Runs started before it replay the way they were started.
const FEWER_WORKFLOW_TASKS: &str = "fewer-workflow-tasks";

/// What a model turn tells the workflow: how many tool calls to run next.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TurnOutcome {
    pub tool_calls: u32,
}

/// Which tool call to run: the `index`th call the model asked for in `turn`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolInput {
    pub execution_id: String,
    pub turn: u32,
    pub index: u32,
}

/// The agent loop.
#[workflow]
#[derive(Default)]
pub struct AgentWorkflow;

#[workflow_methods]
impl AgentWorkflow {
    #[run(name = "stigmer.AgentExecution")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        execution_id: String,
    ) -> WorkflowResult<String> {
        // Temporal's dispatch of a workflow task costs more than the start step and most tool
        // calls. The start step (short, and idempotent: a keyed event, a message written at
        // its place) runs as a local activity, within the first workflow task. A tool call is
        // no step of its own: the next model turn's step runs it, storing each result as it
        // finishes (a retried step runs only those without one).
        let fewer_tasks = ctx.patched(FEWER_WORKFLOW_TASKS);
        let started = if fewer_tasks {
            ctx.execute_local_activity(
                AgentActivities::start,
                execution_id.clone(),
                local_step_options(Duration::from_secs(60), 5),
            )
            .await
        } else {
            ctx.execute_activity(
                AgentActivities::start,
                execution_id.clone(),
                step_options(Duration::from_secs(60), 5),
            )
            .await
        }
        .map_err(ended)?;
        let runs_tool_calls = fewer_tasks;
        let mut turn = 1;
        loop {
            if turn > started.max_turns {
                return Err(ApplicationFailure::non_retryable(format!(
                    "exceeded {} model turns (raise the agent's spec.maxTurns if it needs more)",
                    started.max_turns
                ))
                .into());
            }
            let outcome = ctx
                .execute_activity(
                    AgentActivities::model_turn,
                    TurnInput {
                        execution_id: execution_id.clone(),
                        turn,
                        runs_tool_calls,
                    },
                    step_options(Duration::from_secs(30 * 60), 4),
                )
                .await
                .map_err(ended)?;
            if outcome.tool_calls == 0 {
                return Ok(format!("completed after {turn} model turns"));
            }
            // The last turn allowed has no next step to run its calls: they run on their own,
            // before the run fails at the limit.
            let next_runs_them = runs_tool_calls && turn < started.max_turns;
            for index in (0..outcome.tool_calls).filter(|_| !next_runs_them) {
                ctx.execute_activity(
                    AgentActivities::tool_call,
                    ToolInput {
                        execution_id: execution_id.clone(),
                        turn,
                        index,
                    },
                    step_options(Duration::from_secs(10 * 60), 4),
                )
                .await
                .map_err(ended)?;
            }
            turn += 1;
        }
    }
}

/// Timeouts and retries of one step: heartbeats detect a dead runner within seconds;
/// retryable failures back off 3 s, 12 s, 48 s (then 60 s). The backoff is that long because
/// a stalled runner (stopped, not dead) swallows retries: Temporal hands each one to the
/// runner's open polls, where it times out unheard. With four attempts the last one starts
/// about 72 s after a stall began, so a runner stalled for a minute (or replaced by the
/// supervisor meanwhile) still runs the step.
fn step_options(start_to_close: Duration, attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(3))
                .backoff_coefficient(4.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(attempts)
                .build(),
        )
        .build()
}

/// [`step_options`] for a local activity: the same retries (backoffs past a minute wait on a
/// workflow timer), all of them within `schedule_to_close`. A local activity has no
/// heartbeat: a runner that dies in one is noticed when its workflow task times out.
fn local_step_options(start_to_close: Duration, attempts: u32) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(start_to_close)
        .schedule_to_close_timeout(Duration::from_secs(10 * 60))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(3))
                .backoff_coefficient(4.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(attempts)
                .build(),
        )
        .build()
}

/// A cancelled step means the workflow was cancelled: end as cancelled, not failed.
fn ended(error: ActivityExecutionError) -> WorkflowTermination {
    match error {
        ActivityExecutionError::Cancelled(_) => WorkflowTermination::cancelled(),
        other => other.into(),
    }
}

/// The activities of the agent loop.
pub struct AgentActivities {
    spec: RunnerLaunchSpec,
    api: Api,
    /// What model turns read of recent executions' conversations.
    conversations: Conversations,
    /// The tools (MCP servers, shell, skills) of the executions this runner works on.
    toolboxes: Arc<Toolboxes>,
    tool_environment: ToolEnvironment,
}

impl AgentActivities {
    pub fn new(spec: RunnerLaunchSpec) -> Result<AgentActivities, stigmer_client::ClientError> {
        let program = std::env::current_exe().unwrap_or_else(|_| "stigmer".into());
        Self::with_program(spec, program)
    }

    /// [`AgentActivities::new`] with the `stigmer` binary that runs child processes (`stigmer
    /// internal exec`): tests that run the activities in their own process name it.
    pub fn with_program(
        spec: RunnerLaunchSpec,
        program: std::path::PathBuf,
    ) -> Result<AgentActivities, stigmer_client::ClientError> {
        let api = Api::new(&spec)?;
        let toolboxes = Arc::new(Toolboxes::default());
        // Toolboxes of runs that ended out of this runner's sight are closed when idle.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let held = Arc::downgrade(&toolboxes);
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    let Some(toolboxes) = held.upgrade() else {
                        break;
                    };
                    toolboxes
                        .close_idle(std::time::Instant::now(), toolbox::IDLE_CLOSE)
                        .await;
                }
            });
        }
        Ok(AgentActivities {
            spec,
            api,
            conversations: Conversations::default(),
            toolboxes,
            tool_environment: ToolEnvironment {
                program,
                landlock: stigmer_sandbox::landlock_support(),
            },
        })
    }

    /// The toolbox of the execution: the one this runner holds, or a new one (which starts the
    /// agent's MCP servers). A run whose tools cannot be set up fails with the reason.
    async fn toolbox(
        &self,
        execution_id: &str,
        workspace: &stigmer_tools::Workspace,
    ) -> Result<Arc<Toolbox>, ActivityError> {
        if let Some(toolbox) = self.toolboxes.get(execution_id) {
            return Ok(toolbox);
        }
        let context = self
            .api
            .run_context_with(execution_id, 0, Wanted::Nothing, true)
            .await
            .map_err(api_error)?;
        let toolbox = Toolbox::build(&context, workspace, &self.tool_environment)
            .await
            .map_err(|error| fatal(error.to_string()))?;
        Ok(self.toolboxes.insert(execution_id, toolbox).await)
    }

    /// Saves the execution's tool snapshot when it changed (built from the servers by its first
    /// step, or listed again after a server said its tools changed).
    async fn save_tool_snapshot(
        &self,
        execution_id: &str,
        toolbox: &Toolbox,
    ) -> Result<(), ActivityError> {
        if let Some(snapshot) = toolbox.take_unsaved_snapshot()
            && let Err(error) = self.api.save_tool_snapshot(execution_id, &snapshot).await
        {
            toolbox.snapshot_not_saved();
            return Err(api_error(error));
        }
        Ok(())
    }

    /// Reports what the toolbox noticed since the last step (servers that failed, …).
    async fn report_tool_events(
        &self,
        toolbox: &Toolbox,
        sink: &ApiSink,
        step: StepId,
    ) -> Result<(), ActivityError> {
        let events = toolbox.take_events();
        if events.is_empty() {
            return Ok(());
        }
        use turn::EventSink;
        let keyed = events
            .into_iter()
            .enumerate()
            .map(|(n, event)| (format!("t{}.a{}.tools.{n}", step.turn, step.attempt), event))
            .collect();
        sink.emit(keyed)
            .await
            .map_err(|error| sink_error(sink, error))
    }

    fn sink(&self, context: &RunContext) -> ApiSink {
        ApiSink {
            api: self.api.clone(),
            execution_id: context.execution_id().to_owned(),
            redactor: Redactor::new(&context.secrets),
            ended: AtomicBool::new(false),
        }
    }

    fn workspace(&self, context: &RunContext) -> Result<stigmer_tools::Workspace, ActivityError> {
        let root = self.spec.workspace_dir.join(context.session());
        stigmer_tools::Workspace::open(&root).map_err(|error| {
            retryable(format!(
                "cannot open the workspace {}: {error}",
                root.display()
            ))
        })
    }

    /// The model of a run: the agent's `spec.model`, then the run's `--model`, then the
    /// stack's default (config.yaml, then environment, resolved by the daemon).
    fn model_config(&self, context: &RunContext) -> Result<ModelConfig, ActivityError> {
        let chosen = context.agent.model.clone().unwrap_or_default();
        let provider = match chosen.provider {
            None => self.spec.llm_provider,
            Some(Provider::Ollama) => LlmProvider::Ollama,
            Some(Provider::Openai) => LlmProvider::Openai,
            Some(Provider::Anthropic) => LlmProvider::Anthropic,
        };
        let same_provider = provider == self.spec.llm_provider;
        let run_model = context.spec.model.clone().filter(|model| !model.is_empty());
        let model = chosen.name.or(run_model).unwrap_or_else(|| {
            if same_provider {
                self.spec.llm_model.clone()
            } else {
                provider.default_model().to_owned()
            }
        });
        let base_url = if same_provider {
            self.spec.llm_base_url.clone()
        } else {
            provider.default_base_url().to_owned()
        };
        let api_key = match provider {
            LlmProvider::Ollama => None,
            LlmProvider::Openai => self.spec.openai_api_key.as_ref(),
            LlmProvider::Anthropic => self.spec.anthropic_api_key.as_ref(),
        }
        .map(|key| key.expose().to_owned());
        Ok(ModelConfig {
            provider,
            base_url,
            model,
            api_key,
            temperature: chosen.temperature,
            max_tokens: chosen.max_tokens,
        })
    }
}

#[activities]
impl AgentActivities {
    /// Marks the execution running and records the user's message as turn 0.
    #[activity(name = "stigmer.StartExecution")]
    pub async fn start(
        self: Arc<Self>,
        ctx: ActivityContext,
        execution_id: String,
    ) -> Result<Started, ActivityError> {
        let span = step_span("start", &execution_id, 0, ctx.info().attempt);
        self.start_step(ctx, execution_id).instrument(span).await
    }

    /// One model turn: the conversation so far in, the answer streamed out as events and
    /// stored as the turn's first message.
    #[activity(name = "stigmer.ModelTurn")]
    pub async fn model_turn(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: TurnInput,
    ) -> Result<TurnOutcome, ActivityError> {
        let span = step_span(
            "model_turn",
            &input.execution_id,
            input.turn,
            ctx.info().attempt,
        );
        let execution_id = input.execution_id.clone();
        let work = self.model_turn_step(&ctx, input);
        let outcome = with_heartbeats(&ctx, work).instrument(span).await;
        self.after_step(&execution_id, &outcome).await;
        outcome
    }

    /// One tool call the model asked for; its result is stored after the turn's answer.
    #[activity(name = "stigmer.ToolCall")]
    pub async fn tool_call(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ToolInput,
    ) -> Result<(), ActivityError> {
        let span = step_span(
            "tool_call",
            &input.execution_id,
            input.turn,
            ctx.info().attempt,
        );
        let execution_id = input.execution_id.clone();
        let work = self.tool_call_step(&ctx, input);
        let outcome = with_heartbeats(&ctx, work).instrument(span).await;
        self.after_step(&execution_id, &outcome).await;
        outcome
    }
}

/// The span every step runs in, so that each line it logs names its execution.
fn step_span(step: &'static str, execution_id: &str, turn: u32, attempt: u32) -> tracing::Span {
    tracing::info_span!("step", step, execution_id = %execution_id, turn, attempt)
}

impl AgentActivities {
    /// A step that was cancelled or failed for good ends the run here: its MCP servers stop.
    async fn after_step<T>(&self, execution_id: &str, outcome: &Result<T, ActivityError>) {
        if let Err(error) = outcome
            && ends_the_run(error)
        {
            self.toolboxes.close(execution_id).await;
        }
    }

    /// The body of [`AgentActivities::start`].
    async fn start_step(
        &self,
        ctx: ActivityContext,
        execution_id: String,
    ) -> Result<Started, ActivityError> {
        let context = self
            .api
            .run_context(&execution_id, 0, Wanted::Nothing)
            .await
            .map_err(api_error)?;
        let sink = self.sink(&context);
        use turn::EventSink;
        sink.emit(vec![(
            "phase.running".into(),
            PhaseChanged {
                phase: ExecutionPhase::Running,
                worker: Some(self.spec.worker_identity.clone()),
                attempt: Some(ctx.info().attempt),
                ..PhaseChanged::default()
            }
            .into(),
        )])
        .await
        .map_err(|error| sink_error(&sink, error))?;
        let message = &context.spec.message;
        self.api
            .save_messages(
                &execution_id,
                0,
                0,
                &[sink.redactor.message(&Message::User {
                    text: message.clone(),
                })],
            )
            .await
            .map_err(api_error)?;
        tracing::info!(execution_id, agent = %context.agent_name, "Execution started.");
        Ok(Started {
            max_turns: context.agent.max_turns.unwrap_or(DEFAULT_MAX_TURNS).max(1),
        })
    }

    /// The body of [`AgentActivities::model_turn`].
    async fn model_turn_step(
        &self,
        ctx: &ActivityContext,
        input: TurnInput,
    ) -> Result<TurnOutcome, ActivityError> {
        let step = StepId {
            turn: input.turn,
            attempt: ctx.info().attempt,
        };
        // Only the messages stored since this runner's last turn of the execution.
        let conversation = self
            .conversations
            .read(&self.api, &input.execution_id, input.turn - 1)
            .await
            .map_err(api_error)?;
        let context = &conversation.context;
        let workspace = self.workspace(context)?;
        let toolbox = self.toolbox(&input.execution_id, &workspace).await?;
        let sink = self.sink(context);
        toolbox
            .refresh()
            .await
            .map_err(|error| fatal(error.to_string()))?;
        self.save_tool_snapshot(&input.execution_id, &toolbox)
            .await?;
        self.report_tool_events(&toolbox, &sink, step).await?;
        let mut messages = vec![Message::System {
            text: system_prompt(&context.agent, &toolbox),
        }];
        messages.extend(conversation.messages.iter().cloned());
        if input.runs_tool_calls && input.turn > 1 {
            let results = self
                .pending_tool_calls(
                    ctx,
                    &input,
                    context,
                    &workspace,
                    &toolbox,
                    &conversation.messages,
                    &conversation.places,
                )
                .await?;
            // The results already stored (a retried step) are among `results`, in call order:
            // they replace whatever of them the conversation holds.
            if !results.is_empty()
                && let Some(answer) = messages
                    .iter()
                    .rposition(|message| matches!(message, Message::Assistant { .. }))
            {
                messages.truncate(answer + 1);
            }
            messages.extend(results);
        }
        let tools = toolbox.specs();
        let config = self.model_config(context)?;
        let client = LlmClient::new(config.clone()).map_err(llm_error)?;
        let result = match turn::model_turn(&client, &messages, &tools, step, &sink).await {
            Ok(result) => result,
            Err(StepError::Llm(LlmError::Fatal { message }))
                if config.provider == LlmProvider::Ollama =>
            {
                return Err(fatal(explain_ollama_failure(&config, message).await));
            }
            Err(error) => return Err(step_error(&sink, error)),
        };
        let answer = sink.redactor.message(&Message::Assistant {
            text: result.text.clone(),
            tool_calls: result.tool_calls.clone(),
        });
        self.api
            .save_messages(&input.execution_id, input.turn, 0, &[answer])
            .await
            .map_err(api_error)?;
        tracing::info!(
            turn = step.turn,
            attempt = step.attempt,
            tool_calls = result.tool_calls.len(),
            input_tokens = result.usage.input_tokens,
            output_tokens = result.usage.output_tokens,
            model = %config.model,
            messages_read = conversation.fetched,
            "Model turn finished."
        );
        if result.tool_calls.is_empty() {
            // The run's last turn: nothing will read this conversation again, and its tools
            // are done.
            self.conversations.forget(&input.execution_id);
            drop(toolbox);
            self.toolboxes.close(&input.execution_id).await;
        }
        Ok(TurnOutcome {
            tool_calls: result.tool_calls.len() as u32,
        })
    }

    /// The body of [`AgentActivities::tool_call`].
    async fn tool_call_step(
        &self,
        ctx: &ActivityContext,
        input: ToolInput,
    ) -> Result<(), ActivityError> {
        let step = StepId {
            turn: input.turn,
            attempt: ctx.info().attempt,
        };
        // Only the turn's answer, which holds the call.
        let answer = MessagePlace {
            turn: input.turn,
            index: 0,
        };
        let context = self
            .api
            .run_context(&input.execution_id, input.turn, Wanted::At(answer))
            .await
            .map_err(api_error)?;
        let turn_calls = context
            .messages
            .iter()
            .find_map(|message| match message {
                Message::Assistant { tool_calls, .. } => Some(tool_calls.as_slice()),
                _ => None,
            })
            .unwrap_or_default();
        let calls = turn_calls.len();
        let call = turn_calls
            .get(input.index as usize)
            .cloned()
            .ok_or_else(|| {
                fatal(format!(
                    "turn {} has no tool call {} in the stored conversation",
                    input.turn, input.index
                ))
            })?;
        let workspace = self.workspace(&context)?;
        let toolbox = self.toolbox(&input.execution_id, &workspace).await?;
        self.save_tool_snapshot(&input.execution_id, &toolbox)
            .await?;
        self.run_tool_call(&context, &workspace, &toolbox, &call, step, input.index)
            .await?;
        // The last call of the last turn allowed: the run fails at its turn limit next, so its
        // tools are done.
        let max_turns = context.agent.max_turns.unwrap_or(DEFAULT_MAX_TURNS).max(1);
        if input.turn >= max_turns && input.index as usize + 1 >= calls {
            drop(toolbox);
            self.toolboxes.close(&input.execution_id).await;
        }
        Ok(())
    }

    /// Runs the tool calls of the turn before `input.turn` that have no result stored yet,
    /// concurrently, storing each result at its call's place as it finishes (a retried step
    /// finds them there); returns every call's result in call order.
    #[expect(
        clippy::too_many_arguments,
        reason = "one step's whole state, passed once"
    )]
    async fn pending_tool_calls(
        &self,
        ctx: &ActivityContext,
        input: &TurnInput,
        context: &RunContext,
        workspace: &stigmer_tools::Workspace,
        toolbox: &Toolbox,
        conversation: &[Message],
        places: &[MessagePlace],
    ) -> Result<Vec<Message>, ActivityError> {
        let Some(answer) = conversation
            .iter()
            .rposition(|message| matches!(message, Message::Assistant { .. }))
        else {
            return Ok(Vec::new());
        };
        let Message::Assistant { tool_calls, .. } = &conversation[answer] else {
            return Ok(Vec::new());
        };
        // What is stored after the answer, by place: index i + 1 holds call i's result (ids
        // may repeat or be empty: places count).
        let answered: std::collections::BTreeMap<u32, Message> = conversation[answer + 1..]
            .iter()
            .zip(places.get(answer + 1..).unwrap_or_default())
            .filter(|(message, place)| {
                matches!(message, Message::Tool { .. }) && place.turn == input.turn - 1
            })
            .map(|(message, place)| (place.index, message.clone()))
            .collect();
        let step = StepId {
            turn: input.turn - 1,
            attempt: ctx.info().attempt,
        };
        let runs = tool_calls.iter().enumerate().map(|(index, call)| {
            let stored = answered.get(&(index as u32 + 1)).cloned();
            async move {
                match stored {
                    Some(result) => Ok(result),
                    None => {
                        self.run_tool_call(context, workspace, toolbox, call, step, index as u32)
                            .await
                    }
                }
            }
        });
        futures::future::try_join_all(runs).await
    }

    /// Runs one tool call the model asked for in `step.turn` and stores its result after the
    /// turn's answer; returns the result as stored. A call that must not run twice (it may
    /// change something) first stores [`INTERRUPTED`] in its place, so an attempt lost in a
    /// crash is reported to the model rather than repeated.
    async fn run_tool_call(
        &self,
        context: &RunContext,
        workspace: &stigmer_tools::Workspace,
        toolbox: &Toolbox,
        call: &stigmer_llm::ToolCall,
        step: StepId,
        index: u32,
    ) -> Result<Message, ActivityError> {
        let sink = self.sink(context);
        let stored = |content: String, images: Vec<stigmer_llm::ToolImage>| {
            sink.redactor.message(&Message::Tool {
                call_id: call.id.clone(),
                name: call.name.clone(),
                content,
                images,
            })
        };
        if !toolbox.may_repeat(&call.name) {
            self.api
                .save_messages(
                    context.execution_id(),
                    step.turn,
                    index + 1,
                    &[stored(INTERRUPTED.to_owned(), Vec::new())],
                )
                .await
                .map_err(api_error)?;
        }
        let output = turn::tool_call_with(call, step, &sink, |progress| async move {
            if toolbox.runs(&call.name) {
                let report = move |update: stigmer_mcp::Progress| {
                    let _ = progress.send(turn::ProgressReport {
                        progress: update.progress,
                        total: update.total,
                        message: update.message,
                    });
                };
                toolbox.call(call, &report).await
            } else {
                let output = turn::run_builtin(workspace, call, turn::TOOL_DEADLINE).await;
                stigmer_tools::ToolOutput {
                    content: toolbox::spill(workspace, &call.id, output.content),
                    ..output
                }
                .into()
            }
        })
        .await
        .map_err(|error| step_error(&sink, error))?;
        let is_error = output.output.is_error;
        let result = stored(output.output.content, output.images);
        self.api
            .save_messages(
                context.execution_id(),
                step.turn,
                index + 1,
                std::slice::from_ref(&result),
            )
            .await
            .map_err(api_error)?;
        tracing::info!(
            turn = step.turn,
            attempt = step.attempt,
            index,
            tool = %call.name,
            is_error,
            "Tool call finished."
        );
        Ok(result)
    }
}

/// What the model reads for a call that may change something and whose attempt was lost (its
/// runner stopped while it ran): it is not run again.
pub const INTERRUPTED: &str = "Error: this call was interrupted (its runner stopped while it ran) and was not repeated, because running it again could repeat what it did. Check whether it took effect before calling it again.";

/// Whether a step's error ends the run: it was cancelled, or failed for good.
fn ends_the_run(error: &ActivityError) -> bool {
    match error {
        ActivityError::Cancelled { .. } => true,
        ActivityError::Application(failure) => failure.is_non_retryable(),
        _ => false,
    }
}

/// The agent's instructions, where its files are, then what its tools add (MCP servers'
/// instructions, the skills' listing, the shell).
fn system_prompt(agent: &AgentSpec, toolbox: &Toolbox) -> String {
    format!(
        "{}\n\nFile tools work inside your workspace; give paths relative to it.{}",
        agent.instructions.trim_end(),
        toolbox.prompt()
    )
}

/// Ollama refuses a model it does not have; say how to get it (never pull silently).
async fn explain_ollama_failure(config: &ModelConfig, message: String) -> String {
    match stigmer_llm::check_ollama_model(&config.base_url, &config.model).await {
        stigmer_llm::ModelCheck::Missing { .. } => format!(
            "Ollama at {} does not have the model {model}: run `ollama pull {model}` ({message})",
            config.base_url,
            model = config.model
        ),
        _ => message,
    }
}

/// Runs a step while heartbeating; a cancel stops it at once. The step's future is dropped on a
/// cancel, which also stops a built-in tool running on another thread (see `turn::tool_call`).
async fn with_heartbeats<T>(
    ctx: &ActivityContext,
    work: impl Future<Output = Result<T, ActivityError>>,
) -> Result<T, ActivityError> {
    let beat = async {
        loop {
            if let Err(error) = ctx.record_heartbeat(()).await {
                tracing::warn!(error = %error, "Cannot record a heartbeat.");
            }
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    };
    tokio::select! {
        result = work => result,
        () = ctx.cancelled() => Err(ActivityError::cancelled()),
        () = beat => unreachable!("the heartbeat loop never ends"),
    }
}

fn retryable(message: String) -> ActivityError {
    ActivityError::application(ApplicationFailure::new(message))
}

fn fatal(message: String) -> ActivityError {
    ActivityError::application(ApplicationFailure::non_retryable(message))
}

fn api_error(error: ApiError) -> ActivityError {
    match error {
        ApiError::Ended(message) => ActivityError::application(ApplicationFailure::non_retryable(
            format!("the execution can no longer run: {message}"),
        )),
        ApiError::Refused(message) => fatal(message),
        unavailable @ ApiError::Unavailable(_) => retryable(unavailable.to_string()),
    }
}

fn llm_error(error: LlmError) -> ActivityError {
    match error {
        LlmError::Retryable { message } => retryable(message),
        LlmError::Fatal { message } => fatal(message),
    }
}

fn sink_error(sink: &ApiSink, error: ApiError) -> ActivityError {
    if sink.ended.load(Ordering::SeqCst) {
        fatal(format!("the execution can no longer run: {error}"))
    } else {
        retryable(format!("cannot record events: {error}"))
    }
}

fn step_error(sink: &ApiSink, error: StepError) -> ActivityError {
    match error {
        StepError::Llm(error) => llm_error(error),
        StepError::Events(error) => sink_error(sink, error),
    }
}
