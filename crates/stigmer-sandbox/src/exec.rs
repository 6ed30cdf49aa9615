//! The resident wrapper, `stigmer internal exec [--workspace DIR --tmp DIR] [--timeout-ms N] --
//! CMD ARGS…`: the process that makes sure a command's whole process tree ends with it.
//!
//! The runner spawns the wrapper as the leader of a new process group G with the parent-death
//! signal SIGTERM ([`crate::Wrapper::command`]). The wrapper, still single-threaded:
//!
//! 1. confines itself with Landlock when asked (inherited by everything it starts);
//! 2. starts CMD in G with the inherited stdin, stdout and stderr;
//! 3. points its own stdin, stdout and stderr at `/dev/null`, so that the runner sees end of file
//!    on its pipes as soon as CMD's tree is gone, not when the wrapper exits;
//! 4. waits for the first of: CMD exits → it kills every other member of G and exits with CMD's
//!    code (128 + signal if CMD was killed); the timeout → same, exit 124; SIGTERM (the parent
//!    died), SIGINT or SIGHUP → `killpg(G, SIGKILL)`, itself included.
//!
//! The parent-death signal is not inherited across `fork`, so without the wrapper nothing would
//! kill `sh -c 'sleep 100 & wait'`'s `sleep` after a `kill -9` of the runner.

use crate::confine::confine_self;
use crate::group::kill_others;
use crate::spawn::Confinement;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// The exit code when the timeout ended the command (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;

/// The exit code when the wrapper itself failed before the command ran (bad arguments, the
/// confinement could not be applied), as `env(1)` and `timeout(1)`.
pub const EXIT_WRAPPER_FAILED: i32 = 125;

/// The command was found but could not be executed (as the shell).
const EXIT_CANNOT_EXECUTE: i32 = 126;

/// The command was not found (as the shell).
const EXIT_NOT_FOUND: i32 = 127;

/// The wrapper's arguments (clap lives in the binary; this is the plain shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    /// Confine writes to the workspace and the private tmp with Landlock.
    pub confine: Option<Confinement>,
    /// Kill the command's group and exit 124 after this long.
    pub timeout: Option<Duration>,
    /// The command and its arguments (at least the command).
    pub argv: Vec<OsString>,
}

/// Arguments the wrapper does not accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecArgsError {
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("--workspace and --tmp go together")]
    HalfConfinement,
    #[error("--timeout-ms must be a whole number of milliseconds, not {0:?}")]
    Timeout(OsString),
    #[error("unexpected argument {0:?} (the command goes after `--`)")]
    Unexpected(OsString),
    #[error("no command after `--`")]
    NoCommand,
}

impl ExecArgs {
    /// The wrapper's arguments after `internal exec`: the inverse of [`ExecArgs::parse`].
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(confine) = &self.confine {
            args.push("--workspace".into());
            args.push(confine.workspace.clone().into_os_string());
            args.push("--tmp".into());
            args.push(confine.tmp.clone().into_os_string());
        }
        if let Some(timeout) = self.timeout {
            args.push("--timeout-ms".into());
            args.push(timeout.as_millis().to_string().into());
        }
        args.push("--".into());
        args.extend(self.argv.iter().cloned());
        args
    }

    /// Parses the arguments after `internal exec` (for the `stigmer-exec` test binary; the
    /// `stigmer` binary parses the same shape with clap).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, ExecArgsError> {
        let mut args = args.into_iter();
        let (mut workspace, mut tmp, mut timeout) = (None, None, None);
        loop {
            let Some(arg) = args.next() else {
                return Err(ExecArgsError::NoCommand);
            };
            match arg.to_str() {
                Some("--") => break,
                Some("--workspace") => {
                    let value = args
                        .next()
                        .ok_or(ExecArgsError::MissingValue("--workspace"))?;
                    workspace = Some(PathBuf::from(value));
                }
                Some("--tmp") => {
                    let value = args.next().ok_or(ExecArgsError::MissingValue("--tmp"))?;
                    tmp = Some(PathBuf::from(value));
                }
                Some("--timeout-ms") => {
                    let value = args
                        .next()
                        .ok_or(ExecArgsError::MissingValue("--timeout-ms"))?;
                    let millis: u64 = value
                        .to_str()
                        .and_then(|text| text.parse().ok())
                        .ok_or_else(|| ExecArgsError::Timeout(value.clone()))?;
                    timeout = Some(Duration::from_millis(millis));
                }
                _ => return Err(ExecArgsError::Unexpected(arg)),
            }
        }
        let confine = match (workspace, tmp) {
            (Some(workspace), Some(tmp)) => Some(Confinement { workspace, tmp }),
            (None, None) => None,
            _ => return Err(ExecArgsError::HalfConfinement),
        };
        let argv: Vec<OsString> = args.collect();
        if argv.is_empty() {
            return Err(ExecArgsError::NoCommand);
        }
        Ok(Self {
            confine,
            timeout,
            argv,
        })
    }
}

/// Runs the wrapper and returns its exit code. Must be called while the process has a single
/// thread (no async runtime yet): Landlock binds only the calling thread.
pub fn exec_main(args: ExecArgs) -> i32 {
    if args.argv.is_empty() {
        complain(format_args!("no command to run"));
        return EXIT_WRAPPER_FAILED;
    }
    // Run by hand from a shell, the wrapper would share the shell's group: then `killpg` would
    // hit the shell. Leading a group of its own keeps the kill to what the wrapper started.
    if nix::unistd::getpgrp() != nix::unistd::getpid()
        && let Err(error) = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))
    {
        complain(format_args!("cannot lead a process group: {error}"));
        return EXIT_WRAPPER_FAILED;
    }
    if let Some(confinement) = &args.confine {
        // Not enforced (an old kernel) runs unconfined: the runner probed with
        // `landlock_support` and said so in the run's events.
        if let Err(error) = confine_self(confinement) {
            complain(format_args!("{error}"));
            return EXIT_WRAPPER_FAILED;
        }
    }
    // One thread: signal handlers, the child's exit and the timer on a current-thread runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            complain(format_args!("cannot start the runtime: {error}"));
            return EXIT_WRAPPER_FAILED;
        }
    };
    runtime.block_on(supervise(args))
}

/// Starts the command, then waits for it, the timeout or a signal.
async fn supervise(args: ExecArgs) -> i32 {
    let group = nix::unistd::getpgrp();
    // Handlers first: a signal between spawn and registration would leave the command behind.
    let (mut terminate, mut interrupt, mut hangup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(terminate), Ok(interrupt), Ok(hangup)) => (terminate, interrupt, hangup),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            complain(format_args!("cannot handle signals: {error}"));
            return EXIT_WRAPPER_FAILED;
        }
    };
    let program = &args.argv[0];
    // std resets the signal mask and dispositions in the child; the command stays in group G.
    let mut child = match tokio::process::Command::new(program)
        .args(&args.argv[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            complain(format_args!(
                "cannot run {}: {error}",
                program.to_string_lossy()
            ));
            return match error.kind() {
                std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                _ => EXIT_CANNOT_EXECUTE,
            };
        }
    };
    release_stdio();
    let timeout = async {
        match args.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        status = child.wait() => {
            kill_others(group).await;
            match status {
                Ok(status) => exit_code(status),
                // Cannot happen for our own child; the group is gone either way.
                Err(_) => EXIT_WRAPPER_FAILED,
            }
        }
        () = timeout => {
            kill_others(group).await;
            EXIT_TIMEOUT
        }
        _ = terminate.recv() => kill_group(group),
        _ = interrupt.recv() => kill_group(group),
        _ = hangup.recv() => kill_group(group),
    }
}

/// Kills the whole group, the wrapper included; returns only if the kill failed.
fn kill_group(group: Pid) -> i32 {
    let _ = killpg(group, Signal::SIGKILL);
    128 + Signal::SIGKILL as i32
}

/// Replaces the wrapper's own stdin, stdout and stderr by `/dev/null`, so that the pipes the
/// runner reads close when the command's tree is gone.
fn release_stdio() {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&null);
    let _ = nix::unistd::dup2_stderr(&null);
}

/// The shell's convention: the exit code, or 128 + the signal that killed the process.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => EXIT_WRAPPER_FAILED,
    }
}

/// The wrapper's own errors go to stderr (still the runner's pipe before the command starts).
fn complain(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "stigmer internal exec: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_round_trip() {
        let args = ExecArgs {
            confine: Some(Confinement {
                workspace: PathBuf::from("/w"),
                tmp: PathBuf::from("/t"),
            }),
            timeout: Some(Duration::from_millis(250)),
            argv: os(&["sh", "-c", "echo --tmp"]),
        };
        assert_eq!(ExecArgs::parse(args.to_args()), Ok(args));
        let bare = ExecArgs {
            confine: None,
            timeout: None,
            argv: os(&["true"]),
        };
        assert_eq!(ExecArgs::parse(bare.to_args()), Ok(bare));
    }

    #[test]
    fn refuses_bad_arguments() {
        assert_eq!(ExecArgs::parse(os(&["--"])), Err(ExecArgsError::NoCommand));
        assert_eq!(
            ExecArgs::parse(os(&["true"])),
            Err(ExecArgsError::Unexpected("true".into()))
        );
        assert_eq!(
            ExecArgs::parse(os(&["--workspace", "/w", "--", "true"])),
            Err(ExecArgsError::HalfConfinement)
        );
        assert_eq!(
            ExecArgs::parse(os(&["--timeout-ms", "soon", "--", "true"])),
            Err(ExecArgsError::Timeout("soon".into()))
        );
    }
}
