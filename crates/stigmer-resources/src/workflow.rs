//! Workflows: the full Serverless Workflow document a Workflow resource stands for, its
//! validation at apply (reported at manifest field paths), the agents its `call: agent` tasks
//! and the workflows its `run: workflow` tasks name, and plain Serverless Workflow files
//! applied as Workflows.

use crate::kind::Kind;
use crate::model::Resource;
use serde_json::{Map, Value};
use stigmer_workflow::validate::{agent_calls, normalise, validate, workflow_runs};

/// The DSL version a Workflow without `spec.document.dsl` is written in.
pub const DEFAULT_DSL: &str = "1.0.3";
/// The namespace of a Workflow without `spec.document.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The version of a Workflow without `spec.document.version`.
pub const DEFAULT_VERSION: &str = "0.0.1";

/// The full, normalised DSL document of a Workflow resource, as the runner runs it:
/// `document` completed with the defaults (`dsl` 1.0.3, `namespace` default, `name` =
/// `metadata.name`, `version` 0.0.1), the spec's other fields as they are (our `description`
/// left out), and the `tasks` alias rewritten to `do`.
pub fn workflow_document(resource: &Resource) -> Value {
    let mut info = Map::new();
    info.insert("dsl".into(), DEFAULT_DSL.into());
    info.insert("namespace".into(), DEFAULT_NAMESPACE.into());
    info.insert("version".into(), DEFAULT_VERSION.into());
    let mut document = Map::new();
    if let Some(spec) = resource.spec.as_object() {
        for (key, value) in spec {
            match key.as_str() {
                "description" => {}
                "document" => {
                    for (field, given) in value.as_object().into_iter().flatten() {
                        info.insert(field.clone(), given.clone());
                    }
                }
                _ => {
                    document.insert(key.clone(), value.clone());
                }
            }
        }
    }
    // The resource's name is the workflow's name (the spec may only repeat it).
    info.insert("name".into(), Value::String(resource.metadata.name.clone()));
    document.insert("document".into(), Value::Object(info));
    normalise(Value::Object(document))
}

/// Problems of a Workflow's spec, as `(field path, message)` pairs.
pub(crate) fn problems(resource: &Resource) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if let Some(name) = resource.spec.pointer("/document/name")
        && name.as_str() != Some(resource.metadata.name.as_str())
    {
        found.push((
            "spec.document.name".into(),
            format!(
                "spec.document.name {name} differs from metadata.name \"{}\": the workflow is \
                 named by metadata.name; remove spec.document.name",
                resource.metadata.name
            ),
        ));
    }
    let document = workflow_document(resource);
    let alias = uses_alias(resource);
    for error in validate(&document) {
        // `document.name` is metadata.name, which is checked on its own.
        if error.pointer == "/document/name" {
            continue;
        }
        found.push((field_path(&error.pointer, &document, alias), error.message));
    }
    found
}

/// The Agents a Workflow's `call: agent` tasks and the Workflows its `run: workflow` tasks
/// name literally, as `(kind, name, field path)`.
pub(crate) fn references(resource: &Resource) -> Vec<(Kind, String, String)> {
    let document = workflow_document(resource);
    let alias = uses_alias(resource);
    let agents = agent_calls(&document)
        .into_iter()
        .map(|call| (Kind::Agent, call.agent, call.pointer));
    let workflows = workflow_runs(&document)
        .into_iter()
        .map(|run| (Kind::Workflow, run.workflow, run.pointer));
    agents
        .chain(workflows)
        .map(|(kind, name, pointer)| (kind, name, field_path(&pointer, &document, alias)))
        .collect()
}

/// Whether the spec writes its task list as `tasks` (and normalising turned it into `do`).
fn uses_alias(resource: &Resource) -> bool {
    resource.spec.get("tasks").is_some() && resource.spec.get("do").is_none()
}

/// The manifest field path of a JSON pointer into the document:
/// `/do/0/fetch/then` → `spec.do[0].fetch.then`, or `spec.tasks[0].then` where the manifest
/// wrote the alias (the task `/do/0/fetch` itself is then the item `spec.tasks[0]`).
pub(crate) fn field_path(pointer: &str, document: &Value, alias: bool) -> String {
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut path = String::from("spec");
    let mut current = Some(document);
    let mut index = 0;
    while index < segments.len() {
        let segment = &segments[index];
        let is_item = current.is_some_and(Value::is_array);
        if alias && index == 0 && segment == "do" {
            path.push_str(".tasks");
            if let Some(item) = segments.get(1) {
                path.push_str(&format!("[{item}]"));
                current = document
                    .get("do")
                    .and_then(|list| list.get(item.parse::<usize>().unwrap_or(usize::MAX)))
                    .and_then(|item| item.get(segments.get(2)?));
                index = 3;
                continue;
            }
            current = document.get("do");
            index += 1;
            continue;
        }
        match (is_item, segment.parse::<usize>()) {
            (true, Ok(position)) => {
                path.push_str(&format!("[{position}]"));
                current = current.and_then(|value| value.get(position));
            }
            _ => {
                path.push('.');
                path.push_str(segment);
                current = current.and_then(|value| value.get(segment.as_str()));
            }
        }
        index += 1;
    }
    path
}

/// Whether a parsed YAML mapping is a plain Serverless Workflow document: `document.dsl` and
/// no `kind` or `apiVersion`.
pub(crate) fn is_plain(mapping: &serde_yaml_ng::Mapping) -> bool {
    let field = |name: &str| mapping.get(serde_yaml_ng::Value::from(name));
    field("kind").is_none()
        && field("apiVersion").is_none()
        && field("document")
            .and_then(|document| document.get("dsl"))
            .is_some()
}

/// A field path of the stored Workflow as written in a plain file: `spec.do[0]` → `do[0]`,
/// `metadata.name` → `document.name`.
pub(crate) fn plain_path(path: &str) -> String {
    if path == "metadata.name" {
        return "document.name".into();
    }
    match path.strip_prefix("spec") {
        Some("") => String::new(),
        Some(rest) if rest.starts_with('.') => rest[1..].to_owned(),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{API_VERSION, Metadata};
    use serde_json::json;

    fn workflow(spec: Value) -> Resource {
        Resource {
            api_version: API_VERSION.into(),
            kind: Kind::Workflow,
            metadata: Metadata {
                name: "flow".into(),
                ..Metadata::default()
            },
            spec,
            status: None,
        }
    }

    #[test]
    fn the_document_gets_its_defaults_and_the_alias_becomes_do() {
        let resource = workflow(json!({
            "description": "ours",
            "document": {"title": "A flow"},
            "tasks": [{"name": "greet", "set": {"hello": "world"}}],
        }));
        assert_eq!(
            workflow_document(&resource),
            json!({
                "document": {"dsl": "1.0.3", "namespace": "default", "name": "flow",
                             "version": "0.0.1", "title": "A flow"},
                "do": [{"greet": {"set": {"hello": "world"}}}],
            })
        );
    }

    #[test]
    fn pointers_become_field_paths() {
        let document = json!({"do": [{"fetch": {"call": "http", "with": {"headers": ["a"]}}}]});
        assert_eq!(
            field_path("/do/0/fetch/with/headers/0", &document, false),
            "spec.do[0].fetch.with.headers[0]"
        );
        assert_eq!(
            field_path("/do/0/fetch/then", &document, true),
            "spec.tasks[0].then"
        );
        assert_eq!(field_path("/do/0/fetch", &document, true), "spec.tasks[0]");
        assert_eq!(
            field_path("/do/0/fetch/with/headers/0", &document, true),
            "spec.tasks[0].with.headers[0]"
        );
        assert_eq!(field_path("/do/0", &document, true), "spec.tasks[0]");
        assert_eq!(field_path("", &document, false), "spec");
        assert_eq!(plain_path("spec.do[0].x"), "do[0].x");
        assert_eq!(plain_path("metadata.name"), "document.name");
    }

    #[test]
    fn literal_agent_and_workflow_names_are_references_and_expressions_are_not() {
        let resource = workflow(json!({"do": [
            {"ask": {"call": "agent", "with": {"agent": "reviewer", "message": "hi"}}},
            {"loop": {"for": {"in": ".items"}, "do": [
                {"again": {"call": "agent", "with": {"agent": "${ .who }", "message": "hi"}}},
                {"inner": {"call": "agent", "with": {"agent": "writer", "message": "hi"}}},
            ]}},
            {"child": {"run": {"workflow": {"namespace": "default", "name": "summarise", "version": "latest"}}}},
        ]}));
        assert_eq!(
            references(&resource),
            vec![
                (
                    Kind::Agent,
                    "reviewer".into(),
                    "spec.do[0].ask.with.agent".into()
                ),
                (
                    Kind::Agent,
                    "writer".into(),
                    "spec.do[1].loop.do[1].inner.with.agent".into()
                ),
                (
                    Kind::Workflow,
                    "summarise".into(),
                    "spec.do[2].child.run.workflow.name".into()
                ),
            ]
        );
    }
}
