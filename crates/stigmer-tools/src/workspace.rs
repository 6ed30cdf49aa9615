//! The session workspace and the one rule every file tool obeys: no path leaves it.

use std::path::{Component, Path, PathBuf};

/// A directory the file tools are confined to.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
}

/// A path the tools refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{path:?} is outside the workspace: file tools only reach files below the workspace root; use a path relative to it"
)]
pub struct OutsideWorkspace {
    pub path: String,
}

impl Workspace {
    /// Creates (if needed) and opens the workspace at `root`.
    pub fn open(root: &Path) -> std::io::Result<Workspace> {
        fs_err::create_dir_all(root)?;
        Ok(Workspace {
            root: fs_err::canonicalize(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a path the model gave (relative to the root, or absolute inside it) to a real
    /// path inside the workspace. `..` that climbs out and symbolic links that point out are
    /// refused, for paths that exist and for paths about to be created.
    pub fn resolve(&self, user_path: &str) -> Result<PathBuf, OutsideWorkspace> {
        let refuse = || OutsideWorkspace {
            path: user_path.to_owned(),
        };
        let given = Path::new(user_path.trim());
        let relative = if given.is_absolute() {
            given
                .strip_prefix(&self.root)
                .map_err(|_| refuse())?
                .to_path_buf()
        } else {
            given.to_path_buf()
        };
        // Lexical normalisation first: `a/../../b` must not get past the root.
        let mut normalized = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => normalized.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !normalized.pop() {
                        return Err(refuse());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(refuse()),
            }
        }
        let candidate = self.root.join(&normalized);
        // Then the file system: the deepest existing ancestor, with links resolved, must
        // still be inside the root.
        let mut existing = candidate.as_path();
        loop {
            if existing.exists() {
                break;
            }
            match existing.parent() {
                Some(parent) => existing = parent,
                None => return Err(refuse()),
            }
        }
        let real = fs_err::canonicalize(existing).map_err(|_| refuse())?;
        if !real.starts_with(&self.root) {
            return Err(refuse());
        }
        let rest = candidate.strip_prefix(existing).map_err(|_| refuse())?;
        // Joining an empty remainder would add a trailing separator to a file path.
        Ok(if rest.as_os_str().is_empty() {
            real
        } else {
            real.join(rest)
        })
    }

    /// `path` relative to the root, for messages.
    pub fn display(&self, path: &Path) -> String {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        let text = relative.to_string_lossy().into_owned();
        if text.is_empty() { ".".into() } else { text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_are_resolved_and_escapes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(&dir.path().join("ws")).unwrap();
        let root = workspace.root().to_path_buf();
        assert_eq!(workspace.resolve("a/b.txt").unwrap(), root.join("a/b.txt"));
        assert_eq!(
            workspace.resolve("./a/../c.txt").unwrap(),
            root.join("c.txt")
        );
        assert_eq!(workspace.resolve(".").unwrap(), root);
        assert_eq!(
            workspace
                .resolve(&root.join("x").to_string_lossy())
                .unwrap(),
            root.join("x")
        );
        for escape in ["..", "../x", "a/../../x", "/etc/passwd", "/"] {
            assert!(workspace.resolve(escape).is_err(), "{escape} was allowed");
        }
    }

    #[test]
    fn symbolic_links_out_of_the_workspace_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(&dir.path().join("ws")).unwrap();
        let outside = dir.path().join("outside");
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::write(outside.join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(&outside, workspace.root().join("link")).unwrap();
        assert!(workspace.resolve("link/secret.txt").is_err());
        assert!(workspace.resolve("link/new.txt").is_err());
        std::os::unix::fs::symlink(workspace.root().join("."), workspace.root().join("self"))
            .unwrap();
        assert!(workspace.resolve("self/ok.txt").is_ok());
    }
}
