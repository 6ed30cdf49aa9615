//! Parsing and validating manifest files: multi-document YAML → [`Resource`]s, or every error
//! found, each naming the file, line, column, document and field.

use crate::depth::{MAX_DEPTH, too_deep};
use crate::kind::Kind;
use crate::locate::locate;
use crate::model::*;
use crate::{is_dns_label, suggest};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt;

/// A manifest file's text and the name to show in errors.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// One parsed document and where it came from.
#[derive(Clone, Debug)]
pub struct ParsedDocument {
    pub file: String,
    /// 1-based position of the document in its file.
    pub index: usize,
    /// 1-based line where the document starts.
    pub first_line: usize,
    /// The document's own text (for locating fields later).
    pub text: String,
    pub resource: Resource,
    /// A plain Serverless Workflow document (no `apiVersion`/`kind`), stored as a Workflow:
    /// field paths are reported as the file writes them (`do[0]`, not `spec.do[0]`).
    pub serverless_workflow: bool,
}

impl ParsedDocument {
    /// An error about `path` in this document, located in the file.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> ManifestError {
        let path = if self.serverless_workflow {
            crate::workflow::plain_path(path)
        } else {
            path.to_owned()
        };
        let (line, column) = match locate(&self.text, &path) {
            Some((line, column)) => (Some(self.first_line + line - 1), Some(column)),
            None => (Some(self.first_line), None),
        };
        ManifestError {
            file: self.file.clone(),
            line,
            column,
            document: Some(self.index),
            resource: Some(format!(
                "{} \"{}\"",
                self.resource.kind, self.resource.metadata.name
            )),
            path: (!path.is_empty()).then_some(path),
            message: message.into(),
        }
    }
}

/// A problem with a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub document: Option<usize>,
    /// `Agent "hello"` when known.
    pub resource: Option<String>,
    /// The field path, e.g. `spec.model.temperature`.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(document) = self.document {
            write!(f, "document {document}")?;
            if let Some(resource) = &self.resource {
                write!(f, " ({resource})")?;
            }
            f.write_str(": ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Parses every document of every source. Returns all documents, or all errors found.
pub fn parse_sources(sources: &[Source]) -> Result<Vec<ParsedDocument>, Vec<ManifestError>> {
    parse_sources_with(sources, None)
}

/// [`parse_sources`], naming plain Serverless Workflow documents `workflow_name` instead of
/// their `document.name` (the CLI's `--name`, for a single plain file).
pub fn parse_sources_with(
    sources: &[Source],
    workflow_name: Option<&str>,
) -> Result<Vec<ParsedDocument>, Vec<ManifestError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        let raw_documents = split_documents(&source.text);
        if raw_documents.iter().all(|doc| is_empty_document(&doc.1)) {
            errors.push(ManifestError {
                file: source.name.clone(),
                line: None,
                column: None,
                document: None,
                resource: None,
                path: None,
                message: "the file holds no manifest: expected at least one YAML document with \
                          apiVersion, kind, metadata and spec"
                    .into(),
            });
            continue;
        }
        let mut index = 0;
        for (first_line, text) in raw_documents {
            if is_empty_document(&text) {
                continue;
            }
            index += 1;
            match parse_document(&source.name, index, first_line, &text, workflow_name) {
                Ok(document) => documents.push(document),
                Err(mut document_errors) => errors.append(&mut document_errors),
            }
        }
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(errors)
    }
}

/// Splits YAML text at `---` lines into (first line, text) pairs.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..." {
            documents.push((first_line, std::mem::take(&mut current)));
            first_line = index + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push((first_line, current));
    documents
}

fn is_empty_document(text: &str) -> bool {
    text.lines().all(|line| {
        let trimmed = line.trim();
        trimmed.is_empty() || trimmed.starts_with('#')
    })
}

fn parse_document(
    file: &str,
    index: usize,
    first_line: usize,
    text: &str,
    workflow_name: Option<&str>,
) -> Result<ParsedDocument, Vec<ManifestError>> {
    let error = |path: Option<&str>, resource: Option<String>, message: String| {
        let (line, column) = match path.and_then(|path| locate(text, path)) {
            Some((line, column)) => (Some(first_line + line - 1), Some(column)),
            None => (Some(first_line), None),
        };
        vec![ManifestError {
            file: file.to_owned(),
            line,
            column,
            document: Some(index),
            resource,
            path: path.map(str::to_owned),
            message,
        }]
    };

    // Before any parser recurses into it: a document nested deeper than any manifest needs.
    if let Some((line, column)) = too_deep(text, MAX_DEPTH) {
        return Err(vec![ManifestError {
            file: file.to_owned(),
            line: Some(first_line + line - 1),
            column: Some(column),
            document: Some(index),
            resource: None,
            path: None,
            message: format!(
                "the document nests more than {MAX_DEPTH} levels deep here; manifests need only \
                 a few levels"
            ),
        }]);
    }
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(yaml_error) => {
            let location = yaml_error.location();
            return Err(vec![ManifestError {
                file: file.to_owned(),
                line: location.as_ref().map(|l| first_line + l.line() - 1),
                column: location.as_ref().map(|l| l.column()),
                document: Some(index),
                resource: None,
                path: None,
                message: format!("invalid YAML: {}", strip_location(&yaml_error.to_string())),
            }]);
        }
    };
    let Some(mapping) = value.as_mapping() else {
        return Err(error(
            None,
            None,
            "a manifest must be a mapping with apiVersion, kind, metadata and spec".into(),
        ));
    };
    if crate::workflow::is_plain(mapping) {
        return parse_plain_workflow(file, index, first_line, text, mapping, workflow_name);
    }
    let field = |name: &str| mapping.get(serde_yaml_ng::Value::from(name));

    match field("apiVersion") {
        None => {
            return Err(error(
                None,
                None,
                format!("missing apiVersion: expected `apiVersion: {API_VERSION}`"),
            ));
        }
        Some(version) if version.as_str() != Some(API_VERSION) => {
            return Err(error(
                Some("apiVersion"),
                None,
                format!(
                    "unknown apiVersion {}: expected {API_VERSION}",
                    show_value(version)
                ),
            ));
        }
        Some(_) => {}
    }
    let kind = match field("kind") {
        None => {
            return Err(error(
                None,
                None,
                "missing kind: expected one of Agent, McpServer, Skill, Environment, Workflow"
                    .into(),
            ));
        }
        Some(kind_value) => {
            let text_kind = kind_value.as_str().unwrap_or_default();
            match Kind::from_manifest(text_kind) {
                Some(kind) if kind.is_declarable() => kind,
                Some(kind) => {
                    return Err(error(
                        Some("kind"),
                        None,
                        format!(
                            "{kind} resources are created by the system (by `stigmer run`) and \
                             cannot be applied"
                        ),
                    ));
                }
                None => {
                    let hint = Kind::suggest_manifest(text_kind)
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default();
                    return Err(error(
                        Some("kind"),
                        None,
                        format!(
                            "unknown kind {}{hint}: expected one of Agent, McpServer, Skill, \
                             Environment, Workflow",
                            show_value(kind_value)
                        ),
                    ));
                }
            }
        }
    };
    let name = field("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(|name| name.as_str())
        .map(str::to_owned);
    let label = name
        .as_ref()
        .map(|name| format!("{kind} \"{name}\""))
        .or_else(|| Some(kind.to_string()));

    let typed = match kind {
        Kind::Agent => typed::<AgentSpec>(text),
        Kind::McpServer => typed::<McpServerSpec>(text),
        Kind::Skill => typed::<SkillSpec>(text),
        Kind::Environment => typed::<EnvironmentSpec>(text),
        Kind::Workflow => typed::<WorkflowSpec>(text),
        Kind::Session | Kind::AgentExecution | Kind::WorkflowExecution => unreachable_kind(),
    };
    let (metadata, spec) = match typed {
        Ok(parsed) => parsed,
        Err(failure) => {
            return Err(vec![
                failure.into_error(file, index, first_line, text, label),
            ]);
        }
    };

    let document = ParsedDocument {
        file: file.to_owned(),
        index,
        first_line,
        text: text.to_owned(),
        resource: Resource {
            api_version: API_VERSION.to_owned(),
            kind,
            metadata: Metadata {
                name: metadata.name.clone(),
                labels: metadata.labels.clone(),
                ..Metadata::default()
            },
            spec,
            status: None,
        },
        serverless_workflow: false,
    };
    let problems = validate(&document.resource);
    if problems.is_empty() {
        Ok(document)
    } else {
        Err(problems
            .into_iter()
            .map(|(path, message)| document.error_at(&path, message))
            .collect())
    }
}

fn unreachable_kind() -> Result<(Metadata, serde_json::Value), TypedFailure> {
    Err(TypedFailure {
        path: "kind".into(),
        location: None,
        message: "this kind cannot be applied".into(),
    })
}

/// A plain Serverless Workflow document (`document.dsl`, no `kind`), stored as the Workflow
/// named `workflow_name` or its `document.name`; the spec is the document without that name.
fn parse_plain_workflow(
    file: &str,
    index: usize,
    first_line: usize,
    text: &str,
    mapping: &serde_yaml_ng::Mapping,
    workflow_name: Option<&str>,
) -> Result<ParsedDocument, Vec<ManifestError>> {
    let given_name = mapping
        .get(serde_yaml_ng::Value::from("document"))
        .and_then(|document| document.get("name"))
        .and_then(|name| name.as_str());
    let Some(name) = workflow_name.or(given_name) else {
        let failure = TypedFailure {
            path: "document".into(),
            location: None,
            message: "missing `document.name`: a Serverless Workflow file is stored as the \
                      Workflow of that name (or pass --name)"
                .into(),
        };
        return Err(vec![failure.into_error(
            file,
            index,
            first_line,
            text,
            Some("Workflow".into()),
        )]);
    };
    let label = Some(format!("Workflow \"{name}\""));
    let spec = match located::<WorkflowSpec>(text).and_then(|spec| {
        serde_json::to_value(&spec).map_err(|error| TypedFailure {
            path: String::new(),
            location: None,
            message: error.to_string(),
        })
    }) {
        Ok(mut spec) => {
            // The workflow's name is the resource's: kept once, in metadata.
            if let Some(document) = spec.get_mut("document").and_then(|d| d.as_object_mut()) {
                document.remove("name");
            }
            spec
        }
        Err(failure) => {
            return Err(vec![
                failure.into_error(file, index, first_line, text, label),
            ]);
        }
    };
    let document = ParsedDocument {
        file: file.to_owned(),
        index,
        first_line,
        text: text.to_owned(),
        resource: Resource {
            api_version: API_VERSION.to_owned(),
            kind: Kind::Workflow,
            metadata: Metadata {
                name: name.to_owned(),
                ..Metadata::default()
            },
            spec,
            status: None,
        },
        serverless_workflow: true,
    };
    let problems = validate(&document.resource);
    if problems.is_empty() {
        return Ok(document);
    }
    Err(problems
        .into_iter()
        .map(|(path, mut message)| {
            if path == "metadata.name" && workflow_name.is_none() {
                message.push_str(" (or pass --name to store the workflow under another name)");
            }
            document.error_at(&path, message)
        })
        .collect())
}

struct TypedFailure {
    path: String,
    location: Option<(usize, usize)>,
    message: String,
}

impl TypedFailure {
    /// The located error of document `index` of `file`.
    fn into_error(
        self,
        file: &str,
        index: usize,
        first_line: usize,
        text: &str,
        resource: Option<String>,
    ) -> ManifestError {
        let (line, column) = match self.location {
            Some((line, column)) => (Some(first_line + line - 1), Some(column)),
            None => match locate(text, &self.path) {
                Some((line, column)) => (Some(first_line + line - 1), Some(column)),
                None => (Some(first_line), None),
            },
        };
        ManifestError {
            file: file.to_owned(),
            line,
            column,
            document: Some(index),
            resource,
            path: (!self.path.is_empty() && self.path != ".").then_some(self.path),
            message: self.message,
        }
    }
}

/// Deserializes the document with the typed spec `S`, returning the canonical JSON spec.
fn typed<S: DeserializeOwned + serde::Serialize>(
    text: &str,
) -> Result<(Metadata, serde_json::Value), TypedFailure> {
    let manifest = located::<TypedManifest<S>>(text)?;
    let spec = serde_json::to_value(&manifest.spec).map_err(|error| TypedFailure {
        path: "spec".into(),
        location: None,
        message: error.to_string(),
    })?;
    Ok((manifest.metadata, spec))
}

/// Deserializes `text` as `T`, or says where and why it does not fit.
fn located<T: DeserializeOwned>(text: &str) -> Result<T, TypedFailure> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(deserializer) {
        Ok(value) => Ok(value),
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.inner();
            let location = inner.location().map(|l| (l.line(), l.column()));
            let raw = strip_location(&inner.to_string());
            // serde_yaml prefixes the message with the field path, which we report separately.
            let raw = match raw.split_once(": ") {
                Some((head, rest)) if !head.is_empty() && !head.contains(' ') => rest.to_owned(),
                _ => raw,
            };
            Err(TypedFailure {
                message: explain(&raw),
                path,
                location,
            })
        }
    }
}

/// Rewrites serde's messages into ours: did-you-mean for unknown fields, plain words for types.
fn explain(raw: &str) -> String {
    if let Some(rest) = raw.strip_prefix("unknown field `")
        && let Some((unknown, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let hint = suggest(unknown, candidates.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let expected = if candidates.is_empty() {
            "no fields here".to_owned()
        } else {
            format!("expected one of {}", candidates.join(", "))
        };
        return format!("unknown field `{unknown}`{hint}; {expected}");
    }
    if let Some(rest) = raw.strip_prefix("missing field `")
        && let Some((missing, _)) = rest.split_once('`')
    {
        return format!("missing required field `{missing}`");
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `")
        && let Some((unknown, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        return format!(
            "unknown value `{unknown}`; expected one of {}",
            candidates.join(", ")
        );
    }
    if let Some(rest) = raw
        .strip_prefix("invalid type: ")
        .or_else(|| raw.strip_prefix("invalid value: "))
    {
        let friendly = rest
            .replace("expected u32", "expected a whole number of at least 0")
            .replace("expected u64", "expected a whole number of at least 0")
            .replace("expected f64", "expected a number")
            .replace("expected a sequence", "expected a list")
            .replace("expected a map", "expected a mapping (key: value)")
            .replace("expected a boolean", "expected true or false");
        return format!("wrong type: {friendly}");
    }
    raw.to_owned()
}

/// serde_yaml appends " at line X column Y"; the location is reported separately.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(position) => message[..position].to_owned(),
        None => message.to_owned(),
    }
}

fn show_value(value: &serde_yaml_ng::Value) -> String {
    match value.as_str() {
        Some(text) => format!("{text:?}"),
        None => serde_yaml_ng::to_string(value)
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// Checks one resource on its own (no store): names, values, combinations.
/// Returns `(field path, message)` pairs.
pub fn validate(resource: &Resource) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let name = &resource.metadata.name;
    if !is_dns_label(name) {
        problems.push(("metadata.name".into(), name_problem(name)));
    }
    for key in resource.metadata.labels.keys() {
        if key.is_empty() || key.len() > 63 {
            problems.push((
                format!("metadata.labels.{key}"),
                "label keys must be 1 to 63 characters".into(),
            ));
        }
    }
    match resource.kind {
        Kind::Agent => {
            if let Ok(spec) = serde_json::from_value::<AgentSpec>(resource.spec.clone()) {
                validate_agent(&spec, &mut problems);
            }
        }
        Kind::McpServer => {
            if let Ok(spec) = serde_json::from_value::<McpServerSpec>(resource.spec.clone()) {
                validate_mcp(&spec, &mut problems);
            }
        }
        Kind::Skill => {
            if let Ok(spec) = serde_json::from_value::<SkillSpec>(resource.spec.clone())
                && !spec.files.contains_key("SKILL.md")
            {
                problems.push(("spec.files".into(), "a skill must contain SKILL.md".into()));
            }
        }
        Kind::Environment => {
            if let Ok(spec) = serde_json::from_value::<EnvironmentSpec>(resource.spec.clone()) {
                for variable in spec.variables.keys() {
                    if !is_env_name(variable) {
                        problems.push((
                            format!("spec.variables.{variable}"),
                            format!("{variable:?} is not a valid variable name: use letters, digits and _, not starting with a digit"),
                        ));
                    }
                }
            }
        }
        Kind::Workflow => {
            if serde_json::from_value::<WorkflowSpec>(resource.spec.clone()).is_ok() {
                problems.extend(crate::workflow::problems(resource));
            }
        }
        Kind::Session | Kind::AgentExecution | Kind::WorkflowExecution => {}
    }
    problems
}

fn validate_agent(spec: &AgentSpec, problems: &mut Vec<(String, String)>) {
    if spec.instructions.trim().is_empty() {
        problems.push((
            "spec.instructions".into(),
            "instructions must not be empty".into(),
        ));
    }
    if let Some(model) = &spec.model {
        validate_model(model, "spec.model", problems);
    }
    if let Some(tools) = &spec.tools {
        validate_tools(tools, "spec.tools", problems);
    }
    if spec.max_turns == Some(0) {
        problems.push(("spec.maxTurns".into(), "maxTurns must be at least 1".into()));
    }
    if let Some(timeout) = spec.shell.as_ref().and_then(|shell| shell.timeout_seconds)
        && !(1..=SHELL_TIMEOUT_MAX_SECS).contains(&timeout)
    {
        problems.push((
            "spec.shell.timeoutSeconds".into(),
            format!(
                "timeoutSeconds {timeout} is out of range: expected 1 to {SHELL_TIMEOUT_MAX_SECS}"
            ),
        ));
    }
    if let Some(approval) = &spec.approval {
        validate_approval(spec, approval, problems);
    }
    let mut names = BTreeSet::new();
    for (index, sub_agent) in spec.sub_agents.iter().enumerate() {
        let prefix = format!("spec.subAgents[{index}]");
        if !is_dns_label(&sub_agent.name) {
            problems.push((format!("{prefix}.name"), name_problem(&sub_agent.name)));
        } else if !names.insert(sub_agent.name.clone()) {
            problems.push((
                format!("{prefix}.name"),
                format!("duplicate sub-agent name {:?}", sub_agent.name),
            ));
        }
        if sub_agent.instructions.trim().is_empty() {
            problems.push((
                format!("{prefix}.instructions"),
                "instructions must not be empty".into(),
            ));
        }
        if let Some(model) = &sub_agent.model {
            validate_model(model, &format!("{prefix}.model"), problems);
        }
        if let Some(tools) = &sub_agent.tools {
            validate_tools(tools, &format!("{prefix}.tools"), problems);
        }
    }
    for name in spec.env.keys() {
        if !is_env_name(name) {
            problems.push((
                format!("spec.env.{name}"),
                format!("{name:?} is not a valid variable name: use letters, digits and _, not starting with a digit"),
            ));
        }
    }
}

/// `spec.approval`: each entry names a tool as the model sees it (a built-in, `server__tool`),
/// every tool of a server (`server__*`) or every tool (`*`); no other pattern is accepted, so
/// nothing the user meant to guard runs unguarded because a pattern was not understood.
fn validate_approval(
    spec: &AgentSpec,
    approval: &ApprovalSpec,
    problems: &mut Vec<(String, String)>,
) {
    if approval.tools.is_empty() {
        problems.push((
            "spec.approval.tools".into(),
            "list at least one tool (a built-in such as `execute`, `server__tool`, `server__*` or `*`), \
             or remove spec.approval"
                .into(),
        ));
    }
    for (index, tool) in approval.tools.iter().enumerate() {
        let field = format!("spec.approval.tools[{index}]");
        if tool == "*" {
            continue;
        }
        match tool.split_once("__") {
            Some((server, rest)) => {
                let tool_ok = rest == "*"
                    || (!rest.is_empty()
                        && rest
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                if !is_dns_label(server) || !tool_ok {
                    problems.push((
                        field,
                        format!(
                            "{tool:?} is not a tool pattern: expected `server__tool` or `server__*` \
                             (an McpServer's name, two underscores, then a tool name or *)"
                        ),
                    ));
                } else if !spec.mcp_servers.iter().any(|listed| listed == server) {
                    problems.push((
                        field,
                        format!(
                            "{tool:?} names the McpServer `{server}`, which spec.mcpServers does \
                             not list: add it there, or remove this entry"
                        ),
                    ));
                }
            }
            None if tool.contains('*') => problems.push((
                field,
                format!(
                    "{tool:?} is not a tool pattern: `*` stands alone (every tool) or after \
                     `server__` (every tool of that server)"
                ),
            )),
            None if tool == "task" => {
                if spec.sub_agents.is_empty() {
                    problems.push((
                        field,
                        "`task` is the tool that hands work to sub-agents, which this agent does \
                         not have: declare spec.subAgents, or remove this entry"
                            .into(),
                    ));
                }
            }
            None if tool == "execute" => {
                if !spec.shell.as_ref().is_some_and(|shell| shell.enabled) {
                    problems.push((
                        field,
                        "`execute` is the shell tool, which this agent does not have: set \
                         spec.shell.enabled: true, or remove this entry"
                            .into(),
                    ));
                }
            }
            None => {
                if !BUILTIN_TOOLS.contains(&tool.as_str()) {
                    let hint = suggest(tool, BUILTIN_TOOLS.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    problems.push((
                        field,
                        format!(
                            "unknown built-in tool `{tool}`{hint}; expected one of {}, execute, \
                             task, or an MCP tool as `server__tool`",
                            BUILTIN_TOOLS.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    if approval.timeout_seconds == Some(0) {
        problems.push((
            "spec.approval.timeoutSeconds".into(),
            "timeoutSeconds must be at least 1".into(),
        ));
    }
}

fn validate_model(model: &ModelSpec, prefix: &str, problems: &mut Vec<(String, String)>) {
    if let Some(temperature) = model.temperature
        && !(0.0..=2.0).contains(&temperature)
    {
        problems.push((
            format!("{prefix}.temperature"),
            format!("temperature {temperature} is out of range: expected 0 to 2"),
        ));
    }
    if model.max_tokens == Some(0) {
        problems.push((
            format!("{prefix}.maxTokens"),
            "maxTokens must be at least 1".into(),
        ));
    }
    if let Some(name) = &model.name
        && name.trim().is_empty()
    {
        problems.push((
            format!("{prefix}.name"),
            "the model name must not be empty".into(),
        ));
    }
    if let Some(window) = model.context_window
        && window < CONTEXT_WINDOW_MIN
    {
        problems.push((
            format!("{prefix}.contextWindow"),
            format!(
                "contextWindow {window} is too small: expected at least {CONTEXT_WINDOW_MIN} tokens"
            ),
        ));
    }
}

fn validate_tools(tools: &[String], prefix: &str, problems: &mut Vec<(String, String)>) {
    for (index, tool) in tools.iter().enumerate() {
        if !BUILTIN_TOOLS.contains(&tool.as_str()) {
            let hint = suggest(tool, BUILTIN_TOOLS.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            problems.push((
                format!("{prefix}[{index}]"),
                format!(
                    "unknown built-in tool `{tool}`{hint}; expected one of {}",
                    BUILTIN_TOOLS.join(", ")
                ),
            ));
        }
    }
}

fn validate_mcp(spec: &McpServerSpec, problems: &mut Vec<(String, String)>) {
    match (&spec.stdio, &spec.http) {
        (Some(_), Some(_)) => problems.push((
            "spec".into(),
            "both `stdio` and `http` are set: an MCP server has exactly one transport".into(),
        )),
        (None, None) => problems.push((
            "spec".into(),
            "no transport: set exactly one of `stdio` (command, args, env) or `http` (url, headers)"
                .into(),
        )),
        (Some(stdio), None) => {
            if stdio.command.trim().is_empty() {
                problems.push(("spec.stdio.command".into(), "the command must not be empty".into()));
            }
            for (name, value) in &stdio.env {
                if !is_env_name(name) {
                    problems.push((
                        format!("spec.stdio.env.{name}"),
                        format!("{name:?} is not a valid variable name: use letters, digits and _, not starting with a digit"),
                    ));
                }
                if let Err(error) = crate::variables::references(value) {
                    problems.push((format!("spec.stdio.env.{name}"), error.to_string()));
                }
            }
            if let Some(cwd) = &stdio.cwd {
                let path = std::path::Path::new(cwd);
                let escapes = path.is_absolute()
                    || path
                        .components()
                        .any(|part| matches!(part, std::path::Component::ParentDir));
                if escapes {
                    problems.push((
                        "spec.stdio.cwd".into(),
                        format!("{cwd:?} is not a path inside the session workspace: give a relative path without `..`"),
                    ));
                }
            }
        }
        (None, Some(http)) => {
            if !(http.url.starts_with("http://") || http.url.starts_with("https://")) {
                problems.push((
                    "spec.http.url".into(),
                    format!("{:?} is not an http:// or https:// URL", http.url),
                ));
            }
            for (name, value) in &http.headers {
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    problems.push((
                        format!("spec.http.headers.{name}"),
                        format!("{name:?} is not a valid HTTP header name"),
                    ));
                }
                if let Err(error) = crate::variables::references(value) {
                    problems.push((format!("spec.http.headers.{name}"), error.to_string()));
                }
            }
        }
    }
    for (field, value) in [
        ("startupTimeoutSeconds", spec.startup_timeout_seconds),
        ("toolTimeoutSeconds", spec.tool_timeout_seconds),
    ] {
        if let Some(seconds) = value
            && !(1..=86_400).contains(&seconds)
        {
            problems.push((
                format!("spec.{field}"),
                format!("{field} {seconds} is out of range: expected 1 to 86400"),
            ));
        }
    }
}

fn name_problem(name: &str) -> String {
    if name.is_empty() {
        "the name must not be empty".into()
    } else if name.len() > 63 {
        format!(
            "the name is {} characters long: at most 63 are allowed",
            name.len()
        )
    } else {
        format!(
            "{name:?} is not a valid name: use lowercase letters, digits and '-', starting and \
             ending with a letter or digit (like `my-agent`)"
        )
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
