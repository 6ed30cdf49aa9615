//! The errors a workflow raises: the DSL's problem-details objects (RFC 7807), with the standard
//! type URIs and the `instance` JSON pointer of the task that raised them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The prefix of the standard error types we raise.
pub const TYPE_PREFIX: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/";
/// The prefix of the older form, accepted in `catch.errors.with.type` (decision D5).
pub const OLD_TYPE_PREFIX: &str = "https://serverlessworkflow.io/dsl/errors/types/";

/// The standard error types, with their default status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Configuration,
    Validation,
    Expression,
    Authentication,
    Authorization,
    Timeout,
    Communication,
    Runtime,
}

impl ErrorType {
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::Configuration => "configuration",
            ErrorType::Validation => "validation",
            ErrorType::Expression => "expression",
            ErrorType::Authentication => "authentication",
            ErrorType::Authorization => "authorization",
            ErrorType::Timeout => "timeout",
            ErrorType::Communication => "communication",
            ErrorType::Runtime => "runtime",
        }
    }

    /// The type URI: `https://serverlessworkflow.io/spec/1.0.0/errors/<name>`.
    pub fn uri(self) -> String {
        format!("{TYPE_PREFIX}{}", self.name())
    }

    pub fn default_status(self) -> u16 {
        match self {
            ErrorType::Configuration | ErrorType::Validation | ErrorType::Expression => 400,
            ErrorType::Authentication => 401,
            ErrorType::Authorization => 403,
            ErrorType::Timeout => 408,
            ErrorType::Communication | ErrorType::Runtime => 500,
        }
    }
}

/// A workflow error: `{type, status, instance, title, detail}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: u16,
    /// The JSON pointer of the task that raised it (`/do/0/tryGetPet/try/0/getPet`); set by
    /// the interpreter when the error leaves the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    /// An error of a standard type with its default status and a detail.
    pub fn new(kind: ErrorType, detail: impl Into<String>) -> Problem {
        Problem {
            kind: kind.uri(),
            status: kind.default_status(),
            instance: None,
            title: None,
            detail: Some(detail.into()),
        }
    }

    pub fn configuration(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorType::Configuration, detail)
    }
    pub fn validation(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorType::Validation, detail)
    }
    pub fn expression(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorType::Expression, detail)
    }
    pub fn authorization(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorType::Authorization, detail)
    }
    pub fn timeout(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorType::Timeout, detail)
    }
    pub fn communication(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorType::Communication, detail)
    }
    pub fn runtime(detail: impl Into<String>) -> Problem {
        Problem::new(ErrorType::Runtime, detail)
    }

    pub fn with_status(mut self, status: u16) -> Problem {
        self.status = status;
        self
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Problem {
        self.title = Some(title.into());
        self
    }

    /// Sets `instance` unless an inner task already did.
    pub fn at(mut self, instance: &str) -> Problem {
        if self.instance.is_none() {
            self.instance = Some(instance.to_string());
        }
        self
    }

    /// Whether `kind` is this error's type, accepting the older URI form (decision D5) and
    /// the bare name (`communication`).
    pub fn type_matches(&self, kind: &str) -> bool {
        normalise_type(kind) == normalise_type(&self.kind)
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn normalise_type(kind: &str) -> &str {
    kind.strip_prefix(TYPE_PREFIX)
        .or_else(|| kind.strip_prefix(OLD_TYPE_PREFIX))
        .unwrap_or(kind)
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = normalise_type(&self.kind);
        write!(f, "{name} error (status {})", self.status)?;
        if let Some(instance) = &self.instance {
            write!(f, " at {instance}")?;
        }
        if let Some(title) = &self.title {
            write!(f, ": {title}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_type_uris_match_the_new_ones() {
        let error = Problem::communication("404 Not Found").with_status(404);
        assert!(error.type_matches("https://serverlessworkflow.io/dsl/errors/types/communication"));
        assert!(
            error.type_matches("https://serverlessworkflow.io/spec/1.0.0/errors/communication")
        );
        assert!(!error.type_matches("https://serverlessworkflow.io/spec/1.0.0/errors/runtime"));
    }

    #[test]
    fn the_instance_is_the_innermost_task() {
        let error = Problem::runtime("x").at("/do/0/a/try/0/b").at("/do/0/a");
        assert_eq!(error.instance.as_deref(), Some("/do/0/a/try/0/b"));
        assert_eq!(
            error.to_string(),
            "runtime error (status 500) at /do/0/a/try/0/b: x"
        );
    }
}
