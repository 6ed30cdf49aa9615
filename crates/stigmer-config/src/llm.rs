//! The LLM providers and their defaults.

use serde::{Deserialize, Serialize};

/// LLM providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmProvider {
    Ollama,
    Openai,
    Anthropic,
}

impl LlmProvider {
    pub fn parse(text: &str) -> Option<LlmProvider> {
        match text.to_ascii_lowercase().as_str() {
            "ollama" => Some(LlmProvider::Ollama),
            "openai" => Some(LlmProvider::Openai),
            "anthropic" => Some(LlmProvider::Anthropic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LlmProvider::Ollama => "ollama",
            LlmProvider::Openai => "openai",
            LlmProvider::Anthropic => "anthropic",
        }
    }

    /// The provider's public endpoint.
    pub fn default_base_url(self) -> &'static str {
        match self {
            LlmProvider::Ollama => "http://localhost:11434",
            LlmProvider::Openai => "https://api.openai.com/v1",
            LlmProvider::Anthropic => "https://api.anthropic.com/v1",
        }
    }

    /// The model used when none is configured.
    pub fn default_model(self) -> &'static str {
        match self {
            LlmProvider::Ollama => "qwen2.5-coder:7b",
            LlmProvider::Openai => "gpt-4o-mini",
            LlmProvider::Anthropic => "claude-sonnet-4-5",
        }
    }
}
