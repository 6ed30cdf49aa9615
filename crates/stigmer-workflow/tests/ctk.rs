//! The Serverless Workflow Conformance Test Kit (`tests/ctk/*.feature`, unchanged copies of
//! the spec's `ctk/features`), run through the interpreter with an in-process host.
//!
//! Each scenario is one test named after it. The harness reads the Gherkin itself: the
//! definition and input doc strings, then every `Then`/`And` assertion the CTK README lists.
//! HTTP scenarios call the public hosts (`https://petstore.swagger.io/…`,
//! `https://httpbin.org/…`), rewritten to a recording server on 127.0.0.1 (`support`).
//! `call: openapi` is not in version 1: those scenarios must be refused when the definition
//! is read, with a "not supported" message ([`REFUSED`]).

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use stigmer_workflow::interp::{Run, TaskEvent, TaskEventKind};
use stigmer_workflow::local::LocalHost;
use stigmer_workflow::model::Workflow;
use stigmer_workflow::secrets::Secrets;
use support::TestServer;

/// Scenarios whose definition must be refused at parse, and what the refusal must say.
const REFUSED: &[(&str, &str)] = &[
    ("Call OpenAPI With Content Output", "not supported"),
    ("Call OpenAPI With Response Output", "not supported"),
];

/// How long one scenario may run.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(30);

macro_rules! scenarios {
    ($($test:ident: $feature:literal, $scenario:literal;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                run_scenario($feature, $scenario).await;
            }
        )*

        /// Every scenario a test above runs: `(feature file, scenario name)`.
        const LISTED: &[(&str, &str)] = &[$(($feature, $scenario)),*];
    };
}

scenarios! {
    branch_fork_with_competing_concurrent_sub_tasks:
        "branch.feature", "Fork Task With Competing Concurrent Sub Tasks";
    call_http_with_content_output: "call.feature", "Call HTTP With Content Output";
    call_http_with_response_output: "call.feature", "Call HTTP With Response Output";
    call_http_using_basic_authentication: "call.feature", "Call HTTP Using Basic Authentication";
    call_openapi_with_content_output: "call.feature", "Call OpenAPI With Content Output";
    call_openapi_with_response_output: "call.feature", "Call OpenAPI With Response Output";
    data_flow_input_filtering: "data-flow.feature", "Input Filtering";
    data_flow_output_filtering: "data-flow.feature", "Output Filtering";
    data_flow_use_non_object_output: "data-flow.feature", "Use Non-object Output";
    do_task_with_sequential_sub_tasks: "do.feature", "Task With Sequential Sub Tasks";
    emit_task: "emit.feature", "Emit Task";
    flow_implicit_sequence: "flow.feature", "Implicit Sequence Flow";
    flow_explicit_sequence: "flow.feature", "Explicit Sequence Flow";
    for_task: "for.feature", "For Task";
    raise_task_with_inline_error: "raise.feature", "Raise task with inline error";
    set_task: "set.feature", "Set Task";
    switch_with_matching_case: "switch.feature", "Switch task with matching case";
    switch_with_implicit_default_case: "switch.feature", "Switch task with implicit default case";
    switch_with_explicit_default_case: "switch.feature", "Switch task with explicit default case";
    try_handle_caught_error: "try.feature", "Try Handle Caught Error";
    try_raise_uncaught_error: "try.feature", "Try Raise Uncaught Error";
}

/// A new scenario in the CTK must get a test here, not be skipped silently.
#[test]
fn every_ctk_scenario_has_a_test() {
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(ctk_dir())
        .expect("read tests/ctk")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "feature"))
        .collect();
    files.sort();
    for path in files {
        let file = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a UTF-8 file name")
            .to_string();
        for scenario in parse_feature(&read(&file)) {
            found.push((file.clone(), scenario.name));
        }
    }
    let missing: Vec<_> = found
        .iter()
        .filter(|(file, name)| !LISTED.iter().any(|(f, n)| f == file && n == name))
        .collect();
    let stale: Vec<_> = LISTED
        .iter()
        .filter(|(f, n)| !found.iter().any(|(file, name)| f == file && n == name))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "scenarios without a test: {missing:?}; tests without a scenario: {stale:?}"
    );
    assert_eq!(found.len(), 21, "the CTK copy has 21 scenarios");
}

// ---------------------------------------------------------------------------------------------
// Gherkin

/// One scenario: its name and its steps in order.
#[derive(Debug)]
struct Scenario {
    name: String,
    steps: Vec<Step>,
}

/// A step without its keyword (`Given`, `And`, …), with the doc string that follows it.
#[derive(Debug)]
struct Step {
    text: String,
    doc: Option<String>,
}

fn ctk_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ctk")
}

fn read(file: &str) -> String {
    let path = ctk_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The scenarios of a feature file (the subset of Gherkin the CTK uses: no outlines, no
/// backgrounds, no tables).
fn parse_feature(text: &str) -> Vec<Scenario> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("Scenario:") {
            scenarios.push(Scenario {
                name: name.trim().to_string(),
                steps: Vec::new(),
            });
        } else if trimmed.starts_with("\"\"\"") {
            // A doc string belongs to the step before it; its indentation is the opening
            // delimiter's.
            let indent = line.len() - line.trim_start().len();
            let mut doc = Vec::new();
            for line in lines.by_ref() {
                if line.trim() == "\"\"\"" {
                    break;
                }
                let cut = line
                    .char_indices()
                    .take_while(|(index, c)| *index < indent && c.is_whitespace())
                    .count();
                doc.push(&line[cut..]);
            }
            let step = scenarios
                .last_mut()
                .and_then(|scenario| scenario.steps.last_mut())
                .expect("a doc string follows a step");
            step.doc = Some(doc.join("\n"));
        } else if let Some(scenario) = scenarios.last_mut() {
            let keyword = ["Given ", "When ", "Then ", "And ", "But "]
                .iter()
                .find_map(|keyword| trimmed.strip_prefix(keyword));
            if let Some(text) = keyword {
                scenario.steps.push(Step {
                    text: text.trim().to_string(),
                    doc: None,
                });
            }
        }
    }
    scenarios
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|error| panic!("bad YAML ({error}):\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// Running

/// What running a scenario's workflow gave.
enum Outcome {
    Refused(Vec<String>),
    Completed(Value),
    Faulted(Value),
}

async fn run_scenario(file: &str, name: &str) {
    let scenario = parse_feature(&read(file))
        .into_iter()
        .find(|scenario| scenario.name == name)
        .unwrap_or_else(|| panic!("no scenario {name:?} in {file}"));
    let server = TestServer::start().await;

    let mut definition = None;
    let mut calls_public_host = false;
    let mut input = json!({});
    for step in &scenario.steps {
        match step.text.as_str() {
            "a workflow with definition:" => {
                let doc = step.doc.as_deref().expect("the definition's doc string");
                calls_public_host = support::PUBLIC_HOSTS
                    .iter()
                    .any(|host| doc.contains(&format!("https://{host}/")));
                definition = Some(yaml(&server.rewrite_public_hosts(doc)));
            }
            "given the workflow input is:" | "the workflow input is:" => {
                input = yaml(step.doc.as_deref().expect("the input's doc string"));
            }
            _ => {}
        }
    }
    let definition = definition.expect("a `Given a workflow with definition:` step");

    let host = LocalHost::new(Secrets::default());
    let outcome = match Workflow::from_document(definition) {
        Err(errors) => Outcome::Refused(
            errors
                .iter()
                .map(|error| format!("{}: {}", error.pointer, error.message))
                .collect(),
        ),
        Ok(workflow) => {
            let run = Run {
                execution_id: format!("ctk-{}", name.to_lowercase().replace(' ', "-")),
                input,
                secret_names: Vec::new(),
            };
            match tokio::time::timeout(
                SCENARIO_TIMEOUT,
                stigmer_workflow::interp::run(&workflow, &host, run),
            )
            .await
            {
                Ok(Ok(output)) => Outcome::Completed(output),
                Ok(Err(error)) => Outcome::Faulted(error.to_value()),
                Err(_) => panic!("{name}: the workflow did not finish within {SCENARIO_TIMEOUT:?}"),
            }
        }
    };
    let events = host.events();
    // `CTK_VERBOSE=1 cargo test --test ctk -- --nocapture` shows what every scenario gave.
    if std::env::var_os("CTK_VERBOSE").is_some() {
        eprintln!(
            "{name}: {}\n{}",
            describe(&outcome),
            describe_events(&events)
        );
    }

    let mut failures: Vec<String> = match REFUSED.iter().find(|(refused, _)| *refused == name) {
        Some((_, message)) => check_refused(&outcome, message),
        None => scenario
            .steps
            .iter()
            .filter_map(|step| check_step(step, &outcome, &events).err())
            .collect(),
    };
    // A scenario that calls a public host must have reached the test server instead.
    if calls_public_host && !matches!(outcome, Outcome::Refused(_)) && server.requests().is_empty()
    {
        failures.push("the workflow never called the test server".to_string());
    }
    if !failures.is_empty() {
        panic!(
            "CTK scenario {name:?} ({file}) failed:\n  - {}\n{}\nevents:\n{}\nrequests to the \
             test server:\n{}",
            failures.join("\n  - "),
            describe(&outcome),
            describe_events(&events),
            server
                .requests()
                .iter()
                .map(|request| format!(
                    "  {} {}{}",
                    request.method,
                    request.path,
                    request
                        .query
                        .as_deref()
                        .map(|query| format!("?{query}"))
                        .unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}

fn check_refused(outcome: &Outcome, message: &str) -> Vec<String> {
    match outcome {
        Outcome::Refused(errors)
            if errors
                .iter()
                .any(|error| error.to_lowercase().contains(message)) =>
        {
            Vec::new()
        }
        Outcome::Refused(errors) => vec![format!(
            "the definition was refused, but no error says {message:?}: {errors:?}"
        )],
        _ => vec![format!(
            "the definition should be refused at parse with {message:?}, but it was accepted"
        )],
    }
}

/// Checks one step against the outcome; the setup and `When` steps always pass.
fn check_step(step: &Step, outcome: &Outcome, events: &[TaskEvent]) -> Result<(), String> {
    let text = step.text.as_str();
    let doc = || {
        step.doc
            .as_deref()
            .map(yaml)
            .ok_or_else(|| format!("`{text}` needs a doc string"))
    };
    let output = || match outcome {
        Outcome::Completed(output) => Ok(output),
        _ => Err(format!("`{text}`: the workflow did not complete")),
    };
    match text {
        "a workflow with definition:"
        | "given the workflow input is:"
        | "the workflow input is:"
        | "the workflow is executed" => Ok(()),
        "the workflow should complete" => output().map(|_| ()),
        "the workflow should complete with output:" => {
            let expected = doc()?;
            let actual = output()?;
            if *actual == expected {
                Ok(())
            } else {
                Err(format!("output: expected {expected}, got {actual}"))
            }
        }
        "the workflow should fault" => match outcome {
            Outcome::Faulted(_) => Ok(()),
            _ => Err("the workflow should fault, but it did not".to_string()),
        },
        "the workflow should fault with error:" => match outcome {
            Outcome::Faulted(error) => subset("error", &doc()?, error),
            _ => Err("the workflow should fault, but it did not".to_string()),
        },
        "the workflow should cancel" => {
            Err("`the workflow should cancel` is not supported by this harness".to_string())
        }
        _ => {
            if let Some(list) = text.strip_prefix("the workflow output should have properties ") {
                let actual = output()?;
                let missing: Vec<_> = quoted(list)
                    .into_iter()
                    .filter(|path| property(actual, path).is_none())
                    .collect();
                return if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("the output lacks the properties {missing:?}"))
                };
            }
            if let Some(rest) = text.strip_prefix("the workflow output should have a ") {
                let path = quoted(rest)
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("no quoted property in `{text}`"))?;
                let actual = output()?;
                let value = property(actual, &path)
                    .ok_or_else(|| format!("the output lacks the property {path:?}"))?;
                if rest.ends_with("property with value:") {
                    let expected = doc()?;
                    return if *value == expected {
                        Ok(())
                    } else {
                        Err(format!("{path:?}: expected {expected}, got {value}"))
                    };
                }
                if let Some(count) = rest
                    .split(" property containing ")
                    .nth(1)
                    .and_then(|tail| tail.strip_suffix(" items"))
                {
                    let count: usize = count
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad item count in `{text}`"))?;
                    return match value.as_array() {
                        Some(items) if items.len() == count => Ok(()),
                        Some(items) => Err(format!(
                            "{path:?}: expected {count} items, got {}: {value}",
                            items.len()
                        )),
                        None => Err(format!("{path:?}: expected an array, got {value}")),
                    };
                }
                return Err(format!("unknown step `{text}`"));
            }
            check_task_step(text, step, events)
        }
    }
}

/// `<task> should run first|last|before <task>|after <task>`, `<task> should complete|fault`.
fn check_task_step(text: &str, step: &Step, events: &[TaskEvent]) -> Result<(), String> {
    let (task, predicate) = text
        .split_once(" should ")
        .ok_or_else(|| format!("unknown step `{text}`"))?;
    let started: Vec<&str> = events
        .iter()
        .filter(|event| matches!(event.kind, TaskEventKind::Started))
        .map(|event| event.name.as_str())
        .collect();
    let first_start = |name: &str| {
        started
            .iter()
            .position(|started| *started == name)
            .ok_or_else(|| format!("{name} never started (started: {started:?})"))
    };
    match predicate {
        "run first" => match started.first() {
            Some(first) if *first == task => Ok(()),
            other => Err(format!("{task} should run first; first was {other:?}")),
        },
        "run last" => match started.last() {
            Some(last) if *last == task => Ok(()),
            other => Err(format!("{task} should run last; last was {other:?}")),
        },
        "complete" | "complete with output:" => {
            let output = events.iter().find_map(|event| match &event.kind {
                TaskEventKind::Completed { output } if event.name == task => Some(output),
                _ => None,
            });
            match (output, predicate, step.doc.as_deref()) {
                (None, _, _) => Err(format!("{task} did not complete")),
                (Some(output), "complete with output:", Some(doc)) if *output != yaml(doc) => Err(
                    format!("{task}'s output: expected {}, got {output}", yaml(doc)),
                ),
                _ => Ok(()),
            }
        }
        "fault" | "fault with error:" => {
            let error = events.iter().find_map(|event| match &event.kind {
                TaskEventKind::Failed { error } if event.name == task => Some(error.to_value()),
                _ => None,
            });
            match (error, step.doc.as_deref()) {
                (None, _) => Err(format!("{task} did not fault")),
                (Some(error), Some(doc)) if predicate == "fault with error:" => {
                    subset(&format!("{task}'s error"), &yaml(doc), &error)
                }
                _ => Ok(()),
            }
        }
        "cancel" => Err(format!("`{text}` is not supported by this harness")),
        _ => {
            if let Some(other) = predicate.strip_prefix("run before ") {
                return if first_start(task)? < first_start(other)? {
                    Ok(())
                } else {
                    Err(format!(
                        "{task} should run before {other} (started: {started:?})"
                    ))
                };
            }
            if let Some(other) = predicate.strip_prefix("run after ") {
                return if first_start(task)? > first_start(other)? {
                    Ok(())
                } else {
                    Err(format!(
                        "{task} should run after {other} (started: {started:?})"
                    ))
                };
            }
            Err(format!("unknown step `{text}`"))
        }
    }
}

/// Every field of `expected` is in `actual` with the same value (an error may say more, such
/// as its `detail`, than the scenario lists).
fn subset(what: &str, expected: &Value, actual: &Value) -> Result<(), String> {
    let Some(expected_fields) = expected.as_object() else {
        return Err(format!(
            "{what}: the expected value is not a map: {expected}"
        ));
    };
    let wrong: Vec<String> = expected_fields
        .iter()
        .filter(|(key, value)| actual.get(key.as_str()) != Some(*value))
        .map(|(key, value)| {
            format!(
                "{key}: expected {value}, got {}",
                actual.get(key.as_str()).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: {}", wrong.join("; ")))
    }
}

/// The single-quoted items of `'a', 'b.c'`.
fn quoted(text: &str) -> Vec<String> {
    text.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The value at a dotted path (`request.headers`, `items.0.id`).
fn property<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, key| match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|index| items.get(index)),
        _ => None,
    })
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Refused(errors) => format!("refused at parse: {errors:?}"),
        Outcome::Completed(output) => format!("completed with output {output}"),
        Outcome::Faulted(error) => format!("faulted with {error}"),
    }
}

fn describe_events(events: &[TaskEvent]) -> String {
    events
        .iter()
        .map(|event| {
            let kind = match &event.kind {
                TaskEventKind::Started => "started".to_string(),
                TaskEventKind::Completed { output } => format!("completed {output}"),
                TaskEventKind::Failed { error } => format!("failed {error}"),
                TaskEventKind::Retried { attempt, .. } => format!("retried (attempt {attempt})"),
                TaskEventKind::Skipped => "skipped".to_string(),
                TaskEventKind::Waiting { millis } => format!("waiting {millis}ms"),
            };
            format!("  {} ({}) {kind}", event.name, event.reference)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_gherkin_reader_keeps_doc_strings_and_steps() {
    let scenarios = parse_feature(&read("data-flow.feature"));
    let names: Vec<_> = scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Input Filtering",
            "Output Filtering",
            "Use Non-object Output"
        ]
    );
    let last = &scenarios[2];
    let input = last
        .steps
        .iter()
        .find(|step| step.text == "given the workflow input is:")
        .and_then(|step| step.doc.as_deref())
        .map(yaml);
    assert_eq!(input, Some(json!({"petId": 1})));
    assert_eq!(quoted("'id', 'name', 'a.b'"), ["id", "name", "a.b"]);
    assert_eq!(
        property(&json!({"a": {"b": [1, {"c": 2}]}}), "a.b.1.c"),
        Some(&json!(2))
    );
}

#[test]
fn the_assertions_fail_when_they_should() {
    let step = |text: &str, doc: Option<&str>| Step {
        text: text.to_string(),
        doc: doc.map(str::to_string),
    };
    let completed = Outcome::Completed(json!({"colors": ["red"], "a": {"b": 1}}));
    let event = |name: &str| TaskEvent {
        reference: format!("/do/0/{name}"),
        name: name.to_string(),
        kind: TaskEventKind::Started,
    };
    let events = [event("setRed"), event("setGreen")];
    let check = |text: &str, doc: Option<&str>, outcome: &Outcome| {
        check_step(&step(text, doc), outcome, &events)
    };

    assert!(
        check(
            "the workflow should complete with output:",
            Some("colors: [red]\na: {b: 1}"),
            &completed
        )
        .is_ok()
    );
    assert!(
        check(
            "the workflow should complete with output:",
            Some("colors: [blue]"),
            &completed
        )
        .is_err()
    );
    assert!(check("the workflow should fault", None, &completed).is_err());
    assert!(
        check(
            "the workflow output should have properties 'colors', 'a.b'",
            None,
            &completed
        )
        .is_ok()
    );
    assert!(
        check(
            "the workflow output should have properties 'a.c'",
            None,
            &completed
        )
        .is_err()
    );
    assert!(
        check(
            "the workflow output should have a 'a.b' property with value:",
            Some("2"),
            &completed
        )
        .is_err()
    );
    assert!(
        check(
            "the workflow output should have a 'colors' property containing 1 items",
            None,
            &completed
        )
        .is_ok()
    );
    assert!(
        check(
            "the workflow output should have a 'colors' property containing 2 items",
            None,
            &completed
        )
        .is_err()
    );
    assert!(check("setRed should run first", None, &completed).is_ok());
    assert!(check("setGreen should run first", None, &completed).is_err());
    assert!(check("setGreen should run last", None, &completed).is_ok());
    assert!(check("setGreen should run after setRed", None, &completed).is_ok());
    assert!(check("setRed should run after setGreen", None, &completed).is_err());
    assert!(check("setRed should run before setGreen", None, &completed).is_ok());
    assert!(check("the workflow does something new", None, &completed).is_err());

    let faulted = Outcome::Faulted(json!({"type": "t", "status": 400, "detail": "d"}));
    assert!(
        check(
            "the workflow should fault with error:",
            Some("type: t\nstatus: 400"),
            &faulted
        )
        .is_ok()
    );
    assert!(
        check(
            "the workflow should fault with error:",
            Some("status: 500"),
            &faulted
        )
        .is_err()
    );
    assert!(check("the workflow should complete", None, &faulted).is_err());

    assert!(check_refused(&completed, "not supported").len() == 1);
    assert!(
        check_refused(
            &Outcome::Refused(vec!["/do/0: call: openapi is not supported".to_string()]),
            "not supported"
        )
        .is_empty()
    );
    assert!(
        check_refused(
            &Outcome::Refused(vec!["/do/0: bad".to_string()]),
            "not supported"
        )
        .len()
            == 1
    );
}
