//! The interpreter: walks a [`Workflow`] deterministically. Pure tasks (`set`, `switch`, flow,
//! data flow, `raise`) run here without any side effect; everything else goes through the
//! [`Host`]: HTTP calls, agent runs, child workflows, timers, the clock and randomness. The
//! workflow runner binds the host to Temporal (so all of this is replayable workflow code);
//! tests bind it to the process ([`crate::local::LocalHost`]).

use crate::error::Problem;
use crate::expr::{self, Determinism, Expr};
use crate::http::{Authentication, HttpCall, HttpOutput};
use crate::model::{Case, Catch, Flow, Kind, Task, TaskList, Workflow};
use crate::secrets;
use futures::FutureExt;
use futures::future::{Either, LocalBoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tasks one execution may run in all (loops included): a `then` cycle that never ends is an
/// error, not a run that goes on forever.
pub const MAX_TASKS: u64 = 100_000;

/// What the interpreter needs from the world. Every method must be deterministic on replay:
/// the Temporal binding records each in the workflow's history.
pub trait Host {
    /// The workflow's current time.
    fn now(&self) -> SystemTime;
    /// A fresh UUID (deterministic on replay).
    fn uuid(&self) -> String;
    /// A number in `[0, 1)` (deterministic on replay).
    fn random(&self) -> f64;
    /// A durable timer.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
    /// `call: http`: the task's raw output.
    fn call_http(
        &self,
        task: &TaskRef,
        call: HttpCall,
    ) -> impl Future<Output = Result<Value, Problem>>;
    /// `call: agent`: `{executionId, phase, text, data}`.
    fn call_agent(
        &self,
        task: &TaskRef,
        call: AgentCall,
    ) -> impl Future<Output = Result<Value, Problem>>;
    /// `run: workflow`: the child workflow's output.
    fn run_workflow(
        &self,
        task: &TaskRef,
        call: WorkflowCall,
    ) -> impl Future<Output = Result<Value, Problem>>;
    /// Progress of one task.
    fn event(&self, event: TaskEvent);
}

/// The task a side effect belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    pub name: String,
    /// JSON pointer: `/do/1/fetch`.
    pub reference: String,
}

/// `call: agent` with its expressions evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCall {
    pub agent: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `run: workflow` with its expressions evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowCall {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub input: Value,
}

/// One step of progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEvent {
    pub reference: String,
    pub name: String,
    pub kind: TaskEventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum TaskEventKind {
    Started,
    Completed {
        output: Value,
    },
    Failed {
        error: Problem,
    },
    #[serde(rename_all = "camelCase")]
    Retried {
        attempt: u32,
        error: Problem,
        delay_ms: u64,
    },
    Skipped,
    Waiting {
        millis: u64,
    },
}

/// One execution's start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub execution_id: String,
    pub input: Value,
    /// The names of the secrets the run has (their values stay with the activities).
    #[serde(default)]
    pub secret_names: Vec<String>,
}

/// Runs `workflow` to its output, or to the error that faulted it.
pub async fn run<H: Host>(workflow: &Workflow, host: &H, run: Run) -> Result<Value, Problem> {
    let started_at = host.now();
    let interp = Interp {
        workflow,
        host,
        secret_names: run.secret_names.iter().cloned().collect(),
        secrets: secrets::placeholders(&run.secret_names),
        workflow_var: json!({
            "id": run.execution_id,
            "definition": workflow.document,
            "input": run.input,
            "startedAt": date_time(started_at),
        }),
        runtime_var: json!({
            "name": "stigmer",
            "version": env!("CARGO_PKG_VERSION"),
            "metadata": {},
        }),
        tasks_run: Cell::new(0),
    };
    interp.run_workflow(run.input).await
}

/// Checks `input` against the workflow's `input.schema`, as the run's first step does: a
/// `validation` error says what does not match. For refusing an input before a run starts.
pub fn check_input(workflow: &Workflow, input: &Value) -> Result<(), Problem> {
    match &workflow.input_schema {
        Some(schema) => {
            check_schema(schema, input, "the workflow's input").map_err(|e| e.at("/input"))
        }
        None => Ok(()),
    }
}

/// The variables of one evaluation, besides the input.
#[derive(Clone, Default)]
struct Vars {
    context: Value,
    input: Value,
    output: Value,
    task: Value,
    authorization: Value,
}

/// Variables bound by enclosing `for` and `catch` (name with `$`, value).
type Scope = Rc<Vec<(String, Value)>>;

fn extend(scope: &Scope, bindings: impl IntoIterator<Item = (String, Value)>) -> Scope {
    let mut vars: Vec<(String, Value)> = scope.as_ref().clone();
    for (name, value) in bindings {
        vars.retain(|(existing, _)| *existing != name);
        vars.push((name, value));
    }
    Rc::new(vars)
}

struct Interp<'a, H> {
    workflow: &'a Workflow,
    host: &'a H,
    secret_names: BTreeSet<String>,
    secrets: Value,
    workflow_var: Value,
    runtime_var: Value,
    tasks_run: Cell<u64>,
}

type Step<'s> = LocalBoxFuture<'s, Result<(Value, Option<Flow>), Problem>>;

impl<'a, H: Host> Interp<'a, H> {
    async fn run_workflow(&self, raw: Value) -> Result<Value, Problem> {
        let workflow = self.workflow;
        let scope: Scope = Rc::default();
        if let Some(schema) = &workflow.input_schema {
            check_schema(schema, &raw, "the workflow's input").map_err(|e| e.at("/input"))?;
        }
        let vars = Vars::default();
        let input = match &workflow.input_from {
            Some(from) => self
                .eval_field(from, &raw, &vars, &scope)
                .map_err(|e| e.at("/input/from"))?,
            None => raw,
        };
        let mut context = Value::Object(Map::new());
        let body = self.run_list(&workflow.root, input, &mut context, &scope);
        let (output, _ended) = match &workflow.timeout {
            Some(timeout) => {
                let after = self
                    .timeout(timeout, &Value::Null, &vars, &scope)
                    .map_err(|e| e.at("/timeout"))?;
                self.within(after, body, "the workflow").await
            }
            None => body.await,
        }
        .map_err(|e| e.at("/"))?;
        let vars = Vars {
            context,
            ..Vars::default()
        };
        let output = match &workflow.output_as {
            Some(output_as) => self
                .eval_field(output_as, &output, &vars, &scope)
                .map_err(|e| e.at("/output/as"))?,
            None => output,
        };
        if let Some(schema) = &workflow.output_schema {
            check_schema(schema, &output, "the workflow's output").map_err(|e| e.at("/output"))?;
        }
        Ok(output)
    }

    /// Runs `list` from its first task; the output is the last task's, and `true` when a task
    /// ended the whole workflow (`then: end`).
    fn run_list<'s>(
        &'s self,
        list: &'s TaskList,
        input: Value,
        context: &'s mut Value,
        scope: &'s Scope,
    ) -> LocalBoxFuture<'s, Result<(Value, bool), Problem>> {
        async move {
            let mut data = input;
            let mut index = 0;
            while let Some(task) = list.tasks.get(index) {
                let (output, flow) = self.run_task(task, data, context, scope).await?;
                data = output;
                match flow {
                    Flow::Continue => index += 1,
                    Flow::Exit => return Ok((data, false)),
                    Flow::End => return Ok((data, true)),
                    Flow::Goto(name) => {
                        index = list.position(&name).ok_or_else(|| {
                            Problem::configuration(format!(
                                "`then: {name}` names no task of this list"
                            ))
                            .at(&task.reference)
                        })?;
                    }
                }
            }
            Ok((data, false))
        }
        .boxed_local()
    }

    /// One task: `if`, input, the task itself (within its timeout), output, export, `then`.
    fn run_task<'s>(
        &'s self,
        task: &'s Task,
        raw: Value,
        context: &'s mut Value,
        scope: &'s Scope,
    ) -> LocalBoxFuture<'s, Result<(Value, Flow), Problem>> {
        async move {
            let count = self.tasks_run.get() + 1;
            self.tasks_run.set(count);
            if count > MAX_TASKS {
                return Err(Problem::runtime(format!(
                    "the execution ran {MAX_TASKS} tasks: a `then` loop that never ends?"
                ))
                .at(&task.reference));
            }
            let task_var = json!({
                "name": task.name,
                "reference": task.reference,
                "definition": task.definition,
                "input": raw,
                "startedAt": date_time(self.host.now()),
            });
            if let Some(condition) = &task.condition {
                let vars = Vars {
                    context: context.clone(),
                    input: raw.clone(),
                    task: task_var.clone(),
                    ..Vars::default()
                };
                let text = expr::unwrap(condition).unwrap_or(condition);
                let value = self
                    .eval(text, &raw, &vars, scope)
                    .map_err(|e| e.at(&task.reference))?;
                if !truthy(&value) {
                    self.event(task, TaskEventKind::Skipped);
                    return Ok((raw, Flow::Continue));
                }
            }
            self.event(task, TaskEventKind::Started);
            match self.task_body(task, raw, context, scope, task_var).await {
                Ok((output, flow)) => {
                    self.event(
                        task,
                        TaskEventKind::Completed {
                            output: output.clone(),
                        },
                    );
                    Ok((output, flow))
                }
                Err(error) => {
                    let error = error.at(&task.reference);
                    self.event(
                        task,
                        TaskEventKind::Failed {
                            error: error.clone(),
                        },
                    );
                    Err(error)
                }
            }
        }
        .boxed_local()
    }

    async fn task_body(
        &self,
        task: &Task,
        raw: Value,
        context: &mut Value,
        scope: &Scope,
        mut task_var: Value,
    ) -> Result<(Value, Flow), Problem> {
        if let Some(schema) = &task.input_schema {
            check_schema(schema, &raw, "the task's input")?;
        }
        let mut vars = Vars {
            context: context.clone(),
            task: task_var.clone(),
            ..Vars::default()
        };
        let input = match &task.input_from {
            Some(from) => self.eval_field(from, &raw, &vars, scope)?,
            None => raw,
        };
        vars.input = input.clone();
        let body = self.run_kind(task, input.clone(), context, scope, &vars);
        let (raw_output, flow) = match &task.timeout {
            Some(timeout) => {
                let after = self.timeout(timeout, &input, &vars, scope)?;
                self.within(after, body, "the task").await?
            }
            None => body.await?,
        };
        task_var["output"] = raw_output.clone();
        vars.task = task_var;
        vars.context = context.clone();
        let output = match &task.output_as {
            Some(output_as) => self.eval_field(output_as, &raw_output, &vars, scope)?,
            None => raw_output,
        };
        if let Some(schema) = &task.output_schema {
            check_schema(schema, &output, "the task's output")?;
        }
        if let Some(export_as) = &task.export_as {
            vars.output = output.clone();
            let exported = self.eval_field(export_as, &output, &vars, scope)?;
            if let Some(schema) = &task.export_schema {
                check_schema(schema, &exported, "the exported context")?;
            }
            *context = exported;
        }
        Ok((output, flow.unwrap_or_else(|| task.then.clone())))
    }

    fn run_kind<'s>(
        &'s self,
        task: &'s Task,
        input: Value,
        context: &'s mut Value,
        scope: &'s Scope,
        vars: &'s Vars,
    ) -> Step<'s> {
        async move {
            let ended = |(output, ended): (Value, bool)| (output, ended.then_some(Flow::End));
            match &task.kind {
                Kind::Set(value) => Ok((self.template(value, &input, vars, scope)?, None)),
                Kind::Do(list) => Ok(ended(self.run_list(list, input, context, scope).await?)),
                Kind::Switch(cases) => {
                    Ok((input.clone(), self.switch(cases, &input, vars, scope)?))
                }
                Kind::For {
                    each,
                    at,
                    collection,
                    condition,
                    body,
                } => {
                    let text = expr::unwrap(collection).unwrap_or(collection);
                    let items = match self.eval(text, &input, vars, scope)? {
                        Value::Array(items) => items,
                        Value::Null => Vec::new(),
                        Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
                        other => {
                            return Err(Problem::expression(format!(
                                "`for.in` ({collection}) must give a list, not {}",
                                kind_of(&other)
                            )));
                        }
                    };
                    let mut data = input;
                    for (index, item) in items.into_iter().enumerate() {
                        let inner =
                            extend(scope, [(each.clone(), item), (at.clone(), json!(index))]);
                        if let Some(condition) = condition {
                            let text = expr::unwrap(condition).unwrap_or(condition);
                            let vars = Vars {
                                context: context.clone(),
                                ..vars.clone()
                            };
                            if !truthy(&self.eval(text, &data, &vars, &inner)?) {
                                break;
                            }
                        }
                        let (output, end) = self.run_list(body, data, context, &inner).await?;
                        data = output;
                        if end {
                            return Ok((data, Some(Flow::End)));
                        }
                    }
                    Ok((data, None))
                }
                Kind::Fork { branches, compete } => {
                    self.fork(branches, *compete, input, context, scope).await
                }
                Kind::Try { body, catch } => {
                    self.try_catch(body, catch, input, context, scope, vars)
                        .await
                }
                Kind::Raise(error) => Err(self.raise(error, &input, vars, scope)?),
                Kind::Wait(duration) => {
                    let duration = self.duration(duration, &input, vars, scope)?;
                    self.event(
                        task,
                        TaskEventKind::Waiting {
                            millis: duration.as_millis() as u64,
                        },
                    );
                    self.host.sleep(duration).await;
                    Ok((input, None))
                }
                Kind::CallHttp(with) => {
                    let call = self.http_call(with, &input, vars, scope)?;
                    let output = self.host.call_http(&task_ref(task), call).await?;
                    Ok((output, None))
                }
                Kind::CallAgent(with) => {
                    let call = self.agent_call(with, &input, vars, scope)?;
                    let output = self.host.call_agent(&task_ref(task), call).await?;
                    Ok((output, None))
                }
                Kind::Emit(with) => Ok((self.emit(with, &input, vars, scope)?, None)),
                Kind::RunWorkflow(with) => {
                    let with = self.template(with, &input, vars, scope)?;
                    let call = WorkflowCall {
                        namespace: string_field(&with, "namespace")?,
                        name: string_field(&with, "name")?,
                        version: with
                            .get("version")
                            .and_then(Value::as_str)
                            .filter(|v| *v != "latest")
                            .map(str::to_string),
                        input: with.get("input").cloned().unwrap_or(input),
                    };
                    let output = self.host.run_workflow(&task_ref(task), call).await?;
                    Ok((output, None))
                }
            }
        }
        .boxed_local()
    }

    fn switch(
        &self,
        cases: &[Case],
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Option<Flow>, Problem> {
        let mut default = None;
        for case in cases {
            match &case.when {
                None => default = default.or(Some(case.then.clone())),
                Some(when) => {
                    let text = expr::unwrap(when).unwrap_or(when);
                    if truthy(&self.eval(text, input, vars, scope)?) {
                        return Ok(Some(case.then.clone()));
                    }
                }
            }
        }
        Ok(default)
    }

    /// `fork`: the branches run concurrently, each on its own copy of `$context` (applied
    /// after the fork in declaration order: decision D6). The first failure faults the fork
    /// and drops (cancels) the other branches (D7).
    async fn fork(
        &self,
        branches: &TaskList,
        compete: bool,
        input: Value,
        context: &mut Value,
        scope: &Scope,
    ) -> Result<(Value, Option<Flow>), Problem> {
        let start = context.clone();
        let futures: Vec<_> = branches
            .tasks
            .iter()
            .map(|branch| {
                let mut own = start.clone();
                let input = input.clone();
                async move {
                    let (output, _) = self.run_task(branch, input, &mut own, scope).await?;
                    Ok::<_, Problem>((output, own))
                }
                .boxed_local()
            })
            .collect();
        if futures.is_empty() {
            return Ok((json!([]), None));
        }
        if compete {
            let (first, _, _rest) = futures::future::select_all(futures).await;
            let (output, own) = first?;
            *context = own;
            return Ok((output, None));
        }
        let results = futures::future::try_join_all(futures).await?;
        let mut outputs = Vec::with_capacity(results.len());
        for (output, own) in results {
            if own != start {
                *context = own;
            }
            outputs.push(output);
        }
        Ok((Value::Array(outputs), None))
    }

    /// `try`: the list runs; a caught error is retried (the whole list) while the retry
    /// policy allows, then handled by `catch.do` (decision D3), or ends the task with its
    /// input (D4).
    async fn try_catch(
        &self,
        body: &TaskList,
        catch: &Catch,
        input: Value,
        context: &mut Value,
        scope: &Scope,
        vars: &Vars,
    ) -> Result<(Value, Option<Flow>), Problem> {
        let policy = match &catch.retry {
            Some(retry) => Some(self.retry_policy(retry)?),
            None => None,
        };
        let first_attempt = self.host.now();
        let mut retries: u32 = 0;
        loop {
            let attempt = self.run_list(body, input.clone(), context, scope);
            let result = match policy
                .as_ref()
                .and_then(|p| p.pointer("/limit/attempt/duration"))
            {
                Some(limit) => {
                    let after = self.duration(limit, &input, vars, scope)?;
                    self.within(after, attempt, "the attempt").await
                }
                None => attempt.await,
            };
            let error = match result {
                Ok((output, end)) => return Ok((output, end.then_some(Flow::End))),
                Err(error) => error,
            };
            let bound = extend(scope, [(catch.variable.clone(), error.to_value())]);
            let catch_vars = Vars {
                context: context.clone(),
                ..vars.clone()
            };
            if !self.catches(catch, &error, &input, &catch_vars, &bound)? {
                return Err(error);
            }
            if let Some(policy) = &policy
                && let Some(delay) =
                    self.retry_delay(policy, retries, first_attempt, &input, &catch_vars, &bound)?
            {
                retries += 1;
                self.host.event(TaskEvent {
                    reference: error.instance.clone().unwrap_or_default(),
                    name: String::new(),
                    kind: TaskEventKind::Retried {
                        attempt: retries,
                        error: error.clone(),
                        delay_ms: delay.as_millis() as u64,
                    },
                });
                if !delay.is_zero() {
                    self.host.sleep(delay).await;
                }
                continue;
            }
            return match &catch.body {
                Some(list) => {
                    let (output, end) = self.run_list(list, input, context, &bound).await?;
                    Ok((output, end.then_some(Flow::End)))
                }
                None => Ok((input, None)),
            };
        }
    }

    /// Whether `catch` catches `error`: its filter matches, `when` holds, `exceptWhen` does not.
    fn catches(
        &self,
        catch: &Catch,
        error: &Problem,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<bool, Problem> {
        if let Some(filter) = &catch.filter {
            for (field, wanted) in filter {
                let matches = match field.as_str() {
                    "type" => wanted.as_str().is_some_and(|t| error.type_matches(t)),
                    "status" => wanted.as_u64() == Some(u64::from(error.status)),
                    "instance" => wanted.as_str() == error.instance.as_deref(),
                    "title" => wanted.as_str() == error.title.as_deref(),
                    "details" | "detail" => wanted.as_str() == error.detail.as_deref(),
                    _ => false,
                };
                if !matches {
                    return Ok(false);
                }
            }
        }
        if let Some(when) = &catch.when {
            let text = expr::unwrap(when).unwrap_or(when);
            if !truthy(&self.eval(text, input, vars, scope)?) {
                return Ok(false);
            }
        }
        if let Some(except_when) = &catch.except_when {
            let text = expr::unwrap(except_when).unwrap_or(except_when);
            if truthy(&self.eval(text, input, vars, scope)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn retry_policy(&self, retry: &Value) -> Result<Value, Problem> {
        match retry {
            Value::String(name) => self.workflow.retries.get(name).cloned().ok_or_else(|| {
                Problem::configuration(format!("no retry policy {name:?} in `use.retries`"))
            }),
            other => Ok(other.clone()),
        }
    }

    /// The delay before the next attempt, or `None` when the policy says to stop.
    fn retry_delay(
        &self,
        policy: &Value,
        retries: u32,
        first_attempt: SystemTime,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Option<Duration>, Problem> {
        if let Some(when) = policy.get("when").and_then(Value::as_str) {
            let text = expr::unwrap(when).unwrap_or(when);
            if !truthy(&self.eval(text, input, vars, scope)?) {
                return Ok(None);
            }
        }
        if let Some(except_when) = policy.get("exceptWhen").and_then(Value::as_str) {
            let text = expr::unwrap(except_when).unwrap_or(except_when);
            if truthy(&self.eval(text, input, vars, scope)?) {
                return Ok(None);
            }
        }
        if let Some(count) = policy
            .pointer("/limit/attempt/count")
            .and_then(Value::as_u64)
            && u64::from(retries) >= count
        {
            return Ok(None);
        }
        let base = match policy.get("delay") {
            Some(delay) => self.duration(delay, input, vars, scope)?,
            None => Duration::ZERO,
        };
        let attempt = retries + 1;
        let backoff = policy.get("backoff");
        let mut delay = if backoff.and_then(|b| b.get("exponential")).is_some() {
            base.saturating_mul(2u32.saturating_pow(attempt - 1))
        } else if backoff.and_then(|b| b.get("linear")).is_some() {
            base.saturating_mul(attempt)
        } else {
            base
        };
        if let Some(jitter) = policy.get("jitter") {
            let from = match jitter.get("from") {
                Some(from) => self.duration(from, input, vars, scope)?,
                None => Duration::ZERO,
            };
            let to = match jitter.get("to") {
                Some(to) => self.duration(to, input, vars, scope)?,
                None => from,
            };
            let span = to.saturating_sub(from);
            delay += from + span.mul_f64(self.host.random());
        }
        if let Some(limit) = policy.pointer("/limit/duration") {
            let limit = self.duration(limit, input, vars, scope)?;
            let elapsed = self
                .host
                .now()
                .duration_since(first_attempt)
                .unwrap_or_default();
            if elapsed + delay > limit {
                return Ok(None);
            }
        }
        Ok(Some(delay))
    }

    fn raise(
        &self,
        error: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Problem, Problem> {
        let definition = match error {
            Value::String(name) if expr::unwrap(name).is_none() => {
                self.workflow.errors.get(name).cloned().ok_or_else(|| {
                    Problem::configuration(format!("no error {name:?} in `use.errors`"))
                })?
            }
            other => other.clone(),
        };
        let error = self.template(&definition, input, vars, scope)?;
        let kind = error
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Problem::configuration("a raised error needs a `type`"))?;
        let status = error.get("status").and_then(Value::as_u64).unwrap_or(500);
        Ok(Problem {
            kind: kind.to_string(),
            status: u16::try_from(status).unwrap_or(500),
            instance: None,
            title: error
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_string),
            detail: error
                .get("detail")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    fn http_call(
        &self,
        with: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<HttpCall, Problem> {
        let with = self.template(with, input, vars, scope)?;
        let method = string_field(&with, "method")?;
        let endpoint = with
            .get("endpoint")
            .ok_or_else(|| Problem::configuration("`call: http` needs `with.endpoint`"))?;
        let (template, authentication) = match endpoint {
            Value::String(uri) => (uri.clone(), None),
            Value::Object(map) => (
                map.get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                map.get("authentication"),
            ),
            _ => {
                return Err(Problem::configuration(
                    "`with.endpoint` must be a URI or {uri}",
                ));
            }
        };
        // The expression of a `${}` endpoint was evaluated by the template already.
        let uri = expand_uri(&template, input)?;
        let authentication = match authentication {
            Some(auth) => Some(self.authentication(auth, input, vars, scope)?),
            None => None,
        };
        let strings = |field: &str| -> BTreeMap<String, String> {
            with.get(field)
                .and_then(Value::as_object)
                .map(|map| {
                    map.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), scalar_text(v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let output = match with.get("output").and_then(Value::as_str) {
            None | Some("content") => HttpOutput::Content,
            Some("response") => HttpOutput::Response,
            Some("raw") => HttpOutput::Raw,
            Some(other) => {
                return Err(Problem::configuration(format!(
                    "`with.output: {other}`: expected content, response or raw"
                )));
            }
        };
        Ok(HttpCall {
            method,
            uri,
            headers: strings("headers"),
            query: strings("query"),
            body: with.get("body").cloned(),
            output,
            redirect: with
                .get("redirect")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            authentication,
        })
    }

    fn authentication(
        &self,
        auth: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Authentication, Problem> {
        let auth = match auth.get("use").and_then(Value::as_str) {
            Some(name) => {
                let found = self.workflow.authentications.get(name).ok_or_else(|| {
                    Problem::configuration(format!(
                        "no authentication {name:?} in `use.authentications`"
                    ))
                })?;
                self.template(found, input, vars, scope)?
            }
            None => auth.clone(),
        };
        if let Some(basic) = auth.get("basic") {
            return Ok(Authentication::Basic {
                username: string_field(basic, "username")?,
                password: string_field(basic, "password")?,
            });
        }
        if let Some(bearer) = auth.get("bearer") {
            return Ok(Authentication::Bearer {
                token: string_field(bearer, "token")?,
            });
        }
        Err(Problem::configuration(
            "only basic and bearer authentication are supported",
        ))
    }

    fn agent_call(
        &self,
        with: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<AgentCall, Problem> {
        let with = self.template(with, input, vars, scope)?;
        let message = match with.get("message") {
            Some(Value::String(text)) => text.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => return Err(Problem::configuration("`call: agent` needs `with.message`")),
        };
        let env = with
            .get("env")
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .map(|(k, v)| (k.clone(), scalar_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        let timeout_ms = match with.pointer("/config/timeout") {
            Some(timeout) => Some(self.duration(timeout, input, vars, scope)?.as_millis() as u64),
            None => None,
        };
        Ok(AgentCall {
            agent: string_field(&with, "agent")?,
            message,
            env,
            model: with
                .pointer("/config/model")
                .and_then(Value::as_str)
                .map(str::to_string),
            timeout_ms,
        })
    }

    /// `emit`: the task's output is the CloudEvent.
    fn emit(
        &self,
        with: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Value, Problem> {
        let mut event = match self.template(with, input, vars, scope)? {
            Value::Object(map) => map,
            _ => {
                return Err(Problem::configuration(
                    "`emit.event.with` must be an object",
                ));
            }
        };
        event
            .entry("id")
            .or_insert_with(|| Value::String(self.host.uuid()));
        event.entry("specversion").or_insert_with(|| json!("1.0"));
        let now = date_time(self.host.now());
        event
            .entry("time")
            .or_insert_with(|| now["iso8601"].clone());
        Ok(Value::Object(event))
    }

    /// `timeout`: `{after: duration}` or the name of a `use.timeouts` entry.
    fn timeout(
        &self,
        timeout: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Duration, Problem> {
        let timeout = match timeout {
            Value::String(name) => self.workflow.timeouts.get(name).ok_or_else(|| {
                Problem::configuration(format!("no timeout {name:?} in `use.timeouts`"))
            })?,
            other => other,
        };
        let after = timeout
            .get("after")
            .ok_or_else(|| Problem::configuration("a timeout needs `after`"))?;
        self.duration(after, input, vars, scope)
    }

    /// Durations: `{days, hours, minutes, seconds, milliseconds}`, an ISO 8601 string
    /// (`PT30S`) or a `${}` giving one.
    fn duration(
        &self,
        value: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Duration, Problem> {
        let value = self.template(value, input, vars, scope)?;
        parse_duration(&value)
    }

    /// Races `work` against a durable timer of `after`: a `timeout` error (408) when the
    /// timer wins (the work is dropped, which cancels it).
    async fn within<T>(
        &self,
        after: Duration,
        work: LocalBoxFuture<'_, Result<T, Problem>>,
        what: &str,
    ) -> Result<T, Problem> {
        let timer = self.host.sleep(after).boxed_local();
        match futures::future::select(work, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(Problem::timeout(format!(
                "{what} did not finish within {}",
                describe(after)
            ))),
        }
    }

    fn event(&self, task: &Task, kind: TaskEventKind) {
        self.host.event(TaskEvent {
            reference: task.reference.clone(),
            name: task.name.clone(),
            kind,
        });
    }

    /// An expression field (`from`, `as`, …): jq text (with or without `${}`), or an object
    /// whose `${}` leaves are evaluated.
    fn eval_field(
        &self,
        field: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Value, Problem> {
        match field {
            Value::String(text) => {
                let text = expr::unwrap(text).unwrap_or(text);
                self.eval(text, input, vars, scope)
            }
            other => self.template(other, input, vars, scope),
        }
    }

    /// A value field: strings that are wholly `${…}` are evaluated, the rest is literal.
    fn template(
        &self,
        value: &Value,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Value, Problem> {
        Ok(match value {
            Value::String(text) => match expr::unwrap(text) {
                Some(code) => self.eval(code, input, vars, scope)?,
                None => value.clone(),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.template(item, input, vars, scope))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (key, item) in map {
                    out.insert(key.clone(), self.template(item, input, vars, scope)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    fn eval(
        &self,
        text: &str,
        input: &Value,
        vars: &Vars,
        scope: &Scope,
    ) -> Result<Value, Problem> {
        for name in expr::secret_names(text) {
            if !self.secret_names.contains(&name) {
                return Err(secrets::unknown_secret(&name));
            }
        }
        let names: Vec<String> = scope.iter().map(|(name, _)| name.clone()).collect();
        let compiled = compiled(text, names)?;
        // Only the variables the text names are passed (the others as null): converting
        // `$workflow` (which holds the whole definition) for every expression made a task's
        // cost grow with the workflow's size.
        let named = |name: &str, value: &Value| {
            if text.contains(name) {
                value.clone()
            } else {
                Value::Null
            }
        };
        let globals = [
            named("$context", &vars.context),
            named("$input", &vars.input),
            named("$output", &vars.output),
            named("$secrets", &self.secrets),
            named("$task", &vars.task),
            named("$workflow", &self.workflow_var),
            named("$runtime", &self.runtime_var),
            named("$authorization", &vars.authorization),
        ];
        let extra: Vec<Value> = scope.iter().map(|(_, value)| value.clone()).collect();
        let determinism = Determinism {
            now: self.host.now(),
            uuid: if text.contains("uuid") {
                self.host.uuid()
            } else {
                String::new()
            },
        };
        compiled
            .eval(input, &globals, &extra, &determinism)
            .map_err(|e| Problem::expression(format!("`{text}`: {e}")))
    }
}

/// Compiled expressions by text and scope, shared by every run of the process (a workflow's
/// expressions compile once, not once per execution). Cleared when it grows past a bound.
static COMPILED: LazyLock<Mutex<HashMap<ExprKey, Expr>>> = LazyLock::new(Mutex::default);
/// An expression's text and the names of the scope variables it was compiled with.
type ExprKey = (String, Vec<String>);
const COMPILED_LIMIT: usize = 4096;

fn compiled(text: &str, scope: Vec<String>) -> Result<Expr, Problem> {
    let key = (text.to_string(), scope);
    if let Some(found) = COMPILED
        .lock()
        .ok()
        .and_then(|cache| cache.get(&key).cloned())
    {
        return Ok(found);
    }
    let extra: Vec<&str> = key.1.iter().map(String::as_str).collect();
    let expr = Expr::compile(text, &extra)
        .map_err(|e| Problem::expression(format!("cannot compile `{text}`: {e}")))?;
    if let Ok(mut cache) = COMPILED.lock() {
        if cache.len() >= COMPILED_LIMIT {
            cache.clear();
        }
        cache.insert(key, expr.clone());
    }
    Ok(expr)
}

fn task_ref(task: &Task) -> TaskRef {
    TaskRef {
        name: task.name.clone(),
        reference: task.reference.clone(),
    }
}

/// jq truthiness: everything but `false` and `null`.
fn truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string_field(value: &Value, field: &str) -> Result<String, Problem> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Problem::configuration(format!("`{field}` must be a string")))
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Expands `{name}` in an endpoint template from the top-level properties of `input`: a
/// missing property expands to nothing, a list or object is an `expression` error.
pub(crate) fn expand_uri(template: &str, input: &Value) -> Result<String, Problem> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..open + close];
        match input.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => out.push_str(&encode_segment(text)),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&value.to_string()),
            Some(_) => {
                return Err(Problem::expression(format!(
                    "the endpoint's `{{{name}}}` must be a string, number or boolean"
                )));
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Percent-encodes what may not appear in a URI path segment.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A duration value, evaluated: `{days, hours, minutes, seconds, milliseconds}` or ISO 8601.
pub(crate) fn parse_duration(value: &Value) -> Result<Duration, Problem> {
    match value {
        Value::String(text) => {
            let span: jiff::Span = text.parse().map_err(|e| {
                Problem::configuration(format!("{text:?} is not an ISO 8601 duration: {e}"))
            })?;
            let duration = span
                .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .map_err(|e| Problem::configuration(format!("duration {text:?}: {e}")))?;
            Duration::try_from(duration)
                .map_err(|_| Problem::configuration(format!("duration {text:?} is negative")))
        }
        Value::Object(map) => {
            let mut millis: u64 = 0;
            for (unit, scale) in [
                ("days", 86_400_000u64),
                ("hours", 3_600_000),
                ("minutes", 60_000),
                ("seconds", 1_000),
                ("milliseconds", 1),
            ] {
                if let Some(amount) = map.get(unit) {
                    let amount = amount.as_u64().ok_or_else(|| {
                        Problem::configuration(format!(
                            "duration `{unit}` must be a whole number ≥ 0"
                        ))
                    })?;
                    millis = millis.saturating_add(amount.saturating_mul(scale));
                }
            }
            Ok(Duration::from_millis(millis))
        }
        other => Err(Problem::configuration(format!(
            "a duration must be ISO 8601 text or an object, not {}",
            kind_of(other)
        ))),
    }
}

/// `{iso8601, epoch {seconds, milliseconds}}`.
pub(crate) fn date_time(at: SystemTime) -> Value {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let iso = jiff::Timestamp::try_from(at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    json!({
        "iso8601": iso,
        "epoch": {"seconds": since.as_secs(), "milliseconds": since.as_millis() as u64},
    })
}

fn describe(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{} s", millis / 1000)
    } else {
        format!("{millis} ms")
    }
}

/// Validates `value` against an inline schema (`{format, document}`): a `validation` error
/// listing the first problems.
fn check_schema(schema: &Value, value: &Value, what: &str) -> Result<(), Problem> {
    let document = schema.get("document").ok_or_else(|| {
        Problem::configuration("only inline schemas (`schema.document`) are supported")
    })?;
    let validator = jsonschema::validator_for(document)
        .map_err(|e| Problem::configuration(format!("invalid schema for {what}: {e}")))?;
    let problems: Vec<String> = validator
        .iter_errors(value)
        .take(3)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problem::validation(format!(
            "{what} does not match its schema: {}",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_both_forms() {
        assert_eq!(
            parse_duration(&json!("PT1M30S")).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration(&json!("P1D")).unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            parse_duration(&json!({"seconds": 2, "milliseconds": 5})).unwrap(),
            Duration::from_millis(2005)
        );
        assert!(parse_duration(&json!("soon")).is_err());
        assert!(parse_duration(&json!({"seconds": -1})).is_err());
    }

    #[test]
    fn endpoint_templates_expand_top_level_properties() {
        let input = json!({"petId": 1, "name": "Mi lou", "nested": {"a": 1}});
        assert_eq!(
            expand_uri("http://h/pet/{petId}/{name}/{missing}", &input).unwrap(),
            "http://h/pet/1/Mi%20lou/"
        );
        assert_eq!(
            expand_uri("http://h/{nested}", &input).unwrap_err().status,
            400
        );
    }

    #[test]
    fn date_times_have_both_forms() {
        let at = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(
            date_time(at),
            json!({"iso8601": "1970-01-01T00:00:01.5Z", "epoch": {"seconds": 1, "milliseconds": 1500}})
        );
    }
}
