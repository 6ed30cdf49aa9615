//! Command-line definitions (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    /// Create or update resources from YAML manifests (files, folders, skill folders, `-`).
    Apply(ApplyArgs),
    /// Show resources.
    Get(GetArgs),
    /// Delete a resource.
    Delete(DeleteArgs),
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

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A manifest file, a folder (searched recursively for *.yaml / *.yml; a folder holding
    /// SKILL.md is a skill), or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Validate and show what would change, without writing (works without a daemon).
    #[arg(long)]
    pub dry_run: bool,
    /// Print `[{"kind","name","action"}]` for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// agent|agents|ag, mcpserver|mcpservers, skill|skills, environment|environments|env,
    /// workflow|workflows|wf, session|sessions, execution|executions|ex
    pub kind: String,
    /// One resource by name (all of the kind when omitted).
    pub name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The kind (as for `get`).
    pub kind: String,
    pub name: String,
    /// Delete even when other resources refer to it.
    #[arg(long)]
    pub force: bool,
}
