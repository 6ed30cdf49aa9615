//! Append-only log files with size-based rotation: `x.log` → `x.log.1` → … → `x.log.N`.

use crate::record::LogRecord;
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
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let length = line.len() as u64 + 1;
        if self.size > 0 && self.size + length > self.policy.max_bytes {
            self.rotate()?;
        }
        let mut buffer = Vec::with_capacity(line.len() + 1);
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        self.file.write_all(&buffer)?;
        self.size += length;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.policy.max_files == 0 {
            fs_err::remove_file(&self.path)?;
        } else {
            let numbered = |index: usize| numbered_path(&self.path, index);
            let oldest = numbered(self.policy.max_files);
            if oldest.exists() {
                fs_err::remove_file(&oldest)?;
            }
            for index in (1..self.policy.max_files).rev() {
                let from = numbered(index);
                if from.exists() {
                    fs_err::rename(&from, numbered(index + 1))?;
                }
            }
            fs_err::rename(&self.path, numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<fs_err::File> {
    fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn numbered_path(path: &Path, index: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The rotated files of `path` that exist, newest first (`x.log.1`, `x.log.2`, …).
pub fn rotated_paths(path: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|index| numbered_path(path, index))
        .take_while(|candidate| candidate.exists())
        .collect()
}

/// A [`RotatingFile`] shared between threads and tasks.
#[derive(Clone)]
pub struct SharedLogFile {
    inner: Arc<Mutex<RotatingFile>>,
}

impl SharedLogFile {
    pub fn open(
        path: impl Into<PathBuf>,
        policy: RotationPolicy,
    ) -> std::io::Result<SharedLogFile> {
        Ok(SharedLogFile {
            inner: Arc::new(Mutex::new(RotatingFile::open(path, policy)?)),
        })
    }

    pub fn write_record(&self, record: &LogRecord) -> std::io::Result<()> {
        self.write_line(&record.to_json_line())
    }

    pub fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .write_line(line)
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
        assert_eq!(*numbers.last().unwrap(), 39);
        assert!(
            numbers.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{numbers:?}"
        );
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
}
