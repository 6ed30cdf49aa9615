//! Append-only log files with size-based rotation: `x.log` → `x.log.1` → … → `x.log.N`.

use crate::record::LogRecord;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// When to rotate and how many rotated files to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    pub max_bytes: u64,
    pub max_files: usize,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            max_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// A log file that rotates before a line would take it past `max_bytes`.
///
/// Rotation renames `x.log.(n-1)` to `x.log.n`, …, `x.log` to `x.log.1`, deletes what lies
/// beyond `max_files`, and starts a fresh `x.log`; with `max_files == 0` the old file is simply
/// deleted. Readers therefore find the newest lines in `x.log`, then `x.log.1`, and so on.
pub struct RotatingFile {
    path: PathBuf,
    policy: RotationPolicy,
    file: fs_err::File,
    size: u64,
}

impl RotatingFile {
    /// Opens (appending) or creates `path` and its parent directories.
    pub fn open(path: impl Into<PathBuf>, policy: RotationPolicy) -> std::io::Result<RotatingFile> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            policy,
            file,
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` and a newline in one write, rotating first if needed.
    ///
    /// `line` should not contain a newline itself, or readers will see two lines. If rotation
    /// fails the line is still appended to the current file (which then grows past `max_bytes`
    /// until a later rotation succeeds), because losing log lines is worse than a large file;
    /// the rotation error is returned after the line has been written.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let length = line.len() as u64 + 1;
        let rotation = if self.size > 0 && self.size.saturating_add(length) > self.policy.max_bytes
        {
            self.rotate()
        } else {
            Ok(())
        };
        let mut buffer = Vec::with_capacity(line.len() + 1);
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        self.file.write_all(&buffer)?;
        self.size += length;
        rotation
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        // Everything numbered max_files or above is dropped first: the last kept file is about
        // to be overwritten, and files left by an earlier, larger policy must go too.
        for index in rotated_indices(&self.path) {
            if index >= self.policy.max_files {
                remove_if_present(&numbered_path(&self.path, index))?;
            }
        }
        if self.policy.max_files == 0 {
            remove_if_present(&self.path)?;
        } else {
            for index in (1..self.policy.max_files).rev() {
                let from = numbered_path(&self.path, index);
                if from.exists() {
                    fs_err::rename(&from, numbered_path(&self.path, index + 1))?;
                }
            }
            // The live file may have been deleted by hand; then there is nothing to keep.
            match fs_err::rename(&self.path, numbered_path(&self.path, 1)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match fs_err::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Opens `path` for appending, creating it private to the user (mode 0600): logs hold
/// conversations and tool output. The mode is set after opening too, so neither the umask nor
/// a file created by an older version leaves it readable by others.
fn open_append(path: &Path) -> std::io::Result<fs_err::File> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let file = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

fn numbered_path(path: &Path, index: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The rotated files of `path` that exist, newest first (`x.log.1`, `x.log.2`, …).
///
/// The directory is scanned rather than probed until the first missing number, so a gap (say a
/// deleted `x.log.2`) does not hide older files. Unreadable directories give an empty list.
pub fn rotated_paths(path: &Path) -> Vec<PathBuf> {
    rotated_indices(path)
        .into_iter()
        .map(|index| numbered_path(path, index))
        .collect()
}

/// The numbers of the existing rotated files of `path`, ascending.
fn rotated_indices(path: &Path) -> Vec<usize> {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return Vec::new();
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Ok(entries) = fs_err::read_dir(directory) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut indices: Vec<usize> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let digits = file_name.to_str()?.strip_prefix(&prefix)?;
            // Only the names rotation writes: a positive number without leading zeros.
            if digits.starts_with('0') || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        })
        .collect();
    indices.sort_unstable();
    indices
}

/// A [`RotatingFile`] shared between threads and tasks.
///
/// Records written through it never go back in time: a record older than the last one written
/// (two capture tasks racing for the lock, a child whose clock lags) is written with the last
/// `ts` instead, because readers merge the files by `ts` and rely on each being in order.
/// [`SharedLogFile::write_line`] writes its line as given and does not take part in this.
#[derive(Clone)]
pub struct SharedLogFile {
    inner: Arc<Mutex<Shared>>,
}

struct Shared {
    file: RotatingFile,
    last_ts: Option<DateTime<Utc>>,
}

impl Shared {
    fn write_record(&mut self, record: &LogRecord) -> std::io::Result<()> {
        let line = match self.last_ts {
            Some(last) if record.ts < last => LogRecord {
                ts: last,
                ..record.clone()
            }
            .to_json_line(),
            _ => {
                self.last_ts = Some(record.ts);
                record.to_json_line()
            }
        };
        self.file.write_line(&line)
    }
}

impl SharedLogFile {
    pub fn open(
        path: impl Into<PathBuf>,
        policy: RotationPolicy,
    ) -> std::io::Result<SharedLogFile> {
        Ok(SharedLogFile {
            inner: Arc::new(Mutex::new(Shared {
                file: RotatingFile::open(path, policy)?,
                last_ts: None,
            })),
        })
    }

    /// Writes `record` as one line, keeping the file in `ts` order (see the type's docs).
    pub fn write_record(&self, record: &LogRecord) -> std::io::Result<()> {
        self.lock().write_record(record)
    }

    /// Writes `record` stamped with the current time, taken while holding the lock so that
    /// concurrent writers cannot interleave their times.
    pub(crate) fn write_record_now(&self, mut record: LogRecord) -> std::io::Result<()> {
        let mut shared = self.lock();
        record.ts = Utc::now();
        shared.write_record(&record)
    }

    pub fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.lock().file.write_line(line)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A writer that panicked mid-line leaves nothing inconsistent behind: keep logging.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_max_files_and_loses_no_retained_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/x.log");
        let policy = RotationPolicy {
            max_bytes: 40,
            max_files: 3,
        };
        let mut file = RotatingFile::open(&path, policy).unwrap();
        for index in 0..40 {
            file.write_line(&format!("line {index:03}")).unwrap();
        }
        let rotated = rotated_paths(&path);
        assert_eq!(
            rotated,
            (1..=3).map(|i| numbered_path(&path, i)).collect::<Vec<_>>()
        );
        // Oldest first: .3, .2, .1, then the live file; lines are whole and consecutive.
        let mut lines = Vec::new();
        for candidate in rotated.iter().rev().chain(std::iter::once(&path)) {
            let text = fs_err::read_to_string(candidate).unwrap();
            assert!(
                text.len() as u64 <= policy.max_bytes,
                "{candidate:?} too big"
            );
            lines.extend(text.lines().map(str::to_owned));
        }
        let numbers: Vec<u32> = lines
            .iter()
            .map(|line| line.strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(!numbered_path(&path, 4).exists(), "max_files is respected");
        // Each file holds four 9-byte lines, so four files keep the last sixteen lines.
        assert_eq!(numbers.len(), 16);
        assert_eq!(*numbers.last().unwrap(), 39);
        assert!(
            numbers.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{numbers:?}"
        );
    }

    #[test]
    fn log_files_are_private_whatever_the_umask_left() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| fs_err::metadata(path).unwrap().permissions().mode() & 0o777;
        let fresh = dir.path().join("fresh.log");
        RotatingFile::open(&fresh, RotationPolicy::default()).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        // As a umask of 0 (or an older version) would have left it.
        let old = dir.path().join("old.log");
        fs_err::write(&old, "").unwrap();
        fs_err::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();
        let policy = RotationPolicy {
            max_bytes: 10,
            max_files: 2,
        };
        let mut file = RotatingFile::open(&old, policy).unwrap();
        assert_eq!(mode(&old), 0o600);
        for _ in 0..3 {
            file.write_line("a line that rotates").unwrap();
        }
        assert_eq!(mode(&old), 0o600);
        assert_eq!(mode(&numbered_path(&old, 1)), 0o600);
    }

    #[test]
    fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        RotatingFile::open(&path, RotationPolicy::default())
            .unwrap()
            .write_line("one")
            .unwrap();
        RotatingFile::open(&path, RotationPolicy::default())
            .unwrap()
            .write_line("two")
            .unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn zero_rotated_files_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut file = RotatingFile::open(
            &path,
            RotationPolicy {
                max_bytes: 8,
                max_files: 0,
            },
        )
        .unwrap();
        file.write_line("aaaaa").unwrap();
        file.write_line("bbbbb").unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "bbbbb\n");
        assert!(rotated_paths(&path).is_empty());
    }

    #[test]
    fn rotated_paths_are_numbered_files_newest_first_despite_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        for name in [
            "x.log",
            "x.log.1",
            "x.log.3",
            "x.log.10",
            "x.log.01",
            "x.log.bak",
            "y.log.2",
        ] {
            fs_err::write(dir.path().join(name), "").unwrap();
        }
        let expected: Vec<_> = [1, 3, 10].map(|i| numbered_path(&path, i)).into();
        assert_eq!(rotated_paths(&path), expected);
        assert!(rotated_paths(&dir.path().join("missing/x.log")).is_empty());
    }

    #[test]
    fn rotation_drops_files_beyond_a_smaller_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        for index in 1..=5 {
            fs_err::write(numbered_path(&path, index), format!("old {index}\n")).unwrap();
        }
        let policy = RotationPolicy {
            max_bytes: 10,
            max_files: 2,
        };
        let mut file = RotatingFile::open(&path, policy).unwrap();
        file.write_line("first").unwrap();
        file.write_line("second").unwrap();
        assert_eq!(
            rotated_paths(&path),
            vec![numbered_path(&path, 1), numbered_path(&path, 2)]
        );
        assert_eq!(
            fs_err::read_to_string(numbered_path(&path, 1)).unwrap(),
            "first\n"
        );
        assert_eq!(
            fs_err::read_to_string(numbered_path(&path, 2)).unwrap(),
            "old 1\n"
        );
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "second\n");
    }

    #[test]
    fn a_deleted_live_file_does_not_stop_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let policy = RotationPolicy {
            max_bytes: 8,
            max_files: 2,
        };
        let mut file = RotatingFile::open(&path, policy).unwrap();
        file.write_line("aaaaa").unwrap();
        fs_err::remove_file(&path).unwrap();
        file.write_line("bbbbb").unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "bbbbb\n");
    }

    fn record_at(ms: i64, message: &str) -> LogRecord {
        LogRecord {
            ts: DateTime::from_timestamp_millis(ms).unwrap(),
            component: "x".into(),
            level: crate::record::Level::Info,
            message: message.into(),
            fields: serde_json::Map::new(),
        }
    }

    #[test]
    fn shared_files_never_go_back_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let file = SharedLogFile::open(&path, RotationPolicy::default()).unwrap();
        file.write_record(&record_at(1_000, "a")).unwrap();
        file.write_record(&record_at(500, "b")).unwrap();
        file.write_record(&record_at(2_000, "c")).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        let records: Vec<LogRecord> = text.lines().filter_map(LogRecord::parse).collect();
        let stamps: Vec<i64> = records.iter().map(|r| r.ts.timestamp_millis()).collect();
        assert_eq!(stamps, [1_000, 1_000, 2_000]);
        assert_eq!(records[1].message, "b");
    }

    #[test]
    fn concurrent_writers_keep_lines_whole_and_in_order_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let policy = RotationPolicy {
            max_bytes: 64 * 1024,
            max_files: 100,
        };
        let file = SharedLogFile::open(&path, policy).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let file = file.clone();
                std::thread::spawn(move || {
                    for index in 0..500 {
                        let message = format!("writer {writer} line {index}");
                        file.write_record_now(record_at(0, &message)).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let rotated = rotated_paths(&path);
        assert!(!rotated.is_empty(), "the test should rotate");
        let mut records = Vec::new();
        for candidate in rotated.iter().rev().chain(std::iter::once(&path)) {
            for line in fs_err::read_to_string(candidate).unwrap().lines() {
                records.push(LogRecord::parse(line).unwrap());
            }
        }
        assert_eq!(records.len(), 2_000);
        assert!(records.windows(2).all(|pair| pair[0].ts <= pair[1].ts));
        // Each writer's own lines appear in the order it wrote them.
        for writer in 0..4 {
            let prefix = format!("writer {writer} line ");
            let own: Vec<u32> = records
                .iter()
                .filter_map(|r| r.message.strip_prefix(&prefix)?.parse().ok())
                .collect();
            assert_eq!(own, (0..500).collect::<Vec<_>>());
        }
    }
}
