//! `run: workflow` end to end: a workflow execution runs another Workflow as a child workflow
//! (its own `wex-…` execution, watched by the server), gets its output or its error, shares
//! its secrets with it; a child that does not exist is refused at apply.

use crate::runs::{Api, Event, Stack};
use serde_json::{Value, json};
use stigmer_proto::execution::ExecutionEvent;
use stigmer_proto::executions::v1::CreateExecutionRequest;
use stigmer_test::http::{HttpFixture, Reply};

const FAMILY: &str = r#"
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: double
spec:
  input:
    schema:
      format: json
      document:
        type: object
        required: [n]
        properties:
          n: {type: number}
  do:
    - twice:
        set:
          n: ${ .n * 2 }
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: outer
spec:
  do:
    - prepare:
        set:
          n: ${ .start + 1 }
    - child:
        run:
          workflow:
            namespace: default
            name: double
            version: latest
            input:
              n: ${ .n }
    - use:
        set:
          result: ${ .n + 100 }
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: refuse
spec:
  do:
    - check:
        raise:
          error:
            type: https://example.com/errors/out-of-stock
            status: 409
            title: Out of stock
            detail: no apples left
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: faults
spec:
  do:
    - order:
        run:
          workflow:
            namespace: default
            name: refuse
            version: latest
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: guarded
spec:
  do:
    - attempt:
        try:
          - order:
              run:
                workflow:
                  namespace: default
                  name: refuse
                  version: latest
        catch:
          errors:
            with:
              status: 409
          as: failure
          do:
            - note:
                set:
                  caught: ${ $failure.status }
                  title: ${ $failure.title }
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: elsewhere
spec:
  do:
    - child:
        run:
          workflow:
            namespace: shop
            name: double
            version: latest
            input: {n: 1}
"#;

fn ended(events: &[Event]) -> bool {
    events.iter().any(|event| match &event.event {
        ExecutionEvent::PhaseChanged(changed) => changed.phase.is_terminal(),
        _ => false,
    })
}

/// Runs `workflow` to its end: the execution and its events.
fn run(
    api: &mut Api,
    workflow: &str,
    input: Value,
    secrets: &[(&str, &str)],
) -> (Value, Vec<Event>) {
    let created = api
        .create(CreateExecutionRequest {
            workflow: workflow.into(),
            input_json: input.to_string(),
            secrets: secrets
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            ..Default::default()
        })
        .expect("the workflow execution is created");
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    let events = api.events_until(&id, ended);
    (api.get(&id), events)
}

/// The child executions the events name.
fn children(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match &event.event {
            ExecutionEvent::WorkflowCallStarted(call) => Some(call.execution_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_workflow_runs_another_and_gets_its_output_or_its_error() {
    let stack = Stack::start_with("openai", Vec::new(), "", FAMILY);
    let mut api = stack.api();

    // The child's input comes from an expression; its output feeds a later `set`.
    let (execution, events) = run(&mut api, "outer", json!({"start": 20}), &[]);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(execution["status"]["output"], json!({"result": 142}));
    let parent_id = execution["metadata"]["name"].as_str().unwrap();
    let child_ids = children(&events);
    assert_eq!(child_ids.len(), 1, "{events:#?}");
    let child = api.get(&child_ids[0]);
    assert!(child_ids[0].starts_with("wex-"), "{child:#}");
    assert_eq!(child["status"]["phase"], json!("completed"), "{child:#}");
    assert_eq!(child["status"]["output"], json!({"n": 42}));
    assert_eq!(child["spec"]["input"], json!({"n": 21}));
    assert_eq!(
        child["spec"]["parent"],
        json!({"executionId": parent_id, "task": "/do/1/child"})
    );

    // A child that raises an error faults the parent's task with that error.
    let (execution, events) = run(&mut api, "faults", json!({}), &[]);
    let status = &execution["status"];
    assert_eq!(
        status["phase"],
        json!("failed"),
        "{execution:#}\n{events:#?}"
    );
    let error = &status["error"];
    assert_eq!(
        error["type"],
        json!("https://example.com/errors/out-of-stock")
    );
    assert_eq!(error["status"], json!(409));
    assert_eq!(error["title"], json!("Out of stock"));
    assert_eq!(error["instance"], json!("/do/0/order"), "{error:#}");
    let child_id = &children(&events)[0];
    assert_eq!(
        error["detail"],
        json!(format!(
            "no apples left (workflow execution {child_id} at /do/0/check)"
        ))
    );
    assert_eq!(api.get(child_id)["status"]["phase"], json!("failed"));

    // … which a `try` catches like any other.
    let (execution, events) = run(&mut api, "guarded", json!({}), &[]);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(
        execution["status"]["output"],
        json!({"caught": 409, "title": "Out of stock"})
    );

    // A namespace the Workflow does not have: the task fails, saying what exists.
    let (execution, events) = run(&mut api, "elsewhere", json!({}), &[]);
    let error = &execution["status"]["error"];
    assert_eq!(
        execution["status"]["phase"],
        json!("failed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(error["instance"], json!("/do/0/child"), "{error:#}");
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains("workflow 'double' in namespace \"shop\" not found")
            && detail.contains("namespace \"default\""),
        "{detail}"
    );
    assert!(children(&events).is_empty());
}

#[test]
fn a_child_workflow_uses_the_parent_runs_secrets_and_unknown_children_are_refused() {
    let secret = "child-s3cr3t-4711";
    let server = HttpFixture::start(|_, _| Reply::json(json!({"ok": true})));
    let manifest = format!(
        r#"
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: authorized
spec:
  do:
    - send:
        call: http
        with:
          method: get
          endpoint: {url}/me
          headers:
            Authorization: ${{ "Bearer " + $secrets.TOKEN }}
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: delegate
spec:
  do:
    - forward:
        run:
          workflow:
            namespace: default
            name: authorized
            version: latest
"#,
        url = server.url()
    );
    let stack = Stack::start_with("openai", Vec::new(), "", &manifest);
    let mut api = stack.api();
    let (execution, events) = run(&mut api, "delegate", json!({}), &[("TOKEN", secret)]);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(execution["status"]["output"], json!({"ok": true}));
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(
        requests[0].headers.get("authorization"),
        Some(&format!("Bearer {secret}"))
    );
    let child = api.get(&children(&events)[0]);
    assert_eq!(child["spec"]["secretNames"], json!(["TOKEN"]), "{child:#}");
    assert!(!child.to_string().contains(secret), "{child:#}");

    // A literal child name that names no Workflow is refused at apply, with a suggestion.
    let unknown = stack.home.path().join("unknown-child.yaml");
    std::fs::write(
        &unknown,
        "apiVersion: agentic.stigmer.ai/v1\nkind: Workflow\nmetadata:\n  name: lost\nspec:\n  do:\n    - child:\n        run:\n          workflow:\n            namespace: default\n            name: authorised\n            version: latest\n",
    )
    .unwrap();
    let applied = stack.home.run(&["apply", "-f", unknown.to_str().unwrap()]);
    assert_ne!(applied.code, 0, "{applied}");
    assert!(
        applied
            .stderr
            .contains("Workflow \"authorised\" does not exist (did you mean \"authorized\"?)"),
        "{applied}"
    );
}
