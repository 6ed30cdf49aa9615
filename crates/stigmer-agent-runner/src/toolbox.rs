//! The tools of one execution on this runner: the built-in file tools, the shell (`execute`,
//! when the agent enables it), the tools of the agent's MCP servers and its skills.
//!
//! A toolbox is built by the first step of an execution that runs on this runner and kept
//! between its steps ([`Toolboxes`]): MCP servers start once, not once per turn. It is closed
//! (every server's process group killed) when the run ends, is cancelled or fails, and when no
//! step has used it for [`IDLE_CLOSE`] (a run that ended while this runner was not looking,
//! or that moved to another runner). A killed runner leaves nothing either: each stdio server
//! runs under `stigmer internal exec`, which dies with the runner and takes its group along.

use crate::api::RunContext;
use crate::approval::{ApprovalPolicy, ToolKind};
use crate::skills;
use crate::subagents;
use crate::turn::ToolResult;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stigmer_llm::{ToolCall, ToolSpec};
use stigmer_mcp::{Connection, Notice, OfferedTool, ServerConfig, ServerFailure, Transport};
use stigmer_proto::execution::{
    ExecutionEvent, McpServerFailed, SandboxUnavailable, SkillsTruncated,
};
use stigmer_resources::{
    MCP_STARTUP_TIMEOUT_DEFAULT_SECS, MCP_TOOL_TIMEOUT_DEFAULT_SECS, McpServerSpec,
    SHELL_TIMEOUT_DEFAULT_SECS, SHELL_TIMEOUT_MAX_SECS, SubAgentSpec, variables,
};
use stigmer_sandbox::{LandlockSupport, ShellRequest, Wrapper};
use stigmer_tools::{ToolOutput, Workspace};
use tokio::sync::{RwLock, mpsc};

/// A toolbox no step has used for this long is closed: its run ended out of this runner's
/// sight (it failed after its last retry, or moved to another runner). Far longer than the
/// gaps between the steps of a live run (a minute at most, between retries); a step that runs
/// longer holds its toolbox, which then closes when the step ends.
pub const IDLE_CLOSE: Duration = Duration::from_secs(5 * 60);
/// Tool output beyond this many bytes goes to a file in the workspace; the model gets its head,
/// its tail and the path.
pub const SPILL_LIMIT: usize = 80 * 1024;
/// Bytes of a spilled output's head and tail the model sees.
const SPILL_HEAD: usize = 10 * 1024;
const SPILL_TAIL: usize = 5 * 1024;
/// Where spilled outputs and the shell's private temporary directory go in the workspace.
const TOOL_RESULTS_DIR: &str = ".stigmer/tool-results";
const TMP_DIR: &str = ".stigmer/tmp";
/// Bytes of a command's output kept in memory (what is beyond is cut, and said so).
const SHELL_OUTPUT_KEPT: usize = 16 * 1024 * 1024;
/// The shell tool's name.
pub const SHELL_TOOL: &str = "execute";

/// What the runner knows that every toolbox needs.
#[derive(Clone, Debug)]
pub struct ToolEnvironment {
    /// The `stigmer` binary, which runs child processes as `stigmer internal exec`.
    pub program: PathBuf,
    /// Whether this kernel can confine the shell's writes (probed once).
    pub landlock: LandlockSupport,
}

/// Why a run cannot get its tools (the run fails with this message).
#[derive(Debug, thiserror::Error)]
pub enum ToolboxError {
    #[error("MCP server `{server}`: {source}")]
    Variable {
        server: String,
        #[source]
        source: variables::VariableError,
    },
    #[error("{0}")]
    NameClash(String),
    #[error("cannot write the agent's skills into the workspace: {0}")]
    Skills(#[source] stigmer_tools::FileError),
    #[error("cannot prepare the workspace's tool folders: {0}")]
    Folders(#[source] stigmer_tools::FileError),
}

/// The MCP tools a run offers, saved with the execution by its first step so that every step,
/// on any runner, offers the same list (a server that lists other tools on a later start, or
/// an McpServer applied again meanwhile, does not change a running execution's tools).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolSnapshot {
    pub servers: Vec<ServerTools>,
}

/// One server's part of a [`ToolSnapshot`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerTools {
    pub server: String,
    pub tools: Vec<stigmer_mcp::ToolInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// What the running servers offer now.
async fn live_snapshot(servers: &[Arc<Server>]) -> ToolSnapshot {
    let mut snapshot = ToolSnapshot::default();
    for server in servers {
        let connection = server.connection.read().await;
        snapshot.servers.push(ServerTools {
            server: server.name.clone(),
            tools: connection.tools().to_vec(),
            instructions: connection.instructions().map(str::to_owned),
        });
    }
    snapshot
}

/// The offered names of a snapshot's tools, checked for clashes.
fn offer(snapshot: &ToolSnapshot) -> Result<Vec<OfferedTool>, ToolboxError> {
    stigmer_mcp::offer(
        snapshot
            .servers
            .iter()
            .map(|server| (server.server.as_str(), server.tools.as_slice())),
    )
    .map_err(|clash| ToolboxError::NameClash(clash.to_string()))
}

/// One MCP server of a toolbox.
struct Server {
    name: String,
    connection: RwLock<Connection>,
}

/// The tools of one execution.
pub struct Toolbox {
    builtins: Vec<ToolSpec>,
    shell: Option<Duration>,
    servers: Vec<Arc<Server>>,
    /// The MCP tools offered to the model (from `snapshot`), fixed until a server says its
    /// list changed.
    offered: Mutex<Vec<OfferedTool>>,
    /// What the servers offer, as saved with the run.
    snapshot: Mutex<ToolSnapshot>,
    /// Whether `snapshot` differs from what the API server holds.
    unsaved: std::sync::atomic::AtomicBool,
    /// What the system prompt gains: MCP servers' instructions, the skills' listing, the shell.
    prompt: String,
    /// Events to report with the next step (servers that failed, skills shortened, …).
    pending: Mutex<Vec<ExecutionEvent>>,
    notices: Mutex<mpsc::UnboundedReceiver<Notice>>,
    workspace: Workspace,
    tmp: PathBuf,
    environment: ToolEnvironment,
    /// The agent's declared variables with the run's values, for the shell.
    shell_env: Vec<(String, String)>,
    /// Which calls wait for a person's decision.
    approvals: ApprovalPolicy,
    /// The sub-agents the `task` tool hands work to.
    sub_agents: Vec<SubAgentSpec>,
}

impl Toolbox {
    /// Builds the tools of the run in `context` (asked for `with_tools`): writes the skills,
    /// starts the MCP servers (in parallel, each within its startup timeout; one that fails is
    /// reported and left out) and fixes the list of tools.
    pub async fn build(
        context: &RunContext,
        workspace: &Workspace,
        environment: &ToolEnvironment,
    ) -> Result<Toolbox, ToolboxError> {
        let agent = &context.agent;
        let values = run_variables(context);
        let mut pending = Vec::new();
        let tmp = PathBuf::from(TMP_DIR);
        workspace
            .write_file(&tmp.join(".keep"), b"")
            .map_err(ToolboxError::Folders)?;
        let tmp = workspace.root().join(TMP_DIR);

        skills::write_skills(workspace, &context.skills).map_err(ToolboxError::Skills)?;
        let mut prompt = String::new();
        if !context.skills.is_empty() {
            let listing = skills::listing(&context.skills, skills::LISTING_BUDGET);
            if listing.shortened > 0 {
                pending.push(
                    SkillsTruncated {
                        skills: listing.skills as u32,
                        shortened: listing.shortened as u32,
                        budget: skills::LISTING_BUDGET as u32,
                        parent: None,
                    }
                    .into(),
                );
            }
            prompt.push_str("\n\n");
            prompt.push_str(&listing.text);
        }

        let shell = agent
            .shell
            .as_ref()
            .filter(|shell| shell.enabled)
            .map(|shell| {
                Duration::from_secs(u64::from(
                    shell
                        .timeout_seconds
                        .unwrap_or(SHELL_TIMEOUT_DEFAULT_SECS)
                        .min(SHELL_TIMEOUT_MAX_SECS),
                ))
            });
        if let Some(timeout) = shell {
            prompt.push_str(&format!(
                "\n\nThe `{SHELL_TOOL}` tool runs a shell command (sh -c) in your workspace with \
                 stdin closed; a command may run {} s at most. Do not start background processes: \
                 they are stopped when the command ends.",
                timeout.as_secs()
            ));
            if let LandlockSupport::Unavailable { reason } = &environment.landlock {
                pending.push(
                    SandboxUnavailable {
                        reason: reason.clone(),
                        parent: None,
                    }
                    .into(),
                );
            }
        }

        // Every server's configuration first: a variable nobody set fails the run before
        // anything starts.
        let mut configs = Vec::new();
        for (name, spec) in &context.mcp_servers {
            // A command that is not installed where this runner runs is said plainly, with
            // what to do, rather than as the exit status of a failed start.
            if let Some(stdio) = &spec.stdio
                && find_program(&stdio.command).is_none()
            {
                pending.push(failed_event(&ServerFailure {
                    server: name.clone(),
                    phase: stigmer_mcp::Phase::Start,
                    reason: missing_command(&stdio.command),
                }));
                continue;
            }
            configs.push(server_config(
                name,
                spec,
                &values,
                workspace.root(),
                &tmp,
                environment,
            )?);
        }
        let (notice_sender, notices) = mpsc::unbounded_channel();
        let started = futures::future::join_all(
            configs
                .into_iter()
                .map(|config| Connection::connect(config, notice_sender.clone())),
        )
        .await;
        let mut servers = Vec::new();
        for outcome in started {
            match outcome {
                Ok(connection) => servers.push(Arc::new(Server {
                    name: connection.name().to_owned(),
                    connection: RwLock::new(connection),
                })),
                Err(failure) => pending.push(failed_event(&failure)),
            }
        }
        // The tools the run offers: those saved by its first step (on whichever runner), or
        // what the servers list now when nothing was saved yet.
        let (snapshot, unsaved) = match &context.tool_snapshot {
            Some(saved) => (saved.clone(), false),
            None => (live_snapshot(&servers).await, true),
        };
        let mut instructions = String::new();
        for server in &snapshot.servers {
            if let Some(text) = server
                .instructions
                .as_deref()
                .filter(|text| !text.trim().is_empty())
            {
                instructions.push_str(&format!(
                    "\n\n## MCP server `{}`\nIts tools are named `{}__<tool>`.\n{}",
                    server.server,
                    server.server,
                    text.trim()
                ));
            }
        }
        prompt.insert_str(0, &instructions);
        let offered = offer(&snapshot)?;
        Ok(Toolbox {
            builtins: stigmer_tools::builtin_specs(agent.tools.as_deref()),
            shell,
            servers,
            offered: Mutex::new(offered),
            snapshot: Mutex::new(snapshot),
            unsaved: std::sync::atomic::AtomicBool::new(unsaved),
            prompt,
            pending: Mutex::new(pending),
            notices: Mutex::new(notices),
            workspace: workspace.clone(),
            tmp,
            environment: environment.clone(),
            shell_env: declared_env(context, &values),
            approvals: ApprovalPolicy::new(agent, &context.mcp_servers),
            sub_agents: agent.sub_agents.clone(),
        })
    }

    /// Takes in what the servers said since the last step: a server that failed is reported,
    /// and the tools of a server whose list changed are listed again before the next turn (the
    /// snapshot then needs saving again).
    pub async fn refresh(&self) -> Result<(), ToolboxError> {
        let notices: Vec<Notice> = {
            let mut receiver = self.notices.lock().unwrap_or_else(|p| p.into_inner());
            std::iter::from_fn(|| receiver.try_recv().ok()).collect()
        };
        let mut changed = false;
        for notice in notices {
            match notice {
                Notice::ToolsChanged { .. } => changed = true,
                Notice::Failed(failure) => self.report(failed_event(&failure)),
            }
        }
        if !changed {
            return Ok(());
        }
        let mut lists = Vec::new();
        for server in &self.servers {
            let mut connection = server.connection.write().await;
            if !connection.tools_changed() {
                continue;
            }
            match connection.refresh_tools().await {
                Ok(()) => lists.push((server.name.clone(), connection.tools().to_vec())),
                Err(failure) => self.report(failed_event(&failure)),
            }
        }
        let snapshot = {
            let mut snapshot = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            for (name, tools) in lists {
                if let Some(server) = snapshot.servers.iter_mut().find(|s| s.server == name) {
                    server.tools = tools;
                }
            }
            snapshot.clone()
        };
        let offered = offer(&snapshot)?;
        *self.offered.lock().unwrap_or_else(|p| p.into_inner()) = offered;
        self.unsaved
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The tool snapshot to save, if it changed since it was last saved (or loaded).
    pub fn take_unsaved_snapshot(&self) -> Option<ToolSnapshot> {
        self.unsaved
            .swap(false, std::sync::atomic::Ordering::SeqCst)
            .then(|| {
                self.snapshot
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
    }

    /// Marks the snapshot as not saved (its save failed; the next step tries again).
    pub fn snapshot_not_saved(&self) {
        self.unsaved
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn report(&self, event: ExecutionEvent) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// Events to report with this step, each once.
    pub fn take_events(&self) -> Vec<ExecutionEvent> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What the agent's instructions are followed by in the system prompt.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The tools offered to the model, in a fixed order: built-ins, the shell, MCP tools.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = self.builtins.clone();
        if let Some(timeout) = self.shell {
            specs.push(shell_spec(timeout));
        }
        specs.extend(subagents::task_spec(&self.sub_agents));
        let offered = self.offered.lock().unwrap_or_else(|p| p.into_inner());
        specs.extend(offered.iter().map(|tool| ToolSpec {
            name: tool.offered.clone(),
            description:
                tool.tool.description.clone().unwrap_or_else(|| {
                    format!("`{}` of MCP server `{}`", tool.tool.name, tool.server)
                }),
            parameters: tool.tool.input_schema.clone(),
        }));
        specs
    }

    /// Whether a call of `name` may run again after a crash (it reads, or repeating it changes
    /// nothing): the built-in readers and MCP tools annotated `readOnlyHint`/`idempotentHint`.
    /// Anything else runs at most once.
    pub fn may_repeat(&self, name: &str) -> bool {
        if matches!(name, "ls" | "read_file" | "glob" | "grep" | "write_todos") {
            return true;
        }
        self.offered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|tool| tool.offered == name && tool.tool.read_only)
    }

    /// Why a call of `name` must wait for a person's decision before it runs, or `None`.
    pub fn approval_reason(&self, name: &str) -> Option<String> {
        let offered = self.offered.lock().unwrap_or_else(|p| p.into_inner());
        let kind = match offered.iter().find(|tool| tool.offered == name) {
            Some(tool) => ToolKind::Mcp {
                server: &tool.server,
                reads_only: tool.tool.reads_only,
            },
            None if (self.shell.is_some() && name == SHELL_TOOL)
                || (!self.sub_agents.is_empty() && name == subagents::TASK_TOOL)
                || self.builtins.iter().any(|spec| spec.name == name) =>
            {
                ToolKind::Local
            }
            None => ToolKind::Unknown,
        };
        self.approvals.reason(name, kind)
    }

    /// The sub-agent and task of a `task` call, or the error its result is.
    pub fn task(&self, call: &ToolCall) -> Result<(String, String), String> {
        subagents::parse(call, &self.sub_agents)
    }

    /// Whether the run offers the `task` tool.
    pub fn has_sub_agents(&self) -> bool {
        !self.sub_agents.is_empty()
    }

    /// Whether `name` is a tool of this toolbox that is not built in.
    pub fn runs(&self, name: &str) -> bool {
        (self.shell.is_some() && name == SHELL_TOOL)
            || self
                .offered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|tool| tool.offered == name)
    }

    /// Runs a call of the shell or an MCP tool (see [`Toolbox::runs`]); its output is spilled to
    /// the workspace when it is too long (an MCP result's images are kept beside it).
    /// `progress` hears the MCP server's progress reports.
    pub async fn call(
        &self,
        call: &ToolCall,
        progress: &(dyn Fn(stigmer_mcp::Progress) + Send + Sync),
    ) -> ToolResult {
        let result = if call.name == SHELL_TOOL && self.shell.is_some() {
            self.shell(call).await.into()
        } else {
            self.mcp(call, progress).await
        };
        ToolResult {
            output: ToolOutput {
                content: spill(&self.workspace, &call.id, result.output.content),
                ..result.output
            },
            images: result.images,
        }
    }

    async fn mcp(
        &self,
        call: &ToolCall,
        progress: &(dyn Fn(stigmer_mcp::Progress) + Send + Sync),
    ) -> ToolResult {
        let target = self
            .offered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|tool| tool.offered == call.name)
            .map(|tool| (tool.server.clone(), tool.tool.name.clone()));
        let Some((server_name, tool)) = target else {
            return error(format!(
                "there is no tool `{}` (any more); call one of the tools you were given",
                call.name
            ))
            .into();
        };
        let Some(server) = self.servers.iter().find(|s| s.name == server_name) else {
            return error(format!("the MCP server `{server_name}` is not running")).into();
        };
        if !call.arguments.is_object() {
            return error(format!(
                "the arguments of `{}` must be a JSON object, not {}",
                call.name, call.arguments
            ))
            .into();
        }
        let connection = server.connection.read().await;
        let outcome = connection
            .call(&tool, call.arguments.clone(), progress)
            .await;
        ToolResult {
            output: ToolOutput {
                content: if outcome.is_error && !outcome.text.starts_with("Error") {
                    format!("Error: {}", outcome.text)
                } else {
                    outcome.text
                },
                is_error: outcome.is_error,
                todos: None,
            },
            images: outcome
                .images
                .into_iter()
                .map(|image| stigmer_llm::ToolImage {
                    mime_type: image.mime_type,
                    data: image.data,
                })
                .collect(),
        }
    }

    async fn shell(&self, call: &ToolCall) -> ToolOutput {
        let Some(limit) = self.shell else {
            return error("the shell is not enabled for this agent".into());
        };
        let Some(command) = call.arguments["command"]
            .as_str()
            .filter(|c| !c.trim().is_empty())
        else {
            return error("`execute` needs a `command` (a non-empty string)".into());
        };
        let timeout = call.arguments["timeout_seconds"]
            .as_u64()
            .map(|seconds| Duration::from_secs(seconds.max(1)).min(limit))
            .unwrap_or(limit);
        let mut env = stigmer_sandbox::minimal_env(&self.tmp);
        env.extend(self.shell_env.iter().cloned());
        let request = ShellRequest {
            command: command.to_owned(),
            workspace: self.workspace.root().to_path_buf(),
            tmp: self.tmp.clone(),
            env,
            timeout,
            confine: matches!(self.environment.landlock, LandlockSupport::Enforced { .. }),
            output_limit: SHELL_OUTPUT_KEPT,
        };
        let wrapper = Wrapper {
            program: self.environment.program.clone(),
        };
        match stigmer_sandbox::run_shell(&wrapper, request).await {
            Ok(outcome) => {
                let mut text = outcome.output;
                if outcome.truncated {
                    text.push_str(&format!(
                        "\n[output cut at {} MiB]",
                        SHELL_OUTPUT_KEPT / (1024 * 1024)
                    ));
                }
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                if outcome.timed_out {
                    text.push_str(&format!(
                        "The command took longer than {} s and was stopped (its whole process group).\n",
                        timeout.as_secs()
                    ));
                }
                text.push_str(&format!("Exit code: {}", outcome.exit_code));
                ToolOutput {
                    content: text,
                    is_error: outcome.exit_code != 0,
                    todos: None,
                }
            }
            Err(failure) => error(format!("the command could not run: {failure}")),
        }
    }

    /// Stops every server (their process groups), in parallel.
    pub async fn close(self) {
        let servers: Vec<Arc<Server>> = self.servers;
        futures::future::join_all(servers.into_iter().map(|server| async move {
            match Arc::try_unwrap(server) {
                Ok(server) => server.connection.into_inner().close().await,
                // A call still holds it: dropping the last reference kills the group.
                Err(shared) => drop(shared),
            }
        }))
        .await;
    }
}

/// The `execute` tool as the model sees it.
fn shell_spec(limit: Duration) -> ToolSpec {
    ToolSpec {
        name: SHELL_TOOL.into(),
        description: format!(
            "Run a shell command (sh -c) in the workspace; stdin is closed. Returns the combined \
             output (stderr lines prefixed [stderr]) and the exit code. Stops the command after \
             timeout_seconds (at most {} s).",
            limit.as_secs()
        ),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command line, run by sh -c"},
                "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": limit.as_secs()}
            },
            "required": ["command"]
        }),
    }
}

fn error(message: String) -> ToolOutput {
    ToolOutput {
        content: format!("Error: {message}"),
        is_error: true,
        todos: None,
    }
}

fn failed_event(failure: &ServerFailure) -> ExecutionEvent {
    McpServerFailed {
        server: failure.server.clone(),
        phase: failure.phase.to_string(),
        reason: failure.reason.clone(),
        parent: None,
    }
    .into()
}

/// Where `command` is: itself when it names a path, else the first executable file of that
/// name in the runner's `PATH` (the one the servers get, see `stigmer_sandbox::minimal_env`).
fn find_program(command: &str) -> Option<PathBuf> {
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let path = PathBuf::from(command);
        return executable(&path).then_some(path);
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(command))
        .find(|path| executable(path))
}

/// Why a stdio server whose command is missing cannot start, and the two ways out.
fn missing_command(command: &str) -> String {
    format!(
        "the command `{command}` is not installed where the agent-runner runs. Install it there: \
         in container mode, set agent_runner.image_base to an image that has it (for example \
         node:22-bookworm-slim for node and npx, python:3.12-slim for python and uvx); or run \
         the agent-runner as a process (agent_runner.mode: process) on a machine that has it"
    )
}

/// The run's variables by name: the agent's defaults, then `--env`, then `--secret`.
fn run_variables(context: &RunContext) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = context
        .agent
        .env
        .iter()
        .filter_map(|(name, declared)| declared.default.clone().map(|value| (name.clone(), value)))
        .collect();
    values.extend(context.spec.env.clone());
    values.extend(context.secrets.clone());
    values
}

/// The agent's declared variables that have a value, for the shell's environment.
fn declared_env(context: &RunContext, values: &BTreeMap<String, String>) -> Vec<(String, String)> {
    context
        .agent
        .env
        .keys()
        .filter_map(|name| values.get(name).map(|value| (name.clone(), value.clone())))
        .collect()
}

/// How to start one MCP server, its `${NAME}` references resolved.
fn server_config(
    name: &str,
    spec: &McpServerSpec,
    values: &BTreeMap<String, String>,
    workspace: &Path,
    tmp: &Path,
    environment: &ToolEnvironment,
) -> Result<ServerConfig, ToolboxError> {
    let resolve = |text: &str| {
        variables::substitute(text, |variable| values.get(variable).cloned()).map_err(|source| {
            ToolboxError::Variable {
                server: name.to_owned(),
                source,
            }
        })
    };
    let transport = match (&spec.stdio, &spec.http) {
        (Some(stdio), _) => {
            let mut env = stigmer_sandbox::minimal_env(tmp);
            for (key, value) in &stdio.env {
                env.retain(|(existing, _)| existing != key);
                env.push((key.clone(), resolve(value)?));
            }
            let cwd = match &stdio.cwd {
                Some(cwd) => workspace.join(cwd),
                None => workspace.to_path_buf(),
            };
            let mut argv = vec![stdio.command.clone()];
            argv.extend(stdio.args.iter().cloned());
            let wrapper = Wrapper {
                program: environment.program.clone(),
            };
            Transport::Stdio {
                command: wrapper.command(&argv, &env, &cwd, None, None),
                display: argv.join(" "),
            }
        }
        (None, Some(http)) => Transport::Http {
            url: http.url.clone(),
            headers: http
                .headers
                .iter()
                .map(|(key, value)| Ok((key.clone(), resolve(value)?)))
                .collect::<Result<_, ToolboxError>>()?,
        },
        (None, None) => {
            return Err(ToolboxError::NameClash(format!(
                "MCP server `{name}` has no transport"
            )));
        }
    };
    Ok(ServerConfig {
        name: name.to_owned(),
        transport,
        enabled_tools: spec.enabled_tools.clone(),
        startup_timeout: Duration::from_secs(u64::from(
            spec.startup_timeout_seconds
                .unwrap_or(MCP_STARTUP_TIMEOUT_DEFAULT_SECS),
        )),
        tool_timeout: Duration::from_secs(u64::from(
            spec.tool_timeout_seconds
                .unwrap_or(MCP_TOOL_TIMEOUT_DEFAULT_SECS),
        )),
    })
}

/// `text` as the model gets it: whole up to [`SPILL_LIMIT`]; beyond, written to
/// `.stigmer/tool-results/<call>.txt` and replaced by its head, its tail and the path.
pub fn spill(workspace: &Workspace, call_id: &str, text: String) -> String {
    if text.len() <= SPILL_LIMIT {
        return text;
    }
    let file: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let file = if file.is_empty() {
        "call".to_owned()
    } else {
        file
    };
    let path = Path::new(TOOL_RESULTS_DIR).join(format!("{file}.txt"));
    let head_end = floor_boundary(&text, SPILL_HEAD);
    let tail_start = ceil_boundary(&text, text.len() - SPILL_TAIL);
    let (head, tail) = (&text[..head_end], &text[tail_start..]);
    match workspace.write_file(&path, text.as_bytes()) {
        Ok(()) => format!(
            "{head}\n\n[… {} bytes in all: the whole output is in {} — read it with read_file …]\n\n{tail}",
            text.len(),
            path.display()
        ),
        Err(failure) => format!(
            "{head}\n\n[… {} bytes in all, cut here; it could not be saved to {}: {failure} …]\n\n{tail}",
            text.len(),
            path.display()
        ),
    }
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// The toolboxes of the executions this runner is working on.
#[derive(Default)]
pub struct Toolboxes {
    held: Mutex<HashMap<String, Held>>,
}

struct Held {
    toolbox: Arc<Toolbox>,
    last_used: Instant,
}

impl Toolboxes {
    /// The toolbox of `execution_id`, if this runner holds one.
    pub fn get(&self, execution_id: &str) -> Option<Arc<Toolbox>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get_mut(execution_id).map(|entry| {
            entry.last_used = Instant::now();
            entry.toolbox.clone()
        })
    }

    /// Holds a newly built toolbox (one built meanwhile by a concurrent step wins; this one is
    /// closed).
    pub async fn insert(&self, execution_id: &str, toolbox: Toolbox) -> Arc<Toolbox> {
        let (kept, spare) = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            match held.get_mut(execution_id) {
                Some(entry) => {
                    entry.last_used = Instant::now();
                    (entry.toolbox.clone(), Some(toolbox))
                }
                None => {
                    let toolbox = Arc::new(toolbox);
                    held.insert(
                        execution_id.to_owned(),
                        Held {
                            toolbox: toolbox.clone(),
                            last_used: Instant::now(),
                        },
                    );
                    (toolbox, None)
                }
            }
        };
        if let Some(spare) = spare {
            spare.close().await;
        }
        kept
    }

    /// Closes the toolbox of `execution_id` (its run ended here, or was cancelled). The
    /// servers close in the background, off the step's path: a server may take a while to exit
    /// (then its group is killed within about a second), and the run need not wait for it.
    pub async fn close(&self, execution_id: &str) {
        let entry = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(execution_id);
        if let Some(entry) = entry {
            tokio::spawn(close_shared(entry.toolbox));
        }
    }

    /// Closes the toolboxes no step has used for `idle` (as of `now`).
    pub async fn close_idle(&self, now: Instant, idle: Duration) {
        let idle: Vec<Arc<Toolbox>> = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<String> = held
                .iter()
                .filter(|(_, entry)| now.saturating_duration_since(entry.last_used) >= idle)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| held.remove(id).map(|entry| entry.toolbox))
                .collect()
        };
        futures::future::join_all(idle.into_iter().map(close_shared)).await;
    }
}

/// Closes a toolbox once no step holds it any more; a step still holding it drops the last
/// reference, which kills the servers' groups.
async fn close_shared(toolbox: Arc<Toolbox>) {
    if let Ok(toolbox) = Arc::try_unwrap(toolbox) {
        toolbox.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_resources::{HttpTransport, StdioTransport};

    fn environment() -> ToolEnvironment {
        ToolEnvironment {
            program: "/usr/local/bin/stigmer".into(),
            landlock: LandlockSupport::Unavailable {
                reason: "test".into(),
            },
        }
    }

    #[test]
    fn references_resolve_from_the_run_and_an_unset_one_is_named() {
        let values: BTreeMap<String, String> = [("TOKEN".to_owned(), "t0k".to_owned())].into();
        let http = McpServerSpec {
            http: Some(HttpTransport {
                url: "http://127.0.0.1:1/mcp".into(),
                headers: [("Authorization".to_owned(), "Bearer ${TOKEN}".to_owned())].into(),
            }),
            ..McpServerSpec::default()
        };
        let config = server_config(
            "web",
            &http,
            &values,
            Path::new("/w"),
            Path::new("/w/.stigmer/tmp"),
            &environment(),
        )
        .unwrap();
        match config.transport {
            Transport::Http { headers, .. } => assert_eq!(
                headers,
                [("Authorization".to_owned(), "Bearer t0k".to_owned())]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(config.startup_timeout, Duration::from_secs(30));
        assert_eq!(config.tool_timeout, Duration::from_secs(120));

        let stdio = McpServerSpec {
            stdio: Some(StdioTransport {
                command: "node".into(),
                env: [("KEY".to_owned(), "${MISSING}".to_owned())].into(),
                ..StdioTransport::default()
            }),
            ..McpServerSpec::default()
        };
        let error = server_config(
            "files",
            &stdio,
            &values,
            Path::new("/w"),
            Path::new("/w/.stigmer/tmp"),
            &environment(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "MCP server `files`: the variable MISSING is not set: declare it in the agent's spec.env or pass it with --env/--secret"
        );
        assert!(!error.to_string().contains("t0k"));
    }

    #[test]
    fn a_long_result_is_spilled_to_the_workspace_with_its_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(dir.path()).unwrap();
        let text = format!("HEAD{}TAIL", "x".repeat(1024 * 1024));
        let shown = spill(&workspace, "call/1", text.clone());
        assert!(shown.len() < SPILL_LIMIT, "{} bytes", shown.len());
        assert!(shown.starts_with("HEAD") && shown.ends_with("TAIL"));
        assert!(
            shown.contains(".stigmer/tool-results/call_1.txt"),
            "{shown}"
        );
        let saved =
            std::fs::read_to_string(dir.path().join(".stigmer/tool-results/call_1.txt")).unwrap();
        assert_eq!(saved, text);
        assert_eq!(spill(&workspace, "c2", "short".into()), "short");
    }

    #[test]
    fn a_missing_command_is_named_with_both_remedies() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("surely-not-installed-anywhere").is_none());
        let reason = missing_command("npx");
        assert!(reason.contains("`npx` is not installed"), "{reason}");
        assert!(reason.contains("agent_runner.image_base"), "{reason}");
        assert!(reason.contains("agent_runner.mode: process"), "{reason}");
    }
}
