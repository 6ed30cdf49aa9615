//! Tool calls that wait for a person's decision. The agent runner asks (`approval_requested`)
//! and holds the call; `DecideApprovals` hands the decision to the execution's workflow as the
//! Temporal update [`DECIDE_APPROVALS_UPDATE`], whose validator refuses a call that is not
//! waiting, and then records `approval_decided` under the key the runner would use, so a
//! decision the runner records too is stored once.
//!
//! The execution's status lists the calls that wait (`pendingApprovals`): [`fold_approval`]
//! adds one for each `approval_requested` and removes it at its `approval_decided`; a terminal
//! phase clears them (`lifecycle.rs`).

use crate::error::ServerError;
use crate::lifecycle::failure_reason;
use std::time::Duration;
use stigmer_proto::execution::{
    AgentExecutionStatus, ApprovalDecided, ApprovalDecision, DECIDE_APPROVALS_UPDATE, DecidedCall,
    ExecutionEvent, PendingApproval,
};
use stigmer_proto::executions::v1::DecideApprovalsRequest;
use stigmer_store::NewEvent;
use stigmer_temporal::temporalio_client::errors::WorkflowUpdateError;
use stigmer_temporal::temporalio_client::{
    Client, UntypedUpdate, UntypedWorkflow, WorkflowExecuteUpdateOptions,
};
use stigmer_temporal::temporalio_common::data_converters::RawValue;
use stigmer_temporal::temporalio_common::protos::temporal::api::common::v1::Payload;

/// How long a decision may take to reach the workflow: the update is answered only once an
/// agent runner has processed it, and after a runner died its runs wait 5 s on their sticky
/// queue before another runner may take them (then it replays them).
const DECISION_DEADLINE: Duration = Duration::from_secs(30);

/// The decision a request asks for, or INVALID_ARGUMENT: it names calls or asks for all of
/// them (one of the two), and carries a message only with a denial.
pub fn decision_of(request: &DecideApprovalsRequest) -> Result<ApprovalDecision, ServerError> {
    // Both, or neither.
    let names_calls = !request.call_ids.is_empty();
    if names_calls == request.all {
        return Err(ServerError::CallsOrAll);
    }
    if request.call_ids.iter().any(|id| id.trim().is_empty()) {
        return Err(ServerError::EmptyCallId);
    }
    let message = request.message.trim();
    if request.approve && !message.is_empty() {
        return Err(ServerError::MessageWithApproval);
    }
    Ok(ApprovalDecision {
        call_ids: request.call_ids.clone(),
        all: request.all,
        approve: request.approve,
        message: (!message.is_empty()).then(|| message.to_owned()),
    })
}

/// Sends `decision` to the workflow of `execution_id` and returns the calls it decided.
/// FAILED_PRECONDITION with the workflow's own message when it refuses (a call that does not
/// wait); UNAVAILABLE when no agent runner takes the decision in time.
pub async fn send_decision(
    client: &Client,
    execution_id: &str,
    decision: &ApprovalDecision,
) -> Result<Vec<DecidedCall>, ServerError> {
    let not_taken = |reason: String| ServerError::DecisionNotTaken {
        execution_id: execution_id.to_owned(),
        reason,
    };
    let payload = Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())]
            .into_iter()
            .collect(),
        data: serde_json::to_vec(decision).map_err(ServerError::Encode)?,
        ..Default::default()
    };
    let handle = client.get_workflow_handle::<UntypedWorkflow>(execution_id.to_owned());
    let update = handle.execute_update(
        UntypedUpdate::<UntypedWorkflow>::new(DECIDE_APPROVALS_UPDATE),
        RawValue {
            payloads: vec![payload],
        },
        WorkflowExecuteUpdateOptions::default(),
    );
    let output = match tokio::time::timeout(DECISION_DEADLINE, update).await {
        Err(_) => {
            return Err(not_taken(format!(
                "no answer within {} s",
                DECISION_DEADLINE.as_secs()
            )));
        }
        Ok(Err(WorkflowUpdateError::Failed(failure))) => {
            return Err(ServerError::DecisionRefused {
                reason: failure_reason(&failure),
            });
        }
        // The store said the execution runs, so its workflow ended a moment ago (its end is
        // being recorded): nothing of it waits any more.
        Ok(Err(WorkflowUpdateError::NotFound(status))) => {
            return Err(ServerError::DecisionRefused {
                reason: format!(
                    "execution {execution_id} has already ended ({}): no call of it waits for a \
                     decision",
                    status.message()
                ),
            });
        }
        Ok(Err(error)) => return Err(not_taken(error.to_string())),
        Ok(Ok(output)) => output,
    };
    let data = output
        .payloads
        .first()
        .map(|payload| payload.data.as_slice())
        .unwrap_or(b"[]");
    serde_json::from_slice(data).map_err(ServerError::Encode)
}

/// The key of a call's `approval_decided` event: the runner records a timeout under the same
/// key, so the store keeps one decision per call.
pub fn decided_key(turn: u32, call_id: &str) -> String {
    format!("approval.t{turn}.{call_id}")
}

/// The `approval_decided` events of the calls a person decided.
pub fn decided_events(decided: &[DecidedCall], decision: &ApprovalDecision) -> Vec<NewEvent> {
    decided
        .iter()
        .map(|call| {
            let (kind, data) = ExecutionEvent::from(ApprovalDecided {
                turn: call.turn,
                call_id: call.call_id.clone(),
                approved: decision.approve,
                message: decision.message.clone(),
                by: "user".into(),
                parent: None,
            })
            .into_wire();
            NewEvent {
                key: decided_key(call.turn, &call.call_id),
                kind,
                data,
            }
        })
        .collect()
}

/// Folds one event of an agent execution into its status' pending approvals; returns whether
/// the status changed. Calls are matched by turn and call id.
pub fn fold_approval(status: &mut AgentExecutionStatus, event: &ExecutionEvent) -> bool {
    match event {
        ExecutionEvent::ApprovalRequested(requested) => {
            let pending = &mut status.pending_approvals;
            if pending
                .iter()
                .any(|call| call.turn == requested.turn && call.call_id == requested.call_id)
            {
                return false;
            }
            pending.push(PendingApproval {
                turn: requested.turn,
                call_id: requested.call_id.clone(),
                name: requested.name.clone(),
                arguments: requested.arguments.clone(),
                reason: requested.reason.clone(),
                expires_at: requested.expires_at.clone(),
            });
            true
        }
        ExecutionEvent::ApprovalDecided(decided) => {
            let before = status.pending_approvals.len();
            status
                .pending_approvals
                .retain(|call| !(call.turn == decided.turn && call.call_id == decided.call_id));
            status.pending_approvals.len() != before
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stigmer_proto::execution::{ApprovalRequested, ExecutionPhase, PhaseChanged};
    use tonic::Code;

    fn request(
        call_ids: &[&str],
        all: bool,
        approve: bool,
        message: &str,
    ) -> DecideApprovalsRequest {
        DecideApprovalsRequest {
            execution_id: "aex-1".into(),
            call_ids: call_ids.iter().map(|id| id.to_string()).collect(),
            all,
            approve,
            message: message.into(),
        }
    }

    fn refusal(request: DecideApprovalsRequest) -> (Code, String) {
        let error = decision_of(&request).unwrap_err();
        (error.code(), error.to_string())
    }

    #[test]
    fn a_decision_names_calls_or_all_and_a_message_goes_with_a_denial() {
        let decision = decision_of(&request(&["call_1", "call-2"], false, true, "")).unwrap();
        assert_eq!(
            decision,
            ApprovalDecision {
                call_ids: vec!["call_1".into(), "call-2".into()],
                all: false,
                approve: true,
                message: None,
            }
        );
        let decision = decision_of(&request(&[], true, false, "  not now ")).unwrap();
        assert_eq!(decision.message.as_deref(), Some("not now"));
        assert!(decision.all && !decision.approve);
        // A blank message is none.
        assert_eq!(
            decision_of(&request(&["c"], false, false, "  "))
                .unwrap()
                .message,
            None
        );

        let calls_or_all = (
            Code::InvalidArgument,
            "name the calls to decide or ask for all of them (one of the two)".to_owned(),
        );
        assert_eq!(refusal(request(&[], false, true, "")), calls_or_all);
        assert_eq!(refusal(request(&["c"], true, true, "")), calls_or_all);
        assert_eq!(
            refusal(request(&["c"], false, true, "why")),
            (
                Code::InvalidArgument,
                "a message goes only with a denial".to_owned()
            )
        );
        assert_eq!(
            refusal(request(&[""], false, true, "")).0,
            Code::InvalidArgument
        );
    }

    fn requested(turn: u32, call_id: &str) -> ExecutionEvent {
        ApprovalRequested {
            turn,
            index: 0,
            call_id: call_id.into(),
            name: "execute".into(),
            arguments: json!({"command": "echo x"}),
            reason: "the agent's approval.tools lists execute".into(),
            expires_at: "2026-12-02T10:00:00.000Z".into(),
            parent: None,
        }
        .into()
    }

    fn decided(turn: u32, call_id: &str) -> ExecutionEvent {
        ApprovalDecided {
            turn,
            call_id: call_id.into(),
            approved: true,
            message: None,
            by: "user".into(),
            parent: None,
        }
        .into()
    }

    fn pending(status: &AgentExecutionStatus) -> Vec<(u32, &str)> {
        status
            .pending_approvals
            .iter()
            .map(|call| (call.turn, call.call_id.as_str()))
            .collect()
    }

    #[test]
    fn requests_are_listed_until_their_decision_matched_by_turn_and_call() {
        let mut status = AgentExecutionStatus::default();
        assert!(fold_approval(&mut status, &requested(1, "call_1")));
        assert!(fold_approval(&mut status, &requested(1, "call_2")));
        assert!(fold_approval(&mut status, &requested(2, "call_1")));
        // A repeated request (a retried step) is listed once.
        assert!(!fold_approval(&mut status, &requested(1, "call_1")));
        assert_eq!(
            pending(&status),
            [(1, "call_1"), (1, "call_2"), (2, "call_1")]
        );
        let listed = &status.pending_approvals[0];
        assert_eq!(listed.name, "execute");
        assert_eq!(listed.arguments, json!({"command": "echo x"}));
        assert_eq!(listed.expires_at, "2026-12-02T10:00:00.000Z");

        assert!(fold_approval(&mut status, &decided(1, "call_1")));
        assert_eq!(pending(&status), [(1, "call_2"), (2, "call_1")]);
        // A decision of no waiting call, and other events, change nothing.
        assert!(!fold_approval(&mut status, &decided(1, "call_1")));
        assert!(!fold_approval(&mut status, &decided(3, "call_2")));
        assert!(!fold_approval(
            &mut status,
            &PhaseChanged::new(ExecutionPhase::Waiting, None).into()
        ));
        assert_eq!(pending(&status), [(1, "call_2"), (2, "call_1")]);

        // The list goes to the status' JSON as `pendingApprovals` and reads back.
        let value = status.to_value();
        assert_eq!(value["pendingApprovals"][0]["callId"], "call_2");
        assert_eq!(AgentExecutionStatus::from_value(Some(&value)), status);
    }

    #[test]
    fn a_decision_is_recorded_under_the_key_the_runner_uses() {
        let decision = ApprovalDecision {
            call_ids: vec![],
            all: true,
            approve: false,
            message: Some("not now".into()),
        };
        let events = decided_events(
            &[
                DecidedCall {
                    turn: 2,
                    call_id: "call_9".into(),
                },
                DecidedCall {
                    turn: 2,
                    call_id: "call-1".into(),
                },
            ],
            &decision,
        );
        let keys: Vec<&str> = events.iter().map(|event| event.key.as_str()).collect();
        assert_eq!(keys, ["approval.t2.call_9", "approval.t2.call-1"]);
        assert_eq!(events[0].kind, "approval_decided");
        assert_eq!(
            events[0].data,
            json!({"turn": 2, "call_id": "call_9", "approved": false, "message": "not now", "by": "user"})
        );
    }
}
