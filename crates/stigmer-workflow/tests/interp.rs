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
