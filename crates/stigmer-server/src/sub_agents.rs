//! Sub-agent runs: agent executions that an agent execution's `task` call creates.
//!
//! A sub-agent run is an AgentExecution of the parent's agent with `spec.subAgent` set, in the
//! parent's session (its workspace), with the parent's variables and secrets. Its steps see
//! the sub-agent as their agent ([`sub_agent_resource`]: its own instructions, model, tools,
//! MCP servers and skills, and no sub-agents of its own) and only its own messages. The
//! parent's runner starts it as a child workflow; the parent's status lists it
//! ([`fold_started`], then [`record_end`] when it ends).

use crate::error::ServerError;
use crate::lifecycle::find_execution;
use serde_json::Value;
use stigmer_proto::execution::{
    AgentExecutionSpec, AgentExecutionStatus, ExecutionEvent, ExecutionPhase, SubAgentRun,
};
use stigmer_resources::{AgentSpec, Resource, SubAgentSpec};
use stigmer_store::Store;

/// The agent a sub-agent run's steps see: the sub-agent `name` of `agent` (its instructions,
/// model, tools, MCP servers and skills), with the agent's variables and turn limit.
pub fn sub_agent_resource(agent: &Resource, name: &str) -> Result<Resource, ServerError> {
    let spec: AgentSpec =
        serde_json::from_value(agent.spec.clone()).map_err(|_| ServerError::UnknownSubAgent {
            agent: agent.metadata.name.clone(),
            sub_agent: name.to_owned(),
            known: Vec::new(),
        })?;
    let sub_agent = find(&spec, &agent.metadata.name, name)?;
    let own = AgentSpec {
        description: sub_agent.description.clone(),
        instructions: sub_agent.instructions.clone(),
        model: sub_agent.model.clone(),
        tools: sub_agent.tools.clone(),
        mcp_servers: sub_agent.mcp_servers.clone(),
        skills: sub_agent.skills.clone(),
        env: spec.env.clone(),
        max_turns: spec.max_turns,
        // The agent's approval rules hold for its sub-agents too: a call its `server__*`
        // entry guards waits for a decision whoever makes it.
        approval: spec.approval.clone(),
        ..AgentSpec::default()
    };
    Ok(Resource {
        spec: serde_json::to_value(own).unwrap_or(Value::Null),
        ..agent.clone()
    })
}

/// The sub-agent `name` of the agent `agent` declares, or INVALID_ARGUMENT naming those it has.
pub fn find<'a>(
    spec: &'a AgentSpec,
    agent: &str,
    name: &str,
) -> Result<&'a SubAgentSpec, ServerError> {
    spec.sub_agents
        .iter()
        .find(|sub_agent| sub_agent.name == name)
        .ok_or_else(|| ServerError::UnknownSubAgent {
            agent: agent.to_owned(),
            sub_agent: name.to_owned(),
            known: spec.sub_agents.iter().map(|s| s.name.clone()).collect(),
        })
}

/// Whether an execution is a sub-agent run (its messages belong to no later run of the
/// session).
pub fn is_sub_agent_run(execution: &Resource) -> bool {
    execution
        .spec
        .get("subAgent")
        .is_some_and(|name| !name.is_null())
}

/// Adds the run a `subagent_started` event names to the parent's status; true when it changed.
pub fn fold_started(status: &mut AgentExecutionStatus, event: &ExecutionEvent, at: &str) -> bool {
    let ExecutionEvent::SubAgentStarted(started) = event else {
        return false;
    };
    if status
        .sub_agents
        .iter()
        .any(|run| run.execution_id == started.execution_id)
    {
        return false;
    }
    status.sub_agents.push(SubAgentRun {
        call_id: started.call_id.clone(),
        name: started.name.clone(),
        execution_id: started.execution_id.clone(),
        phase: ExecutionPhase::Running,
        started_at: Some(at.to_owned()),
        ..SubAgentRun::default()
    });
    true
}

/// A sub-agent run reached `phase`: its entry in the parent's status says so, with its answer
/// (its last message) when it completed. Nothing for an execution that is no sub-agent run.
pub fn record_end(
    store: &dyn Store,
    child: &Resource,
    phase: ExecutionPhase,
    reason: Option<&str>,
    now: &str,
) -> Result<(), ServerError> {
    if !phase.is_terminal() || !is_sub_agent_run(child) {
        return Ok(());
    }
    let Ok(spec) = AgentExecutionSpec::from_value(&child.spec) else {
        return Ok(());
    };
    let Some(parent_id) = spec
        .parent
        .as_ref()
        .map(|parent| parent.execution_id.clone())
    else {
        return Ok(());
    };
    let Some(mut parent) = find_execution(store, &parent_id)? else {
        return Ok(());
    };
    let mut status = AgentExecutionStatus::from_value(parent.status.as_ref());
    let answer = (phase == ExecutionPhase::Completed)
        .then(|| last_answer(store, &child.metadata.name))
        .transpose()?
        .flatten();
    let child_id = &child.metadata.name;
    let run = match status
        .sub_agents
        .iter_mut()
        .find(|run| &run.execution_id == child_id)
    {
        Some(run) => run,
        None => {
            // Its start was not folded yet (the event comes in the same moment): list it now.
            status.sub_agents.push(SubAgentRun {
                call_id: spec.parent_task_or_default(),
                name: spec.sub_agent.clone().unwrap_or_default(),
                execution_id: child_id.clone(),
                ..SubAgentRun::default()
            });
            status.sub_agents.last_mut().expect("just pushed")
        }
    };
    run.phase = phase;
    run.finished_at = Some(now.to_owned());
    run.answer = answer;
    run.reason = reason.map(str::to_owned);
    parent.status = Some(status.to_value());
    store.put_all(&[parent])?;
    Ok(())
}

/// The text of an execution's last answer.
fn last_answer(store: &dyn Store, execution_id: &str) -> Result<Option<String>, ServerError> {
    let messages = store.execution_messages(
        execution_id,
        stigmer_store::MessagePlace::new(0, 0),
        stigmer_store::MessagePlace::end_of(u32::MAX),
    )?;
    Ok(messages.iter().rev().find_map(|message| {
        (message.data["role"] == "assistant")
            .then(|| message.data["text"].as_str().map(str::to_owned))
            .flatten()
            .filter(|text| !text.trim().is_empty())
    }))
}

trait ParentTask {
    fn parent_task_or_default(&self) -> String;
}

impl ParentTask for AgentExecutionSpec {
    fn parent_task_or_default(&self) -> String {
        self.parent
            .as_ref()
            .map(|parent| parent.task.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stigmer_proto::execution::SubAgentStarted;
    use stigmer_resources::{API_VERSION, Kind, Metadata};

    fn lead() -> Resource {
        Resource {
            api_version: API_VERSION.into(),
            kind: Kind::Agent,
            metadata: Metadata {
                name: "lead".into(),
                ..Metadata::default()
            },
            spec: json!({
                "instructions": "Lead.",
                "maxTurns": 7,
                "mcpServers": ["github"],
                "env": {"TOKEN": {"secret": true}},
                "approval": {"tools": ["github__*"]},
                "subAgents": [{
                    "name": "researcher",
                    "instructions": "Research.",
                    "skills": ["notes"],
                    "model": {"name": "small"}
                }]
            }),
            status: None,
        }
    }

    #[test]
    fn a_sub_agent_runs_as_its_own_agent_with_the_parents_variables() {
        let resource = sub_agent_resource(&lead(), "researcher").unwrap();
        let spec: AgentSpec = serde_json::from_value(resource.spec).unwrap();
        assert_eq!(spec.instructions, "Research.");
        assert_eq!(spec.skills, ["notes"]);
        assert!(spec.mcp_servers.is_empty(), "not the parent's servers");
        assert!(spec.sub_agents.is_empty(), "no sub-agents of its own");
        assert_eq!(spec.max_turns, Some(7));
        assert!(spec.env.contains_key("TOKEN"));
        assert_eq!(
            spec.approval.unwrap().tools,
            ["github__*"],
            "the agent's rules hold"
        );
        assert_eq!(spec.model.unwrap().name.as_deref(), Some("small"));
        assert_eq!(resource.metadata.name, "lead");
    }

    #[test]
    fn an_unknown_sub_agent_names_the_known_ones() {
        let error = sub_agent_resource(&lead(), "painter").unwrap_err();
        assert_eq!(
            error.to_string(),
            "agent 'lead' has no sub-agent 'painter'; it declares researcher"
        );
    }

    #[test]
    fn a_started_sub_agent_is_listed_once() {
        let mut status = AgentExecutionStatus::default();
        let event: ExecutionEvent = SubAgentStarted {
            turn: 1,
            call_id: "c1".into(),
            name: "researcher".into(),
            execution_id: "aex-2".into(),
            parent: None,
        }
        .into();
        assert!(fold_started(
            &mut status,
            &event,
            "2026-12-01T00:00:00.000Z"
        ));
        assert!(!fold_started(
            &mut status,
            &event,
            "2026-12-01T00:00:01.000Z"
        ));
        assert_eq!(status.sub_agents.len(), 1);
        assert_eq!(status.sub_agents[0].phase, ExecutionPhase::Running);
    }
}
