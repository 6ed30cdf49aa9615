//! How a command fails: one message, optional details and a hint, and an exit code. Printed once,
//! at the top, in the shape `error: what happened` / details / `hint: what to do next`.

use std::process::ExitCode;

/// Exit code for invalid input (bad configuration, bad arguments).
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub details: Vec<String>,
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
            details: Vec::new(),
            hint: None,
        }
    }

    pub fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    /// Prints the failure to stderr and returns its exit code.
    pub fn report(self) -> ExitCode {
        let printer = crate::printer::Printer::stderr();
        printer.error(&self.message);
        for line in &self.details {
            printer.line(&format!("  {line}"));
        }
        if let Some(hint) = &self.hint {
            printer.hint(hint);
        }
        ExitCode::from(self.code)
    }
}

impl From<stigmer_config::ConfigError> for Failure {
    fn from(error: stigmer_config::ConfigError) -> Self {
        let code = match error {
            stigmer_config::ConfigError::TemporalNotFound { .. }
            | stigmer_config::ConfigError::TemporalBinaryInvalid { .. }
            | stigmer_config::ConfigError::Read { .. } => 1,
            _ => EXIT_INVALID_INPUT,
        };
        Failure::new(error.to_string())
            .with_code(code)
            .with_hint(error.hint())
    }
}

impl From<stigmer_daemon::DaemonError> for Failure {
    fn from(error: stigmer_daemon::DaemonError) -> Self {
        Failure::new(error.to_string()).with_hint(error.hint())
    }
}
