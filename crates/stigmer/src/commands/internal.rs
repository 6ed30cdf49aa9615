//! The hidden roles the daemon starts: the daemon itself and the two runners, and the resident
//! wrapper (`internal exec`) the agent-runner starts its shell commands and MCP servers under.

use crate::cli::InternalExecArgs;
use crate::failure::Failure;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;
use stigmer_config::{Component, RunnerLaunchSpec, RunnerRole, Settings};
use stigmer_daemon::EXIT_CONFIG;
use stigmer_logs::{JsonLayer, LogSink, RotationPolicy, SharedLogFile};

/// `stigmer internal daemon`: reads the settings the CLI resolved from stdin and runs until
/// SIGTERM/SIGINT or an API shutdown.
pub async fn daemon() -> Result<ExitCode, Failure> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|error| Failure::new(format!("cannot read the daemon settings: {error}")))?;
    let settings: Settings = serde_json::from_str(&input)
        .map_err(|error| Failure::new(format!("invalid daemon settings on stdin: {error}")))?;
    // Leave the CLI's session so that closing its terminal does not stop the stack.
    let _ = nix::unistd::setsid();
    match run_daemon(settings).await {
        Ok(code) => Ok(code),
        Err(failure) => {
            // The CLI that started us reads stderr until the stack is ready and parses this
            // last line; after that the pipe may be closed, which is fine.
            let line = serde_json::json!({"error": failure.message, "hint": failure.hint});
            let _ = writeln!(std::io::stderr(), "{line}");
            Ok(ExitCode::from(failure.code))
        }
    }
}

/// Runs the daemon in this process with its log in `daemon.log`, and the log of the API server
/// it hosts in `server.log`; shared by `--foreground`.
pub async fn run_daemon(settings: Settings) -> Result<ExitCode, Failure> {
    let log = stigmer_daemon::open_daemon_log(&settings)
        .map_err(|error| Failure::new(format!("cannot open the daemon log: {error}")))?;
    let server_path = settings.home.log_file(Component::Server);
    let server_log = SharedLogFile::open(
        &server_path,
        RotationPolicy {
            max_bytes: settings.logs.max_file_bytes,
            max_files: settings.logs.max_files,
        },
    )
    .map_err(|error| {
        Failure::new(format!(
            "cannot open the server log {}: {error}",
            server_path.display()
        ))
    })?;
    let filter = settings.logs.level.clone();
    let layer = JsonLayer::new(Component::Daemon.name(), LogSink::File(log))
        .route(
            "stigmer_server",
            Component::Server.name(),
            LogSink::File(server_log.clone()),
        )
        .route(
            "stigmer_store",
            Component::Server.name(),
            LogSink::File(server_log.clone()),
        )
        .route(
            "stigmer_telemetry",
            Component::Server.name(),
            LogSink::File(server_log),
        );
    if let Err(error) = stigmer_logs::init_layer(&filter, layer) {
        return Err(Failure::new(format!("cannot set up logging: {error}")));
    }
    log_panics();
    // The API server's spans (an execution's root span, a workflow's task spans), when an
    // endpoint is configured; flushed within a bound when the daemon stops.
    let telemetry = stigmer_telemetry::init(
        &settings.telemetry,
        "stigmer-server",
        &format!("server@{}", std::process::id()),
    );
    let outcome = stigmer_daemon::run(settings, termination()).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // Losing a start race to another daemon of the same home is expected (concurrent
        // `start`s), not a failure of the running one.
        Err(error @ stigmer_daemon::DaemonError::AlreadyRunning { .. }) => {
            tracing::info!(reason = %error, "Daemon not started: another one holds the lock.");
            Err(Failure::from(error))
        }
        Err(error) => {
            tracing::error!(error = %error, "Daemon failed.");
            Err(Failure::from(error))
        }
    }
}

/// Puts every panic of this process into its log (with where it happened) before the default
/// report on stderr, which nobody reads once the daemon is detached. The daemon's tasks turn a
/// panic into a failed run; this covers one anywhere else.
fn log_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let location = info
            .location()
            .map(|at| format!("{}:{}", at.file(), at.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, location = %location, "A thread panicked.");
        report(info);
    }));
}

/// Completes on SIGTERM or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can still be stopped over the API.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// `stigmer internal agent-runner|workflow-runner`.
pub async fn runner(role: RunnerRole) -> Result<ExitCode, Failure> {
    let spec = match RunnerLaunchSpec::from_env(std::env::vars()) {
        Ok(spec) => spec,
        Err(error) => {
            // Logging is configured by the spec, so this goes out plain; the daemon captures
            // it into the runner's log and records it as the exit reason.
            let _ = writeln!(std::io::stderr(), "refusing to start: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG as u8));
        }
    };
    if spec.role != role {
        let _ = writeln!(
            std::io::stderr(),
            "refusing to start: STIGMER_RUNNER_ROLE is {:?} but this is the {} runner",
            spec.role.as_str(),
            role.as_str()
        );
        return Ok(ExitCode::from(EXIT_CONFIG as u8));
    }
    let component = match role {
        RunnerRole::Agent => Component::AgentRunner,
        RunnerRole::Workflow => Component::WorkflowRunner,
    };
    if let Err(error) = stigmer_logs::init(component.name(), &spec.log_filter, LogSink::Stdout) {
        let _ = writeln!(std::io::stderr(), "refusing to start: {error}");
        return Ok(ExitCode::from(EXIT_CONFIG as u8));
    }
    tracing::info!(config = ?spec, pid = std::process::id(), "Runner starting.");
    let result = match role {
        RunnerRole::Agent => stigmer_agent_runner::run(spec, termination()).await,
        RunnerRole::Workflow => stigmer_workflow_runner::run(spec, termination()).await,
    };
    match result {
        Ok(()) => {
            tracing::info!("Runner stopped.");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            tracing::error!(error = %error, "Runner failed.");
            Ok(ExitCode::from(1))
        }
    }
}

/// `stigmer internal exec`: runs before the async runtime exists (see
/// `commands::dispatch_before_runtime`), because the wrapper confines itself with Landlock, which
/// binds only the calling thread, and then runs a single-threaded runtime of its own.
pub fn exec(args: InternalExecArgs) -> ExitCode {
    let code = stigmer_sandbox::exec_main(exec_args(args));
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

fn exec_args(args: InternalExecArgs) -> stigmer_sandbox::ExecArgs {
    let confine = match (args.workspace, args.tmp) {
        (Some(workspace), Some(tmp)) => Some(stigmer_sandbox::Confinement { workspace, tmp }),
        // clap requires both or neither.
        _ => None,
    };
    stigmer_sandbox::ExecArgs {
        confine,
        timeout: args.timeout_ms.map(Duration::from_millis),
        argv: args.command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, InternalCommand};
    use clap::Parser;
    use std::ffi::OsString;
    use std::path::PathBuf;

    /// The command line `stigmer_sandbox::Wrapper` writes is the one clap reads.
    #[test]
    fn exec_reads_what_the_wrapper_writes() {
        for args in [
            stigmer_sandbox::ExecArgs {
                confine: Some(stigmer_sandbox::Confinement {
                    workspace: PathBuf::from("/w"),
                    tmp: PathBuf::from("/t"),
                }),
                timeout: Some(Duration::from_millis(1500)),
                argv: ["sh", "-c", "echo --tmp -- x"].map(OsString::from).to_vec(),
            },
            stigmer_sandbox::ExecArgs {
                confine: None,
                timeout: None,
                argv: vec![OsString::from("true")],
            },
        ] {
            let mut line: Vec<OsString> =
                ["stigmer", "internal", "exec"].map(OsString::from).to_vec();
            line.extend(args.to_args());
            let Command::Internal(InternalCommand::Exec(parsed)) =
                Cli::try_parse_from(line).expect("parse").command
            else {
                panic!("not internal exec");
            };
            assert_eq!(exec_args(parsed), args);
        }
    }
}
