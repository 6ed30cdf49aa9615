//! Loop detection: a model that calls the same tool with the same arguments again and again
//! is warned, then stopped.
//!
//! The sequence judged is every tool call of the conversation in order (the `tool_calls` of
//! its assistant messages, across turns), whether the calls succeeded or not: a call that
//! keeps succeeding with the same answer is as stuck as one that keeps failing. Two calls are
//! the same when their names are equal and their arguments are equal as JSON values (object
//! keys in any order). When a call is the [`WARN_AT`]th same call in a row or more, the model
//! reads [`warning`] after its result; the [`LOOP_AT`]th is not run: the run fails before it,
//! with the reason [`Repeat::Loop`] carries. A call another one interrupts starts the count
//! again.
//!
//! Pure: the conversation in, a verdict out; the runner decides what to do with it.

use stigmer_llm::{Message, ToolCall};

/// The same call this many times in a row: the model is warned (in the call's result).
pub const WARN_AT: usize = 3;
/// The same call this many times in a row: the run fails before the call runs.
pub const LOOP_AT: usize = 5;

/// What to do with a tool call, given the calls before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Run it: fewer than [`WARN_AT`] same calls in a row.
    Fresh,
    /// Run it, then append [`warning`]`(name, count)` to its result: it is the `count`th same
    /// call in a row.
    Warn { count: usize },
    /// Do not run it: the run fails with `reason`.
    Loop { reason: String },
}

/// The verdict on `turn_calls[index]`, the call about to run. `conversation` is everything
/// before the answer that holds `turn_calls` (the whole conversation as stored, not a
/// compacted view: a summary holds no calls), and the calls of that answer before `index`
/// count too.
pub fn verdict(conversation: &[Message], turn_calls: &[ToolCall], index: usize) -> Repeat {
    let Some(call) = turn_calls.get(index) else {
        return Repeat::Fresh;
    };
    let earlier = conversation
        .iter()
        .flat_map(|message| match message {
            Message::Assistant { tool_calls, .. } => tool_calls.as_slice(),
            _ => &[],
        })
        .chain(&turn_calls[..index]);
    // The length of the run of same calls that ends with this one.
    let mut count = 1;
    for before in earlier {
        if same(before, call) {
            count += 1;
        } else {
            count = 1;
        }
    }
    judge(&call.name, count)
}

/// [`verdict`] for every call of the answer, in call order.
pub fn verdicts(conversation: &[Message], turn_calls: &[ToolCall]) -> Vec<Repeat> {
    (0..turn_calls.len())
        .map(|index| verdict(conversation, turn_calls, index))
        .collect()
}

/// The reason of the first call of the answer that would make a loop: the run fails with it
/// before any of the answer's calls runs (so a retried step decides the same way).
pub fn first_loop(conversation: &[Message], turn_calls: &[ToolCall]) -> Option<String> {
    verdicts(conversation, turn_calls)
        .into_iter()
        .find_map(|repeat| match repeat {
            Repeat::Loop { reason } => Some(reason),
            _ => None,
        })
}

/// What the model reads after the result of the `count`th same call in a row.
pub fn warning(name: &str, count: usize) -> String {
    format!(
        "Warning: `{name}` has now been called {count} times in a row with the same arguments. \
         Repeating the call will not change its result: change your approach (other \
         arguments, another tool, or answer with what you have). The run stops if the same \
         call is made {LOOP_AT} times in a row."
    )
}

/// The tool result with [`warning`] appended when `repeat` says so; any other message, or
/// another verdict, is returned as it is. The warning is part of the stored result, so a
/// retried step reads the same text.
pub fn annotate(result: Message, repeat: &Repeat) -> Message {
    match (result, repeat) {
        (
            Message::Tool {
                call_id,
                name,
                mut content,
                images,
            },
            Repeat::Warn { count },
        ) => {
            if !content.is_empty() {
                content.push_str("\n\n");
            }
            content.push_str(&warning(&name, *count));
            Message::Tool {
                call_id,
                name,
                content,
                images,
            }
        }
        (result, _) => result,
    }
}

/// The failure reason of a loop.
pub fn loop_reason(name: &str) -> String {
    format!("loop detected: {name} called {LOOP_AT} times with the same arguments")
}

fn judge(name: &str, count: usize) -> Repeat {
    if count >= LOOP_AT {
        Repeat::Loop {
            reason: loop_reason(name),
        }
    } else if count >= WARN_AT {
        Repeat::Warn { count }
    } else {
        Repeat::Fresh
    }
}

/// Same name, and arguments equal as JSON values (`serde_json`'s object equality ignores key
/// order, with or without its `preserve_order` feature).
fn same(a: &ToolCall, b: &ToolCall) -> bool {
    a.name == b.name && a.arguments == b.arguments
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
        ToolCall {
            id: format!("c-{name}"),
            name: name.into(),
            arguments,
        }
    }

    fn answer(calls: Vec<ToolCall>) -> Message {
        Message::Assistant {
            text: String::new(),
            tool_calls: calls,
        }
    }

    fn result(name: &str, content: &str) -> Message {
        Message::Tool {
            call_id: format!("c-{name}"),
            name: name.into(),
            content: content.into(),
            images: Vec::new(),
        }
    }

    /// A conversation where the model made `calls`, one per turn, each answered.
    fn turns(calls: &[ToolCall]) -> Vec<Message> {
        let mut conversation = vec![Message::User {
            text: "list the files".into(),
        }];
        for call in calls {
            conversation.push(answer(vec![call.clone()]));
            conversation.push(result(&call.name, "a.txt"));
        }
        conversation
    }

    #[test]
    fn the_third_same_call_is_warned_and_the_fifth_ends_the_run() {
        let ls = call("ls", json!({"path": "."}));
        let expected = [
            Repeat::Fresh,
            Repeat::Fresh,
            Repeat::Warn { count: 3 },
            Repeat::Warn { count: 4 },
            Repeat::Loop {
                reason: "loop detected: ls called 5 times with the same arguments".into(),
            },
        ];
        for (before, expected) in expected.iter().enumerate() {
            let conversation = turns(&vec![ls.clone(); before]);
            assert_eq!(
                verdict(&conversation, std::slice::from_ref(&ls), 0),
                *expected,
                "after {before} same calls"
            );
        }
    }

    #[test]
    fn key_order_does_not_matter_and_other_arguments_start_again() {
        let a = call("grep", json!({"pattern": "x", "path": "src"}));
        let reordered = call("grep", json!({"path": "src", "pattern": "x"}));
        let other = call("grep", json!({"path": "src", "pattern": "y"}));
        let conversation = turns(&[a.clone(), reordered.clone(), a.clone(), a.clone()]);
        assert_eq!(
            verdict(&conversation, std::slice::from_ref(&reordered), 0),
            Repeat::Loop {
                reason: "loop detected: grep called 5 times with the same arguments".into()
            }
        );
        // Another call in between starts the count again.
        let conversation = turns(&[a.clone(), a.clone(), other.clone(), a.clone()]);
        assert_eq!(
            verdict(&conversation, std::slice::from_ref(&a), 0),
            Repeat::Fresh
        );
        // The same arguments under another name are another call.
        let read = call("read_file", json!({"path": "src", "pattern": "x"}));
        let conversation = turns(&[a.clone(), a.clone(), a.clone()]);
        assert_eq!(
            verdict(&conversation, std::slice::from_ref(&read), 0),
            Repeat::Fresh
        );
    }

    #[test]
    fn calls_earlier_in_the_same_answer_count() {
        let ls = call("ls", json!({}));
        let conversation = turns(&[ls.clone(), ls.clone()]);
        let answer = vec![ls.clone(), ls.clone(), ls.clone()];
        assert_eq!(
            verdicts(&conversation, &answer),
            [
                Repeat::Warn { count: 3 },
                Repeat::Warn { count: 4 },
                Repeat::Loop {
                    reason: loop_reason("ls")
                },
            ]
        );
        // The run fails before any of the answer's calls runs.
        assert_eq!(first_loop(&conversation, &answer), Some(loop_reason("ls")));
        assert_eq!(first_loop(&conversation, &answer[..2]), None);
        // Calls of one answer that alternate are no loop.
        let cat = call("read_file", json!({"path": "a.txt"}));
        let conversation = turns(&[ls.clone(), cat.clone(), ls.clone(), cat.clone()]);
        assert_eq!(
            verdicts(&conversation, &[ls.clone(), cat.clone()]),
            [Repeat::Fresh, Repeat::Fresh]
        );
        assert_eq!(
            verdict(&conversation, std::slice::from_ref(&ls), 1),
            Repeat::Fresh,
            "no such call"
        );
    }

    #[test]
    fn failed_and_successful_calls_count_alike_and_text_between_does_not_break_a_run() {
        let edit = call(
            "edit_file",
            json!({"path": "a.txt", "old": "x", "new": "y"}),
        );
        let conversation = vec![
            Message::User {
                text: "fix it".into(),
            },
            answer(vec![edit.clone()]),
            result("edit_file", "Error: `x` not found in a.txt"),
            answer(vec![edit.clone()]),
            result("edit_file", "Edited a.txt"),
            Message::User {
                text: "again".into(),
            },
            answer(vec![edit.clone()]),
            result("edit_file", "Error: `x` not found in a.txt"),
        ];
        assert_eq!(
            verdict(&conversation, std::slice::from_ref(&edit), 0),
            Repeat::Warn { count: 4 }
        );
    }

    #[test]
    fn the_warning_is_appended_to_the_result() {
        let warned = annotate(result("ls", "a.txt"), &Repeat::Warn { count: 3 });
        let Message::Tool { content, .. } = &warned else {
            panic!("{warned:?}");
        };
        assert_eq!(
            content,
            "a.txt\n\nWarning: `ls` has now been called 3 times in a row with the same \
             arguments. Repeating the call will not change its result: change your approach \
             (other arguments, another tool, or answer with what you have). The run stops if \
             the same call is made 5 times in a row."
        );
        assert_eq!(
            annotate(result("ls", "a.txt"), &Repeat::Fresh),
            result("ls", "a.txt")
        );
    }
}
