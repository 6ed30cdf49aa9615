//! The built-in tools an agent gets: `write_todos` and the file tools `ls`, `read_file`,
//! `write_file`, `edit_file`, `glob` and `grep`, all confined to the session workspace.
//!
//! A tool never fails the run: every problem (a bad argument, a missing file, a path outside
//! the workspace) comes back as a [`ToolOutput`] with `is_error` set and a message the model
//! can read and act on.

mod workspace;

pub use workspace::{OutsideWorkspace, Workspace};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;
use stigmer_llm::ToolSpec;

/// Names of the built-in tools, in the order they are offered (declared with the resource
/// model, which validates an agent's `tools` against them).
pub use stigmer_resources::BUILTIN_TOOLS;

/// Most lines `read_file` returns at once.
const READ_LIMIT: usize = 2000;
/// Most matches `grep` and entries `glob` report.
const MATCH_LIMIT: usize = 200;

/// One entry of the agent's todo list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    pub content: String,
    #[serde(default)]
    pub status: TodoStatus,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    #[default]
    Pending,
    InProgress,
    Completed,
}

/// What a tool call produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// Text for the model.
    pub content: String,
    pub is_error: bool,
    /// The new todo list, when the tool was `write_todos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub todos: Option<Vec<Todo>>,
}

impl ToolOutput {
    fn ok(content: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: content.into(),
            is_error: false,
            todos: None,
        }
    }

    fn error(content: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: format!("Error: {}", content.into()),
            is_error: true,
            todos: None,
        }
    }
}

/// The specs of the built-in tools to offer: `selected` names (the agent's `tools`), or all
/// when `None`.
pub fn builtin_specs(selected: Option<&[String]>) -> Vec<ToolSpec> {
    BUILTIN_TOOLS
        .iter()
        .filter(|name| selected.is_none_or(|names| names.iter().any(|n| n == *name)))
        .map(|name| spec(name))
        .collect()
}

fn spec(name: &str) -> ToolSpec {
    let path = json!({"type": "string", "description": "Path relative to the workspace root"});
    let (description, parameters) = match name {
        "write_todos" => (
            "Replace your todo list. Use it to plan multi-step work and to mark progress.",
            json!({"type": "object", "properties": {"todos": {"type": "array", "items": {
                "type": "object", "properties": {
                    "content": {"type": "string"},
                    "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]}},
                "required": ["content"]}}}, "required": ["todos"]}),
        ),
        "ls" => (
            "List the entries of a directory in the workspace (directories end with /).",
            json!({"type": "object", "properties": {"path": path}}),
        ),
        "read_file" => (
            "Read a text file from the workspace, with line numbers. Use offset and limit for long files.",
            json!({"type": "object", "properties": {"path": path,
                "offset": {"type": "integer", "description": "First line, 1-based"},
                "limit": {"type": "integer", "description": "How many lines"}}, "required": ["path"]}),
        ),
        "write_file" => (
            "Create or overwrite a text file in the workspace (parent directories are created).",
            json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}},
                "required": ["path", "content"]}),
        ),
        "edit_file" => (
            "Replace exact text in a file. old_string must match exactly once unless replace_all is true.",
            json!({"type": "object", "properties": {"path": path,
                "old_string": {"type": "string"}, "new_string": {"type": "string"},
                "replace_all": {"type": "boolean"}}, "required": ["path", "old_string", "new_string"]}),
        ),
        "glob" => (
            "Find files in the workspace by glob pattern, e.g. **/*.rs.",
            json!({"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]}),
        ),
        _ => (
            "Search file contents in the workspace with a regular expression; answers path:line: text.",
            json!({"type": "object", "properties": {"pattern": {"type": "string"}, "path": path},
                "required": ["pattern"]}),
        ),
    };
    ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    }
}

/// Runs built-in tool `name` with `arguments` in `workspace`.
pub fn execute(workspace: &Workspace, name: &str, arguments: &Value) -> ToolOutput {
    let result = match name {
        "write_todos" => return write_todos(arguments),
        "ls" => ls(workspace, arguments),
        "read_file" => read_file(workspace, arguments),
        "write_file" => write_file(workspace, arguments),
        "edit_file" => edit_file(workspace, arguments),
        "glob" => glob_files(workspace, arguments),
        "grep" => grep(workspace, arguments),
        other => Err(format!(
            "unknown tool `{other}`; available: {}",
            BUILTIN_TOOLS.join(", ")
        )),
    };
    match result {
        Ok(content) => ToolOutput::ok(content),
        Err(message) => ToolOutput::error(message),
    }
}

fn string_arg<'a>(arguments: &'a Value, key: &str) -> Result<&'a str, String> {
    arguments
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string argument `{key}`"))
}

fn resolve(workspace: &Workspace, path: &str) -> Result<std::path::PathBuf, String> {
    workspace.resolve(path).map_err(|error| error.to_string())
}

fn write_todos(arguments: &Value) -> ToolOutput {
    let Some(value) = arguments.get("todos") else {
        return ToolOutput::error("missing argument `todos` (a list of {content, status})");
    };
    match serde_json::from_value::<Vec<Todo>>(value.clone()) {
        Ok(todos) => {
            let done = todos
                .iter()
                .filter(|t| t.status == TodoStatus::Completed)
                .count();
            ToolOutput {
                content: format!(
                    "Updated the todo list: {} items, {done} completed.",
                    todos.len()
                ),
                is_error: false,
                todos: Some(todos),
            }
        }
        Err(error) => ToolOutput::error(format!(
            "`todos` must be a list of {{content, status: pending|in_progress|completed}}: {error}"
        )),
    }
}

fn ls(workspace: &Workspace, arguments: &Value) -> Result<String, String> {
    let path = resolve(
        workspace,
        arguments.get("path").and_then(Value::as_str).unwrap_or("."),
    )?;
    let entries = fs_err::read_dir(&path)
        .map_err(|error| format!("cannot list {}: {}", workspace.display(&path), error.kind()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return Ok(format!("{} is empty", workspace.display(&path)));
    }
    Ok(names.join("\n"))
}

fn read_file(workspace: &Workspace, arguments: &Value) -> Result<String, String> {
    let path = resolve(workspace, string_arg(arguments, "path")?)?;
    let text = fs_err::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {}", workspace.display(&path), error.kind()))?;
    let offset = arguments
        .get("offset")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1) as usize;
    let limit = arguments
        .get("limit")
        .and_then(Value::as_u64)
        .map(|l| l as usize)
        .unwrap_or(READ_LIMIT)
        .min(READ_LIMIT);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return Ok(format!("{} is empty", workspace.display(&path)));
    }
    let shown: Vec<String> = lines
        .iter()
        .enumerate()
        .skip(offset - 1)
        .take(limit)
        .map(|(index, line)| format!("{:>6}\t{line}", index + 1))
        .collect();
    let mut out = shown.join("\n");
    let last = offset - 1 + shown.len();
    if last < lines.len() {
        out.push_str(&format!(
            "\n… {} more lines; read on with offset {}",
            lines.len() - last,
            last + 1
        ));
    }
    Ok(out)
}

fn write_file(workspace: &Workspace, arguments: &Value) -> Result<String, String> {
    let path = resolve(workspace, string_arg(arguments, "path")?)?;
    let content = string_arg(arguments, "content")?;
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).map_err(|error| error.to_string())?;
    }
    fs_err::write(&path, content).map_err(|error| {
        format!(
            "cannot write {}: {}",
            workspace.display(&path),
            error.kind()
        )
    })?;
    Ok(format!(
        "Wrote {} bytes to {}",
        content.len(),
        workspace.display(&path)
    ))
}

fn edit_file(workspace: &Workspace, arguments: &Value) -> Result<String, String> {
    let path = resolve(workspace, string_arg(arguments, "path")?)?;
    let old = string_arg(arguments, "old_string")?;
    let new = string_arg(arguments, "new_string")?;
    let replace_all = arguments
        .get("replace_all")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if old.is_empty() {
        return Err("`old_string` must not be empty".into());
    }
    let shown = workspace.display(&path);
    let text = fs_err::read_to_string(&path)
        .map_err(|error| format!("cannot read {shown}: {}", error.kind()))?;
    let count = text.matches(old).count();
    if count == 0 {
        return Err(format!(
            "`old_string` was not found in {shown}; read the file and copy the text exactly"
        ));
    }
    if count > 1 && !replace_all {
        return Err(format!(
            "`old_string` occurs {count} times in {shown}; add surrounding text to make it unique, or set replace_all"
        ));
    }
    let updated = if replace_all {
        text.replace(old, new)
    } else {
        text.replacen(old, new, 1)
    };
    fs_err::write(&path, updated)
        .map_err(|error| format!("cannot write {shown}: {}", error.kind()))?;
    Ok(format!(
        "Replaced {count} occurrence{} in {shown}",
        if count == 1 { "" } else { "s" }
    ))
}

fn glob_files(workspace: &Workspace, arguments: &Value) -> Result<String, String> {
    let pattern = string_arg(arguments, "pattern")?;
    if Path::new(pattern).is_absolute() || pattern.split('/').any(|part| part == "..") {
        return Err(format!(
            "the pattern {pattern:?} must stay inside the workspace"
        ));
    }
    let full = workspace.root().join(pattern);
    let paths = glob::glob(&full.to_string_lossy())
        .map_err(|error| format!("invalid glob pattern {pattern:?}: {error}"))?;
    let mut found: Vec<String> = paths
        .flatten()
        .filter(|path| workspace.resolve(&path.to_string_lossy()).is_ok())
        .map(|path| workspace.display(&path))
        .collect();
    found.sort();
    if found.is_empty() {
        return Ok(format!("no files match {pattern}"));
    }
    let total = found.len();
    found.truncate(MATCH_LIMIT);
    let mut out = found.join("\n");
    if total > MATCH_LIMIT {
        out.push_str(&format!("\n… and {} more", total - MATCH_LIMIT));
    }
    Ok(out)
}

fn grep(workspace: &Workspace, arguments: &Value) -> Result<String, String> {
    let pattern = string_arg(arguments, "pattern")?;
    let regex = regex::Regex::new(pattern)
        .map_err(|error| format!("invalid regular expression {pattern:?}: {error}"))?;
    let start = resolve(
        workspace,
        arguments.get("path").and_then(Value::as_str).unwrap_or("."),
    )?;
    let mut matches = Vec::new();
    let mut pending = vec![start];
    let mut total = 0usize;
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            let Ok(entries) = fs_err::read_dir(&path) else {
                continue;
            };
            let mut children: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            children.sort();
            // Depth-first in name order: push in reverse so the first name is handled first.
            for child in children.into_iter().rev() {
                // Symbolic links are not followed: they could lead out of the workspace.
                if child.is_symlink() {
                    continue;
                }
                pending.push(child);
            }
            continue;
        }
        let Ok(text) = fs_err::read_to_string(&path) else {
            continue;
        };
        for (index, line) in text.lines().enumerate() {
            if regex.is_match(line) {
                total += 1;
                if matches.len() < MATCH_LIMIT {
                    matches.push(format!(
                        "{}:{}: {line}",
                        workspace.display(&path),
                        index + 1
                    ));
                }
            }
        }
    }
    if matches.is_empty() {
        return Ok(format!("no matches for {pattern}"));
    }
    let mut out = matches.join("\n");
    if total > MATCH_LIMIT {
        out.push_str(&format!("\n… and {} more matches", total - MATCH_LIMIT));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(&dir.path().join("session")).unwrap();
        (dir, workspace)
    }

    #[test]
    fn files_are_written_read_edited_listed_and_found() {
        let (_dir, ws) = workspace();
        let written = execute(
            &ws,
            "write_file",
            &json!({"path": "src/main.rs", "content": "fn main() {\n    println!(\"hi\");\n}\n"}),
        );
        assert!(!written.is_error, "{written:?}");
        let read = execute(&ws, "read_file", &json!({"path": "src/main.rs"}));
        assert_eq!(
            read.content,
            "     1\tfn main() {\n     2\t    println!(\"hi\");\n     3\t}"
        );
        let edited = execute(
            &ws,
            "edit_file",
            &json!({"path": "src/main.rs", "old_string": "\"hi\"", "new_string": "\"hello\""}),
        );
        assert_eq!(edited.content, "Replaced 1 occurrence in src/main.rs");
        assert!(
            fs_err::read_to_string(ws.root().join("src/main.rs"))
                .unwrap()
                .contains("hello")
        );
        assert_eq!(execute(&ws, "ls", &json!({})).content, "src/");
        assert_eq!(
            execute(&ws, "ls", &json!({"path": "src"})).content,
            "main.rs"
        );
        assert_eq!(
            execute(&ws, "glob", &json!({"pattern": "**/*.rs"})).content,
            "src/main.rs"
        );
        assert_eq!(
            execute(&ws, "grep", &json!({"pattern": "print"})).content,
            "src/main.rs:2:     println!(\"hello\");"
        );
    }

    #[test]
    fn mistakes_come_back_as_readable_tool_errors() {
        let (_dir, ws) = workspace();
        execute(
            &ws,
            "write_file",
            &json!({"path": "a.txt", "content": "x x"}),
        );
        let ambiguous = execute(
            &ws,
            "edit_file",
            &json!({"path": "a.txt", "old_string": "x", "new_string": "y"}),
        );
        assert!(
            ambiguous.is_error && ambiguous.content.contains("occurs 2 times"),
            "{ambiguous:?}"
        );
        let all = execute(
            &ws,
            "edit_file",
            &json!({"path": "a.txt", "old_string": "x", "new_string": "y", "replace_all": true}),
        );
        assert_eq!(all.content, "Replaced 2 occurrences in a.txt");
        let missing = execute(&ws, "read_file", &json!({"path": "nope.txt"}));
        assert!(
            missing.is_error && missing.content.contains("nope.txt"),
            "{missing:?}"
        );
        let no_arg = execute(&ws, "write_file", &json!({"path": "b.txt"}));
        assert!(
            no_arg.is_error && no_arg.content.contains("`content`"),
            "{no_arg:?}"
        );
        let bad_regex = execute(&ws, "grep", &json!({"pattern": "("}));
        assert!(bad_regex.is_error);
        let unknown = execute(&ws, "rm", &json!({}));
        assert!(unknown.is_error && unknown.content.contains("unknown tool"));
    }

    #[test]
    fn path_traversal_is_refused_by_every_file_tool() {
        let (dir, ws) = workspace();
        fs_err::write(dir.path().join("secret.txt"), "top secret").unwrap();
        for (tool, arguments) in [
            ("read_file", json!({"path": "../secret.txt"})),
            ("write_file", json!({"path": "../evil.txt", "content": "x"})),
            (
                "edit_file",
                json!({"path": "/etc/hostname", "old_string": "a", "new_string": "b"}),
            ),
            ("ls", json!({"path": ".."})),
            ("grep", json!({"pattern": "secret", "path": "../"})),
            ("glob", json!({"pattern": "../*.txt"})),
        ] {
            let output = execute(&ws, tool, &arguments);
            assert!(output.is_error, "{tool} escaped: {output:?}");
            assert!(
                output.content.contains("outside the workspace")
                    || output.content.contains("inside the workspace"),
                "{tool}: {output:?}"
            );
        }
        assert!(!dir.path().join("evil.txt").exists());
    }

    #[test]
    fn todos_are_parsed_and_returned() {
        let (_dir, ws) = workspace();
        let output = execute(
            &ws,
            "write_todos",
            &json!({"todos": [
            {"content": "read the file", "status": "completed"},
            {"content": "fix the bug", "status": "in_progress"},
            {"content": "write tests"}]}),
        );
        assert!(!output.is_error);
        let todos = output.todos.unwrap();
        assert_eq!(todos.len(), 3);
        assert_eq!(todos[2].status, TodoStatus::Pending);
        assert_eq!(
            output.content,
            "Updated the todo list: 3 items, 1 completed."
        );
    }

    #[test]
    fn specs_follow_the_agent_selection() {
        assert_eq!(builtin_specs(None).len(), 7);
        let selected = builtin_specs(Some(&["ls".to_owned(), "grep".to_owned()]));
        let names: Vec<&str> = selected.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ls", "grep"]);
        assert!(selected.iter().all(|s| s.parameters["type"] == "object"));
    }
}
