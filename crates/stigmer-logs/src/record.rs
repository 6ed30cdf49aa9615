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

    /// The lowercase wire name.
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

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
/// Lines already in our format (a JSON object with an RFC 3339 `ts`, a `level` and a `message`)
/// keep their own `ts`, level and fields; the component is set to `component`. Other structured
/// lines (zap, logrus, slog: level in `level`/`lvl`/`severity`, message in `msg`/`message`) keep
/// their level and message; their own timestamp moves to the field `source_ts` and the record
/// gets the capture time, because foreign timestamps come in many formats and must not break the
/// time order of the file. Plain text (and JSON without a message key) gets the capture time, a
/// level guessed from the text, and loses ANSI escape sequences.
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
        match own_format(component, object) {
            Ok(record) => return Some(record),
            Err(object) => {
                if MESSAGE_KEYS.iter().any(|key| object.contains_key(*key)) {
                    return Some(foreign_structured(component, stream, object, captured_at));
                }
            }
        }
    }
    let message = strip_ansi(trimmed);
    Some(LogRecord {
        ts: captured_at,
        component: component.to_owned(),
        level: guess_level(&message).unwrap_or_else(|| default_level(stream)),
        message,
        fields: Map::new(),
    })
}

/// The level of a line that says nothing about its level.
///
/// Many programs write ordinary progress to stderr, so the stream alone is not evidence of an
/// error.
fn default_level(stream: Stream) -> Level {
    match stream {
        Stream::Stdout | Stream::Stderr => Level::Info,
    }
}

const LEVEL_KEYS: [&str; 3] = ["level", "lvl", "severity"];
const MESSAGE_KEYS: [&str; 2] = ["msg", "message"];
const TIME_KEYS: [&str; 3] = ["ts", "time", "timestamp"];

/// Reads a line written by one of our own components; gives the object back if it is not one.
///
/// The `component` key is not required, because the supervising daemon knows better which
/// component a line came from.
fn own_format(
    component: &str,
    mut object: Map<String, Value>,
) -> Result<LogRecord, Map<String, Value>> {
    let ts = object.get("ts").and_then(Value::as_str).and_then(parse_ts);
    let level = object
        .get("level")
        .and_then(Value::as_str)
        .and_then(Level::parse);
    let has_message = object.get("message").is_some_and(Value::is_string);
    let (Some(ts), Some(level), true) = (ts, level, has_message) else {
        return Err(object);
    };
    let message = match object.remove("message") {
        Some(Value::String(text)) => text,
        _ => String::new(),
    };
    for key in RESERVED {
        object.remove(key);
    }
    Ok(LogRecord {
        ts,
        component: component.to_owned(),
        level,
        message,
        fields: object,
    })
}

fn foreign_structured(
    component: &str,
    stream: Stream,
    mut object: Map<String, Value>,
    captured_at: DateTime<Utc>,
) -> LogRecord {
    let level = LEVEL_KEYS
        .iter()
        .find_map(|key| {
            let level = object.get(*key).and_then(foreign_level)?;
            object.remove(*key);
            Some(level)
        })
        .unwrap_or_else(|| default_level(stream));
    let message = MESSAGE_KEYS
        .iter()
        .find_map(|key| match object.remove(*key)? {
            Value::String(text) => Some(text),
            other => Some(other.to_string()),
        })
        .unwrap_or_default();
    if let Some(key) = TIME_KEYS.iter().find(|key| object.contains_key(**key))
        && let Some(value) = object.remove(*key)
    {
        object.insert("source_ts".into(), value);
    }
    // Whatever is left under a reserved name (a level we could not read, a second message, the
    // program's own idea of a component) is kept under a `source_` name rather than dropped,
    // because the line format cannot carry two values for one key.
    for key in RESERVED {
        if let Some(value) = object.remove(key) {
            let renamed = format!("source_{key}");
            if !object.contains_key(&renamed) {
                object.insert(renamed, value);
            }
        }
    }
    LogRecord {
        ts: captured_at,
        component: component.to_owned(),
        level,
        message,
        fields: object,
    }
}

/// A foreign level: a name, or a pino/bunyan number (10 trace … 50 error, 60 fatal).
fn foreign_level(value: &Value) -> Option<Level> {
    match value {
        Value::String(text) => Level::parse(text),
        Value::Number(number) => match number.as_u64()? {
            0..=19 => Some(Level::Trace),
            20..=29 => Some(Level::Debug),
            30..=39 => Some(Level::Info),
            40..=49 => Some(Level::Warn),
            _ => Some(Level::Error),
        },
        _ => None,
    }
}

/// Guesses the level of a plain-text line from the first level word near its start.
///
/// Only whole words count, so `0 errors` or `terror` do not make a line an error, and the first
/// level word wins, so `INFO retrying after error` stays informational. `level=warn` and
/// `[ERROR]` are words too. Only the head of the line is looked at, where loggers put the level.
fn guess_level(text: &str) -> Option<Level> {
    let head: String = text.chars().take(64).collect();
    head.split(|c: char| !c.is_ascii_alphabetic())
        .find_map(|word| match word.to_ascii_uppercase().as_str() {
            "TRACE" => Some(Level::Trace),
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" | "FATAL" | "PANIC" | "CRITICAL" => Some(Level::Error),
            _ => None,
        })
}

/// Removes ANSI escape sequences: colours and cursor moves (CSI), and terminal commands such as
/// hyperlinks (OSC), which would otherwise leave unreadable noise in the message.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // CSI: parameters and intermediates, then one final byte in @..~.
                for next in chars.by_ref() {
                    if ('@'..='~').contains(&next) {
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC: ends with BEL or with ST (ESC and a backslash).
                while let Some(next) = chars.next() {
                    if next == '\u{7}' {
                        break;
                    }
                    if next == '\u{1b}' {
                        if chars.peek() == Some(&'\\') {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            // Other escapes: intermediates in space../ and one final character, which the
            // match has already consumed unless it was an intermediate (e.g. ESC ( B).
            Some(' '..='/') => {
                for next in chars.by_ref() {
                    if !(' '..='/').contains(&next) {
                        break;
                    }
                }
            }
            _ => {}
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
        assert_eq!(LogRecord::parse(r#"["not", "an", "object"]"#), None);
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
    fn our_own_lines_need_no_component() {
        let line = r#"{"ts":"2026-11-18T11:06:40.123Z","level":"error","message":"m"}"#;
        let record = capture_line("server", Stream::Stderr, line, at(0)).unwrap();
        assert_eq!(record.ts, at(1_795_000_000_123));
        assert_eq!(record.component, "server");
        assert_eq!(record.level, Level::Error);
        assert!(record.fields.is_empty());
    }

    #[test]
    fn foreign_keys_that_clash_with_ours_are_kept_under_source_names() {
        let line =
            r#"{"level":30,"time":1795000000123,"msg":"m","message":"other","component":"c"}"#;
        let record = capture_line("x", Stream::Stdout, line, at(9)).unwrap();
        assert_eq!(record.ts, at(9));
        assert_eq!(record.level, Level::Info, "pino's numeric info");
        assert_eq!(record.message, "m");
        assert_eq!(record.fields["source_ts"], 1_795_000_000_123_u64);
        assert_eq!(record.fields["source_message"], "other");
        assert_eq!(record.fields["source_component"], "c");
        let unreadable = capture_line("x", Stream::Stdout, r#"{"level":"loud","msg":"m"}"#, at(9));
        assert_eq!(unreadable.unwrap().fields["source_level"], "loud");
    }

    #[test]
    fn json_without_a_message_is_kept_whole() {
        let record = capture_line("x", Stream::Stdout, r#"{"ready":true}"#, at(3)).unwrap();
        assert_eq!(record.message, r#"{"ready":true}"#);
        assert_eq!(record.level, Level::Info);
        assert!(record.fields.is_empty());
    }

    #[test]
    fn plain_text_levels_are_whole_words_and_the_first_wins() {
        let level = |text: &str| {
            capture_line("x", Stream::Stderr, text, at(0))
                .unwrap()
                .level
        };
        assert_eq!(
            level("2026/11/23 05:06:58 ERROR lost the lease"),
            Level::Error
        );
        assert_eq!(level("time=now level=warn msg=slow"), Level::Warn);
        assert_eq!(level("[DEBUG] polling"), Level::Debug);
        assert_eq!(level("INFO retrying after error"), Level::Info);
        assert_eq!(level("finished with 0 errors"), Level::Info);
        assert_eq!(
            level("panic: runtime error: index out of range"),
            Level::Error
        );
    }

    #[test]
    fn escape_sequences_of_all_kinds_are_removed() {
        assert_eq!(
            strip_ansi("\u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{1b}\\ done"),
            "link done"
        );
        assert_eq!(
            strip_ansi("\u{1b}(Bplain\u{1b}7kept\u{1b}[1;32m!"),
            "plainkept!"
        );
        assert_eq!(strip_ansi("trailing \u{1b}["), "trailing ");
    }

    #[test]
    fn levels_parse_common_spellings() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("dpanic"), Some(Level::Error));
        assert_eq!(Level::parse("fatal"), Some(Level::Error));
        assert_eq!(Level::parse("nope"), None);
        assert_eq!(Level::parse("Err"), Some(Level::Error));
        assert_eq!(Level::parse("panic"), Some(Level::Error));
        assert_eq!(Level::Warn.to_string(), "warn");
        assert!(Level::Debug < Level::Error);
    }
}
