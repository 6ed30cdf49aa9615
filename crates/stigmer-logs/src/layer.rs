//! A `tracing` layer that writes [`LogRecord`] lines, and the one-call setup our components use.

use crate::record::{Level, LogRecord};
use crate::rotate::SharedLogFile;
use serde_json::{Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Where [`JsonLayer`] writes.
pub enum LogSink {
    Stdout,
    Stderr,
    File(SharedLogFile),
}

/// Writes one JSON line per event: the event's fields plus those of every span in scope
/// (outer spans first, inner ones and then the event override), and `target`.
///
/// Events go to the layer's sink as its component, except those of a routed target (see
/// [`JsonLayer::route`]): one process can thus write the logs of two components, as the
/// daemon does for the API server it hosts.
pub struct JsonLayer {
    default: Destination,
    routes: Vec<(String, Destination)>,
}

struct Destination {
    component: String,
    sink: LogSink,
}

impl JsonLayer {
    pub fn new(component: impl Into<String>, sink: LogSink) -> JsonLayer {
        JsonLayer {
            default: Destination {
                component: component.into(),
                sink,
            },
            routes: Vec::new(),
        }
    }

    /// Writes the events of `target` (a module path such as `stigmer_server`, with everything
    /// below it) as `component` to `sink`. The first matching route wins.
    pub fn route(
        mut self,
        target: impl Into<String>,
        component: impl Into<String>,
        sink: LogSink,
    ) -> JsonLayer {
        self.routes.push((
            target.into(),
            Destination {
                component: component.into(),
                sink,
            },
        ));
        self
    }

    fn destination(&self, target: &str) -> &Destination {
        self.routes
            .iter()
            .find(|(prefix, _)| {
                target
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .map_or(&self.default, |(_, destination)| destination)
    }
}

impl Destination {
    /// Stamps `record` with the current time and writes it.
    ///
    /// The time is taken while holding the sink's lock, so that lines from concurrent threads
    /// reach the sink in `ts` order. Write errors are dropped: logging must never take the
    /// program down.
    fn write(&self, mut record: LogRecord) {
        match &self.sink {
            LogSink::Stdout => {
                let mut out = std::io::stdout().lock();
                record.ts = chrono::Utc::now();
                let _ = out.write_all(with_newline(&record).as_bytes());
            }
            LogSink::Stderr => {
                // Stderr is unbuffered, so the line goes out in one write and cannot be split
                // by a child process sharing the stream.
                let mut out = std::io::stderr().lock();
                record.ts = chrono::Utc::now();
                let _ = out.write_all(with_newline(&record).as_bytes());
            }
            LogSink::File(file) => {
                let _ = file.write_record_now(record);
            }
        }
    }
}

fn with_newline(record: &LogRecord) -> String {
    let mut line = record.to_json_line();
    line.push('\n');
    line
}

/// Span fields, kept in the span's extensions.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let mut visitor = JsonVisitor::default();
        attributes.record(&mut visitor);
        span.extensions_mut().insert(SpanFields(visitor.fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let mut visitor = JsonVisitor::default();
        values.record(&mut visitor);
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(fields) => fields.0.extend(visitor.fields),
            None => extensions.insert(SpanFields(visitor.fields)),
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut fields = Map::new();
        if let Some(scope) = context.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                    fields.extend(span_fields.0.clone());
                }
            }
        }
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        fields.extend(visitor.fields);
        let message = match fields.remove("message") {
            Some(Value::String(text)) => text,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        // A field named like a key of the line would be dropped when the line is written,
        // so it is kept under another name.
        for key in ["ts", "component", "level"] {
            if let Some(value) = fields.remove(key) {
                fields.insert(format!("field_{key}"), value);
            }
        }
        let target = event.metadata().target();
        fields.insert("target".into(), Value::from(target.to_owned()));
        let destination = self.destination(target);
        let record = LogRecord {
            // Replaced by the time of writing, taken under the sink's lock.
            ts: chrono::Utc::now(),
            component: destination.component.clone(),
            level: level_of(event.metadata().level()),
            message,
            fields,
        };
        destination.write(record);
    }
}

fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::TRACE => Level::Trace,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::ERROR => Level::Error,
    }
}

#[derive(Default)]
struct JsonVisitor {
    fields: Map<String, Value>,
}

impl Visit for JsonVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.insert(field.name().into(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.fields
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// Why logging could not be set up.
#[derive(Debug)]
pub enum InitError {
    /// The filter directives (from the caller or `$STIGMER_LOG`) do not parse.
    Filter(String),
    /// A global subscriber was already installed.
    AlreadySet(String),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Filter(message) => write!(f, "invalid log filter: {message}"),
            InitError::AlreadySet(message) => write!(f, "logging is already set up: {message}"),
        }
    }
}

impl std::error::Error for InitError {}

/// Installs the global subscriber: `filter` (or `$STIGMER_LOG`, which wins) and a
/// [`JsonLayer`] writing to `sink`.
pub fn init(component: &str, filter: &str, sink: LogSink) -> Result<(), InitError> {
    init_layer(filter, JsonLayer::new(component, sink))
}

/// Installs the global subscriber: `filter` (or `$STIGMER_LOG`, which wins) and `layer`.
pub fn init_layer(filter: &str, layer: JsonLayer) -> Result<(), InitError> {
    let directive = std::env::var("STIGMER_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| filter.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .map_err(|error| InitError::Filter(format!("{directive:?}: {error}")))?;
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .map_err(|error| InitError::AlreadySet(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotate::RotationPolicy;

    #[test]
    fn events_carry_span_fields_and_the_documented_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-runner.log");
        let file = SharedLogFile::open(&path, RotationPolicy::default()).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLayer::new("agent-runner", LogSink::File(file)));
        // Whole milliseconds, because the line carries no more.
        let before =
            chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!(
                "execution",
                execution_id = "aex-42",
                turn = 1u64,
                attempt = tracing::field::Empty
            );
            let _outer = outer.enter();
            outer.record("attempt", 3i64);
            let inner = tracing::debug_span!("tool", tool = "cat", ok = true);
            let _inner = inner.enter();
            tracing::warn!(
                tool = "ls",
                turn = 2u64,
                level = "mine",
                ratio = 0.5,
                "Tool call started."
            );
            tracing::error!(error = ?std::io::ErrorKind::NotFound, "Second {}.", "event");
        });
        let after = chrono::Utc::now();
        let text = fs_err::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(r#"{"ts":""#), "{}", lines[0]);
        assert!(lines[0].contains(
            r#"Z","component":"agent-runner","level":"warn","message":"Tool call started.","#
        ));

        let record = LogRecord::parse(lines[0]).unwrap();
        assert!(before <= record.ts && record.ts <= after);
        assert_eq!(record.component, "agent-runner");
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.message, "Tool call started.");
        assert_eq!(record.fields["execution_id"], "aex-42");
        assert_eq!(
            record.fields["attempt"], 3,
            "recorded after the span was created"
        );
        assert_eq!(record.fields["ok"], true);
        assert_eq!(record.fields["ratio"], 0.5);
        assert_eq!(
            record.fields["tool"], "ls",
            "the event overrides the inner span"
        );
        assert_eq!(
            record.fields["turn"], 2,
            "the event overrides the outer span"
        );
        assert_eq!(record.fields["field_level"], "mine");
        assert_eq!(record.fields["target"], "stigmer_logs::layer::tests");

        let second = LogRecord::parse(lines[1]).unwrap();
        assert_eq!(second.level, Level::Error);
        assert_eq!(second.message, "Second event.");
        assert_eq!(second.fields["error"], "NotFound");
        assert_eq!(
            second.fields["tool"], "cat",
            "the inner span overrides the outer one"
        );
        assert!(record.ts <= second.ts);
    }

    #[test]
    fn routed_targets_go_to_their_own_file_as_their_component() {
        let dir = tempfile::tempdir().unwrap();
        let daemon =
            SharedLogFile::open(dir.path().join("daemon.log"), RotationPolicy::default()).unwrap();
        let server =
            SharedLogFile::open(dir.path().join("server.log"), RotationPolicy::default()).unwrap();
        let layer = JsonLayer::new("daemon", LogSink::File(daemon)).route(
            "stigmer_server",
            "server",
            LogSink::File(server),
        );
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!(target: "stigmer_server::executions", execution_id = "aex-1", "Execution created.");
            tracing::info!(target: "stigmer_server", "API server serving.");
            tracing::info!(target: "stigmer_serverless", "Not the server.");
            tracing::info!("The daemon's own.");
        });
        let read = |name: &str| -> Vec<LogRecord> {
            fs_err::read_to_string(dir.path().join(name))
                .unwrap()
                .lines()
                .map(|line| LogRecord::parse(line).unwrap())
                .collect()
        };
        let server = read("server.log");
        assert_eq!(server.len(), 2);
        assert!(server.iter().all(|record| record.component == "server"));
        assert_eq!(server[0].fields["execution_id"], "aex-1");
        let daemon = read("daemon.log");
        let messages: Vec<&str> = daemon
            .iter()
            .map(|record| record.message.as_str())
            .collect();
        assert_eq!(messages, ["Not the server.", "The daemon's own."]);
        assert!(daemon.iter().all(|record| record.component == "daemon"));
    }
}
