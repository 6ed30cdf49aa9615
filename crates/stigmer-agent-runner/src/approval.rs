//! Which tool calls wait for a person's decision, and the names people decide them by.
//!
//! The rules are the agent's `spec.approval.tools` (a tool's name, `server__*`, `*`) and each
//! McpServer's `requireApproval`. A model turn's step decides, once, which of the turn's calls
//! are held; the workflow records that answer, so every later step and replay agrees on it.

use std::collections::BTreeMap;
use stigmer_llm::ToolCall;
use stigmer_resources::{AgentSpec, McpServerSpec, RequireApproval};

/// A tool as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolKind<'a> {
    /// A built-in tool or the shell.
    Local,
    /// A tool of an MCP server; `reads_only` when annotated `readOnlyHint`.
    Mcp { server: &'a str, reads_only: bool },
    /// Not a tool of this run (the model made the name up): it fails without running.
    Unknown,
}

/// The approval rules of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApprovalPolicy {
    tools: Vec<String>,
    servers: BTreeMap<String, RequireApproval>,
}

impl ApprovalPolicy {
    pub fn new(agent: &AgentSpec, servers: &[(String, McpServerSpec)]) -> ApprovalPolicy {
        ApprovalPolicy {
            tools: agent
                .approval
                .as_ref()
                .map(|approval| approval.tools.clone())
                .unwrap_or_default(),
            servers: servers
                .iter()
                .filter_map(|(name, spec)| Some((name.clone(), spec.require_approval?)))
                .collect(),
        }
    }

    /// Why a call of `name` must wait for a decision, or `None` when it may run at once.
    ///
    /// An entry of the agent's list naming the tool (or its server) always holds it; `*` holds
    /// every tool of the run except those of a server that says `requireApproval: never`
    /// explicitly; a server's `always` and `unlessReadOnly` hold its tools whatever the agent
    /// lists. A name the run does not offer is never held: it fails as an unknown tool.
    pub fn reason(&self, name: &str, kind: ToolKind<'_>) -> Option<String> {
        if kind == ToolKind::Unknown {
            return None;
        }
        if self.tools.iter().any(|entry| entry == name) {
            return Some(format!("the agent's spec.approval.tools lists `{name}`"));
        }
        if let ToolKind::Mcp { server, reads_only } = kind {
            let whole_server = format!("{server}__*");
            if self.tools.contains(&whole_server) {
                return Some(format!(
                    "the agent's spec.approval.tools lists `{whole_server}`"
                ));
            }
            match self.servers.get(server) {
                Some(RequireApproval::Always) => {
                    return Some(format!(
                        "the McpServer `{server}` sets requireApproval: always"
                    ));
                }
                Some(RequireApproval::UnlessReadOnly) if !reads_only => {
                    return Some(format!(
                        "the McpServer `{server}` sets requireApproval: unlessReadOnly and does \
                         not annotate this tool readOnlyHint"
                    ));
                }
                Some(RequireApproval::Never) => return None,
                _ => {}
            }
        }
        if self.tools.iter().any(|entry| entry == "*") {
            return Some("the agent's spec.approval.tools lists `*` (every tool)".into());
        }
        None
    }
}

/// The name each call of a turn is decided by: the model's call id when it is set and unique
/// within the turn, else `call-<index>` (some models send no ids, or the same one twice).
pub fn approval_ids(calls: &[ToolCall]) -> Vec<String> {
    calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let unique = !call.id.is_empty()
                && calls.iter().filter(|other| other.id == call.id).count() == 1
                && !call.id.starts_with("call-");
            if unique {
                call.id.clone()
            } else {
                format!("call-{index}")
            }
        })
        .collect()
}

/// What the model reads for a call that was denied.
pub fn denial(message: Option<&str>) -> String {
    match message.map(str::trim).filter(|message| !message.is_empty()) {
        Some(message) => format!("The user denied this call: {message}"),
        None => "The user denied this call.".into(),
    }
}

/// What the model reads for a call nobody decided in time.
pub const TIMED_OUT: &str = "The call was not run: approval timed out (nobody approved it within the agent's spec.approval.timeoutSeconds).";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stigmer_resources::ApprovalSpec;

    fn policy(tools: &[&str], servers: &[(&str, Option<RequireApproval>)]) -> ApprovalPolicy {
        let agent = AgentSpec {
            instructions: "x".into(),
            approval: Some(ApprovalSpec {
                tools: tools.iter().map(|tool| tool.to_string()).collect(),
                timeout_seconds: None,
            }),
            ..AgentSpec::default()
        };
        let servers: Vec<(String, McpServerSpec)> = servers
            .iter()
            .map(|(name, require)| {
                (
                    name.to_string(),
                    McpServerSpec {
                        require_approval: *require,
                        ..McpServerSpec::default()
                    },
                )
            })
            .collect();
        ApprovalPolicy::new(&agent, &servers)
    }

    fn mcp(server: &str, reads_only: bool) -> ToolKind<'_> {
        ToolKind::Mcp { server, reads_only }
    }

    #[test]
    fn a_listed_tool_waits_and_others_run() {
        let policy = policy(&["execute", "files__write"], &[]);
        assert_eq!(
            policy.reason("execute", ToolKind::Local).as_deref(),
            Some("the agent's spec.approval.tools lists `execute`")
        );
        assert!(policy.reason("ls", ToolKind::Local).is_none());
        assert!(policy.reason("files__write", mcp("files", false)).is_some());
        assert!(policy.reason("files__read", mcp("files", true)).is_none());
    }

    #[test]
    fn a_whole_server_and_every_tool() {
        let policy = policy(&["files__*"], &[]);
        assert!(policy.reason("files__read", mcp("files", true)).is_some());
        assert!(policy.reason("web__get", mcp("web", true)).is_none());
        assert!(policy.reason("ls", ToolKind::Local).is_none());
        let every = self::policy(&["*"], &[]);
        assert!(every.reason("ls", ToolKind::Local).is_some());
        assert!(every.reason("web__get", mcp("web", true)).is_some());
        assert!(
            every.reason("made_up", ToolKind::Unknown).is_none(),
            "an unknown tool fails without running: nothing to approve"
        );
    }

    #[test]
    fn servers_decide_for_their_tools() {
        let policy = policy(
            &[],
            &[
                ("always", Some(RequireApproval::Always)),
                ("guarded", Some(RequireApproval::UnlessReadOnly)),
                ("free", Some(RequireApproval::Never)),
            ],
        );
        assert!(
            policy
                .reason("always__read", mcp("always", true))
                .unwrap()
                .contains("requireApproval: always")
        );
        assert!(
            policy
                .reason("guarded__read", mcp("guarded", true))
                .is_none()
        );
        assert!(
            policy
                .reason("guarded__write", mcp("guarded", false))
                .unwrap()
                .contains("unlessReadOnly")
        );
        assert!(policy.reason("free__write", mcp("free", false)).is_none());
    }

    #[test]
    fn never_on_a_server_beats_every_tool_but_not_a_named_one() {
        let policy = policy(
            &["*", "free__delete"],
            &[("free", Some(RequireApproval::Never))],
        );
        assert!(policy.reason("free__write", mcp("free", false)).is_none());
        assert!(policy.reason("free__delete", mcp("free", false)).is_some());
        assert!(policy.reason("ls", ToolKind::Local).is_some());
    }

    #[test]
    fn no_rules_hold_nothing() {
        let policy = ApprovalPolicy::new(
            &AgentSpec {
                instructions: "x".into(),
                ..AgentSpec::default()
            },
            &[],
        );
        assert!(policy.reason("execute", ToolKind::Local).is_none());
        assert!(policy.reason("s__t", mcp("s", false)).is_none());
    }

    #[test]
    fn calls_are_named_by_their_id_when_it_is_unique() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "ls".into(),
            arguments: json!({}),
        };
        assert_eq!(
            approval_ids(&[call("toolu_1"), call(""), call("dup"), call("dup")]),
            ["toolu_1", "call-1", "call-2", "call-3"]
        );
        assert_eq!(
            approval_ids(&[call("call-1"), call("x")]),
            ["call-0", "x"],
            "an id that looks like a generated one is not trusted to be unique"
        );
    }

    #[test]
    fn denials_read_well() {
        assert_eq!(
            denial(Some("not now")),
            "The user denied this call: not now"
        );
        assert_eq!(denial(Some("  ")), "The user denied this call.");
        assert_eq!(denial(None), "The user denied this call.");
    }
}
