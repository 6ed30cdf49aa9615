//! Workflow executions through the API: creation (the definition snapshotted, the input parsed,
//! secrets by name only), the runner's result, and the RPCs both kinds share.

use super::*;
use serde_json::{Value, json};
use stigmer_proto::execution::{
    AgentCallStarted, ExecutionKind, TaskCompleted, TaskStarted, WORKFLOW_WORKFLOW,
    WorkflowRunInput,
};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, CreateExecutionRequest, GetExecutionRequest, GetRunContextRequest,
    ListExecutionsRequest, SetWorkflowResultRequest,
};
use stigmer_resources::{API_VERSION, Kind, Metadata, Resource};

/// The Workflow `fetch`, as applied.
fn fetch_workflow() -> Resource {
    Resource {
        api_version: API_VERSION.into(),
        kind: Kind::Workflow,
        metadata: Metadata {
            name: "fetch".into(),
            id: Some("wfl-fetch".into()),
            ..Default::default()
        },
        spec: json!({"tasks": [{"name": "greet", "set": {"greeting": "hi"}}]}),
        status: None,
    }
}

/// A workflow execution as the store holds it, in `phase`.
fn workflow_execution(id: &str, phase: &str) -> Resource {
    Resource {
        api_version: API_VERSION.into(),
        kind: Kind::WorkflowExecution,
        metadata: Metadata {
            name: id.into(),
            id: Some(id.into()),
            created_at: Some("2030-01-01T00:00:00.000Z".into()),
            ..Default::default()
        },
        spec: json!({"workflow": "fetch", "definition": {"do": []}, "input": {}}),
        status: Some(json!({"phase": phase})),
    }
}

/// A server with the Workflow `fetch` and the workflow executions `wex-1` (pending) and
/// `wex-2` (completed), besides the agent fixtures.
async fn workflow_server(temporal: Option<stigmer_server::TemporalTarget>) -> Server {
    server_with_resources(
        temporal,
        vec![
            fetch_workflow(),
            workflow_execution("wex-1", "pending"),
            workflow_execution("wex-2", "completed"),
        ],
    )
    .await
}

fn run(workflow: &str, input_json: &str) -> CreateExecutionRequest {
    CreateExecutionRequest {
        workflow: workflow.into(),
        input_json: input_json.into(),
        ..Default::default()
    }
}

async fn get(client: &mut Client, execution_id: &str) -> Value {
    let got = client
        .get_execution(GetExecutionRequest {
            execution_id: execution_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&got.execution_json).unwrap()
}

fn result(execution_id: &str, output_json: &str, error_json: &str) -> SetWorkflowResultRequest {
    SetWorkflowResultRequest {
        execution_id: execution_id.into(),
        output_json: output_json.into(),
        error_json: error_json.into(),
    }
}

#[tokio::test]
async fn bad_creations_are_refused_before_anything_is_stored() {
    // No Temporal: every refusal below comes before the server would need it.
    let server = workflow_server(None).await;
    let mut client = client(&server).await;
    let code_and_message = |status: tonic::Status| (status.code(), status.message().to_owned());

    let unknown = client.create_execution(run("fetc", "")).await.unwrap_err();
    assert_eq!(
        code_and_message(unknown),
        (
            tonic::Code::NotFound,
            "workflow 'fetc' not found (did you mean \"fetch\"?); apply it with `stigmer apply -f FILE`"
                .into()
        )
    );
    let not_json = client
        .create_execution(run("fetch", "{city: Paris}"))
        .await
        .unwrap_err();
    assert_eq!(not_json.code(), tonic::Code::InvalidArgument);
    assert!(
        not_json.message().starts_with("the input is not JSON: "),
        "{not_json:?}"
    );
    let both = CreateExecutionRequest {
        agent: "hello".into(),
        message: "hi".into(),
        ..run("fetch", "")
    };
    let neither = CreateExecutionRequest::default();
    for request in [both, neither] {
        let status = client.create_execution(request).await.unwrap_err();
        assert_eq!(
            code_and_message(status),
            (
                tonic::Code::InvalidArgument,
                "an execution runs an agent or a workflow: set exactly one of `agent` and `workflow`"
                    .into()
            )
        );
    }
    let with_message = CreateExecutionRequest {
        message: "hi".into(),
        ..run("fetch", "")
    };
    let status = client.create_execution(with_message).await.unwrap_err();
    assert_eq!(
        code_and_message(status),
        (
            tonic::Code::InvalidArgument,
            "`message` does not apply to workflow executions".into()
        )
    );
    let agent_with_input = CreateExecutionRequest {
        input_json: "{}".into(),
        ..create("hello")
    };
    let status = client.create_execution(agent_with_input).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // An agent run of a workflow's task needs a running workflow execution as its parent.
    for (parent, task, code) in [
        ("", "/do/0/ask", tonic::Code::InvalidArgument),
        ("aex-1", "/do/0/ask", tonic::Code::InvalidArgument),
        ("wex-none", "/do/0/ask", tonic::Code::NotFound),
        ("wex-2", "/do/0/ask", tonic::Code::FailedPrecondition),
    ] {
        let request = CreateExecutionRequest {
            parent_execution_id: parent.into(),
            parent_task: task.into(),
            ..create("hello")
        };
        let status = client.create_execution(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{parent}: {status:?}");
    }
    // Nothing new was stored.
    let listed = client
        .list_executions(ListExecutionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.executions_json.len(), 6, "only the fixtures");
}

#[tokio::test]
async fn get_list_cancel_append_and_subscribe_serve_both_kinds() {
    let server = workflow_server(None).await;
    let mut api = clients(&server).await;
    let mut client = api.executions.clone();
    assert_eq!(get(&mut client, "wex-1").await["kind"], "WorkflowExecution");
    assert_eq!(get(&mut client, "aex-1").await["kind"], "AgentExecution");
    let missing = client
        .get_execution(GetExecutionRequest {
            execution_id: "wex-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let ids = |executions: &[Value]| -> Vec<String> {
        let mut ids: Vec<String> = executions
            .iter()
            .map(|execution| execution["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let workflows = api
        .list_executions(Some(ExecutionKind::Workflow))
        .await
        .unwrap();
    assert_eq!(ids(&workflows), ["wex-1", "wex-2"]);
    let agents = api
        .list_executions(Some(ExecutionKind::Agent))
        .await
        .unwrap();
    assert_eq!(ids(&agents), ["aex-1", "aex-2", "aex-3", "aex-4"]);
    let all = api.list_executions(None).await.unwrap();
    assert_eq!(all.len(), 6);
    let unknown = client
        .list_executions(ListExecutionsRequest {
            kind: "robot".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.code(), unknown.message()),
        (
            tonic::Code::InvalidArgument,
            "unknown execution kind \"robot\": use agent or workflow"
        )
    );

    // Cancel reaches the workflow execution's Temporal workflow (none is configured here),
    // and refuses one that ended.
    let cancel = |id: &str| CancelExecutionRequest {
        execution_id: id.into(),
    };
    let status = client.cancel_execution(cancel("wex-1")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let status = client.cancel_execution(cancel("wex-2")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");

    // The runner's task events and phases go into a workflow execution's log.
    let started = ExecutionEvent::from(TaskStarted {
        reference: "/do/0/greet".into(),
        name: "greet".into(),
        parent: None,
    });
    let agent_call = ExecutionEvent::from(AgentCallStarted {
        reference: "/do/1/ask".into(),
        name: "ask".into(),
        execution_id: "aex-3".into(),
        parent: None,
    });
    let completed = ExecutionEvent::from(TaskCompleted {
        reference: "/do/0/greet".into(),
        name: "greet".into(),
        output: json!({"greeting": "hi"}),
        parent: None,
    });
    let waiting = ExecutionEvent::from(PhaseChanged::new(ExecutionPhase::Waiting, None));
    append(
        &mut client,
        "wex-1",
        vec![
            started.to_new_event("t0"),
            agent_call.to_new_event("t1"),
            completed.to_new_event("t2"),
            waiting.to_new_event("w"),
        ],
    )
    .await;
    assert_eq!(
        get(&mut client, "wex-1").await["status"]["phase"],
        "waiting"
    );
    client
        .set_workflow_result(result("wex-1", r#"{"greeting":"hi"}"#, ""))
        .await
        .unwrap();
    let mut stream = client
        .subscribe(SubscribeRequest {
            execution_id: "wex-1".into(),
            after_seq: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.message().await.unwrap() {
            events.push(event.event());
        }
    })
    .await
    .expect("the subscription did not end");
    assert_eq!(
        events,
        [
            started,
            agent_call,
            completed,
            waiting,
            PhaseChanged::new(ExecutionPhase::Completed, None).into()
        ]
    );
}

#[tokio::test]
async fn the_runners_result_ends_a_workflow_execution_once() {
    let server = workflow_server(None).await;
    let mut client = client(&server).await;
    // A fault: the error is stored, the reason is its detail on one line.
    let error = json!({
        "type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication",
        "status": 503,
        "title": "Service unavailable",
        "detail": "GET https://example.com answered 503\n  after 3 attempts",
        "instance": "/do/0/fetch",
    });
    client
        .set_workflow_result(result("wex-1", "", &error.to_string()))
        .await
        .unwrap();
    let ended = get(&mut client, "wex-1").await;
    assert_eq!(ended["status"]["phase"], "failed");
    assert_eq!(
        ended["status"]["reason"],
        "GET https://example.com answered 503 after 3 attempts"
    );
    assert_eq!(ended["status"]["error"], error);
    assert!(ended["status"].get("output").is_none());
    assert!(ended["status"]["finishedAt"].is_string());
    // Idempotent: a retried last step changes nothing.
    client
        .set_workflow_result(result("wex-1", "{\"late\":true}", ""))
        .await
        .unwrap();
    assert_eq!(get(&mut client, "wex-1").await, ended);
    let log = collect(&mut client, "wex-1", 0).await;
    assert_eq!(log.len(), 1, "one phase change: {log:?}");

    // Exactly one of output and error, as JSON, for a workflow execution that exists.
    for (request, code) in [
        (result("wex-1", "", ""), tonic::Code::InvalidArgument),
        (result("wex-1", "{}", "{}"), tonic::Code::InvalidArgument),
        (result("wex-1", "{oops", ""), tonic::Code::InvalidArgument),
        (result("aex-1", "{}", ""), tonic::Code::InvalidArgument),
        (result("wex-none", "{}", ""), tonic::Code::NotFound),
        (result("", "{}", ""), tonic::Code::InvalidArgument),
    ] {
        let status = client.set_workflow_result(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    // The agent's RPCs are not a workflow execution's, and the other way round.
    let status = client
        .save_tool_snapshot(stigmer_proto::executions::v1::SaveToolSnapshotRequest {
            execution_id: "wex-1".into(),
            snapshot_json: "{}".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            tonic::Code::InvalidArgument,
            "execution \"wex-1\" is not an agent execution"
        )
    );
}

#[tokio::test]
async fn a_workflow_execution_snapshots_its_definition_and_keeps_secrets_out() {
    let temporal = stigmer_test::ExternalTemporal::start();
    let server = workflow_server(target(temporal.address.clone(), Duration::from_secs(30))).await;
    let mut api = clients(&server).await;
    let mut client = api.executions.clone();
    let variables = stigmer_client::executions::RunVariables {
        env: [("REGION".to_owned(), "eu".to_owned())].into(),
        secrets: [("TOKEN".to_owned(), "hunter2-long".to_owned())].into(),
        environments: Vec::new(),
    };
    let created = api
        .create_workflow_execution(
            "fetch",
            &json!({"city": "Paris", "auth": "Bearer hunter2-long"}),
            variables,
        )
        .await
        .unwrap();
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wex-"), "{id}");
    assert_eq!(created["kind"], "WorkflowExecution");
    assert_eq!(created["status"]["phase"], "pending");
    let spec = &created["spec"];
    assert_eq!(spec["workflow"], "fetch");
    assert_eq!(
        spec["input"],
        json!({"city": "Paris", "auth": "Bearer ****"})
    );
    assert_eq!(spec["env"], json!({"REGION": "eu"}));
    assert_eq!(spec["secretNames"], json!(["TOKEN"]));
    // The whole DSL document, as built from the Workflow.
    assert_eq!(spec["definition"]["document"]["name"], "fetch");
    assert!(spec["definition"]["document"]["dsl"].is_string(), "{spec}");
    assert_eq!(
        spec["definition"],
        stigmer_resources::workflow_document(&fetch_workflow())
    );
    let stored = get(&mut client, &id).await;
    assert!(!stored.to_string().contains("hunter2"), "{stored}");

    // The runner's activities get the execution and the run's secrets, nothing else.
    let context = client
        .get_run_context(GetRunContextRequest {
            execution_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let execution: Value = serde_json::from_str(&context.execution_json).unwrap();
    assert_eq!(execution["metadata"]["name"], id.as_str());
    assert_eq!(
        context.secrets.get("TOKEN").map(String::as_str),
        Some("hunter2-long")
    );
    assert!(context.agent_json.is_empty() && context.messages_json.is_empty());

    // Its Temporal workflow runs with the run input, which holds no secret value.
    let connection = stigmer_temporal::connect(&temporal.address, "test")
        .await
        .unwrap();
    let temporal_client = stigmer_temporal::client(connection, "default").unwrap();
    let events = temporal_client
        .get_workflow_handle::<stigmer_temporal::temporalio_client::UntypedWorkflow>(id.clone())
        .fetch_history(Default::default())
        .into_events()
        .await
        .unwrap();
    use stigmer_temporal::temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) =
        events[0].attributes.clone()
    else {
        panic!("the history does not begin with the start: {events:?}");
    };
    assert_eq!(started.workflow_type.unwrap().name, WORKFLOW_WORKFLOW);
    assert_eq!(
        started.task_queue.unwrap().name,
        "workflow_execution_runner"
    );
    let payloads = started.input.unwrap().payloads;
    assert_eq!(payloads.len(), 1);
    let run_input: WorkflowRunInput = serde_json::from_slice(&payloads[0].data).unwrap();
    assert_eq!(
        run_input,
        WorkflowRunInput {
            execution_id: id.clone(),
            definition: spec["definition"].clone(),
            input: json!({"city": "Paris", "auth": "Bearer ****"}),
            secret_names: vec!["TOKEN".into()],
        }
    );

    // An agent run of one of its tasks: created and watched, but started by the workflow
    // runner (here: never), so it waits as long as its parent runs.
    let child = api
        .create_agent_call(stigmer_client::executions::AgentCall {
            agent: "hello".into(),
            message: "hi".into(),
            parent_execution_id: id.clone(),
            parent_task: "/do/0/ask".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let child_id = child["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(
        child["spec"]["parent"],
        json!({"executionId": id, "task": "/do/0/ask"})
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        get(&mut client, &child_id).await["status"]["phase"],
        "pending"
    );

    // A workflow run of one of its tasks (`run: workflow`): the same, with the parent's
    // secrets; a namespace or version the Workflow does not have is NOT_FOUND.
    let child_run = |namespace: &str, version: &str| CreateExecutionRequest {
        parent_execution_id: id.clone(),
        parent_task: "/do/1/child".into(),
        workflow_namespace: namespace.into(),
        workflow_version: version.into(),
        ..run("fetch", r#"{"city": "Lyon"}"#)
    };
    for (namespace, version) in [("shop", "latest"), ("default", "9.9.9")] {
        let status = client
            .create_execution(child_run(namespace, version))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    }
    let reply = client
        .create_execution(child_run("default", "latest"))
        .await
        .unwrap()
        .into_inner();
    let workflow_child: Value = serde_json::from_str(&reply.execution_json).unwrap();
    let workflow_child_id = workflow_child["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        workflow_child["spec"]["parent"],
        json!({"executionId": id, "task": "/do/1/child"})
    );
    assert_eq!(workflow_child["spec"]["secretNames"], json!(["TOKEN"]));
    let context = client
        .get_run_context(GetRunContextRequest {
            execution_id: workflow_child_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        context.secrets.get("TOKEN").map(String::as_str),
        Some("hunter2-long")
    );
    // Not started by the server: the parent's runner starts it as a child workflow.
    let history = temporal_client
        .get_workflow_handle::<stigmer_temporal::temporalio_client::UntypedWorkflow>(
            workflow_child_id.clone(),
        )
        .fetch_history(Default::default())
        .into_events()
        .await;
    assert!(history.is_err(), "{history:?}");

    // The runner's last step: the output is stored without secret values.
    api.set_workflow_result(&id, Ok(&json!({"echo": "hunter2-long"})))
        .await
        .unwrap();
    let ended = get(&mut client, &id).await;
    assert_eq!(ended["status"]["phase"], "completed");
    assert_eq!(ended["status"]["output"], json!({"echo": "****"}));
    // Once its parent ended, the agent run that never started fails with the reason.
    let seen = collect(&mut client, &child_id, 0).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let child = get(&mut client, &child_id).await;
    assert_eq!(child["status"]["phase"], "failed");
    assert_eq!(
        child["status"]["reason"],
        format!("its workflow execution {id} ended before starting this agent run")
    );
    let seen = collect(&mut client, &workflow_child_id, 0).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let workflow_child = get(&mut client, &workflow_child_id).await;
    assert_eq!(workflow_child["status"]["phase"], "failed");
    assert_eq!(
        workflow_child["status"]["reason"],
        format!("its workflow execution {id} ended before starting this workflow run")
    );
}

#[tokio::test]
async fn runners_keep_an_executions_state_by_key_while_it_runs() {
    use stigmer_proto::executions::v1::{GetExecutionStateRequest, PutExecutionStateRequest};
    let server = workflow_server(None).await;
    let mut client = client(&server).await;
    let put = |execution_id: &str, key: &str, value_json: &str| PutExecutionStateRequest {
        execution_id: execution_id.into(),
        key: key.into(),
        value_json: value_json.into(),
    };
    let get = |execution_id: &str, key: &str| GetExecutionStateRequest {
        execution_id: execution_id.into(),
        key: key.into(),
    };
    let missing = client
        .get_execution_state(get("wex-1", "http/do/0/send#1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!missing.found);
    for value in [r#"{"state":"sending"}"#, r#"{"state":"done","status":201}"#] {
        client
            .put_execution_state(put("wex-1", "http/do/0/send#1", value))
            .await
            .unwrap();
    }
    let found = client
        .get_execution_state(get("wex-1", "http/do/0/send#1"))
        .await
        .unwrap()
        .into_inner();
    assert!(found.found);
    assert_eq!(
        serde_json::from_str::<Value>(&found.value_json).unwrap(),
        json!({"state": "done", "status": 201})
    );
    // The server's own state (an agent's tool snapshot under "tools") is out of reach.
    assert!(
        !client
            .get_execution_state(get("aex-1", "tools"))
            .await
            .unwrap()
            .into_inner()
            .found
    );
    // Unknown and ended executions, and values that are not JSON, are refused.
    for (request, code) in [
        (put("wex-none", "k", "{}"), tonic::Code::NotFound),
        (put("wex-2", "k", "{}"), tonic::Code::FailedPrecondition),
        (put("wex-1", "k", "{oops"), tonic::Code::InvalidArgument),
        (put("", "k", "{}"), tonic::Code::InvalidArgument),
    ] {
        let status = client.put_execution_state(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    let status = client
        .get_execution_state(get("wex-none", "k"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}
