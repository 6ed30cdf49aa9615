//! The reader on crafted files: merge order, tails, filters, following.

use super::*;
use crate::record::{Level, LogRecord};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// 2026-11-18T11:06:40.000Z, plus `offset` milliseconds.
fn ts(offset: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_795_000_000_000 + offset).unwrap()
}

fn line(offset: i64, component: &str, level: Level, message: &str, fields: Value) -> String {
    let fields: Map<String, Value> = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    LogRecord {
        ts: ts(offset),
        component: component.into(),
        level,
        message: message.into(),
        fields,
    }
    .to_json_line()
}

fn info(offset: i64, component: &str, message: &str) -> String {
    line(offset, component, Level::Info, message, json!({}))
}

fn write(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    fs_err::write(path, text).unwrap();
}

fn append(path: &Path, lines: &[String]) {
    use std::io::Write;
    let mut file = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

struct Logs {
    dir: tempfile::TempDir,
    components: Vec<&'static str>,
}

impl Logs {
    fn new(components: &[&'static str]) -> Logs {
        Logs {
            dir: tempfile::tempdir().unwrap(),
            components: components.to_vec(),
        }
    }

    fn path(&self, component: &str) -> PathBuf {
        self.dir.path().join(format!("{component}.log"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn set(&self) -> LogSet {
        LogSet::open(
            self.components
                .iter()
                .map(|component| Source {
                    component: (*component).into(),
                    path: self.path(component),
                })
                .collect(),
        )
        .unwrap()
    }

    /// `component message` per line of the history.
    fn history(&self, filter: &Filter, tail: Tail) -> Vec<String> {
        let set = self.set();
        let components = set.components();
        let mut out = Vec::new();
        set.history(filter, tail, |line| {
            let record = line.record(&components[line.source]);
            out.push(format!("{} {}", components[line.source], record.message));
            Ok(())
        })
        .unwrap();
        out
    }
}

#[test]
fn history_is_in_time_order_with_ties_in_component_then_file_order() {
    let logs = Logs::new(&["daemon", "server", "agent-runner"]);
    // The daemon writes every 10 ms, the server every 25 ms, the agent-runner in bursts of
    // equal times; several lines share a time across components and within one.
    write(
        &logs.path("daemon"),
        &(0..10)
            .map(|i| info(i * 10, "daemon", &format!("d{i}")))
            .collect::<Vec<_>>(),
    );
    write(
        &logs.path("server"),
        &(0..4)
            .map(|i| info(i * 25, "server", &format!("s{i}")))
            .collect::<Vec<_>>(),
    );
    write(
        &logs.path("agent-runner"),
        &[
            info(50, "agent-runner", "a0"),
            info(50, "agent-runner", "a1"),
            info(50, "agent-runner", "a2"),
            info(95, "agent-runner", "a3"),
        ],
    );
    let merged = logs.history(&Filter::default(), Tail::All);
    assert_eq!(
        merged.join(", "),
        "daemon d0, server s0, daemon d1, daemon d2, server s1, daemon d3, daemon d4, \
         daemon d5, server s2, agent-runner a0, agent-runner a1, agent-runner a2, daemon d6, \
         daemon d7, server s3, daemon d8, daemon d9, agent-runner a3"
    );
}

#[test]
fn history_reads_rotated_files_oldest_first_and_skips_missing_and_empty_sources() {
    let logs = Logs::new(&["temporal", "server", "workflow-runner", "agent-runner"]);
    write(
        &logs.file("server.log.2"),
        &[info(0, "server", "oldest"), info(30, "server", "s30")],
    );
    write(&logs.file("server.log.1"), &[info(40, "server", "s40")]);
    write(&logs.path("server"), &[info(60, "server", "newest")]);
    write(
        &logs.path("temporal"),
        &[info(35, "temporal", "t35"), info(60, "temporal", "t60")],
    );
    write(&logs.path("workflow-runner"), &[]);
    // agent-runner has no file at all.
    assert_eq!(
        logs.history(&Filter::default(), Tail::All),
        [
            "server oldest",
            "server s30",
            "temporal t35",
            "server s40",
            "temporal t60",
            "server newest"
        ]
    );
    assert!(!logs.set().is_empty());
    assert!(Logs::new(&["daemon"]).set().is_empty());
}

#[test]
fn foreign_and_broken_lines_keep_their_place() {
    let logs = Logs::new(&["daemon", "temporal"]);
    let daemon = logs.path("daemon");
    write(
        &daemon,
        &[info(10, "daemon", "d10"), info(30, "daemon", "d30")],
    );
    append(
        &daemon,
        &["not json at all".into(), info(50, "daemon", "d50")],
    );
    write(
        &logs.path("temporal"),
        &[info(20, "temporal", "t20"), info(40, "temporal", "t40")],
    );
    let expected = [
        "daemon d10",
        "temporal t20",
        "daemon d30",
        "daemon not json at all",
        "temporal t40",
        "daemon d50",
    ];
    assert_eq!(logs.history(&Filter::default(), Tail::All), expected);
    assert_eq!(logs.history(&Filter::default(), Tail::Last(100)), expected);
}

#[test]
fn the_tail_is_the_end_of_the_full_merge_and_crosses_rotations() {
    let logs = Logs::new(&["daemon", "server", "agent-runner"]);
    // Pseudo-random rates, with ties, spread over rotated files.
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % 7
    };
    for component in ["daemon", "server", "agent-runner"] {
        let mut time = 0;
        let mut lines = Vec::new();
        for index in 0..300 {
            time += next() as i64;
            lines.push(info(time, component, &format!("{component}-{index}")));
        }
        write(&logs.file(&format!("{component}.log.2")), &lines[..100]);
        write(&logs.file(&format!("{component}.log.1")), &lines[100..180]);
        write(&logs.path(component), &lines[180..]);
    }
    let all = logs.history(&Filter::default(), Tail::All);
    assert_eq!(all.len(), 900);
    for count in [0, 1, 5, 119, 120, 121, 250, 899, 900, 5_000] {
        let tail = logs.history(&Filter::default(), Tail::Last(count));
        assert_eq!(tail, all[all.len() - count.min(900)..], "tail {count}");
    }
    // One component's tail reaches into its oldest file.
    let only = Logs {
        dir: logs.dir,
        components: vec!["server"],
    };
    let tail = only.history(&Filter::default(), Tail::Last(250));
    assert_eq!(tail.first().unwrap(), "server server-50");
    assert_eq!(tail.last().unwrap(), "server server-299");
}

#[test]
fn the_tail_does_not_read_the_whole_file() {
    // A 4 GB sparse file: reading it through would take seconds, the tail takes microseconds.
    let logs = Logs::new(&["daemon"]);
    let path = logs.path("daemon");
    let file = fs_err::File::create(&path).unwrap();
    file.set_len(4 << 30).unwrap();
    drop(file);
    append(
        &path,
        &[
            // The sparse zeros and this first newline make one (ignored) line.
            String::new(),
            info(1, "daemon", "one"),
            info(2, "daemon", "two"),
            info(3, "daemon", "three"),
        ],
    );
    let started = Instant::now();
    let tail = logs.history(&Filter::default(), Tail::Last(2));
    assert_eq!(tail, ["daemon two", "daemon three"]);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_tail_reads_lines_longer_than_many_blocks_whole() {
    let logs = Logs::new(&["daemon"]);
    let long = "x".repeat(3 << 20) + "é";
    write(
        &logs.path("daemon"),
        &[
            info(1, "daemon", "before"),
            info(2, "daemon", &long),
            info(3, "daemon", "after"),
        ],
    );
    let tail = logs.history(&Filter::default(), Tail::Last(2));
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0], format!("daemon {long}"));
    assert_eq!(tail[1], "daemon after");
    let tail = logs.history(&Filter::default(), Tail::Last(3));
    assert_eq!(tail[0], "daemon before");
}

#[test]
fn since_and_until_bound_history_and_tail_inclusively() {
    let logs = Logs::new(&["daemon", "server"]);
    write(
        &logs.file("daemon.log.1"),
        &(0..5)
            .map(|i| info(i * 100, "daemon", &format!("d{}", i * 100)))
            .collect::<Vec<_>>(),
    );
    write(
        &logs.path("daemon"),
        &(5..10)
            .map(|i| info(i * 100, "daemon", &format!("d{}", i * 100)))
            .collect::<Vec<_>>(),
    );
    write(
        &logs.path("server"),
        &(0..10)
            .map(|i| info(i * 100 + 50, "server", &format!("s{}", i * 100 + 50)))
            .collect::<Vec<_>>(),
    );
    let filter = Filter {
        since: Some(ts(300)),
        until: Some(ts(600)),
        ..Filter::default()
    };
    let expected = [
        "daemon d300",
        "server s350",
        "daemon d400",
        "server s450",
        "daemon d500",
        "server s550",
        "daemon d600",
    ];
    assert_eq!(logs.history(&filter, Tail::All), expected);
    assert_eq!(logs.history(&filter, Tail::Last(100)), expected);
    assert_eq!(
        logs.history(&filter, Tail::Last(2)),
        ["server s550", "daemon d600"]
    );
    // Only since: the whole rotated file is before the window and skipped.
    let filter = Filter {
        since: Some(ts(801)),
        ..Filter::default()
    };
    assert_eq!(
        logs.history(&filter, Tail::All),
        ["server s850", "daemon d900", "server s950"]
    );
    // A window with nothing in it.
    let filter = Filter {
        since: Some(ts(5_000)),
        ..Filter::default()
    };
    assert!(logs.history(&filter, Tail::All).is_empty());
    assert!(logs.history(&filter, Tail::Last(10)).is_empty());
}

#[test]
fn level_grep_and_execution_filters() {
    let logs = Logs::new(&["server", "agent-runner", "temporal"]);
    write(
        &logs.path("server"),
        &[
            line(
                1,
                "server",
                Level::Info,
                "Execution created.",
                json!({"execution_id": "aex-1", "agent": "helper"}),
            ),
            line(2, "server", Level::Debug, "Polling.", json!({})),
            line(
                9,
                "server",
                Level::Info,
                "Execution created.",
                json!({"execution_id": "aex-2", "agent": "coder"}),
            ),
            line(
                20,
                "server",
                Level::Warn,
                "Execution ended.",
                json!({"execution_id": "aex-1", "phase": "failed"}),
            ),
        ],
    );
    write(
        &logs.path("agent-runner"),
        &[
            line(
                5,
                "agent-runner",
                Level::Info,
                "Model turn finished.",
                json!({"execution_id": "aex-1", "turn": 1}),
            ),
            line(
                6,
                "agent-runner",
                Level::Error,
                "Cannot record a heartbeat.",
                json!({"error": "aex-1 is gone"}),
            ),
            line(
                11,
                "agent-runner",
                Level::Info,
                "Model turn finished.",
                json!({"execution_id": "aex-2", "turn": 1}),
            ),
            line(
                12,
                "agent-runner",
                Level::Trace,
                "Mentions aex-1 only in its message.",
                json!({}),
            ),
        ],
    );
    write(
        &logs.path("temporal"),
        &[line(
            7,
            "temporal",
            Level::Info,
            "Workflow task scheduled",
            json!({"wf-id": "aex-1"}),
        )],
    );
    let by = |filter: Filter| logs.history(&filter, Tail::All).join(" | ");

    assert_eq!(
        by(Filter {
            execution: Some("aex-1".into()),
            ..Filter::default()
        }),
        "server Execution created. | agent-runner Model turn finished. | \
         temporal Workflow task scheduled | server Execution ended."
    );
    assert_eq!(
        by(Filter {
            min_level: Some(Level::Warn),
            ..Filter::default()
        }),
        "agent-runner Cannot record a heartbeat. | server Execution ended."
    );
    // The message and the fields (key=value) are searched, not the time or the level.
    let grep = |pattern: &str| Filter {
        grep: Some(regex::Regex::new(pattern).unwrap()),
        ..Filter::default()
    };
    assert_eq!(by(grep("agent=coder")), "server Execution created.");
    assert_eq!(
        by(grep("^Model turn")),
        "agent-runner Model turn finished. | agent-runner Model turn finished."
    );
    assert_eq!(
        // (Field order is the file's, which is not a contract: no anchoring on it.)
        by(grep(r"\bturn=1\b")),
        "agent-runner Model turn finished. | agent-runner Model turn finished."
    );
    assert_eq!(by(grep("warn|2026")), "");
    // Conditions combine.
    assert_eq!(
        by(Filter {
            execution: Some("aex-2".into()),
            min_level: Some(Level::Info),
            grep: Some(regex::Regex::new("(?i)model").unwrap()),
            ..Filter::default()
        }),
        "agent-runner Model turn finished."
    );
    assert_eq!(
        logs.history(
            &Filter {
                execution: Some("aex-1".into()),
                ..Filter::default()
            },
            Tail::Last(2)
        ),
        [
            "temporal Workflow task scheduled",
            "server Execution ended."
        ]
    );
}

#[test]
fn json_output_is_the_line_itself_or_a_record_made_from_it() {
    let logs = Logs::new(&["temporal"]);
    let own = line(
        5,
        "temporal",
        Level::Warn,
        "slow",
        json!({"wf-id": "aex-1"}),
    );
    let torn = line(6, "temporal", Level::Info, "cut short", json!({}));
    let torn = format!("{}{own}", &torn[..torn.len() - 8]);
    write(
        &logs.path("temporal"),
        &[own.clone(), "ERROR plain text".into(), torn.clone()],
    );
    let set = logs.set();
    let mut out = Vec::new();
    set.history(&Filter::default(), Tail::All, |line| {
        out.push(line.json("temporal").into_owned());
        Ok(())
    })
    .unwrap();
    assert_eq!(out[0], own);
    let made = LogRecord::parse(&out[1]).unwrap();
    assert_eq!(made.component, "temporal");
    assert_eq!(made.level, Level::Error);
    assert_eq!(made.message, "ERROR plain text");
    assert_eq!(made.ts, ts(5), "the time of the line before");
    // A line cut short with the next one written onto it is still one valid object.
    let made = LogRecord::parse(&out[2]).expect("valid JSON");
    assert_eq!(made.message, torn);
}

#[test]
fn tail_counts_are_parsed() {
    assert_eq!("all".parse::<Tail>(), Ok(Tail::All));
    assert_eq!("0".parse::<Tail>(), Ok(Tail::Last(0)));
    assert_eq!(" 25".parse::<Tail>(), Ok(Tail::Last(25)));
    assert!(
        "-1".parse::<Tail>()
            .unwrap_err()
            .to_string()
            .contains("`all`")
    );
    assert!("many".parse::<Tail>().is_err());
}

/// Drives a follower: polls, then releases what is due after the hold.
struct Following {
    follower: Follower,
    components: Vec<String>,
    now: Instant,
}

const HOLD: Duration = Duration::from_millis(250);

impl Following {
    fn start(logs: &Logs, filter: Filter) -> Following {
        let set = logs.set();
        let components = set.components();
        Following {
            follower: set.follow(filter, HOLD),
            components,
            now: Instant::now(),
        }
    }

    /// Polls at the current time, then advances the clock by `step`.
    fn poll(&mut self, step: Duration) {
        self.follower.poll(self.now).unwrap();
        self.now += step;
    }

    fn released(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let components = &self.components;
        self.follower
            .release(self.now, |line| {
                out.push(format!(
                    "{} {}",
                    components[line.source],
                    line.record(&components[line.source]).message
                ));
                Ok(())
            })
            .unwrap();
        out
    }

    /// Polls, waits out the hold, and returns what was released.
    fn next(&mut self) -> Vec<String> {
        self.poll(HOLD);
        self.released()
    }
}

#[test]
fn a_component_whose_clock_lags_holds_the_others_back_for_a_bounded_time() {
    let logs = Logs::new(&["daemon", "agent-runner"]);
    write(&logs.path("daemon"), &[]);
    write(&logs.path("agent-runner"), &[]);
    let mut following = Following::start(&logs, Filter::default());
    append(&logs.path("daemon"), &[info(1000, "daemon", "now")]);
    // The runner's clock is far behind, and it writes more often than the hold: each of its
    // lines sorts before the daemon's.
    let mut released = Vec::new();
    for n in 0..20 {
        append(
            &logs.path("agent-runner"),
            &[info(n, "agent-runner", &format!("r{n}"))],
        );
        following.poll(Duration::from_millis(100));
        released.extend(following.released());
    }
    let at = released
        .iter()
        .position(|line| line == "daemon now")
        .unwrap_or_else(|| panic!("the daemon's line is still held: {released:?}"));
    // Out within four holds (a second) of being read: ten polls, at most eleven runner lines.
    assert!(at <= 11, "{released:?}");
    assert_eq!(
        released[..at],
        (0..at)
            .map(|n| format!("agent-runner r{n}"))
            .collect::<Vec<_>>()[..]
    );
}

#[test]
fn following_starts_where_history_ends_and_orders_within_the_hold() {
    let logs = Logs::new(&["daemon", "agent-runner"]);
    write(&logs.path("daemon"), &[info(0, "daemon", "before")]);
    // A line being written when following starts is completed later and not lost.
    fs_err::write(
        logs.path("agent-runner"),
        format!("{}\n{{\"ts\":", info(1, "agent-runner", "old")),
    )
    .unwrap();
    let mut following = Following::start(&logs, Filter::default());
    assert!(following.next().is_empty());

    // The agent-runner's line is read first, but the daemon's is older: within the hold
    // window both are held and come out in time order.
    {
        use std::io::Write;
        let mut file = fs_err::OpenOptions::new()
            .append(true)
            .open(logs.path("agent-runner"))
            .unwrap();
        let rest = info(20, "agent-runner", "a20");
        writeln!(file, "{}", &rest["{\"ts\":".len()..]).unwrap();
    }
    following.poll(Duration::from_millis(100));
    append(
        &logs.path("daemon"),
        &[info(10, "daemon", "d10"), info(30, "daemon", "d30")],
    );
    following.poll(Duration::from_millis(100));
    assert!(following.released().is_empty(), "still held");
    following.poll(Duration::from_millis(100));
    // 300 ms after a20 was read, 200 ms after d10/d30: a20 must wait for d10 to come out.
    assert!(
        following.released().is_empty(),
        "a20 waits for the older d10"
    );
    following.poll(Duration::from_millis(100));
    assert_eq!(
        following.released(),
        ["daemon d10", "agent-runner a20", "daemon d30"]
    );
    assert_eq!(following.follower.held(), 0);
}

#[test]
fn following_survives_rotation_even_several_between_polls() {
    let logs = Logs::new(&["server"]);
    let live = logs.path("server");
    let policy = crate::RotationPolicy {
        max_bytes: 400,
        max_files: 5,
    };
    let mut writer = crate::RotatingFile::open(&live, policy).unwrap();
    writer.write_line(&info(0, "server", "history")).unwrap();
    let mut following = Following::start(&logs, Filter::default());
    assert!(following.next().is_empty());

    // Lines of ~90 bytes: four fit a file, so these rotate twice before the next poll.
    let mut expected = Vec::new();
    for index in 1..=10 {
        writer
            .write_line(&info(index, "server", &format!("line {index:02}")))
            .unwrap();
        expected.push(format!("server line {index:02}"));
    }
    assert!(
        crate::rotated_paths(&live).len() >= 2,
        "the test should rotate twice"
    );
    assert_eq!(following.next(), expected);

    // And once more, lines straddling one rotation.
    expected.clear();
    for index in 11..=14 {
        writer
            .write_line(&info(index, "server", &format!("line {index:02}")))
            .unwrap();
        expected.push(format!("server line {index:02}"));
    }
    assert_eq!(following.next(), expected);
}

#[test]
fn following_survives_truncation_and_a_file_created_again() {
    let logs = Logs::new(&["temporal"]);
    let live = logs.path("temporal");
    write(
        &live,
        &[info(0, "temporal", "one"), info(1, "temporal", "two")],
    );
    let mut following = Following::start(&logs, Filter::default());
    append(&live, &[info(2, "temporal", "three")]);
    assert_eq!(following.next(), ["temporal three"]);

    // Truncated and rewritten (shorter than before): read again from the start.
    write(&live, &[info(3, "temporal", "after truncation")]);
    assert_eq!(following.next(), ["temporal after truncation"]);

    // Deleted; nothing to read, nothing fails; created again: read from its start.
    fs_err::remove_file(&live).unwrap();
    assert!(following.next().is_empty());
    write(&live, &[info(4, "temporal", "recreated")]);
    assert_eq!(following.next(), ["temporal recreated"]);
}

#[test]
fn following_survives_a_component_restart_and_waits_for_files_that_do_not_exist_yet() {
    let logs = Logs::new(&["daemon", "workflow-runner"]);
    let daemon = logs.path("daemon");
    let policy = crate::RotationPolicy::default();
    let first = crate::SharedLogFile::open(&daemon, policy).unwrap();
    first
        .write_record(&LogRecord::parse(&info(0, "daemon", "first life")).unwrap())
        .unwrap();
    let mut following = Following::start(&logs, Filter::default());
    // The writer goes away and a new one (a restarted daemon) appends to the same file.
    drop(first);
    let second = crate::SharedLogFile::open(&daemon, policy).unwrap();
    second
        .write_record(&LogRecord::parse(&info(5, "daemon", "second life")).unwrap())
        .unwrap();
    // The workflow-runner had never written: its file appears now.
    write(
        &logs.path("workflow-runner"),
        &[info(3, "workflow-runner", "first words")],
    );
    assert_eq!(
        following.next(),
        ["workflow-runner first words", "daemon second life"]
    );
}

#[test]
fn following_applies_the_filter_and_finish_releases_everything() {
    let logs = Logs::new(&["agent-runner"]);
    let live = logs.path("agent-runner");
    write(&live, &[]);
    let filter = Filter {
        execution: Some("aex-9".into()),
        min_level: Some(Level::Info),
        ..Filter::default()
    };
    let mut following = Following::start(&logs, filter);
    append(
        &live,
        &[
            line(
                1,
                "agent-runner",
                Level::Info,
                "mine",
                json!({"execution_id": "aex-9"}),
            ),
            line(
                2,
                "agent-runner",
                Level::Info,
                "other",
                json!({"execution_id": "aex-8"}),
            ),
            line(
                3,
                "agent-runner",
                Level::Debug,
                "too quiet",
                json!({"execution_id": "aex-9"}),
            ),
            line(
                4,
                "agent-runner",
                Level::Warn,
                "also mine",
                json!({"execution_id": "aex-9"}),
            ),
        ],
    );
    following.poll(Duration::ZERO);
    assert_eq!(following.follower.held(), 2);
    let mut out = Vec::new();
    following
        .follower
        .finish(|line| {
            out.push(line.record("agent-runner").message);
            Ok(())
        })
        .unwrap();
    assert_eq!(out, ["mine", "also mine"]);
}
