//! One log line: [`LogRecord`], its JSON form, and the capture of foreign output lines.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// Severity of a line, lowercase on the wire.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// Parses the usual spellings (`WARNING`, `err`, `fatal`, zap's `dpanic`, ...).
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(Level::Trace),
            "debug" => Some(Level::Debug),
            "info" | "information" | "notice" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" | "err" | "fatal" | "panic" | "dpanic" | "critical" | "crit" => {
                Some(Level::Error)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Which output stream of a child a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One log line.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub ts: DateTime<Utc>,
    pub component: String,
    pub level: Level,
    pub message: String,
    pub fields: Map<String, Value>,
}

/// `2026-11-23T05:06:58.123Z`.
pub fn format_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

const RESERVED: [&str; 4] = ["ts", "component", "level", "message"];

impl LogRecord {
    /// One JSON line (no newline) with the keys in the order `ts`, `component`, `level`,
    /// `message`, then the fields.
    pub fn to_json_line(&self) -> String {
        let mut line = String::with_capacity(96 + self.message.len());
        line.push_str("{\"ts\":\"");
        line.push_str(&format_ts(self.ts));
        line.push_str("\",\"component\":");
        push_json_string(&mut line, &self.component);
        line.push_str(",\"level\":\"");
        line.push_str(self.level.as_str());
        line.push_str("\",\"message\":");
        push_json_string(&mut line, &self.message);
        for (key, value) in &self.fields {
            if RESERVED.contains(&key.as_str()) {
                continue;
            }
            line.push(',');
            push_json_string(&mut line, key);
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push('}');
        line
    }

    /// Parses a line in this format; `None` for anything else.
    pub fn parse(line: &str) -> Option<LogRecord> {
        let Value::Object(mut object) = serde_json::from_str::<Value>(line.trim()).ok()? else {
            return None;
        };
        let ts = parse_ts(object.get("ts")?.as_str()?)?;
        let component = object.get("component")?.as_str()?.to_owned();
        let level = Level::parse(object.get("level")?.as_str()?)?;
        let message = object.get("message")?.as_str()?.to_owned();
        for key in RESERVED {
            object.remove(key);
        }
        Some(LogRecord {
            ts,
            component,
            level,
            message,
            fields: object,
        })
    }
}

fn parse_ts(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|ts| ts.with_timezone(&Utc))
}

fn push_json_string(out: &mut String, text: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into()));
}

/// Turns one output line of a child into a record; `None` for blank lines.
///
/// Lines already in our format keep their own `ts`, level and fields (the component is set to
/// `component`). Other structured lines (zap, logrus, slog: `level`/`lvl`/`severity`,
/// `msg`/`message`) keep their level and message; their own timestamp moves to the field
/// `source_ts` and the record gets the capture time, because foreign timestamps come in many
/// formats and must not break the time order of the file. Plain text gets the capture time, a
/// level guessed from the text, and loses ANSI colour codes.
pub fn capture_line(
    component: &str,
    stream: Stream,
    line: &str,
    captured_at: DateTime<Utc>,
) -> Option<LogRecord> {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.trim().is_empty() {
        return None;
    }
    if trimmed.trim_start().starts_with('{')
        && let Ok(Value::Object(object)) = serde_json::from_str::<Value>(trimmed)
    {
        if let Some(mut record) = LogRecord::parse(trimmed) {
            record.component = component.to_owned();
            return Some(record);
        }
        return Some(foreign_structured(component, stream, object, captured_at));
    }
    let message = strip_ansi(trimmed);
    Some(LogRecord {
        ts: captured_at,
        component: component.to_owned(),
        level: guess_level(&message).unwrap_or(match stream {
            Stream::Stdout | Stream::Stderr => Level::Info,
        }),
        message,
        fields: Map::new(),
    })
}

fn foreign_structured(
    component: &str,
    stream: Stream,
    mut object: Map<String, Value>,
    captured_at: DateTime<Utc>,
) -> LogRecord {
    let level = ["level", "lvl", "severity"]
        .iter()
        .find_map(|key| {
            let level = object.get(*key)?.as_str().and_then(Level::parse)?;
            object.remove(*key);
            Some(level)
        })
        .unwrap_or(match stream {
            Stream::Stdout | Stream::Stderr => Level::Info,
        });
    let message = ["msg", "message"]
        .iter()
        .find_map(|key| match object.remove(*key)? {
            Value::String(text) => Some(text),
            other => Some(other.to_string()),
        })
        .unwrap_or_default();
    for key in ["ts", "time", "timestamp"] {
        if let Some(value) = object.remove(key) {
            object.insert("source_ts".into(), value);
            break;
        }
    }
    object.remove("component");
    LogRecord {
        ts: captured_at,
        component: component.to_owned(),
        level,
        message,
        fields: object,
    }
}

fn guess_level(text: &str) -> Option<Level> {
    let upper = text.to_ascii_uppercase();
    let head: String = upper.chars().take(48).collect();
    if ["ERROR", "FATAL", "PANIC"]
        .iter()
        .any(|token| head.contains(token))
    {
        Some(Level::Error)
    } else if head.contains("WARN") {
        Some(Level::Warn)
    } else if head.contains("DEBUG") {
        Some(Level::Debug)
    } else {
        None
    }
}

/// Removes ANSI escape sequences (colours, cursor moves).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // CSI: parameters and intermediates, then one final byte in @..~.
            for next in chars.by_ref() {
                if ('@'..='~').contains(&next) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().unwrap()
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        assert_eq!(format_ts(at(1_795_000_000_123)), "2026-11-18T11:06:40.123Z");
        assert_eq!(format_ts(at(1_795_000_000_000)), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn a_record_round_trips_with_ordered_keys() {
        // Inserted in the order they print, so the test holds whether or not serde_json keeps
        // insertion order (a feature another crate may switch on for the whole build).
        let mut fields = Map::new();
        fields.insert("attempt".into(), Value::from(2));
        fields.insert("execution_id".into(), Value::from("aex-1"));
        let record = LogRecord {
            ts: at(1_795_000_000_123),
            component: "agent-runner".into(),
            level: Level::Warn,
            message: "say \"hi\"\n".into(),
            fields,
        };
        let line = record.to_json_line();
        assert_eq!(
            line,
            r#"{"ts":"2026-11-18T11:06:40.123Z","component":"agent-runner","level":"warn","message":"say \"hi\"\n","attempt":2,"execution_id":"aex-1"}"#
        );
        assert_eq!(LogRecord::parse(&line), Some(record));
        assert_eq!(LogRecord::parse("plain text"), None);
        assert_eq!(LogRecord::parse(r#"{"msg":"x"}"#), None);
    }

    #[test]
    fn our_own_lines_keep_their_time_and_fields() {
        let line = r#"{"ts":"2026-11-18T11:06:40.123Z","component":"x","level":"debug","message":"m","k":1}"#;
        let record = capture_line("agent-runner", Stream::Stdout, line, at(0)).unwrap();
        assert_eq!(record.ts, at(1_795_000_000_123));
        assert_eq!(record.component, "agent-runner");
        assert_eq!(record.level, Level::Debug);
        assert_eq!(record.fields["k"], 1);
    }

    #[test]
    fn foreign_structured_lines_get_the_capture_time() {
        let line = r#"{"level":"warn","ts":"2026-01-01T00:00:00.000Z","msg":"frontend slow","service":"frontend"}"#;
        let record = capture_line("temporal", Stream::Stderr, line, at(5)).unwrap();
        assert_eq!(record.ts, at(5));
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.message, "frontend slow");
        assert_eq!(record.fields["service"], "frontend");
        assert_eq!(record.fields["source_ts"], "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn plain_text_is_wrapped_without_colours() {
        let record = capture_line(
            "temporal",
            Stream::Stderr,
            "\u{1b}[31mERROR\u{1b}[0m disk full\r\n",
            at(7),
        )
        .unwrap();
        assert_eq!(record.message, "ERROR disk full");
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.ts, at(7));
        let info = capture_line("x", Stream::Stdout, "started", at(7)).unwrap();
        assert_eq!(info.level, Level::Info);
        assert!(capture_line("x", Stream::Stdout, "   ", at(7)).is_none());
    }

    #[test]
    fn levels_parse_common_spellings() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("dpanic"), Some(Level::Error));
        assert_eq!(Level::parse("fatal"), Some(Level::Error));
        assert_eq!(Level::parse("nope"), None);
        assert!(Level::Debug < Level::Error);
    }
}
