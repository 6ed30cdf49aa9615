//! The wire protocol shared by every process boundary: the CLI, the daemon, the API server and
//! the runners import these generated types, so a renamed field breaks the build, not a user.

/// The daemon's control API.
pub mod daemon {
    pub mod v1 {
        tonic::include_proto!("stigmer.daemon.v1");
    }
}

/// Declared and system-created resources.
pub mod resources {
    pub mod v1 {
        tonic::include_proto!("stigmer.resources.v1");
    }
}

/// The typed execution protocol (phases, events, spec and status) carried inside the
/// `executions` messages.
pub mod execution;

/// Agent executions and their event log.
pub mod executions {
    pub mod v1 {
        tonic::include_proto!("stigmer.executions.v1");
    }
}

/// Encoded descriptors of every service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/stigmer_descriptor.bin"));

/// The largest gRPC message either side sends or accepts, on every service: a conversation
/// message or a tool result of many MiB must pass between runner, server and CLI.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Bumped on every incompatible change of the protocol (2: a component's state is the enum
/// `ComponentState`, field 10, instead of a string in field 2).
pub const PROTOCOL_VERSION: u32 = 2;

impl daemon::v1::ComponentState {
    /// The name people and `--json` output see: `starting`, `running`, `unresponsive`,
    /// `restarting`, `failed`, `stopped` (`unknown` when a daemon sent none).
    pub fn label(self) -> &'static str {
        use daemon::v1::ComponentState;
        match self {
            ComponentState::Unspecified => "unknown",
            ComponentState::Starting => "starting",
            ComponentState::Running => "running",
            ComponentState::Unresponsive => "unresponsive",
            ComponentState::Restarting => "restarting",
            ComponentState::Failed => "failed",
            ComponentState::Stopped => "stopped",
        }
    }
}
