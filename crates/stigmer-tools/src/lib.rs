//! The built-in tools an agent gets: `write_todos` and the file tools `ls`, `read_file`,
//! `write_file`, `edit_file`, `glob` and `grep`, all confined to the session workspace (see
//! [`workspace`] for the confinement rules: links, hard links, special files, walks).
//!
//! A tool never fails the run: every problem (a bad argument, a missing file, a path outside
//! the workspace, a deadline passed) comes back as a [`ToolOutput`] with `is_error` set and a
//! message the model can read and act on.
//!
//! Every tool is bounded: it runs within a [`ToolBudget`] (a deadline and a cancellation flag
//! checked in every loop), reads at most [`READ_BYTE_LIMIT`] of a file (`grep` skips larger
//! files), and answers at most [`OUTPUT_LIMIT`] bytes, saying how to get the rest.

mod budget;
pub mod workspace;

pub use budget::{CancelOnDrop, Stopped, ToolBudget};
pub use workspace::{EntryKind, FileError, OutsideWorkspace, WalkEnd, Workspace};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use stigmer_llm::ToolSpec;

/// Names of the built-in tools, in the order they are offered (declared with the resource
/// model, which validates an agent's `tools` against them).
pub use stigmer_resources::BUILTIN_TOOLS;

/// Most lines `read_file` returns at once.
const READ_LIMIT: usize = 2000;
/// Most matches `grep` and entries `glob` report.
const MATCH_LIMIT: usize = 200;
/// Most entries `ls` reports.
const LIST_LIMIT: usize = 1000;
/// Most bytes of a tool's answer.
pub const OUTPUT_LIMIT: usize = 32 * 1024;
/// Most bytes `read_file` reads of a file, `edit_file` edits and `grep` searches in one file.
pub const READ_BYTE_LIMIT: u64 = 8 * 1024 * 1024;
/// Most characters of one line shown by `read_file` and `grep`.
const LINE_CHAR_LIMIT: usize = 2000;

/// One entry of the agent's todo list, as the model writes it: strict (an unknown status is a
/// tool error the model can fix), unlike the protocol's lenient `stigmer_proto::execution::Todo`
/// that clients read (an unknown status from a newer runner is shown, not refused).
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

/// Why a tool did not produce its answer.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Message(String),
    /// The model left out an argument; the text is what the model is told.
    #[error("missing string argument `{key}`")]
    MissingArgument { key: String },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

impl From<String> for ToolError {
    fn from(message: String) -> ToolError {
        ToolError::Message(message)
    }
}

impl From<OutsideWorkspace> for ToolError {
    fn from(error: OutsideWorkspace) -> ToolError {
        ToolError::File(FileError::Outside(error))
    }
}

/// Runs built-in tool `name` with `arguments` in `workspace`, within `budget`.
pub fn execute(
    workspace: &Workspace,
    name: &str,
    arguments: &Value,
    budget: &ToolBudget,
) -> ToolOutput {
    let result = match name {
        "write_todos" => return write_todos(arguments),
        "ls" => ls(workspace, arguments, budget),
        "read_file" => read_file(workspace, arguments, budget),
        "write_file" => write_file(workspace, arguments),
        "edit_file" => edit_file(workspace, arguments),
        "glob" => glob_files(workspace, arguments, budget),
        "grep" => grep(workspace, arguments, budget),
        other => Err(ToolError::Message(format!(
            "unknown tool `{other}`; available: {}",
            BUILTIN_TOOLS.join(", ")
        ))),
    };
    match result {
        Ok(content) => ToolOutput::ok(bound(content)),
        Err(ToolError::Stopped(stopped @ Stopped::Deadline { .. })) => ToolOutput::error(format!(
            "`{name}` {stopped}; narrow the path or pattern and try again"
        )),
        Err(ToolError::Stopped(stopped)) => ToolOutput::error(format!("`{name}` {stopped}")),
        Err(error) => ToolOutput::error(bound(error.to_string())),
    }
}

/// At most [`OUTPUT_LIMIT`] bytes (cut at a character boundary), with a note when cut.
fn bound(mut text: String) -> String {
    if text.len() <= OUTPUT_LIMIT {
        return text;
    }
    // Room for the note, so that the whole answer stays within the limit.
    let mut end = OUTPUT_LIMIT - 256;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let omitted = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(
        "\n… output cut at {OUTPUT_LIMIT} bytes ({omitted} more); ask for less at once"
    ));
    text
}

/// At most `limit` characters of `line`, marking what was cut.
fn cut_line(line: &str, limit: usize) -> String {
    match line.char_indices().nth(limit) {
        None => line.to_owned(),
        Some((end, _)) => format!("{}… (line cut)", &line[..end]),
    }
}

/// Lines of an answer, bounded in count and bytes; what does not fit is counted.
struct Listing {
    text: String,
    shown: usize,
    omitted: usize,
    max_lines: usize,
}

impl Listing {
    fn new(max_lines: usize) -> Listing {
        Listing {
            text: String::new(),
            shown: 0,
            omitted: 0,
            max_lines,
        }
    }

    /// Adds `line` if it fits; `false` once the listing is full.
    fn push(&mut self, line: &str) -> bool {
        if self.omitted == 0
            && self.shown < self.max_lines
            && self.text.len() + line.len() < OUTPUT_LIMIT - 256
        {
            if self.shown > 0 {
                self.text.push('\n');
            }
            self.text.push_str(line);
            self.shown += 1;
            true
        } else {
            self.omitted += 1;
            false
        }
    }
}

fn string_arg<'a>(arguments: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    arguments
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::MissingArgument {
            key: key.to_owned(),
        })
}

fn path_arg(workspace: &Workspace, arguments: &Value) -> Result<PathBuf, ToolError> {
    let given = arguments.get("path").and_then(Value::as_str).unwrap_or(".");
    Ok(workspace.relative(given)?)
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

fn ls(workspace: &Workspace, arguments: &Value, budget: &ToolBudget) -> Result<String, ToolError> {
    let path = path_arg(workspace, arguments)?;
    let (entries, total) = workspace.list(&path, LIST_LIMIT, budget)?;
    if entries.is_empty() {
        return Ok(format!("{} is empty", workspace.display(&path)));
    }
    let mut listing = Listing::new(LIST_LIMIT);
    for (name, kind) in &entries {
        let line = match kind {
            EntryKind::Directory => format!("{name}/"),
            EntryKind::File => name.clone(),
            EntryKind::Link => format!("{name} (symbolic link)"),
            EntryKind::Special => format!("{name} (special file)"),
        };
        listing.push(&line);
    }
    let mut out = listing.text;
    let omitted = total - listing.shown;
    if omitted > 0 {
        out.push_str(&format!(
            "\n… and {omitted} more entries; use glob with a pattern to find specific ones"
        ));
    }
    Ok(out)
}

fn read_file(
    workspace: &Workspace,
    arguments: &Value,
    budget: &ToolBudget,
) -> Result<String, ToolError> {
    let path = workspace.relative(string_arg(arguments, "path")?)?;
    let shown = workspace.display(&path);
    let (file, metadata) = workspace.open_file(&path)?;
    let mut bytes = Vec::with_capacity(metadata.len().min(READ_BYTE_LIMIT) as usize);
    file.take(READ_BYTE_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {shown}: {}", error.kind()))?;
    let partial = metadata.len() > READ_BYTE_LIMIT;
    budget.check()?;
    let text = String::from_utf8_lossy(&bytes);
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
    if text.is_empty() {
        return Ok(format!("{shown} is empty"));
    }
    let mut listing = Listing::new(limit);
    let total = text.lines().count();
    if offset > total {
        return Ok(format!(
            "{shown} has {total} lines; offset {offset} is past its end"
        ));
    }
    for (index, line) in text.lines().enumerate().skip(offset - 1) {
        if index % 4096 == 0 {
            budget.check()?;
        }
        if !listing.push(&format!(
            "{:>6}\t{}",
            index + 1,
            cut_line(line, LINE_CHAR_LIMIT)
        )) {
            break;
        }
    }
    let mut out = listing.text;
    let last = offset - 1 + listing.shown;
    if last < total {
        out.push_str(&format!(
            "\n… {} more lines; read on with offset {}",
            total - last,
            last + 1
        ));
    } else if partial {
        out.push_str(&format!(
            "\n… the file is {} bytes; only its first {READ_BYTE_LIMIT} bytes were read (use grep to find text further on)",
            metadata.len()
        ));
    }
    Ok(out)
}

fn write_file(workspace: &Workspace, arguments: &Value) -> Result<String, ToolError> {
    let path = workspace.relative(string_arg(arguments, "path")?)?;
    let content = string_arg(arguments, "content")?;
    workspace.write_file(&path, content.as_bytes())?;
    Ok(format!(
        "Wrote {} bytes to {}",
        content.len(),
        workspace.display(&path)
    ))
}

fn edit_file(workspace: &Workspace, arguments: &Value) -> Result<String, ToolError> {
    let path = workspace.relative(string_arg(arguments, "path")?)?;
    let old = string_arg(arguments, "old_string")?;
    let new = string_arg(arguments, "new_string")?;
    let replace_all = arguments
        .get("replace_all")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if old.is_empty() {
        return Err(ToolError::Message("`old_string` must not be empty".into()));
    }
    let shown = workspace.display(&path);
    let bytes = workspace.read_for_edit(&path, READ_BYTE_LIMIT)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{shown} is not UTF-8 text; edit_file only edits text"))?;
    let count = text.matches(old).count();
    if count == 0 {
        return Err(ToolError::Message(format!(
            "`old_string` was not found in {shown}; read the file and copy the text exactly"
        )));
    }
    if count > 1 && !replace_all {
        return Err(ToolError::Message(format!(
            "`old_string` occurs {count} times in {shown}; add surrounding text to make it unique, or set replace_all"
        )));
    }
    let updated = if replace_all {
        text.replace(old, new)
    } else {
        text.replacen(old, new, 1)
    };
    workspace.write_file(&path, updated.as_bytes())?;
    Ok(format!(
        "Replaced {count} occurrence{} in {shown}",
        if count == 1 { "" } else { "s" }
    ))
}

/// True for a glob component with a wildcard.
fn has_wildcard(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

fn glob_files(
    workspace: &Workspace,
    arguments: &Value,
    budget: &ToolBudget,
) -> Result<String, ToolError> {
    let given = string_arg(arguments, "pattern")?;
    let pattern_text = given.trim().trim_start_matches("./");
    if Path::new(pattern_text).is_absolute() || pattern_text.split('/').any(|part| part == "..") {
        return Err(ToolError::Message(format!(
            "the pattern {given:?} must stay inside the workspace"
        )));
    }
    let pattern = glob::Pattern::new(pattern_text)
        .map_err(|error| format!("invalid glob pattern {given:?}: {error}"))?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    // Walk only below the pattern's literal directories, and no deeper than it can match.
    let components: Vec<&str> = pattern_text.split('/').filter(|c| !c.is_empty()).collect();
    let literal = components
        .iter()
        .take_while(|component| !has_wildcard(component))
        .count()
        .min(components.len().saturating_sub(1));
    let start = workspace.relative(&components[..literal].join("/"))?;
    let max_depth = if components.contains(&"**") {
        usize::MAX
    } else {
        components.len()
    };
    match workspace.kind(&start) {
        Ok(EntryKind::Directory | EntryKind::Link) => {}
        Ok(_) => return Ok(format!("no files match {given}")),
        Err(FileError::Io {
            kind: std::io::ErrorKind::NotFound,
            ..
        }) => {
            return Ok(format!("no files match {given}"));
        }
        Err(error) => return Err(error.into()),
    }
    let mut found = Vec::new();
    let ended = workspace.walk(
        &start,
        budget,
        &mut |directory| directory.components().count() < max_depth,
        &mut |path, _kind| {
            if pattern.matches_path_with(path, options) {
                found.push(workspace.display(path));
            }
            Ok(())
        },
    )?;
    found.sort();
    let mut out = if found.is_empty() {
        format!("no files match {given}")
    } else {
        let mut listing = Listing::new(MATCH_LIMIT);
        for path in &found {
            listing.push(path);
        }
        let mut out = listing.text;
        if listing.omitted > 0 {
            out.push_str(&format!(
                "\n… and {} more; use a narrower pattern",
                listing.omitted
            ));
        }
        out
    };
    if ended == WalkEnd::EntryLimit {
        out.push_str(&format!(
            "\n… the search stopped after {} entries; use a narrower pattern",
            workspace::WALK_ENTRY_LIMIT
        ));
    }
    Ok(out)
}

/// Files `grep` did not search, by reason.
#[derive(Default)]
struct Skipped {
    large: usize,
    binary: usize,
    refused: usize,
}

fn grep(
    workspace: &Workspace,
    arguments: &Value,
    budget: &ToolBudget,
) -> Result<String, ToolError> {
    let pattern = string_arg(arguments, "pattern")?;
    let regex = regex::Regex::new(pattern)
        .map_err(|error| format!("invalid regular expression {pattern:?}: {error}"))?;
    let start = path_arg(workspace, arguments)?;
    let mut listing = Listing::new(MATCH_LIMIT);
    let mut skipped = Skipped::default();
    let mut search = |path: &Path, kind: EntryKind, named: bool| -> Result<(), ToolError> {
        match kind {
            EntryKind::File => {}
            EntryKind::Special => {
                skipped.refused += 1;
                return Ok(());
            }
            // Links are not followed.
            EntryKind::Directory | EntryKind::Link => return Ok(()),
        }
        let (file, metadata) = match workspace.open_file(path) {
            Ok(opened) => opened,
            // A file named by the model gets the reason; files met on the walk are skipped.
            Err(error) if named => return Err(error.into()),
            Err(_) => {
                skipped.refused += 1;
                return Ok(());
            }
        };
        if metadata.len() > READ_BYTE_LIMIT {
            skipped.large += 1;
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        if file.take(READ_BYTE_LIMIT).read_to_end(&mut bytes).is_err() {
            skipped.refused += 1;
            return Ok(());
        }
        if bytes[..bytes.len().min(8192)].contains(&0) {
            skipped.binary += 1;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&bytes);
        for (index, line) in text.lines().enumerate() {
            if index % 4096 == 0 {
                budget.check()?;
            }
            if regex.is_match(line) {
                listing.push(&format!(
                    "{}:{}: {}",
                    workspace.display(path),
                    index + 1,
                    cut_line(line, LINE_CHAR_LIMIT / 4)
                ));
            }
        }
        Ok(())
    };
    let ended = match workspace.kind(&start)? {
        EntryKind::Directory => {
            workspace.walk(&start, budget, &mut |_| true, &mut |path, kind| {
                search(path, kind, false)
            })?
        }
        EntryKind::Link if workspace.open_file(&start).is_err() => {
            workspace.walk(&start, budget, &mut |_| true, &mut |path, kind| {
                search(path, kind, false)
            })?
        }
        _ => {
            search(&start, EntryKind::File, true)?;
            WalkEnd::Complete
        }
    };
    let mut out = if listing.shown == 0 {
        format!("no matches for {pattern}")
    } else {
        listing.text
    };
    if listing.omitted > 0 {
        out.push_str(&format!(
            "\n… and {} more matches; narrow the pattern or the path",
            listing.omitted
        ));
    }
    if skipped.large > 0 {
        out.push_str(&format!(
            "\n… skipped {} files larger than {READ_BYTE_LIMIT} bytes",
            skipped.large
        ));
    }
    if skipped.binary > 0 {
        out.push_str(&format!("\n… skipped {} binary files", skipped.binary));
    }
    if skipped.refused > 0 {
        out.push_str(&format!(
            "\n… skipped {} files that cannot be read safely (hard-linked, special or unreadable)",
            skipped.refused
        ));
    }
    if ended == WalkEnd::EntryLimit {
        out.push_str(&format!(
            "\n… the search stopped after {} entries; give a narrower path",
            workspace::WALK_ENTRY_LIMIT
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ws: &Workspace, tool: &str, arguments: &Value) -> ToolOutput {
        execute(
            ws,
            tool,
            arguments,
            &ToolBudget::new(std::time::Duration::from_secs(60)),
        )
    }

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(&dir.path().join("session")).unwrap();
        (dir, workspace)
    }

    #[test]
    fn files_are_written_read_edited_listed_and_found() {
        let (_dir, ws) = workspace();
        let written = run(
            &ws,
            "write_file",
            &json!({"path": "src/main.rs", "content": "fn main() {\n    println!(\"hi\");\n}\n"}),
        );
        assert!(!written.is_error, "{written:?}");
        let read = run(&ws, "read_file", &json!({"path": "src/main.rs"}));
        assert_eq!(
            read.content,
            "     1\tfn main() {\n     2\t    println!(\"hi\");\n     3\t}"
        );
        let edited = run(
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
        assert_eq!(run(&ws, "ls", &json!({})).content, "src/");
        assert_eq!(run(&ws, "ls", &json!({"path": "src"})).content, "main.rs");
        assert_eq!(
            run(&ws, "glob", &json!({"pattern": "**/*.rs"})).content,
            "src/main.rs"
        );
        assert_eq!(
            run(&ws, "grep", &json!({"pattern": "print"})).content,
            "src/main.rs:2:     println!(\"hello\");"
        );
    }

    #[test]
    fn mistakes_come_back_as_readable_tool_errors() {
        let (_dir, ws) = workspace();
        run(
            &ws,
            "write_file",
            &json!({"path": "a.txt", "content": "x x"}),
        );
        let ambiguous = run(
            &ws,
            "edit_file",
            &json!({"path": "a.txt", "old_string": "x", "new_string": "y"}),
        );
        assert!(
            ambiguous.is_error && ambiguous.content.contains("occurs 2 times"),
            "{ambiguous:?}"
        );
        let all = run(
            &ws,
            "edit_file",
            &json!({"path": "a.txt", "old_string": "x", "new_string": "y", "replace_all": true}),
        );
        assert_eq!(all.content, "Replaced 2 occurrences in a.txt");
        let missing = run(&ws, "read_file", &json!({"path": "nope.txt"}));
        assert!(
            missing.is_error && missing.content.contains("nope.txt"),
            "{missing:?}"
        );
        let no_arg = run(&ws, "write_file", &json!({"path": "b.txt"}));
        assert!(
            no_arg.is_error && no_arg.content.contains("`content`"),
            "{no_arg:?}"
        );
        let bad_regex = run(&ws, "grep", &json!({"pattern": "("}));
        assert!(bad_regex.is_error);
        let unknown = run(&ws, "rm", &json!({}));
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
            let output = run(&ws, tool, &arguments);
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
        let output = run(
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
