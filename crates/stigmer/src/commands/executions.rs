//! `stigmer run` and `stigmer execution list|get|cancel|watch`: create agent executions and
//! follow their event logs with [`crate::render`].
//!
//! Following survives a restarting server: the log numbers its events, so after a broken
//! stream the command subscribes again after the last event it showed, and nothing is lost or
//! shown twice.

use super::resources::{decode, format_resources, read_offline, render_table, status_failure};
use crate::cli::{
    ExecutionGetArgs, ExecutionIdArgs, ExecutionListArgs, ExecutionWatchArgs, RunArgs, SecretArg,
    is_variable_name,
};
use crate::client::DaemonClient;
use crate::failure::{EXIT_INTERRUPTED, EXIT_INVALID_INPUT, Failure};
use crate::printer::{Printer, print_data, print_text};
use crate::render::{Event, Outcome, Output, Renderer, Style, trim_line};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use stigmer_client::feed::{EventFeed, EventSource, FeedError, FeedItem};
use stigmer_config::{Component, StigmerHome};
use stigmer_daemon::state::is_locked;
use stigmer_proto::execution::{AgentExecutionSpec, AgentExecutionStatus, ExecutionPhase};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, CreateExecutionRequest, ExecutionEvent, GetExecutionRequest,
    ListExecutionsRequest, SubscribeRequest,
};
use stigmer_resources::{Kind, Resource};
use stigmer_store::{SqliteStore, Store};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tonic::{Code, Status, Streaming};

/// How long to keep following after Ctrl-C asked for cancellation, and how long `cancel`
/// waits to say how the execution ended.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// Bound of the small requests made around following (cancel, the final status).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Events read from the store at a time when replaying without a daemon.
const REPLAY_PAGE: usize = 1000;
/// Where execution ids are found.
const LIST_HINT: &str = "list the executions with `stigmer execution list`";
/// Longest REASON in the execution table, in characters.
const REASON_WIDTH: usize = 60;

pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let request = create_request(&args)?;
    let home = super::home()?;
    let mut client = super::server::ensure_running(&home).await?;
    // From here on Ctrl-C cancels the execution rather than leaving it running unseen.
    let interrupts = if args.no_follow {
        None
    } else {
        Some(interrupts()?)
    };
    let started = Instant::now();
    let response = client
        .executions()
        .create_execution(request)
        .await
        .map_err(create_failure)?;
    let execution = decode(&response.into_inner().execution_json)?;
    let execution_id = execution.metadata.name.clone();
    let Some(interrupts) = interrupts else {
        if args.json {
            print_data(&serde_json::to_string(&execution).unwrap_or_default());
        } else {
            print_data(&execution_id);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let printer = Printer::stderr();
    let spec = AgentExecutionSpec::from_value(&execution.spec).unwrap_or_default();
    let given_or = |value: String, fallback: &str| {
        if value.is_empty() {
            fallback.to_owned()
        } else {
            value
        }
    };
    printer.line(&printer.paint(
        "2",
        &format!(
            "execution {execution_id} (agent {}, session {})",
            given_or(spec.agent, &args.agent),
            given_or(spec.session, "?"),
        ),
    ));
    let follow = Follow {
        home: &home,
        execution_id,
        json: args.json,
        on_interrupt: OnInterrupt::Cancel,
        started,
    };
    follow.run(Some(client), interrupts).await
}

/// The request `run` sends, checked before anything starts: the message is not empty and
/// every `--secret` is `KEY=VALUE` (a wrong one is reported without its text).
fn create_request(args: &RunArgs) -> Result<CreateExecutionRequest, Failure> {
    let message = args.message_text();
    if message.trim().is_empty() {
        return Err(Failure::new("the message is empty")
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(format!(
                "say what the agent should do: `stigmer run {} \"…\"`",
                args.agent
            ))));
    }
    let env: HashMap<String, String> = args.env.iter().cloned().collect();
    let mut secrets = HashMap::new();
    for (index, secret) in args.secrets.iter().enumerate() {
        let (key, value) = split_secret(secret).ok_or_else(|| {
            Failure::new(format!(
                "--secret number {} is not KEY=VALUE (its text is not shown, in case it holds a \
                 secret)",
                index + 1
            ))
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(
                "write --secret NAME=value, NAME made of letters, digits and _".into(),
            ))
        })?;
        secrets.insert(key, value);
    }
    Ok(CreateExecutionRequest {
        agent: args.agent.clone(),
        message: message.to_owned(),
        session_id: args.session.clone().unwrap_or_default(),
        model: args.model.clone().unwrap_or_default(),
        env,
        secrets,
    })
}

fn split_secret(secret: &SecretArg) -> Option<(String, String)> {
    let (key, value) = secret.0.expose().split_once('=')?;
    is_variable_name(key).then(|| (key.to_owned(), value.to_owned()))
}

/// A failed `CreateExecution`: the server's message (it names the agent and suggests a close
/// one), with a hint where one helps.
fn create_failure(status: Status) -> Failure {
    let unknown_agent = status.code() == Code::NotFound && status.message().starts_with("agent ");
    let failure = status_failure(status);
    if unknown_agent {
        failure.with_hint(Some("list the agents with `stigmer get agents`".into()))
    } else {
        failure
    }
}

/// A failed request about one execution; NOT_FOUND says where to find the ids.
fn execution_failure(status: Status) -> Failure {
    let not_found = status.code() == Code::NotFound;
    let failure = status_failure(status);
    if not_found {
        failure.with_hint(Some(LIST_HINT.into()))
    } else {
        failure
    }
}

/// One execution from the store file (no daemon runs).
fn read_offline_execution(home: &StigmerHome, execution_id: &str) -> Result<Resource, Failure> {
    let mut found =
        read_offline(home, Kind::AgentExecution, Some(execution_id)).map_err(|failure| {
            if failure.message.ends_with("not found") {
                failure.with_hint(Some(LIST_HINT.into()))
            } else {
                failure
            }
        })?;
    found
        .pop()
        .ok_or_else(|| Failure::new(format!("execution \"{execution_id}\" not found")))
}

pub async fn watch(args: ExecutionWatchArgs) -> Result<ExitCode, Failure> {
    let home = super::home()?;
    let started = Instant::now();
    if !is_locked(&home.lock_file()) {
        // An execution that has ended can be replayed from the store without a daemon.
        let execution = read_offline_execution(&home, &args.id)?;
        if phase_of(&execution).is_terminal() {
            return replay_offline(&home, execution, args.json, started);
        }
    }
    let mut client = super::server::ensure_running(&home).await?;
    // Subscribing to an unknown id would wait for events forever: check it exists.
    client
        .executions()
        .get_execution(GetExecutionRequest {
            execution_id: args.id.clone(),
        })
        .await
        .map_err(execution_failure)?;
    let follow = Follow {
        home: &home,
        execution_id: args.id,
        json: args.json,
        on_interrupt: OnInterrupt::Detach,
        started,
    };
    follow.run(Some(client), interrupts()?).await
}

fn replay_offline(
    home: &StigmerHome,
    execution: Resource,
    json: bool,
    started: Instant,
) -> Result<ExitCode, Failure> {
    let store_failure = |error: stigmer_store::StoreError| Failure::new(error.to_string());
    let mut screen = Screen::new(json);
    if let Some(store) = SqliteStore::open_if_exists(&home.store_file()).map_err(store_failure)? {
        let mut last = 0;
        'pages: loop {
            let page = store
                .events_after(&execution.metadata.name, last, REPLAY_PAGE)
                .map_err(store_failure)?;
            let full = page.len() == REPLAY_PAGE;
            for stored in page {
                last = stored.seq;
                screen.show(&Event::new(
                    stored.execution_id,
                    stored.seq,
                    stored.ts,
                    &stored.kind,
                    stored.data,
                ));
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

/// What Ctrl-C does while following.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OnInterrupt {
    /// `run`: cancel the execution, follow it to its end (bounded), exit 130.
    Cancel,
    /// `watch`: stop watching; the execution goes on.
    Detach,
}

/// Ctrl-C as a stream, installed before anything it should interrupt starts.
fn interrupts() -> Result<Signal, Failure> {
    signal(SignalKind::interrupt())
        .map_err(|error| Failure::new(format!("cannot handle Ctrl-C: {error}")))
}

/// Following one execution to its end.
struct Follow<'a> {
    home: &'a StigmerHome,
    execution_id: String,
    json: bool,
    on_interrupt: OnInterrupt,
    /// When the command started (the duration of last resort).
    started: Instant,
}

enum Step {
    Feed(Result<FeedItem, FeedError>),
    Interrupted,
    CancelWaitOver,
}

impl Follow<'_> {
    async fn run(
        self,
        client: Option<DaemonClient>,
        mut interrupts: Signal,
    ) -> Result<ExitCode, Failure> {
        let id = self.execution_id.clone();
        let mut screen = Screen::new(self.json);
        let source = DaemonSource {
            home: self.home,
            execution_id: id.clone(),
            first: client,
            current: None,
        };
        let mut feed = EventFeed::new(source, &id);
        let mut cancel_deadline: Option<tokio::time::Instant> = None;
        loop {
            let step = tokio::select! {
                item = feed.next() => Step::Feed(item),
                Some(()) = interrupts.recv() => Step::Interrupted,
                () = sleep_until(cancel_deadline), if cancel_deadline.is_some() => {
                    Step::CancelWaitOver
                }
            };
            match step {
                Step::Feed(item) => match item.map_err(feed_failure)? {
                    FeedItem::Event(event) => {
                        screen.show(&Event::from_proto(event));
                        if screen.renderer.outcome().is_some() {
                            break;
                        }
                    }
                    FeedItem::Notice(text) => screen.note(&text),
                },
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
    renderer: Renderer,
    printer: Printer,
}

impl Screen {
    fn new(json: bool) -> Screen {
        let printer = Printer::stderr();
        let style = Style {
            unicode: printer.is_terminal(),
            color: printer.has_color(),
        };
        Screen {
            json,
            renderer: Renderer::new(style),
            printer,
        }
    }

    fn show(&mut self, event: &Event) {
        // Rendered in JSON mode too: the renderer keeps the counts and the outcome.
        let outputs = self.renderer.render(event);
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

/// `status.startedAt` to `status.finishedAt`, when both are recorded.
fn status_duration(execution: &Resource) -> Option<Duration> {
    let status = status_of(execution);
    crate::render::elapsed_between(
        status.started_at.as_deref()?,
        status.finished_at.as_deref()?,
    )
}

fn outcome_of(execution: &Resource) -> Option<Outcome> {
    let status = status_of(execution);
    status.phase.is_terminal().then_some(Outcome {
        phase: status.phase,
        reason: status.reason,
    })
}

fn status_of(execution: &Resource) -> AgentExecutionStatus {
    AgentExecutionStatus::from_value(execution.status.as_ref())
}

fn phase_of(execution: &Resource) -> ExecutionPhase {
    status_of(execution).phase
}

/// Subscriptions through the daemon of a home. The first uses the client the command already
/// has; each later one (after a break) connects again, re-reading the daemon's address and
/// token, which a restart may have changed.
struct DaemonSource<'a> {
    home: &'a StigmerHome,
    execution_id: String,
    first: Option<DaemonClient>,
    /// The client of the current subscription, kept while its stream is read.
    current: Option<DaemonClient>,
}

impl EventSource for DaemonSource<'_> {
    type Stream = Streaming<ExecutionEvent>;

    async fn subscribe(&mut self, after_seq: u64) -> Result<Self::Stream, Status> {
        self.current = None;
        let mut client = match self.first.take() {
            Some(client) => client,
            None => DaemonClient::connect(self.home)
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

pub async fn list(args: ExecutionListArgs) -> Result<ExitCode, Failure> {
    let home = super::home()?;
    let mut executions = if is_locked(&home.lock_file()) {
        let mut client = super::server::connect(&home).await?;
        client
            .executions()
            .list_executions(ListExecutionsRequest {})
            .await
            .map_err(status_failure)?
            .into_inner()
            .executions_json
            .iter()
            .map(|json| decode(json))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        // Reading needs no daemon: the store is a file.
        read_offline(&home, Kind::AgentExecution, None)?
    };
    sort_by_creation(&mut executions);
    if let Some(output) = format_resources(Kind::AgentExecution, &executions, false, args.output)? {
        print_data(&output);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn get(args: ExecutionGetArgs) -> Result<ExitCode, Failure> {
    let home = super::home()?;
    let execution = if is_locked(&home.lock_file()) {
        let mut client = super::server::connect(&home).await?;
        let response = client
            .executions()
            .get_execution(GetExecutionRequest {
                execution_id: args.id.clone(),
            })
            .await
            .map_err(execution_failure)?;
        decode(&response.into_inner().execution_json)?
    } else {
        read_offline_execution(&home, &args.id)?
    };
    if let Some(output) = format_resources(Kind::AgentExecution, &[execution], true, args.output)? {
        print_data(&output);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: ExecutionIdArgs) -> Result<ExitCode, Failure> {
    let home = super::home()?;
    let mut client = super::server::ensure_running(&home).await?;
    let id = args.id;
    client
        .executions()
        .cancel_execution(CancelExecutionRequest {
            execution_id: id.clone(),
        })
        .await
        .map_err(execution_failure)?;
    // The execution becomes `cancelled` when its workflow stops: wait a little to say so.
    let deadline = Instant::now() + CANCEL_WAIT;
    let mut phase = ExecutionPhase::Pending;
    while Instant::now() < deadline {
        let Ok(response) = client
            .executions()
            .get_execution(GetExecutionRequest {
                execution_id: id.clone(),
            })
            .await
        else {
            break;
        };
        let execution = decode(&response.into_inner().execution_json)?;
        phase = phase_of(&execution);
        match phase {
            ExecutionPhase::Cancelled => {
                print_data(&format!("execution {id} cancelled"));
                return Ok(ExitCode::SUCCESS);
            }
            ExecutionPhase::Completed | ExecutionPhase::Failed => {
                print_data(&format!(
                    "execution {id} {phase} before the cancellation took effect"
                ));
                return Ok(ExitCode::SUCCESS);
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    print_data(&format!(
        "cancellation of execution {id} requested; it is still {phase}"
    ));
    Ok(ExitCode::SUCCESS)
}

/// Oldest first (ids are random, so their order means nothing).
pub(super) fn sort_by_creation(executions: &mut [Resource]) {
    executions.sort_by(|a, b| a.metadata.created_at.cmp(&b.metadata.created_at));
}

/// ID, AGENT, PHASE, CREATED (an age), REASON (one line, trimmed).
pub(super) fn execution_table(
    executions: &[Resource],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut table = vec![[
        "ID".to_owned(),
        "AGENT".to_owned(),
        "PHASE".to_owned(),
        "CREATED".to_owned(),
        "REASON".to_owned(),
    ]];
    for execution in executions {
        let status = status_of(execution);
        let reason = status
            .reason
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        table.push([
            execution.metadata.name.clone(),
            AgentExecutionSpec::from_value(&execution.spec)
                .map(|spec| spec.agent)
                .unwrap_or_default(),
            status.phase.to_string(),
            execution
                .metadata
                .created_at
                .as_deref()
                .and_then(|created| age(created, now))
                .unwrap_or_default(),
            trim_line(&reason, REASON_WIDTH, "…"),
        ]);
    }
    render_table(&table)
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
fn age(timestamp: &str, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let then = chrono::DateTime::parse_from_rfc3339(timestamp).ok()?;
    let seconds = (now - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    Some(match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, ExecutionCommand};
    use clap::Parser;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("stigmer").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).expect("valid arguments").command {
            Command::Run(run) => run,
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn the_message_is_positional_or_an_option_but_not_both() {
        assert_eq!(
            run_args(&["run", "hello", "hi there"]).message_text(),
            "hi there"
        );
        assert_eq!(run_args(&["run", "hello", "-m", "hi"]).message_text(), "hi");
        assert_eq!(
            run_args(&["run", "hello", "--message", "hi"]).message_text(),
            "hi"
        );
        for wrong in [
            &["run", "hello"][..],
            &["run", "hello", "hi", "-m", "hi"][..],
            &["run"][..],
        ] {
            let error = parse(wrong).expect_err("a usage error");
            assert_eq!(error.exit_code(), 2, "{wrong:?}");
        }
    }

    #[test]
    fn run_options_become_the_request() {
        let args = run_args(&[
            "run",
            "hello",
            "-m",
            "hi",
            "--session",
            "ses-1",
            "--model",
            "qwen3:8b",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--secret",
            "TOKEN=sk-123",
            "--json",
        ]);
        assert!(args.json && !args.no_follow);
        let request = create_request(&args).expect("valid");
        assert_eq!(request.agent, "hello");
        assert_eq!(request.message, "hi");
        assert_eq!(request.session_id, "ses-1");
        assert_eq!(request.model, "qwen3:8b");
        assert_eq!(request.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(request.env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(
            request.secrets.get("TOKEN").map(String::as_str),
            Some("sk-123")
        );
        // Secrets never show in debug output of the parsed arguments.
        assert!(!format!("{args:?}").contains("sk-123"));
        let bare = create_request(&run_args(&["run", "hello", "hi"])).expect("valid");
        assert!(bare.session_id.is_empty() && bare.model.is_empty() && bare.env.is_empty());
    }

    #[test]
    fn a_bad_env_is_a_usage_error() {
        for wrong in ["NOEQUALS", "=1", "1A=x", "A-B=x"] {
            let error = parse(&["run", "hello", "hi", "--env", wrong]).expect_err(wrong);
            assert_eq!(error.exit_code(), 2, "{wrong}");
        }
    }

    #[test]
    fn a_bad_secret_is_reported_without_its_text() {
        for wrong in ["sk-live-abcdef", "=sk-live-abcdef", "my key=sk-live-abcdef"] {
            let args = run_args(&["run", "hello", "hi", "--secret", "A=1", "--secret", wrong]);
            let failure = create_request(&args).expect_err(wrong);
            assert_eq!(failure.code, EXIT_INVALID_INPUT);
            assert!(failure.message.contains("--secret number 2"), "{failure:?}");
            assert!(!format!("{failure:?}").contains("sk-live"), "{failure:?}");
        }
    }

    #[test]
    fn an_empty_message_is_a_usage_error() {
        let failure = create_request(&run_args(&["run", "hello", "  "])).expect_err("empty");
        assert_eq!(failure.code, EXIT_INVALID_INPUT);
    }

    #[test]
    fn execution_commands_parse_with_their_aliases() {
        for group in ["execution", "executions", "ex"] {
            assert!(matches!(
                parse(&[group, "list"]).expect("valid").command,
                Command::Execution(ExecutionCommand::List(_))
            ));
        }
        assert!(matches!(
            parse(&["execution", "ls", "-o", "json"])
                .expect("valid")
                .command,
            Command::Execution(ExecutionCommand::List(_))
        ));
        match parse(&["execution", "watch", "aex-1", "--json"])
            .expect("valid")
            .command
        {
            Command::Execution(ExecutionCommand::Watch(watch)) => {
                assert_eq!(watch.id, "aex-1");
                assert!(watch.json);
            }
            other => panic!("expected watch, got {other:?}"),
        }
        assert!(matches!(
            parse(&["execution", "cancel", "aex-1"])
                .expect("valid")
                .command,
            Command::Execution(ExecutionCommand::Cancel(_))
        ));
        assert!(matches!(
            parse(&["execution", "get", "aex-1"])
                .expect("valid")
                .command,
            Command::Execution(ExecutionCommand::Get(_))
        ));
        assert_eq!(
            parse(&["execution", "get"]).expect_err("no id").exit_code(),
            2
        );
    }

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

    fn execution(id: &str, created: &str, status: serde_json::Value) -> Resource {
        serde_json::from_value(json!({
            "apiVersion": "stigmer.ai/v1",
            "kind": "AgentExecution",
            "metadata": {"name": id, "id": id, "createdAt": created, "updatedAt": created},
            "spec": {"agent": "hello", "session": "ses-1", "message": "hi"},
            "status": status,
        }))
        .expect("a valid execution")
    }

    #[test]
    fn the_execution_table_is_oldest_first_with_ages_and_short_reasons() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-01T12:00:00.000Z")
            .expect("a time")
            .with_timezone(&chrono::Utc);
        let mut executions = vec![
            execution(
                "aex-b",
                "2025-01-01T11:58:00.000Z",
                json!({"phase": "failed", "reason": format!("no agent-runner is polling\ntask queue {}", "x".repeat(80))}),
            ),
            execution(
                "aex-a",
                "2025-01-01T11:59:50.000Z",
                json!({"phase": "running"}),
            ),
            execution(
                "aex-c",
                "2024-12-30T12:00:00.000Z",
                json!({"phase": "completed", "startedAt": "2024-12-30T12:00:01.000Z", "finishedAt": "2024-12-30T12:00:04.500Z"}),
            ),
        ];
        sort_by_creation(&mut executions);
        insta::assert_snapshot!(execution_table(&executions, now), @r"
        ID     AGENT  PHASE      CREATED  REASON
        aex-c  hello  completed  2d ago
        aex-b  hello  failed     2m ago   no agent-runner is polling task queue xxxxxxxxxxxxxxxxxxxxx…
        aex-a  hello  running    10s ago
        ");
        assert_eq!(
            status_duration(&executions[0]),
            Some(Duration::from_millis(3500))
        );
        assert_eq!(status_duration(&executions[2]), None);
        assert_eq!(
            outcome_of(&executions[1]),
            Some(outcome(
                "failed",
                status_of(&executions[1]).reason.as_deref()
            ))
        );
        assert_eq!(outcome_of(&executions[2]), None);
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
