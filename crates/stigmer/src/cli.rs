//! Command-line definitions (clap).

use chrono::{DateTime, Utc};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use regex::Regex;
use std::fmt;
use std::path::PathBuf;
use stigmer_config::Component;
use stigmer_logs::Level;
use stigmer_logs::read::Tail;

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
    /// Run an agent (send it a message and follow its answer, tool calls and todos) or a
    /// workflow (give it --input and follow its tasks to its output).
    Run(RunArgs),
    /// Open the web dashboard (starts the stack when it is not running): prints its address,
    /// with a one-time sign-in token, and opens it in a browser on a desktop.
    Dashboard(DashboardArgs),
    /// List, show, cancel and watch agent and workflow executions.
    #[command(subcommand, alias = "executions", alias = "ex")]
    Execution(ExecutionCommand),
    /// The agent-runner's container image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Roles the daemon starts; not for direct use.
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build `stigmer-agent-runner:<version>` from this binary (no base image needed).
    Build(ImageBuildArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Also push it to the registry (`agent_runner.image_registry`, or --registry).
    #[arg(long)]
    pub push: bool,
    /// Registry to push to, e.g. `127.0.0.1:5000` (overrides agent_runner.image_registry).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
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
    /// Show the components' logs merged in time order (works with the daemon stopped too).
    Logs(LogsArgs),
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
    /// Run the agent-runner as a process (default) or in a container (Docker or Podman,
    /// through DOCKER_HOST).
    #[arg(long, value_name = "MODE", value_parser = ["process", "container"])]
    pub agent_runner: Option<String>,
}

/// `stigmer server logs [COMPONENT ...]`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Components to show (default: all of them).
    #[arg(
        value_name = "COMPONENT",
        value_parser = PossibleValuesParser::new(Component::ALL.map(Component::name))
            .map(|name| Component::parse(&name).unwrap_or(Component::Daemon))
    )]
    pub components: Vec<Component>,
    /// Keep printing lines as they are written, in time order (Ctrl-C stops, exit code 130).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// How many lines of history to show: a number (0 for none), or `all` [default: 100, or
    /// all with --since].
    #[arg(short = 'n', long = "tail", value_name = "N|all")]
    pub tail: Option<Tail>,
    /// Only lines at or after TIME: RFC 3339 (2026-11-23T05:06:58Z; UTC without an offset),
    /// or a duration before now (30s, 10m, 1h30m, 2d).
    #[arg(long, value_name = "TIME", value_parser = time_bound)]
    pub since: Option<DateTime<Utc>>,
    /// Only lines at or before TIME (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = time_bound)]
    pub until: Option<DateTime<Utc>>,
    /// Only lines whose message or fields (as key=value) match this regular expression.
    #[arg(long, value_name = "REGEX", value_parser = Regex::new)]
    pub grep: Option<Regex>,
    /// Only lines of this level or above: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL", value_parser = level)]
    pub level: Option<Level>,
    /// Only lines tagged with this execution id (aex-…).
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// Print one JSON object per line (ts, component, level, message, fields), for scripts.
    #[arg(long)]
    pub json: bool,
    /// No colours, even on a terminal (NO_COLOR works too).
    #[arg(long)]
    pub no_color: bool,
}

fn time_bound(text: &str) -> Result<DateTime<Utc>, String> {
    stigmer_logs::read::parse_time_bound(text, Utc::now()).map_err(|error| error.to_string())
}

fn level(text: &str) -> Result<Level, String> {
    Level::parse(text).ok_or_else(|| "expected one of trace, debug, info, warn, error".to_owned())
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `stigmer run NAME [MESSAGE]`: NAME is an Agent or a Workflow (`agent/NAME`, `workflow/NAME`
/// when both exist). An agent takes exactly one of the positional message and `-m`; a workflow
/// takes `--input` and no message.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("message_group").multiple(false).args(["message", "message_option"])),
    override_usage = "stigmer run [OPTIONS] <AGENT> <MESSAGE>\n       stigmer run [OPTIONS] <AGENT> -m <MESSAGE>\n       stigmer run [OPTIONS] <WORKFLOW> [--input JSON|@FILE|-]"
)]
pub struct RunArgs {
    /// The agent or workflow to run: its name, or `agent/NAME` / `workflow/NAME` when an agent
    /// and a workflow share the name.
    #[arg(value_name = "NAME")]
    pub agent: String,
    /// What to ask the agent (or use -m); not for workflows.
    pub message: Option<String>,
    /// What to ask the agent.
    #[arg(
        short = 'm',
        long = "message",
        value_name = "MESSAGE",
        id = "message_option"
    )]
    pub message_option: Option<String>,
    /// A workflow's input: JSON text, `@FILE` (a JSON file), or `-` (JSON on stdin).
    #[arg(long = "input", value_name = "JSON|@FILE|-")]
    pub input: Option<String>,
    /// Continue this session (its id is shown when a run starts).
    #[arg(long = "session", value_name = "ID")]
    pub session: Option<String>,
    /// A variable for the run; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// A secret variable for the run: never stored, logged or printed; repeatable.
    #[arg(long = "secret", value_name = "KEY=VALUE", value_parser = secret_arg)]
    pub secrets: Vec<SecretArg>,
    /// An Environment whose variables the run gets; repeatable, a later one wins, and --env
    /// and --secret win over them.
    #[arg(long = "environment", value_name = "NAME")]
    pub environments: Vec<String>,
    /// The model to use (an agent's own spec.model still wins).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Print the execution id and return without following it.
    #[arg(long)]
    pub no_follow: bool,
    /// Print one JSON object per event on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// The message, from the positional argument or `-m` (clap makes sure there is exactly one).
    pub fn message_text(&self) -> &str {
        self.message
            .as_deref()
            .or(self.message_option.as_deref())
            .unwrap_or_default()
    }
}

/// A `--secret` argument as typed. Its parser never fails, because clap would print the
/// rejected text — possibly the secret itself; the command checks the shape and says what is
/// wrong without showing it. `Debug` does not show it either.
#[derive(Clone)]
pub struct SecretArg(pub stigmer_config::Secret);

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretArg(****)")
    }
}

fn secret_arg(text: &str) -> Result<SecretArg, std::convert::Infallible> {
    Ok(SecretArg(stigmer_config::Secret::new(text)))
}

/// Parses `KEY=VALUE` (the value may be empty or hold `=`).
pub fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE".to_owned())?;
    if !is_variable_name(key) {
        return Err(format!(
            "{key:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Whether `name` is a portable environment variable name.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, Subcommand)]
pub enum ExecutionCommand {
    /// List agent and workflow executions, oldest first.
    #[command(alias = "ls")]
    List(ExecutionListArgs),
    /// Show one execution (YAML unless -o says otherwise).
    Get(ExecutionGetArgs),
    /// Ask a running execution to stop.
    Cancel(ExecutionIdArgs),
    /// Replay an execution from its start and follow it to its end (Ctrl-C stops watching,
    /// not the execution).
    Watch(ExecutionWatchArgs),
    /// Let tool calls that wait for approval run (`stigmer execution get ID` lists them).
    Approve(ExecutionApproveArgs),
    /// Refuse tool calls that wait for approval: the model reads the denial as their result.
    Deny(ExecutionDenyArgs),
}

#[derive(Debug, Args)]
pub struct ExecutionApproveArgs {
    /// The agent execution id (aex-…).
    pub id: String,
    /// The calls to approve (their call ids, as `run` and `execution get` show them).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub calls: Vec<String>,
    /// Every call that waits.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ExecutionDenyArgs {
    /// The agent execution id (aex-…).
    pub id: String,
    /// The calls to deny (their call ids, as `run` and `execution get` show them).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub calls: Vec<String>,
    /// Every call that waits.
    #[arg(long)]
    pub all: bool,
    /// Why: the model reads it with the denial.
    #[arg(long, short = 'm')]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecutionListArgs {
    /// Only executions of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<ExecutionKindArg>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `--kind` of `stigmer execution list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutionKindArg {
    Agent,
    Workflow,
}

#[derive(Debug, Args)]
pub struct ExecutionGetArgs {
    /// The execution id (aex-… or wex-…).
    pub id: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ExecutionIdArgs {
    /// The execution id (aex-… or wex-…).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ExecutionWatchArgs {
    /// The execution id (aex-… or wex-…).
    pub id: String,
    /// Print one JSON object per event on stdout, for scripts.
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
    /// The resident wrapper of a shell command or stdio MCP server: runs CMD in its own process
    /// group and kills the whole group when CMD exits, times out, or the runner dies.
    Exec(InternalExecArgs),
}

/// `stigmer internal exec`; the plain shape is `stigmer_sandbox::ExecArgs`.
#[derive(Debug, Args)]
pub struct InternalExecArgs {
    /// Confine writes with Landlock to this directory (and --tmp).
    #[arg(long, value_name = "DIR", requires = "tmp")]
    pub workspace: Option<PathBuf>,
    /// The private temporary directory a confined command may write to.
    #[arg(long, value_name = "DIR", requires = "workspace")]
    pub tmp: Option<PathBuf>,
    /// Kill the command's process group and exit 124 after this many milliseconds.
    #[arg(long, value_name = "N")]
    pub timeout_ms: Option<u64>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
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
    /// The name to store a plain Serverless Workflow file under (instead of its
    /// `document.name`); only with a single such file.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
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

#[derive(Debug, Default, Args)]
pub struct DashboardArgs {
    /// Only print the address (on stdout, nothing else); do not open a browser.
    #[arg(long)]
    pub no_open: bool,
}
