//! Reading the log files back: the time-ordered merge of several components' logs, the last
//! lines of it, and following it as it grows.
//!
//! Each component's log is a live file `x.log` and rotated files `x.log.1`, `x.log.2`, …
//! (newest first), and every file is in `ts` order, across rotations too ([`SharedLogFile`]
//! keeps it so). That is what the reader relies on:
//!
//! - **History** ([`LogSet::history`]) is a k-way merge of the components, each read as one
//!   ordered sequence (oldest rotated file first); the line with the smallest `ts` goes next,
//!   and on equal times the component listed first, and within a component the file order,
//!   wins. Nothing is sorted, so memory does not grow with the files.
//! - **The last N lines** ([`Tail::Last`]) read each component backwards from the end of its
//!   live file in blocks, stepping into rotated files until it has N lines that pass the
//!   filter (or the time window is left behind); the per-component tails are merged and the
//!   last N kept. The cost depends on N, not on the size of the files.
//! - **Following** ([`Follower`]) continues exactly where the history stopped (the files are
//!   opened once, so a rotation in between loses and repeats nothing), polls the files, and
//!   holds each new line for a short window before releasing it, in `ts` order, so lines
//!   that different components wrote at nearly the same moment come out in time order even
//!   when they are read in another order. It goes on through rotation (the rest of the old
//!   file, any file rotated past unseen, then the new file), truncation (read again from the
//!   start) and a file that is deleted and created again.
//!
//! The files are only read, so all of this works whether the daemon runs or not.
//!
//! [`SharedLogFile`]: crate::SharedLogFile

mod files;
mod filter;
mod follow;
mod head;
mod parts;

pub use filter::{Filter, TimeBoundError, parse_time_bound, searchable_text};
pub use follow::Follower;
pub use parts::{FieldValue, LineParts};

use crate::record::{Level, LogRecord, Stream, capture_line};
use chrono::{DateTime, Utc};
use files::{ComponentFiles, ForwardLines, ReverseLines, Segment};
use head::{DateCache, head_cached};
use std::borrow::Cow;
use std::io;
use std::path::PathBuf;

/// How much history to show before following.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Everything the files hold.
    All,
    /// The last N lines of the merged output (0: none).
    Last(usize),
}

/// A `--tail` value that is neither a number of lines nor `all`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected a number of lines or `all`, not {text:?}")]
pub struct TailError {
    text: String,
    #[source]
    source: std::num::ParseIntError,
}

impl std::str::FromStr for Tail {
    type Err = TailError;

    fn from_str(text: &str) -> Result<Tail, TailError> {
        match text.trim() {
            "all" => Ok(Tail::All),
            number => number.parse().map(Tail::Last).map_err(|source| TailError {
                text: text.to_owned(),
                source,
            }),
        }
    }
}

/// One component's log: its name and the path of its live file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub component: String,
    pub path: PathBuf,
}

/// One line read from a log file, with its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The index of its source in the [`LogSet`].
    pub source: usize,
    /// Milliseconds since the Unix epoch. A line that carries no time of its own (it should
    /// not happen in our files) gets the time of the line before it, so it keeps its place.
    ts: i64,
    text: String,
    /// The level, when the line has the canonical layout (read from its head once).
    canonical_level: Option<Level>,
}

impl Line {
    /// A line of `source`; `ts` counts only when the text carries no time of its own.
    pub fn new(source: usize, ts: DateTime<Utc>, text: impl Into<String>) -> Line {
        let text = text.into();
        let (own_ts, canonical_level) = classify(&text, &mut DateCache::default());
        Line {
            source,
            ts: own_ts.unwrap_or(ts.timestamp_millis()),
            text,
            canonical_level,
        }
    }

    /// A line read from a file; `previous_ts` is the time of the line before it.
    fn read(source: usize, text: String, previous_ts: i64, dates: &mut DateCache) -> Line {
        let (ts, canonical_level) = classify(&text, dates);
        Line {
            source,
            ts: ts.unwrap_or(previous_ts),
            text,
            canonical_level,
        }
    }

    /// A line that carries no time of its own, placed at `ts`.
    fn untimed(source: usize, text: String, ts: i64) -> Line {
        Line {
            source,
            ts,
            text,
            canonical_level: None,
        }
    }

    pub fn ts(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.ts).unwrap_or_default()
    }

    /// The line as it is in the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The line as a record; a line not in our format becomes one (as the daemon's capture
    /// would have made it), attributed to `component`.
    pub fn record(&self, component: &str) -> LogRecord {
        LogRecord::parse(&self.text)
            .or_else(|| capture_line(component, Stream::Stdout, &self.text, self.ts()))
            .unwrap_or_else(|| LogRecord {
                ts: self.ts(),
                component: component.to_owned(),
                level: Level::Info,
                message: String::new(),
                fields: serde_json::Map::new(),
            })
    }

    /// The line's level, read from its head when it has the canonical layout.
    pub fn level(&self, component: &str) -> Level {
        match self.canonical_level {
            Some(level) => level,
            None => self.record(component).level,
        }
    }

    /// One JSON object with `ts`, `component`, `level`, `message` and the fields: the line
    /// itself when it already is one in the canonical layout (no parsing, no copy).
    pub fn json(&self, component: &str) -> Cow<'_, str> {
        // A second line start inside is a line cut short (a full disk) with the next written
        // onto it: that is not one object, so it is made into a record like foreign text. (A
        // search for `{` first: quotes are everywhere in a line, braces rarely.)
        let bytes = self.text.as_bytes();
        let second_start = || {
            memchr::memchr_iter(b'{', &bytes[1..])
                .any(|at| bytes[1 + at..].starts_with(br#"{"ts":""#))
        };
        if self.canonical_level.is_some() && self.text.ends_with('}') && !second_start() {
            Cow::Borrowed(&self.text)
        } else {
            Cow::Owned(self.record(component).to_json_line())
        }
    }
}

/// The logs of several components, opened at one moment.
pub struct LogSet {
    sources: Vec<(Source, ComponentFiles)>,
}

impl LogSet {
    /// Opens every file of every source (missing ones are skipped): what [`history`] reads
    /// and where [`follow`] continues is fixed now.
    ///
    /// [`history`]: LogSet::history
    /// [`follow`]: LogSet::follow
    pub fn open(sources: Vec<Source>) -> io::Result<LogSet> {
        let sources = sources
            .into_iter()
            .map(|source| {
                let files = ComponentFiles::open(&source.path)?;
                Ok((source, files))
            })
            .collect::<io::Result<_>>()?;
        Ok(LogSet { sources })
    }

    /// The component of each source, by [`Line::source`].
    pub fn components(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|(source, _)| source.component.clone())
            .collect()
    }

    /// Whether no source has any file yet.
    pub fn is_empty(&self) -> bool {
        self.sources
            .iter()
            .all(|(_, files)| files.newest_first().next().is_none())
    }

    /// Calls `emit` for each line that passes `filter`, oldest first, across components.
    pub fn history(
        &self,
        filter: &Filter,
        tail: Tail,
        mut emit: impl FnMut(&Line) -> io::Result<()>,
    ) -> io::Result<()> {
        match tail {
            Tail::All => {
                let mut cursors = self
                    .sources
                    .iter()
                    .enumerate()
                    .map(|(index, (source, files))| {
                        ForwardCursor::new(index, &source.component, files, filter)
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                merge(&mut cursors, &mut emit)
            }
            Tail::Last(0) => Ok(()),
            Tail::Last(count) => {
                let mut cursors = self
                    .sources
                    .iter()
                    .enumerate()
                    .map(|(index, (source, files))| {
                        last_lines(index, &source.component, files, filter, count).map(|lines| {
                            VecCursor {
                                lines: lines.into_iter(),
                                current: None,
                            }
                        })
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                for cursor in &mut cursors {
                    cursor.advance()?;
                }
                let mut merged = Vec::new();
                merge(&mut cursors, &mut |line: &Line| {
                    merged.push(line.clone());
                    Ok(())
                })?;
                let skip = merged.len().saturating_sub(count);
                merged[skip..].iter().try_for_each(emit)
            }
        }
    }

    /// Follows the files from where [`LogSet::history`] stops; see [`Follower`].
    pub fn follow(self, filter: Filter, hold: std::time::Duration) -> Follower {
        Follower::new(
            self.sources
                .into_iter()
                .map(|(source, files)| (source, files.live))
                .collect(),
            filter,
            hold,
        )
    }
}

/// A merge input: an ordered sequence of lines, one of which is current.
trait Cursor {
    fn current(&self) -> Option<&Line>;
    fn advance(&mut self) -> io::Result<()>;
}

/// The k-way merge: repeatedly the current line with the smallest time, the first cursor
/// winning ties. A linear scan, because there are only a handful of components.
fn merge<C: Cursor>(
    cursors: &mut [C],
    emit: &mut impl FnMut(&Line) -> io::Result<()>,
) -> io::Result<()> {
    loop {
        let mut best: Option<(usize, i64)> = None;
        for (index, cursor) in cursors.iter().enumerate() {
            if let Some(line) = cursor.current()
                && best.is_none_or(|(_, ts)| line.ts < ts)
            {
                best = Some((index, line.ts));
            }
        }
        let Some((index, _)) = best else {
            return Ok(());
        };
        if let Some(line) = cursors[index].current() {
            emit(line)?;
        }
        cursors[index].advance()?;
    }
}

struct VecCursor {
    lines: std::vec::IntoIter<Line>,
    current: Option<Line>,
}

impl Cursor for VecCursor {
    fn current(&self) -> Option<&Line> {
        self.current.as_ref()
    }

    fn advance(&mut self) -> io::Result<()> {
        self.current = self.lines.next();
        Ok(())
    }
}

/// Whether a line has nothing to show (blank lines are skipped). Checked byte by byte from
/// the start, so an ordinary line is decided by its first byte.
fn is_blank(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_whitespace())
}

/// A line's own time and, when it has the canonical layout, its level.
fn classify(text: &str, dates: &mut DateCache) -> (Option<i64>, Option<Level>) {
    match head_cached(text, dates) {
        Some(head) => (Some(head.ts), Some(head.level)),
        None => (
            LogRecord::parse(text).map(|record| record.ts.timestamp_millis()),
            None,
        ),
    }
}

/// One component read forwards, oldest file first, filtered. The current line's buffer is
/// reused for the next line, so a long merge allocates almost nothing.
struct ForwardCursor<'a> {
    component: &'a str,
    filter: &'a Filter,
    lines: ForwardLines<'a>,
    line: Line,
    has_line: bool,
    dates: DateCache,
}

impl<'a> ForwardCursor<'a> {
    fn new(
        source: usize,
        component: &'a str,
        files: &'a ComponentFiles,
        filter: &'a Filter,
    ) -> io::Result<ForwardCursor<'a>> {
        let mut segments: Vec<&Segment> = files.newest_first().collect();
        segments.reverse();
        // A file whose last line is before the window has nothing to show.
        if filter.since.is_some() {
            let mut kept = Vec::with_capacity(segments.len());
            for segment in segments {
                if segment.last_ts()?.is_none_or(|ts| !filter.too_early(ts)) {
                    kept.push(segment);
                }
            }
            segments = kept;
        }
        let mut cursor = ForwardCursor {
            component,
            filter,
            lines: ForwardLines::new(segments),
            line: Line {
                source,
                ts: i64::MIN,
                text: String::new(),
                canonical_level: None,
            },
            has_line: false,
            dates: DateCache::default(),
        };
        cursor.advance()?;
        Ok(cursor)
    }
}

impl Cursor for ForwardCursor<'_> {
    fn current(&self) -> Option<&Line> {
        self.has_line.then_some(&self.line)
    }

    fn advance(&mut self) -> io::Result<()> {
        loop {
            if !self.lines.next_into(&mut self.line.text)? {
                self.has_line = false;
                return Ok(());
            }
            if is_blank(&self.line.text) {
                continue;
            }
            let (ts, level) = classify(&self.line.text, &mut self.dates);
            if let Some(ts) = ts {
                self.line.ts = ts;
            }
            self.line.canonical_level = level;
            if self.filter.too_late(self.line.ts) {
                // The files are in time order: nothing after this can be in the window.
                self.has_line = false;
                return Ok(());
            }
            if self.filter.accepts(&self.line, self.component) {
                self.has_line = true;
                return Ok(());
            }
        }
    }
}

/// The last `count` lines of one component that pass `filter`, oldest first, read backwards
/// from the end of the live file and on into the rotated files as far as needed.
fn last_lines(
    source: usize,
    component: &str,
    files: &ComponentFiles,
    filter: &Filter,
    count: usize,
) -> io::Result<Vec<Line>> {
    let mut lines = Vec::new();
    // Lines without a time of their own take the time of the line before them (as when
    // reading forwards), which is read after them here: they wait for it.
    let mut waiting: Vec<String> = Vec::new();
    // Whether to stop: the window is left behind or there are enough lines.
    let mut dates = DateCache::default();
    let take = |line: Line, lines: &mut Vec<Line>| -> bool {
        if filter.too_early(line.ts) {
            return true;
        }
        if filter.accepts(&line, component) {
            lines.push(line);
        }
        lines.len() == count
    };
    for segment in files.newest_first() {
        let mut reverse = ReverseLines::new(&segment.file, segment.end);
        while let Some(text) = reverse.next_line()? {
            if is_blank(&text) {
                continue;
            }
            let (own_ts, canonical_level) = classify(&text, &mut dates);
            let Some(ts) = own_ts else {
                waiting.push(text);
                continue;
            };
            for text in waiting.drain(..) {
                if take(Line::untimed(source, text, ts), &mut lines) {
                    lines.reverse();
                    return Ok(lines);
                }
            }
            let line = Line {
                source,
                ts,
                text,
                canonical_level,
            };
            if take(line, &mut lines) {
                lines.reverse();
                return Ok(lines);
            }
        }
    }
    for text in waiting {
        if take(Line::untimed(source, text, i64::MIN), &mut lines) {
            break;
        }
    }
    lines.reverse();
    Ok(lines)
}

#[cfg(test)]
mod tests;
