//! The model client against the scripted LLM server, in each provider's real wire format.

use serde_json::json;
use stigmer_llm::{LlmClient, LlmError, Message, ModelConfig, Provider, StreamEvent, ToolSpec};
use stigmer_test::llm::{Fault, ScriptedLlm, Turn};

mod images;

pub(crate) fn config(server: &ScriptedLlm, provider: Provider) -> ModelConfig {
    ModelConfig {
        provider,
        base_url: match provider {
            Provider::Ollama => server.base_url(),
            _ => server.v1_url(),
        },
        model: "scripted".into(),
        api_key: Some("test-key-123".into()),
        temperature: Some(0.1),
        max_tokens: Some(256),
    }
}

pub(crate) fn todo_tool() -> ToolSpec {
    ToolSpec {
        name: "write_todos".into(),
        description: "Replace the todo list".into(),
        parameters: json!({"type": "object", "properties": {"todos": {"type": "array", "items": {"type": "string"}}}, "required": ["todos"]}),
    }
}

async fn run_turn(
    client: &LlmClient,
    messages: &[Message],
) -> (Result<stigmer_llm::TurnResult, LlmError>, Vec<String>) {
    let mut deltas = Vec::new();
    let mut on_event = |event: StreamEvent| match event {
        StreamEvent::TextDelta(text) => deltas.push(text),
    };
    let result = client
        .stream_turn(messages, &[todo_tool()], &mut on_event)
        .await;
    (result, deltas)
}

#[tokio::test]
async fn a_tool_loop_works_with_every_provider() {
    for provider in [Provider::Ollama, Provider::Openai, Provider::Anthropic] {
        let server = ScriptedLlm::start(vec![
            Turn::tool_call("write_todos", json!({"todos": ["read", "write"]})),
            Turn::text("All done, two todos written."),
        ]);
        let client = LlmClient::new(config(&server, provider)).unwrap();
        let mut messages = vec![
            Message::System {
                text: "Be brief.".into(),
            },
            Message::User {
                text: "Plan it.".into(),
            },
        ];
        let (first, _) = run_turn(&client, &messages).await;
        let first = first.unwrap_or_else(|error| panic!("{provider:?}: {error}"));
        assert_eq!(first.tool_calls.len(), 1, "{provider:?}: {first:?}");
        let call = &first.tool_calls[0];
        assert_eq!(call.name, "write_todos");
        assert_eq!(
            call.arguments,
            json!({"todos": ["read", "write"]}),
            "{provider:?}"
        );
        assert_eq!(first.usage.input_tokens, 30, "{provider:?}: {first:?}");
        messages.push(Message::Assistant {
            text: first.text.clone(),
            tool_calls: first.tool_calls.clone(),
        });
        messages.push(Message::Tool {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: "2 todos".into(),
            images: vec![],
        });

        let (second, deltas) = run_turn(&client, &messages).await;
        let second = second.unwrap_or_else(|error| panic!("{provider:?}: {error}"));
        assert_eq!(second.text, "All done, two todos written.", "{provider:?}");
        assert!(
            deltas.len() > 1,
            "{provider:?} streamed in pieces: {deltas:?}"
        );
        assert_eq!(deltas.concat(), second.text);
        assert!(second.tool_calls.is_empty());
        assert_eq!(second.usage.output_tokens, 5, "{provider:?}: {second:?}");

        // The tool result went back in the provider's own shape, with the key.
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let body = &requests[1].body;
        match provider {
            Provider::Ollama => {
                assert_eq!(requests[1].path, "/api/chat");
                let tool = body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["role"] == "tool")
                    .unwrap();
                assert_eq!(tool["content"], "2 todos");
            }
            Provider::Openai => {
                assert_eq!(requests[1].path, "/v1/chat/completions");
                let tool = body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["role"] == "tool")
                    .unwrap();
                assert_eq!(tool["tool_call_id"], call.id.as_str());
                assert_eq!(
                    requests[1].header("authorization"),
                    Some("Bearer test-key-123")
                );
            }
            Provider::Anthropic => {
                assert_eq!(requests[1].path, "/v1/messages");
                let text = body["messages"].to_string();
                assert!(
                    text.contains("tool_result") && text.contains(&call.id),
                    "{text}"
                );
                assert_eq!(requests[1].header("x-api-key"), Some("test-key-123"));
                assert_eq!(body["system"], "Be brief.");
            }
        }
    }
}

#[tokio::test]
async fn errors_are_classified_for_retries() {
    for provider in [Provider::Ollama, Provider::Openai, Provider::Anthropic] {
        let server = ScriptedLlm::start(vec![
            Turn::fault(Fault::Status(429, "slow down".into())),
            Turn::fault(Fault::Status(500, "boom".into())),
            Turn::fault(Fault::Status(401, "invalid api key".into())),
            Turn::fault(Fault::BrokenStream),
            Turn::text("recovered"),
        ]);
        let client = LlmClient::new(config(&server, provider)).unwrap();
        let messages = vec![Message::User { text: "hi".into() }];
        let rate_limited = run_turn(&client, &messages).await.0.unwrap_err();
        assert!(rate_limited.is_retryable(), "{provider:?}: {rate_limited}");
        assert!(rate_limited.to_string().contains("429"), "{rate_limited}");
        let server_error = run_turn(&client, &messages).await.0.unwrap_err();
        assert!(server_error.is_retryable(), "{provider:?}: {server_error}");
        let unauthorized = run_turn(&client, &messages).await.0.unwrap_err();
        assert!(!unauthorized.is_retryable(), "{provider:?}: {unauthorized}");
        assert!(
            unauthorized.to_string().contains("invalid api key"),
            "{provider:?}: {unauthorized}"
        );
        assert!(
            !unauthorized.to_string().contains("test-key-123"),
            "the key must not leak"
        );
        let broken = run_turn(&client, &messages).await.0.unwrap_err();
        assert!(broken.is_retryable(), "{provider:?}: {broken}");
        let recovered = run_turn(&client, &messages).await.0.unwrap();
        assert_eq!(recovered.text, "recovered");
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable() {
    let port = stigmer_test::free_port();
    let client = LlmClient::new(ModelConfig {
        provider: Provider::Ollama,
        base_url: format!("http://127.0.0.1:{port}"),
        model: "scripted".into(),
        api_key: None,
        temperature: None,
        max_tokens: None,
    })
    .unwrap();
    let error = run_turn(&client, &[Message::User { text: "hi".into() }])
        .await
        .0
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[test]
fn the_api_key_is_redacted_in_debug_output() {
    let config = ModelConfig {
        provider: Provider::Openai,
        base_url: "https://example.com/v1".into(),
        model: "m".into(),
        api_key: Some("sk-secret".into()),
        temperature: None,
        max_tokens: None,
    };
    assert!(!format!("{config:?}").contains("sk-secret"));
}

#[tokio::test]
async fn the_ollama_model_check_never_pulls_and_says_what_is_there() {
    use stigmer_llm::{ModelCheck, check_ollama_model};
    let server = ScriptedLlm::start(vec![]);
    server.set_models(&["llama3:latest", "qwen2.5-coder:7b"]);
    assert_eq!(
        check_ollama_model(&server.base_url(), "qwen2.5-coder:7b").await,
        ModelCheck::Available
    );
    assert_eq!(
        check_ollama_model(&server.base_url(), "llama3").await,
        ModelCheck::Available
    );
    match check_ollama_model(&server.base_url(), "mistral:7b").await {
        ModelCheck::Missing { available } => {
            assert_eq!(available, ["llama3:latest", "qwen2.5-coder:7b"])
        }
        other => panic!("{other:?}"),
    }
    let port = stigmer_test::free_port();
    assert!(matches!(
        check_ollama_model(&format!("http://127.0.0.1:{port}"), "x").await,
        ModelCheck::Unreachable { .. }
    ));
    assert!(
        server.requests().is_empty(),
        "a check is not a chat request"
    );
}

#[tokio::test]
async fn the_context_window_comes_from_the_agent_then_ollama_then_the_default() {
    use stigmer_llm::{ContextWindow, WindowSource};
    let server = ScriptedLlm::start(vec![]);
    server.set_context_length(Some(2048));
    let client = LlmClient::new(config(&server, Provider::Ollama)).unwrap();
    assert_eq!(
        client.context_window(Some(8192)).await,
        ContextWindow {
            tokens: 8192,
            source: WindowSource::Configured
        }
    );
    assert_eq!(
        client.context_window(None).await,
        ContextWindow {
            tokens: 2048,
            source: WindowSource::Ollama
        }
    );

    // Ollama does not answer: its default.
    let port = stigmer_test::free_port();
    let mut gone = config(&server, Provider::Ollama);
    gone.base_url = format!("http://127.0.0.1:{port}");
    let client = LlmClient::new(gone).unwrap();
    assert_eq!(
        client.context_window(None).await,
        ContextWindow {
            tokens: stigmer_llm::OLLAMA_DEFAULT_NUM_CTX,
            source: WindowSource::Default
        }
    );

    // Other providers are not asked.
    let client = LlmClient::new(config(&server, Provider::Anthropic)).unwrap();
    assert_eq!(client.context_window(None).await.tokens, 200_000);
    assert!(server.requests().is_empty(), "/api/show is no chat request");
}
