//! The resource envelope and the spec of each declarable kind.
//!
//! Manifests are parsed into the typed specs here (unknown fields are errors); the stored and
//! transmitted form is the envelope [`Resource`] with the spec as canonical JSON, re-serialized
//! from the typed spec, so two manifests that mean the same thing compare equal.

use crate::kind::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only API version.
pub const API_VERSION: &str = "agentic.stigmer.ai/v1";

/// Built-in tools an agent may list in `spec.tools` (all are offered when it lists none).
pub const BUILTIN_TOOLS: [&str; 7] = [
    "write_todos",
    "ls",
    "read_file",
    "write_file",
    "edit_file",
    "glob",
    "grep",
];

/// What secret values look like in `get` output.
pub const MASK: &str = "****";

/// The largest resource an apply accepts: its canonical JSON (the stored form) in bytes. Bigger
/// ones are refused with an error naming them, so one resource cannot slow every apply, `get`
/// and run (documented in docs/configuration.md).
pub const MAX_RESOURCE_BYTES: usize = 16 * 1024 * 1024;

/// A stored resource: the envelope with a canonical JSON spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub api_version: String,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `metadata`: the user sets `name` and `labels`; the server sets the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// A manifest document with a typed spec (only for parsing).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TypedManifest<S> {
    #[serde(rename = "apiVersion")]
    pub _api_version: String,
    #[serde(rename = "kind")]
    pub _kind: String,
    pub metadata: Metadata,
    pub spec: S,
    /// Accepted (so that `get -o yaml` output applies again) and ignored.
    #[serde(default, rename = "status")]
    pub _status: Option<serde_yaml_ng::Value>,
}

/// `spec` of an Agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub instructions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// Built-in tool names; absent means all built-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_agents: Vec<SubAgentSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvVarSpec>,
    /// Upper bound on model turns of one execution (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// The shell tool `execute` (off unless enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellSpec>,
    /// Tool calls that wait for a person's decision before they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
}

/// Which of an agent's tool calls need approval, and how long a decision may take.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Tool names as the model sees them: a built-in (`execute`), an MCP tool
    /// (`server__tool`), every tool of a server (`server__*`), or every tool (`*`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// How long a call may wait for a decision before it is denied with "approval timed out"
    /// (default 86,400: a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

/// Default of `spec.approval.timeoutSeconds`: a day.
pub const APPROVAL_TIMEOUT_DEFAULT_SECS: u32 = 86_400;

/// Whether an MCP server's tool calls wait for a person's decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequireApproval {
    /// Every call.
    Always,
    /// None, unless the agent's `approval.tools` names the tool or the server (`server__*`).
    #[default]
    Never,
    /// Every call of a tool the server does not annotate `readOnlyHint`.
    UnlessReadOnly,
}

/// The shell tool of an agent: `sh -c` in the session workspace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShellSpec {
    pub enabled: bool,
    /// How long one command may run (default 120, at most 600); the model may ask for less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

/// Default and upper bound of `spec.shell.timeoutSeconds`.
pub const SHELL_TIMEOUT_DEFAULT_SECS: u32 = 120;
pub const SHELL_TIMEOUT_MAX_SECS: u32 = 600;
/// Defaults of an McpServer's `startupTimeoutSeconds` and `toolTimeoutSeconds`.
pub const MCP_STARTUP_TIMEOUT_DEFAULT_SECS: u32 = 30;
pub const MCP_TOOL_TIMEOUT_DEFAULT_SECS: u32 = 120;

/// Which model an agent uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "finite"
    )]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The model's context window in tokens, when the runner should not ask the provider or
    /// assume its default (at least [`CONTEXT_WINDOW_MIN`]). The runner compacts the
    /// conversation before it nears this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
}

/// The smallest `spec.model.contextWindow`: below it the system prompt and tool definitions
/// alone leave no room for a conversation.
pub const CONTEXT_WINDOW_MIN: u32 = 1024;

/// LLM providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Ollama,
    Openai,
    Anthropic,
}

/// An inline sub-agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubAgentSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub instructions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
}

/// A runtime variable an agent declares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// `spec` of an McpServer: exactly one transport.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<StdioTransport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTransport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_tools: Option<Vec<String>>,
    /// How long the server may take to start and list its tools (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_timeout_seconds: Option<u32>,
    /// How long one tool call may go without an answer or progress (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_timeout_seconds: Option<u32>,
    /// Whether its tool calls wait for a person's decision (default `never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<RequireApproval>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdioTransport {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Values may reference variables as `${NAME}`, resolved when the server starts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the session workspace (default: the workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTransport {
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `spec` of a Skill: the content of a folder holding `SKILL.md`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillSpec {
    pub description: String,
    /// Relative path → text content; `SKILL.md` is always present.
    pub files: BTreeMap<String, String>,
    /// `sha256:<hex>` over the files; computed, never trusted from input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

/// `spec` of an Environment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, EnvironmentVariable>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentVariable {
    pub value: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// `spec` of a Workflow: a Serverless Workflow DSL document (1.0.x) without its boilerplate.
/// The task list is `do` (today's `tasks: [{name, …}]` is accepted as an alias and kept as
/// written); [`crate::workflow_document`] turns it into the full document the runner runs.
/// Everything below the top level is checked against the DSL's schema and our rules at apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Ours: a line for listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<WorkflowDocumentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub uses: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate: Option<serde_json::Value>,
    /// Accepted here only so that validation refuses it with its reason (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<serde_json::Value>,
    /// The task list: `- taskName: {…}`.
    #[serde(default, rename = "do", skip_serializing_if = "Option::is_none")]
    pub tasks_do: Option<Vec<serde_json::Value>>,
    /// The alias of `do`: `- name: taskName` plus the task's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<serde_json::Value>>,
}

/// `spec.document`: the DSL's `document` block; every field is optional (`dsl` defaults to
/// 1.0.3, `namespace` to `default`, `name` to `metadata.name`, `version` to 0.0.1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowDocumentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl Resource {
    /// The same resource with secret values replaced by [`MASK`], for output.
    pub fn masked(&self) -> Resource {
        let mut copy = self.clone();
        match self.kind {
            Kind::Environment => {
                if let Some(variables) = copy
                    .spec
                    .get_mut("variables")
                    .and_then(|v| v.as_object_mut())
                {
                    for variable in variables.values_mut() {
                        if variable.get("secret").and_then(|s| s.as_bool()) == Some(true) {
                            variable["value"] = serde_json::Value::from(MASK);
                        }
                    }
                }
            }
            Kind::Agent => {
                if let Some(env) = copy.spec.get_mut("env").and_then(|v| v.as_object_mut()) {
                    for variable in env.values_mut() {
                        if variable.get("secret").and_then(|s| s.as_bool()) == Some(true)
                            && variable.get("default").is_some()
                        {
                            variable["default"] = serde_json::Value::from(MASK);
                        }
                    }
                }
            }
            _ => {}
        }
        copy
    }

    /// Puts the stored secret values back where this resource holds the [`MASK`] in their
    /// place, as it does when it was written from `get` output, so an apply never stores the
    /// mask. Returns the field paths of masks that have no stored secret to stand for: those
    /// must be refused, or the mask would become the value.
    pub fn unmask(&mut self, stored: Option<&Resource>) -> Vec<String> {
        let (map_field, value_field) = match self.kind {
            Kind::Environment => ("variables", "value"),
            Kind::Agent => ("env", "default"),
            _ => return Vec::new(),
        };
        let stored_variables = stored.and_then(|stored| stored.spec.get(map_field));
        let Some(variables) = self
            .spec
            .get_mut(map_field)
            .and_then(|variables| variables.as_object_mut())
        else {
            return Vec::new();
        };
        let mut unresolved = Vec::new();
        for (name, variable) in variables.iter_mut() {
            if variable.get(value_field).and_then(|value| value.as_str()) != Some(MASK) {
                continue;
            }
            let secret = |variable: &serde_json::Value| {
                variable.get("secret").and_then(|secret| secret.as_bool()) == Some(true)
            };
            let stored_secret = stored_variables
                .and_then(|variables| variables.get(name))
                .filter(|stored| secret(stored))
                .and_then(|stored| stored.get(value_field));
            match stored_secret {
                // The mask stands for the stored secret only where both are secret: a variable
                // made plain must be given its value, never the hidden one.
                Some(value) if secret(variable) => variable[value_field] = value.clone(),
                None if !secret(variable) => {}
                _ => unresolved.push(format!("spec.{map_field}.{name}.{value_field}")),
            }
        }
        unresolved
    }

    /// Names this resource refers to, as `(kind, name, field path)`.
    pub fn references(&self) -> Vec<(Kind, String, String)> {
        let mut found = Vec::new();
        if self.kind == Kind::Workflow {
            return crate::workflow::references(self);
        }
        if self.kind != Kind::Agent {
            return found;
        }
        let mut collect = |value: &serde_json::Value, prefix: &str| {
            for (field, kind) in [("mcpServers", Kind::McpServer), ("skills", Kind::Skill)] {
                for (index, name) in value
                    .get(field)
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    if let Some(name) = name.as_str() {
                        found.push((kind, name.to_owned(), format!("{prefix}{field}[{index}]")));
                    }
                }
            }
        };
        collect(&self.spec, "spec.");
        for (index, sub_agent) in self
            .spec
            .get("subAgents")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .enumerate()
        {
            collect(sub_agent, &format!("spec.subAgents[{index}]."));
        }
        found
    }
}

/// A number where a range applies: YAML's `.inf` and `.nan` are refused here, since JSON (the
/// stored form) has no such values and they would silently become "not set".
fn finite<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(deserializer)? {
        Some(number) if !number.is_finite() => Err(serde::de::Error::custom(format!(
            "{number} is not a usable number here: expected a finite number"
        ))),
        number => Ok(number),
    }
}
