//! Following log files as they grow, through rotation, truncation and re-creation, releasing
//! the new lines in time order after a short hold.

use super::files::{Identity, Segment, with_path};
use super::head::DateCache;
use super::{Filter, Line, Source, is_blank};
use crate::rotate::rotated_paths;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How much a poll reads at a time.
const CHUNK: usize = 256 * 1024;

/// Follows the live files of several components.
///
/// [`Follower::poll`] reads what the files gained since the last poll; each line waits in a
/// buffer until it has been held for `hold`, and [`Follower::release`] gives out the lines
/// whose hold is over in `ts` order (ties: the component listed first, then file order). A
/// line is released only when every line before it in time order has been, so as long as a
/// line is read within `hold` of the lines written around it, the output is in time order; a
/// line later than that is still shown, at once, out of order. Time passes only through the
/// `now` arguments, so tests can drive it.
///
/// No line waits longer than [`MAX_WAIT_HOLDS`] holds: a component whose clock lags (a
/// container's, say) sorts every line it writes first and would otherwise hold the others back
/// for as long as it keeps writing; past that bound its lines come out early instead.
pub struct Follower {
    files: Vec<FollowedFile>,
    filter: Filter,
    hold: Duration,
    held: BinaryHeap<Reverse<Held>>,
    arrivals: u64,
    /// When each held line was read, by arrival: the first is the line waiting longest.
    waiting: BTreeMap<u64, Instant>,
}

/// The longest a line waits, in holds.
const MAX_WAIT_HOLDS: u32 = 4;

struct FollowedFile {
    component: String,
    path: std::path::PathBuf,
    current: Option<Open>,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// The time of the last line read, for a line without one.
    last_ts: i64,
    dates: DateCache,
}

struct Open {
    file: std::fs::File,
    identity: Identity,
    offset: u64,
}

struct Held {
    ts: i64,
    source: usize,
    arrival: u64,
    /// When it was read (not part of the order).
    read_at: Instant,
    line: Line,
}

/// Held lines are ordered by time, then source, then arrival (which is unique).
impl Held {
    fn key(&self) -> (i64, usize, u64) {
        (self.ts, self.source, self.arrival)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Held) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl Follower {
    pub(crate) fn new(
        sources: Vec<(Source, Option<Segment>)>,
        filter: Filter,
        hold: Duration,
    ) -> Follower {
        let files = sources
            .into_iter()
            .map(|(source, live)| FollowedFile {
                component: source.component,
                path: source.path,
                current: live.map(|segment| Open {
                    file: segment.file,
                    identity: segment.identity,
                    offset: segment.end,
                }),
                partial: Vec::new(),
                last_ts: i64::MIN,
                dates: DateCache::default(),
            })
            .collect();
        Follower {
            files,
            filter,
            hold,
            held: BinaryHeap::new(),
            arrivals: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// Reads the new lines of every file (those that pass the filter are held from `now`).
    pub fn poll(&mut self, now: Instant) -> io::Result<()> {
        for source in 0..self.files.len() {
            let texts = self.files[source].read_new()?;
            for text in texts {
                if is_blank(&text) {
                    continue;
                }
                let file = &mut self.files[source];
                let line = Line::read(source, text, file.last_ts, &mut file.dates);
                file.last_ts = line.ts;
                if !self.filter.accepts(&line, &file.component) {
                    continue;
                }
                self.arrivals += 1;
                self.waiting.insert(self.arrivals, now);
                self.held.push(Reverse(Held {
                    ts: line.ts,
                    source,
                    arrival: self.arrivals,
                    read_at: now,
                    line,
                }));
            }
        }
        Ok(())
    }

    /// Calls `emit` with the lines whose hold is over at `now`, in time order.
    pub fn release(
        &mut self,
        now: Instant,
        mut emit: impl FnMut(&Line) -> io::Result<()>,
    ) -> io::Result<()> {
        while let Some(Reverse(first)) = self.held.peek() {
            let longest = self.waiting.values().next().copied().unwrap_or(now);
            if now.saturating_duration_since(first.read_at) < self.hold
                && now.saturating_duration_since(longest) < self.hold * MAX_WAIT_HOLDS
            {
                break;
            }
            self.emit_first(&mut emit)?;
        }
        Ok(())
    }

    /// Calls `emit` with every held line, in time order (when following ends).
    pub fn finish(&mut self, mut emit: impl FnMut(&Line) -> io::Result<()>) -> io::Result<()> {
        while !self.held.is_empty() {
            self.emit_first(&mut emit)?;
        }
        Ok(())
    }

    /// How many lines are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn emit_first(&mut self, emit: &mut impl FnMut(&Line) -> io::Result<()>) -> io::Result<()> {
        if let Some(Reverse(held)) = self.held.pop() {
            self.waiting.remove(&held.arrival);
            emit(&held.line)?;
        }
        Ok(())
    }
}

impl FollowedFile {
    /// The complete lines written since the last call.
    fn read_new(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        let at_path = Identity::at(&self.path);
        match (&mut self.current, at_path) {
            (None, None) => {}
            (None, Some(_)) => self.switch_to_path(&mut lines)?,
            (Some(open), Some(identity)) if identity == open.identity => {
                let length = open
                    .file
                    .metadata()
                    .map_err(|error| with_path(error, &self.path))?
                    .len();
                if length < open.offset {
                    // Truncated: what is there now was written after the truncation.
                    open.offset = 0;
                    self.partial.clear();
                }
                self.read_current(&mut lines)?;
            }
            (Some(_), Some(_)) => {
                // Rotated, or deleted and created again. The old file is complete (the
                // writer rotates before writing to the new one): finish it, then read any
                // file rotated past since the last poll, then the new file from its start.
                self.read_current(&mut lines)?;
                self.end_partial(&mut lines);
                let old = self.current.take().map(|open| open.identity);
                self.read_skipped(old, &mut lines)?;
                self.switch_to_path(&mut lines)?;
            }
            // Gone for now (mid-rotation, or deleted): what it still holds is read.
            (Some(_), None) => self.read_current(&mut lines)?,
        }
        Ok(lines)
    }

    fn switch_to_path(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(with_path(error, &self.path)),
        };
        let metadata = file
            .metadata()
            .map_err(|error| with_path(error, &self.path))?;
        self.partial.clear();
        self.current = Some(Open {
            file,
            identity: Identity::of(&metadata),
            offset: 0,
        });
        self.read_current(lines)
    }

    /// Reads the rotated files newer than the file `old` (rotations that happened between
    /// two polls), oldest first.
    fn read_skipped(&mut self, old: Option<Identity>, lines: &mut Vec<String>) -> io::Result<()> {
        let Some(old) = old else { return Ok(()) };
        let rotated = rotated_paths(&self.path);
        let Some(position) = rotated
            .iter()
            .position(|path| Identity::at(path) == Some(old))
        else {
            // The old file is gone (deleted, or rotated out of existence): what came after
            // it cannot be told apart from older files, so nothing is guessed.
            return Ok(());
        };
        for path in rotated[..position].iter().rev() {
            read_whole(path, lines)?;
        }
        Ok(())
    }

    fn read_current(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        let Some(open) = &mut self.current else {
            return Ok(());
        };
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let read = open
                .file
                .read_at(&mut chunk, open.offset)
                .map_err(|error| with_path(error, &self.path))?;
            if read == 0 {
                return Ok(());
            }
            open.offset += read as u64;
            split_lines(&mut self.partial, &chunk[..read], lines);
        }
    }

    /// A last line without a newline, at the end of a file that will not grow any more.
    fn end_partial(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() {
            lines.push(text_of(&self.partial));
            self.partial.clear();
        }
    }
}

fn read_whole(path: &Path, lines: &mut Vec<String>) -> io::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(with_path(error, path)),
    };
    let mut partial = Vec::new();
    split_lines(&mut partial, &bytes, lines);
    if !partial.is_empty() {
        lines.push(text_of(&partial));
    }
    Ok(())
}

/// Appends the complete lines of `partial` + `bytes` to `lines`; keeps the incomplete rest.
fn split_lines(partial: &mut Vec<u8>, bytes: &[u8], lines: &mut Vec<String>) {
    let mut rest = bytes;
    while let Some(index) = rest.iter().position(|byte| *byte == b'\n') {
        if partial.is_empty() {
            lines.push(text_of(&rest[..index]));
        } else {
            partial.extend_from_slice(&rest[..index]);
            lines.push(text_of(partial));
            partial.clear();
        }
        rest = &rest[index + 1..];
    }
    partial.extend_from_slice(rest);
}

fn text_of(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}
