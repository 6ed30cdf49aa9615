//! Secrets in workflows (decision D10): workflow code only ever sees a placeholder for each
//! secret (`$secrets.TOKEN` is `⟨secret:TOKEN⟩`); an activity swaps placeholders for the values
//! just before the call, so no value enters Temporal's history, events or logs.

use crate::error::Problem;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::LazyLock;

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"⟨secret:([A-Za-z_][A-Za-z0-9_]*)⟩").expect("valid regex"));

/// The placeholder workflow code sees for the secret `name`.
pub fn placeholder(name: &str) -> String {
    format!("⟨secret:{name}⟩")
}

/// `$secrets`: each name mapped to its placeholder.
pub fn placeholders<'a>(names: impl IntoIterator<Item = &'a String>) -> Value {
    Value::Object(
        names
            .into_iter()
            .map(|name| (name.clone(), Value::String(placeholder(name))))
            .collect(),
    )
}

/// The secret values of a run, by name; never serialised into workflow data.
#[derive(Clone, Default)]
pub struct Secrets(BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    pub fn new(values: BTreeMap<String, String>) -> Secrets {
        Secrets(values)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// `text` with every placeholder replaced by its value; an unknown name is an
    /// `authorization` error (403) naming it.
    pub fn reveal(&self, text: &str) -> Result<String, Problem> {
        if !text.contains("⟨secret:") {
            return Ok(text.to_string());
        }
        let mut unknown = None;
        let revealed = PLACEHOLDER.replace_all(text, |captures: &regex::Captures<'_>| {
            let name = &captures[1];
            match self.0.get(name) {
                Some(value) => value.clone(),
                None => {
                    unknown.get_or_insert_with(|| name.to_string());
                    String::new()
                }
            }
        });
        match unknown {
            Some(name) => Err(unknown_secret(&name)),
            None => Ok(revealed.into_owned()),
        }
    }

    /// [`Secrets::reveal`] over every string (and object key) of a JSON value.
    pub fn reveal_value(&self, value: &Value) -> Result<Value, Problem> {
        Ok(match value {
            Value::String(text) => Value::String(self.reveal(text)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.reveal_value(item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, item) in map {
                    out.insert(self.reveal(key)?, self.reveal_value(item)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// `text` with every secret value replaced by its placeholder: what a response that
    /// echoes a secret may show in history and events.
    pub fn conceal(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.0 {
            if value.len() >= 4 && out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &placeholder(name));
            }
        }
        out
    }

    /// [`Secrets::conceal`] over every string of a JSON value.
    pub fn conceal_value(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.conceal(text)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.conceal_value(item)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, item)| (self.conceal(key), self.conceal_value(item)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// The error of a reference to a secret the run does not have.
pub fn unknown_secret(name: &str) -> Problem {
    Problem::authorization(format!(
        "the secret {name:?} is not defined for this run: pass it with --secret {name}=… or \
         through an Environment (--environment NAME)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets() -> Secrets {
        Secrets::new(BTreeMap::from([(
            "TOKEN".to_string(),
            "s3cr3t-value".to_string(),
        )]))
    }

    #[test]
    fn placeholders_are_revealed_inside_strings_and_values() {
        let secrets = secrets();
        assert_eq!(
            secrets.reveal("Bearer ⟨secret:TOKEN⟩").unwrap(),
            "Bearer s3cr3t-value"
        );
        assert_eq!(
            secrets
                .reveal_value(&json!({"auth": ["⟨secret:TOKEN⟩"], "n": 1}))
                .unwrap(),
            json!({"auth": ["s3cr3t-value"], "n": 1})
        );
        let error = secrets.reveal("⟨secret:OTHER⟩").unwrap_err();
        assert_eq!(error.status, 403);
        assert!(error.detail.unwrap().contains("\"OTHER\""));
    }

    #[test]
    fn echoed_values_are_concealed_and_debug_shows_names_only() {
        let secrets = secrets();
        assert_eq!(
            secrets.conceal_value(&json!({"echo": "got s3cr3t-value"})),
            json!({"echo": "got ⟨secret:TOKEN⟩"})
        );
        assert_eq!(format!("{secrets:?}"), "[\"TOKEN\"]");
    }
}
