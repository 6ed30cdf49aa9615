//! The one place that writes for people: colour only on a terminal and without `NO_COLOR`,
//! readable without colour.

use std::io::{IsTerminal, Write};

/// Writes human-facing lines to stderr.
pub struct Printer {
    color: bool,
    terminal: bool,
}

impl Printer {
    pub fn stderr() -> Self {
        let terminal = std::io::stderr().is_terminal();
        Printer {
            color: terminal && std::env::var_os(stigmer_config::EnvVars::NO_COLOR).is_none(),
            terminal,
        }
    }

    /// Whether stderr is a terminal (then symbols such as `✓` are used).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Whether lines are coloured.
    pub fn has_color(&self) -> bool {
        self.color
    }

    pub fn line(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "{text}");
    }

    /// A step that completed: `✓ text` on a terminal, `text` otherwise.
    pub fn step(&self, text: &str) {
        if self.terminal {
            self.line(&format!("{} {text}", self.paint("32", "✓")));
        } else {
            self.line(text);
        }
    }

    pub fn error(&self, text: &str) {
        self.line(&format!("{} {text}", self.paint("1;31", "error:")));
    }

    pub fn warning(&self, text: &str) {
        self.line(&format!("{} {text}", self.paint("1;33", "warning:")));
    }

    /// A question on the current line, for an answer typed after it.
    pub fn prompt(&self, text: &str) {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{text}");
        let _ = stderr.flush();
    }

    pub fn hint(&self, text: &str) {
        self.line(&format!("{} {text}", self.paint("1;36", "hint:")));
    }

    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Writes data to stdout (tables, JSON); a closed pipe is not an error worth a panic.
pub fn print_data(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// Writes text to stdout as it arrives (no newline added) and flushes it, so a reader sees an
/// answer while it is being written.
pub fn print_text(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
