//! Agent tools in real runs: real MCP servers (`@modelcontextprotocol/server-everything` over
//! stdio and streamable HTTP), the shell, skills, and what a cancel or a killed runner leaves.

use crate::runs::{Stack, phases};
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;
use stigmer_proto::execution::ExecutionEvent;
use stigmer_proto::execution::ExecutionPhase::{Cancelled, Completed, Pending, Running};
use stigmer_test::llm::{ScriptedLlm, Turn};
use stigmer_test::mcp::{EverythingHttp, everything_script};
use stigmer_test::{TestHome, wait_until};

/// A model turn that calls several tools at once.
fn calls(calls: &[(&str, Value)]) -> Turn {
    Turn {
        tool_calls: calls
            .iter()
            .map(|(name, arguments)| (name.to_string(), arguments.clone()))
            .collect(),
        input_tokens: 30,
        output_tokens: 10,
        ..Turn::default()
    }
}

/// A stack with the scripted LLM whose resources come from `manifest` and the skill folders.
fn stack(script: Vec<Turn>, manifest: &str, skills: &[(&str, &str)]) -> Stack {
    stack_with("openai", script, manifest, skills)
}

/// [`stack`] with the scripted LLM speaking as `provider` (`openai`, `anthropic`, `ollama`).
fn stack_with(provider: &str, script: Vec<Turn>, manifest: &str, skills: &[(&str, &str)]) -> Stack {
    let llm = ScriptedLlm::start(script);
    let mut home = crate::home();
    let base_url = match provider {
        "ollama" => llm.base_url(),
        _ => llm.v1_url(),
    };
    home.write_config(&format!(
        "{}llm:\n  provider: {provider}\n  model: scripted\n  base_url: {base_url}\n",
        stigmer_test::TEST_CONFIG,
    ));
    home.set_env("OPENAI_API_KEY", "sk-test-openai");
    home.set_env("ANTHROPIC_API_KEY", "sk-test-anthropic");
    home.start();
    let path = home.path().join("agents.yaml");
    std::fs::write(&path, manifest).unwrap();
    let mut args = vec!["apply".to_owned()];
    for (name, body) in skills {
        let folder = home.path().join("skills").join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("SKILL.md"),
            format!("---\nname: {name}\ndescription: How to {name}\n---\n{body}\n"),
        )
        .unwrap();
        args.extend(["-f".to_owned(), folder.display().to_string()]);
    }
    args.extend(["-f".to_owned(), path.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let applied = home.run(&args);
    assert_eq!(applied.code, 0, "{applied}");
    Stack { home, llm }
}

/// An McpServer running server-everything over stdio, marked so that its processes can be
/// found by their environment.
pub(crate) fn everything_stdio(name: &str, marker: &str, extra_env: &str) -> String {
    format!(
        "apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata:\n  name: {name}\nspec:\n  stdio:\n    command: node\n    args: [{script}, stdio]\n    env:\n      STIGMER_TEST_MARKER: {marker}\n{extra_env}---\n",
        script = everything_script().display()
    )
}

/// Processes whose environment holds `STIGMER_TEST_MARKER=<marker>`.
pub(crate) fn marked_processes(marker: &str) -> Vec<u32> {
    let wanted = format!("STIGMER_TEST_MARKER={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|variable| variable == wanted.as_bytes())
            })
        })
        .collect()
}

/// Processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

pub(crate) fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        stigmer_test::free_port()
    )
}

/// The workspace of the stack's one session.
fn the_workspace(stack: &Stack) -> std::path::PathBuf {
    let sessions: Vec<_> = std::fs::read_dir(stack.home.path().join("workspace"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    sessions[0].clone()
}

/// The tool results in a request to the model (OpenAI's shape), in order.
fn tool_results(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The tool results the model was given in request `index`, as text.
fn request(stack: &Stack, index: usize) -> String {
    stack.llm.requests()[index].body.to_string()
}

#[test]
fn mcp_tools_over_stdio_and_http_reach_the_model_with_secrets_masked_and_skills_listed() {
    let http = EverythingHttp::start();
    let marker = unique("stdio");
    let manifest = format!(
        "{}apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata:\n  name: web\nspec:\n  http:\n    url: {url}\n---\n\
apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  mcpServers: [everything, web]\n  skills: [notes]\n  env:\n    API_KEY:\n      secret: true\n",
        everything_stdio("everything", &marker, "      API_KEY: \"${API_KEY}\"\n"),
        url = http.url()
    );
    let stack = stack(
        vec![
            calls(&[
                ("everything__echo", json!({"message": "hello over stdio"})),
                ("web__get-sum", json!({"a": 2, "b": 3})),
                ("everything__get-env", json!({})),
                ("everything__get-sum", json!({"a": "two", "b": 3})),
                ("nowhere__nothing", json!({})),
            ]),
            Turn::text("All done."),
        ],
        &manifest,
        &[("notes", "THE SKILL BODY stays out of the prompt")],
    );
    let (outcome, _) = stack.run_json(&[
        "helper",
        "Use your tools",
        "--secret",
        "API_KEY=s3cr3t-v4lue",
    ]);
    assert_eq!(outcome.code, 0, "{outcome}");

    // The first request offers the prefixed tools and lists the skill without its body.
    let first = &stack.llm.requests()[0].body;
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tool| tool["function"]["name"].as_str())
        .collect();
    for name in [
        "read_file",
        "everything__echo",
        "everything__get-env",
        "web__echo",
        "web__get-sum",
    ] {
        assert!(offered.contains(&name), "{name} not offered: {offered:?}");
    }
    let prompt = first.to_string();
    assert!(
        prompt.contains(".stigmer/skills/notes/SKILL.md"),
        "{prompt}"
    );
    assert!(prompt.contains("How to notes"), "{prompt}");
    assert!(!prompt.contains("THE SKILL BODY"), "{prompt}");

    // The results of the three calls (run concurrently) come back in call order.
    let second = request(&stack, 1);
    let echo = second.find("Echo: hello over stdio").expect(&second);
    let sum = second.find("is 5").expect(&second);
    assert!(echo < sum, "{second}");
    // Arguments the server refuses and a tool nobody offers are tool errors the model reads;
    // the run went on.
    let results = tool_results(&stack.llm.requests()[1].body);
    assert_eq!(results.len(), 5, "{second}");
    assert!(results[3].starts_with("Error"), "{}", results[3]);
    assert!(results[4].starts_with("Error"), "{}", results[4]);
    assert!(results[4].contains("nowhere__nothing"), "{}", results[4]);
    // The secret reached the server (its value is masked wherever it is shown), the runner's
    // own variables did not.
    assert!(second.contains("API_KEY"), "{second}");
    assert!(!second.contains("s3cr3t-v4lue"), "{second}");
    assert!(!second.contains("STIGMER_API"), "{second}");
    assert!(!second.contains("OPENAI_API_KEY"), "{second}");

    // The skill sits read-only in the session's workspace.
    let skill = the_workspace(&stack).join(".stigmer/skills/notes/SKILL.md");
    let mode = std::fs::metadata(&skill).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444);

    // The run is over: its stdio server is gone.
    wait_until(
        Duration::from_secs(5),
        "the MCP server's processes to end",
        || marked_processes(&marker).is_empty().then_some(()),
    );
}

#[test]
fn the_shell_runs_in_the_workspace_confined_and_a_timeout_kills_its_whole_group() {
    let outside = std::env::temp_dir().join(unique("outside"));
    let sleeper = "4321";
    let manifest = "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  shell:\n    enabled: true\n    timeoutSeconds: 60\n";
    let stack = stack(
        vec![
            calls(&[
                (
                    "execute",
                    json!({"command": "echo hi > made.txt; pwd; echo oops >&2; exit 3"}),
                ),
                (
                    "execute",
                    json!({"command": format!("sleep {sleeper} & wait"), "timeout_seconds": 1}),
                ),
                (
                    "execute",
                    json!({"command": format!("touch {}", outside.display())}),
                ),
                (
                    "execute",
                    json!({"command": "head -c 1048576 /dev/zero | tr '\\0' x"}),
                ),
            ]),
            Turn::text("Done."),
        ],
        manifest,
        &[],
    );
    let (outcome, events) = stack.run_json(&["helper", "Run things"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let finished: Vec<&Value> = events
        .iter()
        .filter(|event| event["kind"] == "tool_call_finished")
        .collect();
    assert_eq!(finished.len(), 4, "{events:#?}");

    let second = request(&stack, 1);
    let results = tool_results(&stack.llm.requests()[1].body);
    assert_eq!(results.len(), 4, "{second}");
    assert!(results[0].contains("[stderr] oops"), "{}", results[0]);
    assert!(results[0].ends_with("Exit code: 3"), "{}", results[0]);
    assert!(results[1].ends_with("Exit code: 124"), "{}", results[1]);
    assert!(
        results[2].contains("Permission denied"),
        "a write outside the workspace must be refused: {}",
        results[2]
    );
    assert!(!outside.exists());
    assert!(
        results[3].contains(".stigmer/tool-results/"),
        "{}",
        &results[3][..200]
    );
    assert!(results[3].len() < 80 * 1024, "{} bytes", results[3].len());
    assert!(processes_running(&["sleep", sleeper]).is_empty());

    let workspace = the_workspace(&stack);
    assert!(
        results[0].contains(&workspace.display().to_string()),
        "{}",
        results[0]
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("made.txt")).unwrap(),
        "hi\n"
    );
    let spilled = std::fs::read_dir(workspace.join(".stigmer/tool-results"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .collect::<Vec<_>>();
    assert!(spilled.iter().any(|len| *len >= 1024 * 1024), "{spilled:?}");
}

#[test]
fn a_cancel_during_a_long_mcp_call_stops_the_run_and_the_server_within_seconds() {
    let marker = unique("cancel");
    let manifest = format!(
        "{}apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  mcpServers: [everything]\n",
        everything_stdio("everything", &marker, "")
    );
    let stack = stack(
        vec![calls(&[(
            "everything__trigger-long-running-operation",
            json!({"duration": 300, "steps": 300}),
        )])],
        &manifest,
        &[],
    );
    let mut api = stack.api();
    let created = api
        .create(crate::runs::create("helper", "Take your time"))
        .unwrap();
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    api.events_until(&id, |events| {
        events
            .iter()
            .any(|event| matches!(event.event, ExecutionEvent::ToolProgress(_)))
    });
    assert!(!marked_processes(&marker).is_empty());
    let started = std::time::Instant::now();
    let cancelled = stack.home.run(&["execution", "cancel", &id]);
    assert_eq!(
        cancelled.code,
        0,
        "{cancelled}\n{:#?}\n{}",
        api.events(&id, 0, None),
        stack.home.log("agent-runner")
    );
    wait_until(Duration::from_secs(5), "the run to be cancelled", || {
        (phases(&api.events(&id, 0, None)).last() == Some(&Cancelled)).then_some(())
    });
    wait_until(
        Duration::from_secs(5),
        "the MCP server's processes to end",
        || marked_processes(&marker).is_empty().then_some(()),
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_killed_runner_leaves_no_server_repeats_no_write_and_says_what_was_interrupted() {
    let marker = unique("kill");
    let sleeper = "3011";
    let manifest = format!(
        "{}apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  mcpServers: [everything]\n  shell:\n    enabled: true\n",
        everything_stdio("everything", &marker, "")
    );
    let stack = stack(
        vec![
            calls(&[
                (
                    "write_file",
                    json!({"path": "once.txt", "content": "written once"}),
                ),
                ("everything__echo", json!({"message": "still here"})),
                ("execute", json!({"command": format!("sleep {sleeper}")})),
            ]),
            Turn::text("Done."),
        ],
        &manifest,
        &[],
    );
    let mut api = stack.api();
    let created = api
        .create(crate::runs::create("helper", "Write, then wait"))
        .unwrap();
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    let session = created["spec"]["session"].as_str().unwrap().to_owned();
    let file = stack
        .home
        .path()
        .join("workspace")
        .join(&session)
        .join("once.txt");
    // The write and the echo have finished (their results are stored) while the shell sleeps.
    api.events_until(&id, |events| {
        events
            .iter()
            .filter(|event| matches!(event.event, ExecutionEvent::ToolCallFinished(_)))
            .count()
            == 2
    });
    wait_until(Duration::from_secs(30), "the shell's sleep", || {
        (!processes_running(&["sleep", sleeper]).is_empty()).then_some(())
    });
    let written = std::fs::metadata(&file).unwrap().ino();
    assert!(!marked_processes(&marker).is_empty());

    let runner = TestHome::component(&stack.home.status(), "agent-runner")["pid"]
        .as_u64()
        .unwrap() as u32;
    stigmer_test::signal(runner, nix::sys::signal::Signal::SIGKILL);
    wait_until(
        Duration::from_secs(5),
        "the killed runner's MCP server and shell to end",
        || {
            (marked_processes(&marker).is_empty()
                && processes_running(&["sleep", sleeper]).is_empty())
            .then_some(())
        },
    );

    // The restarted runner retries the step: the write is not repeated, the lost shell call is
    // reported as interrupted, and the run completes.
    wait_until(Duration::from_secs(120), "the run to complete", || {
        (phases(&api.events(&id, 0, None)).last() == Some(&Completed)).then_some(())
    });
    assert_eq!(
        phases(&api.events(&id, 0, None)),
        [Pending, Running, Completed]
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        written,
        "once.txt was written again"
    );
    let requests = stack.llm.requests();
    let last = &requests.last().unwrap().body;
    let results = tool_results(last);
    // One result per call, in call order, each once.
    assert_eq!(results.len(), 3, "{last}");
    assert!(results[0].contains("once.txt"), "{last}");
    assert!(results[1].contains("Echo: still here"), "{last}");
    assert!(results[2].contains("was not repeated"), "{last}");
}

#[test]
fn a_runs_tools_stay_as_its_first_step_listed_them_on_any_runner() {
    let marker = unique("snapshot");
    let server = |enabled: &str| {
        format!(
            "apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata:\n  name: everything\nspec:\n  enabledTools: [{enabled}]\n  stdio:\n    command: node\n    args: [{script}, stdio]\n    env:\n      STIGMER_TEST_MARKER: {marker}\n---\n",
            script = everything_script().display()
        )
    };
    let agent = "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  mcpServers: [everything]\n";
    let stack = stack(
        vec![
            Turn::tool_call("everything__echo", json!({"message": "first"})),
            Turn::fault(stigmer_test::llm::Fault::Hang),
            Turn::text("Done."),
            Turn::text("Second run."),
        ],
        &format!("{}{agent}", server("echo")),
        &[],
    );
    let offered = |index: usize| -> Vec<String> {
        stack.llm.requests()[index].body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|tool| tool["function"]["name"].as_str())
            .filter(|name| name.starts_with("everything__"))
            .map(str::to_owned)
            .collect()
    };
    let mut api = stack.api();
    let created = api
        .create(crate::runs::create("helper", "Echo, then think"))
        .unwrap();
    let id = created["metadata"]["name"].as_str().unwrap().to_owned();
    // The second model request (after the echo) hangs: the run is between steps.
    wait_until(Duration::from_secs(60), "the second model request", || {
        (stack.llm.requests().len() == 2).then_some(())
    });
    assert_eq!(offered(0), ["everything__echo"]);

    // The server is applied again with more tools, and the runner dies.
    let path = stack.home.path().join("more.yaml");
    std::fs::write(&path, server("echo, get-sum")).unwrap();
    let applied = stack.home.run(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    let runner = TestHome::component(&stack.home.status(), "agent-runner")["pid"]
        .as_u64()
        .unwrap() as u32;
    stigmer_test::signal(runner, nix::sys::signal::Signal::SIGKILL);

    // The restarted runner repeats the step with the run's saved tools, not the new list.
    wait_until(
        Duration::from_secs(120),
        "the repeated model request",
        || (stack.llm.requests().len() >= 3).then_some(()),
    );
    api.events_until(&id, |events| phases(events).last() == Some(&Completed));
    assert_eq!(offered(2), ["everything__echo"]);

    // A new run starts with the new list.
    let (outcome, _) = stack.run_json(&["helper", "Again"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert_eq!(offered(3), ["everything__echo", "everything__get-sum"]);
    wait_until(
        Duration::from_secs(5),
        "the MCP server's processes to end",
        || marked_processes(&marker).is_empty().then_some(()),
    );
}

#[test]
fn a_run_that_ends_at_its_turn_limit_leaves_no_server_behind() {
    let marker = unique("limit");
    let manifest = format!(
        "{}apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  mcpServers: [everything]\n  maxTurns: 1\n",
        everything_stdio("everything", &marker, "")
    );
    let stack = stack(
        vec![Turn::tool_call(
            "everything__echo",
            json!({"message": "one more"}),
        )],
        &manifest,
        &[],
    );
    let (outcome, events) = stack.run_json(&["helper", "Loop"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        events
            .iter()
            .any(|event| event["kind"] == "tool_call_finished"),
        "{events:#?}"
    );
    wait_until(
        Duration::from_secs(5),
        "the MCP server's processes to end",
        || marked_processes(&marker).is_empty().then_some(()),
    );
}

#[test]
fn an_environment_gives_a_run_its_variables_and_its_secrets_stay_masked() {
    let manifest = "apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: dev\nspec:\n  variables:\n    GREETING:\n      value: hello\n    TOKEN:\n      value: t0k3n-s3cret\n      secret: true\n---\n\
apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  shell:\n    enabled: true\n  env:\n    GREETING: {}\n    TOKEN:\n      secret: true\n";
    let stack = stack(
        vec![
            Turn::tool_call("execute", json!({"command": "echo \"$GREETING $TOKEN\""})),
            Turn::text("Done."),
        ],
        manifest,
        &[],
    );
    // Without the environment the declared variables are missing.
    let (missing, _) = stack.run_json(&["helper", "Greet"]);
    assert_eq!(missing.code, 2, "{missing}");
    let (unknown, _) = stack.run_json(&["helper", "Greet", "--environment", "deb"]);
    assert_ne!(unknown.code, 0, "{unknown}");
    assert!(
        unknown.stderr.contains("environment \"deb\" not found"),
        "{unknown}"
    );
    assert!(unknown.stderr.contains("dev"), "{unknown}");

    let (outcome, _) = stack.run_json(&["helper", "Greet", "--environment", "dev"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let result = stack.llm.requests()[1].body.to_string();
    assert!(result.contains("hello ****"), "{result}");
    assert!(!result.contains("t0k3n-s3cret"), "{result}");
    let listed = stack.home.run(&["execution", "list", "-o", "json"]);
    assert!(!listed.stdout.contains("t0k3n-s3cret"), "{listed}");
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let spec = &listed["items"][0]["spec"];
    assert_eq!(spec["env"]["GREETING"], "hello", "{spec}");
    assert_eq!(spec["environments"], json!(["dev"]), "{spec}");
    assert_eq!(spec["secretNames"], json!(["TOKEN"]), "{spec}");
}

#[test]
fn an_mcp_image_reaches_models_that_take_images_and_is_a_placeholder_for_others() {
    // server-everything's `get-tiny-image` answers text, a PNG, then more text.
    const PNG_START: &str = "iVBORw0KGgo";
    for provider in ["openai", "anthropic", "ollama"] {
        let marker = unique("image");
        let manifest = format!(
            "{}apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  mcpServers: [everything]\n",
            everything_stdio("everything", &marker, "")
        );
        let stack = stack_with(
            provider,
            vec![
                Turn::tool_call("everything__get-tiny-image", json!({})),
                Turn::text("A logo."),
            ],
            &manifest,
            &[],
        );
        let (outcome, events) = stack.run_json(&["helper", "Show me the logo"]);
        assert_eq!(outcome.code, 0, "{provider}: {outcome}");
        let requests = stack.llm.requests();
        assert_eq!(requests.len(), 2, "{provider}");
        let body = &requests[1].body;
        let messages = body["messages"].as_array().unwrap();
        match provider {
            // Tool messages take text only: the image follows in a user message that names
            // the call it came from.
            "openai" => {
                let last_tool = messages.iter().rposition(|m| m["role"] == "tool").unwrap();
                let tool = messages[last_tool]["content"].as_str().unwrap();
                assert!(tool.contains("Here's the image you requested:"), "{tool}");
                assert!(tool.contains("[image 1: image/png, "), "{tool}");
                let user = &messages[last_tool + 1];
                assert_eq!(user["role"], "user", "{body}");
                let parts = user["content"].as_array().unwrap();
                assert!(
                    parts.iter().any(|part| part["text"]
                        .as_str()
                        .is_some_and(|text| text.contains("`everything__get-tiny-image`"))),
                    "{parts:?}"
                );
                let url = parts
                    .iter()
                    .find(|part| part["type"] == "image_url")
                    .and_then(|part| part["image_url"]["url"].as_str())
                    .unwrap_or_else(|| panic!("no image part: {parts:?}"));
                assert!(
                    url.starts_with(&format!("data:image/png;base64,{PNG_START}")),
                    "{url:.80}"
                );
            }
            // The image block sits inside the call's tool_result.
            "anthropic" => {
                let result = messages
                    .iter()
                    .flat_map(|m| m["content"].as_array().into_iter().flatten())
                    .find(|block| block["type"] == "tool_result")
                    .unwrap_or_else(|| panic!("no tool_result: {body}"));
                let content = result["content"].as_array().unwrap();
                assert_eq!(content[0]["type"], "text");
                assert!(
                    content[0]["text"]
                        .as_str()
                        .unwrap()
                        .contains("The image above is the MCP logo."),
                    "{content:?}"
                );
                assert_eq!(content[1]["type"], "image");
                assert_eq!(content[1]["source"]["media_type"], "image/png");
                assert!(
                    content[1]["source"]["data"]
                        .as_str()
                        .unwrap()
                        .starts_with(PNG_START)
                );
            }
            // The scripted Ollama model lists no `vision` capability: the placeholder.
            _ => {
                let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
                let text = tool["content"].as_str().unwrap();
                assert!(text.contains("Here's the image you requested:"), "{text}");
                assert!(text.contains("[image omitted: image/png, "), "{text}");
                assert!(tool.get("images").is_none(), "{tool}");
                assert!(!body.to_string().contains(PNG_START));
            }
        }
        // What is shown of the result labels the image in one line, whatever the provider.
        let finished = events
            .iter()
            .find(|event| event["kind"] == "tool_call_finished")
            .unwrap_or_else(|| panic!("{events:#?}"));
        assert!(
            finished.to_string().contains("[image: image/png, "),
            "{finished}"
        );
    }
}
