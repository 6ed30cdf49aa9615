//! The conversations of recent executions, held between model turns, so that a turn asks the
//! API server only for the messages stored since the last one it read.
//!
//! A model turn needs the whole conversation; reading it whole on every turn made each turn
//! cost more than the one before. The runner keeps what it read, keyed by execution id, and
//! asks for the messages after the last place it holds. The server stays the only record:
//! what is held is a copy, lost with the process, and a runner that holds nothing (its first
//! turn of an execution, after a restart, or after the execution was evicted) reads the whole
//! conversation again, so durability is unchanged. Places already read are never rewritten:
//! a turn's messages are written by its steps, and a later step starts only after they ended.

use crate::api::{Api, ApiError, MessagePlace, RunContext, Wanted};
use std::collections::HashMap;
use std::sync::Mutex;
use stigmer_llm::Message;

/// Executions whose conversation is held at most; the least recently used goes first.
pub const HELD_EXECUTIONS: usize = 64;
/// Bytes of conversation (as the server sent them) held at most, over all executions.
pub const HELD_BYTES: usize = 64 * 1024 * 1024;

/// The conversation of one execution as far as it was read.
struct Held {
    messages: Vec<Message>,
    /// The place of each message in its own execution.
    places: Vec<MessagePlace>,
    /// The place of the last message of the execution itself that was read.
    last: MessagePlace,
    bytes: usize,
    /// When it was last used, to evict the least recently used.
    used: u64,
}

/// A model turn's read: the step's context and the conversation through the turn before.
pub struct Conversation {
    pub context: RunContext,
    pub messages: Vec<Message>,
    /// The place of each of `messages` in its own execution.
    pub places: Vec<MessagePlace>,
    /// How many messages this read fetched from the server.
    pub fetched: usize,
}

/// The held conversations of this runner.
#[derive(Default)]
pub struct Conversations {
    held: Mutex<HashMap<String, Held>>,
    clock: std::sync::atomic::AtomicU64,
}

impl Conversations {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The conversation of `execution_id` through `through_turn`: the messages after those
    /// held, or all of them when none are held (or what is held reaches past `through_turn`,
    /// as after a reset of the workflow to an earlier turn).
    pub async fn read(
        &self,
        api: &Api,
        execution_id: &str,
        through_turn: u32,
    ) -> Result<Conversation, ApiError> {
        let held = self
            .held()
            .remove(execution_id)
            .filter(|held| held.last.turn <= through_turn);
        let wanted = match &held {
            Some(held) => Wanted::After(held.last),
            None => Wanted::All,
        };
        let context = api.run_context(execution_id, through_turn, wanted).await?;
        let fetched = context.messages.len();
        let (mut messages, mut places, mut bytes, last) = match held {
            Some(held) => (held.messages, held.places, held.bytes, Some(held.last)),
            None => (Vec::new(), Vec::new(), 0, None),
        };
        messages.extend(context.messages.iter().cloned());
        places.extend(context.places.iter().copied());
        bytes += context.message_bytes;
        if let Some(last) = context.last.or(last) {
            self.keep(
                execution_id,
                Held {
                    messages: messages.clone(),
                    places: places.clone(),
                    last,
                    bytes,
                    used: 0,
                },
            );
        }
        Ok(Conversation {
            context,
            messages,
            places,
            fetched,
        })
    }

    /// Lets go of an execution's conversation (its run has no more turns).
    pub fn forget(&self, execution_id: &str) {
        self.held().remove(execution_id);
    }

    /// Whether anything of `execution_id` is held.
    #[cfg(test)]
    pub fn holds(&self, execution_id: &str) -> bool {
        self.held().contains_key(execution_id)
    }

    fn keep(&self, execution_id: &str, mut held: Held) {
        if held.bytes > HELD_BYTES {
            return;
        }
        held.used = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut all = self.held();
        all.insert(execution_id.to_owned(), held);
        loop {
            let bytes: usize = all.values().map(|held| held.bytes).sum();
            if all.len() <= HELD_EXECUTIONS && bytes <= HELD_BYTES {
                break;
            }
            let Some(oldest) = all
                .iter()
                .min_by_key(|(_, held)| held.used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            all.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stigmer_llm::ToolCall;
    use stigmer_resources::Kind;
    use stigmer_test::server::{InProcessServer, resource};

    /// The real API server in-process with a running execution `aex-1` of agent `hello`, and
    /// a client of it as a runner makes one.
    async fn server(dir: &std::path::Path) -> (Api, InProcessServer) {
        let server = InProcessServer::builder()
            .sqlite()
            .resources([
                resource(Kind::Agent, "hello", json!({"instructions": "Hi."}), None),
                resource(
                    Kind::AgentExecution,
                    "aex-1",
                    json!({"agent": "hello", "session": "ses-1", "message": "Go."}),
                    Some(json!({"phase": "running"})),
                ),
            ])
            .start()
            .await;
        let spec = stigmer_config::RunnerLaunchSpec {
            role: stigmer_config::RunnerRole::Agent,
            home: dir.to_owned(),
            temporal_address: "127.0.0.1:1".into(),
            temporal_namespace: "default".into(),
            task_queue: "agent_execution_runner".into(),
            worker_identity: "test".into(),
            api_endpoint: server.endpoint(),
            api_token: stigmer_config::Secret::new(server.token()),
            workspace_dir: dir.join("workspace"),
            log_filter: "info".into(),
            llm_provider: stigmer_config::LlmProvider::Ollama,
            llm_model: "m".into(),
            llm_base_url: "http://127.0.0.1:1".into(),
            openai_api_key: None,
            anthropic_api_key: None,
            telemetry: Default::default(),
        };
        (Api::new(&spec).unwrap(), server)
    }

    /// What the steps of turn `turn` store: the model's answer asking for one tool, its result.
    async fn finish_turn(api: &Api, turn: u32) {
        let call = ToolCall {
            id: format!("call-{turn}"),
            name: "ls".into(),
            arguments: json!({}),
        };
        let answer = Message::Assistant {
            text: String::new(),
            tool_calls: vec![call],
        };
        api.save_messages("aex-1", turn, 0, &[answer])
            .await
            .unwrap();
        let result = Message::Tool {
            call_id: format!("call-{turn}"),
            name: "ls".into(),
            content: format!("result {turn}"),
            images: vec![],
        };
        api.save_messages("aex-1", turn, 1, &[result])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_model_turn_after_the_first_fetches_only_the_new_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (api, _server) = server(dir.path()).await;
        let user = Message::User { text: "Go.".into() };
        api.save_messages("aex-1", 0, 0, &[user]).await.unwrap();
        let conversations = Conversations::default();

        // The first turn reads the conversation whole: the user's message.
        let first = conversations.read(&api, "aex-1", 0).await.unwrap();
        assert_eq!((first.fetched, first.messages.len()), (1, 1));
        // Each later turn fetches only the two messages the turn before stored, however long
        // the conversation has grown.
        for turn in 1..=30 {
            finish_turn(&api, turn).await;
            let read = conversations.read(&api, "aex-1", turn).await.unwrap();
            assert_eq!(read.fetched, 2, "turn {turn}");
            assert_eq!(read.messages.len(), 1 + 2 * turn as usize);
        }
        // A retried turn fetches nothing new and sees the same conversation.
        let held = conversations.read(&api, "aex-1", 30).await.unwrap();
        assert_eq!(held.fetched, 0);

        // A runner that holds nothing (restarted) reads it whole, and sees the same.
        let restarted = Conversations::default();
        let whole = restarted.read(&api, "aex-1", 30).await.unwrap();
        assert_eq!(whole.fetched, 61);
        assert_eq!(whole.messages, held.messages);
        // So does a runner whose conversation was reset to an earlier turn.
        let earlier = conversations.read(&api, "aex-1", 10).await.unwrap();
        assert_eq!(earlier.fetched, 21);
        assert_eq!(earlier.messages[..], held.messages[..21]);
    }

    fn held(bytes: usize) -> Held {
        Held {
            messages: vec![Message::User { text: "hi".into() }],
            places: vec![MessagePlace { turn: 0, index: 0 }],
            last: MessagePlace { turn: 0, index: 0 },
            bytes,
            used: 0,
        }
    }

    #[test]
    fn the_least_recently_used_conversation_goes_first() {
        let conversations = Conversations::default();
        for index in 0..=HELD_EXECUTIONS {
            conversations.keep(&format!("aex-{index}"), held(1));
        }
        assert!(!conversations.holds("aex-0"));
        assert!(conversations.holds("aex-1"));
        assert!(conversations.holds(&format!("aex-{HELD_EXECUTIONS}")));
        conversations.keep("big", held(HELD_BYTES - 10));
        // Made room by bytes: the oldest went until the rest fit.
        let kept = conversations.held().len();
        assert!(kept < HELD_EXECUTIONS, "{kept}");
        assert!(conversations.holds("big"));
        conversations.keep("too-big", held(HELD_BYTES + 1));
        assert!(!conversations.holds("too-big"));
        conversations.forget("big");
        assert!(!conversations.holds("big"));
    }
}
