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
pub struct JsonLayer {
    component: String,
    sink: LogSink,
}

impl JsonLayer {
    pub fn new(component: impl Into<String>, sink: LogSink) -> JsonLayer {
        JsonLayer {
            component: component.into(),
            sink,
        }
    }

    fn write(&self, line: &str) {
        // Logging must never take the program down: write errors are dropped.
        match &self.sink {
            LogSink::Stdout => {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            LogSink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            LogSink::File(file) => {
                let _ = file.write_line(line);
            }
        }
    }
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
        fields.insert(
            "target".into(),
            Value::from(event.metadata().target().to_owned()),
        );
        let record = LogRecord {
            ts: chrono::Utc::now(),
            component: self.component.clone(),
            level: level_of(event.metadata().level()),
            message,
            fields,
        };
        self.write(&record.to_json_line());
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
    Filter(String),
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
    let directive = std::env::var("STIGMER_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| filter.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .map_err(|error| InitError::Filter(format!("{directive:?}: {error}")))?;
    tracing_subscriber::registry()
        .with(filter)
        .with(JsonLayer::new(component, sink))
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
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("execution", execution_id = "aex-42", turn = 1u64);
            let _entered = span.enter();
            tracing::warn!(tool = "ls", turn = 2u64, "Tool call started.");
        });
        let text = fs_err::read_to_string(&path).unwrap();
        let record = LogRecord::parse(text.lines().next().unwrap()).unwrap();
        assert_eq!(record.component, "agent-runner");
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.message, "Tool call started.");
        assert_eq!(record.fields["execution_id"], "aex-42");
        assert_eq!(record.fields["tool"], "ls");
        assert_eq!(record.fields["turn"], 2, "the event overrides its span");
        assert!(
            record.fields["target"]
                .as_str()
                .unwrap()
                .starts_with("stigmer_logs")
        );
    }
}
