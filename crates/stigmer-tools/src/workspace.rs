//! The session workspace and the one rule every file tool obeys: no path leaves it.
//!
//! The rule lives here, in one place, as the few confined operations the tools need. A path the
//! model gives is first made relative lexically (absolute paths inside the root are accepted;
//! `..` that climbs above the root and absolute paths elsewhere are refused). Everything after
//! that goes through a directory handle on the root ([`cap_std::fs::Dir`]): every open, listing,
//! metadata query, directory creation and rename resolves the path *beneath* that handle
//! (`openat2` with `RESOLVE_BENEATH` on Linux, a per-component no-follow walk elsewhere), so a
//! symbolic link that leads out — an intermediate one, the final one, dangling or not, or one
//! swapped in by another process after any check — makes the operation fail instead of reaching
//! outside. There is no check-then-use window. Links that stay inside are followed when reading.
//!
//! The remaining ways out and in, and the rules that close them:
//! - **Writes never go through a link or into an existing file.** `write_file` and `edit_file`
//!   write a new file next to the target (same directory, created exclusively) and rename it
//!   over the target. A rename replaces the directory entry itself, so even a symbolic or hard
//!   link swapped in at the last moment is replaced, never written through. A target that is a
//!   symbolic link is refused ([`FileError::Link`], or [`OutsideWorkspace`] when it leads out).
//! - **Hard links.** A regular file with more than one link may be the same file as one outside
//!   the workspace (a hard link made by someone else). Such a file is not read, edited or
//!   searched ([`FileError::HardLinked`]); `write_file` may still replace it, which breaks the
//!   link and leaves the other name untouched.
//! - **Special files.** Only regular files are read. Files are opened non-blocking, so a FIFO
//!   cannot block the open, and the type of the opened handle is checked: a FIFO, socket or
//!   device is refused ([`FileError::NotRegular`]); walks skip them.
//! - **Walks** ([`Workspace::walk`]) never follow symbolic links (a link is reported, not
//!   entered), keep a set of visited directories, visit a bounded number of entries and check
//!   the caller's budget (deadline and cancellation) at every entry.

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsSyncExt};
use cap_std::fs::MetadataExt;
use cap_std::fs::{Dir, File, FileType, Metadata, OpenOptions};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(test)]
mod tests;

/// Most directory entries one walk visits.
pub const WALK_ENTRY_LIMIT: usize = 100_000;

/// A directory the file tools are confined to.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: Arc<Dir>,
}

/// A path the tools refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{path:?} is outside the workspace: file tools only reach files below the workspace root; use a path relative to it"
)]
pub struct OutsideWorkspace {
    pub path: String,
}

/// Why a confined file operation did not happen; every message names the path as the model
/// gave it (relative to the root).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Outside(#[from] OutsideWorkspace),
    #[error(
        "{path} is a symbolic link (to {target}); file tools do not write through links: use the path of the file it points to"
    )]
    Link { path: String, target: String },
    #[error("{path} is {kind}, not a regular file; file tools only read and write regular files")]
    NotRegular { path: String, kind: &'static str },
    #[error(
        "{path} has {links} hard links, so it may be the same file as one outside the workspace; it is not read or edited (write_file replaces it with a new file)"
    )]
    HardLinked { path: String, links: u64 },
    #[error(
        "{path} is {size} bytes, larger than the {limit} bytes edit_file edits; write the file whole with write_file instead"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("cannot {action} {path}: {kind}")]
    Io {
        action: &'static str,
        path: String,
        kind: std::io::ErrorKind,
    },
}

/// What a walk found at one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Directory,
    /// A symbolic link: reported, never followed.
    Link,
    /// A FIFO, socket or device: reported, never opened.
    Special,
}

/// Why a walk ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// Every entry below the start was visited.
    Complete,
    /// [`WALK_ENTRY_LIMIT`] entries were visited.
    EntryLimit,
}

impl Workspace {
    /// Creates (if needed) and opens the workspace at `root`.
    /// Directories it creates are private (0700) whatever the umask: they hold conversations'
    /// files and tool output.
    pub fn open(root: &Path) -> std::io::Result<Workspace> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("cannot create the workspace {}: {error}", root.display()),
                )
            })?;
        let root = fs_err::canonicalize(root)?;
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority()).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot open the workspace {}: {error}", root.display()),
            )
        })?;
        Ok(Workspace {
            root,
            dir: Arc::new(dir),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path the model gave (relative to the root, or absolute inside it) as a path relative
    /// to the root with only normal components (empty for the root itself). This is lexical
    /// only: links are judged by the confined operations that use the result.
    pub fn relative(&self, user_path: &str) -> Result<PathBuf, OutsideWorkspace> {
        let refuse = || OutsideWorkspace {
            path: user_path.to_owned(),
        };
        let given = Path::new(user_path.trim());
        let relative = if given.is_absolute() {
            given.strip_prefix(&self.root).map_err(|_| refuse())?
        } else {
            given
        };
        // `a/../../b` must not get past the root.
        normalize(relative).ok_or_else(refuse)
    }

    /// A relative path for messages (`.` for the root).
    pub fn display(&self, relative: &Path) -> String {
        display(relative)
    }

    /// Opens the regular file at `relative` for reading (links inside the workspace followed),
    /// refusing special files and files with more than one hard link.
    pub fn open_file(&self, relative: &Path) -> Result<(File, Metadata), FileError> {
        self.open_regular(relative, FollowSymlinks::Yes)
    }

    /// Reads the whole regular file at `relative`, refusing one larger than `limit` bytes;
    /// a final symbolic link is refused (the file is about to be replaced).
    pub fn read_for_edit(&self, relative: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
        let (file, metadata) = self.open_regular(relative, FollowSymlinks::No)?;
        if metadata.len() > limit {
            return Err(FileError::TooLarge {
                path: display(relative),
                size: metadata.len(),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| io_error("read", relative, &error))?;
        if bytes.len() as u64 > limit {
            return Err(FileError::TooLarge {
                path: display(relative),
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }

    /// Replaces (or creates) the file at `relative` with `content`, creating parent directories.
    /// The content goes to a new file in the same directory, which is then renamed over the
    /// target: nothing is ever written through a symbolic or hard link.
    pub fn write_file(&self, relative: &Path, content: &[u8]) -> Result<(), FileError> {
        let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
            return Err(FileError::NotRegular {
                path: display(relative),
                kind: "the workspace root, a directory",
            });
        };
        if !parent.as_os_str().is_empty() {
            self.dir
                .create_dir_all(parent)
                .map_err(|error| self.classify(relative, "create the directories of", error))?;
        }
        let parent_dir = self
            .dir
            .open_dir(dotted(parent))
            .map_err(|error| self.classify(relative, "open the directory of", error))?;
        let previous = match parent_dir.symlink_metadata(name) {
            Ok(metadata) if metadata.is_symlink() => return Err(self.link_error(relative)),
            Ok(metadata) if !metadata.is_file() => {
                return Err(FileError::NotRegular {
                    path: display(relative),
                    kind: kind_name(metadata.file_type()),
                });
            }
            Ok(metadata) => Some(metadata.permissions()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(self.classify(relative, "write", error)),
        };
        let temporary = temporary_name(name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = parent_dir
            .open_with(&temporary, &options)
            .map_err(|error| self.classify(relative, "write", error))?;
        let written = file
            .write_all(content)
            .and_then(|()| match previous {
                Some(permissions) => file.set_permissions(permissions),
                None => Ok(()),
            })
            .and_then(|()| parent_dir.rename(&temporary, &parent_dir, name));
        drop(file);
        if let Err(error) = written {
            let _ = parent_dir.remove_file(&temporary);
            return Err(self.classify(relative, "write", error));
        }
        Ok(())
    }

    /// Sets the permission bits of the file or directory at `relative` (resolved beneath the
    /// workspace like every other path; a final link is refused).
    pub fn set_mode(&self, relative: &Path, mode: u32) -> Result<(), FileError> {
        use cap_std::fs::PermissionsExt;
        let metadata = self
            .dir
            .symlink_metadata(dotted(relative))
            .map_err(|error| self.classify(relative, "read", error))?;
        if metadata.is_symlink() {
            return Err(self.link_error(relative));
        }
        self.dir
            .set_permissions(dotted(relative), cap_std::fs::Permissions::from_mode(mode))
            .map_err(|error| self.classify(relative, "change the mode of", error))
    }

    /// Removes the directory at `relative` with everything in it, if it exists (links inside
    /// are removed, never followed).
    pub fn remove_dir_all(&self, relative: &Path) -> Result<(), FileError> {
        match self.dir.remove_dir_all(dotted(relative)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(self.classify(relative, "remove", error)),
        }
    }

    /// The entries of the directory at `relative` (links inside followed), sorted by name, at
    /// most `limit` of them; the second value is how many there were in all.
    pub fn list(
        &self,
        relative: &Path,
        limit: usize,
        budget: &crate::ToolBudget,
    ) -> Result<(Vec<(String, EntryKind)>, usize), crate::ToolError> {
        let entries = self
            .dir
            .read_dir(dotted(relative))
            .map_err(|error| self.classify(relative, "list", error))?;
        let mut found = Vec::new();
        let mut total = 0usize;
        for entry in entries {
            budget.check()?;
            let Ok(entry) = entry else { continue };
            total += 1;
            if found.len() < limit {
                let kind = entry
                    .file_type()
                    .map(entry_kind)
                    .unwrap_or(EntryKind::Special);
                found.push((entry.file_name().to_string_lossy().into_owned(), kind));
            }
        }
        found.sort();
        Ok((found, total))
    }

    /// What is at `relative`, without following a final symbolic link.
    pub fn kind(&self, relative: &Path) -> Result<EntryKind, FileError> {
        if relative.as_os_str().is_empty() {
            return Ok(EntryKind::Directory);
        }
        self.dir
            .symlink_metadata(relative)
            .map(|metadata| entry_kind(metadata.file_type()))
            .map_err(|error| self.classify(relative, "read", error))
    }

    /// Visits every entry below the directory `start` depth-first in name order, calling `visit`
    /// with each entry's path (relative to the root) and kind; `descend` says whether to enter a
    /// directory. Symbolic links are never followed, a directory is entered at most once, at
    /// most [`WALK_ENTRY_LIMIT`] entries are visited and `budget` is checked at every entry.
    pub fn walk(
        &self,
        start: &Path,
        budget: &crate::ToolBudget,
        descend: &mut dyn FnMut(&Path) -> bool,
        visit: &mut dyn FnMut(&Path, EntryKind) -> Result<(), crate::ToolError>,
    ) -> Result<WalkEnd, crate::ToolError> {
        let mut visited: HashSet<(u64, u64)> = HashSet::new();
        let mut pending = vec![start.to_path_buf()];
        let mut seen = 0usize;
        while let Some(directory) = pending.pop() {
            budget.check()?;
            // The start may be reached through links inside the workspace; below it, nothing is.
            let opened = if directory == start {
                self.dir.open_dir(dotted(&directory))
            } else {
                self.dir.open_dir_nofollow(&directory)
            };
            let handle = match opened {
                Ok(handle) => handle,
                Err(error) if directory == start => {
                    return Err(self.classify(&directory, "list", error).into());
                }
                // Replaced or removed since it was listed: skip it.
                Err(_) => continue,
            };
            if let Ok(metadata) = handle.dir_metadata()
                && !visited.insert((metadata.dev(), metadata.ino()))
            {
                continue;
            }
            let Ok(entries) = handle.entries() else {
                continue;
            };
            let mut children = Vec::new();
            for entry in entries {
                budget.check()?;
                let Ok(entry) = entry else { continue };
                seen += 1;
                if seen > WALK_ENTRY_LIMIT {
                    return Ok(WalkEnd::EntryLimit);
                }
                let kind = entry
                    .file_type()
                    .map(entry_kind)
                    .unwrap_or(EntryKind::Special);
                children.push((directory.join(entry.file_name()), kind));
            }
            children.sort();
            let mut subdirectories = Vec::new();
            for (path, kind) in children {
                budget.check()?;
                visit(&path, kind)?;
                if kind == EntryKind::Directory && descend(&path) {
                    subdirectories.push(path);
                }
            }
            // Depth-first in name order: push in reverse so the first name is handled first.
            pending.extend(subdirectories.into_iter().rev());
        }
        Ok(WalkEnd::Complete)
    }

    fn open_regular(
        &self,
        relative: &Path,
        follow: FollowSymlinks,
    ) -> Result<(File, Metadata), FileError> {
        if relative.as_os_str().is_empty() {
            return Err(FileError::NotRegular {
                path: ".".into(),
                kind: "the workspace root, a directory",
            });
        }
        let mut options = OpenOptions::new();
        // Non-blocking, so that opening a FIFO returns at once (and is then refused below).
        options.read(true).nonblock(true).follow(follow);
        let file = self
            .dir
            .open_with(relative, &options)
            .map_err(|error| self.classify(relative, "read", error))?;
        let metadata = file
            .metadata()
            .map_err(|error| io_error("read", relative, &error))?;
        if !metadata.is_file() {
            return Err(FileError::NotRegular {
                path: display(relative),
                kind: kind_name(metadata.file_type()),
            });
        }
        if metadata.nlink() > 1 {
            return Err(FileError::HardLinked {
                path: display(relative),
                links: metadata.nlink(),
            });
        }
        Ok((file, metadata))
    }

    /// Turns the error of a confined operation on `relative` into what the model reads: an
    /// escape is [`OutsideWorkspace`], a final symbolic link is named as such.
    fn classify(&self, relative: &Path, action: &'static str, error: std::io::Error) -> FileError {
        if is_escape(&error) {
            return outside(relative);
        }
        // A link on the way (or at the end) may be why: name it, or say that it leads out.
        let mut prefix = PathBuf::new();
        for component in relative.components() {
            prefix.push(component);
            match self.dir.symlink_metadata(&prefix) {
                Err(error) if is_escape(&error) => return outside(relative),
                Err(_) => break,
                Ok(metadata) if metadata.is_symlink() => match self.link_error(&prefix) {
                    FileError::Outside(_) => return outside(relative),
                    link if prefix.as_path() == relative => return link,
                    // A link that stays inside, on the way: look further.
                    _ => {}
                },
                Ok(_) => {}
            }
        }
        io_error(action, relative, &error)
    }

    /// The error for a symbolic link at `relative`: outside when it leads out (resolved beneath
    /// the root, or, when dangling, judged by its text), otherwise [`FileError::Link`].
    fn link_error(&self, relative: &Path) -> FileError {
        let target = self
            .dir
            .read_link_contents(relative)
            .unwrap_or_else(|_| PathBuf::from("?"));
        let leads_out = match self.dir.metadata(relative) {
            Err(error) if is_escape(&error) => true,
            Ok(_) => false,
            Err(_) => {
                target.is_absolute()
                    || normalize(&relative.parent().unwrap_or(Path::new("")).join(&target))
                        .is_none()
            }
        };
        if leads_out {
            outside(relative)
        } else {
            FileError::Link {
                path: display(relative),
                target: target.to_string_lossy().into_owned(),
            }
        }
    }
}

/// Lexically normalised `path` with only normal components, or `None` when it is absolute or
/// climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => normalized.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !normalized.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(normalized)
}

/// cap-std reports a resolution that would leave the directory handle as a `PermissionDenied`
/// error of its own (no OS error code); `openat2` reports `EXDEV`, which it maps to the same.
fn is_escape(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::PermissionDenied && error.raw_os_error().is_none()
        || error.raw_os_error() == Some(18) // EXDEV, in case it is passed through unmapped
}

fn outside(relative: &Path) -> FileError {
    FileError::Outside(OutsideWorkspace {
        path: display(relative),
    })
}

fn io_error(action: &'static str, relative: &Path, error: &std::io::Error) -> FileError {
    FileError::Io {
        action,
        path: display(relative),
        kind: error.kind(),
    }
}

fn display(relative: &Path) -> String {
    let text = relative.to_string_lossy().into_owned();
    if text.is_empty() { ".".into() } else { text }
}

/// cap-std wants `.` rather than an empty path for the directory itself.
fn dotted(relative: &Path) -> &Path {
    if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    }
}

fn entry_kind(file_type: FileType) -> EntryKind {
    if file_type.is_symlink() {
        EntryKind::Link
    } else if file_type.is_dir() {
        EntryKind::Directory
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        EntryKind::Special
    }
}

fn kind_name(file_type: FileType) -> &'static str {
    match entry_kind(file_type) {
        EntryKind::Directory => "a directory",
        EntryKind::Link => "a symbolic link",
        EntryKind::File => "a regular file",
        EntryKind::Special => "a special file (a FIFO, socket or device)",
    }
}

/// A name for the new content of `name`, unique within this process and unlikely to clash with
/// anything else (it is created exclusively in any case).
fn temporary_name(name: &std::ffi::OsStr) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".stigmer-{}-{count}.tmp", std::process::id()));
    PathBuf::from(temporary)
}
