//! The process of a stdio server: spawned as the leader of its own process group, watched by
//! a supervisor task that reaps it, records how it ended and kills whatever is left of its
//! group. The group is killed when the [`ServerProcess`] is dropped (or at once, even without
//! a runtime, when the supervisor itself is dropped), so no path leaves a process behind.
//!
//! Also here: the stderr tail (the last [`STDERR_LINES`] lines, each cut to
//! [`STDERR_LINE_CHARS`] characters, also logged at `debug`) and the stdout watch, which sees
//! every byte rmcp reads and notes lines that are not JSON (rmcp skips them silently; a start
//! that fails names them).

use std::collections::VecDeque;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{oneshot, watch};

/// Lines of stderr kept for failure reasons.
pub(crate) const STDERR_LINES: usize = 10;
/// Characters kept of one stderr line.
pub(crate) const STDERR_LINE_CHARS: usize = 500;
/// Characters kept of a non-JSON stdout line.
const STDOUT_GARBAGE_CHARS: usize = 200;

/// How the process ended, once it has.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// It exited by itself (or was killed by someone else).
    Exited(Option<ExitStatus>),
    /// We killed it.
    Killed,
}

/// A running stdio server process.
pub(crate) struct ServerProcess {
    pub(crate) pid: u32,
    kill: Option<oneshot::Sender<()>>,
    ended: watch::Receiver<Option<Ended>>,
    pub(crate) stderr: Arc<StderrTail>,
    pub(crate) stdout: watch::Receiver<StdoutSeen>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

/// The pipes rmcp talks through.
pub(crate) struct Pipes {
    pub(crate) stdout: WatchedStdout,
    pub(crate) stdin: ChildStdin,
}

/// Why a spawn failed, for the start failure's reason.
pub(crate) fn describe_spawn_error(error: &std::io::Error, program: &str, display: &str) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => format!(
            "command not found: `{program}` (the command line was `{display}`); install it or \
             fix the command"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("`{program}` cannot be executed (permission denied)")
        }
        _ => format!("cannot start `{display}`: {error}"),
    }
}

impl ServerProcess {
    /// Spawns `command` in a new process group with piped stdio, and its supervisor.
    pub(crate) fn spawn(
        server: &str,
        command: tokio::process::Command,
    ) -> std::io::Result<(ServerProcess, Pipes)> {
        let mut wrap = CommandWrap::from(command);
        wrap.command_mut()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wrap.wrap(ProcessGroup::leader());
        let mut child = wrap.spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin().take();
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            let _ = child.start_kill();
            return Err(std::io::Error::other("the child's stdio pipes are missing"));
        };

        let tail = Arc::new(StderrTail::default());
        if let Some(stderr) = stderr {
            tokio::spawn(read_stderr(server.to_owned(), stderr, tail.clone()));
        } else {
            tail.finish();
        }
        let (seen_tx, seen_rx) = watch::channel(StdoutSeen::default());
        let (kill_tx, kill_rx) = oneshot::channel();
        let (ended_tx, ended_rx) = watch::channel(None);
        let supervisor = tokio::spawn(supervise(
            GroupGuard { child: Some(child) },
            kill_rx,
            ended_tx,
        ));
        Ok((
            ServerProcess {
                pid,
                kill: Some(kill_tx),
                ended: ended_rx,
                stderr: tail,
                stdout: seen_rx,
                supervisor: Some(supervisor),
            },
            Pipes {
                stdout: WatchedStdout {
                    inner: stdout,
                    seen: seen_tx,
                    line: LineState::Start,
                },
                stdin,
            },
        ))
    }

    /// How the process ended, if it has.
    pub(crate) fn ended(&self) -> Option<Ended> {
        self.ended.borrow().clone()
    }

    /// A receiver that changes once when the process ends.
    pub(crate) fn ended_watch(&self) -> watch::Receiver<Option<Ended>> {
        self.ended.clone()
    }

    /// Waits at most `limit` for the process to end by itself.
    pub(crate) async fn wait_ended(&self, limit: Duration) -> Option<Ended> {
        let mut ended = self.ended.clone();
        tokio::time::timeout(limit, ended.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|result| result.ok().and_then(|value| value.clone()))
    }

    /// Kills the whole group and waits (bounded) until the supervisor has reaped it.
    pub(crate) async fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(supervisor) = self.supervisor.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), supervisor).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Dropping the sender wakes the supervisor, which kills the group.
        self.kill.take();
    }
}

/// Owns the child; kills its group synchronously if dropped before the supervisor finished
/// (a runtime shutting down drops tasks without running them to completion).
struct GroupGuard {
    child: Option<Box<dyn ChildWrapper>>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `ProcessGroupChild::start_kill` is `killpg(SIGKILL)`.
            let _ = child.start_kill();
        }
    }
}

async fn supervise(
    mut guard: GroupGuard,
    kill: oneshot::Receiver<()>,
    ended: watch::Sender<Option<Ended>>,
) {
    let Some(child) = guard.child.as_mut() else {
        return;
    };
    // A closed channel (the `ServerProcess` dropped) counts as a kill request.
    let status = tokio::select! {
        status = child.wait() => Some(status.ok()),
        _ = kill => None,
    };
    let outcome = match status {
        Some(status) => {
            // The leader is gone; anything it left in the group goes too. The group id cannot
            // be reused while a member is alive, and this runs right after the reap.
            let _ = child.signal(9);
            Ended::Exited(status)
        }
        None => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            Ended::Killed
        }
    };
    guard.child = None;
    let _ = ended.send(Some(outcome));
}

/// The last lines a server wrote to stderr.
#[derive(Default)]
pub(crate) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    done: Mutex<bool>,
    done_notify: tokio::sync::Notify,
}

impl StderrTail {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == STDERR_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.done_notify.notify_waiters();
    }

    /// Waits at most `limit` for stderr to be closed (so the tail is complete).
    pub(crate) async fn wait_closed(&self, limit: Duration) {
        let notified = self.done_notify.notified();
        if *self.done.lock().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }

    /// The kept lines, oldest first.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// `; its last stderr lines:\n<lines>` or nothing.
    pub(crate) fn suffix(&self) -> String {
        let lines = self.lines();
        if lines.is_empty() {
            String::new()
        } else {
            format!("; its last stderr lines:\n{}", lines.join("\n"))
        }
    }
}

async fn read_stderr(server: String, mut stderr: ChildStderr, tail: Arc<StderrTail>) {
    let mut buffer = [0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    // Bytes beyond this in one line are dropped (4 bytes per character at most).
    let byte_cap = STDERR_LINE_CHARS * 4;
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let text: String = text.chars().take(STDERR_LINE_CHARS).collect();
        tracing::debug!(server = %server, line = %text, "MCP server stderr");
        tail.push(text);
        line.clear();
    };
    loop {
        let read = match stderr.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for &byte in &buffer[..read] {
            if byte == b'\n' {
                emit(&mut line);
            } else if line.len() < byte_cap {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
    tail.finish();
}

/// What went by on stdout, as far as the start needs to know.
#[derive(Debug, Default, Clone)]
pub(crate) struct StdoutSeen {
    /// Lines that started like JSON.
    pub(crate) json_lines: u64,
    /// The first line that did not, cut to a few hundred characters.
    pub(crate) first_garbage: Option<String>,
}

enum LineState {
    /// At the start of a line (only whitespace or a BOM seen so far).
    Start,
    /// Inside a JSON-looking line.
    Json,
    /// Inside a non-JSON line, collecting it if it is the first.
    Garbage { collecting: Option<Vec<u8>> },
}

/// The server's stdout as rmcp reads it, watched line by line.
pub(crate) struct WatchedStdout {
    inner: ChildStdout,
    seen: watch::Sender<StdoutSeen>,
    line: LineState,
}

impl WatchedStdout {
    fn inspect(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match &mut self.line {
                LineState::Start => {
                    if byte == b'{' || byte == b'[' {
                        self.line = LineState::Json;
                        self.seen.send_modify(|seen| seen.json_lines += 1);
                    } else if byte.is_ascii_whitespace() || matches!(byte, 0xEF | 0xBB | 0xBF) {
                        // Blank lines and a BOM are not garbage.
                    } else {
                        let first = self.seen.borrow().first_garbage.is_none();
                        self.line = LineState::Garbage {
                            collecting: first.then(|| vec![byte]),
                        };
                    }
                }
                LineState::Json => {
                    if byte == b'\n' {
                        self.line = LineState::Start;
                    }
                }
                LineState::Garbage { collecting } => {
                    if byte == b'\n' {
                        if let Some(bytes) = collecting.take() {
                            self.record_garbage(bytes);
                        }
                        self.line = LineState::Start;
                    } else if let Some(bytes) = collecting
                        && bytes.len() < STDOUT_GARBAGE_CHARS * 4
                    {
                        bytes.push(byte);
                    }
                }
            }
        }
    }

    fn record_garbage(&self, bytes: Vec<u8>) {
        let text = String::from_utf8_lossy(&bytes);
        let text: String = text
            .trim_end_matches('\r')
            .chars()
            .take(STDOUT_GARBAGE_CHARS)
            .collect();
        self.seen.send_modify(|seen| {
            if seen.first_garbage.is_none() {
                seen.first_garbage = Some(text);
            }
        });
    }
}

impl AsyncRead for WatchedStdout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let filled = &buf.filled()[before..];
            if filled.is_empty() {
                // End of stream: an unfinished garbage line still counts.
                if let LineState::Garbage { collecting } = &mut this.line
                    && let Some(bytes) = collecting.take()
                {
                    this.record_garbage(bytes);
                }
            } else {
                this.inspect(filled);
            }
        }
        poll
    }
}
