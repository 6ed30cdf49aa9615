//! Finds the line and column of a field path (`spec.subAgents[1].tools[0]`) in a YAML document,
//! so that errors found after parsing still point at the text the user wrote.
//!
//! It follows block-style indentation, which is how manifests are written; for anything it
//! cannot follow (flow style, anchors) it returns the deepest enclosing field it found.

/// One step of a field path.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(position) => (&part[..position], &part[position..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(close) = rest.find(']') {
            // `get`: a key may hold a `]` before any `[` (`env.][KEN`), which is no index.
            if let Some(Ok(index)) = rest.get(1..close).map(str::parse) {
                out.push(Segment::Index(index));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// `(line, column)`, both 1-based, of `path` in `text`; `None` when not even the first key
/// is found.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    // The scope we search in: lines after `start` indented more than `parent_indent`.
    let mut start = 0usize;
    let mut parent_indent: Option<usize> = None;
    let mut found: Option<(usize, usize)> = None;
    for segment in segments(path) {
        let step = match segment {
            Segment::Key(key) => find_key(&lines, start, parent_indent, key),
            Segment::Index(index) => find_item(&lines, start, parent_indent, index),
        };
        match step {
            Some((line, indent, content_indent)) => {
                found = Some((line + 1, indent + 1));
                start = line;
                parent_indent = Some(content_indent);
            }
            None => break,
        }
    }
    found
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// Finds `key:` in the scope; returns (line index, column of the key, indent its children
/// must exceed).
fn find_key(
    lines: &[&str],
    start: usize,
    parent_indent: Option<usize>,
    key: &str,
) -> Option<(usize, usize, usize)> {
    // The key may sit on the scope line itself after a list dash (`- name: x`).
    let mut first = start;
    if parent_indent.is_some()
        && let Some(line) = lines.get(start)
        && let Some(column) = dash_key_column(line, key)
    {
        return Some((start, column, column.saturating_sub(1)));
    } else if parent_indent.is_some() {
        first = start + 1;
    }
    let mut scope_indent: Option<usize> = None;
    for (index, line) in lines.iter().enumerate().skip(first) {
        if is_blank_or_comment(line) {
            continue;
        }
        let indent = indent_of(line);
        if let Some(parent) = parent_indent
            && indent <= parent
            && !(line.trim_start().starts_with("- ") && indent == parent)
        {
            break;
        }
        let scope = *scope_indent.get_or_insert(indent);
        if indent < scope {
            break;
        }
        if indent == scope {
            let content = line.trim_start();
            if content.starts_with(&format!("{key}:"))
                || content.starts_with(&format!("\"{key}\":"))
            {
                return Some((index, indent, indent));
            }
        }
    }
    None
}

/// Column of `key` when `line` is `- key: ...` (the first key of a list item).
fn dash_key_column(line: &str, key: &str) -> Option<usize> {
    let content = line.trim_start();
    let after_dash = content.strip_prefix("- ")?;
    let after = after_dash.trim_start();
    if after.starts_with(&format!("{key}:")) {
        Some(line.len() - after.len())
    } else {
        None
    }
}

/// Finds the `index`-th `- ` item in the scope.
fn find_item(
    lines: &[&str],
    start: usize,
    parent_indent: Option<usize>,
    index: usize,
) -> Option<(usize, usize, usize)> {
    let mut seen = 0usize;
    let mut item_indent: Option<usize> = None;
    for (line_index, line) in lines.iter().enumerate().skip(start + 1) {
        if is_blank_or_comment(line) {
            continue;
        }
        let indent = indent_of(line);
        let is_item = line.trim_start().starts_with("- ") || line.trim() == "-";
        if let Some(parent) = parent_indent
            && (indent < parent || (indent == parent && !is_item))
        {
            break;
        }
        if !is_item {
            continue;
        }
        let expected = *item_indent.get_or_insert(indent);
        if indent != expected {
            continue;
        }
        if seen == index {
            // Children of the item's first key are indented past the dash.
            return Some((line_index, indent, indent));
        }
        seen += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  tools:
    - ls
    - grepp
  subAgents:
    - name: helper
      instructions: x
      mcpServers:
        - files
    - name: other
      instructions: y
      skills: [a, b]
";

    #[test]
    fn paths_are_found_in_block_yaml() {
        assert_eq!(locate(DOC, "kind"), Some((2, 1)));
        assert_eq!(locate(DOC, "metadata.name"), Some((4, 3)));
        assert_eq!(locate(DOC, "spec.tools[1]"), Some((9, 5)));
        assert_eq!(locate(DOC, "spec.subAgents[0].name"), Some((11, 7)));
        assert_eq!(
            locate(DOC, "spec.subAgents[0].mcpServers[0]"),
            Some((14, 9))
        );
        assert_eq!(locate(DOC, "spec.subAgents[1].instructions"), Some((16, 7)));
        // Flow style: the enclosing key is as close as it gets.
        assert_eq!(locate(DOC, "spec.subAgents[1].skills[1]"), Some((17, 7)));
        assert_eq!(locate(DOC, "spec.missing"), Some((5, 1)));
        assert_eq!(locate(DOC, "nothing"), None);
    }

    #[test]
    fn stray_brackets_in_a_path_are_no_index() {
        assert_eq!(
            segments("spec.env.0[]]"),
            [Segment::Key("spec"), Segment::Key("env"), Segment::Key("0")]
        );
        assert_eq!(segments("a[2]]"), [Segment::Key("a"), Segment::Index(2)]);
    }
}
