//! The kinds of resources and the names users may call them by.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A resource kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Agent,
    McpServer,
    Skill,
    Environment,
    Workflow,
    Session,
    AgentExecution,
    WorkflowExecution,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Agent,
        Kind::McpServer,
        Kind::Skill,
        Kind::Environment,
        Kind::Workflow,
        Kind::Session,
        Kind::AgentExecution,
        Kind::WorkflowExecution,
    ];

    /// The manifest spelling (`kind: McpServer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "Agent",
            Kind::McpServer => "McpServer",
            Kind::Skill => "Skill",
            Kind::Environment => "Environment",
            Kind::Workflow => "Workflow",
            Kind::Session => "Session",
            Kind::AgentExecution => "AgentExecution",
            Kind::WorkflowExecution => "WorkflowExecution",
        }
    }

    /// The prefix of ids of this kind.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Agent => "agt",
            Kind::McpServer => "mcp",
            Kind::Skill => "skl",
            Kind::Environment => "env",
            Kind::Workflow => "wfl",
            Kind::Session => "ses",
            Kind::AgentExecution => "aex",
            Kind::WorkflowExecution => "wex",
        }
    }

    /// Whether users declare this kind in manifests (the others are created by the system).
    pub fn is_declarable(self) -> bool {
        !matches!(
            self,
            Kind::Session | Kind::AgentExecution | Kind::WorkflowExecution
        )
    }

    /// The names accepted on the command line: singular, plural and short forms.
    pub fn cli_names(self) -> &'static [&'static str] {
        match self {
            Kind::Agent => &["agent", "agents", "ag"],
            Kind::McpServer => &["mcpserver", "mcpservers", "mcp"],
            Kind::Skill => &["skill", "skills"],
            Kind::Environment => &["environment", "environments", "env"],
            Kind::Workflow => &["workflow", "workflows", "wf"],
            Kind::Session => &["session", "sessions"],
            Kind::AgentExecution => &["execution", "executions", "ex", "agentexecution"],
            Kind::WorkflowExecution => &["workflowexecution", "workflowexecutions", "wex"],
        }
    }

    /// Parses a manifest `kind`.
    pub fn from_manifest(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Parses a command-line kind name (case-insensitive).
    pub fn from_cli(text: &str) -> Option<Kind> {
        let lower = text.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|kind| kind.cli_names().contains(&lower.as_str()))
    }

    /// The closest manifest kind to a misspelling.
    pub fn suggest_manifest(text: &str) -> Option<&'static str> {
        crate::suggest(text, Kind::ALL.iter().map(|kind| kind.as_str()))
    }

    /// The closest command-line kind name to a misspelling.
    pub fn suggest_cli(text: &str) -> Option<&'static str> {
        crate::suggest(
            &text.to_ascii_lowercase(),
            Kind::ALL
                .iter()
                .flat_map(|kind| kind.cli_names().iter().copied()),
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_names_cover_singular_plural_and_short() {
        assert_eq!(Kind::from_cli("ag"), Some(Kind::Agent));
        assert_eq!(Kind::from_cli("Agents"), Some(Kind::Agent));
        assert_eq!(Kind::from_cli("env"), Some(Kind::Environment));
        assert_eq!(Kind::from_cli("wf"), Some(Kind::Workflow));
        assert_eq!(Kind::from_cli("ex"), Some(Kind::AgentExecution));
        assert_eq!(Kind::from_cli("wex"), Some(Kind::WorkflowExecution));
        assert_eq!(
            Kind::from_cli("WorkflowExecution"),
            Some(Kind::WorkflowExecution)
        );
        assert!(!Kind::WorkflowExecution.is_declarable());
        assert_eq!(Kind::WorkflowExecution.id_prefix(), "wex");
        assert_eq!(Kind::from_cli("mcpservers"), Some(Kind::McpServer));
        assert_eq!(Kind::from_cli("agnet"), None);
        assert_eq!(Kind::suggest_cli("agnet"), Some("agent"));
        assert_eq!(Kind::suggest_manifest("Agnet"), Some("Agent"));
        assert_eq!(Kind::suggest_manifest("McpSever"), Some("McpServer"));
    }
}
