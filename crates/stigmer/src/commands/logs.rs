//! `stigmer server logs`: the components' log files merged in time order, filtered, and
//! followed. The reading is `stigmer_logs::read`; this is the wiring and the printing.

use crate::cli::LogsArgs;
use crate::failure::{EXIT_INTERRUPTED, EXIT_INVALID_INPUT, Failure};
use crate::printer::Printer;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use stigmer_config::{Component, EnvVars};
use stigmer_logs::read::{FieldValue, Filter, Line, LineParts, LogSet, Source, Tail};
use stigmer_logs::{Level, format_ts};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// How long a followed line is held so that lines read out of order come out in time order.
const HOLD: Duration = Duration::from_millis(250);
/// How often followed files are looked at.
const POLL: Duration = Duration::from_millis(100);
/// Lines of history when neither `--tail` nor `--since` says otherwise.
const DEFAULT_TAIL: usize = 100;
/// Fields not worth a column in the human format (still in `--json`): the code location, and
/// what the Temporal SDK's spans add (the span's name and kind, and the workflow and run ids,
/// which repeat the line's `execution_id`).
const HIDDEN_FIELDS: [&str; 3] = ["target", "temporalWorkflowID", "temporalRunID"];
/// Prefixes of more such fields.
const HIDDEN_PREFIXES: [&str; 1] = ["otel."];

pub async fn logs(args: LogsArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since > until
    {
        return Err(Failure::new(format!(
            "--since ({}) is after --until ({})",
            format_ts(since),
            format_ts(until)
        ))
        .with_code(EXIT_INVALID_INPUT));
    }
    let mut components: Vec<Component> = Vec::new();
    for component in &args.components {
        if !components.contains(component) {
            components.push(*component);
        }
    }
    if components.is_empty() {
        components = Component::ALL.to_vec();
    }
    let sources = components
        .iter()
        .map(|component| Source {
            component: component.name().to_owned(),
            path: home.log_file(*component),
        })
        .collect();
    let filter = Filter {
        since: args.since,
        until: args.until,
        min_level: args.level,
        grep: args.grep.clone(),
        execution: args.execution.clone(),
    };
    let tail = args.tail.unwrap_or(if args.since.is_some() {
        Tail::All
    } else {
        Tail::Last(DEFAULT_TAIL)
    });
    let unreadable = |error: std::io::Error| {
        Failure::new(format!("cannot read the logs: {error}")).with_hint(Some(format!(
            "the logs are in {}",
            home.logs_dir().display()
        )))
    };
    let set = LogSet::open(sources).map_err(unreadable)?;
    let printer = Printer::stderr();
    if set.is_empty() {
        let note = format!("no logs yet in {}", home.logs_dir().display());
        if !args.follow {
            printer.line(&note);
            printer.hint("start the stack with `stigmer server start`");
            return Ok(ExitCode::SUCCESS);
        }
        printer.line(&format!("{note}; waiting for them (Ctrl-C stops)"));
    }
    let style = LogStyle {
        color: !args.no_color
            && !args.json
            && std::env::var_os(EnvVars::NO_COLOR).is_none()
            && std::io::stdout().is_terminal(),
        json: args.json,
    };
    let mut out = LogOutput::new(style, set.components());
    // Ctrl-C is handled from the start, so that stopping during a long history ends the same
    // way as stopping while following: a flag the history checks before each line, and a
    // wake-up for the follow loop.
    let mut interrupts = signal(SignalKind::interrupt())
        .map_err(|error| Failure::new(format!("cannot handle Ctrl-C: {error}")))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let interrupt = Arc::new(Notify::new());
    tokio::spawn({
        let (interrupted, interrupt) = (interrupted.clone(), interrupt.clone());
        async move {
            while interrupts.recv().await.is_some() {
                interrupted.store(true, Ordering::Relaxed);
                interrupt.notify_one();
            }
        }
    });

    let written = set.history(&filter, tail, |line| {
        if interrupted.load(Ordering::Relaxed) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        out.write(line)
    });
    let written = match written {
        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {
            // What was printed so far is shown whole before stopping.
            ended(out.flush()).map_err(unreadable)?;
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        written => written.and_then(|()| out.flush()),
    };
    if let Some(code) = ended(written).map_err(unreadable)? {
        return Ok(code);
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }

    let until = args.until;
    let mut follower = set.follow(filter, HOLD);
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let now = Instant::now();
                let past_until = until.is_some_and(|until| {
                    chrono::Utc::now() > until + chrono::Duration::from_std(HOLD).unwrap_or_default()
                });
                let written = follower
                    .poll(now)
                    .and_then(|()| {
                        if past_until {
                            follower.finish(|line| out.write(line))
                        } else {
                            follower.release(now, |line| out.write(line))
                        }
                    })
                    .and_then(|()| out.flush());
                if let Some(code) = ended(written).map_err(unreadable)? {
                    return Ok(code);
                }
                if past_until {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            () = interrupt.notified() => {
                // What was read is shown before stopping.
                let written = follower
                    .finish(|line| out.write(line))
                    .and_then(|()| out.flush());
                ended(written).map_err(unreadable)?;
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
        }
    }
}

/// A closed stdout (`stigmer server logs | head`) ends the command quietly and successfully.
fn ended(result: std::io::Result<()>) -> Result<Option<ExitCode>, std::io::Error> {
    match result {
        Ok(()) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(Some(ExitCode::SUCCESS)),
        Err(error) => Err(error),
    }
}

/// How lines are printed.
#[derive(Clone, Copy, Debug)]
pub struct LogStyle {
    pub color: bool,
    pub json: bool,
}

/// Buffered stdout for log lines.
struct LogOutput {
    style: LogStyle,
    components: Vec<String>,
    width: usize,
    stdout: std::io::BufWriter<Box<dyn Write + Send>>,
    /// The human form of the current line (reused).
    text: String,
}

impl LogOutput {
    fn new(style: LogStyle, components: Vec<String>) -> LogOutput {
        let width = components.iter().map(String::len).max().unwrap_or(0);
        LogOutput {
            style,
            components,
            width,
            stdout: std::io::BufWriter::with_capacity(256 * 1024, raw_stdout()),
            text: String::new(),
        }
    }

    fn write(&mut self, line: &Line) -> std::io::Result<()> {
        let component = &self.components[line.source];
        if self.style.json {
            self.stdout.write_all(line.json(component).as_bytes())?;
        } else {
            self.text.clear();
            write_human(
                &mut self.text,
                &line.parts(component),
                component,
                self.width,
                self.style.color,
            );
            self.stdout.write_all(self.text.as_bytes())?;
        }
        self.stdout.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdout.flush()
    }
}

/// Stdout without its line buffering (lines are buffered here and flushed in bulk): a
/// duplicate of its descriptor, or stdout itself if that fails.
fn raw_stdout() -> Box<dyn Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(descriptor) => Box::new(std::fs::File::from(descriptor)),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// One line for people: time, component (padded to `width`, a colour each), level, message,
/// then the fields as `key=value`.
#[cfg(test)]
fn human_line(parts: &LineParts, component: &str, width: usize, color: bool) -> String {
    let mut line = String::new();
    write_human(&mut line, parts, component, width, color);
    line
}

fn write_human(out: &mut String, parts: &LineParts, component: &str, width: usize, color: bool) {
    let paint = |out: &mut String, code: &str, text: &str| {
        if color {
            out.push_str("\x1b[");
            out.push_str(code);
            out.push('m');
            out.push_str(text);
            out.push_str("\x1b[0m");
        } else {
            out.push_str(text);
        }
    };
    paint(out, "2", &parts.ts);
    out.push(' ');
    let padded = format!("{component:<width$}");
    paint(out, component_color(component), &padded);
    out.push(' ');
    let (level, code) = match parts.level {
        Level::Trace => ("TRACE", "2"),
        Level::Debug => ("DEBUG", "2"),
        Level::Info => ("INFO ", "32"),
        Level::Warn => ("WARN ", "33"),
        Level::Error => ("ERROR", "1;31"),
    };
    paint(out, code, level);
    out.push(' ');
    push_message(out, &parts.message);
    for (key, value) in &parts.fields {
        if HIDDEN_FIELDS.contains(&key.as_ref())
            || HIDDEN_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
        {
            continue;
        }
        out.push(' ');
        if color {
            out.push_str("\x1b[2m");
            out.push_str(key);
            out.push_str("=\x1b[0m");
        } else {
            out.push_str(key);
            out.push('=');
        }
        push_field_value(out, value);
    }
}

/// The message on one line and inert: control characters (a newline, a terminal escape from a
/// tool's output) are written as escapes, so no line can forge another or drive the terminal.
fn push_message(out: &mut String, message: &str) {
    let control = |c: char| c.is_control() && c != '\t';
    if !message.chars().any(control) {
        out.push_str(message);
        return;
    }
    for c in message.chars() {
        if control(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
}

fn component_color(component: &str) -> &'static str {
    match component {
        "daemon" => "34",
        "server" => "35",
        "temporal" => "36",
        "agent-runner" => "32",
        "workflow-runner" => "33",
        _ => "37",
    }
}

/// Text as it is when it reads unambiguously, quoted otherwise; anything else as JSON.
fn push_field_value(out: &mut String, value: &FieldValue) {
    use std::fmt::Write as _;
    match value {
        FieldValue::Text(text)
            if !text.is_empty()
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=')) =>
        {
            out.push_str(text);
        }
        FieldValue::Text(text) => {
            let _ = write!(out, "{}", Value::from(text.as_ref()));
        }
        FieldValue::Json(value) => {
            let _ = write!(out, "{value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, ServerCommand};
    use clap::Parser;
    use serde_json::json;
    use stigmer_logs::LogRecord;

    fn record(
        offset_ms: i64,
        component: &str,
        level: Level,
        message: &str,
        fields: Value,
    ) -> LogRecord {
        LogRecord {
            ts: chrono::DateTime::from_timestamp_millis(1_795_000_000_000 + offset_ms).unwrap(),
            component: component.into(),
            level,
            message: message.into(),
            fields: match fields {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
        }
    }

    fn sample() -> Vec<LogRecord> {
        vec![
            record(
                0,
                "daemon",
                Level::Info,
                "Child ready.",
                json!({"ready_ms": 79, "target": "stigmer_daemon::unit", "unit": "agent-runner"}),
            ),
            record(
                12,
                "temporal",
                Level::Warn,
                "frontend slow",
                json!({"source_ts": "2026-11-18T11:06:40.011Z"}),
            ),
            record(
                40,
                "server",
                Level::Info,
                "Execution created.",
                json!({"agent": "helper", "execution_id": "aex-1"}),
            ),
            record(
                85,
                "agent-runner",
                Level::Info,
                "Model turn finished.",
                json!({"attempt": 1, "execution_id": "aex-1", "otel.kind": "server", "otel.name": "RunActivity:stigmer.ModelTurn", "temporalActivityID": "4", "temporalRunID": "01a2085c-49bf-726e-ab1a-14dee6450a34", "temporalWorkflowID": "aex-1", "tokens": 42, "tool_calls": 0, "turn": 1}),
            ),
            record(
                85,
                "agent-runner",
                Level::Error,
                "Cannot record events.",
                json!({"error": "the execution has ended", "reason": ""}),
            ),
            record(
                90,
                "workflow-runner",
                Level::Debug,
                "Polling.",
                json!({"queue": "workflow_execution_runner"}),
            ),
        ]
    }

    fn transcript(color: bool) -> String {
        sample()
            .iter()
            .map(|record| {
                human_line(
                    &LineParts::from_record(record),
                    &record.component,
                    "workflow-runner".len(),
                    color,
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_human_format_has_time_component_level_message_and_fields() {
        insta::assert_snapshot!(transcript(false), @r#"
        2026-11-18T11:06:40.000Z daemon          INFO  Child ready. ready_ms=79 unit=agent-runner
        2026-11-18T11:06:40.012Z temporal        WARN  frontend slow source_ts=2026-11-18T11:06:40.011Z
        2026-11-18T11:06:40.040Z server          INFO  Execution created. agent=helper execution_id=aex-1
        2026-11-18T11:06:40.085Z agent-runner    INFO  Model turn finished. attempt=1 execution_id=aex-1 temporalActivityID=4 tokens=42 tool_calls=0 turn=1
        2026-11-18T11:06:40.085Z agent-runner    ERROR Cannot record events. error="the execution has ended" reason=""
        2026-11-18T11:06:40.090Z workflow-runner DEBUG Polling. queue=workflow_execution_runner
        "#);
    }

    #[test]
    fn lines_read_from_a_file_print_like_their_records() {
        // The printer takes canonical lines apart without building records.
        let from_lines: Vec<String> = sample()
            .iter()
            .map(|record| {
                let line = Line::new(0, record.ts, record.to_json_line());
                human_line(&line.parts(&record.component), &record.component, 15, false)
            })
            .collect();
        assert_eq!(from_lines.join("\n"), transcript(false));
    }

    #[test]
    fn messages_cannot_forge_lines_or_drive_the_terminal() {
        let mut record = sample().remove(0);
        record.message = "first\nline 2\r\x1b[2Jcleared\ttab".to_owned();
        record.fields.clear();
        let line = human_line(&LineParts::from_record(&record), "server", 6, false);
        assert!(!line.contains(['\n', '\r', '\x1b']), "{line:?}");
        assert!(
            line.ends_with("first\\nline 2\\r\\u{1b}[2Jcleared\ttab"),
            "{line:?}"
        );
    }

    #[test]
    fn on_a_terminal_each_component_has_its_colour() {
        let coloured = transcript(true).replace('\x1b', "^");
        insta::assert_snapshot!(coloured, @r#"
        ^[2m2026-11-18T11:06:40.000Z^[0m ^[34mdaemon         ^[0m ^[32mINFO ^[0m Child ready. ^[2mready_ms=^[0m79 ^[2munit=^[0magent-runner
        ^[2m2026-11-18T11:06:40.012Z^[0m ^[36mtemporal       ^[0m ^[33mWARN ^[0m frontend slow ^[2msource_ts=^[0m2026-11-18T11:06:40.011Z
        ^[2m2026-11-18T11:06:40.040Z^[0m ^[35mserver         ^[0m ^[32mINFO ^[0m Execution created. ^[2magent=^[0mhelper ^[2mexecution_id=^[0maex-1
        ^[2m2026-11-18T11:06:40.085Z^[0m ^[32magent-runner   ^[0m ^[32mINFO ^[0m Model turn finished. ^[2mattempt=^[0m1 ^[2mexecution_id=^[0maex-1 ^[2mtemporalActivityID=^[0m4 ^[2mtokens=^[0m42 ^[2mtool_calls=^[0m0 ^[2mturn=^[0m1
        ^[2m2026-11-18T11:06:40.085Z^[0m ^[32magent-runner   ^[0m ^[1;31mERROR^[0m Cannot record events. ^[2merror=^[0m"the execution has ended" ^[2mreason=^[0m""
        ^[2m2026-11-18T11:06:40.090Z^[0m ^[33mworkflow-runner^[0m ^[2mDEBUG^[0m Polling. ^[2mqueue=^[0mworkflow_execution_runner
        "#);
        assert!(!transcript(false).contains('\x1b'));
    }

    #[test]
    fn the_json_format_is_one_object_per_line_with_the_fields() {
        let lines: Vec<String> = sample()
            .iter()
            .enumerate()
            .map(|(index, record)| {
                Line::new(index, record.ts, record.to_json_line())
                    .json(&record.component)
                    .into_owned()
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"), @r#"
        {"ts":"2026-11-18T11:06:40.000Z","component":"daemon","level":"info","message":"Child ready.","ready_ms":79,"target":"stigmer_daemon::unit","unit":"agent-runner"}
        {"ts":"2026-11-18T11:06:40.012Z","component":"temporal","level":"warn","message":"frontend slow","source_ts":"2026-11-18T11:06:40.011Z"}
        {"ts":"2026-11-18T11:06:40.040Z","component":"server","level":"info","message":"Execution created.","agent":"helper","execution_id":"aex-1"}
        {"ts":"2026-11-18T11:06:40.085Z","component":"agent-runner","level":"info","message":"Model turn finished.","attempt":1,"execution_id":"aex-1","otel.kind":"server","otel.name":"RunActivity:stigmer.ModelTurn","temporalActivityID":"4","temporalRunID":"01a2085c-49bf-726e-ab1a-14dee6450a34","temporalWorkflowID":"aex-1","tokens":42,"tool_calls":0,"turn":1}
        {"ts":"2026-11-18T11:06:40.085Z","component":"agent-runner","level":"error","message":"Cannot record events.","error":"the execution has ended","reason":""}
        {"ts":"2026-11-18T11:06:40.090Z","component":"workflow-runner","level":"debug","message":"Polling.","queue":"workflow_execution_runner"}
        "#);
        // A line that is not in our format (it should not happen) still comes out as one.
        let plain = Line::new(0, sample()[0].ts, "WARN disk almost full");
        insta::assert_snapshot!(plain.json("temporal"), @r#"{"ts":"2026-11-18T11:06:40.000Z","component":"temporal","level":"warn","message":"WARN disk almost full"}"#);
    }

    fn parse(args: &[&str]) -> Result<LogsArgs, clap::Error> {
        let mut all = vec!["stigmer", "server", "logs"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Server(ServerCommand::Logs(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn options_parse() {
        let args = parse(&[
            "agent-runner",
            "server",
            "-f",
            "-n",
            "all",
            "--since",
            "2026-11-23T05:06:58Z",
            "--until",
            "10m",
            "--grep",
            "turn=[0-9]",
            "--level",
            "warning",
            "--execution",
            "aex-1",
            "--json",
            "--no-color",
        ])
        .unwrap();
        assert_eq!(args.components, [Component::AgentRunner, Component::Server]);
        assert!(args.follow && args.json && args.no_color);
        assert_eq!(args.tail, Some(Tail::All));
        assert_eq!(format_ts(args.since.unwrap()), "2026-11-23T05:06:58.000Z");
        assert!(args.until.unwrap() < chrono::Utc::now());
        assert!(args.grep.unwrap().is_match("turn=3"));
        assert_eq!(args.level, Some(Level::Warn));
        assert_eq!(args.execution.as_deref(), Some("aex-1"));
        let defaults = parse(&[]).unwrap();
        assert!(defaults.components.is_empty() && defaults.tail.is_none() && !defaults.follow);
        assert_eq!(parse(&["--tail", "0"]).unwrap().tail, Some(Tail::Last(0)));
    }

    #[test]
    fn bad_options_are_usage_errors_that_say_what_is_valid() {
        let error = parse(&["scheduler"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let text = error.to_string();
        assert!(
            text.contains("daemon, temporal, server, agent-runner, workflow-runner"),
            "{text}"
        );
        for args in [
            &["--tail", "some"][..],
            &["--since", "yesterday"],
            &["--grep", "("],
            &["--level", "loud"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
        let text = parse(&["--since", "10x"]).unwrap_err().to_string();
        assert!(text.contains("1h30m"), "{text}");
    }
}
