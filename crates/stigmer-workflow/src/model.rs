//! A workflow document read into the shapes the interpreter walks: task lists with their JSON
//! pointers, each task's kind and its data-flow fields. Expressions stay text here; the
//! interpreter compiles each once per run (validation compiled them all at apply).

use crate::validate::{self, DefinitionError};
use serde_json::{Map, Value};

/// A validated workflow definition, ready to run.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The normalised document (the execution's snapshot of its definition).
    pub document: Value,
    pub(crate) root: TaskList,
    pub(crate) input_from: Option<Value>,
    pub(crate) input_schema: Option<Value>,
    pub(crate) output_as: Option<Value>,
    pub(crate) output_schema: Option<Value>,
    pub(crate) timeout: Option<Value>,
    pub(crate) errors: Map<String, Value>,
    pub(crate) retries: Map<String, Value>,
    pub(crate) authentications: Map<String, Value>,
    pub(crate) timeouts: Map<String, Value>,
}

/// Tasks run in declaration order unless a `then` says otherwise.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskList {
    pub tasks: Vec<Task>,
}

impl TaskList {
    pub fn position(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|task| task.name == name)
    }
}

/// Where flow goes after a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Exit,
    End,
    Goto(String),
}

impl Flow {
    fn read(value: Option<&Value>) -> Flow {
        match value.and_then(Value::as_str) {
            None | Some("continue") => Flow::Continue,
            Some("exit") => Flow::Exit,
            Some("end") => Flow::End,
            Some(name) => Flow::Goto(name.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub name: String,
    /// JSON pointer of the task: `/do/0/tryGetPet/try/0/getPet`.
    pub reference: String,
    pub definition: Value,
    pub condition: Option<String>,
    pub input_from: Option<Value>,
    pub input_schema: Option<Value>,
    pub output_as: Option<Value>,
    pub output_schema: Option<Value>,
    pub export_as: Option<Value>,
    pub export_schema: Option<Value>,
    pub timeout: Option<Value>,
    pub then: Flow,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Set(Value),
    Do(TaskList),
    Switch(Vec<Case>),
    For {
        each: String,
        at: String,
        collection: String,
        condition: Option<String>,
        body: TaskList,
    },
    Fork {
        branches: TaskList,
        compete: bool,
    },
    Try {
        body: TaskList,
        catch: Box<Catch>,
    },
    Raise(Value),
    Wait(Value),
    CallHttp(Value),
    CallAgent(Value),
    Emit(Value),
    RunWorkflow(Value),
}

#[derive(Clone, Debug)]
pub(crate) struct Case {
    pub when: Option<String>,
    pub then: Flow,
}

#[derive(Clone, Debug)]
pub(crate) struct Catch {
    /// `errors.with`: the filter an error must match to be caught.
    pub filter: Option<Map<String, Value>>,
    /// `$<as>`, with the `$`.
    pub variable: String,
    pub when: Option<String>,
    pub except_when: Option<String>,
    /// Inline retry policy or the name of a `use.retries` entry.
    pub retry: Option<Value>,
    pub body: Option<TaskList>,
}

impl Workflow {
    /// Normalises, validates and reads `document` (a whole DSL document).
    pub fn from_document(document: Value) -> Result<Workflow, Vec<DefinitionError>> {
        let document = validate::normalise(document);
        let problems = validate::validate(&document);
        if !problems.is_empty() {
            return Err(problems);
        }
        let root = read_list(document.get("do"), "/do").map_err(|e| vec![e])?;
        let object = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        Ok(Workflow {
            root,
            input_from: document.pointer("/input/from").cloned(),
            input_schema: document.pointer("/input/schema").cloned(),
            output_as: document.pointer("/output/as").cloned(),
            output_schema: document.pointer("/output/schema").cloned(),
            timeout: document.get("timeout").cloned(),
            errors: object("/use/errors"),
            retries: object("/use/retries"),
            authentications: object("/use/authentications"),
            timeouts: object("/use/timeouts"),
            document,
        })
    }

    /// The workflow's name (`document.name`).
    pub fn name(&self) -> &str {
        self.document
            .pointer("/document/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

fn problem(pointer: &str, message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        pointer: pointer.to_string(),
        message: message.into(),
    }
}

fn read_list(value: Option<&Value>, pointer: &str) -> Result<TaskList, DefinitionError> {
    let items = value
        .and_then(Value::as_array)
        .ok_or_else(|| problem(pointer, "expected a list of tasks"))?;
    let mut tasks = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let entry = item
            .as_object()
            .filter(|map| map.len() == 1)
            .ok_or_else(|| {
                problem(
                    &format!("{pointer}/{index}"),
                    "each item must be a single `name: {task}` entry",
                )
            })?;
        let (name, definition) = entry.iter().next().expect("one entry");
        let reference = format!("{pointer}/{index}/{}", escape(name));
        tasks.push(read_task(name, definition, reference)?);
    }
    Ok(TaskList { tasks })
}

/// JSON pointer escaping of one segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn read_task(name: &str, definition: &Value, reference: String) -> Result<Task, DefinitionError> {
    let map = definition
        .as_object()
        .ok_or_else(|| problem(&reference, "a task must be an object"))?;
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    let pointer = |path: &str| definition.pointer(path).cloned();
    let kind = if let Some(set) = map.get("set") {
        Kind::Set(set.clone())
    } else if let Some(switch) = map.get("switch") {
        let mut cases = Vec::new();
        for (index, item) in switch.as_array().into_iter().flatten().enumerate() {
            let Some((_, case)) = item.as_object().and_then(|m| m.iter().next()) else {
                return Err(problem(
                    &format!("{reference}/switch/{index}"),
                    "a switch case must be a single `name: {when, then}` entry",
                ));
            };
            cases.push(Case {
                when: case.get("when").and_then(Value::as_str).map(str::to_string),
                then: Flow::read(case.get("then")),
            });
        }
        Kind::Switch(cases)
    } else if let Some(each) = map.get("for") {
        Kind::For {
            each: format!(
                "${}",
                each.get("each").and_then(Value::as_str).unwrap_or("item")
            ),
            at: format!(
                "${}",
                each.get("at").and_then(Value::as_str).unwrap_or("index")
            ),
            collection: each
                .get("in")
                .and_then(Value::as_str)
                .unwrap_or(".")
                .to_string(),
            condition: text("while"),
            body: read_list(map.get("do"), &format!("{reference}/do"))?,
        }
    } else if let Some(fork) = map.get("fork") {
        Kind::Fork {
            branches: read_list(fork.get("branches"), &format!("{reference}/fork/branches"))?,
            compete: fork
                .get("compete")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    } else if let Some(body) = map.get("try") {
        let catch = map.get("catch").cloned().unwrap_or(Value::Null);
        Kind::Try {
            body: read_list(Some(body), &format!("{reference}/try"))?,
            catch: Box::new(Catch {
                filter: catch
                    .pointer("/errors/with")
                    .and_then(Value::as_object)
                    .cloned(),
                variable: format!(
                    "${}",
                    catch.get("as").and_then(Value::as_str).unwrap_or("error")
                ),
                when: catch
                    .get("when")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                except_when: catch
                    .get("exceptWhen")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                retry: catch.get("retry").cloned(),
                body: match catch.get("do") {
                    Some(list) => Some(read_list(Some(list), &format!("{reference}/catch/do"))?),
                    None => None,
                },
            }),
        }
    } else if let Some(raise) = map.get("raise") {
        Kind::Raise(raise.get("error").cloned().unwrap_or(Value::Null))
    } else if let Some(wait) = map.get("wait") {
        Kind::Wait(wait.clone())
    } else if let Some(call) = map.get("call").and_then(Value::as_str) {
        let with = map.get("with").cloned().unwrap_or(Value::Null);
        match call {
            "http" => Kind::CallHttp(with),
            "agent" => Kind::CallAgent(with),
            other => {
                return Err(problem(
                    &format!("{reference}/call"),
                    format!("`call: {other}` is not supported by this version"),
                ));
            }
        }
    } else if let Some(emit) = map.get("emit") {
        Kind::Emit(emit.pointer("/event/with").cloned().unwrap_or(Value::Null))
    } else if let Some(run) = map.get("run") {
        match run.get("workflow") {
            Some(workflow) => Kind::RunWorkflow(workflow.clone()),
            None => {
                return Err(problem(
                    &format!("{reference}/run"),
                    "only `run: workflow` is supported by this version",
                ));
            }
        }
    } else if map.contains_key("do") {
        Kind::Do(read_list(map.get("do"), &format!("{reference}/do"))?)
    } else {
        return Err(problem(&reference, "unknown task kind"));
    };
    Ok(Task {
        name: name.to_string(),
        condition: text("if"),
        input_from: pointer("/input/from"),
        input_schema: pointer("/input/schema"),
        output_as: pointer("/output/as"),
        output_schema: pointer("/output/schema"),
        export_as: pointer("/export/as"),
        export_schema: pointer("/export/schema"),
        timeout: map.get("timeout").cloned(),
        then: Flow::read(map.get("then")),
        definition: definition.clone(),
        reference,
        kind,
    })
}
