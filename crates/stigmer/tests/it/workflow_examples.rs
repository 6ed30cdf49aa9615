//! The workflows in examples/ run as their comments say: one stack (real Temporal, both
//! runners, the scripted LLM), a local HTTP server standing in for the public ones.

use crate::runs::{Event, Stack};
use serde_json::{Value, json};
use std::path::PathBuf;
use stigmer_proto::execution::ExecutionEvent;
use stigmer_proto::executions::v1::CreateExecutionRequest;
use stigmer_test::http::{HttpFixture, Reply};
use stigmer_test::llm::Turn;

fn examples() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .display()
        .to_string()
}

fn ended(events: &[Event]) -> bool {
    events.iter().any(|event| match &event.event {
        ExecutionEvent::PhaseChanged(changed) => changed.phase.is_terminal(),
        _ => false,
    })
}

/// Runs `workflow` with `input` to its end: its status.
fn run(stack: &Stack, workflow: &str, input: Value) -> Value {
    let mut api = stack.api();
    let created = api
        .create(CreateExecutionRequest {
            workflow: workflow.into(),
            input_json: input.to_string(),
            ..Default::default()
        })
        .unwrap_or_else(|status| panic!("{workflow}: {status}"));
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    let events = api.events_until(&id, ended);
    let execution = api.get(&id);
    assert!(
        execution["status"]["phase"] == json!("completed"),
        "{workflow} did not complete: {execution:#}\n{events:#?}"
    );
    execution["status"]["output"].clone()
}

#[test]
fn every_example_workflow_runs() {
    let stack = Stack::start_with(
        "openai",
        vec![
            Turn::text("Hello Ada, nice to meet you."),
            Turn::text("Durable workflows survive crashes."),
            Turn::text(r#"{"score": 8, "comment": "clear"}"#),
        ],
        "",
        crate::runs::AGENT,
    );
    let applied = stack.home.run(&["apply", "-f", &examples()]);
    assert_eq!(applied.code, 0, "{applied}");

    let greeted = run(&stack, "greet", json!({"name": "Ada"}));
    assert_eq!(greeted["greeting"], json!("Hello Ada, nice to meet you."));
    assert!(greeted["agentRun"].as_str().unwrap().starts_with("aex-"));

    let reviewed = run(
        &stack,
        "review-pipeline",
        json!({"topic": "durable workflows"}),
    );
    assert_eq!(
        reviewed,
        json!({
            "published": true,
            "draft": "Durable workflows survive crashes.",
            "review": {"score": 8, "comment": "clear"}
        })
    );
    // The reviewer read the writer's draft.
    let requests = stack.llm.requests();
    assert!(
        requests.last().is_some_and(|request| request
            .body
            .to_string()
            .contains("Durable workflows survive crashes.")),
        "{requests:#?}"
    );

    assert_eq!(
        run(&stack, "route-order", json!({"amount": 250})),
        json!({"decision": "review", "reason": "amount 250 needs a review"})
    );
    assert_eq!(
        run(&stack, "route-order", json!({"amount": 5})),
        json!({"decision": "approve"})
    );

    assert_eq!(
        run(&stack, "checks", json!({"text": "hello world"})),
        json!({"length": 11, "words": 2, "waited": true})
    );

    let petstore = HttpFixture::start(|request, _| match request.path.as_str() {
        "/v2/pet/7" => Reply::json(json!({"id": 7, "name": "Rex", "status": "available"})),
        _ => Reply::status(404, "no such pet"),
    });
    assert_eq!(
        run(
            &stack,
            "fetch-pet",
            json!({"petId": 7, "baseUrl": petstore.url()})
        ),
        json!({"id": 7, "name": "Rex", "status": "available"})
    );

    // Fails twice, then answers: the retry policy's third attempt succeeds.
    let flaky = HttpFixture::start(|_, before| {
        if before < 2 {
            Reply::status(503, "busy")
        } else {
            Reply::json(json!({"ok": true}))
        }
    });
    assert_eq!(
        run(
            &stack,
            "resilient-fetch",
            json!({"url": format!("{}/status", flaky.url())})
        ),
        json!({"ok": true})
    );
    assert_eq!(flaky.requests().len(), 3);

    // Always fails: three retries, then the fallback.
    let down = HttpFixture::start(|_, _| Reply::status(503, "down"));
    assert_eq!(
        run(
            &stack,
            "resilient-fetch",
            json!({"url": format!("{}/status", down.url())})
        ),
        json!({"ok": false, "status": 503})
    );
    assert_eq!(down.requests().len(), 4);
}
