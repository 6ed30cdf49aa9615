//! Supervision of one child process: start it, capture its output, decide when it is ready,
//! restart it with backoff when it dies, stop it on request.
//!
//! Every child is started in its own process group with a parent-death signal, so it dies with
//! the daemon even when the daemon is killed with SIGKILL, and a stop reaches anything it forked.

use crate::board::{Board, ComponentState};
use crate::policy::{Liveness, LivenessWatch, RestartDecision, RestartPolicy};
use crate::process;
use crate::state::ChildRecord;
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stigmer_config::{Component, SupervisorSettings};
use stigmer_logs::{SharedLogFile, Stream};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How many of a child's last output lines are kept for its exit record.
const LAST_LINES: usize = 8;
/// How often readiness is probed.
const READY_POLL: Duration = Duration::from_millis(25);
/// How often a child's liveness is sampled.
const LIVENESS_POLL: Duration = Duration::from_millis(500);

/// A boxed future returned by a readiness probe.
pub type ProbeFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// What one launch of a child looks like.
pub struct Launch {
    pub spawn: Spawn,
    /// Answers true once this launch is ready (polling its queue, answering health checks).
    pub probe: Box<dyn Fn() -> ProbeFuture + Send + Sync>,
}

/// How a child is started: a process of ours, or a container on the engine.
pub enum Spawn {
    Process(Command),
    Container {
        engine: stigmer_container::Engine,
        spec: stigmer_container::ContainerSpec,
    },
}

/// A started child.
enum Running {
    Process(Child),
    Container {
        engine: stigmer_container::Engine,
        id: String,
        /// The engine's wait for the exit, started once per launch: polling it again after a
        /// readiness probe must not send a new request or lose an exit already reported.
        exited: tokio::task::JoinHandle<i64>,
    },
}

/// How a child ended.
struct Exit {
    description: String,
    code: Option<i32>,
}

impl Running {
    /// Waits for the child to end.
    async fn wait(&mut self) -> Exit {
        match self {
            Running::Process(child) => {
                let status = child
                    .wait()
                    .await
                    .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(0));
                Exit {
                    description: process::describe_exit(status),
                    code: status.code(),
                }
            }
            Running::Container { id, exited, .. } => {
                let code = exited.await.unwrap_or(-1);
                let description = match code {
                    137 => "killed (exit code 137, SIGKILL)".to_owned(),
                    143 => "terminated (exit code 143, SIGTERM)".to_owned(),
                    code => format!("exited with code {code}"),
                };
                Exit {
                    description: format!("container {} {description}", short_id(id)),
                    code: i32::try_from(code).ok(),
                }
            }
        }
    }

    /// Kills a child that stopped answering: no grace, since it cannot handle a signal.
    async fn kill(&mut self, component: Component) {
        match self {
            Running::Process(child) => {
                if let Some(pid) = child.id() {
                    process::signal_group(pid, Signal::SIGKILL);
                }
                let _ = child.wait().await;
            }
            Running::Container { .. } => self.stop(component, Duration::ZERO).await,
        }
    }

    async fn stop(&mut self, component: Component, grace: Duration) {
        match self {
            Running::Process(child) => stop_child(child, component, grace).await,
            Running::Container { engine, id, exited } => {
                exited.abort();
                match engine.stop(id, grace).await {
                    Ok(()) => {
                        tracing::info!(unit = %component, container = %short_id(id), "Container stopped and removed.");
                    }
                    Err(error) => {
                        tracing::error!(unit = %component, container = %short_id(id), error = %error, "Container could not be removed.");
                    }
                }
            }
        }
    }

    /// After an exit, once its output is captured: a container is removed (the next launch
    /// makes a new one).
    async fn dispose(self, component: Component) {
        if let Running::Container { engine, id, .. } = self
            && let Err(error) = engine.remove(&id).await
        {
            tracing::error!(unit = %component, container = %short_id(&id), error = %error, "Exited container could not be removed.");
        }
    }
}

/// The first 12 characters of a container id, as engines show them.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Builds the launch for a generation (1 for the first start, 2 after the first restart, ...).
pub type LaunchFactory = Box<dyn Fn(u64) -> Launch + Send + Sync>;

/// Called whenever the set of children changes, to keep `run/state.json` current.
pub type ChildrenChanged = Arc<dyn Fn(Component, Option<ChildRecord>) + Send + Sync>;

/// Everything a unit needs from the daemon.
pub struct UnitContext {
    pub component: Component,
    pub board: Arc<Board>,
    pub log: SharedLogFile,
    pub supervisor: SupervisorSettings,
    pub children_changed: ChildrenChanged,
    /// Set to true once the first launch became ready.
    pub ready: watch::Sender<bool>,
}

/// Runs `factory`'s child until `stop` becomes true, restarting it as the policy says.
pub async fn supervise(
    context: UnitContext,
    factory: LaunchFactory,
    mut stop: watch::Receiver<bool>,
) {
    let component = context.component;
    let mut policy = RestartPolicy::new(&context.supervisor);
    let mut generation = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        generation += 1;
        let launch = factory(generation);
        let last_lines = Arc::new(Mutex::new(VecDeque::with_capacity(LAST_LINES)));
        let started_at = Instant::now();
        let (mut child, captures, pid, container_id) = match start(
            launch.spawn,
            &context,
            &last_lines,
        )
        .await
        {
            Ok(started) => started,
            Err(error) => {
                let reason = format!("could not be started: {error}");
                tracing::error!(unit = %component, error = %error, "Child could not be started.");
                context.board.update(component, |record| {
                    record.state = ComponentState::Failed;
                    record.last_exit = Some(reason);
                });
                break;
            }
        };
        // Containers are found again by label, not by pid: only processes are recorded.
        if let (Some(pid), None) = (pid, &container_id) {
            let start_time = process::start_time(pid).unwrap_or(0);
            (context.children_changed)(
                component,
                Some(ChildRecord {
                    component,
                    pid,
                    start_time,
                }),
            );
        }
        context.board.update(component, |record| {
            record.pid = pid;
            record.container_id = container_id.clone();
            record.since = Some(started_at);
            if record.state != ComponentState::Restarting {
                record.state = ComponentState::Starting;
            }
        });
        tracing::info!(unit = %component, pid, generation, "Child started.");

        let outcome = run_until_exit(
            &mut child,
            &context,
            &launch.probe,
            (started_at, pid),
            &mut stop,
        )
        .await;
        (context.children_changed)(component, None);
        let Some(exit) = outcome else {
            // Stopped on request.
            context.board.update(component, |record| {
                record.state = ComponentState::Stopped;
                record.pid = None;
                record.container_id = None;
            });
            return;
        };

        // Let the capture tasks drain the pipes, so the exit record has the last words. A
        // grandchild could hold a pipe open, hence the bound.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            for capture in captures {
                let _ = capture.await;
            }
        })
        .await;
        child.dispose(component).await;
        let ran_for = started_at.elapsed();
        let description = exit.description;
        let lines: Vec<String> = lock(&last_lines).iter().cloned().collect();
        let last_exit = if lines.is_empty() {
            description.clone()
        } else {
            format!("{description}; last output: {}", lines.join(" | "))
        };
        let decision = policy.on_exit(Instant::now(), ran_for, exit.code);
        match &decision {
            RestartDecision::Restart(delay) => {
                tracing::warn!(
                    unit = %component,
                    pid,
                    reason = %description,
                    last_lines = ?lines,
                    ran_for_ms = ran_for.as_millis() as u64,
                    delay_ms = delay.as_millis() as u64,
                    "Child exited; restart scheduled."
                );
                context.board.update(component, |record| {
                    record.state = ComponentState::Restarting;
                    record.pid = None;
                    record.container_id = None;
                    record.since = None;
                    record.restarts += 1;
                    record.last_exit = Some(last_exit);
                });
                tokio::select! {
                    () = tokio::time::sleep(*delay) => {}
                    () = until_true(&mut stop) => {}
                }
            }
            RestartDecision::GiveUp(reason) => {
                tracing::error!(
                    unit = %component,
                    pid,
                    reason = %description,
                    last_lines = ?lines,
                    "Child failed for good: {reason}."
                );
                context.board.update(component, |record| {
                    record.state = ComponentState::Failed;
                    record.pid = None;
                    record.container_id = None;
                    record.since = None;
                    record.last_exit = Some(format!("{last_exit} (given up: {reason})"));
                });
                break;
            }
        }
    }
    // Failed or stopped before a launch: wait for the stop request so the daemon's shutdown
    // sequence stays uniform.
    until_true(&mut stop).await;
    context.board.update(component, |record| {
        if record.state != ComponentState::Failed {
            record.state = ComponentState::Stopped;
        }
    });
}

/// Waits for the child to exit (returning its status) while probing readiness and watching its
/// liveness, or stops it when asked (returning `None`). A child that stops answering is shown
/// as `unresponsive` and, past `supervisor.unresponsive_restart_secs`, killed: its exit then
/// says so, and the restart policy restarts it like any other exit.
async fn run_until_exit(
    child: &mut Running,
    context: &UnitContext,
    probe: &(dyn Fn() -> ProbeFuture + Send + Sync),
    (started_at, pid): (Instant, Option<u32>),
    stop: &mut watch::Receiver<bool>,
) -> Option<Exit> {
    let component = context.component;
    let mut ready = false;
    let mut liveness = LivenessWatch::new(&context.supervisor);
    let mut reported = false;
    let mut liveness_tick = tokio::time::interval(LIVENESS_POLL);
    liveness_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            exit = child.wait() => return Some(exit),
            () = until_true(stop) => {
                child.stop(component, Duration::from_secs(context.supervisor.stop_timeout_secs)).await;
                return None;
            }
            () = tokio::time::sleep(READY_POLL), if !ready => {
                if probe().await {
                    ready = true;
                    let ready_ms = started_at.elapsed().as_millis() as u64;
                    tracing::info!(unit = %component, ready_ms, "Child ready.");
                    context.board.update(component, |record| {
                        if record.state != ComponentState::Unresponsive {
                            record.state = ComponentState::Running;
                        }
                    });
                    context.ready.send_replace(true);
                }
            }
            _ = liveness_tick.tick(), if pid.is_some() => {
                let answering = !pid.is_some_and(process::is_stopped);
                match liveness.observe(Instant::now(), answering) {
                    Liveness::Answering | Liveness::Silent => {
                        if answering && reported {
                            reported = false;
                            tracing::info!(unit = %component, pid, "Child answers again.");
                            context.board.update(component, |record| {
                                record.state = if ready {
                                    ComponentState::Running
                                } else {
                                    ComponentState::Starting
                                };
                            });
                        }
                    }
                    Liveness::Unresponsive(silent_for) => {
                        if !reported {
                            reported = true;
                            tracing::warn!(
                                unit = %component,
                                pid,
                                silent_ms = silent_for.as_millis() as u64,
                                restart_after_secs = context.supervisor.unresponsive_restart_secs,
                                "Child is unresponsive: its process is stopped; it is restarted if it stays so."
                            );
                            context.board.update(component, |record| {
                                record.state = ComponentState::Unresponsive;
                            });
                        }
                    }
                    Liveness::Restart(silent_for) => {
                        tracing::error!(
                            unit = %component,
                            pid,
                            silent_ms = silent_for.as_millis() as u64,
                            "Child stayed unresponsive; killing it."
                        );
                        child.kill(component).await;
                        return Some(Exit {
                            description: format!(
                                "unresponsive for {}s (its process was stopped); killed by the supervisor",
                                silent_for.as_secs()
                            ),
                            code: None,
                        });
                    }
                }
            }
        }
    }
}

/// SIGTERM to the child's process group, a grace period, then SIGKILL.
pub async fn stop_child(child: &mut Child, component: Component, grace: Duration) {
    let Some(pid) = child.id() else { return };
    process::signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(unit = %component, pid, grace_secs = grace.as_secs(), "Child ignored SIGTERM; killing it.");
        process::signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Anything left in the group (a grandchild) goes too.
    process::signal_group(pid, Signal::SIGKILL);
    tracing::info!(unit = %component, pid, "Child stopped.");
}

type Started = (
    Running,
    Vec<tokio::task::JoinHandle<()>>,
    Option<u32>,
    Option<String>,
);

/// Why a launch could not be started; the text is the spawn's or the engine's own.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Spawn(#[from] std::io::Error),
    #[error(transparent)]
    Container(#[from] stigmer_container::EngineError),
}

/// Starts a launch and the capture of its output.
async fn start(
    spawn: Spawn,
    context: &UnitContext,
    last_lines: &Arc<Mutex<VecDeque<String>>>,
) -> Result<Started, StartError> {
    match spawn {
        Spawn::Process(command) => {
            let (child, captures) = spawn_process(command, context, last_lines)?;
            let pid = child.id();
            Ok((Running::Process(child), captures, pid, None))
        }
        Spawn::Container { engine, spec } => {
            let id = engine.start(&spec).await?;
            let pid = engine.pid(&id).await;
            let capture =
                capture_container(engine.clone(), id.clone(), context, last_lines.clone());
            let exited = tokio::spawn({
                let (engine, id) = (engine.clone(), id.clone());
                async move { engine.wait(&id).await }
            });
            tracing::info!(unit = %context.component, container = %short_id(&id), image = %spec.image, "Container started.");
            Ok((
                Running::Container {
                    engine,
                    id: id.clone(),
                    exited,
                },
                vec![capture],
                pid,
                Some(id),
            ))
        }
    }
}

fn spawn_process(
    mut command: Command,
    context: &UnitContext,
    last_lines: &Arc<Mutex<VecDeque<String>>>,
) -> std::io::Result<(Child, Vec<tokio::task::JoinHandle<()>>)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SIGKILL to the child when the daemon dies, however it dies.
    stigmer_sandbox::die_with_parent(command.as_std_mut(), Signal::SIGKILL);
    let mut child = command.spawn()?;
    let mut captures = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        captures.push(capture(stdout, Stream::Stdout, context, last_lines.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        captures.push(capture(stderr, Stream::Stderr, context, last_lines.clone()));
    }
    Ok((child, captures))
}

/// Copies each output line of a child into its component's log, and keeps the last few lines.
fn capture(
    reader: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    context: &UnitContext,
    last_lines: Arc<Mutex<VecDeque<String>>>,
) -> tokio::task::JoinHandle<()> {
    let log = context.log.clone();
    let component = context.component.name();
    tokio::spawn(async move {
        // Bytes, not `lines()`: a child may print invalid UTF-8, and that must not end the capture.
        let mut reader = BufReader::new(reader);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buffer);
            let line = line.trim_end_matches(['\n', '\r']);
            record_line(
                &log,
                &last_lines,
                component,
                stream,
                line,
                chrono::Utc::now(),
            );
        }
    })
}

/// Copies a container's output into its component's log with the engine's timestamps.
fn capture_container(
    engine: stigmer_container::Engine,
    id: String,
    context: &UnitContext,
    last_lines: Arc<Mutex<VecDeque<String>>>,
) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    let log = context.log.clone();
    let component = context.component.name();
    tokio::spawn(async move {
        // The engine may break a log stream off, or stop delivering on it (Podman's follow can
        // stall on a busy machine), while the container runs: when the stream ends, or nothing
        // came for a while, attach again from the second of the last line recorded and skip
        // the lines of that second already recorded (engines may give timestamps in whole
        // seconds, so lines are counted, not compared). Once the container has exited, one last
        // read without following collects whatever the stream had not delivered.
        const IDLE_REATTACH: std::time::Duration = std::time::Duration::from_secs(3);
        let mut seen = SeenLines::default();
        loop {
            let mut skip = seen.in_last_second;
            let mut output = std::pin::pin!(engine.output_from(&id, seen.since(), true));
            let mut ended = false;
            while let Ok(next) = tokio::time::timeout(IDLE_REATTACH, output.next()).await {
                let Some(line) = next else {
                    ended = true;
                    break;
                };
                if seen.fresh(&line, &mut skip) {
                    record_line(
                        &log,
                        &last_lines,
                        component,
                        stream_of(&line),
                        &line.text,
                        line.ts,
                    );
                }
            }
            if engine.pid(&id).await.is_none() {
                let mut skip = seen.in_last_second;
                let mut rest = std::pin::pin!(engine.output_from(&id, seen.since(), false));
                while let Some(line) = rest.next().await {
                    if seen.fresh(&line, &mut skip) {
                        record_line(
                            &log,
                            &last_lines,
                            component,
                            stream_of(&line),
                            &line.text,
                            line.ts,
                        );
                    }
                }
                break;
            }
            if ended {
                // Broken off while running: do not hammer the engine.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    })
}

fn stream_of(line: &stigmer_container::OutputLine) -> Stream {
    if line.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

/// Where a container's captured output stands: the second of the last line recorded and how
/// many lines of that second were recorded, so a stream attached again from that second
/// skips exactly those.
#[derive(Default)]
struct SeenLines {
    last_second: Option<i64>,
    in_last_second: usize,
}

impl SeenLines {
    /// The `since` to attach again with (0: from the start).
    fn since(&self) -> i32 {
        self.last_second
            .and_then(|second| i32::try_from(second).ok())
            .unwrap_or(0)
    }

    /// Whether `line` (of a stream attached at [`SeenLines::since`], with `skip` lines of that
    /// second still to pass over) is new, recording it when it is.
    fn fresh(&mut self, line: &stigmer_container::OutputLine, skip: &mut usize) -> bool {
        let second = line.ts.timestamp();
        if Some(second) == self.last_second && *skip > 0 {
            *skip -= 1;
            return false;
        }
        *skip = 0;
        if Some(second) == self.last_second {
            self.in_last_second += 1;
        } else {
            self.last_second = Some(second);
            self.in_last_second = 1;
        }
        true
    }
}

/// One output line into the log and the last-lines window.
fn record_line(
    log: &SharedLogFile,
    last_lines: &Mutex<VecDeque<String>>,
    component: &'static str,
    stream: Stream,
    line: &str,
    ts: chrono::DateTime<chrono::Utc>,
) {
    let Some(record) = stigmer_logs::capture_line(component, stream, line, ts) else {
        return;
    };
    {
        let mut last = lock(last_lines);
        if last.len() == LAST_LINES {
            last.pop_front();
        }
        last.push_back(record.message.clone());
    }
    let _ = log.write_record(&record);
}

/// Children get a clean environment: only what every program needs, never the daemon's
/// variables (which is how configuration used to leak and drift).
pub fn minimal_env(command: &mut Command) {
    command.env_clear();
    for name in [
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "RUST_BACKTRACE",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
}

/// Completes once the flag becomes true (or its sender is gone).
pub async fn until_true(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_attached_again_skips_exactly_what_was_recorded() {
        use chrono::TimeZone;
        let line = |second: i64, text: &str| stigmer_container::OutputLine {
            stderr: false,
            ts: chrono::Utc.timestamp_opt(second, 0).unwrap(),
            text: text.to_owned(),
        };
        let mut seen = SeenLines::default();
        let mut skip = seen.in_last_second;
        assert_eq!(seen.since(), 0);
        // First attach: lines of seconds 10 and 11 (whole seconds, as Podman gives them).
        for (second, text) in [(10, "a"), (11, "b"), (11, "c")] {
            assert!(seen.fresh(&line(second, text), &mut skip), "{text}");
        }
        // The stream stalls; attached again from second 11, it replays b and c first.
        assert_eq!(seen.since(), 11);
        let mut skip = seen.in_last_second;
        let replayed = [(11, "b"), (11, "c"), (11, "d"), (12, "e")]
            .into_iter()
            .filter(|(second, text)| seen.fresh(&line(*second, text), &mut skip))
            .map(|(_, text)| text)
            .collect::<Vec<_>>();
        assert_eq!(replayed, ["d", "e"]);
        assert_eq!((seen.since(), seen.in_last_second), (12, 1));
    }

    use super::*;

    fn context(dir: &std::path::Path) -> (UnitContext, Arc<Board>, watch::Receiver<bool>) {
        let board = Arc::new(Board::default());
        board.insert(
            Component::AgentRunner,
            crate::board::ComponentRecord::new(crate::board::RunMode::Process),
        );
        let (ready, ready_rx) = watch::channel(false);
        let context = UnitContext {
            component: Component::AgentRunner,
            board: board.clone(),
            log: SharedLogFile::open(dir.join("agent-runner.log"), Default::default()).unwrap(),
            supervisor: SupervisorSettings {
                backoff_initial_ms: 10,
                backoff_max_ms: 40,
                max_restarts: 3,
                stop_timeout_secs: 5,
                ..SupervisorSettings::default()
            },
            children_changed: Arc::new(|_, _| {}),
            ready,
        };
        (context, board, ready_rx)
    }

    fn shell(script: &'static str, ready: bool) -> LaunchFactory {
        Box::new(move |_generation| {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(script);
            Launch {
                spawn: Spawn::Process(command),
                probe: Box::new(move || Box::pin(async move { ready })),
            }
        })
    }

    async fn wait_for(
        board: &Board,
        deadline: Duration,
        check: impl Fn(&crate::board::ComponentRecord) -> bool,
    ) {
        let until = Instant::now() + deadline;
        loop {
            if board
                .get(Component::AgentRunner)
                .as_ref()
                .is_some_and(&check)
            {
                return;
            }
            assert!(
                Instant::now() < until,
                "condition not reached: {:?}",
                board.get(Component::AgentRunner)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_crashing_child_is_restarted_then_failed_with_its_last_output() {
        let dir = tempfile::tempdir().unwrap();
        let (context, board, _ready) = context(dir.path());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            context,
            shell("echo 'boom: cannot continue' >&2; exit 3", false),
            stop_rx,
        ));
        wait_for(&board, Duration::from_secs(10), |record| {
            record.state == ComponentState::Failed
        })
        .await;
        let record = board.get(Component::AgentRunner).unwrap();
        assert_eq!(record.restarts, 3);
        let last_exit = record.last_exit.unwrap();
        assert!(last_exit.contains("exited with code 3"), "{last_exit}");
        assert!(last_exit.contains("boom: cannot continue"), "{last_exit}");
        assert!(last_exit.contains("given up"), "{last_exit}");
        let log = fs_err::read_to_string(dir.path().join("agent-runner.log")).unwrap();
        assert!(log.contains("boom: cannot continue"));
        stop_tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn output_that_is_not_utf8_does_not_end_the_capture() {
        let dir = tempfile::tempdir().unwrap();
        let (context, board, _ready) = context(dir.path());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            context,
            shell(
                "printf 'bad \\377\\376 bytes\\nstill captured\\n' >&2; exit 3",
                false,
            ),
            stop_rx,
        ));
        wait_for(&board, Duration::from_secs(10), |record| {
            record.state == ComponentState::Failed
        })
        .await;
        let log = fs_err::read_to_string(dir.path().join("agent-runner.log")).unwrap();
        assert!(log.contains("bad \u{fffd}\u{fffd} bytes"), "{log}");
        assert!(log.contains("still captured"), "{log}");
        stop_tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_stopped_child_is_shown_unresponsive_then_killed_and_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut context, board, _ready) = context(dir.path());
        context.supervisor.unresponsive_restart_secs = 3;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(context, shell("exec sleep 600", true), stop_rx));
        wait_for(&board, Duration::from_secs(10), |record| {
            record.state == ComponentState::Running
        })
        .await;
        let first = board.get(Component::AgentRunner).unwrap().pid.unwrap();
        process::signal_process(first, Signal::SIGSTOP);
        wait_for(&board, Duration::from_secs(10), |record| {
            record.state == ComponentState::Unresponsive && record.pid == Some(first)
        })
        .await;
        wait_for(&board, Duration::from_secs(20), |record| {
            record.state == ComponentState::Running && record.restarts == 1
        })
        .await;
        let record = board.get(Component::AgentRunner).unwrap();
        assert_ne!(record.pid, Some(first));
        let last_exit = record.last_exit.unwrap();
        assert!(
            last_exit.contains(
                "unresponsive for 3s (its process was stopped); killed by the supervisor"
            ),
            "{last_exit}"
        );
        assert!(process::start_time(first).is_none(), "{first} survived");
        stop_tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_child_continued_in_time_is_running_again_and_not_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut context, board, _ready) = context(dir.path());
        context.supervisor.unresponsive_restart_secs = 600;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(context, shell("exec sleep 600", true), stop_rx));
        wait_for(&board, Duration::from_secs(10), |record| {
            record.state == ComponentState::Running
        })
        .await;
        let pid = board.get(Component::AgentRunner).unwrap().pid.unwrap();
        process::signal_process(pid, Signal::SIGSTOP);
        wait_for(&board, Duration::from_secs(10), |record| {
            record.state == ComponentState::Unresponsive
        })
        .await;
        process::signal_process(pid, Signal::SIGCONT);
        wait_for(&board, Duration::from_secs(10), |record| {
            record.state == ComponentState::Running
        })
        .await;
        let record = board.get(Component::AgentRunner).unwrap();
        assert_eq!((record.pid, record.restarts), (Some(pid), 0));
        stop_tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_ready_child_runs_and_stops_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let (context, board, mut ready) = context(dir.path());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(context, shell("exec sleep 600", true), stop_rx));
        tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
            .await
            .unwrap()
            .unwrap();
        let record = board.get(Component::AgentRunner).unwrap();
        assert_eq!(record.state, ComponentState::Running);
        let pid = record.pid.unwrap();
        stop_tx.send_replace(true);
        task.await.unwrap();
        assert_eq!(
            board.get(Component::AgentRunner).unwrap().state,
            ComponentState::Stopped
        );
        assert!(
            process::start_time(pid).is_none(),
            "child {pid} survived the stop"
        );
    }
}
