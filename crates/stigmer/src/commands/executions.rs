//! `stigmer run` and `stigmer execution list|get|cancel|watch`: create agent executions, list
//! and cancel them, and follow their event logs with [`super::follow`].

use super::execution_output::{LIST_HINT, execution_failure, phase_of, sort_by_creation};
use super::follow::{CANCEL_WAIT, Follow, OnInterrupt, interrupts, replay_offline};
use super::output::{decode, format_resources, read_offline};
use crate::cli::{
    ExecutionGetArgs, ExecutionIdArgs, ExecutionListArgs, ExecutionWatchArgs, RunArgs, SecretArg,
    is_variable_name,
};
use crate::failure::{EXIT_INVALID_INPUT, Failure, status_failure};
use crate::printer::{Printer, print_data};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use stigmer_client::home::is_locked;
use stigmer_config::StigmerHome;
use stigmer_proto::execution::{AgentExecutionSpec, ExecutionPhase};
use stigmer_proto::executions::v1::{
    CancelExecutionRequest, CreateExecutionRequest, GetExecutionRequest, ListExecutionsRequest,
};
use stigmer_resources::{Kind, Resource};
use tonic::{Code, Status};

pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let request = create_request(&args)?;
    let home = super::invocation::home()?;
    let mut client = super::server::ensure_running(&home).await?;
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
        .map_err(create_failure)?;
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
    let spec = AgentExecutionSpec::from_value(&execution.spec).unwrap_or_default();
    let given_or = |value: String, fallback: &str| {
        if value.is_empty() {
            fallback.to_owned()
        } else {
            value
        }
    };
    printer.line(&printer.paint(
        "2",
        &format!(
            "execution {execution_id} (agent {}, session {})",
            given_or(spec.agent, &args.agent),
            given_or(spec.session, "?"),
        ),
    ));
    let follow = Follow {
        home: &home,
        execution_id,
        json: args.json,
        on_interrupt: OnInterrupt::Cancel,
        started,
    };
    follow.run(Some(client), interrupts).await
}

/// The request `run` sends, checked before anything starts: the message is not empty and
/// every `--secret` is `KEY=VALUE` (a wrong one is reported without its text).
fn create_request(args: &RunArgs) -> Result<CreateExecutionRequest, Failure> {
    let message = args.message_text();
    if message.trim().is_empty() {
        return Err(Failure::new("the message is empty")
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(format!(
                "say what the agent should do: `stigmer run {} \"…\"`",
                args.agent
            ))));
    }
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
    Ok(CreateExecutionRequest {
        agent: args.agent.clone(),
        message: message.to_owned(),
        session_id: args.session.clone().unwrap_or_default(),
        model: args.model.clone().unwrap_or_default(),
        env,
        secrets,
        environments: args.environments.clone(),
    })
}

fn split_secret(secret: &SecretArg) -> Option<(String, String)> {
    let (key, value) = secret.0.expose().split_once('=')?;
    is_variable_name(key).then(|| (key.to_owned(), value.to_owned()))
}

/// A failed `CreateExecution`: the server's message (it names the agent and suggests a close
/// one), with a hint where one helps.
fn create_failure(status: Status) -> Failure {
    let unknown_agent = status.code() == Code::NotFound && status.message().starts_with("agent ");
    let failure = status_failure(status);
    if unknown_agent {
        failure.with_hint(Some("list the agents with `stigmer get agents`".into()))
    } else {
        failure
    }
}

/// One execution from the store file (no daemon runs).
fn read_offline_execution(home: &StigmerHome, execution_id: &str) -> Result<Resource, Failure> {
    let mut found =
        read_offline(home, Kind::AgentExecution, Some(execution_id)).map_err(|failure| {
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
        execution_id: args.id,
        json: args.json,
        on_interrupt: OnInterrupt::Detach,
        started,
    };
    follow.run(Some(client), interrupts()?).await
}

pub async fn list(args: ExecutionListArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let mut executions = if is_locked(&home.lock_file()) {
        let mut client = super::server::connect(&home).await?;
        client
            .executions()
            .list_executions(ListExecutionsRequest {})
            .await
            .map_err(status_failure)?
            .into_inner()
            .executions_json
            .iter()
            .map(|json| decode(json))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        // Reading needs no daemon: the store is a file.
        read_offline(&home, Kind::AgentExecution, None)?
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
    if let Some(output) = format_resources(Kind::AgentExecution, &[execution], true, args.output)? {
        print_data(&output);
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
        for wrong in [
            &["run", "hello"][..],
            &["run", "hello", "hi", "-m", "hi"][..],
            &["run"][..],
        ] {
            let error = parse(wrong).expect_err("a usage error");
            assert_eq!(error.exit_code(), 2, "{wrong:?}");
        }
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
