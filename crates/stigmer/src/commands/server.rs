//! `stigmer server start|stop|restart|status`.

use crate::cli::{StartArgs, StatusArgs};
use crate::client::DaemonClient;
use crate::failure::{EXIT_NOT_RUNNING, Failure};
use crate::printer::{Printer, print_data};
use nix::sys::signal::Signal;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use stigmer_client::home::{RunState, is_locked};
use stigmer_config::{Component, Settings, StigmerHome};
use stigmer_daemon::process;
use stigmer_proto::daemon::v1::{ComponentState, ComponentStatus, GetStatusResponse};

/// How often startup progress is polled.
const POLL: Duration = Duration::from_millis(50);

pub async fn start(args: StartArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let printer = Printer::stderr();
    if is_locked(&home.lock_file()) {
        return already_running(&home, &args, &printer).await;
    }
    let settings = super::invocation::settings(home.clone(), &args)?;
    if args.foreground {
        return start_foreground(settings, printer).await;
    }
    start_detached(settings, &printer).await?;
    Ok(ExitCode::SUCCESS)
}

/// `start` on a home whose lock is held: the daemon may still be starting (another command
/// won the race for the lock), so it is waited for like one of our own.
async fn already_running(
    home: &StigmerHome,
    args: &StartArgs,
    printer: &Printer,
) -> Result<ExitCode, Failure> {
    let deadline = Instant::now() + startup_timeout(home, args);
    let (_, status) = wait_for_daemon(home, deadline, Want::AllRunning, None).await?;
    printer.step(&format!(
        "Stigmer is already running (daemon pid {}, home {})",
        status.daemon_pid, status.home
    ));
    Ok(ExitCode::SUCCESS)
}

/// How long to wait for a stack to be ready: the configured startup timeout, or its default
/// when the configuration cannot be resolved (the running daemon does not depend on it).
fn startup_timeout(home: &StigmerHome, args: &StartArgs) -> Duration {
    let seconds = super::invocation::settings(home.clone(), args)
        .map(|settings| settings.supervisor.startup_timeout_secs)
        .unwrap_or_else(|_| stigmer_config::SupervisorSettings::default().startup_timeout_secs);
    Duration::from_secs(seconds)
}

/// What a command waiting for a daemon it did not start needs from it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Its startup is over: every component runs, one failed, or the daemon is older than the
    /// startup timeout (commands that use the stack as it is, e.g. `run` and `apply`).
    Settled { startup_timeout: Duration },
    /// Every component runs (`start`).
    AllRunning,
}

impl Want {
    fn satisfied_by(self, status: &GetStatusResponse) -> bool {
        all_running(status)
            || match self {
                Want::AllRunning => false,
                Want::Settled { startup_timeout } => {
                    status
                        .components
                        .iter()
                        .any(|c| c.state() == ComponentState::Failed)
                        || u64::try_from(status.daemon_uptime_secs).unwrap_or(0)
                            >= startup_timeout.as_secs()
                }
            }
    }
}

/// Waits for the daemon that holds this home's lock (one this command did not start) until it
/// is what `want` says, one of its components failed, it went away or the deadline passed.
/// Progress is shown on `printer` when there is one.
async fn wait_for_daemon(
    home: &StigmerHome,
    deadline: Instant,
    want: Want,
    printer: Option<&Printer>,
) -> Result<(DaemonClient, GetStatusResponse), Failure> {
    let mut shown = BTreeSet::new();
    let mut client: Option<DaemonClient> = None;
    let mut last_status: Option<GetStatusResponse> = None;
    loop {
        if !is_locked(&home.lock_file()) {
            return Err(Failure::new(
                "the Stigmer daemon stopped while this command waited for it",
            )
            .with_details(log_tail(home, Component::Daemon, 10))
            .with_hint(Some(format!(
                "see {} and retry",
                home.log_file(Component::Daemon).display()
            ))));
        }
        if let Err(damage) = RunState::read(home) {
            return Err(damaged_state_failure(home, &damage));
        }
        if client.is_none() {
            client = current_client(home).await;
        }
        // A client whose request fails is dropped: the daemon may have been replaced.
        if let Some(mut connected) = client.take()
            && let Ok(status) = connected.status().await
        {
            if let Some(printer) = printer {
                show_progress(&status, &mut shown, printer);
            }
            if want.satisfied_by(&status) {
                return Ok((connected, status));
            }
            if status
                .components
                .iter()
                .any(|c| c.state() == ComponentState::Failed)
            {
                return Err(unhealthy_failure(&status));
            }
            last_status = Some(status);
            client = Some(connected);
        }
        if Instant::now() >= deadline {
            return Err(match &last_status {
                Some(status) => unhealthy_failure(status),
                None => Failure::new("a Stigmer daemon holds this home's lock but does not answer")
                    .with_hint(Some(
                        "wait a moment and retry, or run `stigmer server stop`".into(),
                    )),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn unhealthy_failure(status: &GetStatusResponse) -> Failure {
    Failure::new("Stigmer is running, but not every component is healthy")
        .with_details(unhealthy_details(status))
        .with_hint(Some(
            "see `stigmer server status`, or `stigmer server restart`".into(),
        ))
}

/// A client of the daemon that holds the lock now: the state file is used only when it was
/// written by that very process (pid and start time in the lock file), never a predecessor's.
async fn current_client(home: &StigmerHome) -> Option<DaemonClient> {
    let (pid, start_time) = stigmer_client::home::lock_holder(&home.lock_file())?;
    let state = RunState::load(home)?;
    if state.daemon_pid != pid || state.daemon_start_time != start_time {
        return None;
    }
    DaemonClient::connect_to(home, state.server_address.as_deref()?)
        .await
        .ok()
}

/// Starts `stigmer internal daemon` detached and waits until the stack is ready.
async fn start_detached(settings: Settings, printer: &Printer) -> Result<(), Failure> {
    let started = Instant::now();
    let home = settings.home.clone();
    home.create_dirs().map_err(|error| {
        Failure::new(format!("cannot create {}: {error}", home.root().display()))
    })?;
    let executable = std::env::current_exe()
        .map_err(|error| Failure::new(format!("cannot find the stigmer binary: {error}")))?;
    let mut child = std::process::Command::new(executable)
        .args(["internal", "daemon"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Failure::new(format!("cannot start the daemon: {error}")))?;
    let settings_json = serde_json::to_string(&settings)
        .map_err(|error| Failure::new(format!("cannot encode settings: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // The daemon reads until end of input; dropping stdin closes it.
        let _ = stdin.write_all(settings_json.as_bytes());
    }
    let deadline = started + Duration::from_secs(settings.supervisor.startup_timeout_secs);
    printer.line(&format!(
        "Starting Stigmer (home {})",
        home.root().display()
    ));
    match wait_ready(&home, &mut child, deadline, printer).await {
        Ok(status) => {
            print_ready(&status, started, printer);
            check_default_model(&settings, printer).await;
            Ok(())
        }
        Err(failure) => {
            // Nothing may be left running after a failed start.
            stop_daemon_process(&home, &mut child, &settings).await;
            Err(failure)
        }
    }
}

async fn start_foreground(settings: Settings, printer: Printer) -> Result<ExitCode, Failure> {
    let home = settings.home.clone();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(settings.supervisor.startup_timeout_secs);
    printer.line(&format!(
        "Starting Stigmer in the foreground (home {}); Ctrl-C stops it",
        home.root().display()
    ));
    let settings_for_check = settings.clone();
    let mut daemon = tokio::spawn(super::internal::run_daemon(settings));
    let progress = async {
        let mut shown = BTreeSet::new();
        while Instant::now() < deadline {
            if let Ok(mut client) = DaemonClient::connect(&home).await
                && let Ok(status) = client.status().await
                && fresh(&home, &status)
            {
                show_progress(&status, &mut shown, &printer);
                if all_running(&status) {
                    print_ready(&status, started, &printer);
                    check_default_model(&settings_for_check, &printer).await;
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::select! {
        () = progress => {}
        result = &mut daemon => return finish_foreground(result),
    }
    // Keep running until the daemon stops (Ctrl-C or an API shutdown).
    finish_foreground(daemon.await)
}

/// With Ollama as the default provider, says when the model is missing (and how to get it) or
/// when Ollama does not answer. It never pulls a model: that is a multi-gigabyte download the
/// user decides on.
async fn check_default_model(settings: &Settings, printer: &Printer) {
    let llm = &settings.llm;
    if llm.provider != stigmer_config::LlmProvider::Ollama {
        return;
    }
    match stigmer_llm::check_ollama_model(&llm.base_url, &llm.model).await {
        stigmer_llm::ModelCheck::Available => {}
        stigmer_llm::ModelCheck::Missing { available } => {
            printer.warning(&format!(
                "Ollama at {} does not have the model {}; get it with `ollama pull {}`{}",
                llm.base_url,
                llm.model,
                llm.model,
                if available.is_empty() {
                    String::new()
                } else {
                    format!(" (it has: {})", available.join(", "))
                }
            ));
        }
        stigmer_llm::ModelCheck::Unreachable { .. } => {
            printer.warning(&format!(
                "Ollama does not answer at {}; start it with `ollama serve`, or set another \
                 provider (llm.provider in config.yaml)",
                llm.base_url
            ));
        }
    }
}

fn finish_foreground(
    result: Result<Result<ExitCode, Failure>, tokio::task::JoinError>,
) -> Result<ExitCode, Failure> {
    match result {
        Ok(outcome) => outcome,
        Err(error) => Err(Failure::new(format!("the daemon task failed: {error}"))),
    }
}

/// Polls the daemon until every component runs, one failed, the daemon exited or the deadline
/// passed.
async fn wait_ready(
    home: &StigmerHome,
    child: &mut std::process::Child,
    deadline: Instant,
    printer: &Printer,
) -> Result<GetStatusResponse, Failure> {
    let mut shown = BTreeSet::new();
    let mut client: Option<DaemonClient> = None;
    let mut last_status: Option<GetStatusResponse> = None;
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            if is_locked(&home.lock_file()) {
                // Another command started a daemon for this home at the same time and won the
                // race for the lock (ours exited saying so): wait for that one instead.
                let (_, status) =
                    wait_for_daemon(home, deadline, Want::AllRunning, Some(printer)).await?;
                return Ok(status);
            }
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            // The daemon reports a startup error as a JSON line `{"error", "hint"}`.
            let reported = stderr
                .lines()
                .rev()
                .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
            let message = reported
                .as_ref()
                .and_then(|value| value["error"].as_str().map(str::to_owned))
                .or_else(|| {
                    stderr
                        .lines()
                        .rev()
                        .find(|line| !line.trim().is_empty())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| format!("the daemon {}", describe(exit)));
            let hint = reported
                .as_ref()
                .and_then(|value| value["hint"].as_str().map(str::to_owned));
            // A reported error says everything; otherwise the daemon's log may say more.
            let details = if reported.is_some() {
                Vec::new()
            } else {
                log_tail(home, Component::Daemon, 10)
            };
            let failure = Failure::new(message).with_details(details).with_hint(hint);
            return Err(failure);
        }
        if client.is_none()
            && let Some(state) = RunState::load(home)
            && state.daemon_pid == child.id()
            && let Some(address) = state.server_address
        {
            client = DaemonClient::connect_to(home, &address).await.ok();
        }
        if let Some(connected) = client.as_mut()
            && let Ok(status) = connected.status().await
        {
            show_progress(&status, &mut shown, printer);
            if all_running(&status) {
                return Ok(status);
            }
            if let Some(failed) = status
                .components
                .iter()
                .find(|c| c.state() == ComponentState::Failed)
            {
                let component = Component::parse(&failed.name).unwrap_or(Component::Daemon);
                let mut details = vec![format!(
                    "{}: {}",
                    failed.name,
                    failed.last_exit.clone().unwrap_or_default()
                )];
                details.push(format!("last lines of {}.log:", failed.name));
                details.extend(log_tail(home, component, 10));
                return Err(Failure::new(format!("{} failed to start", failed.name))
                    .with_details(details)
                    .with_hint(Some(format!(
                        "the whole log is {}",
                        home.log_file(component).display()
                    ))));
            }
            last_status = Some(status);
        }
        if Instant::now() >= deadline {
            let mut details = Vec::new();
            if let Some(status) = &last_status {
                for component in status
                    .components
                    .iter()
                    .filter(|c| c.state() != ComponentState::Running)
                {
                    details.push(format!(
                        "{} is {}",
                        component.name,
                        component.state().label()
                    ));
                    if let Some(parsed) = Component::parse(&component.name) {
                        details.extend(log_tail(home, parsed, 5));
                    }
                }
            } else {
                details.extend(log_tail(home, Component::Daemon, 10));
            }
            return Err(Failure::new("the stack did not become ready in time")
                .with_details(details)
                .with_hint(Some(
                    "raise --wait-timeout, or look at the logs in $STIGMER_HOME/logs".into(),
                )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `status` comes from the daemon recorded in this home now (not a previous one).
fn fresh(home: &StigmerHome, status: &GetStatusResponse) -> bool {
    RunState::load(home).is_some_and(|state| i64::from(state.daemon_pid) == status.daemon_pid)
}

fn show_progress(status: &GetStatusResponse, shown: &mut BTreeSet<String>, printer: &Printer) {
    for component in &status.components {
        if component.state() == ComponentState::Running && shown.insert(component.name.clone()) {
            let detail = match component.name.as_str() {
                "agent-runner" => format!("polling {}", stigmer_config::AGENT_TASK_QUEUE),
                "workflow-runner" => format!("polling {}", stigmer_config::WORKFLOW_TASK_QUEUE),
                _ if component.mode == "external" => format!(
                    "external at {}",
                    component.endpoint.clone().unwrap_or_default()
                ),
                _ => format!(
                    "ready at {}",
                    component.endpoint.clone().unwrap_or_default()
                ),
            };
            printer.step(&format!("{:<16} {detail}", component.name));
        }
    }
}

fn print_ready(status: &GetStatusResponse, started: Instant, printer: &Printer) {
    printer.step(&format!(
        "Stigmer is ready in {:.1}s (daemon pid {})",
        started.elapsed().as_secs_f64(),
        status.daemon_pid
    ));
    if let Some(ui) = &status.temporal_ui {
        printer.line(&format!("  Temporal UI: {ui}"));
    }
}

fn all_running(status: &GetStatusResponse) -> bool {
    !status.components.is_empty()
        && status
            .components
            .iter()
            .all(|c| c.state() == ComponentState::Running)
}

fn unhealthy_details(status: &GetStatusResponse) -> Vec<String> {
    status
        .components
        .iter()
        .filter(|c| c.state() != ComponentState::Running)
        .map(|c| {
            format!(
                "{} is {}{}",
                c.name,
                c.state().label(),
                c.last_exit
                    .as_ref()
                    .map(|exit| format!(": {exit}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

fn describe(exit: std::process::ExitStatus) -> String {
    process::describe_exit(exit)
}

/// The last `count` lines of a component's log (stepping into rotated files when needed),
/// formatted for people.
fn log_tail(home: &StigmerHome, component: Component, count: usize) -> Vec<String> {
    use stigmer_logs::read::{Filter, LogSet, Source, Tail};
    let name = component.name();
    let Ok(set) = LogSet::open(vec![Source {
        component: name.to_owned(),
        path: home.log_file(component),
    }]) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let _ = set.history(&Filter::default(), Tail::Last(count), |line| {
        let record = line.record(name);
        lines.push(format!(
            "{} {} {}: {}",
            stigmer_logs::format_ts(record.ts),
            record.component,
            record.level.as_str(),
            record.message
        ));
        Ok(())
    });
    lines
}

/// A client of this home's daemon, starting the daemon first when it is not running (what
/// commands that change state do, so that `stigmer apply` just works).
pub async fn ensure_running(home: &StigmerHome) -> Result<DaemonClient, Failure> {
    if is_locked(&home.lock_file()) {
        // The daemon may still be starting (another command started it): wait for its startup
        // to be over, as the command that started it does.
        let startup_timeout = startup_timeout(home, &StartArgs::default());
        let deadline = Instant::now() + startup_timeout;
        let want = Want::Settled { startup_timeout };
        let (client, _) = wait_for_daemon(home, deadline, want, None).await?;
        return Ok(client);
    }
    let settings = super::invocation::settings(home.clone(), &StartArgs::default())?;
    start_detached(settings, &Printer::stderr()).await?;
    connect(home).await
}

/// A client of this home's running daemon.
pub async fn connect(home: &StigmerHome) -> Result<DaemonClient, Failure> {
    DaemonClient::connect(home).await.map_err(|error| {
        Failure::new(format!("cannot reach the Stigmer daemon: {error}"))
            .with_hint(Some("see `stigmer server status`".into()))
    })
}

pub async fn stop() -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let printer = Printer::stderr();
    if !is_locked(&home.lock_file()) {
        printer.line("Stigmer is not running; nothing to stop");
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let settings = super::invocation::settings(home.clone(), &StartArgs::default()).ok();
    let grace = settings
        .as_ref()
        .map(|s| s.supervisor.stop_timeout_secs)
        .unwrap_or(10);
    stop_running_daemon(&home, grace).await?;
    printer.step(&format!(
        "Stigmer stopped in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to stop over the API, falls back to SIGTERM, and as a last resort SIGKILL
/// (the children then die through their parent-death signal and are reaped from the state).
async fn stop_running_daemon(home: &StigmerHome, grace_secs: u64) -> Result<(), Failure> {
    let requested = match DaemonClient::connect(home).await {
        Ok(mut client) => client.shutdown().await.is_ok(),
        Err(_) => false,
    };
    let state = RunState::load(home);
    // The daemon's pid and start time: from the state file, or else from the lock file.
    let daemon: Option<(u32, u64)> = state
        .as_ref()
        .map(|state| (state.daemon_pid, state.daemon_start_time))
        .or_else(|| stigmer_client::home::lock_holder(&home.lock_file()))
        .filter(|(pid, start_time)| process::is_same_process(*pid, *start_time));
    if !requested && let Some((pid, _)) = daemon {
        process::signal_process(pid, Signal::SIGTERM);
    }
    // Runners get `grace_secs`, then Temporal gets as long again; allow for both.
    let deadline = Instant::now() + Duration::from_secs(grace_secs * 2 + 10);
    while Instant::now() < deadline {
        if !is_locked(&home.lock_file()) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    if let Some((pid, _)) = daemon {
        process::signal_process(pid, Signal::SIGKILL);
        for child in state.iter().flat_map(|state| &state.children) {
            process::reap_recorded(child.pid, child.start_time, Duration::from_secs(1));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !is_locked(&home.lock_file()) {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Err(Failure::new("the daemon did not stop")
        .with_hint(Some("see $STIGMER_HOME/logs/daemon.log".into())))
}

/// Stops the daemon we just started after a failed start, whatever state it is in. Only our
/// own: a daemon that another command started (it won the race for the lock) is not ours to stop.
async fn stop_daemon_process(
    home: &StigmerHome,
    child: &mut std::process::Child,
    settings: &Settings,
) {
    let ours = is_locked(&home.lock_file())
        && stigmer_client::home::lock_holder(&home.lock_file())
            .is_some_and(|(pid, _)| pid == child.id());
    if ours {
        let _ = stop_running_daemon(home, settings.supervisor.stop_timeout_secs).await;
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

pub async fn restart(args: StartArgs) -> Result<ExitCode, Failure> {
    stop().await?;
    start(args).await
}

pub async fn status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    if !is_locked(&home.lock_file()) {
        if args.json {
            print_data(&status_json(&home, None).to_string());
        } else {
            print_data(&format!(
                "Stigmer is not running (home {})",
                home.root().display()
            ));
        }
        return Ok(ExitCode::from(EXIT_NOT_RUNNING));
    }
    let damage = RunState::read(&home).err();
    let answer = match &damage {
        Some(damage) => Err(damage.to_string()),
        None => match DaemonClient::connect(&home).await {
            Ok(mut client) => client
                .status()
                .await
                .map_err(|error| error.message().to_owned()),
            Err(error) => Err(error),
        },
    };
    let mut status = match answer {
        Ok(status) => status,
        Err(reason) => {
            // The lock is held, so a daemon is alive; it may still be starting. Its pid comes
            // from the lock file, which does not depend on the state file.
            if damage.is_none() {
                Printer::stderr().line(&format!(
                    "note: the daemon is running but does not answer yet ({reason})"
                ));
            }
            let holder = stigmer_client::home::lock_holder(&home.lock_file())
                .filter(|(pid, start_time)| process::is_same_process(*pid, *start_time));
            GetStatusResponse {
                daemon_pid: holder.map(|(pid, _)| i64::from(pid)).unwrap_or(0),
                home: home.root().display().to_string(),
                ..GetStatusResponse::default()
            }
        }
    };
    if let Some(damage) = &damage {
        status
            .problems
            .push(format!("{damage}; the daemon cannot be reached without it"));
    }
    if args.json {
        print_data(&status_json(&home, Some(&status)).to_string());
    } else {
        print_data(&status_table(&status));
    }
    match &damage {
        Some(damage) => Err(damaged_state_failure(&home, damage)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// A running daemon whose `run/state.json` is damaged: what is wrong and how to recover.
fn damaged_state_failure(
    home: &StigmerHome,
    damage: &stigmer_client::home::StateFileError,
) -> Failure {
    let daemon = match stigmer_client::home::lock_holder(&home.lock_file()) {
        Some((pid, _)) => format!("the daemon (pid {pid})"),
        None => "the daemon".to_owned(),
    };
    Failure::new(format!("cannot reach the Stigmer daemon: {damage}")).with_details(vec![
        format!(
            "{daemon} holds {} and is running, but its API address is recorded only in {}",
            home.lock_file().display(),
            home.state_file().display()
        ),
    ])
    .with_hint(Some(
        "run `stigmer server restart`: it finds the daemon through its lock file, stops it, and \
         the new daemon writes a new state file"
            .into(),
    ))
}

/// The `--json` shape documented for scripts.
fn status_json(home: &StigmerHome, status: Option<&GetStatusResponse>) -> serde_json::Value {
    match status {
        None => json!({
            "running": false,
            "daemon_pid": null,
            "home": home.root().display().to_string(),
            "components": [],
            "temporal_ui": null,
            "problems": [],
        }),
        Some(status) => json!({
            "running": true,
            "daemon_pid": status.daemon_pid,
            "home": status.home,
            "components": status.components.iter().map(component_json).collect::<Vec<_>>(),
            "temporal_ui": status.temporal_ui,
            "problems": status.problems,
        }),
    }
}

fn component_json(component: &ComponentStatus) -> serde_json::Value {
    json!({
        "name": component.name,
        "state": component.state().label(),
        "pid": component.pid,
        "container_id": component.container_id,
        "mode": component.mode,
        "restarts": component.restarts,
        "uptime_secs": component.uptime_secs,
        "last_exit": component.last_exit,
        "endpoint": component.endpoint,
    })
}

fn status_table(status: &GetStatusResponse) -> String {
    let mut out = format!(
        "Stigmer {} is running (daemon pid {}, up {}, home {})\n\n",
        status.version,
        status.daemon_pid,
        human_duration(status.daemon_uptime_secs),
        status.home
    );
    out.push_str(&format!(
        "{:<16} {:<11} {:<8} {:<9} {:<9} {:<9} {}\n",
        "COMPONENT", "STATE", "PID", "MODE", "UPTIME", "RESTARTS", "ENDPOINT"
    ));
    for component in &status.components {
        out.push_str(&format!(
            "{:<16} {:<11} {:<8} {:<9} {:<9} {:<9} {}\n",
            component.name,
            component.state().label(),
            component
                .pid
                .map(|pid| pid.to_string())
                .unwrap_or_else(|| "-".into()),
            component.mode,
            component
                .uptime_secs
                .map(human_duration)
                .unwrap_or_else(|| "-".into()),
            component.restarts,
            component
                .endpoint
                .clone()
                .or_else(|| component
                    .container_id
                    .as_ref()
                    .map(|id| format!("container {}", &id[..id.len().min(12)])))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    if let Some(ui) = &status.temporal_ui {
        out.push_str(&format!("\nTemporal UI: {ui}\n"));
    }
    let exits: Vec<&ComponentStatus> = status
        .components
        .iter()
        .filter(|c| c.last_exit.is_some())
        .collect();
    if !status.problems.is_empty() {
        out.push_str("\nProblems:\n");
        for problem in &status.problems {
            out.push_str(&format!("  {problem}\n"));
        }
    }
    if !exits.is_empty() {
        out.push_str("\nLast exits:\n");
        for component in exits {
            out.push_str(&format!(
                "  {}: {}\n",
                component.name,
                component.last_exit.clone().unwrap_or_default()
            ));
        }
    }
    out
}

fn human_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60),
        _ => format!("{}d {}h", seconds / 86400, (seconds % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m 5s");
        assert_eq!(human_duration(3700), "1h 1m");
        assert_eq!(human_duration(90000), "1d 1h");
    }
}
