//! Validation of a workflow document before it is stored: the official JSON Schema of the DSL
//! (shipped in the binary), then our own rules (unique task names, `then` targets, every jq
//! expression compiled in its scope, `call: agent` arguments), and a clear refusal of what
//! version 1 does not run, so that nothing is accepted and then silently ignored.
//!
//! Every problem is reported at a JSON pointer into the normalised document
//! (`/do/0/fetch/with/methd`); callers map it to their own field paths and locations.

use crate::expr;
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// One problem of a definition, at a JSON pointer into the (normalised) document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefinitionError {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// A `call: agent` task whose `with.agent` is a literal name (not an expression).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCall {
    /// JSON pointer of the `agent` field, e.g. `/do/1/review/with/agent`.
    pub pointer: String,
    /// The Agent's name.
    pub agent: String,
}

/// The official schema of the DSL (draft 2020-12), as published with DSL 1.0.3.
const SCHEMA_TEXT: &str = include_str!("../schema/workflow.yaml");

/// Built once per process: compiling the schema takes a noticeable fraction of a second.
static SCHEMA: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value = serde_yaml_ng::from_str(SCHEMA_TEXT).map_err(|error| error.to_string())?;
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .map_err(|error| error.to_string())
});

/// The top-level fields of a document (the DSL's, plus `evaluate`, which the schema omits).
const DOCUMENT_FIELDS: [&str; 8] = [
    "document", "input", "use", "do", "timeout", "output", "schedule", "evaluate",
];
const DOCUMENT_INFO_FIELDS: [&str; 8] = [
    "dsl",
    "namespace",
    "name",
    "version",
    "title",
    "summary",
    "tags",
    "metadata",
];
const USE_FIELDS: [&str; 8] = [
    "authentications",
    "errors",
    "extensions",
    "functions",
    "retries",
    "secrets",
    "timeouts",
    "catalogs",
];
/// Fields every task may have (`taskBase`).
const TASK_BASE_FIELDS: [&str; 7] = [
    "if", "input", "output", "export", "timeout", "then", "metadata",
];
const HTTP_WITH_FIELDS: [&str; 7] = [
    "method", "endpoint", "headers", "body", "query", "output", "redirect",
];
const AGENT_WITH_FIELDS: [&str; 4] = ["agent", "message", "env", "config"];
const AGENT_CONFIG_FIELDS: [&str; 2] = ["model", "timeout"];
const TASK_TYPES: &str = "call, do, for, fork, emit, listen, raise, run, set, switch, try, wait";
/// Flow directives every `then` may name besides a task.
const DIRECTIVES: [&str; 3] = ["continue", "exit", "end"];

/// The type of a task, from the field that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskKind {
    Call(CallKind),
    Do,
    Fork,
    Emit,
    For,
    Listen,
    Raise,
    Run,
    Set,
    Switch,
    Try,
    Wait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    AsyncApi,
    Grpc,
    Http,
    OpenApi,
    A2a,
    Mcp,
    /// Our extension, which the schema sees as a function call.
    Agent,
    Function,
}

impl TaskKind {
    /// Detects the type of a task; `for` before `do`, since a `for` task has a `do` too.
    fn detect(task: &Map<String, Value>) -> Option<TaskKind> {
        if task.contains_key("for") {
            return Some(TaskKind::For);
        }
        if let Some(call) = task.get("call") {
            let kind = match call.as_str().unwrap_or_default() {
                "asyncapi" => CallKind::AsyncApi,
                "grpc" => CallKind::Grpc,
                "http" => CallKind::Http,
                "openapi" => CallKind::OpenApi,
                "a2a" => CallKind::A2a,
                "mcp" => CallKind::Mcp,
                "agent" => CallKind::Agent,
                _ => CallKind::Function,
            };
            return Some(TaskKind::Call(kind));
        }
        let kinds = [
            ("fork", TaskKind::Fork),
            ("emit", TaskKind::Emit),
            ("listen", TaskKind::Listen),
            ("raise", TaskKind::Raise),
            ("run", TaskKind::Run),
            ("set", TaskKind::Set),
            ("switch", TaskKind::Switch),
            ("try", TaskKind::Try),
            ("wait", TaskKind::Wait),
            ("do", TaskKind::Do),
        ];
        kinds
            .into_iter()
            .find(|(field, _)| task.contains_key(*field))
            .map(|(_, kind)| kind)
    }

    /// The branch of the schema's `task` `oneOf` for this type.
    fn task_branch(self) -> usize {
        match self {
            TaskKind::Call(_) => 0,
            TaskKind::Do => 1,
            TaskKind::Fork => 2,
            TaskKind::Emit => 3,
            TaskKind::For => 4,
            TaskKind::Listen => 5,
            TaskKind::Raise => 6,
            TaskKind::Run => 7,
            TaskKind::Set => 8,
            TaskKind::Switch => 9,
            TaskKind::Try => 10,
            TaskKind::Wait => 11,
        }
    }

    /// The branch of the schema's `callTask` `oneOf` for a call.
    fn call_branch(self) -> Option<usize> {
        match self {
            TaskKind::Call(kind) => Some(match kind {
                CallKind::AsyncApi => 0,
                CallKind::Grpc => 1,
                CallKind::Http => 2,
                CallKind::OpenApi => 3,
                CallKind::A2a => 4,
                CallKind::Mcp => 5,
                CallKind::Agent | CallKind::Function => 6,
            }),
            _ => None,
        }
    }

    /// The fields of this type beyond the task base.
    fn fields(self) -> &'static [&'static str] {
        match self {
            TaskKind::Call(_) => &["call", "with"],
            TaskKind::Do => &["do"],
            TaskKind::Fork => &["fork"],
            TaskKind::Emit => &["emit"],
            TaskKind::For => &["for", "while", "do"],
            TaskKind::Listen => &["listen", "foreach"],
            TaskKind::Raise => &["raise"],
            TaskKind::Run => &["run"],
            TaskKind::Set => &["set"],
            TaskKind::Switch => &["switch"],
            TaskKind::Try => &["try", "catch"],
            TaskKind::Wait => &["wait"],
        }
    }
}

/// The document with today's `tasks: [{name, …}]` alias rewritten to `do: [{name: {…}}]`.
///
/// Only a well-formed alias is rewritten (a list of mappings, each with a string `name`) and
/// only when `do` is absent; anything else is left for [`validate`] to report.
pub fn normalise(document: Value) -> Value {
    let Value::Object(mut fields) = document else {
        return document;
    };
    if fields.contains_key("do") {
        return Value::Object(fields);
    }
    let well_formed = fields
        .get("tasks")
        .and_then(Value::as_array)
        .is_some_and(|tasks| {
            tasks.iter().all(|task| {
                task.as_object()
                    .and_then(|task| task.get("name"))
                    .is_some_and(Value::is_string)
            })
        });
    if !well_formed {
        return Value::Object(fields);
    }
    let Some(Value::Array(tasks)) = fields.remove("tasks") else {
        return Value::Object(fields);
    };
    let list = tasks
        .into_iter()
        .filter_map(|task| {
            let Value::Object(mut body) = task else {
                return None;
            };
            let Some(Value::String(name)) = body.remove("name") else {
                return None;
            };
            let mut item = Map::new();
            item.insert(name, Value::Object(body));
            Some(Value::Object(item))
        })
        .collect();
    fields.insert("do".into(), Value::Array(list));
    Value::Object(fields)
}

/// Every problem of a normalised document; empty when it is valid.
pub fn validate(document: &Value) -> Vec<DefinitionError> {
    let mut checker = Checker::new(document);
    checker.document(document);
    let ours = std::mem::take(&mut checker.errors);
    let mut found = checker.schema_errors(document);
    // An alias `tasks` that could not be rewritten is explained by our own rules.
    if document.get("tasks").is_some() && document.get("do").is_none() {
        found.retain(|error| !(error.pointer.is_empty() && error.message.contains("`do`")));
    }
    found.extend(ours);
    let mut seen = BTreeSet::new();
    found.retain(|error| seen.insert((error.pointer.clone(), error.message.clone())));
    found
}

/// A `run: workflow` task whose `run.workflow.name` is a literal name (not an expression).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowRun {
    /// JSON pointer of the `name` field, e.g. `/do/1/child/run/workflow/name`.
    pub pointer: String,
    /// The Workflow's name.
    pub workflow: String,
}

/// The `run: workflow` tasks of a normalised document that name their Workflow literally, for
/// resolving the names at apply.
pub fn workflow_runs(document: &Value) -> Vec<WorkflowRun> {
    let mut found = Vec::new();
    if let Some(list) = document.get("do") {
        collect_workflow_runs(list, "/do", &mut found);
    }
    found
}

fn collect_workflow_runs(list: &Value, pointer: &str, found: &mut Vec<WorkflowRun>) {
    for (index, item) in list.as_array().into_iter().flatten().enumerate() {
        let Some((name, task)) = single_entry(item) else {
            continue;
        };
        let Some(fields) = task.as_object() else {
            continue;
        };
        let task_pointer = format!("{pointer}/{index}/{}", escape(name));
        if let Some(workflow) = task.pointer("/run/workflow/name").and_then(Value::as_str)
            && expr::unwrap(workflow).is_none()
        {
            found.push(WorkflowRun {
                pointer: format!("{task_pointer}/run/workflow/name"),
                workflow: workflow.to_owned(),
            });
        }
        for (nested, nested_pointer) in nested_lists(fields, &task_pointer) {
            collect_workflow_runs(nested, &nested_pointer, found);
        }
    }
}

/// The `call: agent` tasks of a normalised document that name their Agent literally, for
/// resolving the names at apply.
pub fn agent_calls(document: &Value) -> Vec<AgentCall> {
    let mut found = Vec::new();
    if let Some(list) = document.get("do") {
        collect_agent_calls(list, "/do", &mut found);
    }
    found
}

fn collect_agent_calls(list: &Value, pointer: &str, found: &mut Vec<AgentCall>) {
    for (index, item) in list.as_array().into_iter().flatten().enumerate() {
        let Some((name, task)) = single_entry(item) else {
            continue;
        };
        let Some(fields) = task.as_object() else {
            continue;
        };
        let task_pointer = format!("{pointer}/{index}/{}", escape(name));
        if fields.get("call").and_then(Value::as_str) == Some("agent")
            && let Some(agent) = task.pointer("/with/agent").and_then(Value::as_str)
            && expr::unwrap(agent).is_none()
        {
            found.push(AgentCall {
                pointer: format!("{task_pointer}/with/agent"),
                agent: agent.to_owned(),
            });
        }
        for (nested, nested_pointer) in nested_lists(fields, &task_pointer) {
            collect_agent_calls(nested, &nested_pointer, found);
        }
    }
}

/// The task lists nested in a task (`do`, `for`'s `do`, fork branches, `try`, `catch.do`).
fn nested_lists<'a>(task: &'a Map<String, Value>, pointer: &str) -> Vec<(&'a Value, String)> {
    let mut lists = Vec::new();
    if let Some(list) = task.get("do") {
        lists.push((list, format!("{pointer}/do")));
    }
    if let Some(list) = task.get("fork").and_then(|fork| fork.get("branches")) {
        lists.push((list, format!("{pointer}/fork/branches")));
    }
    if let Some(list) = task.get("try") {
        lists.push((list, format!("{pointer}/try")));
    }
    if let Some(list) = task.get("catch").and_then(|catch| catch.get("do")) {
        lists.push((list, format!("{pointer}/catch/do")));
    }
    lists
}

/// The only entry of a single-key mapping (a task list item).
fn single_entry(item: &Value) -> Option<(&String, &Value)> {
    let fields = item.as_object()?;
    if fields.len() != 1 {
        return None;
    }
    fields.iter().next()
}

/// A key as a JSON pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

struct Checker {
    errors: Vec<DefinitionError>,
    /// Every task found, by pointer, with its type (`None`: no type could be told).
    tasks: BTreeMap<String, Option<TaskKind>>,
    /// Every task list found, by pointer.
    lists: BTreeSet<String>,
    /// Compiled expressions (text and extra variables) and their outcome.
    compiled: BTreeMap<(String, Vec<String>), Option<String>>,
    use_errors: BTreeSet<String>,
    use_retries: BTreeSet<String>,
    use_timeouts: BTreeSet<String>,
}

impl Checker {
    fn new(document: &Value) -> Self {
        let names = |field: &str| -> BTreeSet<String> {
            document
                .get("use")
                .and_then(|uses| uses.get(field))
                .and_then(Value::as_object)
                .map(|entries| entries.keys().cloned().collect())
                .unwrap_or_default()
        };
        Checker {
            errors: Vec::new(),
            tasks: BTreeMap::new(),
            lists: BTreeSet::new(),
            compiled: BTreeMap::new(),
            use_errors: names("errors"),
            use_retries: names("retries"),
            use_timeouts: names("timeouts"),
        }
    }

    fn error(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.errors.push(DefinitionError {
            pointer: pointer.into(),
            message: message.into(),
        });
    }

    fn not_supported(&mut self, pointer: impl Into<String>, what: &str, instead: &str) {
        self.error(
            pointer,
            format!("{what} is not supported in version 1 and would not run; {instead}"),
        );
    }

    fn document(&mut self, document: &Value) {
        let Some(fields) = document.as_object() else {
            self.error(
                "",
                "a workflow must be a mapping with `document` and `do` (the task list)",
            );
            return;
        };
        if fields.contains_key("tasks") {
            if fields.contains_key("do") {
                self.error(
                    "/tasks",
                    "both `do` and `tasks` are set: `tasks` is an alias of `do`; keep one of them",
                );
            } else {
                self.malformed_alias(&fields["tasks"]);
            }
        } else if !fields.contains_key("do") {
            self.error(
                "",
                "missing `do`: a workflow needs a task list, e.g. `do: [{greet: {set: {hello: world}}}]`",
            );
        }
        for key in fields.keys() {
            if key != "tasks" && !DOCUMENT_FIELDS.contains(&key.as_str()) {
                self.error(
                    format!("/{}", escape(key)),
                    unknown_field(key, &DOCUMENT_FIELDS),
                );
            }
        }
        if fields.contains_key("schedule") {
            self.not_supported(
                "/schedule",
                "`schedule`",
                "start the workflow with `stigmer run` (from cron or another scheduler)",
            );
        }
        if let Some(evaluate) = fields.get("evaluate") {
            self.evaluate(evaluate);
        }
        if let Some(uses) = fields.get("use") {
            self.uses(uses);
        }
        if let Some(input) = fields.get("input") {
            self.data_filter(input, "/input", "from", &[]);
        }
        if let Some(output) = fields.get("output") {
            self.data_filter(output, "/output", "as", &[]);
        }
        if let Some(timeout) = fields.get("timeout") {
            self.timeout(timeout, "/timeout", &[]);
        }
        if let Some(list) = fields.get("do") {
            if list.as_array().is_some_and(Vec::is_empty) {
                self.error("/do", "a workflow needs at least one task");
            }
            self.task_list(list, "/do", &[]);
        }
    }

    /// `tasks` left as it was by [`normalise`]: say what is wrong with it.
    fn malformed_alias(&mut self, tasks: &Value) {
        let Some(items) = tasks.as_array() else {
            self.error(
                "/tasks",
                "`tasks` must be a list of tasks, each with a `name` (or use `do`)",
            );
            return;
        };
        for (index, item) in items.iter().enumerate() {
            match item.as_object().map(|task| task.get("name")) {
                None => self.error(
                    format!("/tasks/{index}"),
                    "each item of `tasks` is a mapping with a `name` and the task's fields",
                ),
                Some(None) => self.error(
                    format!("/tasks/{index}"),
                    "missing required field `name` (each item of `tasks` is named)",
                ),
                Some(Some(name)) if !name.is_string() => self.error(
                    format!("/tasks/{index}/name"),
                    "wrong type: a task name is a string",
                ),
                Some(Some(_)) => {}
            }
        }
    }

    fn evaluate(&mut self, evaluate: &Value) {
        let Some(fields) = evaluate.as_object() else {
            self.error(
                "/evaluate",
                "`evaluate` must be a mapping: {language: jq, mode: strict}",
            );
            return;
        };
        for (key, value) in fields {
            let pointer = format!("/evaluate/{}", escape(key));
            match key.as_str() {
                "language" if value.as_str() == Some("jq") => {}
                "language" => self.not_supported(
                    pointer,
                    &format!("expression language {}", show(value)),
                    "expressions are jq: remove `evaluate.language` or set it to `jq`",
                ),
                "mode" if value.as_str() == Some("strict") => {}
                "mode" if value.as_str() == Some("loose") => self.not_supported(
                    pointer,
                    "`evaluate.mode: loose`",
                    "values are expressions only when the whole string is `${ … }` (strict mode): \
                     remove `evaluate.mode`",
                ),
                "mode" => self.error(
                    pointer,
                    format!("unknown value {}: expected strict", show(value)),
                ),
                _ => self.error(pointer, unknown_field(key, &["language", "mode"])),
            }
        }
    }

    fn uses(&mut self, uses: &Value) {
        let Some(fields) = uses.as_object() else {
            return;
        };
        if fields.contains_key("catalogs") {
            self.not_supported(
                "/use/catalogs",
                "`use.catalogs` (function catalogs)",
                "call HTTP endpoints with `call: http` or agents with `call: agent`",
            );
        }
        if fields.contains_key("extensions") {
            self.not_supported("/use/extensions", "`use.extensions`", "remove them");
        }
        if let Some(functions) = fields.get("functions").and_then(Value::as_object)
            && functions.contains_key("agent")
        {
            self.error(
                "/use/functions/agent",
                "the function name `agent` is reserved: `call: agent` runs a Stigmer Agent; \
                 rename this function",
            );
        }
        for (name, error) in fields
            .get("errors")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.values(error, &format!("/use/errors/{}", escape(name)), &[]);
        }
        for (name, retry) in fields
            .get("retries")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.retry(
                retry,
                &format!("/use/retries/{}", escape(name)),
                &["$error".to_owned()],
            );
        }
        for (name, authentication) in fields
            .get("authentications")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.values(
                authentication,
                &format!("/use/authentications/{}", escape(name)),
                &[],
            );
        }
        for (name, timeout) in fields
            .get("timeouts")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.values(timeout, &format!("/use/timeouts/{}", escape(name)), &[]);
        }
    }

    fn timeout(&mut self, timeout: &Value, pointer: &str, scope: &[String]) {
        match timeout.as_str() {
            Some(name) if !self.use_timeouts.contains(name) => {
                let known: Vec<&str> = self.use_timeouts.iter().map(String::as_str).collect();
                self.error(
                    pointer,
                    format!(
                        "unknown timeout {name:?}{}: a timeout is `{{after: <duration>}}` or \
                         the name of an entry of `use.timeouts`",
                        did_you_mean(name, &known)
                    ),
                );
            }
            Some(_) => {}
            None => self.values(timeout, pointer, scope),
        }
    }

    /// An `input` (`field` = `from`), `output` or `export` (`field` = `as`).
    fn data_filter(&mut self, value: &Value, pointer: &str, field: &str, scope: &[String]) {
        let Some(fields) = value.as_object() else {
            return;
        };
        if let Some(schema) = fields.get("schema") {
            self.schema_definition(schema, &format!("{pointer}/schema"));
        }
        if let Some(filter) = fields.get(field) {
            let filter_pointer = format!("{pointer}/{field}");
            match filter {
                Value::String(_) => self.expression(filter, &filter_pointer, scope),
                other => self.values(other, &filter_pointer, scope),
            }
        }
    }

    fn schema_definition(&mut self, schema: &Value, pointer: &str) {
        if schema.get("resource").is_some() {
            self.not_supported(
                format!("{pointer}/resource"),
                "a schema given as `resource` (loaded from elsewhere)",
                "put the schema inline under `document`",
            );
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && format != "json"
            && !format.starts_with("json:")
        {
            self.not_supported(
                format!("{pointer}/format"),
                &format!("schema format {format:?}"),
                "give a JSON Schema (`format: json`, the default)",
            );
        }
    }

    fn task_list(&mut self, list: &Value, pointer: &str, scope: &[String]) {
        let Some(items) = list.as_array() else {
            return;
        };
        self.lists.insert(pointer.to_owned());
        let names: Vec<&str> = items
            .iter()
            .filter_map(single_entry)
            .map(|(name, _)| name.as_str())
            .collect();
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            let Some((name, task)) = single_entry(item) else {
                continue;
            };
            let task_pointer = format!("{pointer}/{index}/{}", escape(name));
            if let Some(earlier) = first.get(name.as_str()) {
                self.error(
                    task_pointer.clone(),
                    format!(
                        "duplicate task name {name:?} (also the name of task {earlier} of this \
                         list): task names must be unique within their list"
                    ),
                );
            } else {
                first.insert(name, index);
            }
            self.task(task, &task_pointer, scope, &names);
        }
    }

    fn then_target(&mut self, target: &Value, pointer: &str, siblings: &[&str]) {
        let Some(target) = target.as_str() else {
            return;
        };
        if DIRECTIVES.contains(&target) || siblings.contains(&target) {
            return;
        }
        let candidates: Vec<&str> = DIRECTIVES.iter().chain(siblings).copied().collect();
        self.error(
            pointer,
            format!(
                "unknown `then` target {target:?}{}: expected continue, exit, end or the name of \
                 a task in the same list ({})",
                did_you_mean(target, &candidates),
                siblings.join(", ")
            ),
        );
    }

    fn task(&mut self, task: &Value, pointer: &str, scope: &[String], siblings: &[&str]) {
        let Some(fields) = task.as_object() else {
            self.tasks.insert(pointer.to_owned(), None);
            return;
        };
        let Some(kind) = TaskKind::detect(fields) else {
            self.tasks.insert(pointer.to_owned(), None);
            let guess = fields
                .keys()
                .filter(|key| !TASK_BASE_FIELDS.contains(&key.as_str()))
                .find_map(|key| {
                    suggest(
                        key,
                        &[
                            "call", "do", "for", "fork", "emit", "listen", "raise", "run", "set",
                            "switch", "try", "wait",
                        ],
                    )
                    .map(|guess| format!(" (`{key}`: did you mean `{guess}`?)"))
                })
                .unwrap_or_default();
            self.error(
                pointer,
                format!("the task has no type{guess}: a task needs one of {TASK_TYPES}"),
            );
            return;
        };
        self.tasks.insert(pointer.to_owned(), Some(kind));
        let at = |field: &str| format!("{pointer}/{field}");
        if let Some(condition) = fields.get("if") {
            self.expression(condition, &at("if"), scope);
        }
        if let Some(input) = fields.get("input") {
            self.data_filter(input, &at("input"), "from", scope);
        }
        if let Some(output) = fields.get("output") {
            self.data_filter(output, &at("output"), "as", scope);
        }
        if let Some(export) = fields.get("export") {
            self.data_filter(export, &at("export"), "as", scope);
        }
        if let Some(timeout) = fields.get("timeout") {
            self.timeout(timeout, &at("timeout"), scope);
        }
        if let Some(then) = fields.get("then") {
            self.then_target(then, &at("then"), siblings);
        }
        match kind {
            TaskKind::Call(call) => self.call(call, fields, pointer, scope),
            TaskKind::Do => {
                if let Some(list) = fields.get("do") {
                    self.task_list(list, &at("do"), scope);
                }
            }
            TaskKind::Fork => {
                if let Some(branches) = fields.get("fork").and_then(|fork| fork.get("branches")) {
                    self.task_list(branches, &at("fork/branches"), scope);
                }
            }
            TaskKind::Emit => {
                if let Some(emit) = fields.get("emit") {
                    self.values(emit, &at("emit"), scope);
                }
            }
            TaskKind::For => self.for_task(fields, pointer, scope),
            TaskKind::Listen => self.not_supported(
                at("listen"),
                "`listen` (waiting for events)",
                "a workflow cannot consume events yet",
            ),
            TaskKind::Raise => self.raise(fields, pointer, scope),
            TaskKind::Run => self.run(fields, pointer, scope),
            TaskKind::Set => {
                if let Some(set) = fields.get("set") {
                    self.values(set, &at("set"), scope);
                }
            }
            TaskKind::Switch => self.switch(fields, pointer, scope, siblings),
            TaskKind::Try => self.try_task(fields, pointer, scope),
            TaskKind::Wait => {
                if let Some(wait) = fields.get("wait") {
                    self.values(wait, &at("wait"), scope);
                }
            }
        }
    }

    fn call(
        &mut self,
        call: CallKind,
        fields: &Map<String, Value>,
        pointer: &str,
        scope: &[String],
    ) {
        let at = format!("{pointer}/call");
        let instead = "only `call: http` and `call: agent` run: call the service over HTTP instead";
        match call {
            CallKind::Http => {
                if let Some(with) = fields.get("with") {
                    self.values(with, &format!("{pointer}/with"), scope);
                }
            }
            CallKind::Agent => match fields.get("with") {
                Some(with) => self.agent_with(with, &format!("{pointer}/with"), scope),
                None => self.error(
                    pointer,
                    "missing required field `with` of `call: agent`: {agent: <name>, message: <prompt>}",
                ),
            },
            CallKind::AsyncApi => self.not_supported(at, "`call: asyncapi`", instead),
            CallKind::Grpc => self.not_supported(at, "`call: grpc`", instead),
            CallKind::OpenApi => self.not_supported(at, "`call: openapi`", instead),
            CallKind::A2a => self.not_supported(at, "`call: a2a`", instead),
            CallKind::Mcp => self.not_supported(
                at,
                "`call: mcp`",
                "give the MCP server to an Agent and use `call: agent`",
            ),
            CallKind::Function => {
                let name = fields.get("call").map(show).unwrap_or_default();
                let what = if name.contains('@') {
                    format!("`call: {name}` (a catalog function)")
                } else {
                    format!("`call: {name}` (a function of `use.functions`)")
                };
                self.not_supported(
                    at,
                    &what,
                    "calls run as `call: http` or `call: agent` (Agents)",
                );
            }
        }
    }

    /// `with` of `call: agent`: `{agent*, message*, env, config {model, timeout}}`.
    fn agent_with(&mut self, with: &Value, pointer: &str, scope: &[String]) {
        let Some(fields) = with.as_object() else {
            self.error(
                pointer,
                "`with` of `call: agent` must be a mapping: {agent: <name>, message: <prompt>, env, config}",
            );
            return;
        };
        for required in ["agent", "message"] {
            if !fields.contains_key(required) {
                self.error(
                    pointer,
                    format!(
                        "missing required field `{required}` of `call: agent` ({})",
                        if required == "agent" {
                            "the name of the Agent to run"
                        } else {
                            "what to ask the Agent"
                        }
                    ),
                );
            }
        }
        for (key, value) in fields {
            let at = format!("{pointer}/{}", escape(key));
            match key.as_str() {
                "agent" => match value.as_str() {
                    None => {
                        self.error(at, "wrong type: `agent` is the name of an Agent (a string)")
                    }
                    Some(text) if expr::unwrap(text).is_some() => {
                        self.values(value, &at, scope);
                    }
                    Some(text) if !is_dns_label(text) => self.error(
                        at,
                        format!(
                            "{text:?} is not an Agent name: names are lowercase letters, digits \
                             and '-' (like `my-agent`)"
                        ),
                    ),
                    Some(_) => {}
                },
                "message" => match value {
                    Value::String(_) => self.values(value, &at, scope),
                    _ => self.error(
                        at,
                        "wrong type: `message` is a string (a whole `${ … }` to compute it)",
                    ),
                },
                "env" => match value.as_object() {
                    None => self.error(
                        at,
                        "wrong type: `env` is a mapping of variable names to strings",
                    ),
                    Some(variables) => {
                        for (name, variable) in variables {
                            let variable_at = format!("{at}/{}", escape(name));
                            if variable.is_string() {
                                self.values(variable, &variable_at, scope);
                            } else {
                                self.error(variable_at, "wrong type: an `env` value is a string");
                            }
                        }
                    }
                },
                "config" => self.agent_config(value, &at, scope),
                _ => self.error(at, unknown_field(key, &AGENT_WITH_FIELDS)),
            }
        }
    }

    fn agent_config(&mut self, config: &Value, pointer: &str, scope: &[String]) {
        let Some(fields) = config.as_object() else {
            self.error(
                pointer,
                "wrong type: `config` is a mapping: {model, timeout}",
            );
            return;
        };
        for (key, value) in fields {
            let at = format!("{pointer}/{}", escape(key));
            match key.as_str() {
                "model" => match value {
                    Value::String(_) => self.values(value, &at, scope),
                    _ => self.error(at, "wrong type: `model` is a model name (a string)"),
                },
                "timeout" => match duration_problem(value) {
                    Some(problem) => self.error(at, problem),
                    None => self.values(value, &at, scope),
                },
                _ => self.error(at, unknown_field(key, &AGENT_CONFIG_FIELDS)),
            }
        }
    }

    fn for_task(&mut self, fields: &Map<String, Value>, pointer: &str, scope: &[String]) {
        let each = fields
            .get("for")
            .and_then(|f| f.get("each"))
            .and_then(Value::as_str)
            .unwrap_or("item");
        let at = fields
            .get("for")
            .and_then(|f| f.get("at"))
            .and_then(Value::as_str)
            .unwrap_or("index");
        if let Some(collection) = fields.get("for").and_then(|f| f.get("in")) {
            self.expression(collection, &format!("{pointer}/for/in"), scope);
        }
        let mut body = scope.to_vec();
        body.push(format!("${each}"));
        body.push(format!("${at}"));
        if let Some(condition) = fields.get("while") {
            self.expression(condition, &format!("{pointer}/while"), &body);
        }
        if let Some(list) = fields.get("do") {
            self.task_list(list, &format!("{pointer}/do"), &body);
        }
    }

    fn raise(&mut self, fields: &Map<String, Value>, pointer: &str, scope: &[String]) {
        let Some(error) = fields.get("raise").and_then(|raise| raise.get("error")) else {
            return;
        };
        let at = format!("{pointer}/raise/error");
        match error.as_str() {
            Some(name) if !self.use_errors.contains(name) => {
                let known: Vec<&str> = self.use_errors.iter().map(String::as_str).collect();
                self.error(
                    at,
                    format!(
                        "unknown error {name:?}{}: raise an error object {{type, status, title, \
                         detail}} or the name of an entry of `use.errors`",
                        did_you_mean(name, &known)
                    ),
                );
            }
            Some(_) => {}
            None => self.values(error, &at, scope),
        }
    }

    fn run(&mut self, fields: &Map<String, Value>, pointer: &str, scope: &[String]) {
        let Some(run) = fields.get("run").and_then(Value::as_object) else {
            return;
        };
        for process in ["container", "script", "shell"] {
            if run.contains_key(process) {
                self.not_supported(
                    format!("{pointer}/run/{process}"),
                    &format!("`run: {process}`"),
                    "give commands to an Agent with the shell tool and use `call: agent`",
                );
            }
        }
        if let Some(workflow) = run.get("workflow") {
            let at = format!("{pointer}/run/workflow");
            self.values(workflow, &at, scope);
            self.run_workflow(workflow, &at);
            if run.contains_key("container")
                || run.contains_key("script")
                || run.contains_key("shell")
            {
                return;
            }
            if let Some(wait) = run.get("await")
                && wait != &Value::Bool(true)
            {
                self.not_supported(
                    format!("{pointer}/run/await"),
                    "`run.await: false`",
                    "leave `await` out: the task waits for the other workflow's output",
                );
            }
            if let Some(returned) = run.get("return")
                && returned.as_str() != Some("stdout")
            {
                self.not_supported(
                    format!("{pointer}/run/return"),
                    &format!("`run.return: {returned}`"),
                    "leave `return` out: the task's output is the other workflow's output",
                );
            }
        }
    }

    /// `run.workflow`: `{namespace, name, version, input}`, the first two required.
    fn run_workflow(&mut self, workflow: &Value, at: &str) {
        let Some(fields) = workflow.as_object() else {
            self.error(
                at,
                "`run.workflow` must be a mapping: {namespace, name, version, input}",
            );
            return;
        };
        for field in ["namespace", "name"] {
            match fields.get(field) {
                Some(Value::String(text)) if !text.trim().is_empty() => {}
                Some(_) => self.error(
                    format!("{at}/{field}"),
                    format!("`{field}` must be a non-empty string"),
                ),
                None => self.error(
                    at,
                    format!(
                        "`run.workflow` needs `{field}` (the other Workflow's `document.{field}`)"
                    ),
                ),
            }
        }
        if let Some(version) = fields.get("version")
            && !version.is_string()
        {
            self.error(
                format!("{at}/version"),
                "`version` must be a string (`latest` or the other Workflow's `document.version`)",
            );
        }
        for field in fields.keys() {
            if !matches!(field.as_str(), "namespace" | "name" | "version" | "input") {
                self.error(
                    format!("{at}/{}", escape(field)),
                    format!(
                        "unknown field `{field}` in `run.workflow`: use namespace, name, version, input"
                    ),
                );
            }
        }
    }

    fn switch(
        &mut self,
        fields: &Map<String, Value>,
        pointer: &str,
        scope: &[String],
        siblings: &[&str],
    ) {
        let Some(cases) = fields.get("switch").and_then(Value::as_array) else {
            return;
        };
        for (index, case) in cases.iter().enumerate() {
            let Some((name, case)) = single_entry(case) else {
                continue;
            };
            let at = format!("{pointer}/switch/{index}/{}", escape(name));
            if let Some(condition) = case.get("when") {
                self.expression(condition, &format!("{at}/when"), scope);
            }
            if let Some(then) = case.get("then") {
                self.then_target(then, &format!("{at}/then"), siblings);
            }
        }
    }

    fn try_task(&mut self, fields: &Map<String, Value>, pointer: &str, scope: &[String]) {
        if let Some(list) = fields.get("try") {
            self.task_list(list, &format!("{pointer}/try"), scope);
        }
        let Some(catch) = fields.get("catch").and_then(Value::as_object) else {
            return;
        };
        let name = catch.get("as").and_then(Value::as_str).unwrap_or("error");
        let mut caught = scope.to_vec();
        caught.push(format!("${name}"));
        for field in ["when", "exceptWhen"] {
            if let Some(condition) = catch.get(field) {
                self.expression(condition, &format!("{pointer}/catch/{field}"), &caught);
            }
        }
        if let Some(retry) = catch.get("retry") {
            let at = format!("{pointer}/catch/retry");
            match retry.as_str() {
                Some(name) if !self.use_retries.contains(name) => {
                    let known: Vec<&str> = self.use_retries.iter().map(String::as_str).collect();
                    self.error(
                        at,
                        format!(
                            "unknown retry policy {name:?}{}: give a policy inline or the name of \
                             an entry of `use.retries`",
                            did_you_mean(name, &known)
                        ),
                    );
                }
                Some(_) => {}
                None => self.retry(retry, &at, &caught),
            }
        }
        if let Some(list) = catch.get("do") {
            self.task_list(list, &format!("{pointer}/catch/do"), &caught);
        }
    }

    fn retry(&mut self, retry: &Value, pointer: &str, scope: &[String]) {
        let Some(fields) = retry.as_object() else {
            return;
        };
        for (key, value) in fields {
            let at = format!("{pointer}/{}", escape(key));
            match key.as_str() {
                "when" | "exceptWhen" => self.expression(value, &at, scope),
                _ => self.values(value, &at, scope),
            }
        }
    }

    /// A field that is always a jq expression (`if`, `when`, `input.from` …): the text itself,
    /// or the inside of a whole-string `${ … }`.
    fn expression(&mut self, value: &Value, pointer: &str, scope: &[String]) {
        let Some(text) = value.as_str() else {
            return;
        };
        let code = expr::unwrap(text).unwrap_or(text);
        self.compile(code, pointer, scope);
    }

    /// A value: its strings are expressions only when the whole string is `${ … }`.
    fn values(&mut self, value: &Value, pointer: &str, scope: &[String]) {
        match value {
            Value::String(text) => {
                if let Some(code) = expr::unwrap(text) {
                    self.compile(code, pointer, scope);
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.values(item, &format!("{pointer}/{index}"), scope);
                }
            }
            Value::Object(fields) => {
                for (key, item) in fields {
                    self.values(item, &format!("{pointer}/{}", escape(key)), scope);
                }
            }
            _ => {}
        }
    }

    fn compile(&mut self, code: &str, pointer: &str, scope: &[String]) {
        let key = (code.to_owned(), scope.to_vec());
        let outcome = match self.compiled.get(&key) {
            Some(outcome) => outcome.clone(),
            None => {
                let extra: Vec<&str> = scope.iter().map(String::as_str).collect();
                let outcome = expr::Expr::compile(code, &extra)
                    .err()
                    .map(|error| error.to_string());
                self.compiled.insert(key, outcome.clone());
                outcome
            }
        };
        if let Some(problem) = outcome {
            let shown: String = if code.chars().count() > 80 {
                format!("{}…", code.chars().take(80).collect::<String>())
            } else {
                code.trim().to_owned()
            };
            let variables = if scope.is_empty() {
                String::new()
            } else {
                format!(
                    " (variables here: {} and {})",
                    expr::GLOBALS.join(", "),
                    scope.join(", ")
                )
            };
            self.error(
                pointer,
                format!("invalid expression `{shown}`: {problem}{variables}"),
            );
        }
    }

    /// The schema's findings, with the task type's own branch picked out of the `oneOf`
    /// over task types, so a misspelled field is reported at its own path.
    fn schema_errors(&self, document: &Value) -> Vec<DefinitionError> {
        let mut found = Vec::new();
        match &*SCHEMA {
            Ok(validator) => {
                for error in validator.iter_errors(document) {
                    self.convert(&error, true, &mut found);
                }
            }
            Err(problem) => found.push(DefinitionError {
                pointer: String::new(),
                message: format!("the bundled workflow schema does not build: {problem}"),
            }),
        }
        found
    }

    fn convert(
        &self,
        error: &jsonschema::ValidationError<'_>,
        top: bool,
        found: &mut Vec<DefinitionError>,
    ) {
        let pointer = error.instance_path().as_str().to_owned();
        match error.kind() {
            ValidationErrorKind::OneOfNotValid { context } => {
                if let Some(kind) = self.tasks.get(&pointer) {
                    // A task without a type is reported by our own rules.
                    let Some(kind) = kind else { return };
                    let branch = match context.len() {
                        12 => Some(kind.task_branch()),
                        7 => kind.call_branch(),
                        _ => None,
                    };
                    if let Some(errors) = branch.and_then(|branch| context.get(branch)) {
                        for inner in errors {
                            self.convert(inner, false, found);
                        }
                        return;
                    }
                }
                // Elsewhere (a duration, an endpoint …): the alternative that got furthest.
                let best = context
                    .iter()
                    .filter(|errors| {
                        !errors.iter().any(|inner| {
                            inner.instance_path().as_str() == pointer
                                && matches!(
                                    inner.kind(),
                                    ValidationErrorKind::Type { .. }
                                        | ValidationErrorKind::Constant { .. }
                                )
                        })
                    })
                    .min_by_key(|errors| errors.len());
                match best {
                    Some(errors) if !errors.is_empty() => {
                        for inner in errors {
                            self.convert(inner, false, found);
                        }
                    }
                    _ => push(found, pointer, format!("wrong shape: {error}")),
                }
            }
            ValidationErrorKind::UnevaluatedProperties { unexpected }
            | ValidationErrorKind::AdditionalProperties { unexpected } => {
                // The task union's own `unevaluatedProperties` repeats every field of a task
                // that matched no type; the type's branch says which field is wrong.
                if top && self.tasks.contains_key(&pointer) {
                    return;
                }
                let allowed = self.allowed_fields(&pointer);
                // A known field counts as unevaluated when its own value failed (a failing
                // subschema drops its annotations): that failure is reported on its own.
                for name in unexpected
                    .iter()
                    .filter(|name| !allowed.contains(&name.as_str()))
                {
                    push(
                        found,
                        format!("{pointer}/{}", escape(name)),
                        unknown_field(name, &allowed),
                    );
                }
            }
            ValidationErrorKind::Required { property } => {
                let property = property
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| property.to_string());
                push(
                    found,
                    pointer,
                    format!("missing required field `{property}`"),
                );
            }
            ValidationErrorKind::MaxProperties { .. } if self.is_list_item(&pointer) => {
                let names: Vec<String> = error
                    .instance()
                    .as_object()
                    .map(|item| item.keys().cloned().collect())
                    .unwrap_or_default();
                push(
                    found,
                    pointer,
                    format!(
                        "this list item holds {} tasks ({}): each task is its own item, \
                         `- name: {{…}}`; check the indentation and the `-`",
                        names.len(),
                        names.join(", ")
                    ),
                );
            }
            ValidationErrorKind::MinProperties { .. } if self.is_list_item(&pointer) => push(
                found,
                pointer,
                "an empty item in a task list: expected one task, `- name: {…}`".into(),
            ),
            ValidationErrorKind::Type { .. } => {
                push(found, pointer, format!("wrong type: {error}"))
            }
            _ => push(found, pointer, error.to_string()),
        }
    }

    fn is_list_item(&self, pointer: &str) -> bool {
        pointer
            .rsplit_once('/')
            .is_some_and(|(parent, _)| self.lists.contains(parent))
    }

    /// The fields allowed at `pointer`, where we know them, for did-you-mean hints.
    fn allowed_fields(&self, pointer: &str) -> Vec<&'static str> {
        if let Some(Some(kind)) = self.tasks.get(pointer) {
            return TASK_BASE_FIELDS
                .iter()
                .chain(kind.fields())
                .copied()
                .collect();
        }
        if let Some(task) = pointer.strip_suffix("/with")
            && self.tasks.get(task) == Some(&Some(TaskKind::Call(CallKind::Http)))
        {
            return HTTP_WITH_FIELDS.to_vec();
        }
        match pointer {
            "" => DOCUMENT_FIELDS.to_vec(),
            "/document" => DOCUMENT_INFO_FIELDS.to_vec(),
            "/use" => USE_FIELDS.to_vec(),
            _ => Vec::new(),
        }
    }
}

fn push(found: &mut Vec<DefinitionError>, pointer: String, message: String) {
    found.push(DefinitionError { pointer, message });
}

/// What is wrong with a duration, if anything: `{days, hours, minutes, seconds, milliseconds}`,
/// an ISO 8601 duration (`PT30S`) or a whole `${ … }`.
fn duration_problem(value: &Value) -> Option<String> {
    const UNITS: [&str; 5] = ["days", "hours", "minutes", "seconds", "milliseconds"];
    match value {
        Value::String(text) if expr::unwrap(text).is_some() => None,
        Value::String(text) => match text.parse::<jiff::Span>() {
            Ok(_) if text.starts_with('P') || text.starts_with('p') => None,
            _ => Some(format!(
                "{text:?} is not an ISO 8601 duration: write e.g. PT30S, PT5M or {{minutes: 5}}"
            )),
        },
        Value::Object(fields) if !fields.is_empty() => {
            for (key, amount) in fields {
                if !UNITS.contains(&key.as_str()) {
                    return Some(unknown_field(key, &UNITS));
                }
                if amount.as_u64().is_none() {
                    return Some(format!(
                        "`{key}` must be a whole number of at least 0, not {}",
                        show(amount)
                    ));
                }
            }
            None
        }
        _ => Some(
            "a duration is {days, hours, minutes, seconds, milliseconds} (whole numbers) or an \
             ISO 8601 string like PT30S"
                .into(),
        ),
    }
}

fn unknown_field(name: &str, allowed: &[&str]) -> String {
    if allowed.is_empty() {
        return format!("unknown field `{name}`");
    }
    format!(
        "unknown field `{name}`{}; expected one of {}",
        did_you_mean(name, allowed),
        allowed.join(", ")
    )
}

fn did_you_mean(text: &str, candidates: &[&str]) -> String {
    suggest(text, candidates)
        .map(|guess| format!(" (did you mean `{guess}`?)"))
        .unwrap_or_default()
}

/// The candidate within a small edit distance of `text`, if any (a likely typo).
fn suggest<'a>(text: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = match text.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|candidate| {
            (
                edit_distance(&text.to_lowercase(), &candidate.to_lowercase()),
                *candidate,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(tasks: Value) -> Value {
        json!({
            "document": {"dsl": "1.0.3", "namespace": "default", "name": "flow", "version": "0.0.1"},
            "do": tasks,
        })
    }

    /// The problems of a workflow with these tasks, as `(pointer, message)`.
    fn problems(tasks: Value) -> Vec<(String, String)> {
        validate(&document(tasks))
            .into_iter()
            .map(|error| (error.pointer, error.message))
            .collect()
    }

    fn single(tasks: Value) -> (String, String) {
        let found = problems(tasks);
        assert_eq!(found.len(), 1, "{found:#?}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn the_tasks_alias_becomes_do_and_nothing_else_changes() {
        let aliased = json!({
            "document": {"dsl": "1.0.3", "namespace": "default", "name": "flow", "version": "0.0.1"},
            "tasks": [{"name": "greet", "set": {"hello": "world"}, "then": "end"}],
            "output": {"as": ".hello"},
        });
        let normalised = normalise(aliased);
        assert_eq!(
            normalised,
            json!({
                "document": {"dsl": "1.0.3", "namespace": "default", "name": "flow", "version": "0.0.1"},
                "do": [{"greet": {"set": {"hello": "world"}, "then": "end"}}],
                "output": {"as": ".hello"},
            })
        );
        assert_eq!(validate(&normalised), []);
        // Both at once, or an alias that cannot be rewritten, are reported.
        let mut both = document(json!([{"a": {"set": {"x": 1}}}]));
        both["tasks"] = json!([{"name": "b", "set": {"x": 1}}]);
        let found = validate(&normalise(both));
        assert_eq!(found[0].pointer, "/tasks", "{found:#?}");
        let unnamed = normalise(json!({
            "document": {"dsl": "1.0.3", "namespace": "default", "name": "flow", "version": "0.0.1"},
            "tasks": [{"set": {"x": 1}}],
        }));
        let found = validate(&unnamed);
        assert!(
            found
                .iter()
                .any(|e| e.pointer == "/tasks/0" && e.message.contains("`name`")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_misspelled_field_is_reported_at_its_own_path() {
        let (pointer, message) = single(json!([{"fetch": {
            "call": "http",
            "with": {"methd": "get", "method": "get", "endpoint": "https://example.com"},
        }}]));
        assert_eq!(pointer, "/do/0/fetch/with/methd");
        assert!(
            message.starts_with("unknown field `methd` (did you mean `method`?)"),
            "{message}"
        );
        let (pointer, message) = single(json!([{"fetch": {
            "call": "http",
            "with": {"method": "get", "endpoint": "https://example.com"},
            "thne": "end",
        }}]));
        assert_eq!(pointer, "/do/0/fetch/thne");
        assert!(message.contains("did you mean `then`"), "{message}");
        let (pointer, message) = single(json!([{"fetch": {"call": "http"}}]));
        assert_eq!(
            (pointer.as_str(), message.as_str()),
            ("/do/0/fetch", "missing required field `with`")
        );
        let (pointer, message) = single(json!([{"x": {"sett": {"a": 1}}}]));
        assert_eq!(pointer, "/do/0/x");
        assert!(message.contains("did you mean `set`"), "{message}");
        // Deep inside nested lists too.
        let (pointer, _) = single(json!([{"outer": {"do": [{"inner": {"try": [
            {"deep": {"wait": "PT1S", "extra": 1}},
        ], "catch": {}}}]}}]));
        assert_eq!(pointer, "/do/0/outer/do/0/inner/try/0/deep/extra");
    }

    #[test]
    fn task_names_are_unique_and_then_targets_resolve_within_their_list() {
        let (pointer, message) = single(json!([
            {"a": {"set": {"x": 1}}},
            {"a": {"set": {"x": 2}}},
        ]));
        assert_eq!(pointer, "/do/1/a");
        assert!(
            message.starts_with("duplicate task name \"a\""),
            "{message}"
        );

        let (pointer, message) = single(json!([
            {"first": {"set": {"x": 1}, "then": "secnd"}},
            {"second": {"set": {"x": 2}, "then": "exit"}},
        ]));
        assert_eq!(pointer, "/do/0/first/then");
        assert!(message.contains("did you mean `second`"), "{message}");

        // A name in an enclosing list is not a target (never across depth).
        let (pointer, _) = single(json!([
            {"outer": {"do": [{"inner": {"set": {"x": 1}, "then": "outer"}}]}},
        ]));
        assert_eq!(pointer, "/do/0/outer/do/0/inner/then");

        // Switch cases resolve in the switch task's list.
        let (pointer, _) = single(json!([
            {"pick": {"switch": [
                {"red": {"when": ".color == \"red\"", "then": "paint"}},
                {"other": {"then": "nowhere"}},
            ]}},
            {"paint": {"set": {"x": 1}}},
        ]));
        assert_eq!(pointer, "/do/0/pick/switch/1/other/then");
    }

    #[test]
    fn expressions_are_compiled_in_their_scope() {
        // An expression field is jq without `${}`; a value is jq only as a whole `${…}`.
        let (pointer, message) = single(json!([{"a": {"set": {"x": 1}, "if": ".a | ("}}]));
        assert_eq!(pointer, "/do/0/a/if");
        assert!(
            message.starts_with("invalid expression `.a | (`"),
            "{message}"
        );
        assert_eq!(problems(json!([{"a": {"set": {"x": ".a | ("}}}])), []);
        let (pointer, _) = single(json!([{"a": {"set": {"x": {"y": ["${ .a | ( }"]}}}}]));
        assert_eq!(pointer, "/do/0/a/set/x/y/0");
        let (pointer, _) =
            single(json!([{"a": {"set": {"x": 1}, "output": {"as": {"v": "${ $nope }"}}}}]));
        assert_eq!(pointer, "/do/0/a/output/as/v");
        let (pointer, message) = single(json!([{"a": {"set": "${ def f: f; f }"}}]));
        assert_eq!(pointer, "/do/0/a/set");
        assert!(message.starts_with("invalid expression"), "{message}");

        // Loop variables inside the loop only, under their own names.
        assert_eq!(
            problems(json!([{"loop": {
                "for": {"each": "color", "in": ".colors"},
                "while": "$index < 3 and $color != \"red\"",
                "do": [{"mark": {"set": "${ {c: $color, i: $index} }"}}],
            }}])),
            []
        );
        let (pointer, _) = single(json!([
            {"loop": {"for": {"in": ".colors"}, "do": [{"mark": {"set": "${ $item }"}}]}},
            {"after": {"set": "${ $item }"}},
        ]));
        assert_eq!(pointer, "/do/1/after/set");
        let (pointer, _) = single(json!([
            {"loop": {"for": {"in": "$item"}, "do": [{"mark": {"set": {"x": 1}}}]}},
        ]));
        assert_eq!(pointer, "/do/0/loop/for/in");

        // The caught error under its `as` name, in when/exceptWhen/do only.
        assert_eq!(
            problems(json!([{"guard": {
                "try": [{"get": {"set": {"x": 1}}}],
                "catch": {"as": "err", "when": "$err.status == 404",
                          "do": [{"keep": {"set": "${ $err }"}}]},
            }}])),
            []
        );
        let (pointer, _) = single(json!([{"guard": {
            "try": [{"get": {"set": "${ $error }"}}],
            "catch": {"do": [{"keep": {"set": "${ $error }"}}]},
        }}]));
        assert_eq!(pointer, "/do/0/guard/try/0/get/set");
    }

    #[test]
    fn what_version_1_does_not_run_is_refused_by_name() {
        for (task, pointer, named) in [
            (
                json!({"call": "grpc", "with": {}}),
                "/do/0/t/call",
                "`call: grpc`",
            ),
            (
                json!({"call": "mcp", "with": {}}),
                "/do/0/t/call",
                "`call: mcp`",
            ),
            (
                json!({"call": "myFunction"}),
                "/do/0/t/call",
                "`call: myFunction`",
            ),
            (
                json!({"call": "log:1.0.0@default"}),
                "/do/0/t/call",
                "a catalog function",
            ),
            (
                json!({"listen": {"to": {"any": []}}}),
                "/do/0/t/listen",
                "`listen`",
            ),
            (
                json!({"run": {"shell": {"command": "ls"}}}),
                "/do/0/t/run/shell",
                "`run: shell`",
            ),
            (
                json!({"set": {"x": 1}, "input": {"schema": {"format": "json", "resource": {"endpoint": "https://x"}}}}),
                "/do/0/t/input/schema/resource",
                "`resource`",
            ),
        ] {
            let found = problems(json!([{"t": task}]));
            assert!(
                found.iter().any(|(p, m)| p == pointer
                    && m.contains(named)
                    && m.contains("not supported in version 1")),
                "{task}: {found:#?}"
            );
        }
        let mut scheduled = document(json!([{"a": {"set": {"x": 1}}}]));
        scheduled["schedule"] = json!({"every": {"hours": 1}});
        scheduled["evaluate"] = json!({"mode": "loose", "language": "javascript"});
        scheduled["use"] = json!({
            "catalogs": {"default": {"endpoint": "https://x"}},
            "functions": {"agent": {"call": "http", "with": {"method": "get", "endpoint": "https://x"}}},
        });
        let pointers: Vec<String> = validate(&scheduled)
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        for expected in [
            "/schedule",
            "/evaluate/mode",
            "/evaluate/language",
            "/use/catalogs",
            "/use/functions/agent",
        ] {
            assert!(
                pointers.iter().any(|p| p == expected),
                "{expected}: {pointers:?}"
            );
        }
    }

    #[test]
    fn call_agent_arguments_are_checked() {
        assert_eq!(
            problems(json!([{"ask": {"call": "agent", "with": {
                "agent": "reviewer",
                "message": "${ \"Review \" + .text }",
                "env": {"TOPIC": "rust"},
                "config": {"model": "gpt-4o", "timeout": {"minutes": 5}},
            }}}])),
            []
        );
        let found = problems(json!([{"ask": {"call": "agent", "with": {
            "agent": "reviewer", "mesage": "hi",
        }}}]));
        assert_eq!(found[0].0, "/do/0/ask/with");
        assert!(
            found[0].1.contains("missing required field `message`"),
            "{found:#?}"
        );
        assert!(found[1].1.contains("did you mean `message`"), "{found:#?}");
        let found = problems(json!([{"ask": {"call": "agent", "with": {
            "agent": "Reviewer", "message": "hi", "mesage": "x",
            "config": {"timeout": "soon", "temperature": 1},
        }}}]));
        // The schema's errors come in no fixed order.
        let mut found = found;
        found.sort();
        let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/do/0/ask/with/agent",
                "/do/0/ask/with/config/temperature",
                "/do/0/ask/with/config/timeout",
                "/do/0/ask/with/mesage",
            ],
            "{found:#?}"
        );
        assert!(found[3].1.contains("did you mean `message`"), "{found:#?}");
    }

    #[test]
    fn run_workflow_arguments_are_checked() {
        assert_eq!(
            problems(json!([{"child": {"run": {"workflow": {
                "namespace": "default", "name": "child", "version": "latest",
                "input": {"n": "${ .n + 1 }"},
            }}}}])),
            []
        );
        assert_eq!(
            problems(json!([{"child": {"run": {"workflow": {
                "namespace": "default", "name": "child", "version": "0.0.1",
            }, "await": true, "return": "stdout"}}}])),
            []
        );
        let found = problems(json!([{"child": {"run": {"workflow": {
            "namespace": "default", "name": "", "version": 2, "inputs": {},
        }}}}]));
        let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        for expected in [
            "/do/0/child/run/workflow/name",
            "/do/0/child/run/workflow/version",
            "/do/0/child/run/workflow/inputs",
        ] {
            assert!(pointers.contains(&expected), "{expected}: {found:#?}");
        }
        for (run, pointer) in [
            (json!({"await": false}), "/do/0/child/run/await"),
            (json!({"return": "all"}), "/do/0/child/run/return"),
        ] {
            let mut run = run;
            run["workflow"] = json!({"namespace": "default", "name": "child", "version": "latest"});
            let found = problems(json!([{"child": {"run": run}}]));
            assert!(
                found
                    .iter()
                    .any(|(p, m)| p == pointer && m.contains("not supported in version 1")),
                "{pointer}: {found:#?}"
            );
        }
    }

    #[test]
    fn workflow_runs_are_listed_with_literal_names_only() {
        let document = document(json!([
            {"child": {"run": {"workflow": {"namespace": "default", "name": "child", "version": "latest"}}}},
            {"each": {"for": {"in": ".xs"}, "do": [
                {"dynamic": {"run": {"workflow": {"namespace": "default", "name": "${ .w }", "version": "latest"}}}},
                {"nested": {"run": {"workflow": {"namespace": "default", "name": "other", "version": "latest"}}}},
            ]}},
        ]));
        assert_eq!(
            workflow_runs(&document),
            [
                WorkflowRun {
                    pointer: "/do/0/child/run/workflow/name".into(),
                    workflow: "child".into(),
                },
                WorkflowRun {
                    pointer: "/do/1/each/do/1/nested/run/workflow/name".into(),
                    workflow: "other".into(),
                },
            ]
        );
    }

    #[test]
    fn agent_calls_are_listed_with_literal_names_only() {
        let document = document(json!([
            {"ask": {"call": "agent", "with": {"agent": "reviewer", "message": "hi"}}},
            {"each": {"for": {"in": ".xs"}, "do": [
                {"dynamic": {"call": "agent", "with": {"agent": "${ .who }", "message": "hi"}}},
            ]}},
            {"guard": {"try": [{"x": {"set": {"x": 1}}}], "catch": {"do": [
                {"fallback": {"call": "agent", "with": {"agent": "helper", "message": "hi"}}},
            ]}}},
        ]));
        assert_eq!(
            agent_calls(&document),
            [
                AgentCall {
                    pointer: "/do/0/ask/with/agent".into(),
                    agent: "reviewer".into()
                },
                AgentCall {
                    pointer: "/do/2/guard/catch/do/0/fallback/with/agent".into(),
                    agent: "helper".into()
                },
            ]
        );
    }

    #[test]
    fn named_errors_retries_and_timeouts_must_exist() {
        let mut doc = document(json!([
            {"fail": {"raise": {"error": "notFound"}}},
            {"guard": {"try": [{"x": {"set": {"x": 1}}}], "catch": {"retry": "again"}}},
            {"slow": {"wait": "PT1S", "timeout": "short"}},
        ]));
        let found = validate(&doc);
        assert_eq!(found.len(), 3, "{found:#?}");
        doc["use"] = json!({
            "errors": {"notFound": {"type": "https://example.com/not-found", "status": 404}},
            "retries": {"again": {"delay": {"seconds": 1}, "limit": {"attempt": {"count": 3}}}},
            "timeouts": {"short": {"after": {"seconds": 5}}},
        });
        assert_eq!(validate(&doc), []);
    }

    #[test]
    fn a_document_that_is_not_a_workflow_is_explained() {
        let found = validate(&json!({"document": {"dsl": "1.0.3"}}));
        assert!(
            found.iter().any(|e| e.message.contains("missing `do`")),
            "{found:#?}"
        );
        let found = validate(&document(json!([])));
        assert_eq!(found[0].pointer, "/do");
        let found = validate(&json!("text"));
        assert!(!found.is_empty());
        let mut unknown = document(json!([{"a": {"set": {"x": 1}}}]));
        unknown["outptu"] = json!({});
        let found = validate(&unknown);
        assert_eq!(found[0].pointer, "/outptu");
        assert!(
            found[0].message.contains("did you mean `output`"),
            "{found:#?}"
        );
    }
}
