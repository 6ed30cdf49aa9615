//! The interpreter against the process host: flow, data flow, loops, forks, errors.

use serde_json::{Value, json};
use stigmer_workflow::local::LocalHost;
use stigmer_workflow::secrets::Secrets;
use stigmer_workflow::{Problem, Run, TaskEventKind, Workflow};

fn workflow(yaml: &str) -> Workflow {
    let mut document: Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    if document.get("document").is_none() {
        document["document"] =
            json!({"dsl": "1.0.3", "namespace": "default", "name": "test", "version": "1.0.0"});
    }
    match Workflow::from_document(document) {
        Ok(workflow) => workflow,
        Err(problems) => panic!("invalid workflow: {problems:?}"),
    }
}

async fn run_with(yaml: &str, input: Value, host: &LocalHost) -> Result<Value, Problem> {
    let run = Run {
        execution_id: "wex-test".into(),
        input,
        secret_names: Vec::new(),
    };
    stigmer_workflow::run(&workflow(yaml), host, run).await
}

async fn run(yaml: &str, input: Value) -> Result<Value, Problem> {
    run_with(yaml, input, &LocalHost::new(Secrets::default())).await
}

#[tokio::test]
async fn set_replaces_and_context_carries_exports() {
    let output = run(
        r#"
do:
  - first:
      set: { a: 1, keep: "${ .x }" }
      export: { as: '$context + { seen: .a }' }
  - second:
      set: { b: '${ $context.seen + 1 }', literal: .a }
"#,
        json!({"x": "from input"}),
    )
    .await
    .unwrap();
    assert_eq!(output, json!({"b": 2, "literal": ".a"}));
}

#[tokio::test]
async fn switch_jumps_and_skipped_tasks_pass_their_input_on() {
    let yaml = r#"
do:
  - decide:
      switch:
        - big: { when: '.n > 10', then: large }
        - fallback: { then: small }
  - small:
      set: { size: small }
      then: end
  - large:
      if: '.n > 100'
      set: { size: huge }
"#;
    assert_eq!(
        run(yaml, json!({"n": 1})).await.unwrap(),
        json!({"size": "small"})
    );
    // `large` is skipped by its `if`: its input is its output.
    assert_eq!(run(yaml, json!({"n": 50})).await.unwrap(), json!({"n": 50}));
    assert_eq!(
        run(yaml, json!({"n": 500})).await.unwrap(),
        json!({"size": "huge"})
    );
}

#[tokio::test]
async fn for_loops_thread_their_output_and_stop_on_while() {
    let output = run(
        r#"
do:
  - loop:
      for: { each: n, in: .numbers, at: i }
      while: '$i < 3'
      do:
        - add:
            set: { total: '${ (.total // 0) + $n }', last: '${ $i }' }
"#,
        json!({"numbers": [1, 2, 3, 4, 5]}),
    )
    .await
    .unwrap();
    assert_eq!(output, json!({"total": 6, "last": 2}));
}

#[tokio::test]
async fn fork_outputs_in_declaration_order_or_the_winner() {
    let yaml = |compete: bool| {
        format!(
            r#"
do:
  - both:
      fork:
        compete: {compete}
        branches:
          - slow: {{ wait: {{ milliseconds: 50 }}, output: {{ as: '"slow"' }} }}
          - fast: {{ set: {{ who: fast }} }}
"#
        )
    };
    assert_eq!(
        run(&yaml(false), json!({})).await.unwrap(),
        json!(["slow", {"who": "fast"}])
    );
    assert_eq!(
        run(&yaml(true), json!({})).await.unwrap(),
        json!({"who": "fast"})
    );
}

#[tokio::test]
async fn try_retries_then_catches_with_the_error_bound() {
    let host = LocalHost::new(Secrets::default());
    let output = run_with(
        r#"
do:
  - attempt:
      try:
        - fail:
            raise:
              error: { type: https://example.com/flaky, status: 503, title: Flaky }
      catch:
        errors: { with: { status: 503 } }
        as: oops
        retry:
          delay: { milliseconds: 1 }
          backoff: { exponential: {} }
          limit: { attempt: { count: 2 } }
        do:
          - handle:
              set: { caught: '${ $oops.title }', where: '${ $oops.instance }' }
"#,
        json!({}),
        &host,
    )
    .await
    .unwrap();
    assert_eq!(
        output,
        json!({"caught": "Flaky", "where": "/do/0/attempt/try/0/fail"})
    );
    let retries = host
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, TaskEventKind::Retried { .. }))
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test]
async fn uncaught_errors_fault_with_their_instance() {
    let error = run(
        r#"
do:
  - outer:
      do:
        - boom:
            raise:
              error: { type: https://example.com/x, status: 418, detail: '${ "bad " + .why }' }
"#,
        json!({"why": "tea"}),
    )
    .await
    .unwrap_err();
    assert_eq!(error.status, 418);
    assert_eq!(error.instance.as_deref(), Some("/do/0/outer/do/0/boom"));
    assert_eq!(error.detail.as_deref(), Some("bad tea"));
}

#[tokio::test]
async fn a_task_timeout_interrupts_it() {
    let error = run(
        r#"
do:
  - slow:
      wait: PT10S
      timeout: { after: { milliseconds: 20 } }
"#,
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(error.status, 408);
    assert_eq!(error.instance.as_deref(), Some("/do/0/slow"));
}

#[tokio::test]
async fn a_then_loop_that_never_ends_is_an_error() {
    let error = run(
        r#"
do:
  - again:
      set: { n: 1 }
      then: again
"#,
        json!({}),
    )
    .await
    .unwrap_err();
    assert!(error.detail.unwrap().contains("never ends"));
}

#[tokio::test]
async fn unknown_secrets_are_authorization_errors() {
    let error = run(
        r#"
do:
  - use:
      set: { token: '${ $secrets.MISSING }' }
"#,
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(error.status, 403);
}

#[tokio::test]
async fn input_and_output_transformations_of_the_workflow() {
    let output = run(
        r#"
input:
  from: .payload
output:
  as: .result
do:
  - compute:
      set: { result: '${ .a * 2 }' }
"#,
        json!({"payload": {"a": 21}}),
    )
    .await
    .unwrap();
    assert_eq!(output, json!(42));
}

/// The delays of the `Retried` events of a run of `retry` (a policy) around a task that
/// always fails.
async fn retry_delays(retry: &str) -> (Vec<u64>, Problem) {
    let host = LocalHost::new(Secrets::default());
    let yaml = format!(
        r#"
do:
  - attempt:
      try:
        - fail:
            raise:
              error: {{ type: https://example.com/flaky, status: 503 }}
      catch:
        retry: {retry}
"#
    );
    let _ = run_with(&yaml, json!({}), &host).await;
    let delays = host
        .events()
        .into_iter()
        .filter_map(|event| match event.kind {
            TaskEventKind::Retried { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    let failed = host
        .events()
        .into_iter()
        .rev()
        .find_map(|event| match event.kind {
            TaskEventKind::Failed { error } => Some(error),
            _ => None,
        })
        .unwrap();
    (delays, failed)
}

#[tokio::test]
async fn retry_backoffs_jitter_and_limits() {
    let (constant, _) = retry_delays(
        "{ delay: { milliseconds: 10 }, backoff: { constant: {} }, limit: { attempt: { count: 3 } } }",
    )
    .await;
    assert_eq!(constant, [10, 10, 10]);
    let (linear, _) = retry_delays(
        "{ delay: { milliseconds: 10 }, backoff: { linear: {} }, limit: { attempt: { count: 3 } } }",
    )
    .await;
    assert_eq!(linear, [10, 20, 30]);
    let (exponential, _) = retry_delays(
        "{ delay: { milliseconds: 10 }, backoff: { exponential: {} }, limit: { attempt: { count: 4 } } }",
    )
    .await;
    assert_eq!(exponential, [10, 20, 40, 80]);
    // Jitter adds between `from` and `to`.
    let (jittered, _) = retry_delays(
        "{ delay: { milliseconds: 10 }, jitter: { from: { milliseconds: 5 }, to: { milliseconds: 8 } }, limit: { attempt: { count: 5 } } }",
    )
    .await;
    assert_eq!(jittered.len(), 5);
    assert!(
        jittered.iter().all(|d| (15..=18).contains(d)),
        "{jittered:?}"
    );
    // The whole retrying stops within `limit.duration`: 450 ms allows delays of 100 and 200
    // ms, not a third one of 300 (the margins leave room for a slow machine).
    let (limited, _) = retry_delays(
        "{ delay: { milliseconds: 100 }, backoff: { linear: {} }, limit: { duration: { milliseconds: 450 }, attempt: { count: 10 } } }",
    )
    .await;
    assert_eq!(limited, [100, 200]);
}

#[tokio::test]
async fn a_retry_when_that_does_not_hold_stops_retrying() {
    let (delays, _) = retry_delays(
        "{ when: '$error.status == 500', delay: { milliseconds: 1 }, limit: { attempt: { count: 3 } } }",
    )
    .await;
    assert!(delays.is_empty(), "{delays:?}");
}

#[tokio::test]
async fn errors_raised_by_name_from_use_errors() {
    let error = run(
        r#"
use:
  errors:
    notFound:
      type: https://example.com/errors/not-found
      status: 404
      title: Not found
      detail: '${ "no item " + .id }'
do:
  - check:
      raise:
        error: notFound
"#,
        json!({"id": "x1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_value(),
        json!({
            "type": "https://example.com/errors/not-found",
            "status": 404,
            "instance": "/do/0/check",
            "title": "Not found",
            "detail": "no item x1"
        })
    );
}

#[tokio::test]
async fn the_workflow_timeout_interrupts_the_whole_run() {
    let error = run(
        r#"
timeout:
  after: { milliseconds: 30 }
do:
  - first:
      set: { a: 1 }
  - slow:
      wait: PT5S
"#,
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(error.status, 408);
    assert!(error.kind.ends_with("/timeout"), "{error:?}");
}

#[tokio::test]
async fn runtime_variables_describe_the_task_the_workflow_and_the_runtime() {
    let output = run(
        r#"
do:
  - outer:
      do:
        - inner:
            set:
              task: '${ $task.name + " " + $task.reference }'
              taskInput: ${ $task.input }
              workflow: ${ $workflow.id }
              workflowInput: ${ $workflow.input }
              startedAt: '${ $workflow.startedAt.epoch.seconds > 0 }'
              runtime: ${ $runtime.name }
"#,
        json!({"x": 1}),
    )
    .await
    .unwrap();
    assert_eq!(
        output,
        json!({
            "task": "inner /do/0/outer/do/0/inner",
            "taskInput": {"x": 1},
            "workflow": "wex-test",
            "workflowInput": {"x": 1},
            "startedAt": true,
            "runtime": "stigmer"
        })
    );
}
