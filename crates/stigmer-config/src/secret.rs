//! A string that must never appear in logs, status output or error messages.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A secret value (API key, access token). `Debug` and `Display` print `****`; the value is only
/// reachable through [`Secret::expose`], which makes every use visible in review.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Returns the value itself. Call this only where the secret is actually used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let secret = Secret::new("sk-very-secret");
        assert_eq!(format!("{secret}"), "****");
        assert!(!format!("{secret:?}").contains("very-secret"));
        assert_eq!(secret.expose(), "sk-very-secret");
    }
}
