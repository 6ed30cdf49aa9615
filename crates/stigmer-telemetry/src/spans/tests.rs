use super::*;
use std::time::Duration;
use stigmer_proto::execution::{TaskCompleted, TaskFailed, TaskSkipped, TaskStarted, Usage};

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn text(record: &SpanRecord, key: &str) -> String {
    record
        .attribute(key)
        .unwrap_or_else(|| panic!("no {key} on {}", record.name))
        .as_str()
        .into_owned()
}

fn int(record: &SpanRecord, key: &str) -> i64 {
    match record.attribute(key) {
        Some(opentelemetry::Value::I64(value)) => *value,
        other => panic!("{key} is {other:?}"),
    }
}

fn call(start: SystemTime) -> ChatCall<'static> {
    ChatCall {
        execution_id: "aex-1",
        provider: "openai",
        model: "gpt-x",
        base_url: "http://127.0.0.1:8080/v1",
        turn: 2,
        attempt: 1,
        start,
        end: start + Duration::from_millis(300),
    }
}

#[test]
fn a_chat_span_carries_model_usage_and_server_and_hangs_from_the_root() {
    let answered = ChatOutcome::Answered {
        input_tokens: 120,
        output_tokens: 7,
        finish_reason: None,
        tool_calls: 1,
    };
    let span = chat(&call(at(0)), &answered, None);
    assert_eq!(span.name, "chat gpt-x");
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.trace_id, ids::trace_id("aex-1"));
    assert_eq!(span.parent_span_id, ids::root_span_id("aex-1"));
    assert_eq!(text(&span, "gen_ai.operation.name"), "chat");
    assert_eq!(text(&span, "gen_ai.provider.name"), "openai");
    assert_eq!(text(&span, "gen_ai.request.model"), "gpt-x");
    assert_eq!(text(&span, "gen_ai.response.model"), "gpt-x");
    assert_eq!(int(&span, "gen_ai.usage.input_tokens"), 120);
    assert_eq!(int(&span, "gen_ai.usage.output_tokens"), 7);
    assert_eq!(
        text(&span, "gen_ai.response.finish_reasons"),
        "[\"tool_call\"]"
    );
    assert_eq!(text(&span, "server.address"), "127.0.0.1");
    assert_eq!(int(&span, "server.port"), 8080);
    assert_eq!(int(&span, "stigmer.turn"), 2);
    assert_eq!(int(&span, "stigmer.attempt"), 1);
    assert!(span.attribute("gen_ai.input.messages").is_none());
    assert_eq!(span.status, Status::Unset);

    let failed = ChatOutcome::Failed {
        error_type: "retryable",
        message: "HTTP 503",
    };
    let span = chat(&call(at(0)), &failed, None);
    assert_eq!(text(&span, "error.type"), "retryable");
    assert_eq!(span.status, Status::error("HTTP 503"));
    assert!(span.attribute("gen_ai.usage.input_tokens").is_none());
    // Two attempts are two spans of the same trace.
    let again = chat(&call(at(5)), &failed, None);
    assert_eq!(again.trace_id, span.trace_id);
    assert_ne!(again.span_id, span.span_id);
}

#[test]
fn content_is_on_spans_only_when_given() {
    let answered = ChatOutcome::Answered {
        input_tokens: 1,
        output_tokens: 1,
        finish_reason: Some("stop"),
        tool_calls: 0,
    };
    let content = ChatContent {
        system_instructions: Some(json!([text_part("Be brief.")])),
        input_messages: json!([message("user", vec![text_part("hi ****")])]),
        output_messages: Some(json!([message("assistant", vec![text_part("hello")])])),
    };
    let span = chat(&call(at(0)), &answered, Some(content));
    // Compared as JSON: the key order depends on serde_json's features in the build.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text(&span, "gen_ai.input.messages")).unwrap(),
        json!([{"parts": [{"content": "hi ****", "type": "text"}], "role": "user"}])
    );
    assert!(text(&span, "gen_ai.system_instructions").contains("Be brief."));
    assert!(text(&span, "gen_ai.output.messages").contains("hello"));
    assert_eq!(text(&span, "gen_ai.response.finish_reasons"), "[\"stop\"]");

    let run = ToolRun {
        execution_id: "aex-1",
        call_id: "call-1",
        name: "read_file",
        tool_type: ToolType::Function,
        turn: 1,
        attempt: 1,
        start: at(0),
        end: at(1),
        is_error: false,
    };
    let span = execute_tool(&run, None);
    assert_eq!(span.name, "execute_tool read_file");
    assert_eq!(span.parent_span_id, ids::root_span_id("aex-1"));
    assert_eq!(text(&span, "gen_ai.tool.name"), "read_file");
    assert_eq!(text(&span, "gen_ai.tool.call.id"), "call-1");
    assert_eq!(text(&span, "gen_ai.tool.type"), "function");
    assert!(span.attribute("gen_ai.tool.call.arguments").is_none());
    assert!(span.attribute("error.type").is_none());
    let failed = ToolRun {
        is_error: true,
        tool_type: ToolType::Extension,
        ..run
    };
    let span = execute_tool(
        &failed,
        Some((json!({"path": "a"}), "Error: no such file".into())),
    );
    assert_eq!(text(&span, "gen_ai.tool.type"), "extension");
    assert_eq!(text(&span, "error.type"), "tool_error");
    assert_eq!(text(&span, "gen_ai.tool.call.arguments"), r#"{"path":"a"}"#);
    assert_eq!(
        text(&span, "gen_ai.tool.call.result"),
        "Error: no such file"
    );
}

fn usage(turn: u32, input: u64, output: u64) -> ExecutionEvent {
    Usage {
        turn,
        input_tokens: input,
        output_tokens: output,
        model: Some("qwen3:8b".into()),
        provider: Some("ollama".into()),
        parent: None,
    }
    .into()
}

#[test]
fn the_agent_root_span_adds_up_usage_events() {
    let end = ExecutionEnd {
        execution_id: "aex-7",
        runnable: Runnable::Agent {
            agent: "helper",
            session: "ses-1",
        },
        phase: "completed",
        reason: None,
        parent_execution_id: None,
        start: at(0),
        end: at(9),
    };
    // Turn 1 retried after its usage was recorded: counted once.
    let events = vec![
        (at(1), usage(1, 100, 10)),
        (at(2), usage(1, 100, 10)),
        (at(3), usage(2, 150, 5)),
    ];
    let spans = execution(&end, &events);
    assert_eq!(spans.len(), 1);
    let root = &spans[0];
    assert_eq!(root.name, "invoke_agent helper");
    assert_eq!(root.span_id, ids::root_span_id("aex-7"));
    assert_eq!(root.trace_id, ids::trace_id("aex-7"));
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_eq!((root.start, root.end), (at(0), at(9)));
    assert_eq!(text(root, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(text(root, "gen_ai.agent.name"), "helper");
    assert_eq!(text(root, "gen_ai.conversation.id"), "ses-1");
    assert_eq!(text(root, "gen_ai.provider.name"), "ollama");
    assert_eq!(text(root, "gen_ai.request.model"), "qwen3:8b");
    assert_eq!(int(root, "gen_ai.usage.input_tokens"), 250);
    assert_eq!(int(root, "gen_ai.usage.output_tokens"), 15);
    assert_eq!(int(root, "stigmer.turns"), 2);
    assert_eq!(text(root, "stigmer.execution_id"), "aex-7");
    assert_eq!(root.status, Status::Ok);
    assert!(root.links.is_empty());

    let failed = ExecutionEnd {
        phase: "failed",
        reason: Some("the model is gone"),
        parent_execution_id: Some("aex-1"),
        ..end
    };
    let root = &execution(&failed, &[])[0];
    assert_eq!(root.status, Status::error("the model is gone"));
    assert_eq!(text(root, "error.type"), "failed");
    assert_eq!(text(root, "stigmer.parent_execution_id"), "aex-1");
    assert_eq!(root.links, vec![ids::root_context("aex-1")]);
}

fn started(reference: &str) -> ExecutionEvent {
    TaskStarted {
        reference: reference.into(),
        name: reference.rsplit('/').next().unwrap().into(),
        parent: None,
    }
    .into()
}

fn completed(reference: &str) -> ExecutionEvent {
    TaskCompleted {
        reference: reference.into(),
        name: reference.rsplit('/').next().unwrap().into(),
        output: Value::Null,
        parent: None,
    }
    .into()
}

#[test]
fn workflow_tasks_nest_by_reference() {
    let end = ExecutionEnd {
        execution_id: "wex-1",
        runnable: Runnable::Workflow { workflow: "greet" },
        phase: "failed",
        reason: Some("boom"),
        parent_execution_id: None,
        start: at(0),
        end: at(20),
    };
    let events = vec![
        (at(1), started("/do/0/first")),
        (at(2), completed("/do/0/first")),
        (at(3), started("/do/1/loop")),
        (at(3), started("/do/1/loop/for/do/0/each")),
        (at(4), completed("/do/1/loop/for/do/0/each")),
        (at(4), started("/do/1/loop/for/do/0/each")),
        (at(5), completed("/do/1/loop/for/do/0/each")),
        (at(6), completed("/do/1/loop")),
        (
            at(7),
            TaskSkipped {
                reference: "/do/2/maybe".into(),
                name: "maybe".into(),
                parent: None,
            }
            .into(),
        ),
        (at(8), started("/do/3/call")),
        (
            at(9),
            TaskFailed {
                reference: "/do/3/call".into(),
                name: "call".into(),
                error: json!({"type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication", "status": 503, "title": "Service Unavailable"}),
                parent: None,
            }
            .into(),
        ),
        (at(10), started("/do/4/never")),
    ];
    let spans = execution(&end, &events);
    let root = &spans[0];
    assert_eq!(root.name, "invoke_workflow greet");
    assert_eq!(text(root, "stigmer.workflow.name"), "greet");
    assert_eq!(root.status, Status::error("boom"));
    let by_name =
        |name: &str| -> Vec<&SpanRecord> { spans.iter().filter(|s| s.name == name).collect() };
    let first = by_name("/do/0/first")[0];
    assert_eq!(first.parent_span_id, root.span_id);
    assert_eq!((first.start, first.end), (at(1), at(2)));
    assert_eq!(text(first, "stigmer.task.reference"), "/do/0/first");
    assert_eq!(text(first, "stigmer.task.name"), "first");
    let outer = by_name("/do/1/loop")[0];
    let each = by_name("/do/1/loop/for/do/0/each");
    assert_eq!(each.len(), 2, "one span per iteration");
    assert!(each.iter().all(|span| span.parent_span_id == outer.span_id));
    assert_ne!(each[0].span_id, each[1].span_id);
    let skipped = by_name("/do/2/maybe")[0];
    assert_eq!(skipped.start, skipped.end);
    assert!(skipped.attribute("stigmer.task.skipped").is_some());
    let call = by_name("/do/3/call")[0];
    assert_eq!(text(call, "error.type"), "communication");
    assert_eq!(int(call, "stigmer.task.error.status"), 503);
    assert_eq!(call.status, Status::error("Service Unavailable"));
    let never = by_name("/do/4/never")[0];
    assert_eq!(never.end, at(20));
    assert!(
        spans
            .iter()
            .all(|span| span.trace_id == ids::trace_id("wex-1"))
    );
    // Derived ids: the same log gives the same spans.
    assert_eq!(execution(&end, &events), spans);
}

#[test]
fn urls_and_times_are_read() {
    assert_eq!(
        host_and_port("http://localhost:11434"),
        Some(("localhost".into(), 11434))
    );
    assert_eq!(
        host_and_port("https://api.openai.com/v1"),
        Some(("api.openai.com".into(), 443))
    );
    assert_eq!(host_and_port("http://[::1]:9/x"), Some(("::1".into(), 9)));
    assert_eq!(host_and_port("nonsense"), None);
    assert_eq!(
        parse_time("1970-01-01T00:00:01.250Z"),
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_250))
    );
    assert!(parse_time("yesterday").is_none());
}
