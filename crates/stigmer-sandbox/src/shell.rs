//! The shell tool's `execute`: `sh -c COMMAND` through the wrapper, in the workspace, with stdin
//! from `/dev/null`, stdout and stderr combined in arrival order (stderr lines prefixed
//! `[stderr] `), a byte limit on what is kept, and a timeout that kills the whole process group.
//!
//! The process group is the wrapper's, so its id is the wrapper's pid. It is killed with SIGKILL
//! on timeout and when the [`run_shell`] future is dropped (a cancelled run): a guard holds it
//! until the wrapper has been reaped, after which the id may belong to someone else.

use crate::exec::{EXIT_TIMEOUT, EXIT_WRAPPER_FAILED, exit_code};
use crate::spawn::{Confinement, Wrapper};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::time::Instant;

/// How long output is still read after the wrapper exited. The wrapper kills its group before it
/// exits, so the pipes close at once; only a process that left the group (`setsid`) could keep
/// them open, and it must not keep the tool call waiting.
const DRAIN: Duration = Duration::from_secs(1);

/// A partial line longer than this is passed on without waiting for its end.
const MAX_LINE: usize = 64 * 1024;

/// One `execute` call.
#[derive(Debug, Clone)]
pub struct ShellRequest {
    /// Run as `sh -c COMMAND`.
    pub command: String,
    /// The working directory (and, when confined, where writes are allowed).
    pub workspace: PathBuf,
    /// The private temporary directory (`TMPDIR` is the caller's to set in `env`).
    pub tmp: PathBuf,
    /// The whole environment: [`crate::minimal_env`] plus what the agent declares.
    pub env: Vec<(String, String)>,
    /// Kill the command's group after this long.
    pub timeout: Duration,
    /// Confine writes with Landlock to `workspace` and `tmp`.
    pub confine: bool,
    /// Output bytes kept; the rest is read and dropped (`truncated`).
    pub output_limit: usize,
}

/// How an `execute` call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutcome {
    /// The shell's exit code, 128 + signal if it was killed, 124 on timeout.
    pub exit_code: i32,
    /// stdout and stderr in arrival order, stderr lines prefixed `[stderr] `.
    pub output: String,
    pub timed_out: bool,
    /// Output beyond `output_limit` was dropped.
    pub truncated: bool,
}

/// Why an `execute` call could not run.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("cannot start the shell wrapper {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the shell wrapper started without {0}")]
    MissingPipe(&'static str),
    #[error("the shell wrapper started without a process id")]
    NoProcessId,
    #[error("cannot read the shell's output: {0}")]
    Read(std::io::Error),
    #[error("cannot wait for the shell: {0}")]
    Wait(std::io::Error),
}

/// Runs `request.command` and collects its output. Dropping the future kills the whole group.
/// Call it from an async task (the spawning thread must outlive the command: see
/// [`crate::die_with_parent`]).
pub async fn run_shell(
    wrapper: &Wrapper,
    request: ShellRequest,
) -> Result<ShellOutcome, ShellError> {
    let confinement = request.confine.then(|| Confinement {
        workspace: request.workspace.clone(),
        tmp: request.tmp.clone(),
    });
    let argv = ["sh".to_owned(), "-c".to_owned(), request.command.clone()];
    let mut command = wrapper.command(
        &argv,
        &request.env,
        &request.workspace,
        confinement.as_ref(),
        None,
    );
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| ShellError::Spawn {
        program: wrapper.program.clone(),
        source,
    })?;
    let mut group = GroupGuard::new(child)?;
    let mut stdout = group
        .child
        .stdout
        .take()
        .ok_or(ShellError::MissingPipe("stdout"))?;
    let mut stderr = group
        .child
        .stderr
        .take()
        .ok_or(ShellError::MissingPipe("stderr"))?;

    let mut output = Output::new(request.output_limit);
    let (mut stdout_open, mut stderr_open) = (true, true);
    let (mut stdout_buffer, mut stderr_buffer) = (vec![0; 8192], vec![0; 8192]);
    // A timeout too large for the clock is no timeout.
    let deadline = Instant::now().checked_add(request.timeout);
    let mut timed_out = false;
    let mut status: Option<ExitStatus> = None;
    let mut drain_until = None;
    while stdout_open || stderr_open || status.is_none() {
        tokio::select! {
            read = stdout.read(&mut stdout_buffer), if stdout_open => {
                match read.map_err(ShellError::Read)? {
                    0 => { output.finish(Stream::Stdout); stdout_open = false; }
                    count => output.push(Stream::Stdout, &stdout_buffer[..count]),
                }
            }
            read = stderr.read(&mut stderr_buffer), if stderr_open => {
                match read.map_err(ShellError::Read)? {
                    0 => { output.finish(Stream::Stderr); stderr_open = false; }
                    count => output.push(Stream::Stderr, &stderr_buffer[..count]),
                }
            }
            exited = group.child.wait(), if status.is_none() => {
                status = Some(exited.map_err(ShellError::Wait)?);
                // Reaped: the group id may be reused from now on, so the guard lets go of it.
                group.reaped = true;
                drain_until = Some(Instant::now() + DRAIN);
            }
            () = sleep_until_some(deadline), if status.is_none() && !timed_out => {
                timed_out = true;
                tracing::debug!(group = group.group.as_raw(), timeout = ?request.timeout, "Shell command timed out; killing its process group.");
                group.kill();
            }
            () = sleep_until_some(drain_until) => {
                output.finish(Stream::Stdout);
                output.finish(Stream::Stderr);
                break;
            }
        }
    }
    // The loop ends only once the wrapper has been reaped, so `status` is set.
    let exit_code = match (timed_out, status) {
        (true, _) => EXIT_TIMEOUT,
        (false, Some(status)) => exit_code(status),
        (false, None) => EXIT_WRAPPER_FAILED,
    };
    let truncated = output.truncated;
    Ok(ShellOutcome {
        exit_code,
        output: String::from_utf8_lossy(&output.bytes).into_owned(),
        timed_out,
        truncated,
    })
}

/// Waits until `instant`, forever when there is none.
async fn sleep_until_some(instant: Option<Instant>) {
    match instant {
        Some(instant) => tokio::time::sleep_until(instant).await,
        None => std::future::pending().await,
    }
}

/// The wrapper's child handle and its process group, killed with SIGKILL on drop until the
/// wrapper has been reaped.
struct GroupGuard {
    child: Child,
    group: Pid,
    reaped: bool,
}

impl GroupGuard {
    fn new(child: Child) -> Result<Self, ShellError> {
        // A spawned child that is not yet reaped always has an id, and pids fit in an i32.
        let id = child.id().ok_or(ShellError::NoProcessId)?;
        let group = Pid::from_raw(i32::try_from(id).map_err(|_| ShellError::NoProcessId)?);
        Ok(Self {
            child,
            group,
            reaped: false,
        })
    }

    /// Kills every member of the group, the wrapper included. The wrapper is not reaped yet
    /// (its zombie at least holds the id), so the id cannot name another group.
    fn kill(&self) {
        if !self.reaped {
            let _ = killpg(self.group, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        // `kill_on_drop` then has tokio reap the wrapper in the background.
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// The combined output: whole lines of either stream in arrival order, up to a byte limit.
struct Output {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
}

impl Output {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            truncated: false,
            partial_stdout: Vec::new(),
            partial_stderr: Vec::new(),
        }
    }

    fn push(&mut self, stream: Stream, mut chunk: &[u8]) {
        while let Some(end) = chunk.iter().position(|byte| *byte == b'\n') {
            let mut line = std::mem::take(self.partial(stream));
            line.extend_from_slice(&chunk[..=end]);
            self.append_line(stream, &line);
            chunk = &chunk[end + 1..];
        }
        self.partial(stream).extend_from_slice(chunk);
        if self.partial(stream).len() > MAX_LINE {
            let line = std::mem::take(self.partial(stream));
            self.append_line(stream, &line);
        }
    }

    /// The stream ended: its unfinished last line goes out as it is.
    fn finish(&mut self, stream: Stream) {
        let line = std::mem::take(self.partial(stream));
        if !line.is_empty() {
            self.append_line(stream, &line);
        }
    }

    fn partial(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.partial_stdout,
            Stream::Stderr => &mut self.partial_stderr,
        }
    }

    fn append_line(&mut self, stream: Stream, line: &[u8]) {
        // A line cut short (no newline at the end of a stream, or too long) must not run into
        // the next one from the other stream.
        let mut text = Vec::with_capacity(line.len() + 10);
        if self.bytes.last().is_some_and(|last| *last != b'\n') {
            text.push(b'\n');
        }
        if stream == Stream::Stderr {
            text.extend_from_slice(b"[stderr] ");
        }
        text.extend_from_slice(line);
        let room = self.limit.saturating_sub(self.bytes.len());
        if text.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&text[..text.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_lines_and_prefixes_stderr() {
        let mut output = Output::new(1024);
        output.push(Stream::Stdout, b"one\ntw");
        output.push(Stream::Stderr, b"oops\n");
        output.push(Stream::Stdout, b"o\n");
        output.push(Stream::Stderr, b"late");
        output.finish(Stream::Stderr);
        output.push(Stream::Stdout, b"three");
        output.finish(Stream::Stdout);
        assert_eq!(
            String::from_utf8_lossy(&output.bytes),
            "one\n[stderr] oops\ntwo\n[stderr] late\nthree"
        );
        assert!(!output.truncated);
    }

    #[test]
    fn keeps_at_most_the_limit() {
        let mut output = Output::new(5);
        output.push(Stream::Stdout, b"abc\ndef\n");
        assert_eq!(output.bytes, b"abc\nd");
        assert!(output.truncated);
    }
}
