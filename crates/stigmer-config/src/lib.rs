//! Everything that decides *where* Stigmer keeps its files and *how* it is configured.
//!
//! - [`StigmerHome`]: the one directory that holds config, data, logs, run state and workspaces.
//! - [`ConfigFile`] and [`Settings`]: `config.yaml` and the settings resolved from
//!   defaults < file < environment < flags, exactly once, by the CLI.
//! - [`RunnerLaunchSpec`]: the typed contract between the supervisor and the runners. It is the
//!   only way a runner receives configuration.
//! - [`TelemetrySettings`]: where traces go (OpenTelemetry), off unless an endpoint is set.
//! - [`Secret`]: a string that never prints itself.

mod env_vars;
mod home;
mod launch;
mod llm;
mod secret;
mod settings;
mod telemetry;

pub use env_vars::EnvVars;
pub use home::{Component, StigmerHome};
pub use launch::{LaunchSpecError, RunnerLaunchSpec, RunnerRole};
pub use llm::LlmProvider;
pub use secret::Secret;
pub use settings::{
    AgentRunnerSettings, ConfigError, ConfigFile, LlmSettings, LogSettings, Overrides, RunnerMode,
    ServerSettings, Settings, SupervisorSettings, TemporalMode, TemporalSettings,
    find_temporal_binary,
};
pub use telemetry::{OtlpProtocol, TelemetrySettings};

/// Temporal task queue polled by the agent runner.
pub const AGENT_TASK_QUEUE: &str = "agent_execution_runner";
/// Temporal task queue polled by the workflow runner.
pub const WORKFLOW_TASK_QUEUE: &str = "workflow_execution_runner";
/// The product version, shared by every role of the binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
