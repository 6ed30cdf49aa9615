//! Tool calls of an agent execution that wait for a person's decision: `stigmer execution
//! approve|deny`, and the question `run` asks inline ([`Prompter`]) when it has a terminal.
//! The server hands each decision to the execution's workflow; this module only asks and
//! says what happened. A sub-agent's calls are asked about too, and decided on the sub-agent's
//! own execution.

use super::execution_output::{execution_failure, status_of};
use super::output::decode;
use crate::cli::{ExecutionApproveArgs, ExecutionDenyArgs};
use crate::client::DaemonClient;
use crate::failure::Failure;
use crate::printer::{Printer, print_data};
use crate::render::{approval_commands, trim_line};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::process::ExitCode;
use std::time::Duration;
use stigmer_client::executions::{Approval, ApprovalTarget};
use stigmer_config::StigmerHome;
use stigmer_proto::execution::{ExecutionEvent, ExecutionPhase, PendingApproval};
use stigmer_proto::executions::v1::GetExecutionRequest;
use tonic::{Code, Status};

/// Longest call shown in the inline question, in characters.
const QUESTION_LIMIT: usize = 100;
/// Bound of a decision sent from `run`: the server waits up to 10 s for the runner.
const DECISION_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn approve(args: ExecutionApproveArgs) -> Result<ExitCode, Failure> {
    decide(&args.id, target(args.calls, args.all), Approval::Approve).await
}

pub async fn deny(args: ExecutionDenyArgs) -> Result<ExitCode, Failure> {
    let message = args.message.filter(|message| !message.trim().is_empty());
    decide(
        &args.id,
        target(args.calls, args.all),
        Approval::Deny { message },
    )
    .await
}

fn target(calls: Vec<String>, all: bool) -> ApprovalTarget {
    if all {
        ApprovalTarget::All
    } else {
        ApprovalTarget::Calls(calls)
    }
}

/// Sends one decision and prints the calls it decided, one a line (`approved execute call_1`).
async fn decide(
    execution_id: &str,
    target: ApprovalTarget,
    approval: Approval,
) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let mut client = super::server::ensure_running(&home).await?;
    // What waits now, to name the tools of the calls decided (and to say which wait when the
    // decision is refused).
    let waiting = pending_approvals(&mut client, execution_id).await.ok();
    let decided = client
        .api()
        .decide_approvals(execution_id, target, approval.clone())
        .await;
    let decided = match decided {
        Ok(decided) => decided,
        Err(status) => {
            let now = pending_approvals(&mut client, execution_id).await.ok();
            return Err(decision_failure(status, execution_id, now.as_deref()));
        }
    };
    let verb = match approval {
        Approval::Approve => "approved",
        Approval::Deny { .. } => "denied",
    };
    for call_id in decided {
        let name = waiting
            .iter()
            .flatten()
            .find(|call| call.call_id == call_id)
            .map(|call| format!("{} ", call.name))
            .unwrap_or_default();
        print_data(&format!("{verb} {name}{call_id}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// The calls of an execution that wait for a decision, as its status lists them.
async fn pending_approvals(
    client: &mut DaemonClient,
    execution_id: &str,
) -> Result<Vec<PendingApproval>, Status> {
    let response = client
        .executions()
        .get_execution(GetExecutionRequest {
            execution_id: execution_id.to_owned(),
        })
        .await?;
    let execution = decode(&response.into_inner().execution_json)
        .map_err(|failure| Status::internal(failure.message))?;
    let status = status_of(&execution);
    if status.phase.is_terminal() {
        return Ok(Vec::new());
    }
    Ok(status.pending_approvals)
}

/// A refused decision, with what to do next: a call that does not wait is answered with the
/// calls that do (`waiting`, when they could be read).
fn decision_failure(
    status: Status,
    execution_id: &str,
    waiting: Option<&[PendingApproval]>,
) -> Failure {
    let refused = status.code() == Code::FailedPrecondition;
    let failure = execution_failure(status);
    if !refused {
        return failure;
    }
    let hint = match waiting {
        None => return failure,
        Some([]) => format!(
            "no call of execution {execution_id} waits for a decision; see `stigmer execution \
             get {execution_id}`"
        ),
        Some(waiting) => {
            let calls: Vec<String> = waiting
                .iter()
                .map(|call| format!("{} ({})", call.call_id, call.name))
                .collect();
            let (approve, deny) = approval_commands(execution_id, &waiting[0].call_id);
            format!(
                "the calls that wait: {}; e.g. `{approve}` or `{deny}`",
                calls.join(", ")
            )
        }
    };
    failure.with_hint(Some(hint))
}

/// A call `run` may ask about.
#[derive(Clone, Debug, PartialEq)]
struct Waiting {
    /// The execution that waits: the one `run` follows, or one of its sub-agents'.
    execution_id: String,
    /// The sub-agent's name, for a sub-agent's call.
    sub_agent: Option<String>,
    turn: u32,
    call_id: String,
    name: String,
    arguments: Value,
}

/// What the answer typed next is for.
#[derive(Clone, Debug, PartialEq)]
enum Question {
    /// `Allow …? [y]es / [n]o / [a]ll`.
    Allow(Waiting),
    /// The reason of a denial (empty for none).
    Reason(Waiting),
}

/// What the prompter waits for, handed to [`Prompter::handle`].
pub(super) enum PromptInput {
    /// A line typed at the terminal; `None` when stdin closed.
    Line(Option<String>),
    /// How a decision sent went: the calls it was about, the execution, and the server's
    /// answer.
    Sent(String, String, Result<Vec<String>, Status>),
}

/// What [`Prompter::send`] leaves running: the calls, the execution, the server's answer.
type Sent = (String, String, Result<Vec<String>, Status>);

/// The inline question of `run` on a terminal: once the execution waits, for each call that
/// waits, in order, `Allow NAME ARGS? [y]es / [n]o / [a]ll` (a reason is asked after `n`), the
/// decision sent through the server while following goes on. A call decided elsewhere (another
/// terminal, a timeout) is not asked about any more: the question shown is always the one the
/// next line answers, and lines written while it is open move it down (see
/// [`Prompter::hide_question`]).
pub(super) struct Prompter {
    home: StigmerHome,
    execution_id: String,
    printer: Printer,
    /// Calls that wait, in the order they were requested; the first is asked about.
    queue: VecDeque<Waiting>,
    question: Option<Question>,
    /// The open question is the last thing on the screen (its line not ended).
    question_shown: bool,
    /// The executions (this one, its sub-agents') whose phase is `waiting`: every call of
    /// their turn that waits was requested.
    waiting: HashSet<String>,
    /// The sub-agents' executions: id → the sub-agent's name.
    sub_agents: HashMap<String, String>,
    /// Lines typed, from a thread reading stdin (started with the first question).
    lines: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    /// stdin closed: nothing more is asked.
    closed: bool,
    sent: tokio::task::JoinSet<Sent>,
}

impl Prompter {
    pub(super) fn new(home: &StigmerHome, execution_id: &str) -> Prompter {
        Prompter {
            home: home.clone(),
            execution_id: execution_id.to_owned(),
            printer: Printer::stderr(),
            queue: VecDeque::new(),
            question: None,
            question_shown: false,
            waiting: HashSet::new(),
            sub_agents: HashMap::new(),
            lines: None,
            closed: false,
            sent: tokio::task::JoinSet::new(),
        }
    }

    /// Keeps up with the events of the execution (`execution_id`) or of one of its
    /// sub-agents: a call that asks joins the queue, a call decided leaves it (and its
    /// question, if it was being asked).
    pub(super) fn on_event(&mut self, execution_id: &str, event: &ExecutionEvent) {
        let is = |call: &Waiting, turn: u32, call_id: &str| {
            call.execution_id == execution_id && call.turn == turn && call.call_id == call_id
        };
        match event {
            ExecutionEvent::SubAgentStarted(started)
                if started.parent.is_none() && execution_id == self.execution_id =>
            {
                self.sub_agents
                    .insert(started.execution_id.clone(), started.name.clone());
                return;
            }
            ExecutionEvent::ApprovalRequested(requested) if requested.parent.is_none() => {
                let known = self
                    .queue
                    .iter()
                    .any(|call| is(call, requested.turn, &requested.call_id));
                if !known {
                    self.queue.push_back(Waiting {
                        execution_id: execution_id.to_owned(),
                        sub_agent: self.sub_agents.get(execution_id).cloned(),
                        turn: requested.turn,
                        call_id: requested.call_id.clone(),
                        name: requested.name.clone(),
                        arguments: requested.arguments.clone(),
                    });
                }
            }
            ExecutionEvent::ApprovalDecided(decided) if decided.parent.is_none() => {
                self.queue
                    .retain(|call| !is(call, decided.turn, &decided.call_id));
                let asked = match &self.question {
                    Some(Question::Allow(call) | Question::Reason(call)) => {
                        is(call, decided.turn, &decided.call_id)
                    }
                    None => false,
                };
                if asked {
                    self.question = None;
                }
            }
            ExecutionEvent::PhaseChanged(changed) if changed.parent.is_none() => {
                if changed.phase == ExecutionPhase::Waiting {
                    self.waiting.insert(execution_id.to_owned());
                } else {
                    self.waiting.remove(execution_id);
                }
            }
            _ => return,
        }
        self.ask_next();
    }

    /// Ends the line of the open question before other lines are written below it.
    pub(super) fn hide_question(&mut self) {
        if self.question_shown {
            self.printer.line("");
            self.question_shown = false;
        }
    }

    /// Asks the open question again under the lines written since [`Prompter::hide_question`].
    pub(super) fn show_question(&mut self) {
        if !self.question_shown {
            self.print_question();
        }
    }

    /// The next line typed or decision answered; pending while there is neither to wait for.
    pub(super) async fn next(&mut self) -> PromptInput {
        let lines = self.lines.as_mut().filter(|_| !self.closed);
        tokio::select! {
            line = async {
                match lines {
                    Some(lines) => lines.recv().await,
                    None => std::future::pending().await,
                }
            } => PromptInput::Line(line),
            Some(Ok((calls, execution_id, result))) = self.sent.join_next() => {
                PromptInput::Sent(calls, execution_id, result)
            }
        }
    }

    pub(super) fn handle(&mut self, input: PromptInput) {
        if matches!(input, PromptInput::Line(_)) {
            // Enter ended the question's line.
            self.question_shown = false;
        }
        match input {
            PromptInput::Line(None) => {
                self.closed = true;
                self.question = None;
            }
            PromptInput::Line(Some(line)) => self.answer(line.trim()),
            PromptInput::Sent(_, _, Ok(_)) => {}
            PromptInput::Sent(calls, execution_id, Err(status)) => {
                self.hide_question();
                self.printer.warning(&format!(
                    "the decision on {calls} was not taken: {}",
                    status.message()
                ));
                self.printer.line(&format!(
                    "decide with `stigmer execution approve|deny {execution_id} CALL`; \
                     `stigmer execution get {execution_id}` lists the calls that wait"
                ));
                self.show_question();
            }
        }
    }

    fn answer(&mut self, line: &str) {
        let Some(question) = self.question.take() else {
            // Typed while nothing was asked.
            return;
        };
        match question {
            Question::Allow(call) => match line.to_ascii_lowercase().as_str() {
                "y" | "yes" => {
                    self.send(
                        call.call_id.clone(),
                        &call.execution_id,
                        ApprovalTarget::Calls(vec![call.call_id.clone()]),
                        Approval::Approve,
                    );
                    self.forget(&call);
                }
                "a" | "all" => {
                    // Every call that waits, of every execution that asked (the sub-agents').
                    let mut executions = vec![call.execution_id.clone()];
                    for waiting in &self.queue {
                        if !executions.contains(&waiting.execution_id) {
                            executions.push(waiting.execution_id.clone());
                        }
                    }
                    for execution_id in executions {
                        let calls = if execution_id == self.execution_id {
                            "every waiting call".to_owned()
                        } else {
                            format!("every waiting call of {execution_id}")
                        };
                        self.send(calls, &execution_id, ApprovalTarget::All, Approval::Approve);
                    }
                    self.queue.clear();
                }
                "n" | "no" => {
                    self.question = Some(Question::Reason(call));
                    self.print_question();
                    return;
                }
                _ => {
                    // Not an answer: the same question again.
                    self.question = Some(Question::Allow(call));
                    self.print_question();
                    return;
                }
            },
            Question::Reason(call) => {
                let message = (!line.is_empty()).then(|| line.to_owned());
                self.send(
                    call.call_id.clone(),
                    &call.execution_id,
                    ApprovalTarget::Calls(vec![call.call_id.clone()]),
                    Approval::Deny { message },
                );
                self.forget(&call);
            }
        }
        self.ask_next();
    }

    fn forget(&mut self, call: &Waiting) {
        self.queue.retain(|waiting| {
            !(waiting.execution_id == call.execution_id
                && waiting.turn == call.turn
                && waiting.call_id == call.call_id)
        });
    }

    /// Asks about the first call whose execution waits, unless a question is open.
    fn ask_next(&mut self) {
        if self.closed || self.question.is_some() {
            return;
        }
        let Some(call) = self
            .queue
            .iter()
            .find(|call| self.waiting.contains(&call.execution_id))
            .cloned()
        else {
            return;
        };
        if self.lines.is_none() {
            self.lines = Some(read_lines());
        }
        self.question = Some(Question::Allow(call));
        self.print_question();
    }

    fn print_question(&mut self) {
        let text = match &self.question {
            Some(Question::Allow(call)) => format!("{} ", allow_question(call)),
            Some(Question::Reason(_)) => "Reason for the model (Enter for none): ".to_owned(),
            None => return,
        };
        self.printer.prompt(&text);
        self.question_shown = true;
    }

    /// Sends a decision in the background; its answer comes back through [`Prompter::next`].
    fn send(
        &mut self,
        calls: String,
        execution_id: &str,
        target: ApprovalTarget,
        approval: Approval,
    ) {
        let home = self.home.clone();
        let execution_id = execution_id.to_owned();
        self.sent.spawn(async move {
            let decision = async {
                let client = DaemonClient::connect(&home)
                    .await
                    .map_err(Status::unavailable)?;
                client
                    .api()
                    .decide_approvals(&execution_id, target, approval)
                    .await
            };
            let result = tokio::time::timeout(DECISION_TIMEOUT, decision)
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("the daemon did not answer")));
            (calls, execution_id, result)
        });
    }
}

/// `Allow execute {"command":"ls"}? [y]es / [n]o / [a]ll`, with `(sub-agent NAME)` after the
/// arguments for a sub-agent's call.
fn allow_question(call: &Waiting) -> String {
    let arguments = match &call.arguments {
        Value::Null => String::new(),
        arguments => format!(" {arguments}"),
    };
    let sub_agent = call
        .sub_agent
        .as_deref()
        .map(|name| format!(" (sub-agent {name})"))
        .unwrap_or_default();
    let text = trim_line(
        &format!("{}{arguments}", call.name)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>(),
        QUESTION_LIMIT,
        "…",
    );
    let sub_agent: String = sub_agent
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("Allow {text}{sub_agent}? [y]es / [n]o / [a]ll")
}

/// Lines typed on stdin, read by a thread of their own (a blocking read that never keeps the
/// process from exiting); the channel closes at end of input.
fn read_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if sender.send(line.clone()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stigmer_proto::execution::{ApprovalDecided, ApprovalRequested, PhaseChanged};

    fn pending(call_id: &str, name: &str) -> PendingApproval {
        PendingApproval {
            turn: 1,
            call_id: call_id.into(),
            name: name.into(),
            arguments: json!({}),
            reason: String::new(),
            expires_at: String::new(),
        }
    }

    #[test]
    fn a_refused_decision_names_the_calls_that_wait() {
        let refused =
            || Status::failed_precondition("call \"call_7\" does not wait for a decision");
        let failure = decision_failure(
            refused(),
            "aex-1",
            Some(&[
                pending("call_1", "execute"),
                pending("call_2", "write_file"),
            ]),
        );
        assert_eq!(failure.code, 1);
        assert_eq!(
            failure.message,
            "call \"call_7\" does not wait for a decision"
        );
        insta::assert_snapshot!(failure.hint.unwrap(), @"the calls that wait: call_1 (execute), call_2 (write_file); e.g. `stigmer execution approve aex-1 call_1` or `stigmer execution deny aex-1 call_1`");
        let failure = decision_failure(refused(), "aex-1", Some(&[]));
        insta::assert_snapshot!(failure.hint.unwrap(), @"no call of execution aex-1 waits for a decision; see `stigmer execution get aex-1`");
        // Not found: where to find ids; invalid input: exit code 2.
        let failure = decision_failure(
            Status::not_found("execution \"aex-9\" not found"),
            "aex-9",
            None,
        );
        assert!(failure.hint.unwrap().contains("stigmer execution list"));
        let failure = decision_failure(
            Status::invalid_argument("a message goes only with a denial"),
            "aex-1",
            None,
        );
        assert_eq!(failure.code, 2);
    }

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        use clap::Parser;
        crate::cli::Cli::try_parse_from(std::iter::once("stigmer").chain(args.iter().copied()))
    }

    #[test]
    fn approve_and_deny_take_calls_or_all_and_deny_a_message() {
        use crate::cli::{Command, ExecutionCommand};
        match parse(&["execution", "approve", "aex-1", "call_1", "call_2"])
            .expect("valid")
            .command
        {
            Command::Execution(ExecutionCommand::Approve(args)) => {
                assert_eq!(args.id, "aex-1");
                assert_eq!(args.calls, ["call_1", "call_2"]);
                assert_eq!(
                    target(args.calls, args.all),
                    ApprovalTarget::Calls(vec!["call_1".into(), "call_2".into()])
                );
            }
            other => panic!("expected approve, got {other:?}"),
        }
        match parse(&["ex", "deny", "aex-1", "--all", "--message", "not now"])
            .expect("valid")
            .command
        {
            Command::Execution(ExecutionCommand::Deny(args)) => {
                assert_eq!(target(args.calls, args.all), ApprovalTarget::All);
                assert_eq!(args.message.as_deref(), Some("not now"));
            }
            other => panic!("expected deny, got {other:?}"),
        }
        for wrong in [
            &["execution", "approve", "aex-1"][..],
            &["execution", "approve", "aex-1", "call_1", "--all"][..],
            &[
                "execution",
                "approve",
                "aex-1",
                "call_1",
                "--message",
                "why",
            ][..],
            &["execution", "deny"][..],
        ] {
            assert_eq!(
                parse(wrong).expect_err("a usage error").exit_code(),
                2,
                "{wrong:?}"
            );
        }
    }

    fn requested(call_id: &str) -> ExecutionEvent {
        ApprovalRequested {
            turn: 1,
            index: 0,
            call_id: call_id.into(),
            name: "execute".into(),
            arguments: json!({"command": "echo x >> count.txt"}),
            reason: String::new(),
            expires_at: String::new(),
            parent: None,
        }
        .into()
    }

    fn decided(call_id: &str) -> ExecutionEvent {
        ApprovalDecided {
            turn: 1,
            call_id: call_id.into(),
            approved: true,
            message: None,
            by: "user".into(),
            parent: None,
        }
        .into()
    }

    #[test]
    fn the_question_names_the_call_and_its_arguments() {
        let call = Waiting {
            execution_id: "aex-1".into(),
            sub_agent: None,
            turn: 1,
            call_id: "call_1".into(),
            name: "execute".into(),
            arguments: json!({"command": "echo x >> count.txt"}),
        };
        insta::assert_snapshot!(allow_question(&call), @r#"Allow execute {"command":"echo x >> count.txt"}? [y]es / [n]o / [a]ll"#);
        let long = Waiting {
            arguments: json!({"command": "x".repeat(200)}),
            ..call.clone()
        };
        assert!(allow_question(&long).chars().count() < QUESTION_LIMIT + 40);
        let sub_agent = Waiting {
            sub_agent: Some("researcher".into()),
            ..call
        };
        insta::assert_snapshot!(allow_question(&sub_agent), @r#"Allow execute {"command":"echo x >> count.txt"} (sub-agent researcher)? [y]es / [n]o / [a]ll"#);
    }

    #[tokio::test]
    async fn a_sub_agents_call_is_asked_about_and_decided_on_its_own_execution() {
        let home = StigmerHome::new(std::path::PathBuf::from("/nonexistent/stigmer-home"));
        let mut prompter = Prompter::new(&home, "aex-1");
        let (_typed, lines) = tokio::sync::mpsc::unbounded_channel();
        prompter.lines = Some(lines);
        let started = stigmer_proto::execution::SubAgentStarted {
            turn: 1,
            call_id: "task_1".into(),
            name: "researcher".into(),
            execution_id: "aex-2".into(),
            parent: None,
        };
        prompter.on_event("aex-1", &started.into());
        // The same call id in the parent and in the sub-agent: two calls.
        prompter.on_event("aex-2", &requested("call_1"));
        prompter.on_event("aex-1", &requested("call_1"));
        assert_eq!(prompter.queue.len(), 2);
        let asked = |prompter: &Prompter| match &prompter.question {
            Some(Question::Allow(call) | Question::Reason(call)) => Some((
                call.execution_id.clone(),
                call.call_id.clone(),
                call.sub_agent.clone(),
            )),
            None => None,
        };
        // The sub-agent waits (its parent still runs, its `task` call open): its call is asked.
        prompter.on_event(
            "aex-2",
            &PhaseChanged::new(ExecutionPhase::Waiting, None).into(),
        );
        let researcher = Some(("aex-2".into(), "call_1".into(), Some("researcher".into())));
        assert_eq!(asked(&prompter), researcher);
        // The parent's call of the same id decided elsewhere: the sub-agent's is still asked.
        prompter.on_event("aex-1", &decided("call_1"));
        assert_eq!(asked(&prompter), researcher);
        prompter.answer("y");
        assert_eq!(prompter.question, None);
        assert!(prompter.queue.is_empty());
        match prompter.next().await {
            PromptInput::Sent(calls, execution_id, result) => {
                assert_eq!(calls, "call_1");
                assert_eq!(
                    execution_id, "aex-2",
                    "decided on the sub-agent's execution"
                );
                assert!(result.is_err());
            }
            PromptInput::Line(_) => panic!("expected the decision's answer"),
        }
    }

    #[tokio::test]
    async fn calls_are_asked_in_order_and_one_decided_elsewhere_is_not_asked() {
        let home = StigmerHome::new(std::path::PathBuf::from("/nonexistent/stigmer-home"));
        let mut prompter = Prompter::new(&home, "aex-1");
        // Lines come from the test, not from stdin.
        let (_typed, lines) = tokio::sync::mpsc::unbounded_channel();
        prompter.lines = Some(lines);
        prompter.on_event("aex-1", &requested("call_1"));
        prompter.on_event("aex-1", &requested("call_2"));
        prompter.on_event("aex-1", &requested("call_1"));
        assert_eq!(prompter.queue.len(), 2);
        let asked = |prompter: &Prompter| match &prompter.question {
            Some(Question::Allow(call) | Question::Reason(call)) => Some(call.call_id.clone()),
            None => None,
        };
        // Asked once the execution waits: every call of the turn that waits is known then.
        assert_eq!(asked(&prompter), None);
        prompter.on_event(
            "aex-1",
            &PhaseChanged::new(ExecutionPhase::Waiting, None).into(),
        );
        assert_eq!(asked(&prompter).as_deref(), Some("call_1"));
        // Decided from another terminal: the next call is asked about.
        prompter.on_event("aex-1", &decided("call_1"));
        assert_eq!(asked(&prompter).as_deref(), Some("call_2"));
        // Something that is no answer asks again; `n` asks for the reason.
        prompter.answer("maybe");
        assert_eq!(asked(&prompter).as_deref(), Some("call_2"));
        prompter.answer("n");
        assert!(matches!(prompter.question, Some(Question::Reason(_))));
        prompter.answer("not now");
        assert_eq!(prompter.question, None);
        assert!(prompter.queue.is_empty());
        // The denial went out (to a home without a daemon: it fails, and says so).
        match prompter.next().await {
            PromptInput::Sent(calls, execution_id, result) => {
                assert_eq!(calls, "call_2");
                assert_eq!(execution_id, "aex-1");
                assert!(result.is_err());
            }
            PromptInput::Line(_) => panic!("expected the decision's answer"),
        }
    }
}
