//! Context compaction: before a model turn whose prompt nears the model's context window, the
//! older messages are folded into a summary, so that a long run goes on instead of failing
//! (or, with Ollama, silently losing the start of its prompt).
//!
//! The prompt's size is estimated ([`estimate_tokens`]: a token per four characters, a few
//! per message, the tool definitions too; or, when known, what the provider counted for the
//! last turn plus the estimate of what came after). Above [`COMPACT_AT_PERCENT`] of the window,
//! [`plan`] chooses what to fold: the oldest messages, as many as it takes to bring the prompt
//! down to [`TARGET_PERCENT`] (so that the next turns do not compact again at once). It never
//! folds the system prompt, the last user message or the unfinished exchange (the answer whose
//! tool calls just ran, with their results), and never separates a tool call from its result:
//! the cut falls only before a message that is not a tool result, so an answer with tool calls
//! and the results answering it are folded together or kept together. A summarizing model call
//! ([`summary_request`]) writes the summary; the full history goes to
//! `.stigmer/history/<execution>.md` in the workspace ([`history_markdown`],
//! [`write_history`]), and the summary message names that file ([`summary_message`]) so that
//! the model can read a detail back with `read_file`.
//!
//! A compaction is kept as a small record ([`Compaction`]: how many leading messages of the
//! conversation the summary covers, which of them stay as they are, the summary and the
//! history's path) stored with the execution, so that later turns apply it
//! ([`Prompt::messages`], [`view`]) rather than compact again. The conversation in the API
//! server is never rewritten: the record is a view over it.
//!
//! A prompt that exceeds the window even after compaction is never sent: [`plan`] (and
//! [`check`], for the prompt finally built) return [`ContextError`], which says how big the
//! prompt is, what the window is, and what to do.
//!
//! Everything here is pure except [`write_history`].

use crate::api::MessagePlace;
use serde::{Deserialize, Serialize};
use std::path::Path;
use stigmer_llm::{Message, ToolSpec};

/// Above this share of the window (in percent) the prompt is compacted (deepagents' 85 %).
pub const COMPACT_AT_PERCENT: u64 = 85;
/// What a compaction aims for (in percent of the window): room for several turns before the
/// next one.
pub const TARGET_PERCENT: u64 = 50;
/// Tokens counted per message besides its text (role, separators).
pub const MESSAGE_OVERHEAD: u64 = 4;
/// Tokens counted per tool call or tool definition besides its JSON.
pub const TOOL_OVERHEAD: u64 = 8;
/// Tokens counted per image of a tool result: about what Anthropic and OpenAI charge for an
/// image of a megapixel; a model that does not see it reads a short placeholder instead.
pub const IMAGE_TOKENS: u64 = 1_600;
/// The key of the record under the execution's state (`PutExecutionState`).
pub const STATE_KEY: &str = "compaction";
/// The directory of the histories, relative to the workspace.
pub const HISTORY_DIR: &str = ".stigmer/history";

/// The history file of an execution, relative to the workspace:
/// `.stigmer/history/<execution>.md` (characters other than letters, digits, `-` and `_`
/// replaced by `_`).
pub fn history_path(execution_id: &str) -> String {
    let name: String = execution_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    let name = if name.is_empty() {
        "execution".to_owned()
    } else {
        name
    };
    format!("{HISTORY_DIR}/{name}.md")
}

/// A token per four characters, rounded up.
fn text_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The estimated tokens of one message.
pub fn message_tokens(message: &Message) -> u64 {
    MESSAGE_OVERHEAD
        + match message {
            Message::System { text } | Message::User { text } => text_tokens(text),
            Message::Assistant { text, tool_calls } => {
                text_tokens(text)
                    + tool_calls
                        .iter()
                        .map(|call| {
                            TOOL_OVERHEAD
                                + text_tokens(&call.name)
                                + text_tokens(&call.id)
                                + text_tokens(&call.arguments.to_string())
                        })
                        .sum::<u64>()
            }
            Message::Tool {
                call_id,
                name,
                content,
                images,
            } => {
                text_tokens(call_id)
                    + text_tokens(name)
                    + text_tokens(content)
                    + IMAGE_TOKENS * images.len() as u64
            }
        }
}

/// The estimated tokens of the tool definitions.
pub fn tools_tokens(tools: &[ToolSpec]) -> u64 {
    tools
        .iter()
        .map(|tool| {
            TOOL_OVERHEAD
                + text_tokens(&tool.name)
                + text_tokens(&tool.description)
                + text_tokens(&tool.parameters.to_string())
        })
        .sum()
}

/// The estimated tokens of a prompt: its messages and its tool definitions.
pub fn estimate_tokens(messages: &[Message], tools: &[ToolSpec]) -> u64 {
    messages.iter().map(message_tokens).sum::<u64>() + tools_tokens(tools)
}

/// What the provider counted for the last turn's prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    /// How many messages of [`Prompt::messages`] (system prompt included) that prompt held.
    /// It no longer applies once a compaction changed the view.
    pub messages: usize,
    /// The input tokens the provider reported for it.
    pub input_tokens: u64,
}

/// A kept compaction: the summary stands for the first `through` messages of the
/// conversation (as the API server returns it whole, without the system prompt), except
/// those in `kept`, which stay as they are before it. Stored with the execution under
/// [`STATE_KEY`]; a later compaction replaces it (its summary covers the earlier one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compaction {
    /// The turn whose prompt was compacted; a record from a later turn (the workflow was
    /// reset to an earlier one) does not apply.
    pub turn: u32,
    /// How many leading messages of the conversation the summary covers.
    pub through: usize,
    /// Indexes (below `through`) of the messages kept as they are: the last user message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<usize>,
    /// The place of message `through - 1`, checked before the record is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_place: Option<Place>,
    pub summary: String,
    /// Relative to the workspace.
    pub history_path: String,
}

/// A message's place in its execution ([`MessagePlace`], serialisable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub turn: u32,
    pub index: u32,
}

impl From<MessagePlace> for Place {
    fn from(place: MessagePlace) -> Place {
        Place {
            turn: place.turn,
            index: place.index,
        }
    }
}

impl Compaction {
    /// Whether the record still describes the conversation whose messages have `places` (in
    /// order, as read) in `turn`: it covers no more messages than there are, its last one is
    /// at the place it names, and it comes from no later turn. A record that does not apply
    /// is ignored (the prompt is then judged whole, and compacted again when it must).
    pub fn applies_to(&self, places: &[MessagePlace], turn: u32) -> bool {
        if self.turn > turn || self.through == 0 || self.through > places.len() {
            return false;
        }
        if self.kept.iter().any(|&index| index >= self.through) {
            return false;
        }
        match self.last_place {
            Some(place) => Place::from(places[self.through - 1]) == place,
            None => true,
        }
    }
}

/// The conversation as the model reads it with `compaction` applied: the kept messages, the
/// summary, then the messages after those it covers. Without a record (or with one that
/// covers more than the conversation holds), the conversation itself.
pub fn view(conversation: &[Message], compaction: Option<&Compaction>) -> Vec<Message> {
    let Some(compaction) = compaction.filter(|c| c.through <= conversation.len()) else {
        return conversation.to_vec();
    };
    let mut messages: Vec<Message> = compaction
        .kept
        .iter()
        .filter_map(|&index| conversation.get(index).cloned())
        .collect();
    messages.push(summary_message(
        &compaction.summary,
        &compaction.history_path,
    ));
    messages.extend_from_slice(&conversation[compaction.through..]);
    messages
}

/// What a model turn would send.
#[derive(Clone, Copy, Debug)]
pub struct Prompt<'a> {
    pub system: &'a Message,
    /// The whole conversation in order, as stored (earlier executions of the session, then
    /// this one), followed by the results of the tool calls the step just ran.
    pub conversation: &'a [Message],
    /// The record in force ([`Compaction::applies_to`] checked).
    pub previous: Option<&'a Compaction>,
    pub tools: &'a [ToolSpec],
    /// What the provider counted for the last turn, when known.
    pub reported: Option<Reported>,
}

impl Prompt<'_> {
    /// The messages to send: the system prompt, then [`view`].
    pub fn messages(&self) -> Vec<Message> {
        let mut messages = vec![self.system.clone()];
        messages.extend(view(self.conversation, self.previous));
        messages
    }

    /// The estimated tokens of the prompt: [`estimate_tokens`], or, when the provider's count
    /// of the last turn is known and larger, that count plus the estimate of what came after.
    pub fn estimate(&self) -> u64 {
        let messages = self.messages();
        let estimated = estimate_tokens(&messages, self.tools);
        match self.reported {
            Some(reported) if reported.messages <= messages.len() => estimated.max(
                reported.input_tokens
                    + messages[reported.messages..]
                        .iter()
                        .map(message_tokens)
                        .sum::<u64>(),
            ),
            _ => estimated,
        }
    }
}

/// What to fold, as [`plan`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The summary will stand for the first `through` messages of the conversation...
    pub through: usize,
    /// ...except these (the last user message, when it is among them).
    pub kept: Vec<usize>,
    /// Messages of the prompt the summary replaces (an earlier summary counts as one).
    pub folded: usize,
    /// Estimated prompt tokens now.
    pub tokens_before: u64,
    /// Estimated prompt tokens after, with a summary of `summary_tokens`.
    pub tokens_after: u64,
    /// The most tokens the summary may take: the summarizing call's `max_tokens`.
    pub summary_tokens: u64,
    pub window: u64,
}

/// A prompt that does not fit the model's context window, even compacted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the prompt does not fit the model's context window even after compaction: it needs about \
     {needed} tokens ({fixed} for the system prompt and tool definitions, {recent} for the last \
     user message and the latest tool calls with their results), and the window is {window} \
     tokens; raise the agent's `spec.model.contextWindow` if the model takes more, or use a \
     model with a larger window"
)]
pub struct ContextError {
    pub needed: u64,
    pub fixed: u64,
    pub recent: u64,
    pub window: u64,
}

/// The most tokens a summary may take in a window: an eighth of it, between 256 and 4,096.
pub fn summary_tokens(window: u64) -> u64 {
    (window / 8).clamp(256, 4_096)
}

/// Whether the prompt needs compacting, and what to fold: `None` when it is within
/// [`COMPACT_AT_PERCENT`] of `window` (or above it but within the window, with nothing that
/// folding would make smaller). The fold takes the oldest messages, as many as it takes to
/// reach [`TARGET_PERCENT`] of the window, or as many as it may; an error when even that
/// leaves the prompt larger than the window.
pub fn plan(prompt: &Prompt, window: u64) -> Result<Option<Plan>, ContextError> {
    let before = prompt.estimate();
    if before * 100 <= window * COMPACT_AT_PERCENT {
        return Ok(None);
    }
    let conversation = prompt.conversation;
    // The provider's count, when larger, scales every estimate alike.
    let raw = estimate_tokens(&prompt.messages(), prompt.tools).max(1);
    let scale = |tokens: u64| -> u64 {
        if before > raw {
            ((tokens as u128 * before as u128).div_ceil(raw as u128)) as u64
        } else {
            tokens
        }
    };
    let fixed = scale(message_tokens(prompt.system) + tools_tokens(prompt.tools));
    let tokens: Vec<u64> = conversation
        .iter()
        .map(|message| scale(message_tokens(message)))
        .collect();
    let last_user = conversation
        .iter()
        .rposition(|message| matches!(message, Message::User { .. }));
    let limit = unfinished_start(conversation);
    let previous_through = prompt.previous.map_or(0, |previous| previous.through);
    let budget = summary_tokens(window);
    // The summary message around a summary of `budget` tokens.
    let summary = scale(budget + message_tokens(&summary_message("", &history_hint(prompt))));
    let recent = |through: usize| -> u64 {
        tokens[through..].iter().sum::<u64>()
            + last_user
                .filter(|&user| user < through)
                .map_or(0, |user| tokens[user])
    };
    let after = |through: usize| fixed + summary + recent(through);
    // Cuts fall before a message that is no tool result, past what is folded already, and
    // leave the unfinished exchange (and the last user message) in place.
    let cuts: Vec<usize> = (previous_through + 1..=limit)
        .filter(|&through| {
            through == conversation.len() || !matches!(conversation[through], Message::Tool { .. })
        })
        .filter(|&through| {
            (0..through).any(|index| Some(index) != last_user && index >= previous_through)
        })
        .collect();
    let target = window * TARGET_PERCENT / 100;
    let chosen = cuts
        .iter()
        .copied()
        .find(|&through| after(through) <= target)
        .or_else(|| cuts.last().copied());
    let Some(through) = chosen.filter(|&through| after(through) < before) else {
        // Folding would not help.
        if before <= window {
            return Ok(None);
        }
        let recent = recent(limit.min(conversation.len()));
        return Err(ContextError {
            needed: before,
            fixed,
            recent,
            window,
        });
    };
    let tokens_after = after(through);
    if tokens_after > window {
        return Err(ContextError {
            needed: tokens_after,
            fixed,
            recent: recent(through),
            window,
        });
    }
    let kept: Vec<usize> = last_user
        .filter(|&user| user < through)
        .into_iter()
        .collect();
    let newly_folded = (previous_through..through)
        .filter(|index| !kept.contains(index))
        .count();
    let earlier = prompt.previous.map_or(0, |previous| {
        1 + previous
            .kept
            .iter()
            .filter(|index| !kept.contains(index))
            .count()
    });
    Ok(Some(Plan {
        through,
        kept,
        folded: newly_folded + earlier,
        tokens_before: before,
        tokens_after,
        summary_tokens: budget,
        window,
    }))
}

/// The history path the summary names: the previous record's (the same file), or a
/// placeholder of typical length for estimates.
fn history_hint(prompt: &Prompt) -> String {
    prompt.previous.map_or_else(
        || history_path("aex-00000000000000000000000000"),
        |previous| previous.history_path.clone(),
    )
}

/// Where the unfinished exchange of a conversation starts: the last answer when only tool
/// results follow it (the calls the step just ran) or it asked for tools, else the last user
/// message when nothing follows it; the end when neither.
fn unfinished_start(conversation: &[Message]) -> usize {
    match conversation
        .iter()
        .rposition(|message| !matches!(message, Message::Tool { .. }))
    {
        Some(index) => match &conversation[index] {
            Message::Assistant { tool_calls, .. }
                if !tool_calls.is_empty() || index + 1 < conversation.len() =>
            {
                index
            }
            Message::User { .. } if index + 1 == conversation.len() => index,
            _ => conversation.len(),
        },
        None => 0,
    }
}

impl Plan {
    /// What the summarizing call reads: the messages an earlier record kept and this one does
    /// not, the earlier summary, then the messages this plan folds, in order.
    pub fn folded_messages(&self, prompt: &Prompt) -> Vec<Message> {
        let mut folded = Vec::new();
        let mut start = 0;
        if let Some(previous) = prompt.previous {
            folded.extend(
                previous
                    .kept
                    .iter()
                    .filter(|index| !self.kept.contains(index))
                    .filter_map(|&index| prompt.conversation.get(index).cloned()),
            );
            folded.push(summary_message(&previous.summary, &previous.history_path));
            start = previous.through;
        }
        folded.extend(
            prompt.conversation[start.min(self.through)..self.through]
                .iter()
                .enumerate()
                .filter(|(offset, _)| !self.kept.contains(&(start + offset)))
                .map(|(_, message)| message.clone()),
        );
        folded
    }

    /// The record to store once the summary is written; `places` are the places of the
    /// conversation's messages as read (`Conversation::places`).
    pub fn record(
        &self,
        turn: u32,
        summary: String,
        history_path: String,
        places: &[MessagePlace],
    ) -> Compaction {
        Compaction {
            turn,
            through: self.through,
            kept: self.kept.clone(),
            last_place: self
                .through
                .checked_sub(1)
                .and_then(|last| places.get(last))
                .map(|&place| place.into()),
            summary,
            history_path,
        }
    }
}

/// The prompt finally built (after a compaction, with the real summary) checked against the
/// window: its estimate, or the error when it exceeds the window. Never send a prompt that
/// fails this.
pub fn check(prompt: &Prompt, window: u64) -> Result<u64, ContextError> {
    let needed = prompt.estimate();
    if needed <= window {
        return Ok(needed);
    }
    let fixed = message_tokens(prompt.system) + tools_tokens(prompt.tools);
    Err(ContextError {
        needed,
        fixed,
        recent: needed.saturating_sub(fixed),
        window,
    })
}

/// The instructions of the summarizing call.
pub const SUMMARY_INSTRUCTIONS: &str = "You summarize the conversation of an AI agent with its user so that the agent can go on with its work, reading your summary in place of the conversation. Keep everything it needs: what the user asked for and every constraint they set; facts learned, with exact file paths, names, numbers, commands and their outcomes; decisions made and why; what was done (files created, changed or deleted); errors met and how they were resolved; the open tasks and the next steps. Leave out what no longer matters, such as tool output whose facts you kept. Write plain notes for the agent, in the language of the conversation, without a preamble.";

/// The messages of the summarizing call (send them with no tools and `max_tokens` at most
/// [`Plan::summary_tokens`]): the instructions, then the folded messages as one transcript
/// that fits in `window` with room for the summary. An earlier summary among them is kept
/// whole; when the rest is too long, the longest messages are shortened first (head and
/// tail kept, at least [`SHORTENED_MIN`] characters each), then, only if that is not enough,
/// the oldest messages are left out with a line saying so. Nothing is lost for good: the
/// history file, which the summary names, holds every message.
pub fn summary_request(folded: &[Message], window: u64) -> Vec<Message> {
    let instructions = Message::System {
        text: SUMMARY_INSTRUCTIONS.to_owned(),
    };
    let lead = "Summarize this conversation:\n\n";
    let room = (window * COMPACT_AT_PERCENT / 100)
        .saturating_sub(summary_tokens(window))
        .saturating_sub(message_tokens(&instructions) + text_tokens(lead) + MESSAGE_OVERHEAD);
    let room = usize::try_from(room.saturating_mul(4)).unwrap_or(usize::MAX);
    let blocks: Vec<(String, String)> = folded.iter().map(render).collect();
    // An earlier summary is already as short as a summary gets.
    let protected = usize::from(matches!(
        folded.first(),
        Some(Message::User { text }) if text.starts_with(SUMMARY_MARK)
    ));
    let length = |heading: &str, body: &str| heading.chars().count() + body.chars().count() + 2;
    let protected_length: usize = blocks[..protected]
        .iter()
        .map(|(heading, body)| length(heading, body))
        .sum();
    let rest = &blocks[protected..];
    let room_rest = room.saturating_sub(protected_length);
    let cap = body_cap(rest, room_rest);
    let shown: Vec<String> = rest
        .iter()
        .map(|(heading, body)| format!("{heading}{}\n\n", shorten(body, cap)))
        .collect();
    let mut total: usize = shown.iter().map(|block| block.chars().count()).sum();
    let mut dropped = 0;
    while total > room_rest && dropped < shown.len() {
        total -= shown[dropped].chars().count();
        dropped += 1;
    }
    let mut transcript = String::from(lead);
    for (heading, body) in &blocks[..protected] {
        transcript.push_str(heading);
        transcript.push_str(body);
        transcript.push_str("\n\n");
    }
    if dropped > 0 {
        transcript.push_str(&format!(
            "[… the {dropped} oldest messages are left out here; the history file has them …]\n\n"
        ));
    }
    for block in &shown[dropped..] {
        transcript.push_str(block);
    }
    vec![
        instructions,
        Message::User {
            text: transcript.trim_end().to_owned(),
        },
    ]
}

/// The fewest characters of a message [`summary_request`] shortens a message to.
pub const SHORTENED_MIN: usize = 200;

/// The most characters of each message's body such that the transcript fits in `room`
/// characters: none when everything fits, else the largest cap that does, but at least
/// [`SHORTENED_MIN`].
fn body_cap(blocks: &[(String, String)], room: usize) -> Option<usize> {
    let length = |cap: usize| -> usize {
        blocks
            .iter()
            .map(|(heading, body)| {
                let body = body.chars().count();
                let shown = if body > cap {
                    cap + SHORTENED_MARK
                } else {
                    body
                };
                heading.chars().count() + shown + 2
            })
            .sum()
    };
    let longest = blocks
        .iter()
        .map(|(_, body)| body.chars().count())
        .max()
        .unwrap_or(0);
    if length(longest) <= room {
        return None;
    }
    // The length shrinks as the cap does: the largest cap that fits.
    let (mut low, mut high) = (SHORTENED_MIN, longest.max(SHORTENED_MIN));
    while low < high {
        let middle = (low + high).div_ceil(2);
        if length(middle) <= room {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    Some(low)
}

/// The length of the mark [`shorten`] puts in place of what it leaves out (about).
const SHORTENED_MARK: usize = 80;

/// `body` cut to its first and last `cap / 2` characters, with a mark saying how much was
/// left out and where the whole is.
fn shorten(body: &str, cap: Option<usize>) -> String {
    let Some(cap) = cap else {
        return body.to_owned();
    };
    let length = body.chars().count();
    if length <= cap {
        return body.to_owned();
    }
    let head: String = body.chars().take(cap / 2).collect();
    let tail: String = body.chars().skip(length - cap / 2).collect();
    format!(
        "{head}\n[… {} characters left out here; the history file has them …]\n{tail}",
        length - 2 * (cap / 2)
    )
}

/// How a summary message starts.
const SUMMARY_MARK: &str = "[Summary of the earlier conversation]";

/// The message that stands for the folded ones: a user message (every provider takes one
/// anywhere) that says what it is and where the whole conversation is.
pub fn summary_message(text: &str, path: &str) -> Message {
    Message::User {
        text: format!(
            "{SUMMARY_MARK}\nThe conversation so far was compacted to fit \
             the model's context window. The full history is in `{path}` in your workspace: \
             read it with read_file when you need a detail that is not here.\n\n{}",
            text.trim()
        ),
    }
}

/// The whole conversation as readable markdown, every message in order with its role; tool
/// calls with their arguments, tool results with the call they answer. Images are named, not
/// included.
pub fn history_markdown(messages: &[Message]) -> String {
    let mut markdown = String::from(
        "# Conversation history\n\nEvery message of the conversation in order, as it was before \
         it was compacted to fit the model's context window.\n",
    );
    for (number, message) in messages.iter().enumerate() {
        let (heading, body) = render(message);
        markdown.push_str(&format!(
            "\n## {}. {}",
            number + 1,
            heading.trim_start_matches('#').trim_start()
        ));
        markdown.push_str(&body);
        markdown.push('\n');
    }
    markdown
}

/// A message as a markdown heading (`### Role …\n\n`) and body.
fn render(message: &Message) -> (String, String) {
    match message {
        Message::System { text } => ("### System\n\n".to_owned(), text.trim_end().to_owned()),
        Message::User { text } => ("### User\n\n".to_owned(), text.trim_end().to_owned()),
        Message::Assistant { text, tool_calls } => {
            let mut body = text.trim_end().to_owned();
            for call in tool_calls {
                if !body.is_empty() {
                    body.push_str("\n\n");
                }
                let arguments = serde_json::to_string_pretty(&call.arguments)
                    .unwrap_or_else(|_| call.arguments.to_string());
                body.push_str(&format!(
                    "Tool call `{}` (id `{}`):\n\n{}",
                    call.name,
                    call.id,
                    fenced(&arguments, "json")
                ));
            }
            ("### Assistant\n\n".to_owned(), body)
        }
        Message::Tool {
            call_id,
            name,
            content,
            images,
        } => {
            let mut body = fenced(content.trim_end(), "");
            for image in images {
                body.push('\n');
                body.push_str(&image.label());
            }
            (
                format!("### Tool result of `{name}` (call `{call_id}`)\n\n"),
                body,
            )
        }
    }
}

/// `text` in a code fence longer than any run of backticks in it.
fn fenced(text: &str, language: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{language}\n{text}\n{fence}")
}

/// Writes [`history_markdown`] of `messages` to the execution's [`history_path`] in the
/// workspace (replacing an earlier one: every compaction writes the whole history); returns
/// the path, relative to the workspace.
pub fn write_history(
    workspace: &stigmer_tools::Workspace,
    execution_id: &str,
    messages: &[Message],
) -> Result<String, stigmer_tools::FileError> {
    let path = history_path(execution_id);
    workspace.write_file(Path::new(&path), history_markdown(messages).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stigmer_llm::ToolCall;

    fn system() -> Message {
        Message::System {
            text: "You are a careful coding agent.".into(),
        }
    }

    fn user(text: &str) -> Message {
        Message::User { text: text.into() }
    }

    fn calls(turn: usize, count: usize) -> Message {
        Message::Assistant {
            text: format!("Step {turn}: looking further."),
            tool_calls: (0..count)
                .map(|n| ToolCall {
                    id: format!("call-{turn}-{n}"),
                    name: "read_file".into(),
                    arguments: json!({"path": format!("src/module_{turn}_{n}.rs")}),
                })
                .collect(),
        }
    }

    fn results(turn: usize, count: usize, size: usize) -> Vec<Message> {
        (0..count)
            .map(|n| Message::Tool {
                call_id: format!("call-{turn}-{n}"),
                name: "read_file".into(),
                content: format!(
                    "// module {turn} {n}\n{}",
                    "fn item() {}\n".repeat(size / 13)
                ),
                images: Vec::new(),
            })
            .collect()
    }

    /// A run of `turns` turns, each with two tool calls and their results of about `size`
    /// characters; the last turn's calls just ran.
    fn long_run(turns: usize, size: usize) -> Vec<Message> {
        let mut conversation = vec![user("Refactor the parser, then run the tests.")];
        for turn in 1..=turns {
            conversation.push(calls(turn, 2));
            conversation.extend(results(turn, 2, size));
        }
        conversation
    }

    fn places(conversation: &[Message]) -> Vec<MessagePlace> {
        let mut places = Vec::new();
        let (mut turn, mut index) = (0, 0);
        for message in conversation {
            match message {
                Message::User { .. } => (turn, index) = (turn, 0),
                Message::Assistant { .. } => (turn, index) = (turn + 1, 0),
                _ => index += 1,
            }
            places.push(MessagePlace { turn, index });
        }
        places
    }

    /// Every tool result follows the answer that asked for it (with only results between),
    /// and every call of an answer has its result.
    fn assert_paired(messages: &[Message]) {
        let mut open: Vec<String> = Vec::new();
        for message in messages {
            match message {
                Message::Tool { call_id, .. } => {
                    assert!(
                        open.contains(call_id),
                        "result {call_id} without its call: {messages:#?}"
                    );
                    open.retain(|id| id != call_id);
                }
                other => {
                    assert!(open.is_empty(), "calls {open:?} without results");
                    if let Message::Assistant { tool_calls, .. } = other {
                        open = tool_calls.iter().map(|call| call.id.clone()).collect();
                    }
                }
            }
        }
        assert!(open.is_empty(), "calls {open:?} without results");
    }

    fn summary_of(plan: &Plan) -> String {
        // A summary as long as the budget allows.
        "fact ".repeat((plan.summary_tokens as usize * 4) / 5 - 40)
    }

    #[test]
    fn tokens_are_estimated_from_characters_messages_and_tools() {
        let messages = [user("abcdefgh"), calls(1, 1)];
        let tool = ToolSpec {
            name: "ls".into(),
            description: "List".into(),
            parameters: json!({"type": "object"}),
        };
        let call_tokens = TOOL_OVERHEAD
            + text_tokens("read_file")
            + text_tokens("call-1-0")
            + text_tokens(&json!({"path": "src/module_1_0.rs"}).to_string());
        assert_eq!(message_tokens(&messages[0]), MESSAGE_OVERHEAD + 2);
        assert_eq!(
            message_tokens(&messages[1]),
            MESSAGE_OVERHEAD + text_tokens("Step 1: looking further.") + call_tokens
        );
        assert_eq!(
            estimate_tokens(&messages, std::slice::from_ref(&tool)),
            message_tokens(&messages[0])
                + message_tokens(&messages[1])
                + TOOL_OVERHEAD
                + 1
                + 1
                + text_tokens(r#"{"type":"object"}"#)
        );
        // An image counts as a fixed amount, not as its base64 text.
        let image = Message::Tool {
            call_id: "c".into(),
            name: "shot".into(),
            content: String::new(),
            images: vec![stigmer_llm::ToolImage {
                mime_type: "image/png".into(),
                data: "A".repeat(400_000),
            }],
        };
        assert_eq!(
            message_tokens(&image),
            MESSAGE_OVERHEAD + 1 + 1 + IMAGE_TOKENS
        );
    }

    #[test]
    fn a_prompt_within_the_threshold_is_left_alone() {
        let conversation = long_run(2, 400);
        let system = system();
        let prompt = Prompt {
            system: &system,
            conversation: &conversation,
            previous: None,
            tools: &[],
            reported: None,
        };
        assert!(prompt.estimate() < 4_096 * 85 / 100);
        assert_eq!(plan(&prompt, 4_096), Ok(None));
    }

    #[test]
    fn a_long_history_is_folded_under_the_window_keeping_what_must_stay() {
        let window = 4_096;
        let conversation = long_run(12, 600);
        let system = system();
        let prompt = Prompt {
            system: &system,
            conversation: &conversation,
            previous: None,
            tools: &[],
            reported: None,
        };
        assert!(prompt.estimate() > window);
        let plan = plan(&prompt, window).unwrap().expect("a compaction");
        assert!(
            plan.tokens_after <= window * TARGET_PERCENT / 100,
            "{plan:?}"
        );
        assert_eq!(plan.kept, [0], "the user's request stays");
        // The cut falls on an answer: no call is separated from its result.
        assert!(matches!(
            conversation[plan.through],
            Message::Assistant { .. }
        ));
        let folded = plan.folded_messages(&prompt);
        assert_eq!(folded.len(), plan.folded);
        assert_eq!(folded.len(), plan.through - 1);
        assert_paired(&folded);

        // Applied: the request, the summary, then the latest turns whole, the last one (whose
        // calls just ran) included.
        let record = plan.record(
            13,
            summary_of(&plan),
            history_path("aex-1"),
            &places(&conversation),
        );
        let compacted = Prompt {
            previous: Some(&record),
            ..prompt
        };
        let messages = compacted.messages();
        assert_eq!(messages[0], system);
        assert_eq!(messages[1], conversation[0]);
        assert!(
            matches!(&messages[2], Message::User { text } if text.contains(".stigmer/history/aex-1.md"))
        );
        assert_eq!(
            messages[messages.len() - 3..],
            conversation[conversation.len() - 3..]
        );
        assert_paired(&messages[1..]);
        let after = check(&compacted, window).unwrap();
        assert!(
            after <= plan.tokens_after,
            "{after} > {}",
            plan.tokens_after
        );
        assert_eq!(plan.tokens_before, prompt.estimate());

        // The record survives a round trip through the server's state and applies to the
        // conversation it was made for.
        let stored = serde_json::to_string(&record).unwrap();
        let read: Compaction = serde_json::from_str(&stored).unwrap();
        assert_eq!(read, record);
        assert!(read.applies_to(&places(&conversation), 13));
        assert!(
            !read.applies_to(&places(&conversation), 12),
            "from a later turn"
        );
        assert!(
            !read.applies_to(&places(&conversation[..plan.through - 1]), 13),
            "the conversation is shorter than what the record covers"
        );
    }

    #[test]
    fn a_later_compaction_folds_the_earlier_summary_too() {
        let window = 4_096;
        let mut conversation = long_run(12, 600);
        let system = system();
        let first = {
            let prompt = Prompt {
                system: &system,
                conversation: &conversation,
                previous: None,
                tools: &[],
                reported: None,
            };
            let plan = plan(&prompt, window).unwrap().unwrap();
            plan.record(
                13,
                summary_of(&plan),
                history_path("aex-1"),
                &places(&conversation),
            )
        };
        for turn in 13..=20 {
            conversation.push(calls(turn, 2));
            conversation.extend(results(turn, 2, 600));
        }
        let prompt = Prompt {
            system: &system,
            conversation: &conversation,
            previous: Some(&first),
            tools: &[],
            reported: None,
        };
        assert!(first.applies_to(&places(&conversation), 21));
        let plan = plan(&prompt, window).unwrap().expect("a second compaction");
        assert!(plan.through > first.through);
        assert_eq!(plan.kept, [0]);
        let folded = plan.folded_messages(&prompt);
        assert!(
            matches!(&folded[0], Message::User { text } if text.starts_with("[Summary of the earlier conversation]")),
            "{:?}",
            folded[0]
        );
        assert_eq!(folded.len(), plan.folded);
        assert_paired(&folded[1..]);
        let record = plan.record(
            21,
            summary_of(&plan),
            first.history_path.clone(),
            &places(&conversation),
        );
        let compacted = Prompt {
            previous: Some(&record),
            ..prompt
        };
        assert_paired(&compacted.messages()[1..]);
        assert!(check(&compacted, window).is_ok());
    }

    #[test]
    fn a_prompt_that_cannot_fit_is_an_error() {
        // The calls that just ran returned far more than the window holds.
        let mut conversation = long_run(3, 400);
        conversation.push(calls(4, 1));
        conversation.extend(results(4, 1, 20_000));
        let system = system();
        let prompt = Prompt {
            system: &system,
            conversation: &conversation,
            previous: None,
            tools: &[],
            reported: None,
        };
        let error = plan(&prompt, 4_096).unwrap_err();
        assert_eq!(error.window, 4_096);
        assert!(error.needed > 4_096);
        assert!(error.recent > 4_096, "{error:?}");
        let text = error.to_string();
        assert!(text.contains("the window is 4096 tokens"), "{text}");
        assert!(text.contains("spec.model.contextWindow"), "{text}");
        assert!(text.contains("larger window"), "{text}");
        assert_eq!(check(&prompt, 4_096).unwrap_err().window, 4_096);

        // Nothing to fold and too large: the same error.
        let alone = vec![user(&"x".repeat(20_000))];
        let prompt = Prompt {
            conversation: &alone,
            ..prompt
        };
        assert!(plan(&prompt, 4_096).is_err());
    }

    #[test]
    fn the_providers_count_raises_the_estimate() {
        let conversation = long_run(8, 600);
        let system = system();
        let plain = Prompt {
            system: &system,
            conversation: &conversation,
            previous: None,
            tools: &[],
            reported: None,
        };
        // The last turn's prompt was everything before the last answer; the provider counted
        // a fifth more than the estimate.
        let counted = 1 + conversation.len() - 3;
        let counted_tokens = estimate_tokens(&plain.messages()[..counted], &[]);
        let prompt = Prompt {
            reported: Some(Reported {
                messages: counted,
                input_tokens: counted_tokens * 6 / 5,
            }),
            ..plain
        };
        let latest = estimate_tokens(&prompt.messages()[counted..], &[]);
        assert_eq!(prompt.estimate(), counted_tokens * 6 / 5 + latest);
        // A window the estimate alone stays under the threshold of, the count does not.
        let window = prompt.estimate() * 100 / COMPACT_AT_PERCENT - 1;
        assert_eq!(plan(&plain, window), Ok(None));
        let planned = plan(&prompt, window).unwrap().expect("a compaction");
        assert_eq!(planned.tokens_before, prompt.estimate());
        assert!(planned.tokens_after <= window * TARGET_PERCENT / 100);
        // A count of a prompt that no longer exists (it had more messages) is ignored.
        let stale = Prompt {
            reported: Some(Reported {
                messages: 99,
                input_tokens: 100_000,
            }),
            ..plain
        };
        assert_eq!(stale.estimate(), plain.estimate());
    }

    #[test]
    fn the_summary_request_fits_the_window() {
        let fits = |request: &[Message]| {
            let tokens = estimate_tokens(request, &[]);
            assert!(
                tokens + summary_tokens(4_096) <= 4_096 * COMPACT_AT_PERCENT / 100 + 16,
                "{tokens}"
            );
        };
        let text = |request: &[Message]| match &request[1] {
            Message::User { text } => text.clone(),
            other => panic!("{other:?}"),
        };
        // Long messages: shortened.
        let folded = long_run(6, 3_000);
        let request = summary_request(&folded, 4_096);
        assert_eq!(
            request[0],
            Message::System {
                text: SUMMARY_INSTRUCTIONS.into()
            }
        );
        fits(&request);
        let transcript = text(&request);
        assert!(transcript.contains("characters left out here"));
        assert!(!transcript.contains("oldest messages are left out"));
        assert!(transcript.contains("Tool call `read_file` (id `call-6-1`)"));

        // Many messages: the oldest left out too, an earlier summary kept whole.
        let earlier = summary_message(&"known fact ".repeat(100), ".stigmer/history/aex-1.md");
        let mut folded = vec![earlier.clone()];
        folded.extend(long_run(40, 2_000));
        let request = summary_request(&folded, 4_096);
        fits(&request);
        let transcript = text(&request);
        let Message::User { text: earlier } = earlier else {
            panic!()
        };
        assert!(transcript.contains(&earlier));
        assert!(transcript.contains("oldest messages are left out here"));
        assert!(transcript.contains("call-40-1"), "the latest stay");

        // Small enough: whole.
        let small = long_run(1, 100);
        let transcript = text(&summary_request(&small, 4_096));
        assert!(!transcript.contains("left out"));
        assert!(transcript.starts_with("Summarize this conversation:\n\n### User\n\nRefactor"));
    }

    #[test]
    fn the_history_is_readable_markdown() {
        let messages = vec![
            system(),
            user("Fix `main`."),
            calls(1, 1),
            Message::Tool {
                call_id: "call-1-0".into(),
                name: "read_file".into(),
                content: "```rust\nfn main() {}\n```".into(),
                images: vec![stigmer_llm::ToolImage {
                    mime_type: "image/png".into(),
                    data: "iVBORw0KGgo=".into(),
                }],
            },
            Message::Assistant {
                text: "Done.".into(),
                tool_calls: Vec::new(),
            },
        ];
        let markdown = history_markdown(&messages);
        assert_eq!(
            markdown,
            "# Conversation history\n\nEvery message of the conversation in order, as it was \
             before it was compacted to fit the model's context window.\n\
             \n## 1. System\n\nYou are a careful coding agent.\n\
             \n## 2. User\n\nFix `main`.\n\
             \n## 3. Assistant\n\nStep 1: looking further.\n\nTool call `read_file` (id \
             `call-1-0`):\n\n```json\n{\n  \"path\": \"src/module_1_0.rs\"\n}\n```\n\
             \n## 4. Tool result of `read_file` (call `call-1-0`)\n\n````\n```rust\nfn main() \
             {}\n```\n````\n[image: image/png, 8 bytes]\n\
             \n## 5. Assistant\n\nDone.\n"
        );
        assert_eq!(history_path("aex-1"), ".stigmer/history/aex-1.md");
        assert_eq!(history_path("a/../b"), ".stigmer/history/a____b.md");
    }

    #[test]
    fn the_summary_names_the_history() {
        assert_eq!(
            summary_message("  The user wants X.\n", ".stigmer/history/aex-1.md"),
            Message::User {
                text: "[Summary of the earlier conversation]\nThe conversation so far was \
                       compacted to fit the model's context window. The full history is in \
                       `.stigmer/history/aex-1.md` in your workspace: read it with read_file \
                       when you need a detail that is not here.\n\nThe user wants X."
                    .into()
            }
        );
    }
}
