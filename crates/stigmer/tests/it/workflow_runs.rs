//! `stigmer run` of a Workflow: what is refused before anything starts, and a name that is
//! both an Agent and a Workflow.

use crate::home;

/// A bad `--input` file is refused before the server is asked anything, naming the file, the
/// line and the column.
#[test]
fn bad_input_json_is_refused_with_where_it_is_wrong() {
    let home = home();
    let input = home.path().join("input.json");
    std::fs::write(&input, "{\n  \"a\": 1,\n  \"b\": ,\n}\n").unwrap();
    let outcome = home.run(&["run", "fetch", "--input", &format!("@{}", input.display())]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains(&format!("{}:3:8: the input is not JSON", input.display())),
        "{outcome}"
    );
    // Nothing was started.
    assert!(home.state().is_none(), "{outcome}");
    let inline = home.run(&["run", "workflow/fetch", "--input", "{\"a\":"]);
    assert_eq!(inline.code, 2, "{inline}");
    assert!(inline.stderr.contains("--input is not JSON"), "{inline}");
}

/// A message is for agents: a workflow is refused one, pointing at --input.
#[test]
fn a_message_for_a_workflow_is_refused() {
    let home = home();
    for args in [
        &["run", "workflow/fetch", "fetch it"][..],
        &["run", "fetch", "fetch it", "--input", "{}"][..],
    ] {
        let outcome = home.run(args);
        assert_eq!(outcome.code, 2, "{args:?}: {outcome}");
        assert!(
            outcome.stderr.contains("a workflow takes no message")
                && outcome.stderr.contains("--input"),
            "{args:?}: {outcome}"
        );
    }
    let outcome = home.run(&["run", "workflow/fetch", "--model", "m"]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome.stderr.contains("--model is for agents"),
        "{outcome}"
    );
    assert!(home.state().is_none(), "{outcome}");
}

/// An Agent and a Workflow named alike: `run NAME` asks which, `agent/NAME` and
/// `workflow/NAME` say it.
#[test]
fn a_name_of_both_an_agent_and_a_workflow_needs_its_kind() {
    let home = home();
    home.start();
    let agent = home.path().join("agent.yaml");
    std::fs::write(
        &agent,
        "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: greet\nspec:\n  instructions: You greet.\n",
    )
    .unwrap();
    let workflow = home.path().join("greet.sw.json");
    std::fs::write(
        &workflow,
        r#"{
  "document": {"dsl": "1.0.3", "namespace": "default", "name": "greet", "version": "1.0.0"},
  "do": [{"hello": {"set": {"message": "${ \"Hello \" + .name }"}}}]
}"#,
    )
    .unwrap();
    let applied = home.run(&[
        "apply",
        "-f",
        agent.to_str().unwrap(),
        "-f",
        workflow.to_str().unwrap(),
    ]);
    assert_eq!(applied.code, 0, "{applied}");
    let outcome = home.run(&["run", "greet", "hi", "--no-follow"]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("both an agent and a workflow are named \"greet\"")
            && outcome.stderr.contains("stigmer run agent/greet")
            && outcome.stderr.contains("stigmer run workflow/greet"),
        "{outcome}"
    );
    // Neither: the server's not-found, with its suggestion.
    let outcome = home.run(&["run", "gret", "hi", "--no-follow"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("agent 'gret' not found (did you mean \"greet\"?)"),
        "{outcome}"
    );
    // Without a message, and with --input (then it looks for a workflow).
    let outcome = home.run(&["run", "gret"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome.stderr.contains("did you mean \"greet\""),
        "{outcome}"
    );
    let outcome = home.run(&["run", "gret", "--input", "{}", "--no-follow"]);
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("workflow 'gret' not found (did you mean \"greet\"?)"),
        "{outcome}"
    );
    // Named with its kind, the workflow is created and listed as one.
    let created = home.run(&[
        "run",
        "workflow/greet",
        "--input",
        "{\"name\": \"Ada\"}",
        "--no-follow",
    ]);
    assert_eq!(created.code, 0, "{created}");
    let id = created.stdout.trim().to_owned();
    assert!(id.starts_with("wex-"), "{created}");
    let listed = home.run(&["execution", "list", "--kind", "workflow"]);
    assert_eq!(listed.code, 0, "{listed}");
    let row = listed
        .stdout
        .lines()
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    assert!(
        row.contains("workflow") && row.contains("greet"),
        "{listed}"
    );
    let agents = home.run(&["execution", "list", "--kind", "agent"]);
    assert!(!agents.stdout.contains(&id), "{agents}");
    let shown = home.run(&["execution", "get", &id, "-o", "json"]);
    assert_eq!(shown.code, 0, "{shown}");
    assert!(shown.stdout.contains("\"WorkflowExecution\""), "{shown}");

    // Followed: the tasks on stderr, the output on stdout.
    let run = home.run(&["run", "workflow/greet", "--input", "{\"name\": \"Ada\"}"]);
    eprintln!("{run}");
    assert_eq!(run.code, 0, "{run}");
    let output: serde_json::Value = serde_json::from_str(&run.stdout).expect("the output");
    assert_eq!(output["message"], "Hello Ada", "{run}");
    assert!(run.stderr.contains("> hello"), "{run}");
    let watched = home.run(&["execution", "watch", &id]);
    assert_eq!(watched.code, 0, "{watched}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&watched.stdout).expect("the output")["message"],
        "Hello Ada",
        "{watched}"
    );
}
