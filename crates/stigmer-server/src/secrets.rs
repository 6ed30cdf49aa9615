//! The secrets of running executions, in memory only, and the redaction of their values from
//! what the server stores.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// The secrets of running executions, in memory only: they are never stored, so a server
/// restart forgets them (the run goes on without them).
#[derive(Default)]
pub struct Secrets {
    by_execution: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl Secrets {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, String>>> {
        self.by_execution.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, execution_id: &str, secrets: BTreeMap<String, String>) {
        if !secrets.is_empty() {
            self.map().insert(execution_id.to_owned(), secrets);
        }
    }

    pub(crate) fn get(&self, execution_id: &str) -> BTreeMap<String, String> {
        self.map().get(execution_id).cloned().unwrap_or_default()
    }

    pub(crate) fn forget(&self, execution_id: &str) {
        self.map().remove(execution_id);
    }
}

/// `text` with every secret value replaced by the mask, longest values first (so a secret that
/// contains another is masked whole), as the runner redacts events and messages.
pub(crate) fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a String>) -> String {
    let mut values: Vec<&str> = secrets
        .into_iter()
        .map(String::as_str)
        .filter(|value| !value.is_empty())
        .collect();
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    let mut text = text.to_owned();
    for value in values {
        if text.contains(value) {
            text = text.replace(value, stigmer_resources::MASK);
        }
    }
    text
}

/// `value` with every secret value masked in its strings and object keys (see [`redact`]): the
/// JSON a workflow execution stores (its input, output or error) holds no secret.
pub(crate) fn redact_value(value: Value, secrets: &BTreeMap<String, String>) -> Value {
    if secrets.values().all(String::is_empty) {
        return value;
    }
    match value {
        Value::String(text) => Value::String(redact(&text, secrets.values())),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| redact_value(item, secrets))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, field)| (redact(&key, secrets.values()), redact_value(field, secrets)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_masked_in_strings_and_keys_at_any_depth() {
        let secrets: BTreeMap<String, String> = [
            ("SHORT".to_owned(), "hunter2".to_owned()),
            ("LONG".to_owned(), "hunter2-long".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]
        .into();
        let value = json!({"token": "Bearer hunter2-long", "list": [1, "hunter2", null],
            "hunter2": {"deep": "x hunter2 y"}});
        assert_eq!(
            redact_value(value, &secrets),
            json!({"token": "Bearer ****", "list": [1, "****", null],
                "****": {"deep": "x **** y"}})
        );
        let untouched = json!({"a": "hunter2"});
        assert_eq!(redact_value(untouched.clone(), &BTreeMap::new()), untouched);
    }
}
