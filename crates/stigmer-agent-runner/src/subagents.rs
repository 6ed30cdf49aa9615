//! Sub-agents: the built-in `task` tool an agent with `spec.subAgents` is offered, and what
//! its calls become.
//!
//! A `task` call is no tool run by a step: the workflow runs the sub-agent as a child
//! workflow (an agent execution of its own, in the parent's workspace) and the next step
//! stores the sub-agent's final answer as the call's result. Only that answer enters the
//! parent's conversation.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stigmer_llm::{ToolCall, ToolSpec};
use stigmer_resources::SubAgentSpec;

/// The tool's name.
pub const TASK_TOOL: &str = "task";

/// A `task` call of a turn: which sub-agent runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCall {
    /// Its place in the turn's calls.
    pub index: u32,
    /// The call's name for people (as approvals name it).
    pub call_id: String,
    pub sub_agent: String,
}

/// How a sub-agent's run ended, for the step that stores its answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubAgentOutcome {
    pub index: u32,
    pub sub_agent: String,
    /// The sub-agent's execution (`aex-…`).
    pub execution_id: String,
    /// Why it did not complete; `None` when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// The `task` tool offered with `sub_agents` (none without them).
pub fn task_spec(sub_agents: &[SubAgentSpec]) -> Option<ToolSpec> {
    if sub_agents.is_empty() {
        return None;
    }
    let listing: Vec<String> = sub_agents
        .iter()
        .map(|sub_agent| match &sub_agent.description {
            Some(description) => format!("- {}: {}", sub_agent.name, description.trim()),
            None => format!("- {}", sub_agent.name),
        })
        .collect();
    let names: Vec<&str> = sub_agents.iter().map(|s| s.name.as_str()).collect();
    Some(ToolSpec {
        name: TASK_TOOL.into(),
        description: format!(
            "Hand a task to a sub-agent. It works in the same workspace with its own \
             instructions and tools, sees nothing of this conversation but the description you \
             give, and returns only its final answer. Several task calls in one turn run at the \
             same time. Sub-agents:\n{}",
            listing.join("\n")
        ),
        parameters: json!({
            "type": "object",
            "properties": {
                "subagent": {"type": "string", "enum": names, "description": "Which sub-agent"},
                "description": {
                    "type": "string",
                    "description": "The task, with everything the sub-agent needs to know"
                }
            },
            "required": ["subagent", "description"]
        }),
    })
}

/// The sub-agent and the task a `task` call asks for, or what the model did wrong (its
/// result then says so, and nothing runs).
pub fn parse(call: &ToolCall, sub_agents: &[SubAgentSpec]) -> Result<(String, String), String> {
    let names = || {
        sub_agents
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let field = |name: &str| call.arguments.get(name).and_then(Value::as_str);
    let Some(sub_agent) = field("subagent") else {
        return Err(format!(
            "Error: `task` needs `subagent` (one of: {}) and `description`",
            names()
        ));
    };
    if !sub_agents.iter().any(|s| s.name == sub_agent) {
        return Err(format!(
            "Error: there is no sub-agent `{sub_agent}`; use one of: {}",
            names()
        ));
    }
    match field("description").map(str::trim) {
        Some(description) if !description.is_empty() => {
            Ok((sub_agent.to_owned(), description.to_owned()))
        }
        _ => Err(
            "Error: `task` needs a `description`: the task, with everything the sub-agent needs \
             to know"
                .into(),
        ),
    }
}

/// The result the parent's model reads for a sub-agent's run.
pub fn result_text(outcome: &SubAgentOutcome, answer: Option<&str>) -> String {
    match (&outcome.failure, answer) {
        (Some(failure), _) => format!(
            "Error: the sub-agent `{}` did not finish ({}): {failure}",
            outcome.sub_agent, outcome.execution_id
        ),
        (None, Some(answer)) if !answer.trim().is_empty() => answer.to_owned(),
        (None, _) => format!(
            "The sub-agent `{}` finished without an answer.",
            outcome.sub_agent
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub_agents() -> Vec<SubAgentSpec> {
        vec![
            SubAgentSpec {
                name: "researcher".into(),
                description: Some("Finds facts.".into()),
                instructions: "Research.".into(),
                ..SubAgentSpec::default()
            },
            SubAgentSpec {
                name: "writer".into(),
                instructions: "Write.".into(),
                ..SubAgentSpec::default()
            },
        ]
    }

    fn call(arguments: Value) -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: TASK_TOOL.into(),
            arguments,
        }
    }

    #[test]
    fn the_tool_lists_the_sub_agents_and_only_exists_with_them() {
        assert!(task_spec(&[]).is_none());
        let spec = task_spec(&sub_agents()).unwrap();
        assert!(spec.description.contains("- researcher: Finds facts."));
        assert!(spec.description.contains("- writer"));
        assert_eq!(
            spec.parameters["properties"]["subagent"]["enum"],
            json!(["researcher", "writer"])
        );
    }

    #[test]
    fn a_call_names_a_sub_agent_and_a_task() {
        let subs = sub_agents();
        assert_eq!(
            parse(
                &call(json!({"subagent": "writer", "description": " a poem "})),
                &subs
            ),
            Ok(("writer".into(), "a poem".into()))
        );
        assert!(
            parse(
                &call(json!({"subagent": "painter", "description": "x"})),
                &subs
            )
            .unwrap_err()
            .contains("no sub-agent `painter`; use one of: researcher, writer")
        );
        assert!(
            parse(&call(json!({"description": "x"})), &subs)
                .unwrap_err()
                .contains("needs `subagent`")
        );
        assert!(
            parse(
                &call(json!({"subagent": "writer", "description": ""})),
                &subs
            )
            .unwrap_err()
            .contains("needs a `description`")
        );
    }

    #[test]
    fn results_say_how_the_run_ended() {
        let mut outcome = SubAgentOutcome {
            index: 0,
            sub_agent: "writer".into(),
            execution_id: "aex-1".into(),
            failure: None,
        };
        assert_eq!(result_text(&outcome, Some("done")), "done");
        assert!(result_text(&outcome, None).contains("without an answer"));
        outcome.failure = Some("exceeded 50 model turns".into());
        assert_eq!(
            result_text(&outcome, Some("ignored")),
            "Error: the sub-agent `writer` did not finish (aex-1): exceeded 50 model turns"
        );
    }
}
