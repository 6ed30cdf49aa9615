//! Model calls, behind our own types: one streamed model turn in, text deltas and a
//! [`TurnResult`] out, errors classified as retryable or not.
//!
//! Ollama (native `/api/chat`), OpenAI-compatible endpoints and Anthropic are spoken through
//! `genai` (pinned), which stays an implementation detail of this crate: the agent loop only
//! sees [`Message`], [`ToolSpec`], [`StreamEvent`] and [`LlmError`].
//!
//! Images a tool returned ([`ToolImage`]) reach the model where the provider takes them, as
//! [`image_route`] decides in one place; elsewhere the model reads a one-line placeholder
//! ([`ToolImage::placeholder`]).

use futures::StreamExt;
use genai::adapter::AdapterKind;
use genai::chat::{
    Binary, ChatMessage, ChatOptions, ChatRequest, ChatStreamEvent, ContentPart, CustomPart,
    MessageContent, Tool, ToolResponse,
};
use genai::resolver::{AuthData, Endpoint};
use genai::{ModelIden, ServiceTarget};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

pub use stigmer_config::LlmProvider as Provider;

/// Which model to call and how.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub provider: Provider,
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "****"))
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        text: String,
    },
    User {
        text: String,
    },
    Assistant {
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        call_id: String,
        name: String,
        content: String,
        /// Images the tool returned besides its text (MCP tools); absent in results stored
        /// before images were kept.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<ToolImage>,
    },
}

/// An image a tool returned: its MIME type and its bytes as base64.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolImage {
    pub mime_type: String,
    pub data: String,
}

impl std::fmt::Debug for ToolImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolImage")
            .field("mime_type", &self.mime_type)
            .field("bytes", &self.decoded_len())
            .finish()
    }
}

/// Decoded bytes beyond which an image is not sent (Anthropic's limit per image; OpenAI takes
/// more, Ollama states none): the model reads the placeholder instead.
pub const IMAGE_LIMIT: usize = 5 * 1024 * 1024;

/// The image types every provider here decodes (Anthropic's list; OpenAI and Ollama take
/// them too). Another type gets the placeholder.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

impl ToolImage {
    /// The size of the image, from the length of its base64 text.
    pub fn decoded_len(&self) -> usize {
        base64_decoded_len(&self.data)
    }

    /// The image in one line, for people: `[image: <mime>, N bytes]`.
    pub fn label(&self) -> String {
        format!("[image: {}, {} bytes]", self.mime_type, self.decoded_len())
    }

    /// What the model reads when the image does not reach it.
    pub fn placeholder(&self) -> String {
        format!(
            "[image omitted: {}, {} bytes]",
            self.mime_type,
            self.decoded_len()
        )
    }
}

/// The size of the data a base64 text holds, without decoding it.
pub fn base64_decoded_len(data: &str) -> usize {
    let significant = data.bytes().filter(|b| !b.is_ascii_whitespace()).count();
    let padding = data.bytes().rev().take_while(|&b| b == b'=').count().min(2);
    (significant / 4) * 3
        + match significant % 4 {
            2 => 1,
            3 => 2,
            _ => 0,
        }
        - if significant % 4 == 0 { padding } else { 0 }
}

/// How a tool's image reaches the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageRoute {
    /// Anthropic: an `image` block inside the call's `tool_result` content.
    ToolResult,
    /// OpenAI chat completions: an `image_url` part of a user message right after the turn's
    /// tool results (tool messages take text only), which names the call it came from.
    UserMessage,
    /// Ollama: in the `images` of the tool message.
    ToolMessage,
    /// Not sent: the model reads [`ToolImage::placeholder`] in the result's text.
    Placeholder,
}

/// The one place that decides, per provider, whether and how `image` reaches the model.
/// `model_sees` says whether the model takes images at all: always assumed for Anthropic and
/// OpenAI (a model that refuses them gets the placeholders on a second try, see
/// [`LlmClient::stream_turn`]); for Ollama, whether the model lists the `vision` capability.
/// Images over [`IMAGE_LIMIT`] or of a type outside [`IMAGE_TYPES`] get the placeholder.
///
/// genai 0.7.2 carries what is needed for each provider: for Anthropic, a custom part (its
/// JSON sent as is) replaces the text-only tool response; for OpenAI, `Binary` parts of a user
/// message become `image_url` data URLs; for Ollama, a `Binary` part beside the tool response
/// becomes the message's `images`.
pub fn image_route(provider: Provider, model_sees: bool, image: &ToolImage) -> ImageRoute {
    if !model_sees
        || !IMAGE_TYPES.contains(&image.mime_type.as_str())
        || image.decoded_len() > IMAGE_LIMIT
        || image.data.is_empty()
    {
        return ImageRoute::Placeholder;
    }
    match provider {
        Provider::Anthropic => ImageRoute::ToolResult,
        Provider::Openai => ImageRoute::UserMessage,
        Provider::Ollama => ImageRoute::ToolMessage,
    }
}

/// A tool the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// A tool offered to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

/// Tokens of one turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What arrives while a turn streams.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
}

/// The outcome of one model turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub stop_reason: Option<String>,
}

/// Why a model call failed, classified for retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// Worth retrying: rate limits, server errors, dropped connections, timeouts.
    #[error("{message}")]
    Retryable { message: String },
    /// Retrying cannot help: authentication, bad requests, unknown models.
    #[error("{message}")]
    Fatal { message: String },
}

impl LlmError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Retryable { .. })
    }
}

/// How one request failed: the provider refused it in a way images can cause, or otherwise.
enum Attempt {
    RefusedImages(LlmError),
    Failed(LlmError),
}

impl Attempt {
    fn from_error(config: &ModelConfig, error: &genai::Error) -> Attempt {
        let classified = classify(config, error);
        let refused = status_of(error) == Some(400)
            || provider_message(error).contains("missing data required for image input");
        if refused {
            Attempt::RefusedImages(classified)
        } else {
            Attempt::Failed(classified)
        }
    }

    fn into_error(self) -> LlmError {
        match self {
            Attempt::RefusedImages(error) | Attempt::Failed(error) => error,
        }
    }
}

/// Calls one configured model.
pub struct LlmClient {
    client: genai::Client,
    config: ModelConfig,
}

/// The longest silence tolerated inside a streaming answer.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(120);

impl LlmClient {
    pub fn new(config: ModelConfig) -> Result<LlmClient, LlmError> {
        // reqwest is built without a default TLS provider; ring is the one the rest of the
        // binary already links. Installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = genai::Client::new().map_err(|error| LlmError::Fatal {
            message: format!("cannot set up the HTTP client: {error}"),
        })?;
        Ok(LlmClient { client, config })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Streams one model turn, calling `on_event` for every text delta.
    ///
    /// Tool images go to the model as [`image_route`] says. A provider that refuses a request
    /// carrying images (HTTP 400, or Ollama's "missing data required for image input": a model
    /// that does not see) gets it once more with placeholders instead, so a model without
    /// vision never ends a run over an image.
    pub async fn stream_turn(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<TurnResult, LlmError> {
        let has_images = messages
            .iter()
            .any(|message| matches!(message, Message::Tool { images, .. } if !images.is_empty()));
        let model_sees = has_images && self.model_sees_images().await;
        let provider = self.config.provider;
        let request = chat_request(messages, tools, provider, model_sees);
        match self.attempt(request, on_event).await {
            Err(Attempt::RefusedImages(error)) if model_sees => {
                tracing::warn!(
                    provider = provider.as_str(),
                    model = %self.config.model,
                    error = %error,
                    "The model refused the tool images; sending placeholders instead."
                );
                let request = chat_request(messages, tools, provider, false);
                self.attempt(request, on_event)
                    .await
                    .map_err(Attempt::into_error)
            }
            other => other.map_err(Attempt::into_error),
        }
    }

    /// Whether the model takes images: assumed for Anthropic and OpenAI; for Ollama, whether
    /// `/api/show` lists the `vision` capability (asked once per process and model).
    async fn model_sees_images(&self) -> bool {
        match self.config.provider {
            Provider::Anthropic | Provider::Openai => true,
            Provider::Ollama => ollama_has_vision(&self.config.base_url, &self.config.model).await,
        }
    }

    async fn attempt(
        &self,
        request: ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<TurnResult, Attempt> {
        let mut options = ChatOptions::default()
            .with_capture_usage(true)
            .with_capture_content(true)
            .with_capture_tool_calls(true)
            .with_stream_read_timeout(STREAM_READ_TIMEOUT);
        if let Some(temperature) = self.config.temperature {
            options = options.with_temperature(temperature);
        }
        if let Some(max_tokens) = self.config.max_tokens {
            options = options.with_max_tokens(max_tokens);
        }
        let response = self
            .client
            .exec_chat_stream(self.target(), request, Some(&options))
            .await
            .map_err(|error| Attempt::from_error(&self.config, &error))?;
        let mut stream = response.stream;
        let mut text = String::new();
        let mut result = TurnResult::default();
        let mut ended = false;
        while let Some(event) = stream.next().await {
            match event.map_err(|error| Attempt::from_error(&self.config, &error))? {
                ChatStreamEvent::Chunk(chunk) if !chunk.content.is_empty() => {
                    text.push_str(&chunk.content);
                    on_event(StreamEvent::TextDelta(chunk.content));
                }
                ChatStreamEvent::End(end) => {
                    ended = true;
                    if let Some(usage) = &end.captured_usage {
                        result.usage = Usage {
                            input_tokens: usage.prompt_tokens.unwrap_or(0).max(0) as u64,
                            output_tokens: usage.completion_tokens.unwrap_or(0).max(0) as u64,
                        };
                    }
                    result.stop_reason = end
                        .captured_stop_reason
                        .as_ref()
                        .map(|reason| format!("{reason:?}"));
                    if let Some(calls) = end.captured_tool_calls() {
                        result.tool_calls = calls
                            .into_iter()
                            .map(|call| ToolCall {
                                id: call.call_id.clone(),
                                name: call.fn_name.clone(),
                                arguments: normalize_arguments(&call.fn_arguments),
                            })
                            .collect();
                    }
                }
                _ => {}
            }
        }
        if !ended {
            // A cut connection can look like a clean end of the byte stream; without the
            // provider's end marker the answer may be truncated.
            return Err(Attempt::Failed(LlmError::Retryable {
                message: format!(
                    "the answer from {} at {} ended before the model finished",
                    self.config.provider.as_str(),
                    self.config.base_url
                ),
            }));
        }
        result.text = text;
        Ok(result)
    }

    fn target(&self) -> ServiceTarget {
        let kind = match self.config.provider {
            Provider::Ollama => AdapterKind::Ollama,
            Provider::Openai => AdapterKind::OpenAI,
            Provider::Anthropic => AdapterKind::Anthropic,
        };
        let mut base = self.config.base_url.trim_end_matches('/').to_owned();
        if self.config.provider == Provider::Anthropic && !base.ends_with("/v1") {
            base.push_str("/v1");
        }
        base.push('/');
        ServiceTarget {
            endpoint: Endpoint::from_owned(base),
            auth: match &self.config.api_key {
                Some(key) => AuthData::from_single(key.clone()),
                None => AuthData::from_single(""),
            },
            model: ModelIden::new(kind, self.config.model.clone()),
        }
    }
}

/// Models answer arguments as an object or as a JSON string; we always hand on an object.
fn normalize_arguments(arguments: &Value) -> Value {
    match arguments {
        Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| arguments.clone()),
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    }
}

/// The request for `messages`, tool images placed as [`image_route`] says for `provider`.
fn chat_request(
    messages: &[Message],
    tools: &[ToolSpec],
    provider: Provider,
    model_sees: bool,
) -> ChatRequest {
    let mut chat_messages = Vec::with_capacity(messages.len());
    let mut system = None;
    // Images for the user message that follows the current run of tool results (OpenAI).
    let mut for_user: Vec<(String, &ToolImage)> = Vec::new();
    for message in messages {
        if !matches!(message, Message::Tool { .. }) && !for_user.is_empty() {
            chat_messages.push(images_message(std::mem::take(&mut for_user)));
        }
        match message {
            Message::System { text } => system = Some(text.clone()),
            Message::User { text } => chat_messages.push(ChatMessage::user(text.clone())),
            Message::Assistant { text, tool_calls } => {
                let mut content = if text.is_empty() {
                    MessageContent::default()
                } else {
                    MessageContent::from_text(text.clone())
                };
                for call in tool_calls {
                    content.push(ContentPart::ToolCall(genai::chat::ToolCall {
                        call_id: call.id.clone(),
                        fn_name: call.name.clone(),
                        fn_arguments: call.arguments.clone(),
                        thought_signatures: None,
                    }));
                }
                chat_messages.push(ChatMessage::assistant(content));
            }
            Message::Tool {
                call_id,
                name,
                content,
                images,
            } => {
                let mut text = content.clone();
                let mut line = |extra: String| {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&extra);
                };
                let mut blocks = Vec::new();
                let mut binaries = Vec::new();
                for image in images {
                    match image_route(provider, model_sees, image) {
                        ImageRoute::Placeholder => line(image.placeholder()),
                        ImageRoute::ToolResult => blocks.push(serde_json::json!({
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": image.mime_type,
                                "data": image.data,
                            }
                        })),
                        ImageRoute::ToolMessage => binaries.push(ContentPart::Binary(
                            Binary::from_base64(image.mime_type.clone(), image.data.as_str(), None),
                        )),
                        ImageRoute::UserMessage => {
                            for_user.push((
                                format!(
                                    "Image {} of `{name}` (call {call_id}):",
                                    for_user.len() + 1
                                ),
                                image,
                            ));
                            line(format!(
                                "[image {}: {}, {} bytes; attached to the user message after the tool results]",
                                for_user.len(),
                                image.mime_type,
                                image.decoded_len()
                            ));
                        }
                    }
                }
                if !blocks.is_empty() {
                    // genai's tool responses carry text only: the whole `tool_result` block
                    // goes as a custom part, which its Anthropic adapter sends as is.
                    if !text.is_empty() {
                        blocks.insert(0, serde_json::json!({"type": "text", "text": text}));
                    }
                    let block = serde_json::json!({
                        "type": "tool_result",
                        "tool_use_id": call_id,
                        "content": blocks,
                    });
                    chat_messages.push(ChatMessage::tool(MessageContent::from_parts(vec![
                        ContentPart::Custom(CustomPart {
                            model_iden: None,
                            data: block,
                        }),
                    ])));
                    continue;
                }
                let response = ContentPart::ToolResponse(
                    ToolResponse::new(call_id.clone(), text).with_fn_name(name.clone()),
                );
                let mut parts = vec![response];
                parts.extend(binaries);
                chat_messages.push(ChatMessage::tool(MessageContent::from_parts(parts)));
            }
        }
    }
    if !for_user.is_empty() {
        chat_messages.push(images_message(for_user));
    }
    let mut request = ChatRequest::new(chat_messages);
    if let Some(system) = system {
        request = request.with_system(system);
    }
    if !tools.is_empty() {
        request = request.with_tools(tools.iter().map(|tool| {
            Tool::new(tool.name.clone())
                .with_description(tool.description.clone())
                .with_schema(tool.parameters.clone())
        }));
    }
    request
}

/// The user message that carries the images of the tool results before it, each named.
fn images_message(images: Vec<(String, &ToolImage)>) -> ChatMessage {
    let mut parts = vec![ContentPart::Text(
        "The tool results above returned these images:".to_owned(),
    )];
    for (label, image) in images {
        parts.push(ContentPart::Text(label));
        parts.push(ContentPart::Binary(Binary::from_base64(
            image.mime_type.clone(),
            image.data.as_str(),
            None,
        )));
    }
    ChatMessage::user(MessageContent::from_parts(parts))
}

/// Classifies a provider error: HTTP 429, 5xx and transport failures are retryable; other
/// statuses (401, 403, 400, 404) are not. The provider's own message is kept.
fn classify(config: &ModelConfig, error: &genai::Error) -> LlmError {
    let status = status_of(error);
    let detail = provider_message(error);
    let endpoint = format!("{} at {}", config.provider.as_str(), config.base_url);
    match status {
        Some(429) => LlmError::Retryable {
            message: format!("{endpoint} is rate limiting (HTTP 429): {detail}"),
        },
        Some(code) if code >= 500 => LlmError::Retryable {
            message: format!("{endpoint} failed (HTTP {code}): {detail}"),
        },
        Some(401) | Some(403) => LlmError::Fatal {
            message: format!(
                "{endpoint} rejected the credentials (HTTP {}): {detail}",
                status.unwrap_or_default()
            ),
        },
        Some(404) => LlmError::Fatal {
            message: format!(
                "{endpoint} does not know model {:?} (HTTP 404): {detail}",
                config.model
            ),
        },
        Some(code) => LlmError::Fatal {
            message: format!("{endpoint} refused the request (HTTP {code}): {detail}"),
        },
        None => LlmError::Retryable {
            message: format!("cannot talk to {endpoint}: {detail}"),
        },
    }
}

/// The HTTP status behind an error; streaming errors wrap the failed response inside.
fn status_of(error: &genai::Error) -> Option<u16> {
    if let Some(status) = error.status() {
        return Some(status.as_u16());
    }
    if let genai::Error::WebStream { error: inner, .. } = error {
        if let Some(genai_error) = inner.downcast_ref::<genai::Error>() {
            return status_of(genai_error);
        }
        if let Some(reqwest_error) = inner.downcast_ref::<reqwest::Error>() {
            return reqwest_error.status().map(|status| status.as_u16());
        }
    }
    None
}

fn provider_message(error: &genai::Error) -> String {
    let text = match error {
        genai::Error::WebStream { error: inner, .. } => {
            match inner.downcast_ref::<genai::Error>() {
                Some(genai::Error::HttpError { body, .. }) => body.clone(),
                Some(other) => other.to_string(),
                None => inner.to_string(),
            }
        }
        genai::Error::HttpError { body, .. } => body.clone(),
        other => other.to_string(),
    };
    // Pull the provider's own message out of a JSON error body when there is one.
    if let Some(start) = text.find('{')
        && let Ok(body) = serde_json::from_str::<Value>(text[start..].trim())
    {
        let message = body
            .pointer("/error/message")
            .or_else(|| body.pointer("/error"))
            .or_else(|| body.pointer("/message"));
        if let Some(Value::String(message)) = message {
            return message.clone();
        }
    }
    text.lines().next().unwrap_or_default().to_owned()
}

/// What Ollama's `POST /api/show` says about a model, as far as we use it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OllamaModelInfo {
    /// `capabilities` lists `vision`: the model takes images.
    pub vision: bool,
    /// `model_info["<architecture>.context_length"]`: the longest context the model was
    /// trained for.
    pub context_length: Option<u64>,
    /// `num_ctx` among the model's `parameters` (set in its Modelfile): the context Ollama
    /// actually runs it with.
    pub num_ctx: Option<u64>,
}

impl OllamaModelInfo {
    /// Reads the answer of `/api/show`; what is missing or malformed stays unknown.
    pub fn from_show(body: &Value) -> OllamaModelInfo {
        let vision = body["capabilities"]
            .as_array()
            .is_some_and(|caps| caps.iter().any(|cap| cap == "vision"));
        let info = &body["model_info"];
        let architecture = info["general.architecture"].as_str();
        let context_length = architecture
            .and_then(|architecture| info[format!("{architecture}.context_length")].as_u64())
            .or_else(|| {
                // A model_info without `general.architecture`: the one `*.context_length`.
                info.as_object()?
                    .iter()
                    .find(|(key, _)| key.ends_with(".context_length"))
                    .and_then(|(_, value)| value.as_u64())
            })
            .filter(|tokens| *tokens > 0);
        // `parameters` is Modelfile text, one `name value` per line.
        let num_ctx = body["parameters"].as_str().and_then(|parameters| {
            parameters.lines().find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("num_ctx"))
                    .then(|| words.next()?.parse::<u64>().ok())
                    .flatten()
                    .filter(|tokens| *tokens > 0)
            })
        });
        OllamaModelInfo {
            vision,
            context_length,
            num_ctx,
        }
    }

    /// The context Ollama runs the model with: its Modelfile's `num_ctx`, else Ollama's own
    /// default [`OLLAMA_DEFAULT_NUM_CTX`] (we send no `num_ctx`: genai 0.7.2 has no way to),
    /// or the model's trained length when that is smaller. Beyond it Ollama cuts the prompt
    /// silently, so a larger trained length (`context_length`) alone is not the window; an
    /// Ollama server started with a larger `OLLAMA_CONTEXT_LENGTH` is not visible here:
    /// `spec.model.contextWindow` says so.
    pub fn context_window(&self) -> u64 {
        match (self.num_ctx, self.context_length) {
            (Some(num_ctx), _) => num_ctx,
            (None, Some(trained)) => trained.min(OLLAMA_DEFAULT_NUM_CTX),
            (None, None) => OLLAMA_DEFAULT_NUM_CTX,
        }
    }
}

/// The context Ollama gives a model whose Modelfile sets no `num_ctx` (Ollama's default since
/// 0.6; it was 2,048 before). Newer servers may give more, depending on memory: 4,096 is the
/// floor, so it is the conservative choice.
pub const OLLAMA_DEFAULT_NUM_CTX: u64 = 4_096;

/// What `/api/show` says about the Ollama model at `base_url` (asked once per process and
/// model: a definite answer is remembered); `None` when Ollama does not answer.
pub async fn ollama_show(base_url: &str, model: &str) -> Option<OllamaModelInfo> {
    type Known = std::sync::Mutex<std::collections::HashMap<String, OllamaModelInfo>>;
    static KNOWN: std::sync::OnceLock<Known> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    let key = format!("{}|{model}", base_url.trim_end_matches('/'));
    if let Some(info) = known.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Some(info.clone());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/api/show", base_url.trim_end_matches('/'));
    let asked = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let response = client
            .post(&url)
            .json(&serde_json::json!({ "model": model }))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?;
        let body: Value = response.json().await.ok()?;
        Some(OllamaModelInfo::from_show(&body))
    };
    match asked.await {
        Some(info) => {
            known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, info.clone());
            Some(info)
        }
        None => {
            tracing::warn!(%url, model, "Cannot ask Ollama about the model (/api/show).");
            None
        }
    }
}

/// Whether the Ollama model at `base_url` lists the `vision` capability (`POST /api/show`).
/// No answer means no (placeholders).
async fn ollama_has_vision(base_url: &str, model: &str) -> bool {
    ollama_show(base_url, model)
        .await
        .is_some_and(|info| info.vision)
}

/// A model's context window in tokens, and where the number came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextWindow {
    pub tokens: u64,
    pub source: WindowSource,
}

/// Where a [`ContextWindow`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSource {
    /// The agent's `spec.model.contextWindow`.
    Configured,
    /// Ollama's `/api/show` ([`OllamaModelInfo::context_window`]).
    Ollama,
    /// Nothing said: [`default_context_window`].
    Default,
}

impl std::fmt::Display for ContextWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            WindowSource::Configured => "spec.model.contextWindow",
            WindowSource::Ollama => "as Ollama runs the model",
            WindowSource::Default => "the default for the provider",
        };
        write!(f, "{} tokens ({source})", self.tokens)
    }
}

/// The window assumed when neither the agent nor the provider says, chosen low:
/// - Ollama: [`OLLAMA_DEFAULT_NUM_CTX`] (4,096), what Ollama runs a model with by default;
/// - OpenAI at `api.openai.com`: 128,000 (gpt-4o, gpt-4o-mini; newer models take more);
///   any other OpenAI-compatible server: 32,768 (local servers such as llama.cpp, vLLM or
///   LM Studio run with 4,096 to 131,072: the agent's `contextWindow` says which);
/// - Anthropic: 200,000 (every current Claude model without the 1M beta).
pub fn default_context_window(provider: Provider, base_url: &str) -> u64 {
    match provider {
        Provider::Ollama => OLLAMA_DEFAULT_NUM_CTX,
        Provider::Openai if base_url.contains("://api.openai.com") => 128_000,
        Provider::Openai => 32_768,
        Provider::Anthropic => 200_000,
    }
}

impl LlmClient {
    /// The model's context window: `configured` (the agent's `spec.model.contextWindow`),
    /// else what Ollama runs the model with, else [`default_context_window`].
    pub async fn context_window(&self, configured: Option<u32>) -> ContextWindow {
        if let Some(tokens) = configured {
            return ContextWindow {
                tokens: u64::from(tokens),
                source: WindowSource::Configured,
            };
        }
        if self.config.provider == Provider::Ollama
            && let Some(info) = ollama_show(&self.config.base_url, &self.config.model).await
        {
            return ContextWindow {
                tokens: info.context_window(),
                source: WindowSource::Ollama,
            };
        }
        ContextWindow {
            tokens: default_context_window(self.config.provider, &self.config.base_url),
            source: WindowSource::Default,
        }
    }
}

/// Whether Ollama serves a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelCheck {
    Available,
    /// Ollama answers but does not have the model; these are the ones it has.
    Missing {
        available: Vec<String>,
    },
    /// Ollama does not answer.
    Unreachable {
        reason: String,
    },
}

/// Asks Ollama at `base_url` (`GET /api/tags`) whether it has `model`. Never pulls anything.
pub async fn check_ollama_model(base_url: &str, model: &str) -> ModelCheck {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/api/tags", base_url.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            return ModelCheck::Unreachable {
                reason: error.to_string(),
            };
        }
    };
    let response = match client.get(&url).send().await {
        Ok(response) => response,
        Err(error) => {
            return ModelCheck::Unreachable {
                reason: error.to_string(),
            };
        }
    };
    let body: Value = match response.error_for_status() {
        Ok(response) => match response.json().await {
            Ok(body) => body,
            Err(error) => {
                return ModelCheck::Unreachable {
                    reason: format!("unexpected answer from {url}: {error}"),
                };
            }
        },
        Err(error) => {
            return ModelCheck::Unreachable {
                reason: error.to_string(),
            };
        }
    };
    let available: Vec<String> = body["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["name"].as_str().map(str::to_owned))
        .collect();
    // `qwen2.5-coder` means `qwen2.5-coder:latest` to Ollama.
    let wanted = if model.contains(':') {
        model.to_owned()
    } else {
        format!("{model}:latest")
    };
    if available
        .iter()
        .any(|name| *name == wanted || name == model)
    {
        ModelCheck::Available
    } else {
        ModelCheck::Missing { available }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_context_window_is_read_from_api_show() {
        // As Ollama answers for qwen2.5-coder: a trained length far beyond what it runs with.
        let show = json!({
            "capabilities": ["completion", "tools"],
            "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
            "parameters": "stop \"<|im_end|>\"",
        });
        let info = OllamaModelInfo::from_show(&show);
        assert_eq!(
            info,
            OllamaModelInfo {
                vision: false,
                context_length: Some(32768),
                num_ctx: None,
            }
        );
        assert_eq!(info.context_window(), OLLAMA_DEFAULT_NUM_CTX);

        // A Modelfile's num_ctx is what Ollama runs the model with.
        let show = json!({
            "capabilities": ["completion", "vision"],
            "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
            "parameters": "temperature 0.2\nnum_ctx 16384",
        });
        let info = OllamaModelInfo::from_show(&show);
        assert!(info.vision);
        assert_eq!(info.num_ctx, Some(16384));
        assert_eq!(info.context_window(), 16384);

        // A model trained for less than Ollama's default.
        let show = json!({"model_info": {"phi.context_length": 2048}});
        assert_eq!(OllamaModelInfo::from_show(&show).context_window(), 2048);

        // Nothing known: Ollama's default.
        let info = OllamaModelInfo::from_show(&json!({"details": {"format": "gguf"}}));
        assert_eq!(info, OllamaModelInfo::default());
        assert_eq!(info.context_window(), OLLAMA_DEFAULT_NUM_CTX);
    }

    #[test]
    fn each_provider_has_a_default_window() {
        assert_eq!(
            default_context_window(Provider::Ollama, "http://localhost:11434"),
            4_096
        );
        assert_eq!(
            default_context_window(Provider::Openai, "https://api.openai.com/v1"),
            128_000
        );
        assert_eq!(
            default_context_window(Provider::Openai, "http://localhost:8080/v1"),
            32_768
        );
        assert_eq!(
            default_context_window(Provider::Anthropic, "https://api.anthropic.com/v1"),
            200_000
        );
    }
}
