//! The MCP client of the agent-runner: a narrow facade over `rmcp` (no other crate imports
//! it), with every failure classified once into a [`ServerFailure`] or a tool error the model
//! can read, and no panics.
//!
//! * [`Connection::connect`] starts one MCP server from a [`ServerConfig`]: a stdio command
//!   (run in its own process group, which this crate owns and kills) or a streamable HTTP URL.
//!   The whole start (handshake and first tool listing) is bounded by `startup_timeout`; a
//!   failure names what went wrong (command not found, exited at once with its last stderr
//!   lines, garbage on stdout, no answer, HTTP 401/403/404, not an MCP endpoint, connection
//!   refused) and leaves no process behind.
//! * [`Connection::tools`] is the server's tool list after `enabledTools` filtering, in the
//!   server's order; tools whose input schema is not an object schema are dropped with a
//!   warning. [`Connection::instructions`] are capped at [`INSTRUCTIONS_LIMIT`] bytes.
//! * [`Connection::call`] runs one tool call with `tool_timeout` (reset by progress, hard cap
//!   4×), routes the call's progress notifications to its callback, and always returns a
//!   [`CallOutcome`]: timeouts, unknown tools, server errors and dead servers are tool errors
//!   with a readable text. Dropping the future cancels the call on the server.
//! * Events that happen outside a call go to the [`Notice`] channel given to `connect`:
//!   `tools/list_changed` ([`Notice::ToolsChanged`]) and a server that died after its start
//!   ([`Notice::Failed`], once).
//! * [`offered_name`] and [`offer`] build the names the model sees (`<server>__<tool>`,
//!   sanitised, at most 64 characters) and refuse clashes; [`render_result`] turns a
//!   `tools/call` result into model-visible text and the images it holds.
//! * [`Connection::close`] is bounded (about 1 s graceful, then the process group is killed);
//!   dropping a [`Connection`] kills the group too.

mod connection;
mod naming;
mod process;
mod render;

use std::time::Duration;

pub use connection::Connection;
pub use naming::{MAX_OFFERED_NAME, NameClash, OfferedTool, offer, offered_name};
pub use render::{INSTRUCTIONS_LIMIT, cap_instructions, render_result};

/// The `CallToolResult` type [`render_result`] takes, so callers need not name `rmcp`.
pub use rmcp::model::CallToolResult;

/// Default for [`ServerConfig::startup_timeout`] (`startupTimeoutSeconds`).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`ServerConfig::tool_timeout`] (`toolTimeoutSeconds`).
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// A call may last at most this many times `tool_timeout`, however much progress it reports.
pub const TOOL_TIMEOUT_CAP_FACTOR: u32 = 4;

/// How to reach one MCP server (one `McpServer` resource).
#[derive(Debug)]
pub struct ServerConfig {
    /// The `McpServer` resource's name; prefixes the offered tool names.
    pub name: String,
    pub transport: Transport,
    /// `enabledTools`: when set, only these tools are listed (applied before naming).
    pub enabled_tools: Option<Vec<String>>,
    /// Bound on the whole start: process launch, handshake and first tool listing.
    pub startup_timeout: Duration,
    /// Bound on one call without progress; progress resets it, up to
    /// [`TOOL_TIMEOUT_CAP_FACTOR`] × this in total.
    pub tool_timeout: Duration,
}

/// The two transports.
pub enum Transport {
    /// A command fully prepared by the caller (program, args, `env_clear` + env, cwd, process
    /// group 0, parent-death signal). This crate pipes stdin, stdout and stderr, makes the
    /// process the leader of its own group, owns it, and kills the whole group on close, on a
    /// failed start and on drop. `display` is the command line for messages.
    Stdio {
        command: tokio::process::Command,
        display: String,
    },
    /// Streamable HTTP. Header values are already resolved and may be secrets: they are never
    /// logged nor shown by `Debug`. An `Authorization: Bearer <token>` header is sent through
    /// rmcp's `auth_header`.
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio { display, .. } => {
                f.debug_struct("Stdio").field("display", display).finish()
            }
            Transport::Http { url, headers } => {
                let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
                f.debug_struct("Http")
                    .field("url", url)
                    .field("header_names", &names)
                    .finish()
            }
        }
    }
}

/// One tool of a server, as the runner stores it in the run's snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolInfo {
    /// The server's own name of the tool.
    pub name: String,
    pub description: Option<String>,
    /// A JSON object schema (`"type": "object"`).
    pub input_schema: serde_json::Value,
    /// Annotated `readOnlyHint` or `idempotentHint`: safe to repeat.
    pub read_only: bool,
    /// Annotated `readOnlyHint` alone: it changes nothing (an McpServer with
    /// `requireApproval: unlessReadOnly` lets these run without a decision). Snapshots saved
    /// before this field read as false: such a call waits for a decision.
    #[serde(default)]
    pub reads_only: bool,
}

/// One progress notification of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// When a server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Starting: launch, handshake, first listing.
    Start,
    /// After the start, while serving calls.
    Call,
    /// Refreshing the tool list.
    List,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Start => "start",
            Phase::Call => "call",
            Phase::List => "list",
        })
    }
}

/// A server that could not start or stopped working (`mcp_server_failed`). `reason` ends with
/// the last stderr lines of a stdio server, when it wrote any.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("MCP server `{server}` failed ({phase}): {reason}")]
pub struct ServerFailure {
    pub server: String,
    pub phase: Phase,
    pub reason: String,
}

/// Something that happened to a server outside a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The server sent `notifications/tools/list_changed`: refresh before the next turn.
    ToolsChanged { server: String },
    /// The server died after its start (sent once per connection).
    Failed(ServerFailure),
}

/// The model-visible result of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    pub text: String,
    pub is_error: bool,
    /// The image blocks of the result (valid base64, at most [`IMAGE_LIMIT`] bytes each), for
    /// the model to see where its provider takes images; `text` does not mention them.
    pub images: Vec<CallImage>,
}

/// An image block of a call's result.
#[derive(Clone, PartialEq, Eq)]
pub struct CallImage {
    pub mime_type: String,
    /// Base64, without whitespace.
    pub data: String,
}

impl std::fmt::Debug for CallImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallImage")
            .field("mime_type", &self.mime_type)
            .field("base64_len", &self.data.len())
            .finish()
    }
}

/// Decoded bytes beyond which an image block is not kept but replaced by a placeholder line
/// (the largest image any provider of the agent-runner takes: `stigmer_llm::IMAGE_LIMIT`).
pub const IMAGE_LIMIT: usize = 5 * 1024 * 1024;

impl CallOutcome {
    /// A tool error with `text`.
    pub fn error(text: impl Into<String>) -> CallOutcome {
        CallOutcome {
            text: text.into(),
            is_error: true,
            images: Vec::new(),
        }
    }
}
