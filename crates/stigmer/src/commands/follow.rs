//! Following one execution's event log to its end: [`Follow`] reads it through
//! `stigmer_client::feed::EventFeed` from the daemon of the home ([`DaemonSource`] connects again
//! after a break, re-reading the address and token a restart may change), shows it on the
//! [`Screen`] with [`crate::render`], and turns how it ended into an exit code. Ctrl-C cancels
//! (`run`) or detaches (`watch`). An execution that has ended is replayed from the store file when
//! no daemon runs. A tool call that waits for approval shows the commands that decide it; `run`
//! on a terminal also asks inline ([`Prompter`]) while it keeps following.
//!
//! Nested executions are followed too ([`Nested`]): the agent execution of a workflow's `call:
//! agent` task and the sub-agent of an agent's `task` call; their events are shown under the
//! work that started them (with `--json`, a sub-agent's events as lines of their own naming
//! their parent), and the event that ends that work waits for them.
//!
//! Following survives a restarting server: the log numbers its events, so after a broken stream
//! the feed subscribes again after the last event it showed, and nothing is lost or shown twice.

use super::approvals::{PromptInput, Prompter};
use super::execution_output::{
    execution_failure, execution_kind, outcome_of, status_duration, workflow_status_of,
};
use super::output::decode;
use crate::client::DaemonClient;
use crate::failure::{EXIT_INTERRUPTED, Failure};
use crate::printer::{Printer, print_data, print_text};
use crate::render::{Event, Outcome, Output, Renderer, Style, problem_text};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use stigmer_client::feed::{EventFeed, EventSource, FeedError, FeedItem};
use stigmer_config::{Component, StigmerHome};
use stigmer_proto::execution::{EventParent, ExecutionKind, ExecutionPhase, ParentKind};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, ExecutionEvent, GetExecutionRequest, SubscribeRequest,
};
use stigmer_resources::Resource;
use stigmer_store::{SqliteStore, Store};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tonic::{Code, Status, Streaming};

/// How long to keep following after Ctrl-C asked for cancellation, and how long `cancel`
/// waits to say how the execution ended.
pub(super) const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// Bound of the small requests made around following (cancel, the final status).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Events read from the store at a time when replaying without a daemon.
const REPLAY_PAGE: usize = 1000;
/// How long the event that ends nested work (or the execution) waits for the nested
/// execution's events still on their way.
const NESTED_WAIT: Duration = Duration::from_secs(5);

/// Shows the stored events of an execution that has ended, read from the store file (no daemon
/// runs), and exits as [`Follow::run`] would.
pub(super) fn replay_offline(
    home: &StigmerHome,
    execution: Resource,
    json: bool,
    started: Instant,
) -> Result<ExitCode, Failure> {
    let store_failure = |error: stigmer_store::StoreError| Failure::new(error.to_string());
    let mut screen = Screen::new(json, execution_kind(&execution.metadata.name));
    if let Some(store) = SqliteStore::open_if_exists(&home.store_file()).map_err(store_failure)? {
        let mut last = 0;
        'pages: loop {
            let page = store
                .events_after(&execution.metadata.name, last, REPLAY_PAGE)
                .map_err(store_failure)?;
            let full = page.len() == REPLAY_PAGE;
            for stored in page {
                last = stored.seq;
                let event = Event::new(
                    stored.execution_id,
                    stored.seq,
                    stored.ts,
                    &stored.kind,
                    stored.data,
                );
                screen.show(&event);
                replay_nested_offline(&store, &mut screen, &execution.metadata.name, &event)
                    .map_err(store_failure)?;
                if screen.renderer.outcome().is_some() {
                    break 'pages;
                }
            }
            if !full {
                break;
            }
        }
    }
    let execution_id = execution.metadata.name.clone();
    screen.finish(home, &execution_id, Some(execution), started, false)
}

/// Shows, right under the event that started it, the stored events of the nested execution an
/// event of a replayed execution started (a sub-agent's run, a workflow's agent call): it
/// ended before the replayed execution did, so its whole log is there.
fn replay_nested_offline(
    store: &SqliteStore,
    screen: &mut Screen,
    execution_id: &str,
    event: &Event,
) -> Result<(), stigmer_store::StoreError> {
    use stigmer_proto::execution::ExecutionEvent as Typed;
    let (nest, child) = match &event.event {
        Typed::SubAgentStarted(started) => (
            Nest::SubAgent(started.call_id.clone()),
            started.execution_id.clone(),
        ),
        Typed::AgentCallStarted(call) if !screen.json => (
            Nest::AgentCall(call.reference.clone()),
            call.execution_id.clone(),
        ),
        _ => return Ok(()),
    };
    let mut last = 0;
    loop {
        let page = store.events_after(&child, last, REPLAY_PAGE)?;
        let full = page.len() == REPLAY_PAGE;
        for stored in page {
            last = stored.seq;
            let nested = Event::new(
                stored.execution_id,
                stored.seq,
                stored.ts,
                &stored.kind,
                stored.data,
            );
            let outputs = match &nest {
                Nest::SubAgent(call_id) if screen.json => {
                    let parent = EventParent {
                        kind: ParentKind::ToolCall,
                        id: call_id.clone(),
                    };
                    print_data(&nested.nested_in(execution_id, &parent).to_json_line());
                    continue;
                }
                Nest::SubAgent(call_id) => screen.renderer.render_sub_agent(call_id, &nested),
                Nest::AgentCall(reference) => screen.renderer.render_agent_call(reference, &nested),
            };
            screen.write(outputs);
        }
        if !full {
            return Ok(());
        }
    }
}

/// What Ctrl-C does while following.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum OnInterrupt {
    /// `run`: cancel the execution, follow it to its end (bounded), exit 130.
    Cancel,
    /// `watch`: stop watching; the execution goes on.
    Detach,
}

/// Ctrl-C as a stream, installed before anything it should interrupt starts.
pub(super) fn interrupts() -> Result<Signal, Failure> {
    signal(SignalKind::interrupt())
        .map_err(|error| Failure::new(format!("cannot handle Ctrl-C: {error}")))
}

/// Following one execution to its end.
pub(super) struct Follow<'a> {
    pub(super) home: &'a StigmerHome,
    pub(super) execution_id: String,
    /// An agent's or a workflow's (shown as a tree of tasks, ending with its output).
    pub(super) kind: ExecutionKind,
    pub(super) json: bool,
    pub(super) on_interrupt: OnInterrupt,
    /// When the command started (the duration of last resort).
    pub(super) started: Instant,
    /// Ask on the terminal about tool calls that wait for approval (`run` with a terminal).
    pub(super) ask_approvals: bool,
}

enum Step {
    Feed(Result<FeedItem, FeedError>),
    /// What the follower of a nested execution sent.
    Nested(NestedItem),
    Interrupted,
    CancelWaitOver,
    Prompt(PromptInput),
}

impl Follow<'_> {
    /// Follows the execution until it ends, or Ctrl-C says to stop; the exit code says how it
    /// ended. `client` is used for the first subscription.
    pub(super) async fn run(
        self,
        client: Option<DaemonClient>,
        mut interrupts: Signal,
    ) -> Result<ExitCode, Failure> {
        let id = self.execution_id.clone();
        let mut screen = Screen::new(self.json, self.kind);
        let source = DaemonSource {
            home: self.home.clone(),
            execution_id: id.clone(),
            first: client,
            current: None,
        };
        let mut feed = EventFeed::new(source, &id);
        let mut cancel_deadline: Option<tokio::time::Instant> = None;
        let mut nested = Nested::new();
        let mut prompter = self
            .ask_approvals
            .then(|| Prompter::new(self.home, &self.execution_id));
        loop {
            let step = tokio::select! {
                item = feed.next() => Step::Feed(item),
                input = next_prompt(&mut prompter) => Step::Prompt(input),
                Some(item) = nested.receiver.recv() => Step::Nested(item),
                Some(()) = interrupts.recv() => Step::Interrupted,
                () = sleep_until(cancel_deadline), if cancel_deadline.is_some() => {
                    Step::CancelWaitOver
                }
            };
            match step {
                Step::Feed(item) => match item.map_err(feed_failure)? {
                    FeedItem::Event(event) => {
                        let event = Event::from_proto(event);
                        // The nested work this event ends shows all of its own first.
                        let asking = cancel_deadline.is_none();
                        let ended = ends_nest(&event.event);
                        if event.event.is_terminal() || ended.is_some() {
                            let of = |nest: &Nest| ended.as_ref().is_none_or(|ended| nest == ended);
                            self.catch_up(&mut screen, &mut prompter, &mut nested, asking, of)
                                .await;
                        }
                        let outputs = screen.renderer.render(&event);
                        let visible = self.json || !outputs.is_empty();
                        // An open question moves below what is written.
                        if let Some(prompter) = prompter.as_mut().filter(|_| visible) {
                            prompter.hide_question();
                        }
                        screen.emit(&event, outputs);
                        if screen.renderer.outcome().is_some() {
                            break;
                        }
                        if let Some(prompter) = &mut prompter
                            && cancel_deadline.is_none()
                        {
                            prompter.on_event(&event.execution_id, &event.event);
                            if visible {
                                prompter.show_question();
                            }
                        }
                        match &event.event {
                            // `--json` shows a workflow's own events only.
                            stigmer_proto::execution::ExecutionEvent::AgentCallStarted(call)
                                if !self.json =>
                            {
                                nested.follow(
                                    self.home,
                                    Nest::AgentCall(call.reference.clone()),
                                    &call.execution_id,
                                );
                            }
                            stigmer_proto::execution::ExecutionEvent::SubAgentStarted(started)
                                if started.parent.is_none() =>
                            {
                                nested.follow(
                                    self.home,
                                    Nest::SubAgent(started.call_id.clone()),
                                    &started.execution_id,
                                );
                            }
                            _ => {}
                        }
                    }
                    FeedItem::Notice(text) => screen.note(&text),
                },
                Step::Nested(item) => {
                    let asking = cancel_deadline.is_none();
                    self.show_nested(&mut screen, &mut prompter, &mut nested, asking, item);
                }
                Step::Interrupted if cancel_deadline.is_some() => {
                    screen.note("stopped waiting for the execution to stop");
                    return Ok(ExitCode::from(EXIT_INTERRUPTED));
                }
                Step::Interrupted => match self.on_interrupt {
                    OnInterrupt::Detach => {
                        screen.note(&format!(
                            "stopped watching; execution {id} goes on (stop it with \
                             `stigmer execution cancel {id}`)"
                        ));
                        return Ok(ExitCode::from(EXIT_INTERRUPTED));
                    }
                    OnInterrupt::Cancel => {
                        screen.note(&format!(
                            "cancelling execution {id} (Ctrl-C again to stop waiting)"
                        ));
                        if let Err(problem) = request_cancel(self.home, &id).await {
                            screen.warning(&problem);
                        }
                        cancel_deadline = Some(tokio::time::Instant::now() + CANCEL_WAIT);
                    }
                },
                Step::Prompt(input) => {
                    if let Some(prompter) = &mut prompter {
                        prompter.handle(input);
                    }
                }
                Step::CancelWaitOver => {
                    screen.warning(&format!(
                        "execution {id} did not stop within {}s; see `stigmer execution get {id}`",
                        CANCEL_WAIT.as_secs()
                    ));
                    return Ok(ExitCode::from(EXIT_INTERRUPTED));
                }
            }
        }
        let execution = fetch_execution(self.home, &id).await;
        screen.finish(
            self.home,
            &id,
            execution,
            self.started,
            cancel_deadline.is_some(),
        )
    }
}

impl Follow<'_> {
    /// Shows what the follower of a nested execution sent, under the work that started it;
    /// the prompter learns of a sub-agent's calls that wait while it is `asking` (not after
    /// Ctrl-C).
    fn show_nested(
        &self,
        screen: &mut Screen,
        prompter: &mut Option<Prompter>,
        nested: &mut Nested,
        asking: bool,
        (nest, execution_id, item): NestedItem,
    ) {
        let Some(event) = item else {
            nested.following.remove(&(nest, execution_id));
            return;
        };
        let event = Event::from_proto(event);
        let outputs = match &nest {
            Nest::AgentCall(reference) => screen.renderer.render_agent_call(reference, &event),
            Nest::SubAgent(call_id) if self.json => {
                let parent = EventParent {
                    kind: ParentKind::ToolCall,
                    id: call_id.clone(),
                };
                print_data(&event.nested_in(&self.execution_id, &parent).to_json_line());
                return;
            }
            Nest::SubAgent(call_id) => screen.renderer.render_sub_agent(call_id, &event),
        };
        let Some(prompter) = prompter else {
            screen.write(outputs);
            return;
        };
        let visible = !outputs.is_empty();
        if visible {
            prompter.hide_question();
        }
        screen.write(outputs);
        if asking && matches!(nest, Nest::SubAgent(_)) {
            prompter.on_event(&event.execution_id, &event.event);
        }
        if visible {
            prompter.show_question();
        }
    }

    /// Shows what nested executions sent until none that `of` selects is followed any more
    /// (each ends with its execution), or [`NESTED_WAIT`] passed.
    async fn catch_up(
        &self,
        screen: &mut Screen,
        prompter: &mut Option<Prompter>,
        nested: &mut Nested,
        asking: bool,
        of: impl Fn(&Nest) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + NESTED_WAIT;
        while nested.following.iter().any(|(nest, _)| of(nest)) {
            match tokio::time::timeout_at(deadline, nested.receiver.recv()).await {
                Ok(Some(item)) => self.show_nested(screen, prompter, nested, asking, item),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// Nested work of a followed execution whose own execution is followed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Nest {
    /// A workflow's `call: agent` task (its reference).
    AgentCall(String),
    /// An agent's `task` call (its call id), which runs a sub-agent.
    SubAgent(String),
}

/// The nested work an event of the followed execution ends, if any.
fn ends_nest(event: &stigmer_proto::execution::ExecutionEvent) -> Option<Nest> {
    use stigmer_proto::execution::ExecutionEvent as Typed;
    match event {
        Typed::ToolCallFinished(finished) if finished.parent.is_none() => {
            Some(Nest::SubAgent(finished.call_id.clone()))
        }
        Typed::TaskCompleted(completed) => Some(Nest::AgentCall(completed.reference.clone())),
        Typed::TaskFailed(failed) => Some(Nest::AgentCall(failed.reference.clone())),
        _ => None,
    }
}

/// What a nested execution's follower sends: its work, its execution, and an event of it, or
/// `None` once following it ended.
type NestedItem = (Nest, String, Option<ExecutionEvent>);

/// The nested executions being followed, each by a task of its own that sends its events here
/// (aborted when following ends).
struct Nested {
    sender: tokio::sync::mpsc::UnboundedSender<NestedItem>,
    receiver: tokio::sync::mpsc::UnboundedReceiver<NestedItem>,
    tasks: tokio::task::JoinSet<()>,
    /// The nested executions whose follower did not end yet.
    following: HashSet<(Nest, String)>,
}

impl Nested {
    fn new() -> Nested {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        Nested {
            sender,
            receiver,
            tasks: tokio::task::JoinSet::new(),
            following: HashSet::new(),
        }
    }

    fn follow(&mut self, home: &StigmerHome, nest: Nest, execution_id: &str) {
        let key = (nest, execution_id.to_owned());
        if self.following.insert(key.clone()) {
            self.tasks
                .spawn(follow_nested(home.clone(), key, self.sender.clone()));
        }
    }
}

/// Sends the events of a nested execution to `items` until it ends, then `None`. Best effort:
/// a feed that is lost ends it quietly (the nested work's result still says how it went).
async fn follow_nested(
    home: StigmerHome,
    (nest, execution_id): (Nest, String),
    items: tokio::sync::mpsc::UnboundedSender<NestedItem>,
) {
    let source = DaemonSource {
        home,
        execution_id: execution_id.clone(),
        first: None,
        current: None,
    };
    let mut feed = EventFeed::new(source, &execution_id);
    while let Ok(item) = feed.next().await {
        let FeedItem::Event(event) = item else {
            continue;
        };
        let terminal = event.event().is_terminal();
        if items
            .send((nest.clone(), execution_id.clone(), Some(event)))
            .is_err()
        {
            return;
        }
        if terminal {
            break;
        }
    }
    let _ = items.send((nest, execution_id, None));
}

/// The prompter's next input; pending without one.
async fn next_prompt(prompter: &mut Option<Prompter>) -> PromptInput {
    match prompter {
        Some(prompter) => prompter.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Asks the server to cancel; an execution that already ended is not a problem (its terminal
/// event is on its way).
async fn request_cancel(home: &StigmerHome, execution_id: &str) -> Result<(), String> {
    let request = async {
        let mut client = DaemonClient::connect(home).await?;
        match client
            .executions()
            .cancel_execution(CancelExecutionRequest {
                execution_id: execution_id.to_owned(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::FailedPrecondition => Ok(()),
            Err(status) => Err(status.message().to_owned()),
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(problem)) => Err(format!("cannot cancel execution {execution_id}: {problem}")),
        Err(_) => Err(format!(
            "cannot cancel execution {execution_id}: the daemon did not answer"
        )),
    }
}

/// The execution as the server has it now, if it answers in time.
async fn fetch_execution(home: &StigmerHome, execution_id: &str) -> Option<Resource> {
    let request = async {
        let mut client = DaemonClient::connect(home).await.ok()?;
        let response = client
            .executions()
            .get_execution(GetExecutionRequest {
                execution_id: execution_id.to_owned(),
            })
            .await
            .ok()?;
        decode(&response.into_inner().execution_json).ok()
    };
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .ok()
        .flatten()
}

/// Where rendered events go: the answer to stdout, the rest to stderr, or JSON lines.
struct Screen {
    json: bool,
    kind: ExecutionKind,
    renderer: Renderer,
    printer: Printer,
}

impl Screen {
    fn new(json: bool, kind: ExecutionKind) -> Screen {
        let printer = Printer::stderr();
        let style = Style {
            unicode: printer.is_terminal(),
            color: printer.has_color(),
        };
        let renderer = match kind {
            ExecutionKind::Agent => Renderer::new(style),
            ExecutionKind::Workflow => Renderer::for_workflow(style),
        };
        Screen {
            json,
            kind,
            renderer,
            printer,
        }
    }

    fn show(&mut self, event: &Event) {
        // Rendered in JSON mode too: the renderer keeps the counts and the outcome.
        let outputs = self.renderer.render(event);
        self.emit(event, outputs);
    }

    /// Writes what an event rendered to (or the event as a JSON line).
    fn emit(&self, event: &Event, outputs: Vec<Output>) {
        if self.json {
            print_data(&event.to_json_line());
        } else {
            self.write(outputs);
        }
    }

    fn write(&self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Text(text) => print_text(&text),
                Output::Line(line) => self.printer.line(&line),
            }
        }
    }

    /// A line for people, after ending an unfinished line of the answer.
    fn note(&mut self, text: &str) {
        self.end_text();
        self.printer.line(text);
    }

    fn warning(&mut self, text: &str) {
        self.end_text();
        self.printer.warning(text);
    }

    fn end_text(&mut self) {
        let mut outputs = Vec::new();
        self.renderer.finish_text(&mut outputs);
        if !self.json {
            self.write(outputs);
        }
    }

    /// The summary line and the exit code of a followed execution.
    fn finish(
        mut self,
        home: &StigmerHome,
        execution_id: &str,
        execution: Option<Resource>,
        started: Instant,
        interrupted: bool,
    ) -> Result<ExitCode, Failure> {
        self.end_text();
        let duration = execution
            .as_ref()
            .and_then(status_duration)
            .or_else(|| self.renderer.logged_duration())
            .unwrap_or_else(|| started.elapsed());
        if !self.json {
            self.printer.line(&self.renderer.summary(duration));
        }
        let outcome = self
            .renderer
            .outcome()
            .cloned()
            .or_else(|| execution.as_ref().and_then(outcome_of));
        if self.kind == ExecutionKind::Workflow {
            let log = home.log_file(Component::WorkflowRunner);
            let result = workflow_result(
                execution_id,
                execution.as_ref(),
                outcome.as_ref(),
                interrupted,
                &log.display().to_string(),
            );
            if !self.json
                && let Some(data) = &result.data
            {
                print_data(data);
            }
            return result.exit;
        }
        let agent_log = home.log_file(Component::AgentRunner);
        exit_for(
            execution_id,
            outcome.as_ref(),
            interrupted,
            &agent_log.display().to_string(),
        )
    }
}

/// The exit code for how an execution ended: 0 completed, 130 after Ctrl-C, otherwise a
/// failure saying why.
fn exit_for(
    execution_id: &str,
    outcome: Option<&Outcome>,
    interrupted: bool,
    agent_log: &str,
) -> Result<ExitCode, Failure> {
    if interrupted {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    let Some(outcome) = outcome else {
        return Err(Failure::new(format!(
            "execution {execution_id} has not ended"
        )));
    };
    let reason = outcome.reason.as_deref();
    match outcome.phase {
        ExecutionPhase::Completed => Ok(ExitCode::SUCCESS),
        ExecutionPhase::Cancelled => Err(Failure::new(format!(
            "execution {execution_id} was cancelled{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ))),
        phase => Err(Failure::new(format!(
            "execution {execution_id} {phase}: {}",
            reason.unwrap_or("no reason was recorded")
        ))
        .with_hint(Some(format!(
            "see `stigmer execution get {execution_id}`, and the agent runner's log {agent_log}"
        )))),
    }
}

/// How a followed workflow execution ended: what to print on stdout (its output, or its error,
/// as pretty JSON) and the exit code.
struct WorkflowResult {
    data: Option<String>,
    exit: Result<ExitCode, Failure>,
}

/// A workflow's end: completed → its output and 0; faulted → its error object and a failure
/// naming it; cancelled or interrupted → as an agent run ends.
fn workflow_result(
    execution_id: &str,
    execution: Option<&Resource>,
    outcome: Option<&Outcome>,
    interrupted: bool,
    log: &str,
) -> WorkflowResult {
    let status = execution.map(workflow_status_of).unwrap_or_default();
    let pretty = |value: &serde_json::Value| serde_json::to_string_pretty(value).ok();
    let phase = outcome.map(|outcome| outcome.phase);
    if interrupted
        || !matches!(
            phase,
            Some(ExecutionPhase::Completed | ExecutionPhase::Failed)
        )
    {
        return WorkflowResult {
            data: None,
            exit: exit_for(execution_id, outcome, interrupted, log),
        };
    }
    if phase == Some(ExecutionPhase::Completed) {
        let output = status.output.unwrap_or(serde_json::Value::Null);
        return WorkflowResult {
            data: pretty(&output),
            exit: Ok(ExitCode::SUCCESS),
        };
    }
    let why = match &status.error {
        Some(error) => problem_text(error),
        None => outcome
            .and_then(|outcome| outcome.reason.clone())
            .unwrap_or_else(|| "no reason was recorded".into()),
    };
    WorkflowResult {
        data: status.error.as_ref().and_then(pretty),
        exit: Err(Failure::new(format!(
            "execution {execution_id} failed: {}",
            why.split_whitespace().collect::<Vec<_>>().join(" ")
        ))
        .with_hint(Some(format!(
            "see `stigmer execution get {execution_id}`, and the workflow runner's log {log}"
        )))),
    }
}

/// Subscriptions through the daemon of a home. The first uses the client the command already
/// has; each later one (after a break) connects again, re-reading the daemon's address and
/// token, which a restart may have changed.
struct DaemonSource {
    home: StigmerHome,
    execution_id: String,
    first: Option<DaemonClient>,
    /// The client of the current subscription, kept while its stream is read.
    current: Option<DaemonClient>,
}

impl EventSource for DaemonSource {
    type Stream = Streaming<ExecutionEvent>;

    async fn subscribe(&mut self, after_seq: u64) -> Result<Self::Stream, Status> {
        self.current = None;
        let mut client = match self.first.take() {
            Some(client) => client,
            None => DaemonClient::connect(&self.home)
                .await
                .map_err(Status::unavailable)?,
        };
        let subscribed = client
            .executions()
            .subscribe(SubscribeRequest {
                execution_id: self.execution_id.clone(),
                after_seq,
            })
            .await;
        self.current = Some(client);
        Ok(subscribed?.into_inner())
    }
}

/// A feed that ended without its execution ending, as a failure with what to do next.
fn feed_failure(error: FeedError) -> Failure {
    match error {
        FeedError::Lost {
            ref execution_id, ..
        } => {
            let hint = format!(
                "the execution may still run: `stigmer execution watch {execution_id}` follows \
                 it again; see `stigmer server status`"
            );
            Failure::new(error.to_string()).with_hint(Some(hint))
        }
        FeedError::Refused(status) => execution_failure(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(phase: &str, reason: Option<&str>) -> Outcome {
        Outcome {
            phase: phase.parse().expect("a phase"),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn exit_codes_follow_the_outcome() {
        let log = "/home/u/.stigmer/logs/agent-runner.log";
        let completed = outcome("completed", None);
        assert_eq!(
            exit_for("aex-1", Some(&completed), false, log).expect("success"),
            ExitCode::SUCCESS
        );
        // Ctrl-C wins, however the execution ended.
        assert_eq!(
            exit_for("aex-1", Some(&completed), true, log).expect("interrupted"),
            ExitCode::from(EXIT_INTERRUPTED)
        );
        let failed = exit_for(
            "aex-1",
            Some(&outcome("failed", Some("the model is unreachable"))),
            false,
            log,
        )
        .expect_err("failed");
        assert_eq!(failed.code, 1);
        assert_eq!(
            failed.message,
            "execution aex-1 failed: the model is unreachable"
        );
        let hint = failed.hint.expect("a hint");
        assert!(hint.contains("stigmer execution get aex-1") && hint.contains(log));
        let cancelled = exit_for(
            "aex-1",
            Some(&outcome("cancelled", Some("cancelled by request"))),
            false,
            log,
        )
        .expect_err("cancelled by someone else");
        assert_eq!(cancelled.code, 1);
        assert_eq!(
            cancelled.message,
            "execution aex-1 was cancelled: cancelled by request"
        );
    }

    fn workflow_execution(status: serde_json::Value) -> Resource {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "stigmer.ai/v1",
            "kind": "WorkflowExecution",
            "metadata": {"name": "wex-1", "id": "wex-1"},
            "spec": {"workflow": "fetch"},
            "status": status,
        }))
        .expect("a valid execution")
    }

    #[test]
    fn a_workflow_ends_with_its_output_or_its_error() {
        let log = "/home/u/.stigmer/logs/workflow-runner.log";
        let done =
            workflow_execution(serde_json::json!({"phase": "completed", "output": {"answer": 42}}));
        let result = workflow_result(
            "wex-1",
            Some(&done),
            Some(&outcome("completed", None)),
            false,
            log,
        );
        assert_eq!(result.data.as_deref(), Some("{\n  \"answer\": 42\n}"));
        assert_eq!(result.exit.expect("success"), ExitCode::SUCCESS);
        let faulted = workflow_execution(serde_json::json!({
            "phase": "failed",
            "reason": "task /do/0/get failed",
            "error": {"type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication", "status": 503, "title": "Down", "detail": "the service\nis down", "instance": "/do/0/get"},
        }));
        let result = workflow_result(
            "wex-1",
            Some(&faulted),
            Some(&outcome("failed", Some("task /do/0/get failed"))),
            false,
            log,
        );
        let printed: serde_json::Value =
            serde_json::from_str(result.data.as_deref().expect("the error")).expect("JSON");
        assert_eq!(printed["instance"], "/do/0/get");
        let failure = result.exit.expect_err("a fault");
        assert_eq!(failure.code, 1);
        assert_eq!(
            failure.message,
            "execution wex-1 failed: communication (503): the service is down"
        );
        assert!(failure.hint.expect("a hint").contains(log));
        let cancelled =
            workflow_result("wex-1", None, Some(&outcome("cancelled", None)), false, log);
        assert!(cancelled.data.is_none());
        assert_eq!(
            cancelled.exit.expect_err("cancelled").message,
            "execution wex-1 was cancelled"
        );
        let interrupted = workflow_result("wex-1", Some(&done), None, true, log);
        assert!(interrupted.data.is_none());
        assert_eq!(
            interrupted.exit.expect("interrupted"),
            ExitCode::from(EXIT_INTERRUPTED)
        );
    }

    #[test]
    fn nested_work_ends_with_its_call_or_its_task() {
        use stigmer_proto::execution::ExecutionEvent as Typed;
        let event = |kind: &str, data: serde_json::Value| {
            Typed::from_wire(kind, &data).expect("test data fits its kind")
        };
        let finished = event(
            "tool_call_finished",
            serde_json::json!({"turn": 1, "call_id": "c1", "name": "task", "result": "42", "is_error": false}),
        );
        assert_eq!(ends_nest(&finished), Some(Nest::SubAgent("c1".into())));
        let completed = event(
            "task_completed",
            serde_json::json!({"reference": "/do/0/ask", "name": "ask", "output": {}}),
        );
        assert_eq!(
            ends_nest(&completed),
            Some(Nest::AgentCall("/do/0/ask".into()))
        );
        let started = event(
            "tool_call_started",
            serde_json::json!({"turn": 1, "call_id": "c1", "name": "task", "arguments": {}}),
        );
        assert_eq!(ends_nest(&started), None);
    }

    #[test]
    fn a_lost_feed_says_how_to_follow_again_and_a_refusal_where_to_look() {
        let lost = feed_failure(FeedError::Lost {
            execution_id: "aex-1".into(),
            problem: "connection refused".into(),
        });
        assert_eq!(
            lost.message,
            "lost the connection to the daemon while following execution aex-1: connection \
             refused"
        );
        assert!(lost.hint.unwrap().contains("stigmer execution watch aex-1"));
        let refused = feed_failure(FeedError::Refused(Status::not_found(
            "execution \"aex-1\" not found",
        )));
        assert_eq!(refused.message, "execution \"aex-1\" not found");
        assert!(refused.hint.unwrap().contains("stigmer execution list"));
    }
}
