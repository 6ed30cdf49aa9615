//! Tool calls waiting for approval through the API: the status lists them from the runner's
//! events until they are decided or the run ends, and `DecideApprovals` checks its arguments
//! before it asks Temporal anything.

use super::*;
use serde_json::{Value, json};
use stigmer_proto::execution::{ApprovalDecided, ApprovalRequested};
use stigmer_proto::executions::v1::{DecideApprovalsRequest, GetExecutionRequest};
use stigmer_resources::{API_VERSION, Kind, Metadata, Resource};

fn requested(turn: u32, call_id: &str) -> NewEvent {
    ExecutionEvent::from(ApprovalRequested {
        turn,
        index: 0,
        call_id: call_id.into(),
        name: "execute".into(),
        arguments: json!({"command": "echo x >> count.txt"}),
        reason: "the agent's approval.tools lists execute".into(),
        expires_at: "2030-01-01T00:10:00.000Z".into(),
        parent: None,
    })
    .to_new_event(format!("approval.request.t{turn}.{call_id}"))
}

fn decided(turn: u32, call_id: &str, by: &str) -> NewEvent {
    ExecutionEvent::from(ApprovalDecided {
        turn,
        call_id: call_id.into(),
        approved: false,
        message: Some("approval timed out".into()),
        by: by.into(),
        parent: None,
    })
    .to_new_event(format!("approval.t{turn}.{call_id}"))
}

fn phase(phase: ExecutionPhase, key: &str) -> NewEvent {
    ExecutionEvent::from(PhaseChanged::new(phase, None)).to_new_event(key)
}

async fn pending(client: &mut Client, execution_id: &str) -> Vec<(u64, String)> {
    let got = client
        .get_execution(GetExecutionRequest {
            execution_id: execution_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let execution: Value = serde_json::from_str(&got.execution_json).unwrap();
    execution["status"]["pendingApprovals"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|call| {
                    (
                        call["turn"].as_u64().unwrap(),
                        call["callId"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_status_lists_calls_that_wait_until_decided_or_ended() {
    let server = server().await;
    let mut client = client(&server).await;
    append(
        &mut client,
        "aex-1",
        vec![
            phase(ExecutionPhase::Running, "running"),
            requested(1, "call_1"),
            requested(1, "call_2"),
            phase(ExecutionPhase::Waiting, "waiting"),
        ],
    )
    .await;
    assert_eq!(
        pending(&mut client, "aex-1").await,
        [(1, "call_1".to_owned()), (1, "call_2".to_owned())]
    );
    // The whole call is listed, as the runner asked.
    let got = client
        .get_execution(GetExecutionRequest {
            execution_id: "aex-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let execution: Value = serde_json::from_str(&got.execution_json).unwrap();
    assert_eq!(execution["status"]["phase"], "waiting");
    assert_eq!(
        execution["status"]["pendingApprovals"][0],
        json!({
            "turn": 1,
            "callId": "call_1",
            "name": "execute",
            "arguments": {"command": "echo x >> count.txt"},
            "reason": "the agent's approval.tools lists execute",
            "expiresAt": "2030-01-01T00:10:00.000Z",
        })
    );
    // A retried request is listed once; a decision removes its call only.
    append(
        &mut client,
        "aex-1",
        vec![requested(1, "call_1"), decided(1, "call_1", "timeout")],
    )
    .await;
    assert_eq!(
        pending(&mut client, "aex-1").await,
        [(1, "call_2".to_owned())]
    );
    // The end of the run leaves nothing waiting.
    append(&mut client, "aex-1", vec![terminal("end")]).await;
    assert_eq!(pending(&mut client, "aex-1").await, []);
}

/// A workflow execution, `wex-1`, besides the agent fixtures: decisions are for agent runs.
async fn server_with_a_workflow_execution() -> Server {
    let execution = Resource {
        api_version: API_VERSION.into(),
        kind: Kind::WorkflowExecution,
        metadata: Metadata {
            name: "wex-1".into(),
            id: Some("wex-1".into()),
            ..Default::default()
        },
        spec: json!({"workflow": "fetch", "definition": {"do": []}, "input": {}}),
        status: Some(json!({"phase": "running"})),
    };
    server_with_resources(None, vec![execution]).await
}

fn decide(
    execution_id: &str,
    call_ids: &[&str],
    all: bool,
    approve: bool,
) -> DecideApprovalsRequest {
    DecideApprovalsRequest {
        execution_id: execution_id.into(),
        call_ids: call_ids.iter().map(|id| id.to_string()).collect(),
        all,
        approve,
        message: String::new(),
    }
}

#[tokio::test]
async fn a_decision_is_checked_before_it_goes_to_the_workflow() {
    let server = server_with_a_workflow_execution().await;
    let mut client = client(&server).await;
    append(&mut client, "aex-2", vec![terminal("end")]).await;
    let refused = |request: DecideApprovalsRequest| {
        let mut client = client.clone();
        async move {
            let status = client.decide_approvals(request).await.unwrap_err();
            (status.code(), status.message().to_owned())
        }
    };
    use tonic::Code;
    assert_eq!(
        refused(decide("aex-none", &["c"], false, true)).await,
        (
            Code::NotFound,
            "execution \"aex-none\" not found".to_owned()
        )
    );
    assert_eq!(
        refused(decide("", &["c"], false, true)).await.0,
        Code::InvalidArgument
    );
    assert_eq!(
        refused(decide("wex-1", &["c"], false, true)).await,
        (
            Code::InvalidArgument,
            "execution \"wex-1\" is not an agent execution".to_owned()
        )
    );
    assert_eq!(
        refused(decide("aex-2", &["c"], false, true)).await,
        (
            Code::FailedPrecondition,
            "execution \"aex-2\" already ended (completed)".to_owned()
        )
    );
    let calls_or_all = (
        Code::InvalidArgument,
        "name the calls to decide or ask for all of them (one of the two)".to_owned(),
    );
    assert_eq!(
        refused(decide("aex-1", &[], false, true)).await,
        calls_or_all
    );
    assert_eq!(
        refused(decide("aex-1", &["c"], true, false)).await,
        calls_or_all
    );
    let mut with_message = decide("aex-1", &["c"], false, true);
    with_message.message = "why".into();
    assert_eq!(
        refused(with_message).await,
        (
            Code::InvalidArgument,
            "a message goes only with a denial".to_owned()
        )
    );
    // A valid decision needs the workflow, through Temporal.
    let mut denial = decide("aex-1", &[], true, false);
    denial.message = "not now".into();
    assert_eq!(refused(denial).await.0, Code::Unavailable);
}
