//! The agent-runner's spans: `chat {model}` for each model call attempt and `execute_tool
//! {tool}` for each tool call a step runs, both children of the execution's root span (whose
//! ids `stigmer_telemetry::ids` derives from the execution id; the API server emits the root
//! when the execution ends). Nothing is built when telemetry is off. Contents (prompt, answer,
//! tool arguments and result) go on spans only with `telemetry.capture_content`, and always
//! through the run's [`Redactor`], like everything else that leaves the runner.

use crate::api::Redactor;
use crate::turn::{StepError, StepId};
use serde_json::Value;
use std::time::SystemTime;
use stigmer_llm::{LlmError, Message, ModelConfig, ToolCall, TurnResult};
use stigmer_telemetry::spans::{self, ChatCall, ChatContent, ChatOutcome, ToolRun, ToolType};

/// Emits the `chat` span of one model call that started at `start`.
pub fn chat(
    execution_id: &str,
    config: &ModelConfig,
    step: StepId,
    start: SystemTime,
    messages: &[Message],
    result: &Result<TurnResult, StepError>,
    redactor: &Redactor,
) {
    if !stigmer_telemetry::enabled() {
        return;
    }
    let call = ChatCall {
        execution_id,
        provider: config.provider.as_str(),
        model: &config.model,
        base_url: &config.base_url,
        turn: step.turn,
        attempt: step.attempt,
        start,
        end: SystemTime::now(),
    };
    let error_text;
    let outcome = match result {
        Ok(result) => ChatOutcome::Answered {
            input_tokens: result.usage.input_tokens,
            output_tokens: result.usage.output_tokens,
            finish_reason: result.stop_reason.as_deref(),
            tool_calls: result.tool_calls.len(),
        },
        Err(error) => {
            error_text = redactor.text(&error.to_string());
            ChatOutcome::Failed {
                error_type: match error {
                    StepError::Llm(LlmError::Retryable { .. }) => "retryable",
                    StepError::Llm(LlmError::Fatal { .. }) => "fatal",
                    StepError::Events(_) => "events",
                },
                message: &error_text,
            }
        }
    };
    let content =
        stigmer_telemetry::capture_content().then(|| chat_content(messages, result, redactor));
    stigmer_telemetry::export(spans::chat(&call, &outcome, content));
}

/// The prompt and the answer as GenAI messages, secrets masked.
fn chat_content(
    messages: &[Message],
    result: &Result<TurnResult, StepError>,
    redactor: &Redactor,
) -> ChatContent {
    let mut system = Vec::new();
    let mut input = Vec::new();
    for message in messages {
        match redactor.message(message) {
            Message::System { text } => system.push(spans::text_part(&text)),
            Message::User { text } => {
                input.push(spans::message("user", vec![spans::text_part(&text)]))
            }
            Message::Assistant { text, tool_calls } => {
                input.push(spans::message(
                    "assistant",
                    assistant_parts(&text, &tool_calls),
                ));
            }
            Message::Tool {
                call_id, content, ..
            } => input.push(spans::message(
                "tool",
                vec![spans::tool_result_part(&call_id, &content)],
            )),
        }
    }
    let output = result.as_ref().ok().map(|result| {
        let answer = redactor.message(&Message::Assistant {
            text: result.text.clone(),
            tool_calls: result.tool_calls.clone(),
        });
        let Message::Assistant { text, tool_calls } = answer else {
            return Value::Null;
        };
        let mut message = spans::message("assistant", assistant_parts(&text, &tool_calls));
        if let Some(reason) = &result.stop_reason {
            message["finish_reason"] = Value::String(reason.clone());
        }
        Value::Array(vec![message])
    });
    ChatContent {
        system_instructions: (!system.is_empty()).then_some(Value::Array(system)),
        input_messages: Value::Array(input),
        output_messages: output,
    }
}

fn assistant_parts(text: &str, tool_calls: &[ToolCall]) -> Vec<Value> {
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(spans::text_part(text));
    }
    parts.extend(
        tool_calls
            .iter()
            .map(|call| spans::tool_call_part(&call.id, &call.name, &call.arguments)),
    );
    parts
}

/// Emits the `execute_tool` span of one tool call that started at `start`; `result` is what
/// the model reads (`None`: the step failed before the call ended).
pub fn tool(
    execution_id: &str,
    call: &ToolCall,
    tool_type: ToolType,
    step: StepId,
    start: SystemTime,
    result: Option<(&str, bool)>,
    redactor: &Redactor,
) {
    if !stigmer_telemetry::enabled() {
        return;
    }
    let run = ToolRun {
        execution_id,
        call_id: &call.id,
        name: &call.name,
        tool_type,
        turn: step.turn,
        attempt: step.attempt,
        start,
        end: SystemTime::now(),
        is_error: result.is_none_or(|(_, is_error)| is_error),
    };
    let content = stigmer_telemetry::capture_content().then(|| {
        let mut arguments = call.arguments.clone();
        redactor.value(&mut arguments);
        (
            arguments,
            redactor.text(result.map_or("", |(text, _)| text)),
        )
    });
    stigmer_telemetry::export(spans::execute_tool(&run, content));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn content_is_masked_and_shaped_as_genai_messages() {
        let redactor = Redactor::new(&BTreeMap::from([("TOKEN".to_owned(), "s3cr3t".to_owned())]));
        let messages = vec![
            Message::System {
                text: "Be brief.".into(),
            },
            Message::User {
                text: "use s3cr3t".into(),
            },
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "read_file".into(),
                    arguments: serde_json::json!({"path": "s3cr3t.txt"}),
                }],
            },
            Message::Tool {
                call_id: "c1".into(),
                name: "read_file".into(),
                content: "the s3cr3t".into(),
                images: Vec::new(),
            },
        ];
        let result = Ok(TurnResult {
            text: "done with s3cr3t".into(),
            tool_calls: Vec::new(),
            usage: Default::default(),
            stop_reason: Some("stop".into()),
        });
        let content = chat_content(&messages, &result, &redactor);
        let all = format!(
            "{} {} {}",
            content.system_instructions.as_ref().unwrap(),
            content.input_messages,
            content.output_messages.as_ref().unwrap()
        );
        assert!(!all.contains("s3cr3t"), "{all}");
        assert_eq!(
            content.input_messages[1],
            serde_json::json!({"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "read_file", "arguments": {"path": "****.txt"}}]})
        );
        assert_eq!(
            content.input_messages[2]["parts"][0],
            serde_json::json!({"type": "tool_call_response", "id": "c1", "response": "the ****"})
        );
        assert_eq!(content.output_messages.unwrap()[0]["finish_reason"], "stop");
        assert_eq!(
            content.system_instructions.unwrap(),
            serde_json::json!([{"type": "text", "content": "Be brief."}])
        );
    }
}
