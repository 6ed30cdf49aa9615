//! How a command fails: one message, optional details and a hint, and an exit code. Printed once,
//! at the top, in the shape `error: what happened` / details / `hint: what to do next`.
//!
//! The exit codes of `stigmer`, all of them:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success (`run`/`watch`: the execution completed) |
//! | 1    | [`EXIT_FAILURE`]: anything else that failed (`run`/`watch`: the execution failed or was cancelled) |
//! | 2    | [`EXIT_INVALID_INPUT`]: invalid input (arguments, configuration, manifests; the server's INVALID_ARGUMENT) |
//! | 3    | [`EXIT_NOT_RUNNING`]: `server status` found no daemon running |
//! | 78   | `stigmer_daemon::EXIT_CONFIG`: a runner refused its environment (hidden `internal` roles) |
//! | 130  | [`EXIT_INTERRUPTED`]: stopped by Ctrl-C |
//!
//! A gRPC status from the daemon becomes a failure in one place, [`status_failure`], through the
//! table [`exit_code_for`]; commands add their own hints on top of it.

use std::process::ExitCode;
use tonic::{Code, Status};

/// Exit code of a failure that is not one of the kinds below.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for invalid input (bad configuration, bad arguments).
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit code of `server status` when nothing runs (as `systemctl status`).
pub const EXIT_NOT_RUNNING: u8 = 3;
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
            code: EXIT_FAILURE,
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
            | stigmer_config::ConfigError::Read { .. } => EXIT_FAILURE,
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

/// The exit code for a gRPC status the daemon answered with: the one table from status code to
/// exit code. Only a request the server judged invalid is the user's input to fix; everything
/// else (not found, refused, unavailable, internal) is a failure.
pub fn exit_code_for(code: Code) -> u8 {
    match code {
        Code::InvalidArgument => EXIT_INVALID_INPUT,
        Code::Ok
        | Code::Cancelled
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss
        | Code::Unauthenticated => EXIT_FAILURE,
    }
}

/// A failed request as a failure: the server's message (it names what went wrong) with the exit
/// code of [`exit_code_for`]. Commands refine it with a hint where one helps.
pub fn status_failure(status: Status) -> Failure {
    let message = if status.message().is_empty() {
        format!(
            "the request failed without a message ({})",
            status.code().description()
        )
    } else {
        status.message().to_owned()
    };
    Failure::new(message).with_code(exit_code_for(status.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_invalid_argument_is_invalid_input() {
        let every_code = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        for code in every_code {
            let expected = if code == Code::InvalidArgument {
                EXIT_INVALID_INPUT
            } else {
                EXIT_FAILURE
            };
            assert_eq!(exit_code_for(code), expected, "{code:?}");
        }
    }

    #[test]
    fn a_daemon_task_that_panicked_ends_the_daemon_with_exit_code_1_and_the_message() {
        let failure = Failure::from(stigmer_daemon::DaemonError::TaskPanicked {
            task: "the API server".into(),
            message: "index out of bounds".into(),
        });
        assert_eq!(failure.code, EXIT_FAILURE);
        assert_eq!(failure.code, 1);
        assert!(
            failure
                .message
                .contains("the API server panicked: index out of bounds"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_status_becomes_its_message_and_exit_code() {
        let refused = status_failure(Status::invalid_argument("spec too large"));
        assert_eq!(refused.message, "spec too large");
        assert_eq!(refused.code, EXIT_INVALID_INPUT);
        assert_eq!(refused.hint, None);
        assert!(refused.details.is_empty());
        let missing = status_failure(Status::not_found("agent \"hello\" not found"));
        assert_eq!(missing.message, "agent \"hello\" not found");
        assert_eq!(missing.code, EXIT_FAILURE);
        let down = status_failure(Status::unavailable("transport error"));
        assert_eq!((down.message.as_str(), down.code), ("transport error", 1));
    }

    #[test]
    fn a_status_without_a_message_still_says_what_happened() {
        let failure = status_failure(Status::new(Code::Internal, ""));
        assert_eq!(
            failure.message,
            "the request failed without a message (Internal error)"
        );
        assert_eq!(failure.code, EXIT_FAILURE);
    }
}
