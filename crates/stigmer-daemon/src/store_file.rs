//! Notices the store's database file deleted or replaced while the daemon runs.
//!
//! SQLite keeps writing into the file it opened, whatever happens to its name: without this
//! check a daemon whose `data/stigmer.db` was deleted looks healthy while everything it stores
//! goes into an unlinked file that vanishes when it stops. The file is identified by device and
//! inode, recorded when the store opens; the daemon holds the file open, so its inode cannot be
//! reused by a new file at the same path.

use crate::board::Board;
use crate::stack::{self, LayerResult};
use crate::unit;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How the daemon reports a store file problem on the board.
pub const PROBLEM_KEY: &str = "store-file";

/// A file's identity: the device and inode it lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let metadata = fs_err::metadata(path)?;
        Ok(FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

/// What is wrong with the database file at `path`, which was `opened` when the store opened:
/// `None` while it is still that file.
pub fn problem(path: &Path, opened: FileIdentity) -> Option<String> {
    let consequence = "the daemon keeps writing to the file it opened, and all of that is lost \
                       when it stops; restore the file (from a backup) before stopping the daemon, \
                       or accept the loss and run `stigmer server restart`";
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "the database file {} was deleted while the daemon runs: {consequence}",
            path.display()
        )),
        Err(error) => Some(format!(
            "the database file {} cannot be checked: {error}",
            path.display()
        )),
        Ok(metadata) if (metadata.dev(), metadata.ino()) != (opened.device, opened.inode) => {
            Some(format!(
                "the database file {} was replaced by another file while the daemon runs: \
                 {consequence}",
                path.display()
            ))
        }
        Ok(_) => None,
    }
}

/// How often the store's database file is checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Checks, until `stop`, that the store's database file is still the one it opened; a deleted
/// or replaced file is a problem in status and an error in the log (once per change).
pub async fn watch(
    board: Arc<Board>,
    path: PathBuf,
    opened: FileIdentity,
    mut stop: watch::Receiver<bool>,
) -> LayerResult {
    let mut reported: Option<String> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
            () = unit::until_true(&mut stop) => return Ok(()),
        }
        let checked = path.clone();
        let problem = stack::blocking("checking the database file", move || {
            problem(&checked, opened)
        })
        .await?;
        if problem == reported {
            continue;
        }
        match &problem {
            Some(problem) => {
                tracing::error!(path = %path.display(), "{problem}");
            }
            None => {
                tracing::info!(path = %path.display(), "The database file is back in place.");
            }
        }
        board.set_problem(PROBLEM_KEY, problem.clone());
        reported = problem;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_replaced_database_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stigmer.db");
        fs_err::write(&path, "database").unwrap();
        // Held open, as the store holds it.
        let _open = fs_err::File::open(&path).unwrap();
        let opened = FileIdentity::of(&path).unwrap();
        assert_eq!(problem(&path, opened), None);

        // Moved away and back: noticed, then well again.
        let moved = dir.path().join("moved.db");
        fs_err::rename(&path, &moved).unwrap();
        assert!(problem(&path, opened).is_some());
        fs_err::rename(&moved, &path).unwrap();
        assert_eq!(problem(&path, opened), None);

        fs_err::remove_file(&path).unwrap();
        let deleted = problem(&path, opened).expect("a deleted file is a problem");
        assert!(deleted.contains("stigmer.db was deleted"), "{deleted}");
        assert!(deleted.contains("lost when it stops"), "{deleted}");

        fs_err::write(&path, "another database").unwrap();
        let replaced = problem(&path, opened).expect("a new file is a problem");
        assert!(replaced.contains("stigmer.db was replaced"), "{replaced}");
    }
}
