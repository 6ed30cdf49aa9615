//! How deep a YAML document nests, found by one scan of its text before any parser builds it,
//! so that a hostile document (100,000 levels) is refused at once instead of after a deep parse.
//!
//! The scan follows YAML's structure closely enough to count levels, not to parse: block
//! levels are the columns of open nodes (indentation, and each `- `/`? ` indicator on a line),
//! flow levels are open `[` and `{` outside quoted scalars and comments; block scalars (`|`,
//! `>`) are text. It may count a level too many in odd layouts, never one too few for a real
//! nesting, and manifests are shallow (a few levels), so the limit leaves ample room.

/// The deepest nesting a manifest document may have.
pub const MAX_DEPTH: usize = 64;

/// The 1-based (line, column) where `text` first nests deeper than `limit`, if it does.
pub fn too_deep(text: &str, limit: usize) -> Option<(usize, usize)> {
    // Columns of the open block nodes.
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    // Inside a block scalar: lines indented more than this are its text.
    let mut scalar_parent: Option<usize> = None;
    for (line_index, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let blank = bytes[indent..].iter().all(|b| b.is_ascii_whitespace());
        if let Some(parent) = scalar_parent {
            if blank || indent > parent {
                continue;
            }
            scalar_parent = None;
        }
        let mut at = indent;
        if quote.is_none() && flow == 0 {
            if blank || bytes[indent] == b'#' {
                continue;
            }
            while block.last().is_some_and(|&column| column >= indent) {
                block.pop();
            }
            // Each leading `- ` or `? ` opens a node inside the one before it.
            loop {
                block.push(at);
                if block.len() > limit {
                    return Some((line_index + 1, at + 1));
                }
                let indicator = matches!(bytes.get(at), Some(b'-' | b'?'))
                    && matches!(bytes.get(at + 1), None | Some(b' '));
                if !indicator {
                    break;
                }
                at += 1;
                while bytes.get(at) == Some(&b' ') {
                    at += 1;
                }
                if at >= bytes.len() {
                    break;
                }
            }
        }
        let mut previous: Option<u8> = None;
        let mut last_token: Option<u8> = None;
        let mut index = at;
        while index < bytes.len() {
            let byte = bytes[index];
            match quote {
                Some(b'"') => {
                    if byte == b'\\' {
                        index += 1;
                    } else if byte == b'"' {
                        quote = None;
                    }
                }
                Some(_) => {
                    if byte == b'\'' {
                        if bytes.get(index + 1) == Some(&b'\'') {
                            index += 1;
                        } else {
                            quote = None;
                        }
                    }
                }
                None => {
                    // In flow context a quote or bracket opens after a separator; in block
                    // context only where a value starts (at the start, or after `key: `):
                    // elsewhere it is part of a plain scalar (`it's [not] nesting`).
                    let token_start = if flow > 0 {
                        matches!(
                            previous,
                            None | Some(b' ' | b'\t' | b'[' | b'{' | b',' | b':')
                        )
                    } else {
                        matches!(last_token, None | Some(b':'))
                    };
                    match byte {
                        b'#' if matches!(previous, None | Some(b' ' | b'\t')) => break,
                        b'"' | b'\'' if token_start => quote = Some(byte),
                        b'[' | b'{' if flow > 0 || token_start => {
                            flow += 1;
                            if block.len() + flow > limit {
                                return Some((line_index + 1, index + 1));
                            }
                        }
                        b']' | b'}' if flow > 0 => flow -= 1,
                        _ => {}
                    }
                }
            }
            previous = Some(byte);
            if !byte.is_ascii_whitespace() {
                last_token = Some(byte);
            }
            index += 1;
        }
        if quote.is_none() && flow == 0 && opens_block_scalar(line) {
            scalar_parent = Some(indent);
        }
    }
    None
}

/// True when the line ends with a block scalar header (`|`, `>-`, `|+2`, …) before any
/// comment.
fn opens_block_scalar(line: &str) -> bool {
    let content = match line.find(" #") {
        Some(comment) => &line[..comment],
        None => line,
    };
    let last = content.trim_end().rsplit([' ', '\t']).next().unwrap_or("");
    let mut chars = last.chars();
    matches!(chars.next(), Some('|' | '>'))
        && chars.all(|c| matches!(c, '+' | '-' | '1'..='9'))
        && last.len() <= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_manifests_are_shallow() {
        let text = "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: x\n  \
                    labels: {team: a}\nspec:\n  instructions: |\n    Say hi.\n        Deeply \
                    indented text is text.\n  tools: [ls, \"read_file\"]\n  subAgents:\n    - \
                    name: y\n      instructions: >-\n        folded\n      model: {name: m}\n";
        assert_eq!(too_deep(text, 5), None);
        assert_eq!(too_deep(text, 4), Some((15, 14)));
        assert_eq!(too_deep(text, 3), Some((12, 7)));
    }

    #[test]
    fn brackets_in_text_are_not_levels() {
        let text = "a: 'it''s [ { ['\nb: \"[[[\\\"[\"\nc: x[y] # [[[\nd: it's [not] nesting\n";
        assert_eq!(too_deep(text, 1), None);
    }

    #[test]
    fn every_way_of_nesting_is_counted() {
        let flow = format!("a: {}", "[".repeat(10));
        assert_eq!(too_deep(&flow, 5), Some((1, 8)));
        let mappings = format!("a: {}", "{b: ".repeat(10));
        assert!(too_deep(&mappings, 5).is_some());
        let sequences = format!("{}x", "- ".repeat(10));
        assert_eq!(too_deep(&sequences, 5), Some((1, 11)));
        let indented: String = (0..10).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(too_deep(&indented, 5), Some((6, 6)));
        let across_lines = "a: [\n [\n  [\n   [\n";
        assert_eq!(too_deep(across_lines, 3), Some((3, 3)));
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_at_once() {
        for text in [
            "[".repeat(100_000),
            format!("a: {}", "{a: ".repeat(100_000)),
            "- ".repeat(100_000),
        ] {
            let started = std::time::Instant::now();
            assert!(too_deep(&text, MAX_DEPTH).is_some());
            assert!(started.elapsed() < std::time::Duration::from_millis(100));
        }
    }
}
