//! Tool images in each provider's wire format, and the placeholder where they cannot go.

use crate::{config, todo_tool};
use serde_json::{Value, json};
use stigmer_llm::{LlmClient, Message, Provider, ToolCall, ToolImage};
use stigmer_test::llm::{Fault, ScriptedLlm, Turn};

/// A 1×1 PNG.
const PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn pixel() -> ToolImage {
    ToolImage {
        mime_type: "image/png".into(),
        data: PIXEL.into(),
    }
}

/// A conversation whose last turn called two tools: the first returned text and an image (and
/// an SVG, which no provider takes), the second text only.
fn conversation(images: Vec<ToolImage>) -> Vec<Message> {
    let call = |id: &str, name: &str| ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: json!({}),
    };
    vec![
        Message::System {
            text: "Be brief.".into(),
        },
        Message::User {
            text: "Show me.".into(),
        },
        Message::Assistant {
            text: String::new(),
            tool_calls: vec![call("call_a", "mcp__picture"), call("call_b", "ls")],
        },
        Message::Tool {
            call_id: "call_a".into(),
            name: "mcp__picture".into(),
            content: "Here it is.".into(),
            images,
        },
        Message::Tool {
            call_id: "call_b".into(),
            name: "ls".into(),
            content: "a.txt".into(),
            images: vec![],
        },
    ]
}

/// The body of the one request a turn over `messages` sends to `server`.
async fn sent(server: &ScriptedLlm, provider: Provider, messages: &[Message]) -> Value {
    let client = LlmClient::new(config(server, provider)).unwrap();
    let result = client
        .stream_turn(messages, &[todo_tool()], &mut |_| {})
        .await
        .unwrap_or_else(|error| panic!("{provider:?}: {error}"));
    assert_eq!(result.text, "Seen.");
    server.requests().last().unwrap().body.clone()
}

fn svg() -> ToolImage {
    ToolImage {
        mime_type: "image/svg+xml".into(),
        data: "PHN2Zy8+".into(),
    }
}

#[tokio::test]
async fn anthropic_gets_the_image_inside_the_tool_result() {
    let server = ScriptedLlm::start(vec![Turn::text("Seen.")]);
    let body = sent(
        &server,
        Provider::Anthropic,
        &conversation(vec![pixel(), svg()]),
    )
    .await;
    let results: Vec<&Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|message| message["content"].as_array().into_iter().flatten())
        .filter(|block| block["type"] == "tool_result")
        .collect();
    assert_eq!(results.len(), 2, "{body}");
    assert_eq!(results[0]["tool_use_id"], "call_a");
    assert_eq!(
        results[0]["content"],
        json!([
            {"type": "text", "text": "Here it is.\n[image omitted: image/svg+xml, 6 bytes]"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
        ]),
        "{body}"
    );
    assert_eq!(results[1]["tool_use_id"], "call_b");
    assert_eq!(results[1]["content"], "a.txt");
}

#[tokio::test]
async fn openai_gets_the_image_in_a_user_message_after_the_tool_results() {
    let server = ScriptedLlm::start(vec![Turn::text("Seen.")]);
    let body = sent(&server, Provider::Openai, &conversation(vec![pixel()])).await;
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "tool", "user"],
        "{body}"
    );
    let tool = messages[3]["content"].as_str().unwrap();
    assert!(
        tool.starts_with("Here it is.\n[image 1: image/png, 70 bytes;"),
        "{tool}"
    );
    assert_eq!(messages[4]["content"], "a.txt");
    let parts = messages[5]["content"].as_array().unwrap();
    let labels: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    assert!(
        labels
            .iter()
            .any(|l| l.contains("`mcp__picture`") && l.contains("call_a")),
        "{labels:?}"
    );
    let urls: Vec<&str> = parts
        .iter()
        .filter(|p| p["type"] == "image_url")
        .map(|p| p["image_url"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, [format!("data:image/png;base64,{PIXEL}")]);
}

#[tokio::test]
async fn ollama_gets_the_image_on_the_tool_message_only_when_the_model_sees() {
    // The scripted model lists no `vision` capability: the placeholder.
    let server = ScriptedLlm::start(vec![Turn::text("Seen.")]);
    let body = sent(&server, Provider::Ollama, &conversation(vec![pixel()])).await;
    let tool = &body["messages"][3];
    assert_eq!(tool["role"], "tool");
    assert_eq!(
        tool["content"],
        "Here it is.\n[image omitted: image/png, 70 bytes]"
    );
    assert!(tool.get("images").is_none(), "{body}");

    let seeing = ScriptedLlm::start(vec![Turn::text("Seen.")]);
    seeing.set_capabilities(&["completion", "tools", "vision"]);
    let body = sent(&seeing, Provider::Ollama, &conversation(vec![pixel()])).await;
    let tool = &body["messages"][3];
    assert_eq!(tool["content"], "Here it is.", "{body}");
    assert_eq!(tool["images"], json!([PIXEL]), "{body}");
}

#[tokio::test]
async fn an_image_over_the_limit_is_a_placeholder() {
    let big = ToolImage {
        mime_type: "image/png".into(),
        data: "A".repeat((stigmer_llm::IMAGE_LIMIT / 3 + 1) * 4),
    };
    let server = ScriptedLlm::start(vec![Turn::text("Seen.")]);
    let body = sent(&server, Provider::Anthropic, &conversation(vec![big])).await;
    let text = body.to_string();
    assert!(!text.contains("AAAAAAAA"), "the image was sent");
    assert!(
        text.contains("[image omitted: image/png, 5242881 bytes]"),
        "{}",
        &text[..text.len().min(2000)]
    );
}

#[tokio::test]
async fn a_model_that_refuses_images_gets_placeholders_on_a_second_try() {
    let server = ScriptedLlm::start(vec![
        Turn::fault(Fault::Status(
            400,
            "this model does not support image input".into(),
        )),
        Turn::text("Seen."),
    ]);
    let body = sent(&server, Provider::Openai, &conversation(vec![pixel()])).await;
    assert_eq!(server.requests().len(), 2);
    assert!(!body.to_string().contains("image_url"), "{body}");
    assert_eq!(
        body["messages"][3]["content"],
        "Here it is.\n[image omitted: image/png, 70 bytes]"
    );
    // Without images, a refused request is not sent again.
    let server = ScriptedLlm::start(vec![Turn::fault(Fault::Status(400, "bad".into()))]);
    let client = LlmClient::new(config(&server, Provider::Openai)).unwrap();
    let error = client
        .stream_turn(&conversation(vec![]), &[], &mut |_| {})
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_tool_result_stored_before_images_still_reads() {
    let old: Message =
        serde_json::from_str(r#"{"role":"tool","call_id":"c1","name":"ls","content":"a.txt"}"#)
            .unwrap();
    assert_eq!(
        old,
        Message::Tool {
            call_id: "c1".into(),
            name: "ls".into(),
            content: "a.txt".into(),
            images: vec![],
        }
    );
    // And a result without images is stored as before.
    assert_eq!(
        serde_json::to_value(&old).unwrap(),
        json!({"role": "tool", "call_id": "c1", "name": "ls", "content": "a.txt"})
    );
    let with_image = Message::Tool {
        call_id: "c1".into(),
        name: "shot".into(),
        content: String::new(),
        images: vec![pixel()],
    };
    let text = serde_json::to_string(&with_image).unwrap();
    assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), with_image);
}
