//! The steps of the durable agent loop: the activities of the `stigmer.AgentExecution`
//! workflow ([`crate::workflow`]). A model turn's step runs the tool calls of the turn before
//! that have no stored result, then calls the model; the other steps hold calls for approval,
//! start sub-agents and run the last turn's calls.
//!
//! Large data stays out of the workflow history: the conversation lives in the API server,
//! and activities exchange only ids, turn numbers and counts with the workflow.

use crate::api::{Api, ApiError, ApiSink, MessagePlace, Redactor, RunContext, Wanted};
use crate::approval;
use crate::compaction;
use crate::conversation::Conversations;
use crate::loops;
use crate::steps::{
    CallDecision, DEFAULT_MAX_TURNS, HeldCall, HoldInput, Started, StartedSubAgent, SubAgentsInput,
    ToolInput, TurnInput, TurnOutcome, default_approval_timeout,
};
use crate::subagents::{self, SubAgentOutcome, TaskCall};
use crate::telemetry;
use crate::toolbox::{self, ToolEnvironment, Toolbox, Toolboxes};
use crate::turn::{self, StepError, StepId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use stigmer_config::{LlmProvider, RunnerLaunchSpec};
use stigmer_llm::{LlmClient, LlmError, Message, ModelConfig};
use stigmer_proto::execution::{
    ApprovalDecided, ApprovalRequested, ContextCompacted, ExecutionPhase, PhaseChanged,
    SubAgentStarted, ToolCallFinished, ToolCallStarted,
};
use stigmer_resources::{AgentSpec, Provider};
use stigmer_telemetry::spans::ToolType;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

/// How often a running step heartbeats (the SDK sends at most one per 0.8 × the timeout).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

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
        let (execution_id, turn) = (input.execution_id.clone(), input.turn);
        let work = self.model_turn_step(&ctx, input);
        self.run_step(&ctx, "model_turn", &execution_id, turn, work)
            .await
    }

    /// Lists a turn's calls that wait for a decision (phase `waiting`), then runs the turn's
    /// calls that need none, storing their results like a model turn's step does.
    #[activity(name = "stigmer.HoldForApproval")]
    pub async fn hold_for_approval(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: HoldInput,
    ) -> Result<(), ActivityError> {
        let (execution_id, turn) = (input.execution_id.clone(), input.turn);
        let work = self.hold_step(&ctx, input);
        self.run_step(&ctx, "hold_for_approval", &execution_id, turn, work)
            .await
    }

    /// Creates the executions of a turn's sub-agent runs (each once, however often the step
    /// runs) and shows their `task` calls started.
    #[activity(name = "stigmer.StartSubAgents")]
    pub async fn start_sub_agents(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SubAgentsInput,
    ) -> Result<Vec<StartedSubAgent>, ActivityError> {
        let span = step_span(
            "start_sub_agents",
            &input.execution_id,
            input.turn,
            ctx.info().attempt,
        );
        let work = self.start_sub_agents_step(input);
        with_heartbeats(&ctx, work).instrument(span).await
    }

    /// One tool call the model asked for; its result is stored after the turn's answer.
    #[activity(name = "stigmer.ToolCall")]
    pub async fn tool_call(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ToolInput,
    ) -> Result<(), ActivityError> {
        let (execution_id, turn) = (input.execution_id.clone(), input.turn);
        let work = self.tool_call_step(&ctx, input);
        self.run_step(&ctx, "tool_call", &execution_id, turn, work)
            .await
    }
}

/// The span every step runs in, so that each line it logs names its execution.
fn step_span(step: &'static str, execution_id: &str, turn: u32, attempt: u32) -> tracing::Span {
    tracing::info_span!("step", step, execution_id = %execution_id, turn, attempt)
}

impl AgentActivities {
    /// Runs a step's `work` in its span, heartbeating; a step that ends the run closes its
    /// tools.
    async fn run_step<T>(
        &self,
        ctx: &ActivityContext,
        step: &'static str,
        execution_id: &str,
        turn: u32,
        work: impl Future<Output = Result<T, ActivityError>>,
    ) -> Result<T, ActivityError> {
        let span = step_span(step, execution_id, turn, ctx.info().attempt);
        let outcome = with_heartbeats(ctx, work).instrument(span).await;
        self.after_step(execution_id, &outcome).await;
        outcome
    }

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
            approval_timeout_secs: context
                .agent
                .approval
                .as_ref()
                .and_then(|approval| approval.timeout_seconds)
                .map_or_else(default_approval_timeout, u64::from),
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
        if !input.decisions.is_empty() {
            self.record_decisions(&sink, &input, step).await?;
        }
        if input.runs_tool_calls && input.turn > 1 {
            let results = self
                .pending_tool_calls(
                    ctx.info().attempt,
                    input.turn - 1,
                    ToolCallsNow {
                        context,
                        workspace: &workspace,
                        toolbox: &toolbox,
                    },
                    (&conversation.messages, &conversation.places),
                    CallPlan {
                        decisions: &input.decisions,
                        sub_agents: &input.sub_agents,
                        skip: &[],
                    },
                )
                .await?
                .into_iter()
                .flatten()
                .collect::<Vec<Message>>();
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
        let messages = self
            .fit_context(
                FitContext {
                    client: &client,
                    config: &config,
                    context,
                    turn: input.turn,
                    workspace: &workspace,
                    sink: &sink,
                    places: &conversation.places,
                },
                messages,
                &tools,
            )
            .await?;
        let started = std::time::SystemTime::now();
        let result = turn::model_turn(&client, &messages, &tools, step, &sink).await;
        telemetry::chat(
            &input.execution_id,
            &config,
            step,
            started,
            &messages,
            &result,
            &sink.redactor,
        );
        let result = match result {
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
        let ids = approval::approval_ids(&result.tool_calls);
        let tasks = result
            .tool_calls
            .iter()
            .zip(&ids)
            .enumerate()
            .filter(|(_, (call, _))| call.name == subagents::TASK_TOOL && toolbox.has_sub_agents())
            .filter_map(|(index, (call, call_id))| {
                let (sub_agent, _) = toolbox.task(call).ok()?;
                Some(TaskCall {
                    index: index as u32,
                    call_id: call_id.clone(),
                    sub_agent,
                })
            })
            .collect();
        let held = result
            .tool_calls
            .iter()
            .zip(ids)
            .enumerate()
            .filter_map(|(index, (call, call_id))| {
                toolbox.approval_reason(&call.name).map(|reason| HeldCall {
                    index: index as u32,
                    call_id,
                    reason,
                })
            })
            .collect();
        if result.tool_calls.is_empty() {
            // The run's last turn: nothing will read this conversation again, and its tools
            // are done.
            self.conversations.forget(&input.execution_id);
            drop(toolbox);
            self.toolboxes.close(&input.execution_id).await;
        }
        Ok(TurnOutcome {
            tool_calls: result.tool_calls.len() as u32,
            held,
            tasks,
        })
    }

    /// The prompt to send: `messages` (the system prompt, then the conversation) when it fits
    /// the model's context window with room to spare; else with the older messages replaced by
    /// a summary (a model call of its own), which is kept with the execution for the turns
    /// after, the whole history written to `.stigmer/history/<execution>.md` and a
    /// `context_compacted` event. A prompt that cannot fit fails the run: it is never sent.
    async fn fit_context(
        &self,
        fit: FitContext<'_>,
        messages: Vec<Message>,
        tools: &[stigmer_llm::ToolSpec],
    ) -> Result<Vec<Message>, ActivityError> {
        let FitContext {
            client,
            config,
            context,
            turn,
            workspace,
            sink,
            places,
        } = fit;
        let Some((system, conversation)) = messages.split_first() else {
            return Ok(messages);
        };
        let window = client
            .context_window(
                context
                    .agent
                    .model
                    .as_ref()
                    .and_then(|model| model.context_window),
            )
            .await;
        let whole = compaction::Prompt {
            system,
            conversation,
            previous: None,
            tools,
            reported: None,
        };
        // The whole conversation, when it fits, is better than any summary of it; the stored
        // record is not even read.
        if whole.estimate() * 100 <= window.tokens * compaction::COMPACT_AT_PERCENT {
            return Ok(messages);
        }
        let execution_id = context.execution_id();
        let previous: Option<compaction::Compaction> = self
            .api
            .execution_state(execution_id, compaction::STATE_KEY)
            .await
            .map_err(api_error)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .filter(|record: &compaction::Compaction| record.applies_to(places, turn));
        let mut prompt = compaction::Prompt {
            previous: previous.as_ref(),
            ..whole
        };
        let Some(plan) = compaction::plan(&prompt, window.tokens)
            .map_err(|error| fatal(format!("{error} (window: {window})")))?
        else {
            return Ok(prompt.messages());
        };
        let history_path =
            compaction::write_history(workspace, execution_id, &messages).map_err(|error| {
                retryable(format!("cannot write the conversation's history: {error}"))
            })?;
        let summarizer = LlmClient::new(ModelConfig {
            max_tokens: Some(u32::try_from(plan.summary_tokens).unwrap_or(u32::MAX)),
            ..config.clone()
        })
        .map_err(llm_error)?;
        let request = compaction::summary_request(&plan.folded_messages(&prompt), window.tokens);
        let summary = summarizer
            .stream_turn(&request, &[], &mut |_| {})
            .await
            .map_err(llm_error)?;
        let summary = summary.text.trim();
        if summary.is_empty() {
            return Err(retryable(
                "the model returned an empty summary of the conversation".into(),
            ));
        }
        let record = plan.record(
            turn,
            sink.redactor.text(summary),
            history_path.clone(),
            places,
        );
        self.api
            .put_execution_state(
                execution_id,
                compaction::STATE_KEY,
                serde_json::to_string(&record).unwrap_or_default(),
            )
            .await
            .map_err(api_error)?;
        prompt.previous = Some(&record);
        let tokens_after = compaction::check(&prompt, window.tokens)
            .map_err(|error| fatal(format!("{error} (window: {window})")))?;
        use turn::EventSink;
        sink.emit(vec![(
            format!("t{turn}.compacted"),
            ContextCompacted {
                turn,
                messages: plan.folded as u32,
                tokens_before: plan.tokens_before,
                tokens_after,
                window: window.tokens,
                history_path,
                parent: None,
            }
            .into(),
        )])
        .await
        .map_err(|error| sink_error(sink, error))?;
        tracing::info!(
            turn,
            folded = plan.folded,
            tokens_before = plan.tokens_before,
            tokens_after,
            window = window.tokens,
            "Conversation compacted."
        );
        Ok(prompt.messages())
    }

    /// The body of [`AgentActivities::hold_for_approval`].
    async fn hold_step(
        &self,
        ctx: &ActivityContext,
        input: HoldInput,
    ) -> Result<(), ActivityError> {
        let conversation = self
            .conversations
            .read(&self.api, &input.execution_id, input.turn)
            .await
            .map_err(api_error)?;
        let context = &conversation.context;
        let workspace = self.workspace(context)?;
        let toolbox = self.toolbox(&input.execution_id, &workspace).await?;
        let sink = self.sink(context);
        let calls = conversation
            .messages
            .iter()
            .rev()
            .find_map(|message| match message {
                Message::Assistant { tool_calls, .. } => Some(tool_calls.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let mut events: Vec<turn::PendingEvent> = Vec::new();
        for held in &input.held {
            let call = calls.get(held.index as usize).ok_or_else(|| {
                fatal(format!(
                    "turn {} has no tool call {} in the stored conversation",
                    input.turn, held.index
                ))
            })?;
            events.push((
                format!("t{}.approval.{}", input.turn, held.index),
                ApprovalRequested {
                    turn: input.turn,
                    index: held.index,
                    call_id: held.call_id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    reason: held.reason.clone(),
                    expires_at: input.expires_at.clone(),
                    parent: None,
                }
                .into(),
            ));
        }
        events.push((
            format!("t{}.approval.phase", input.turn),
            PhaseChanged {
                phase: ExecutionPhase::Waiting,
                reason: Some(format!(
                    "{} tool call{} {} for a decision",
                    input.held.len(),
                    if input.held.len() == 1 { "" } else { "s" },
                    if input.held.len() == 1 {
                        "waits"
                    } else {
                        "wait"
                    },
                )),
                ..PhaseChanged::default()
            }
            .into(),
        ));
        use turn::EventSink;
        sink.emit(events)
            .await
            .map_err(|error| sink_error(&sink, error))?;
        tracing::info!(
            turn = input.turn,
            held = input.held.len(),
            "Tool calls wait for a decision."
        );
        let skip: Vec<u32> = input
            .held
            .iter()
            .map(|held| held.index)
            .chain(input.tasks.iter().copied())
            .collect();
        self.pending_tool_calls(
            ctx.info().attempt,
            input.turn,
            ToolCallsNow {
                context,
                workspace: &workspace,
                toolbox: &toolbox,
            },
            (&conversation.messages, &conversation.places),
            CallPlan {
                decisions: &[],
                sub_agents: &[],
                skip: &skip,
            },
        )
        .await?;
        Ok(())
    }

    /// Reports that the run goes on after its calls were decided: phase `running`, and the
    /// calls nobody decided in time as denied by the timeout (a person's decisions were
    /// reported by the API server when they were taken).
    async fn record_decisions(
        &self,
        sink: &ApiSink,
        input: &TurnInput,
        step: StepId,
    ) -> Result<(), ActivityError> {
        let mut events: Vec<turn::PendingEvent> = input
            .decisions
            .iter()
            .filter(|decision| decision.timed_out)
            .map(|decision| {
                (
                    format!("approval.t{}.{}", input.turn - 1, decision.call_id),
                    ApprovalDecided {
                        turn: input.turn - 1,
                        call_id: decision.call_id.clone(),
                        approved: false,
                        message: Some("approval timed out".into()),
                        by: "timeout".into(),
                        parent: None,
                    }
                    .into(),
                )
            })
            .collect();
        events.push((
            format!("t{}.a{}.decided", step.turn, step.attempt),
            PhaseChanged {
                phase: ExecutionPhase::Running,
                worker: Some(self.spec.worker_identity.clone()),
                attempt: Some(step.attempt),
                ..PhaseChanged::default()
            }
            .into(),
        ));
        use turn::EventSink;
        sink.emit(events)
            .await
            .map_err(|error| sink_error(sink, error))
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
        let now = ToolCallsNow {
            context: &context,
            workspace: &workspace,
            toolbox: &toolbox,
        };
        self.run_tool_call(now, &call, step, input.index, &loops::Repeat::Fresh)
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

    /// Runs the tool calls of turn `answer_turn` that have no result stored yet, concurrently,
    /// storing each result at its call's place as it finishes (a retried step finds them
    /// there); returns every call's result in call order, `None` for the calls in `skip` (they
    /// wait for a decision). A call with a decision runs only when approved; a denied one gets
    /// the denial as its result.
    async fn pending_tool_calls(
        &self,
        attempt: u32,
        answer_turn: u32,
        now: ToolCallsNow<'_>,
        (conversation, places): (&[Message], &[MessagePlace]),
        plan: CallPlan<'_>,
    ) -> Result<Vec<Option<Message>>, ActivityError> {
        let Some(answer) = conversation
            .iter()
            .rposition(|message| matches!(message, Message::Assistant { .. }))
        else {
            return Ok(Vec::new());
        };
        let Message::Assistant { tool_calls, .. } = &conversation[answer] else {
            return Ok(Vec::new());
        };
        // The same call again and again: warned in its result from the third, the run fails
        // before the fifth (before any call of the answer runs, so a retry decides the same).
        if let Some(reason) = loops::first_loop(&conversation[..answer], tool_calls) {
            return Err(fatal(reason));
        }
        let repeats = loops::verdicts(&conversation[..answer], tool_calls);
        // What is stored after the answer, by place: index i + 1 holds call i's result (ids
        // may repeat or be empty: places count).
        let answered: BTreeMap<u32, Message> = conversation[answer + 1..]
            .iter()
            .zip(places.get(answer + 1..).unwrap_or_default())
            .filter(|(message, place)| {
                matches!(message, Message::Tool { .. }) && place.turn == answer_turn
            })
            .map(|(message, place)| (place.index, message.clone()))
            .collect();
        let step = StepId {
            turn: answer_turn,
            attempt,
        };
        let runs = tool_calls.iter().enumerate().map(|(index, call)| {
            let index = index as u32;
            let stored = answered.get(&(index + 1)).cloned();
            let decision = plan
                .decisions
                .iter()
                .find(|decision| decision.index == index);
            let sub_agent = plan
                .sub_agents
                .iter()
                .find(|outcome| outcome.index == index);
            let skipped = plan.skip.contains(&index);
            let repeat = &repeats[index as usize];
            async move {
                match (stored, decision) {
                    (Some(result), _) => Ok(Some(result)),
                    (None, _) if skipped => Ok(None),
                    (None, Some(decision)) if !decision.approved => {
                        let text = if decision.timed_out {
                            approval::TIMED_OUT.to_owned()
                        } else {
                            approval::denial(decision.message.as_deref())
                        };
                        self.store_result(now.context, call, step, index, text)
                            .await
                            .map(Some)
                    }
                    (None, _) if let Some(outcome) = sub_agent => self
                        .store_sub_agent_result(now, call, step, index, outcome)
                        .await
                        .map(Some),
                    (None, _)
                        if call.name == subagents::TASK_TOOL && now.toolbox.has_sub_agents() =>
                    {
                        // A `task` call the workflow did not run: its arguments were wrong.
                        let text = match now.toolbox.task(call) {
                            Err(text) => text,
                            Ok(_) => "Error: this task call was not run.".to_owned(),
                        };
                        self.store_result(now.context, call, step, index, text)
                            .await
                            .map(Some)
                    }
                    (None, _) => self
                        .run_tool_call(now, call, step, index, repeat)
                        .await
                        .map(Some),
                }
            }
        });
        futures::future::try_join_all(runs).await
    }

    /// The body of [`AgentActivities::start_sub_agents`].
    async fn start_sub_agents_step(
        &self,
        input: SubAgentsInput,
    ) -> Result<Vec<StartedSubAgent>, ActivityError> {
        let answer = MessagePlace {
            turn: input.turn,
            index: 0,
        };
        let context = self
            .api
            .run_context(&input.execution_id, input.turn, Wanted::At(answer))
            .await
            .map_err(api_error)?;
        let calls = context
            .messages
            .iter()
            .find_map(|message| match message {
                Message::Assistant { tool_calls, .. } => Some(tool_calls.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let sink = self.sink(&context);
        let mut started = Vec::new();
        let mut events: Vec<turn::PendingEvent> = Vec::new();
        for task in &input.tasks {
            let Some(call) = calls.get(task.index as usize) else {
                return Err(fatal(format!(
                    "turn {} has no tool call {} in the stored conversation",
                    input.turn, task.index
                )));
            };
            let description = call
                .arguments
                .get("description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            // Recorded by key, so a retried step finds the execution an earlier attempt
            // created instead of creating another.
            let key = format!("subagent.t{}.{}", input.turn, task.index);
            let execution_id = match self
                .api
                .execution_state(&input.execution_id, &key)
                .await
                .map_err(api_error)?
            {
                Some(json) => serde_json::from_str::<String>(&json)
                    .map_err(|error| fatal(format!("the record {key} is unreadable: {error}")))?,
                None => {
                    let created = self
                        .api
                        .create_sub_agent_execution(
                            &input.execution_id,
                            &context.agent_name,
                            &task.sub_agent,
                            &task.call_id,
                            description,
                        )
                        .await
                        .map_err(api_error)?;
                    self.api
                        .put_execution_state(
                            &input.execution_id,
                            &key,
                            serde_json::to_string(&created).unwrap_or_default(),
                        )
                        .await
                        .map_err(api_error)?;
                    created
                }
            };
            events.push((
                format!("t{}.sub.{}.started", input.turn, task.index),
                ToolCallStarted {
                    turn: input.turn,
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    parent: None,
                }
                .into(),
            ));
            events.push((
                format!("t{}.sub.{}.execution", input.turn, task.index),
                SubAgentStarted {
                    turn: input.turn,
                    call_id: call.id.clone(),
                    name: task.sub_agent.clone(),
                    execution_id: execution_id.clone(),
                    parent: None,
                }
                .into(),
            ));
            started.push(StartedSubAgent {
                index: task.index,
                sub_agent: task.sub_agent.clone(),
                execution_id,
            });
        }
        use turn::EventSink;
        sink.emit(events)
            .await
            .map_err(|error| sink_error(&sink, error))?;
        tracing::info!(
            turn = input.turn,
            sub_agents = started.len(),
            "Sub-agents started."
        );
        Ok(started)
    }

    /// Stores a sub-agent's final answer (or why it has none) as its `task` call's result.
    async fn store_sub_agent_result(
        &self,
        now: ToolCallsNow<'_>,
        call: &stigmer_llm::ToolCall,
        step: StepId,
        index: u32,
        outcome: &SubAgentOutcome,
    ) -> Result<Message, ActivityError> {
        let answer = match outcome.failure {
            Some(_) => None,
            None => self
                .api
                .final_answer(&outcome.execution_id)
                .await
                .map_err(api_error)?,
        };
        let text = subagents::result_text(outcome, answer.as_deref());
        let is_error = outcome.failure.is_some();
        let text = toolbox::spill(now.workspace, &call.id, text);
        let result = self
            .store_result(now.context, call, step, index, text.clone())
            .await?;
        let sink = self.sink(now.context);
        use turn::EventSink;
        sink.emit(vec![(
            format!("t{}.sub.{index}.finished", step.turn),
            ToolCallFinished {
                turn: step.turn,
                call_id: call.id.clone(),
                name: call.name.clone(),
                result: turn::trim(&text, turn::EVENT_RESULT_LIMIT),
                is_error,
                parent: None,
            }
            .into(),
        )])
        .await
        .map_err(|error| sink_error(&sink, error))?;
        Ok(result)
    }

    /// Stores `text` as the result of a call that did not run (it was denied).
    async fn store_result(
        &self,
        context: &RunContext,
        call: &stigmer_llm::ToolCall,
        step: StepId,
        index: u32,
        text: String,
    ) -> Result<Message, ActivityError> {
        let redactor = Redactor::new(&context.secrets);
        let result = redactor.message(&Message::Tool {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: text,
            images: Vec::new(),
        });
        self.api
            .save_messages(
                context.execution_id(),
                step.turn,
                index + 1,
                std::slice::from_ref(&result),
            )
            .await
            .map_err(api_error)?;
        tracing::info!(turn = step.turn, index, tool = %call.name, "Tool call denied.");
        Ok(result)
    }

    /// Runs one tool call the model asked for in `step.turn` and stores its result after the
    /// turn's answer; returns the result as stored. A call that must not run twice (it may
    /// change something) first stores [`INTERRUPTED`] in its place, so an attempt lost in a
    /// crash is reported to the model rather than repeated.
    async fn run_tool_call(
        &self,
        now: ToolCallsNow<'_>,
        call: &stigmer_llm::ToolCall,
        step: StepId,
        index: u32,
        repeat: &loops::Repeat,
    ) -> Result<Message, ActivityError> {
        let ToolCallsNow {
            context,
            workspace,
            toolbox,
        } = now;
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
        let tool_type = if toolbox.runs(&call.name) && call.name != toolbox::SHELL_TOOL {
            ToolType::Extension
        } else {
            ToolType::Function
        };
        let started = std::time::SystemTime::now();
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
        .await;
        telemetry::tool(
            context.execution_id(),
            call,
            tool_type,
            step,
            started,
            output
                .as_ref()
                .ok()
                .map(|output| (output.output.content.as_str(), output.output.is_error)),
            &sink.redactor,
        );
        let output = output.map_err(|error| step_error(&sink, error))?;
        let is_error = output.output.is_error;
        let result = loops::annotate(stored(output.output.content, output.images), repeat);
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

/// What became of a turn's calls that a step does not simply run.
#[derive(Clone, Copy)]
struct CallPlan<'a> {
    /// Decisions on calls that waited for approval.
    decisions: &'a [CallDecision],
    /// How the sub-agents of `task` calls ended.
    sub_agents: &'a [SubAgentOutcome],
    /// Calls this step leaves alone (they wait, or run as sub-agents).
    skip: &'a [u32],
}

/// What fitting a prompt into the model's window needs of the step.
#[derive(Clone, Copy)]
struct FitContext<'a> {
    client: &'a LlmClient,
    config: &'a ModelConfig,
    context: &'a RunContext,
    turn: u32,
    workspace: &'a stigmer_tools::Workspace,
    sink: &'a ApiSink,
    places: &'a [MessagePlace],
}

/// What running a step's tool calls needs of the step.
#[derive(Clone, Copy)]
struct ToolCallsNow<'a> {
    context: &'a RunContext,
    workspace: &'a stigmer_tools::Workspace,
    toolbox: &'a Toolbox,
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
