//! Workflow executions end to end: the real binary, Temporal, the workflow runner calling
//! the agent runner (scripted LLM); durability (a killed runner during an HTTP call or a
//! `wait`), cancel, and secrets kept out of Temporal's history.

use crate::runs::{Api, Event, Stack};
use serde_json::{Value, json};
use std::time::Duration;
use stigmer_proto::execution::{ExecutionEvent, ExecutionPhase};
use stigmer_proto::executions::v1::CreateExecutionRequest;
use stigmer_test::llm::Turn;
use stigmer_test::{TestHome, wait_until};

const MANIFEST: &str = r#"
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: triage
spec:
  instructions: Classify the ticket; answer JSON.
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: support
spec:
  do:
    - prepare:
        set:
          ticket: ${ .ticket }
          seen: ${ $workflow.input.ticket | length }
        export:
          as: '$context + { length: .seen }'
    - classify:
        call: agent
        with:
          agent: triage
          message: '${ "Classify: " + .ticket }'
    - route:
        switch:
          - urgent:
              when: .data.priority == "high"
              then: escalate
          - other:
              then: file
    - escalate:
        set:
          action: escalate
          answer: ${ .text }
          length: ${ $context.length }
        then: end
    - file:
        set:
          action: file
"#;

fn ended(events: &[Event]) -> bool {
    events.iter().any(|event| match &event.event {
        ExecutionEvent::PhaseChanged(changed) => changed.phase.is_terminal(),
        _ => false,
    })
}

fn run_workflow(api: &mut Api, workflow: &str, input: Value) -> (Value, Vec<Event>) {
    let created = api
        .create(CreateExecutionRequest {
            workflow: workflow.into(),
            input_json: input.to_string(),
            ..Default::default()
        })
        .expect("the workflow execution is created");
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wex-"), "{created}");
    let events = api.events_until(&id, ended);
    (api.get(&id), events)
}

#[test]
fn a_workflow_calls_an_agent_and_switches_on_its_json_answer() {
    let stack = Stack::start_with(
        "openai",
        vec![Turn::text(r#"{"priority": "high", "reason": "outage"}"#)],
        "",
        MANIFEST,
    );
    let mut api = stack.api();
    let (execution, events) = run_workflow(&mut api, "support", json!({"ticket": "site down"}));
    let status = &execution["status"];
    assert_eq!(
        status["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(
        status["output"],
        json!({
            "action": "escalate",
            "answer": "{\"priority\": \"high\", \"reason\": \"outage\"}",
            "length": 9
        })
    );
    // Progress: each task that ran started and completed, the agent call named its run,
    // and `file` never ran.
    let completed: Vec<&str> = events
        .iter()
        .filter_map(|event| match &event.event {
            ExecutionEvent::TaskCompleted(task) => Some(task.reference.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        completed,
        [
            "/do/0/prepare",
            "/do/1/classify",
            "/do/2/route",
            "/do/3/escalate"
        ]
    );
    let agent_run = events
        .iter()
        .find_map(|event| match &event.event {
            ExecutionEvent::AgentCallStarted(call) => Some(call.execution_id.clone()),
            _ => None,
        })
        .expect("the agent call names its run");
    let child = api.get(&agent_run);
    assert_eq!(child["status"]["phase"], json!("completed"), "{child:#}");
    assert_eq!(
        child["spec"]["message"],
        json!("Classify: site down"),
        "{child:#}"
    );
    let phases: Vec<ExecutionPhase> = crate::runs::phases(&events);
    assert_eq!(phases.last(), Some(&ExecutionPhase::Completed));
}

#[test]
fn a_raised_error_fails_the_execution_with_the_error_object() {
    let stack = Stack::start_with(
        "openai",
        Vec::new(),
        "",
        r#"
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: refuse
spec:
  do:
    - check:
        switch:
          - bad: { when: '.amount > 100', then: reject }
          - ok: { then: end }
    - reject:
        raise:
          error:
            type: https://example.com/errors/limit
            status: 422
            title: Over the limit
            detail: ${ "amount \(.amount) is over 100" }
"#,
    );
    let mut api = stack.api();
    let (execution, _) = run_workflow(&mut api, "refuse", json!({"amount": 250}));
    let status = &execution["status"];
    assert_eq!(status["phase"], json!("failed"), "{execution:#}");
    assert_eq!(
        status["error"],
        json!({
            "type": "https://example.com/errors/limit",
            "status": 422,
            "instance": "/do/1/reject",
            "title": "Over the limit",
            "detail": "amount 250 is over 100"
        })
    );
    assert_eq!(status["reason"], json!("amount 250 is over 100"));
}

/// A local HTTP/1.1 server that records every request and holds those whose path starts with
/// `/hold` open until [`HeldServer::release`] (noticing when the client drops them); the
/// others, and held ones once released, are answered at once with JSON naming the request.
struct HeldServer {
    address: std::net::SocketAddr,
    shared: std::sync::Arc<HeldShared>,
}

/// One request as [`HeldServer`] saw it.
#[derive(Clone, Debug)]
struct SeenRequest {
    method: String,
    path: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Default)]
struct HeldShared {
    /// In arrival order.
    requests: std::sync::Mutex<Vec<SeenRequest>>,
    released: std::sync::atomic::AtomicBool,
    /// Held requests whose client closed the connection before an answer.
    dropped: std::sync::atomic::AtomicUsize,
    stop: std::sync::atomic::AtomicBool,
}

impl HeldServer {
    fn start() -> HeldServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let shared = std::sync::Arc::new(HeldShared::default());
        let state = shared.clone();
        std::thread::spawn(move || {
            while !state.stop.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        std::thread::spawn(move || serve_connection(stream, &state));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HeldServer { address, shared }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn release(&self) {
        self.shared
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<SeenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests came for `method` `path`.
    fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.method == method && request.path == path)
            .count()
    }

    fn dropped(&self) -> usize {
        self.shared
            .dropped
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for HeldServer {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.release();
    }
}

/// Reads one request, records it, answers it (after holding it, for `/hold…`) and closes.
fn serve_connection(mut stream: std::net::TcpStream, shared: &HeldShared) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(_) if std::time::Instant::now() < deadline => continue,
            Err(_) => return,
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(_) if std::time::Instant::now() < deadline => continue,
            Err(_) => return,
        }
    }
    let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned();
    let authorization = headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.clone());
    let number = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(SeenRequest {
            method: method.clone(),
            path: path.clone(),
            headers,
            body,
        });
        requests.len()
    };
    if path.starts_with("/hold") {
        // Held: a read that returns 0 (or fails for good) means the client went away.
        while !shared.released.load(Ordering::SeqCst) {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
    let reply = json!({
        "method": method,
        "path": path,
        "number": number,
        "authorization": authorization,
    })
    .to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
}

/// A stack with `workflows` applied and no agent (the scripted LLM is never asked).
fn workflow_stack(workflows: &str) -> Stack {
    Stack::start_with("openai", Vec::new(), "", workflows)
}

/// A workflow named `name` whose only task is the `call: http` `with`.
fn http_workflow(name: &str, with: &str) -> String {
    format!(
        "apiVersion: agentic.stigmer.ai/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n  do:\n    - send:\n        call: http\n        with:\n{with}"
    )
}

fn start(api: &mut Api, workflow: &str, input: Value) -> String {
    start_with_secrets(api, workflow, input, &[])
}

fn start_with_secrets(
    api: &mut Api,
    workflow: &str,
    input: Value,
    secrets: &[(&str, &str)],
) -> String {
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
    created["metadata"]["name"].as_str().unwrap().to_owned()
}

/// Kills the stack's workflow runner with SIGKILL; returns its pid.
fn kill_workflow_runner(stack: &Stack) -> u32 {
    let pid = TestHome::component(&stack.home.status(), "workflow-runner")["pid"]
        .as_u64()
        .expect("the workflow runner runs") as u32;
    stigmer_test::signal(pid, nix::sys::signal::Signal::SIGKILL);
    pid
}

/// Waits for the execution to end; returns it and its whole log.
fn finish(api: &mut Api, id: &str) -> (Value, Vec<Event>) {
    let events = api.events_until(id, ended);
    (api.get(id), events)
}

#[test]
fn a_runner_killed_during_a_get_is_replaced_and_the_get_is_sent_again() {
    let server = HeldServer::start();
    let stack = workflow_stack(&http_workflow(
        "fetch",
        &format!(
            "          method: get\n          endpoint: {}/hold/item\n",
            server.url()
        ),
    ));
    let mut api = stack.api();
    let id = start(&mut api, "fetch", json!({}));
    wait_until(Duration::from_secs(60), "the GET to arrive", || {
        (server.count("GET", "/hold/item") == 1).then_some(())
    });
    let killed = kill_workflow_runner(&stack);
    wait_until(
        Duration::from_secs(10),
        "the held GET to be dropped",
        || (server.dropped() == 1).then_some(()),
    );
    server.release();
    let (execution, events) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}\n{}",
        stack.home.log("workflow-runner")
    );
    assert_eq!(server.count("GET", "/hold/item"), 2);
    assert_eq!(execution["status"]["output"]["number"], json!(2));
    let runner = TestHome::component(&stack.home.status(), "workflow-runner");
    assert_ne!(runner["pid"].as_u64(), Some(u64::from(killed)), "{runner}");
}

#[test]
fn a_post_whose_response_was_recorded_is_not_sent_again_by_the_next_runner() {
    let server = HeldServer::start();
    let stack = workflow_stack(&http_workflow(
        "order",
        &format!(
            "          method: post\n          endpoint: {}/orders\n          body:\n            item: ${{ .item }}\n",
            server.url()
        ),
    ));
    // The runner reads its breakpoints as it starts: restart it with the breakpoint set.
    let breakpoints = stack.home.path().join("test-breakpoints");
    std::fs::create_dir_all(&breakpoints).unwrap();
    std::fs::write(breakpoints.join("pause-after-http-record"), b"").unwrap();
    kill_workflow_runner(&stack);
    wait_until(Duration::from_secs(60), "a new workflow runner", || {
        let runner = TestHome::component(&stack.home.status(), "workflow-runner");
        (runner["state"] == "running" && runner["restarts"] == 1).then_some(())
    });
    let mut api = stack.api();
    let id = start(&mut api, "order", json!({"item": "book"}));
    wait_until(
        Duration::from_secs(60),
        "the call to pause after its outcome was recorded",
        || {
            breakpoints
                .join("paused-after-http-record")
                .exists()
                .then_some(())
        },
    );
    assert_eq!(server.count("POST", "/orders"), 1);
    kill_workflow_runner(&stack);
    let (execution, events) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}\n{}",
        stack.home.log("workflow-runner")
    );
    assert_eq!(
        execution["status"]["output"],
        json!({"method": "POST", "path": "/orders", "number": 1, "authorization": null})
    );
    assert_eq!(
        server.count("POST", "/orders"),
        1,
        "{:?}",
        server.requests()
    );
    assert_eq!(server.requests()[0].body, r#"{"item":"book"}"#);
}

#[test]
fn a_post_interrupted_after_sending_is_reported_not_sent_again() {
    let server = HeldServer::start();
    let stack = workflow_stack(&http_workflow(
        "order",
        &format!(
            "          method: post\n          endpoint: {}/hold/orders\n          body: {{}}\n",
            server.url()
        ),
    ));
    let mut api = stack.api();
    let id = start(&mut api, "order", json!({}));
    wait_until(Duration::from_secs(60), "the POST to arrive", || {
        (server.count("POST", "/hold/orders") == 1).then_some(())
    });
    kill_workflow_runner(&stack);
    wait_until(
        Duration::from_secs(10),
        "the held POST to be dropped",
        || (server.dropped() == 1).then_some(()),
    );
    server.release();
    let (execution, events) = finish(&mut api, &id);
    let status = &execution["status"];
    assert_eq!(
        status["phase"],
        json!("failed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(
        status["error"]["type"],
        json!("https://serverlessworkflow.io/spec/1.0.0/errors/communication")
    );
    assert_eq!(status["error"]["instance"], json!("/do/0/send"));
    let detail = status["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("interrupted after it was sent; not repeated (POST http://127.0.0.1:"),
        "{detail}"
    );
    assert_eq!(server.count("POST", "/hold/orders"), 1);
}

#[test]
fn a_runner_killed_during_a_wait_is_replaced_and_the_wait_ends() {
    let stack = workflow_stack(
        "apiVersion: agentic.stigmer.ai/v1\nkind: Workflow\nmetadata:\n  name: pause\nspec:\n  do:\n    - rest:\n        wait: PT3S\n    - done:\n        set:\n          rested: true\n",
    );
    let mut api = stack.api();
    let id = start(&mut api, "pause", json!({}));
    api.events_until(&id, |events| {
        crate::runs::phases(events).contains(&ExecutionPhase::Waiting)
    });
    kill_workflow_runner(&stack);
    let (execution, events) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(execution["status"]["output"], json!({"rested": true}));
    let phases = crate::runs::phases(&events);
    let waiting = phases
        .iter()
        .position(|phase| *phase == ExecutionPhase::Waiting)
        .unwrap();
    // Back to `running` when the timer fires, then `completed`.
    assert_eq!(
        phases[waiting + 1..],
        [ExecutionPhase::Running, ExecutionPhase::Completed],
        "{phases:?}"
    );
}

#[test]
fn a_cancel_reaches_a_running_http_call_within_seconds() {
    let server = HeldServer::start();
    let stack = workflow_stack(&http_workflow(
        "fetch",
        &format!(
            "          method: get\n          endpoint: {}/hold/slow\n",
            server.url()
        ),
    ));
    let mut api = stack.api();
    let id = start(&mut api, "fetch", json!({}));
    wait_until(Duration::from_secs(60), "the GET to arrive", || {
        (server.count("GET", "/hold/slow") == 1).then_some(())
    });
    let started = std::time::Instant::now();
    let cancelled = stack.home.run(&["execution", "cancel", &id]);
    assert_eq!(cancelled.code, 0, "{cancelled}");
    let (execution, _) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["phase"],
        json!("cancelled"),
        "{execution:#}"
    );
    wait_until(Duration::from_secs(5), "the held GET to be dropped", || {
        (server.dropped() == 1).then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.count("GET", "/hold/slow"), 1);
}

#[test]
fn secret_values_reach_the_server_but_never_the_history_or_the_event_log() {
    let secret = "s3cr3t-token-value-4711";
    let server = HeldServer::start();
    let stack = workflow_stack(&http_workflow(
        "authorized",
        &format!(
            "          method: get\n          endpoint: {}/me\n          headers:\n            Authorization: ${{ \"Bearer \" + $secrets.TOKEN }}\n",
            server.url()
        ),
    ));
    let mut api = stack.api();
    let id = start_with_secrets(&mut api, "authorized", json!({}), &[("TOKEN", secret)]);
    let (execution, events) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}"
    );
    // The server saw the real value; the output it echoed shows the placeholder.
    let headers = &server.requests()[0].headers;
    assert!(
        headers.contains(&("authorization".to_owned(), format!("Bearer {secret}"))),
        "{headers:?}"
    );
    assert_eq!(
        execution["status"]["output"]["authorization"],
        json!("Bearer ⟨secret:TOKEN⟩")
    );

    let state = stack.home.state().unwrap();
    let address = state["temporal_address"].as_str().unwrap();
    let shown = std::process::Command::new("temporal")
        .args([
            "workflow",
            "show",
            "--workflow-id",
            &id,
            "--address",
            address,
        ])
        .args(["--namespace", "default", "-o", "json"])
        .output()
        .expect("the temporal CLI runs");
    assert!(shown.status.success(), "{shown:?}");
    let history = history_text(&String::from_utf8_lossy(&shown.stdout));
    assert!(history.contains("⟨secret:TOKEN⟩"), "{history}");
    assert!(!history.contains(secret), "{history}");

    let log = format!("{events:?}");
    assert!(!log.contains(secret), "{log}");
    assert!(log.contains("⟨secret:TOKEN⟩"), "{log}");
    for component in ["workflow-runner", "server"] {
        assert!(!stack.home.log(component).contains(secret), "{component}");
    }
}

/// A workflow history as JSON text, with every payload's base64 `data` decoded next to it.
fn history_text(json_text: &str) -> String {
    fn walk(value: &Value, decoded: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(data)) = map.get("data")
                    && let Some(bytes) = base64_decode(data)
                {
                    decoded.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                map.values().for_each(|value| walk(value, decoded));
            }
            Value::Array(items) => items.iter().for_each(|value| walk(value, decoded)),
            _ => {}
        }
    }
    let value: Value = serde_json::from_str(json_text).expect("the history is JSON");
    let mut decoded = vec![json_text.to_owned()];
    walk(&value, &mut decoded);
    decoded.join("\n")
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for byte in text.bytes().filter(|byte| *byte != b'=') {
        let value = ALPHABET.iter().position(|known| *known == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(bytes)
}

#[test]
fn an_input_that_fails_the_schema_is_refused_before_anything_runs() {
    let stack = workflow_stack(
        r#"
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: typed
spec:
  input:
    schema:
      format: json
      document:
        type: object
        required: [name]
        properties:
          name: { type: string }
  do:
    - hello:
        set:
          greeting: '${ "Hello " + .name }'
"#,
    );
    let mut api = stack.api();
    let refused = api
        .create(CreateExecutionRequest {
            workflow: "typed".into(),
            input_json: json!({"name": 7}).to_string(),
            ..Default::default()
        })
        .expect_err("an input of the wrong type is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("the input does not fit workflow \"typed\": "),
        "{refused:?}"
    );
    assert!(refused.message().contains("string"), "{refused:?}");
    // Nothing was created; a good input runs.
    let listed = stack.home.run(&["execution", "list", "-o", "json"]);
    assert!(!listed.stdout.contains("wex-"), "{listed}");
    let (execution, _) = run_workflow(&mut api, "typed", json!({"name": "Ada"}));
    assert_eq!(
        execution["status"]["output"],
        json!({"greeting": "Hello Ada"})
    );
}

#[test]
fn a_fork_of_three_calls_joins_them_in_order_or_takes_the_first_to_answer() {
    let server = HeldServer::start();
    let branch = |name: &str, path: &str| {
        format!(
            "            - {name}:\n                call: http\n                with:\n                  method: get\n                  endpoint: {}{path}\n                output:\n                  as: .path\n",
            server.url()
        )
    };
    let fork = |name: &str, compete: bool, paths: [&str; 3]| {
        format!(
            "apiVersion: agentic.stigmer.ai/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n  do:\n    - calls:\n        fork:\n          compete: {compete}\n          branches:\n{}{}{}",
            branch("one", paths[0]),
            branch("two", paths[1]),
            branch("three", paths[2]),
        )
    };
    let stack = workflow_stack(&format!(
        "{}---\n{}",
        fork("all", false, ["/a", "/b", "/c"]),
        fork("race", true, ["/hold/x", "/fast", "/hold/y"]),
    ));
    let mut api = stack.api();
    let (all, events) = run_workflow(&mut api, "all", json!({}));
    assert_eq!(
        all["status"]["output"],
        json!(["/a", "/b", "/c"]),
        "{all:#}\n{events:#?}"
    );
    // The first to answer wins; the two held calls are cancelled with the fork.
    let (race, events) = run_workflow(&mut api, "race", json!({}));
    assert_eq!(
        race["status"]["output"],
        json!("/fast"),
        "{race:#}\n{events:#?}"
    );
    assert_eq!(server.count("GET", "/fast"), 1);
    wait_until(
        Duration::from_secs(30),
        "the losing calls to be dropped",
        || (server.dropped() == 2).then_some(()),
    );
}

#[test]
fn a_failed_agent_run_is_a_runtime_error_of_its_task() {
    let stack = Stack::start_with(
        "openai",
        vec![Turn {
            fault: Some(stigmer_test::llm::Fault::Status(
                401,
                "invalid api key".into(),
            )),
            ..Turn::default()
        }],
        "",
        r#"
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: broken
spec:
  instructions: Answer.
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: delegate
spec:
  do:
    - ask:
        call: agent
        with:
          agent: broken
          message: Hello
"#,
    );
    let mut api = stack.api();
    let (execution, events) = run_workflow(&mut api, "delegate", json!({}));
    let status = &execution["status"];
    assert_eq!(
        status["phase"],
        json!("failed"),
        "{execution:#}\n{events:#?}"
    );
    let error = &status["error"];
    assert_eq!(
        error["type"],
        json!("https://serverlessworkflow.io/spec/1.0.0/errors/runtime"),
        "{error:#}"
    );
    assert_eq!(error["instance"], json!("/do/0/ask"), "{error:#}");
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("agent \"broken\""),
        "{error:#}"
    );
}

#[test]
fn a_workflow_runner_killed_during_a_child_agent_run_is_replaced_and_the_run_completes() {
    let stack = Stack::start_with(
        "openai",
        vec![Turn {
            fault: Some(stigmer_test::llm::Fault::Delay(Duration::from_secs(3))),
            ..Turn::text("slow but sure")
        }],
        "",
        r#"
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: slow
spec:
  instructions: Answer.
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: delegate
spec:
  do:
    - ask:
        call: agent
        with:
          agent: slow
          message: Hello
    - keep:
        set:
          answer: ${ .text }
"#,
    );
    let mut api = stack.api();
    let id = start(&mut api, "delegate", json!({}));
    api.events_until(&id, |events| {
        events
            .iter()
            .any(|event| matches!(event.event, ExecutionEvent::AgentCallStarted(_)))
    });
    let killed = kill_workflow_runner(&stack);
    let (execution, events) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["phase"],
        json!("completed"),
        "{execution:#}\n{events:#?}"
    );
    assert_eq!(
        execution["status"]["output"],
        json!({"answer": "slow but sure"})
    );
    // A new runner finished it, and the agent ran once.
    let now = TestHome::component(&stack.home.status(), "workflow-runner")["pid"]
        .as_u64()
        .unwrap() as u32;
    assert_ne!(now, killed);
    assert_eq!(stack.llm.requests().len(), 1);
}

#[test]
fn a_two_agent_pipeline_switches_on_the_first_agents_json_answer() {
    let stack = Stack::start_with(
        "openai",
        vec![
            Turn::text(r#"{"language": "fr", "urgent": true}"#),
            Turn::text("Bonjour ! Nous regardons votre ticket tout de suite."),
        ],
        "",
        r#"
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: triage
spec:
  instructions: 'Answer JSON: {"language": "<code>", "urgent": <bool>}'
---
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: responder
spec:
  instructions: Reply to the customer.
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: support-pipeline
spec:
  do:
    - classify:
        call: agent
        with:
          agent: triage
          message: ${ .ticket }
        export:
          as: '{triage: .data}'
    - route:
        switch:
          - urgent:
              when: .data.urgent
              then: reply
          - later:
              then: queue
    - queue:
        set: { queued: true }
        then: end
    - reply:
        call: agent
        with:
          agent: responder
          message: '${ "Reply in " + $context.triage.language + " to: " + $workflow.input.ticket }'
    - done:
        set:
          language: ${ $context.triage.language }
          reply: ${ .text }
"#,
    );
    let mut api = stack.api();
    let (execution, events) = run_workflow(
        &mut api,
        "support-pipeline",
        json!({"ticket": "Le site est en panne"}),
    );
    assert_eq!(
        execution["status"]["output"],
        json!({
            "language": "fr",
            "reply": "Bonjour ! Nous regardons votre ticket tout de suite."
        }),
        "{execution:#}\n{events:#?}"
    );
    // The second agent was asked with what the first one answered.
    let requests = stack.llm.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .body
            .to_string()
            .contains("Reply in fr to: Le site est en panne"),
        "{:#}",
        requests[1].body
    );
}

#[test]
fn a_running_execution_keeps_the_definition_it_started_with() {
    let definition = |greeting: &str| {
        format!(
            "apiVersion: agentic.stigmer.ai/v1\nkind: Workflow\nmetadata:\n  name: versioned\nspec:\n  do:\n    - pause:\n        wait: {{ seconds: 2 }}\n    - say:\n        set:\n          greeting: {greeting}\n"
        )
    };
    let stack = workflow_stack(&definition("first"));
    let mut api = stack.api();
    let id = start(&mut api, "versioned", json!({}));
    api.events_until(&id, |events| {
        crate::runs::phases(events).contains(&ExecutionPhase::Waiting)
    });
    let path = stack.home.path().join("versioned.yaml");
    std::fs::write(&path, definition("second")).unwrap();
    let applied = stack.home.run(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    let (execution, _) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["output"],
        json!({"greeting": "first"}),
        "{execution:#}"
    );
    // A new execution runs the new definition.
    let (again, _) = run_workflow(&mut api, "versioned", json!({}));
    assert_eq!(again["status"]["output"], json!({"greeting": "second"}));
}

#[test]
fn a_cancel_reaches_a_running_child_agent_run() {
    let stack = Stack::start_with(
        "openai",
        vec![Turn {
            fault: Some(stigmer_test::llm::Fault::Hang),
            ..Turn::default()
        }],
        "",
        r#"
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: stuck
spec:
  instructions: Answer.
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: delegate
spec:
  do:
    - ask:
        call: agent
        with:
          agent: stuck
          message: Hello
"#,
    );
    let mut api = stack.api();
    let id = start(&mut api, "delegate", json!({}));
    let events = api.events_until(&id, |events| {
        events
            .iter()
            .any(|event| matches!(event.event, ExecutionEvent::AgentCallStarted(_)))
    });
    let child = events
        .iter()
        .find_map(|event| match &event.event {
            ExecutionEvent::AgentCallStarted(call) => Some(call.execution_id.clone()),
            _ => None,
        })
        .unwrap();
    // The agent's model turn is under way (the scripted model never answers).
    wait_until(Duration::from_secs(60), "the model to be asked", || {
        (!stack.llm.requests().is_empty()).then_some(())
    });
    let cancelled = stack.home.run(&["execution", "cancel", &id]);
    assert_eq!(cancelled.code, 0, "{cancelled}");
    let (execution, _) = finish(&mut api, &id);
    assert_eq!(
        execution["status"]["phase"],
        json!("cancelled"),
        "{execution:#}"
    );
    wait_until(Duration::from_secs(30), "the agent run to end", || {
        let agent = api.get(&child);
        (agent["status"]["phase"] != json!("running")
            && agent["status"]["phase"] != json!("pending"))
        .then_some(agent)
    });
    assert_eq!(api.get(&child)["status"]["phase"], json!("cancelled"));
}
