//! The files of one component's log, opened once, and line readers over them: forwards in
//! buffered blocks, and backwards from the end in blocks (so reading the last lines costs the
//! same whatever the size of the file).

use crate::rotate::rotated_paths;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// How far back a backwards read reaches at a time.
const BLOCK: u64 = 64 * 1024;
/// How much a forward read takes at a time.
const FORWARD_BUFFER: usize = 1024 * 1024;

/// Which file a handle is: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    device: u64,
    inode: u64,
}

impl Identity {
    pub(crate) fn of(metadata: &std::fs::Metadata) -> Identity {
        Identity {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }

    /// The identity of the file now at `path`, if there is one.
    pub(crate) fn at(path: &Path) -> Option<Identity> {
        std::fs::metadata(path)
            .ok()
            .map(|metadata| Identity::of(&metadata))
    }
}

/// One opened file and how much of it to read: `end` is just after its last newline when it
/// was opened (a line still being written is left for later).
pub(crate) struct Segment {
    pub file: std::fs::File,
    pub identity: Identity,
    pub end: u64,
}

impl Segment {
    /// Opens `path`; `None` when it does not exist.
    pub(crate) fn open(path: &Path) -> io::Result<Option<Segment>> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(with_path(error, path)),
        };
        let metadata = file.metadata().map_err(|error| with_path(error, path))?;
        let end = complete_end(&file, metadata.len()).map_err(|error| with_path(error, path))?;
        Ok(Some(Segment {
            file,
            identity: Identity::of(&metadata),
            end,
        }))
    }

    /// The last line's time, read from the end.
    pub(crate) fn last_ts(&self) -> io::Result<Option<i64>> {
        let mut lines = ReverseLines::new(&self.file, self.end);
        while let Some(line) = lines.next_line()? {
            if let Some(ts) = super::head::line_ts(&line) {
                return Ok(Some(ts));
            }
        }
        Ok(None)
    }
}

/// The files of one component, opened together so that a rotation while reading neither
/// repeats nor loses lines: the live file and its rotated predecessors, newest first.
pub(crate) struct ComponentFiles {
    pub live: Option<Segment>,
    pub rotated: Vec<Segment>,
}

impl ComponentFiles {
    pub(crate) fn open(path: &Path) -> io::Result<ComponentFiles> {
        let live = Segment::open(path)?;
        let mut rotated = Vec::new();
        for candidate in rotated_paths(path) {
            if let Some(segment) = Segment::open(&candidate)? {
                // A rotation between opening the live file and listing the rest makes the
                // live file appear twice; it is read once, as the live file.
                if live.as_ref().map(|live| live.identity) != Some(segment.identity) {
                    // Rotated files are complete: read them to their end.
                    let end = segment
                        .file
                        .metadata()
                        .map(|metadata| metadata.len())
                        .unwrap_or(segment.end);
                    rotated.push(Segment { end, ..segment });
                }
            }
        }
        Ok(ComponentFiles { live, rotated })
    }

    /// Newest first: the live file, then `x.log.1`, `x.log.2`, …
    pub(crate) fn newest_first(&self) -> impl Iterator<Item = &Segment> {
        self.live.iter().chain(self.rotated.iter())
    }
}

pub(crate) fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// The offset just after the last newline at or before `length`.
fn complete_end(file: &std::fs::File, length: u64) -> io::Result<u64> {
    let mut end = length;
    let mut block = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut block[..(end - start) as usize];
        match file.read_exact_at(chunk, start) {
            // Truncated since its length was read: nothing complete to show from it.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            result => result?,
        }
        if let Some(index) = chunk.iter().rposition(|byte| *byte == b'\n') {
            return Ok(start + index as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Lines of a file from `end` backwards, read in blocks of [`BLOCK`] bytes.
pub(crate) struct ReverseLines<'f> {
    file: &'f std::fs::File,
    /// Where the bytes in `buffer` start in the file.
    position: u64,
    /// Bytes not yet returned: `[position, position + buffer.len())`.
    buffer: Vec<u8>,
}

impl<'f> ReverseLines<'f> {
    pub(crate) fn new(file: &'f std::fs::File, end: u64) -> ReverseLines<'f> {
        ReverseLines {
            file,
            position: end,
            buffer: Vec::new(),
        }
    }

    /// The previous line (without its newline), or `None` at the start of the file.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if self.buffer.is_empty() && self.position == 0 {
                return Ok(None);
            }
            let line_end = match self.buffer.last() {
                Some(b'\n') => self.buffer.len() - 1,
                _ => self.buffer.len(),
            };
            if let Some(index) = self.buffer[..line_end]
                .iter()
                .rposition(|byte| *byte == b'\n')
            {
                let line = to_text(&self.buffer[index + 1..line_end]);
                self.buffer.truncate(index + 1);
                return Ok(Some(line));
            }
            if self.position == 0 {
                let line = to_text(&self.buffer[..line_end]);
                self.buffer.clear();
                return Ok(Some(line));
            }
            // Doubling the read while no newline turns up keeps a very long line linear.
            let start = self
                .position
                .saturating_sub(BLOCK.max(self.buffer.len() as u64));
            let mut block = vec![0u8; (self.position - start) as usize];
            if let Err(error) = self.file.read_exact_at(&mut block, start) {
                // The file was truncated under us: what is left of it is not there any more.
                return match error.kind() {
                    io::ErrorKind::UnexpectedEof => Ok(None),
                    _ => Err(error),
                };
            }
            block.extend_from_slice(&self.buffer);
            self.buffer = block;
            self.position = start;
        }
    }
}

fn to_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lines of segments read forwards, one after the other.
///
/// Reads a block at a time, checks that its complete lines are UTF-8 in one go, and hands out
/// the lines by copying them into the caller's buffer, so a long read allocates almost
/// nothing and validates each byte once.
pub(crate) struct ForwardLines<'f> {
    segments: std::vec::IntoIter<&'f Segment>,
    /// The segment being read and the next offset in it.
    current: Option<(&'f Segment, u64)>,
    /// Complete lines (each ending with a newline, except maybe the last line of a segment).
    block: String,
    /// Where the next line starts in `block`.
    offset: usize,
    /// The start of a line whose end has not been read yet.
    carry: Vec<u8>,
}

impl<'f> ForwardLines<'f> {
    pub(crate) fn new(segments: Vec<&'f Segment>) -> ForwardLines<'f> {
        ForwardLines {
            segments: segments.into_iter(),
            current: None,
            block: String::new(),
            offset: 0,
            carry: Vec::new(),
        }
    }

    /// The next line into `line` (without its newline); `false` after the last one.
    pub(crate) fn next_into(&mut self, line: &mut String) -> io::Result<bool> {
        while self.offset >= self.block.len() {
            if !self.fill()? {
                return Ok(false);
            }
        }
        let rest = &self.block[self.offset..];
        let length = memchr::memchr(b'\n', rest.as_bytes()).unwrap_or(rest.len());
        let text = &rest[..length];
        line.clear();
        line.push_str(text.strip_suffix('\r').unwrap_or(text));
        self.offset += length + 1;
        Ok(true)
    }

    /// Reads the next block of complete lines; `false` when every segment is read.
    fn fill(&mut self) -> io::Result<bool> {
        let mut bytes = std::mem::take(&mut self.block).into_bytes();
        bytes.clear();
        bytes.append(&mut self.carry);
        loop {
            let Some((segment, position)) = &mut self.current else {
                match self.segments.next() {
                    Some(segment) => {
                        self.current = Some((segment, 0));
                        continue;
                    }
                    None if bytes.is_empty() => return Ok(false),
                    // A last line without a newline.
                    None => break,
                }
            };
            let wanted = FORWARD_BUFFER
                .min(usize::try_from(segment.end - *position).unwrap_or(FORWARD_BUFFER));
            if wanted == 0 {
                self.current = None;
                if bytes.is_empty() {
                    continue;
                }
                // A segment's last line is complete even without a newline.
                break;
            }
            let filled = bytes.len();
            bytes.resize(filled + wanted, 0);
            let read = segment.file.read_at(&mut bytes[filled..], *position)?;
            bytes.truncate(filled + read);
            if read == 0 {
                // The file shrank under us: what it had is all there is.
                *position = segment.end;
                continue;
            }
            *position += read as u64;
            if let Some(last) = memchr::memrchr(b'\n', &bytes[filled..]) {
                self.carry.extend_from_slice(&bytes[filled + last + 1..]);
                bytes.truncate(filled + last + 1);
                break;
            }
        }
        self.block = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        self.offset = 0;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reverse_all(path: &Path) -> Vec<String> {
        let segment = Segment::open(path).unwrap().unwrap();
        let mut lines = ReverseLines::new(&segment.file, segment.end);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            out.push(line);
        }
        out
    }

    #[test]
    fn backwards_reads_cross_blocks_and_leave_a_partial_line_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut text = String::new();
        for index in 0..20_000 {
            // Lines of varying length, some longer than a block.
            let width = if index % 5_000 == 7 {
                70_000
            } else {
                index % 97
            };
            text.push_str(&format!("{index} {}\n", "x".repeat(width)));
        }
        text.push_str("partial, no newline yet");
        fs_err::write(&path, &text).unwrap();
        let mut expected: Vec<String> = text.lines().map(str::to_owned).collect();
        expected.pop();
        expected.reverse();
        assert_eq!(reverse_all(&path), expected);
    }

    #[test]
    fn empty_lines_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        fs_err::write(&path, "a\n\nb\r\n").unwrap();
        assert_eq!(reverse_all(&path), ["b", "", "a"]);
        fs_err::write(&path, "").unwrap();
        assert!(reverse_all(&path).is_empty());
        fs_err::write(&path, "no newline").unwrap();
        assert!(reverse_all(&path).is_empty());
        assert!(
            Segment::open(&dir.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn forwards_reads_stop_at_the_end_they_were_given() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("x.log.1");
        let second = dir.path().join("x.log");
        fs_err::write(&first, "one\ntwo\n").unwrap();
        fs_err::write(&second, "three\r\nfour\nfive, still being writ").unwrap();
        let first = Segment::open(&first).unwrap().unwrap();
        let second = Segment::open(&second).unwrap().unwrap();
        let mut lines = ForwardLines::new(vec![&first, &second]);
        let mut line = String::new();
        let mut out = Vec::new();
        while lines.next_into(&mut line).unwrap() {
            out.push(line.clone());
        }
        assert_eq!(out, ["one", "two", "three", "four"]);
    }

    #[test]
    fn forwards_reads_cross_blocks_and_keep_bad_bytes_readable() {
        let dir = tempfile::tempdir().unwrap();
        let rotated = dir.path().join("x.log.1");
        let live = dir.path().join("x.log");
        let mut expected = Vec::new();
        let mut text = Vec::new();
        for index in 0..30_000 {
            let width = if index % 10_000 == 3 {
                3 * FORWARD_BUFFER
            } else {
                index % 101
            };
            let line = format!("{index} {}", "é".repeat(width / 2));
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
            expected.push(line);
        }
        // The rotated file ends without a newline; a bad byte is replaced, not fatal.
        text.extend_from_slice(b"last \xff line");
        expected.push("last \u{fffd} line".into());
        fs_err::write(&rotated, &text).unwrap();
        fs_err::write(&live, "live\n").unwrap();
        expected.push("live".into());
        let rotated = Segment::open(&rotated).unwrap().unwrap();
        let rotated = Segment {
            end: rotated.file.metadata().unwrap().len(),
            ..rotated
        };
        let live = Segment::open(&live).unwrap().unwrap();
        let mut lines = ForwardLines::new(vec![&rotated, &live]);
        let mut line = String::new();
        let mut out = Vec::new();
        while lines.next_into(&mut line).unwrap() {
            out.push(line.clone());
        }
        assert_eq!(out.len(), expected.len());
        assert!(out == expected);
    }
}
