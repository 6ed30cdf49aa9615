//! OpenTelemetry export end to end: the real stack exporting to a real OTLP/HTTP receiver
//! (oteltap from PyPI, installed by `scripts/setup-otel`), which prints every span it gets as
//! one JSON line. gRPC export is tested in `stigmer-telemetry` against a gRPC trace service.

use crate::runs::{AGENT, Stack, create, phases};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stigmer_proto::execution::ExecutionPhase::{Completed, Pending, Running};
use stigmer_test::llm::Turn;
use stigmer_test::{free_port, wait_until};

/// A span as oteltap prints it, its attributes flattened to JSON values.
#[derive(Clone, Debug)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    kind: i64,
    status_code: i64,
    status_message: String,
    attributes: BTreeMap<String, Value>,
    links: Vec<String>,
}

impl Span {
    fn parse(line: &Value) -> Option<Span> {
        let text = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
        let attributes = line["attributes"]
            .as_array()?
            .iter()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap_or_default().to_owned(),
                    any_value(&kv["value"]),
                )
            })
            .collect();
        Some(Span {
            name: line["name"].as_str()?.to_owned(),
            trace_id: text("traceId"),
            span_id: text("spanId"),
            parent_span_id: text("parentSpanId"),
            kind: line["kind"].as_i64().unwrap_or_default(),
            status_code: line["status"]["code"].as_i64().unwrap_or_default(),
            status_message: line["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            attributes,
            links: line["links"]
                .as_array()
                .map(|links| {
                    links
                        .iter()
                        .map(|link| link["spanId"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn text(&self, key: &str) -> &str {
        self.attributes
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no text {key} on {self:#?}"))
    }

    fn int(&self, key: &str) -> i64 {
        self.attributes
            .get(key)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("no integer {key} on {self:#?}"))
    }
}

/// An OTLP `AnyValue` in its JSON form as a plain JSON value.
fn any_value(value: &Value) -> Value {
    if let Some(text) = value.get("stringValue") {
        text.clone()
    } else if let Some(int) = value.get("intValue") {
        // 64-bit integers are strings in the protobuf JSON mapping.
        int.as_str()
            .and_then(|text| text.parse::<i64>().ok())
            .map_or(int.clone(), Value::from)
    } else if let Some(values) = value.get("arrayValue") {
        Value::Array(
            values["values"]
                .as_array()
                .map(|values| values.iter().map(any_value).collect())
                .unwrap_or_default(),
        )
    } else if let Some(flag) = value.get("boolValue") {
        flag.clone()
    } else if let Some(number) = value.get("doubleValue") {
        number.clone()
    } else {
        Value::Null
    }
}

/// oteltap on a free port, its spans collected as they are printed.
struct Receiver {
    child: Child,
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/fixtures/oteltap/bin/python");
        assert!(
            python.exists(),
            "oteltap is not installed: run `scripts/setup-otel` (or `. scripts/setup`)"
        );
        let port = free_port();
        let mut child = Command::new(&python)
            .args(["-m", "oteltap", "--port", &port.to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start oteltap");
        let stdout = child.stdout.take().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (listening, ready) = std::sync::mpsc::channel();
        let collected = spans.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Listening") {
                    let _ = listening.send(());
                }
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(span) = Span::parse(&value) {
                    collected.lock().unwrap().push(span);
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("oteltap did not start listening");
        Receiver { child, port, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans received once `enough` holds of them (within 30 s).
    fn wait_for(&self, what: &str, enough: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        wait_until(Duration::from_secs(30), what, || {
            let spans = self.spans.lock().unwrap().clone();
            enough(&spans).then_some(spans)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named<'a>(spans: &'a [Span], prefix: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|span| span.name.starts_with(prefix))
        .collect()
}

fn telemetry_config(endpoint: &str, capture_content: bool) -> String {
    format!("telemetry:\n  otlp_endpoint: {endpoint}\n  capture_content: {capture_content}\n")
}

/// One tool call, then the answer.
fn script() -> Vec<Turn> {
    vec![
        Turn::tool_call(
            "write_todos",
            json!({"todos": [{"content": "plan the work", "status": "in_progress"}]}),
        ),
        Turn::text("Done."),
    ]
}

/// Runs `helper` with `message` to its end; returns the execution id.
fn run_to_end(stack: &Stack, message: &str, secret: Option<(&str, &str)>) -> String {
    let mut api = stack.api();
    let mut request = create("helper", message);
    if let Some((name, value)) = secret {
        request.secrets.insert(name.into(), value.into());
    }
    let execution = api.create(request).unwrap();
    let id = execution["metadata"]["name"].as_str().unwrap().to_owned();
    let events = api.events(&id, 0, None);
    assert_eq!(
        phases(&events),
        [Pending, Running, Completed],
        "{events:#?}"
    );
    id
}

fn agent_trace(receiver: &Receiver) -> Vec<Span> {
    receiver.wait_for("the agent run's spans", |spans| {
        !named(spans, "invoke_agent ").is_empty()
            && named(spans, "chat ").len() >= 2
            && !named(spans, "execute_tool ").is_empty()
    })
}

#[test]
fn an_agent_run_is_one_trace_of_genai_spans() {
    let receiver = Receiver::start();
    let stack = Stack::start_with(
        "openai",
        script(),
        &telemetry_config(&receiver.endpoint(), false),
        AGENT,
    );
    let id = run_to_end(&stack, "Plan it", None);
    let spans = agent_trace(&receiver);

    let roots = named(&spans, "invoke_agent ");
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = roots[0];
    assert_eq!(root.name, "invoke_agent helper");
    assert_eq!(root.parent_span_id, "", "the root has no parent");
    assert_eq!(root.kind, 1, "INTERNAL");
    assert_eq!(root.text("gen_ai.operation.name"), "invoke_agent");
    assert_eq!(root.text("gen_ai.agent.name"), "helper");
    assert!(
        root.text("gen_ai.conversation.id").starts_with("ses"),
        "{root:#?}"
    );
    assert_eq!(root.text("gen_ai.provider.name"), "openai");
    assert_eq!(root.text("gen_ai.request.model"), "scripted");
    assert_eq!(root.int("gen_ai.usage.input_tokens"), 30 + 20);
    assert_eq!(root.int("gen_ai.usage.output_tokens"), 10 + 1);
    assert_eq!(root.text("stigmer.execution_id"), id);
    assert_eq!(root.status_code, 1, "OK");
    assert!(root.links.is_empty(), "a run of its own links to nothing");

    // Every span of the run is in the root's trace, under the root.
    let run: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let chats = named(&spans, "chat ");
    assert_eq!(chats.len(), 2, "{chats:#?}");
    let tools = named(&spans, "execute_tool ");
    assert_eq!(tools.len(), 1, "{tools:#?}");
    assert_eq!(run.len(), 4, "{run:#?}");
    for span in chats.iter().chain(&tools) {
        assert_eq!(span.trace_id, root.trace_id, "{span:#?}");
        assert_eq!(span.parent_span_id, root.span_id, "{span:#?}");
        assert_eq!(span.text("stigmer.execution_id"), id);
    }
    for chat in &chats {
        assert_eq!(chat.name, "chat scripted");
        assert_eq!(chat.kind, 3, "CLIENT");
        assert_eq!(chat.text("gen_ai.operation.name"), "chat");
        assert_eq!(chat.text("gen_ai.provider.name"), "openai");
        assert_eq!(chat.text("gen_ai.request.model"), "scripted");
        assert_eq!(chat.text("gen_ai.response.model"), "scripted");
        assert_eq!(chat.text("server.address"), "127.0.0.1");
        assert!(chat.int("server.port") > 0);
        assert_eq!(chat.int("stigmer.attempt"), 1);
        assert!(chat.attributes["gen_ai.response.finish_reasons"].is_array());
    }
    let first = chats.iter().find(|c| c.int("stigmer.turn") == 1).unwrap();
    assert_eq!(first.int("gen_ai.usage.input_tokens"), 30);
    assert_eq!(first.int("gen_ai.usage.output_tokens"), 10);
    let second = chats.iter().find(|c| c.int("stigmer.turn") == 2).unwrap();
    assert_eq!(second.int("gen_ai.usage.input_tokens"), 20);

    let tool = tools[0];
    assert_eq!(tool.name, "execute_tool write_todos");
    assert_eq!(tool.text("gen_ai.operation.name"), "execute_tool");
    assert_eq!(tool.text("gen_ai.tool.name"), "write_todos");
    assert_eq!(tool.text("gen_ai.tool.type"), "function");
    assert!(!tool.text("gen_ai.tool.call.id").is_empty());
    assert!(!tool.attributes.contains_key("error.type"));

    // No content without capture_content.
    for span in &run {
        for key in [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
        ] {
            assert!(!span.attributes.contains_key(key), "{key} on {span:#?}");
        }
        assert!(!format!("{span:?}").contains("plan the work"), "{span:#?}");
    }
}

#[test]
fn with_capture_content_spans_hold_the_conversation_with_secrets_masked() {
    const SECRET: &str = "otel-s3cr3t-4471";
    let receiver = Receiver::start();
    let agent = format!("{AGENT}  env:\n    API_TOKEN:\n      secret: true\n");
    let script = vec![
        Turn::tool_call(
            "write_todos",
            json!({"todos": [{"content": format!("use {SECRET}"), "status": "pending"}]}),
        ),
        Turn::text("Done."),
    ];
    let stack = Stack::start_with(
        "openai",
        script,
        &telemetry_config(&receiver.endpoint(), true),
        &agent,
    );
    run_to_end(
        &stack,
        &format!("Plan it with {SECRET}"),
        Some(("API_TOKEN", SECRET)),
    );
    let spans = agent_trace(&receiver);
    let everything = format!("{spans:?}");
    assert!(
        !everything.contains(SECRET),
        "a secret in clear: {everything}"
    );

    let chats = named(&spans, "chat ");
    let first = chats.iter().find(|c| c.int("stigmer.turn") == 1).unwrap();
    let input: Value = serde_json::from_str(first.text("gen_ai.input.messages")).unwrap();
    assert_eq!(input[0]["role"], "user", "{input:#}");
    assert_eq!(
        input[0]["parts"][0]["content"], "Plan it with ****",
        "{input:#}"
    );
    assert!(
        first
            .text("gen_ai.system_instructions")
            .contains("You help."),
        "{first:#?}"
    );
    let output: Value = serde_json::from_str(first.text("gen_ai.output.messages")).unwrap();
    assert_eq!(output[0]["parts"][0]["type"], "tool_call", "{output:#}");
    let tool = named(&spans, "execute_tool ")[0];
    let arguments: Value = serde_json::from_str(tool.text("gen_ai.tool.call.arguments")).unwrap();
    assert_eq!(arguments["todos"][0]["content"], "use ****");
    assert!(!tool.text("gen_ai.tool.call.result").is_empty());
    let second = chats.iter().find(|c| c.int("stigmer.turn") == 2).unwrap();
    assert!(
        second.text("gen_ai.output.messages").contains("Done."),
        "{second:#?}"
    );
}

#[test]
fn a_workflow_run_is_a_trace_of_its_tasks() {
    let receiver = Receiver::start();
    // The standard variable, this time (the agent tests use `telemetry:` in config.yaml).
    let mut home = crate::home();
    home.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint());
    home.set_env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    home.start();
    let workflow = home.path().join("greet.sw.json");
    std::fs::write(
        &workflow,
        r#"{
  "document": {"dsl": "1.0.3", "namespace": "default", "name": "greet", "version": "1.0.0"},
  "do": [
    {"hello": {"set": {"message": "${ \"Hello \" + .name }"}}},
    {"shout": {"do": [{"upper": {"set": {"message": "${ .message | ascii_upcase }"}}}]}},
    {"never": {"if": "${ false }", "set": {"x": 1}}}
  ]
}"#,
    )
    .unwrap();
    let applied = home.run(&["apply", "-f", workflow.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    let run = home.run(&["run", "workflow/greet", "--input", r#"{"name": "otel"}"#]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("HELLO OTEL"), "{run}");

    let spans = receiver.wait_for("the workflow's spans", |spans| {
        !named(spans, "invoke_workflow ").is_empty()
    });
    let root = named(&spans, "invoke_workflow ")[0];
    assert_eq!(root.name, "invoke_workflow greet");
    assert_eq!(root.text("stigmer.workflow.name"), "greet");
    assert!(root.text("stigmer.execution_id").starts_with("wex-"));
    let task = |reference: &str| -> &Span {
        spans
            .iter()
            .find(|span| span.name == reference && span.trace_id == root.trace_id)
            .unwrap_or_else(|| panic!("no span {reference} in {spans:#?}"))
    };
    let hello = task("/do/0/hello");
    assert_eq!(hello.parent_span_id, root.span_id);
    assert_eq!(hello.text("stigmer.task.name"), "hello");
    let shout = task("/do/1/shout");
    assert_eq!(shout.parent_span_id, root.span_id);
    let upper = task("/do/1/shout/do/0/upper");
    assert_eq!(upper.parent_span_id, shout.span_id, "nested by reference");
    assert!(root.status_message.is_empty());
    let never = task("/do/2/never");
    assert_eq!(never.attributes["stigmer.task.skipped"], json!(true));
}

/// A run whose receiver is down completes as it would without telemetry: no slower than a
/// baseline run of the same script by more than the margin (export failures are dropped in
/// the background), and the stack stops promptly (the flush is bounded).
#[test]
fn a_run_completes_normally_when_the_receiver_is_down() {
    let timed = |extra: &str| -> (Duration, Duration) {
        let mut turns = script();
        turns.extend(script());
        let stack = Stack::start_with("openai", turns, extra, AGENT);
        // A first run warms the stack (workers, connections); the second is measured.
        run_to_end(&stack, "Warm up", None);
        let started = Instant::now();
        run_to_end(&stack, "Plan it", None);
        let run = started.elapsed();
        let started = Instant::now();
        let stopped = stack.home.run(&["server", "stop"]);
        assert_eq!(stopped.code, 0, "{stopped}");
        (run, started.elapsed())
    };
    let (baseline_run, baseline_stop) = timed("");
    // Nothing listens on this port.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (run, stop) = timed(&telemetry_config(&closed, true));
    eprintln!(
        "receiver down: run {run:?} (baseline {baseline_run:?}), stop {stop:?} (baseline {baseline_stop:?})"
    );
    assert!(
        run <= baseline_run + Duration::from_secs(2),
        "with the receiver down the run took {run:?}, without telemetry {baseline_run:?}"
    );
    assert!(
        stop <= baseline_stop + Duration::from_secs(5),
        "with the receiver down stopping took {stop:?}, without telemetry {baseline_stop:?}"
    );
}
