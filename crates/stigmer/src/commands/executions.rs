//! `stigmer run` and `stigmer execution list|get|cancel|watch`: create agent and workflow
//! executions (NAME says which, or the server: whichever of an Agent and a Workflow exists), list
//! and cancel them, and follow their event logs with [`super::follow`].

use super::execution_output::{
    LIST_HINT, execution_failure, execution_kind, pending_approvals_table, phase_of, resource_kind,
    sort_by_creation, sub_agents_table,
};
use super::follow::{CANCEL_WAIT, Follow, OnInterrupt, interrupts, replay_offline};
use super::output::{decode, format_resources, read_offline};
use crate::cli::{
    ExecutionGetArgs, ExecutionIdArgs, ExecutionKindArg, ExecutionListArgs, ExecutionWatchArgs,
    OutputFormat, RunArgs, SecretArg, is_variable_name,
};
use crate::client::DaemonClient;
use crate::failure::{EXIT_INVALID_INPUT, Failure, status_failure};
use crate::printer::{Printer, print_data};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use stigmer_client::home::is_locked;
use stigmer_config::StigmerHome;
use stigmer_proto::execution::{
    AgentExecutionSpec, ExecutionKind, ExecutionPhase, WorkflowExecutionSpec,
};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, CreateExecutionRequest, GetExecutionRequest, ListExecutionsRequest,
};
use stigmer_proto::resources::v1::GetRequest;
use stigmer_resources::{Kind, Resource};
use tonic::{Code, Status};

pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    // Everything that can be checked without the server is, before anything starts.
    let prepared = prepare(&args)?;
    let home = super::invocation::home()?;
    let mut client = super::server::ensure_running(&home).await?;
    let (kind, missing) = match prepared.kind {
        Some(kind) => (kind, None),
        None => resolve(&mut client, &prepared).await?,
    };
    let request = match kind {
        ExecutionKind::Agent => agent_request(&args, &prepared),
        ExecutionKind::Workflow => workflow_request(&args, &prepared),
    };
    // Neither exists: the server says so when asked to create it (with a close name); a request
    // refused before that says the lookup's not-found instead.
    let request = match (request, missing) {
        (Ok(request), _) => request,
        (Err(_), Some(status)) => return Err(create_failure(status, kind)),
        (Err(failure), None) => return Err(failure),
    };
    // From here on Ctrl-C cancels the execution rather than leaving it running unseen.
    let interrupts = if args.no_follow {
        None
    } else {
        Some(interrupts()?)
    };
    let started = Instant::now();
    let response = client
        .executions()
        .create_execution(request)
        .await
        .map_err(|status| create_failure(status, kind))?;
    let execution = decode(&response.into_inner().execution_json)?;
    let execution_id = execution.metadata.name.clone();
    let Some(interrupts) = interrupts else {
        if args.json {
            print_data(&serde_json::to_string(&execution).unwrap_or_default());
        } else {
            print_data(&execution_id);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let printer = Printer::stderr();
    let given_or = |value: String, fallback: &str| {
        if value.is_empty() {
            fallback.to_owned()
        } else {
            value
        }
    };
    let heading = match kind {
        ExecutionKind::Agent => {
            let spec = AgentExecutionSpec::from_value(&execution.spec).unwrap_or_default();
            format!(
                "execution {execution_id} (agent {}, session {})",
                given_or(spec.agent, &prepared.name),
                given_or(spec.session, "?"),
            )
        }
        ExecutionKind::Workflow => {
            let spec = WorkflowExecutionSpec::from_value(&execution.spec).unwrap_or_default();
            format!(
                "execution {execution_id} (workflow {})",
                given_or(spec.workflow, &prepared.name),
            )
        }
    };
    printer.line(&printer.paint("2", &heading));
    let follow = Follow {
        home: &home,
        execution_id,
        kind,
        json: args.json,
        on_interrupt: OnInterrupt::Cancel,
        started,
        // Asked only when someone can answer: a terminal to type on and one to read on.
        ask_approvals: kind == ExecutionKind::Agent
            && std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal(),
    };
    follow.run(Some(client), interrupts).await
}

/// What `run` checked before asking the server anything.
#[derive(Debug)]
struct Prepared {
    /// The kind NAME's prefix (`agent/`, `workflow/`) names, if any.
    kind: Option<ExecutionKind>,
    /// NAME without its prefix.
    name: String,
    /// `--input`, parsed.
    input: Option<Value>,
    env: HashMap<String, String>,
    secrets: HashMap<String, String>,
}

/// NAME as `agent/NAME`, `workflow/NAME` or a bare name.
fn split_target(target: &str) -> (Option<ExecutionKind>, &str) {
    if let Some(name) = target.strip_prefix("agent/") {
        (Some(ExecutionKind::Agent), name)
    } else if let Some(name) = target.strip_prefix("workflow/") {
        (Some(ExecutionKind::Workflow), name)
    } else {
        (None, target)
    }
}

fn has_message(args: &RunArgs) -> bool {
    args.message.is_some() || args.message_option.is_some()
}

/// The checks of `run` that need no server: a message and `--input` do not go together (the
/// one is for agents, the other for workflows), a prefix's kind fits the options, `--input` is
/// JSON, every `--secret` is `KEY=VALUE`.
fn prepare(args: &RunArgs) -> Result<Prepared, Failure> {
    let (kind, name) = split_target(&args.agent);
    if name.trim().is_empty() {
        return Err(
            Failure::new("the name of the agent or workflow to run is empty")
                .with_code(EXIT_INVALID_INPUT),
        );
    }
    if args.input.is_some() && kind == Some(ExecutionKind::Agent) {
        return Err(Failure::new(format!(
            "--input is for workflows; agent \"{name}\" takes a message"
        ))
        .with_code(EXIT_INVALID_INPUT)
        .with_hint(Some(format!("`stigmer run agent/{name} \"…\"`"))));
    }
    if has_message(args) && (kind == Some(ExecutionKind::Workflow) || args.input.is_some()) {
        return Err(workflow_message_failure(name));
    }
    if kind == Some(ExecutionKind::Workflow) {
        check_workflow_options(args, name)?;
    }
    let input = args.input.as_deref().map(read_input).transpose()?;
    let (env, secrets) = variables(args)?;
    let prepared = Prepared {
        kind,
        name: name.to_owned(),
        input,
        env,
        secrets,
    };
    if kind == Some(ExecutionKind::Agent) {
        agent_request(args, &prepared)?;
    }
    Ok(prepared)
}

fn workflow_message_failure(name: &str) -> Failure {
    Failure::new(format!(
        "a workflow takes no message: give \"{name}\" its input with --input"
    ))
    .with_code(EXIT_INVALID_INPUT)
    .with_hint(Some(format!(
        "`stigmer run workflow/{name} --input '{{\"key\": \"value\"}}'` (or --input @FILE, \
         or --input - for stdin)"
    )))
}

/// `--session` and `--model` are for agents only.
fn check_workflow_options(args: &RunArgs, name: &str) -> Result<(), Failure> {
    let option = if args.session.is_some() {
        "--session"
    } else if args.model.is_some() {
        "--model"
    } else {
        return Ok(());
    };
    Err(
        Failure::new(format!("{option} is for agents; \"{name}\" is a workflow"))
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(
                "a workflow's `call: agent` tasks say which model their agents use".into(),
            )),
    )
}

/// `--input`: JSON text, `@FILE`, or `-` (stdin). Bad JSON is refused with where it is wrong.
fn read_input(text: &str) -> Result<Value, Failure> {
    let invalid = |message: String| {
        Failure::new(message)
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(
                "--input takes JSON text, @FILE (a JSON file) or - (JSON on stdin)".into(),
            ))
    };
    let (source, json) = if text == "-" {
        let mut json = String::new();
        std::io::stdin()
            .read_to_string(&mut json)
            .map_err(|error| invalid(format!("cannot read the input from stdin: {error}")))?;
        ("stdin".to_owned(), json)
    } else if let Some(path) = text.strip_prefix('@') {
        let json = std::fs::read_to_string(path)
            .map_err(|error| invalid(format!("cannot read the input file {path}: {error}")))?;
        (path.to_owned(), json)
    } else {
        return serde_json::from_str(text).map_err(|error| {
            invalid(format!(
                "--input is not JSON: {} (at column {})",
                json_problem(&error),
                error.column()
            ))
        });
    };
    serde_json::from_str(&json).map_err(|error| {
        invalid(format!(
            "{source}:{}:{}: the input is not JSON: {}",
            error.line(),
            error.column(),
            json_problem(&error)
        ))
    })
}

/// A JSON error without its ` at line L column C` (said apart).
fn json_problem(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((problem, _)) => problem.to_owned(),
        None => text,
    }
}

/// A run's `--env` and `--secret` variables.
type Variables = (HashMap<String, String>, HashMap<String, String>);

/// `--env` and `--secret` (a wrong secret is reported without its text).
fn variables(args: &RunArgs) -> Result<Variables, Failure> {
    let env: HashMap<String, String> = args.env.iter().cloned().collect();
    let mut secrets = HashMap::new();
    for (index, secret) in args.secrets.iter().enumerate() {
        let (key, value) = split_secret(secret).ok_or_else(|| {
            Failure::new(format!(
                "--secret number {} is not KEY=VALUE (its text is not shown, in case it holds a \
                 secret)",
                index + 1
            ))
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(
                "write --secret NAME=value, NAME made of letters, digits and _".into(),
            ))
        })?;
        secrets.insert(key, value);
    }
    Ok((env, secrets))
}

/// Whether NAME is an Agent or a Workflow: the one that exists; both → ask which. Neither → a
/// workflow when --input was given, else an agent, with the lookup's not-found (the server's
/// refusal to create it says the same, with a close name).
async fn resolve(
    client: &mut DaemonClient,
    prepared: &Prepared,
) -> Result<(ExecutionKind, Option<Status>), Failure> {
    let name = &prepared.name;
    let mut lookup = async |kind: Kind| {
        client
            .resources()
            .get(GetRequest {
                kind: kind.as_str().to_owned(),
                name: name.clone(),
            })
            .await
            .map(|_| ())
    };
    let agent = lookup(Kind::Agent).await;
    let workflow = lookup(Kind::Workflow).await;
    // A failure other than "not found" (the daemon went away…) is said as it is.
    for result in [&agent, &workflow] {
        if let Err(status) = result
            && status.code() != Code::NotFound
        {
            return Err(status_failure(status.clone()));
        }
    }
    match (agent, workflow) {
        (Ok(()), Ok(())) => Err(Failure::new(format!(
            "both an agent and a workflow are named \"{name}\""
        ))
        .with_code(EXIT_INVALID_INPUT)
        .with_hint(Some(format!(
            "say which: `stigmer run agent/{name} \"…\"` or `stigmer run workflow/{name} --input …`"
        )))),
        (Ok(()), Err(_)) => Ok((ExecutionKind::Agent, None)),
        (Err(_), Ok(())) => Ok((ExecutionKind::Workflow, None)),
        (Err(agent), Err(workflow)) => Ok(if prepared.input.is_some() {
            (ExecutionKind::Workflow, Some(workflow))
        } else {
            (ExecutionKind::Agent, Some(agent))
        }),
    }
}

/// The request of an agent run: a message that is not empty, no `--input`.
fn agent_request(args: &RunArgs, prepared: &Prepared) -> Result<CreateExecutionRequest, Failure> {
    let name = &prepared.name;
    if prepared.input.is_some() {
        return Err(Failure::new(format!(
            "--input is for workflows; \"{name}\" is an agent, which takes a message"
        ))
        .with_code(EXIT_INVALID_INPUT)
        .with_hint(Some(format!("`stigmer run {name} \"…\"`"))));
    }
    let message = args.message_text();
    if message.trim().is_empty() {
        return Err(Failure::new("the message is empty")
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(format!(
                "say what the agent should do: `stigmer run {} \"…\"`",
                args.agent
            ))));
    }
    Ok(CreateExecutionRequest {
        agent: name.clone(),
        message: message.to_owned(),
        session_id: args.session.clone().unwrap_or_default(),
        model: args.model.clone().unwrap_or_default(),
        env: prepared.env.clone(),
        secrets: prepared.secrets.clone(),
        environments: args.environments.clone(),
        ..Default::default()
    })
}

/// The request of a workflow run: no message, no `--session` or `--model`.
fn workflow_request(
    args: &RunArgs,
    prepared: &Prepared,
) -> Result<CreateExecutionRequest, Failure> {
    let name = &prepared.name;
    if has_message(args) {
        return Err(workflow_message_failure(name));
    }
    check_workflow_options(args, name)?;
    Ok(CreateExecutionRequest {
        workflow: name.clone(),
        input_json: prepared
            .input
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
        env: prepared.env.clone(),
        secrets: prepared.secrets.clone(),
        environments: args.environments.clone(),
        ..Default::default()
    })
}

fn split_secret(secret: &SecretArg) -> Option<(String, String)> {
    let (key, value) = secret.0.expose().split_once('=')?;
    is_variable_name(key).then(|| (key.to_owned(), value.to_owned()))
}

/// A failed `CreateExecution` (or lookup of what to run): the server's message (it names the
/// agent or workflow and suggests a close one), with a hint where one helps.
fn create_failure(status: Status, kind: ExecutionKind) -> Failure {
    let not_found = status.code() == Code::NotFound;
    let failure = status_failure(status);
    match (not_found, kind) {
        (true, ExecutionKind::Agent) => failure.with_hint(Some(
            "list the agents with `stigmer get agents` (and the workflows with `stigmer get \
             workflows`)"
                .into(),
        )),
        (true, ExecutionKind::Workflow) => failure.with_hint(Some(
            "list the workflows with `stigmer get workflows`".into(),
        )),
        (false, _) => failure,
    }
}

/// One execution from the store file (no daemon runs).
fn read_offline_execution(home: &StigmerHome, execution_id: &str) -> Result<Resource, Failure> {
    let kind = resource_kind(execution_kind(execution_id));
    let mut found = read_offline(home, kind, Some(execution_id)).map_err(|failure| {
        if failure.message.ends_with("not found") {
            failure.with_hint(Some(LIST_HINT.into()))
        } else {
            failure
        }
    })?;
    found
        .pop()
        .ok_or_else(|| Failure::new(format!("execution \"{execution_id}\" not found")))
}

pub async fn watch(args: ExecutionWatchArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let started = Instant::now();
    if !is_locked(&home.lock_file()) {
        // An execution that has ended can be replayed from the store without a daemon.
        let execution = read_offline_execution(&home, &args.id)?;
        if phase_of(&execution).is_terminal() {
            return replay_offline(&home, execution, args.json, started);
        }
    }
    let mut client = super::server::ensure_running(&home).await?;
    // Subscribing to an unknown id would wait for events forever: check it exists.
    client
        .executions()
        .get_execution(GetExecutionRequest {
            execution_id: args.id.clone(),
        })
        .await
        .map_err(execution_failure)?;
    let follow = Follow {
        home: &home,
        kind: execution_kind(&args.id),
        execution_id: args.id,
        json: args.json,
        on_interrupt: OnInterrupt::Detach,
        started,
        ask_approvals: false,
    };
    follow.run(Some(client), interrupts()?).await
}

pub async fn list(args: ExecutionListArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let kinds: &[ExecutionKind] = match args.kind {
        Some(ExecutionKindArg::Agent) => &[ExecutionKind::Agent],
        Some(ExecutionKindArg::Workflow) => &[ExecutionKind::Workflow],
        None => &ExecutionKind::ALL,
    };
    let mut executions = if is_locked(&home.lock_file()) {
        let mut client = super::server::connect(&home).await?;
        let kind = match kinds {
            [kind] => kind.as_str().to_owned(),
            _ => String::new(),
        };
        client
            .executions()
            .list_executions(ListExecutionsRequest { kind })
            .await
            .map_err(status_failure)?
            .into_inner()
            .executions_json
            .iter()
            .map(|json| decode(json))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        // Reading needs no daemon: the store is a file.
        let mut executions = Vec::new();
        for kind in kinds {
            executions.extend(read_offline(&home, resource_kind(*kind), None)?);
        }
        executions
    };
    sort_by_creation(&mut executions);
    if let Some(output) = format_resources(Kind::AgentExecution, &executions, false, args.output)? {
        print_data(&output);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn get(args: ExecutionGetArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let execution = if is_locked(&home.lock_file()) {
        let mut client = super::server::connect(&home).await?;
        let response = client
            .executions()
            .get_execution(GetExecutionRequest {
                execution_id: args.id.clone(),
            })
            .await
            .map_err(execution_failure)?;
        decode(&response.into_inner().execution_json)?
    } else {
        read_offline_execution(&home, &args.id)?
    };
    let kind = execution.kind;
    let (sub_agents, waiting) = match args.output {
        OutputFormat::Table => (
            sub_agents_table(&execution, chrono::Utc::now()),
            pending_approvals_table(&execution),
        ),
        // JSON and YAML hold them in `status.subAgents` and `status.pendingApprovals`.
        OutputFormat::Json | OutputFormat::Yaml => (None, None),
    };
    if let Some(output) = format_resources(kind, &[execution], true, args.output)? {
        print_data(&output);
    }
    for table in [sub_agents, waiting].into_iter().flatten() {
        print_data(&table);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: ExecutionIdArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let mut client = super::server::ensure_running(&home).await?;
    let id = args.id;
    client
        .executions()
        .cancel_execution(CancelExecutionRequest {
            execution_id: id.clone(),
        })
        .await
        .map_err(execution_failure)?;
    // The execution becomes `cancelled` when its workflow stops: wait a little to say so.
    let deadline = Instant::now() + CANCEL_WAIT;
    let mut phase = ExecutionPhase::Pending;
    while Instant::now() < deadline {
        let Ok(response) = client
            .executions()
            .get_execution(GetExecutionRequest {
                execution_id: id.clone(),
            })
            .await
        else {
            break;
        };
        let execution = decode(&response.into_inner().execution_json)?;
        phase = phase_of(&execution);
        match phase {
            ExecutionPhase::Cancelled => {
                print_data(&format!("execution {id} cancelled"));
                return Ok(ExitCode::SUCCESS);
            }
            ExecutionPhase::Completed | ExecutionPhase::Failed => {
                print_data(&format!(
                    "execution {id} {phase} before the cancellation took effect"
                ));
                return Ok(ExitCode::SUCCESS);
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    print_data(&format!(
        "cancellation of execution {id} requested; it is still {phase}"
    ));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, ExecutionCommand};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("stigmer").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).expect("valid arguments").command {
            Command::Run(run) => run,
            other => panic!("expected run, got {other:?}"),
        }
    }

    /// The request of an agent run, as `run` makes it once NAME is known to be an agent.
    fn create_request(args: &RunArgs) -> Result<CreateExecutionRequest, Failure> {
        agent_request(args, &prepare(args)?)
    }

    /// The request of a workflow run, as `run` makes it once NAME is known to be a workflow.
    fn workflow_create_request(args: &RunArgs) -> Result<CreateExecutionRequest, Failure> {
        workflow_request(args, &prepare(args)?)
    }

    #[test]
    fn the_message_is_positional_or_an_option_but_not_both() {
        assert_eq!(
            run_args(&["run", "hello", "hi there"]).message_text(),
            "hi there"
        );
        assert_eq!(run_args(&["run", "hello", "-m", "hi"]).message_text(), "hi");
        assert_eq!(
            run_args(&["run", "hello", "--message", "hi"]).message_text(),
            "hi"
        );
        for wrong in [&["run", "hello", "hi", "-m", "hi"][..], &["run"][..]] {
            let error = parse(wrong).expect_err("a usage error");
            assert_eq!(error.exit_code(), 2, "{wrong:?}");
        }
        // No message parses (a workflow takes none), and an agent refuses it.
        let failure = create_request(&run_args(&["run", "hello"])).expect_err("no message");
        assert_eq!(failure.code, EXIT_INVALID_INPUT);
        assert_eq!(failure.message, "the message is empty");
    }

    #[test]
    fn a_workflow_run_takes_input_and_no_message() {
        let args = run_args(&[
            "run",
            "workflow/fetch",
            "--input",
            r#"{"url": "https://example.com"}"#,
            "--env",
            "A=1",
            "--secret",
            "TOKEN=sk-1",
            "--environment",
            "prod",
        ]);
        let prepared = prepare(&args).expect("valid");
        assert_eq!(prepared.kind, Some(ExecutionKind::Workflow));
        assert_eq!(prepared.name, "fetch");
        let request = workflow_create_request(&args).expect("valid");
        assert_eq!(request.workflow, "fetch");
        assert!(request.agent.is_empty() && request.message.is_empty());
        assert_eq!(
            serde_json::from_str::<Value>(&request.input_json).expect("JSON"),
            serde_json::json!({"url": "https://example.com"})
        );
        assert_eq!(request.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(
            request.secrets.get("TOKEN").map(String::as_str),
            Some("sk-1")
        );
        assert_eq!(request.environments, ["prod"]);
        // No --input: the server's default input.
        let bare = workflow_create_request(&run_args(&["run", "fetch"])).expect("valid");
        assert!(bare.input_json.is_empty());
        // A bare name has no kind until the server says which exists.
        assert_eq!(
            prepare(&run_args(&["run", "fetch"])).expect("ok").kind,
            None
        );
        assert_eq!(
            prepare(&run_args(&["run", "agent/hello", "hi"]))
                .expect("ok")
                .kind,
            Some(ExecutionKind::Agent)
        );
    }

    #[test]
    fn a_message_or_agent_options_for_a_workflow_are_refused() {
        for wrong in [
            &["run", "workflow/fetch", "hi"][..],
            &["run", "workflow/fetch", "-m", "hi"][..],
            &["run", "fetch", "hi", "--input", "{}"][..],
        ] {
            let failure = prepare(&run_args(wrong)).expect_err("a message");
            assert_eq!(failure.code, EXIT_INVALID_INPUT, "{wrong:?}");
            assert!(failure.message.contains("--input"), "{failure:?}");
        }
        // Known to be a workflow only once the server said so.
        let failure =
            workflow_create_request(&run_args(&["run", "fetch", "hi"])).expect_err("a message");
        assert!(failure.message.contains("takes no message"), "{failure:?}");
        for (option, value) in [("--session", "ses-1"), ("--model", "m")] {
            let failure =
                prepare(&run_args(&["run", "workflow/fetch", option, value])).expect_err(option);
            assert_eq!(failure.code, EXIT_INVALID_INPUT);
            assert!(failure.message.starts_with(option), "{failure:?}");
            let failure = workflow_create_request(&run_args(&["run", "fetch", option, value]))
                .expect_err(option);
            assert!(failure.message.starts_with(option), "{failure:?}");
        }
        let failure = prepare(&run_args(&["run", "agent/hello", "--input", "{}"]))
            .expect_err("input for an agent");
        assert!(
            failure.message.contains("--input is for workflows"),
            "{failure:?}"
        );
        let failure =
            create_request(&run_args(&["run", "hello", "--input", "{}"])).expect_err("input");
        assert!(
            failure.message.contains("--input is for workflows"),
            "{failure:?}"
        );
    }

    #[test]
    fn bad_input_json_is_refused_with_where_it_is_wrong() {
        let failure = read_input("{\"a\": ").expect_err("bad JSON");
        assert_eq!(failure.code, EXIT_INVALID_INPUT);
        assert!(
            failure.message.starts_with("--input is not JSON: "),
            "{failure:?}"
        );
        assert!(failure.message.contains("column"), "{failure:?}");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("input.json");
        std::fs::write(&path, "{\n  \"a\": 1,\n  \"b\": nope\n}\n").expect("written");
        let failure = read_input(&format!("@{}", path.display())).expect_err("bad JSON");
        assert_eq!(
            failure.message,
            format!(
                "{}:3:9: the input is not JSON: expected ident",
                path.display()
            )
        );
        std::fs::write(&path, "[1, 2]").expect("written");
        assert_eq!(
            read_input(&format!("@{}", path.display())).expect("valid"),
            serde_json::json!([1, 2])
        );
        let failure = read_input("@/no/such/input.json").expect_err("missing");
        assert!(
            failure.message.contains("/no/such/input.json"),
            "{failure:?}"
        );
        assert_eq!(read_input("42").expect("valid"), serde_json::json!(42));
    }

    #[test]
    fn execution_list_filters_by_kind() {
        match parse(&["execution", "list", "--kind", "workflow"])
            .expect("valid")
            .command
        {
            Command::Execution(ExecutionCommand::List(list)) => {
                assert_eq!(list.kind, Some(ExecutionKindArg::Workflow));
            }
            other => panic!("expected list, got {other:?}"),
        }
        assert_eq!(
            parse(&["execution", "list", "--kind", "session"])
                .expect_err("not a kind")
                .exit_code(),
            2
        );
    }

    #[test]
    fn run_options_become_the_request() {
        let args = run_args(&[
            "run",
            "hello",
            "-m",
            "hi",
            "--session",
            "ses-1",
            "--model",
            "qwen3:8b",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--secret",
            "TOKEN=sk-123",
            "--json",
        ]);
        assert!(args.json && !args.no_follow);
        let request = create_request(&args).expect("valid");
        assert_eq!(request.agent, "hello");
        assert_eq!(request.message, "hi");
        assert_eq!(request.session_id, "ses-1");
        assert_eq!(request.model, "qwen3:8b");
        assert_eq!(request.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(request.env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(
            request.secrets.get("TOKEN").map(String::as_str),
            Some("sk-123")
        );
        // Secrets never show in debug output of the parsed arguments.
        assert!(!format!("{args:?}").contains("sk-123"));
        let bare = create_request(&run_args(&["run", "hello", "hi"])).expect("valid");
        assert!(bare.session_id.is_empty() && bare.model.is_empty() && bare.env.is_empty());
    }

    #[test]
    fn a_bad_env_is_a_usage_error() {
        for wrong in ["NOEQUALS", "=1", "1A=x", "A-B=x"] {
            let error = parse(&["run", "hello", "hi", "--env", wrong]).expect_err(wrong);
            assert_eq!(error.exit_code(), 2, "{wrong}");
        }
    }

    #[test]
    fn a_bad_secret_is_reported_without_its_text() {
        for wrong in ["sk-live-abcdef", "=sk-live-abcdef", "my key=sk-live-abcdef"] {
            let args = run_args(&["run", "hello", "hi", "--secret", "A=1", "--secret", wrong]);
            let failure = create_request(&args).expect_err(wrong);
            assert_eq!(failure.code, EXIT_INVALID_INPUT);
            assert!(failure.message.contains("--secret number 2"), "{failure:?}");
            assert!(!format!("{failure:?}").contains("sk-live"), "{failure:?}");
        }
    }

    #[test]
    fn an_empty_message_is_a_usage_error() {
        let failure = create_request(&run_args(&["run", "hello", "  "])).expect_err("empty");
        assert_eq!(failure.code, EXIT_INVALID_INPUT);
    }

    #[test]
    fn execution_commands_parse_with_their_aliases() {
        for group in ["execution", "executions", "ex"] {
            assert!(matches!(
                parse(&[group, "list"]).expect("valid").command,
                Command::Execution(ExecutionCommand::List(_))
            ));
        }
        assert!(matches!(
            parse(&["execution", "ls", "-o", "json"])
                .expect("valid")
                .command,
            Command::Execution(ExecutionCommand::List(_))
        ));
        match parse(&["execution", "watch", "aex-1", "--json"])
            .expect("valid")
            .command
        {
            Command::Execution(ExecutionCommand::Watch(watch)) => {
                assert_eq!(watch.id, "aex-1");
                assert!(watch.json);
            }
            other => panic!("expected watch, got {other:?}"),
        }
        assert!(matches!(
            parse(&["execution", "cancel", "aex-1"])
                .expect("valid")
                .command,
            Command::Execution(ExecutionCommand::Cancel(_))
        ));
        assert!(matches!(
            parse(&["execution", "get", "aex-1"])
                .expect("valid")
                .command,
            Command::Execution(ExecutionCommand::Get(_))
        ));
        assert_eq!(
            parse(&["execution", "get"]).expect_err("no id").exit_code(),
            2
        );
    }
}
