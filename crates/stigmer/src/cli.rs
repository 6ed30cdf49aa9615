//! Command-line definitions (clap).

use clap::{Args, Parser, Subcommand};

/// Stigmer: run AI agents and workflows on your machine.
#[derive(Debug, Parser)]
#[command(name = "stigmer", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start, stop and inspect the local stack.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Roles the daemon starts; not for direct use.
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Start the daemon and wait until the whole stack is ready.
    Start(StartArgs),
    /// Stop the daemon and everything it runs.
    Stop,
    /// Stop, then start.
    Restart(StartArgs),
    /// Show what runs, since when, how often it restarted and why (exit 3 when not running).
    Status(StatusArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct StartArgs {
    /// Stay attached: run the daemon in this process until Ctrl-C.
    #[arg(long)]
    pub foreground: bool,
    /// Seconds to wait for the stack to become ready (default: supervisor.startup_timeout_secs).
    #[arg(long, value_name = "SECS")]
    pub wait_timeout: Option<u64>,
    /// API server port (0 picks a free port).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Managed Temporal frontend port (0 picks a free port).
    #[arg(long, value_name = "PORT")]
    pub temporal_port: Option<u16>,
    /// Managed Temporal web UI port (0 picks a free port).
    #[arg(long, value_name = "PORT")]
    pub temporal_ui_port: Option<u16>,
    /// Use an existing Temporal cluster at HOST:PORT instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    pub temporal_address: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InternalCommand {
    /// The supervisor daemon; reads its resolved settings as JSON on stdin.
    Daemon,
    /// The agent runner (configured only by the launch contract).
    AgentRunner,
    /// The workflow runner (configured only by the launch contract).
    WorkflowRunner,
}
