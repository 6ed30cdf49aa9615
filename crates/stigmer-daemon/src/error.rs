//! Why the daemon could not start or run, as one enum the CLI turns into a message, a hint and
//! an exit code.

use crate::process::PortHolder;

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a Stigmer daemon is already running for {home}")]
    AlreadyRunning { home: String },
    #[error("port {port} ({key}) is already in use{}", holder_text(holder))]
    PortInUse {
        port: u16,
        key: &'static str,
        holder: Option<PortHolder>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server failed: {0}")]
    Server(#[from] stigmer_server::ServeError),
    #[error(transparent)]
    Store(#[from] stigmer_store::StoreError),
    #[error("container mode cannot start: {0}")]
    Container(String),
    /// A task of the daemon panicked: a bug. The daemon stops everything else and exits with
    /// an error rather than run on without a part of itself.
    #[error("{task} panicked: {message}")]
    TaskPanicked { task: String, message: String },
}

impl DaemonError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            DaemonError::PortInUse { key, .. } => Some(format!(
                "stop the process holding the port, or choose another one with `{key}` in \
                 config.yaml or its STIGMER_* variable (0 picks a free port)"
            )),
            DaemonError::AlreadyRunning { .. } => {
                Some("see `stigmer server status`, or stop it with `stigmer server stop`".into())
            }
            DaemonError::Container(_) => Some(
                "process mode needs no container engine: `stigmer server start --agent-runner process` \
                 (or `agent_runner.mode: process` in config.yaml)"
                    .into(),
            ),
            DaemonError::TaskPanicked { .. } => Some(
                "this is a bug in Stigmer; `stigmer server logs daemon` has the \
                 details, and `stigmer server start` starts the daemon again"
                    .into(),
            ),
            _ => None,
        }
    }
}

fn holder_text(holder: &Option<PortHolder>) -> String {
    match holder {
        Some(holder) => format!(" by process {} ({})", holder.pid, holder.command),
        None => String::new(),
    }
}

/// Maps an I/O error to [`DaemonError::Io`] with what the daemon was doing.
pub fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let context = context.into();
    move |source| DaemonError::Io { context, source }
}
