//! The layout of `$STIGMER_HOME`.
//!
//! Everything Stigmer writes lives below one directory so that two homes never interfere:
//!
//! ```text
//! $STIGMER_HOME/
//!   config.yaml      user configuration
//!   data/            the API server's store and the managed Temporal database
//!   logs/            <component>.log, one JSON object per line (rotated: .log.1 …)
//!   run/             daemon.lock, state.json, api-token: what a running daemon owns
//!   bin/             optional tools (a `temporal` binary placed here is found)
//!   workspace/       per-session working directories of agents
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// A Stigmer home directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StigmerHome {
    root: PathBuf,
}

impl StigmerHome {
    /// A home at `root` (created lazily by [`StigmerHome::create_dirs`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StigmerHome { root: root.into() }
    }

    /// `$STIGMER_HOME` when set and non-empty, otherwise `~/.stigmer`.
    pub fn from_env(stigmer_home: Option<&str>, user_home: Option<&str>) -> Option<Self> {
        match stigmer_home.filter(|value| !value.is_empty()) {
            Some(root) => Some(StigmerHome::new(absolute(Path::new(root)))),
            None => user_home
                .filter(|value| !value.is_empty())
                .map(|home| StigmerHome::new(Path::new(home).join(".stigmer"))),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    pub fn workspace_dir(&self) -> PathBuf {
        self.root.join("workspace")
    }

    /// The file the daemon holds an exclusive lock on for its whole life.
    pub fn lock_file(&self) -> PathBuf {
        self.run_dir().join("daemon.lock")
    }

    /// What the running (or last) daemon recorded: its pid, endpoints and children.
    pub fn state_file(&self) -> PathBuf {
        self.run_dir().join("state.json")
    }

    /// The per-home API token (mode 0600).
    pub fn token_file(&self) -> PathBuf {
        self.run_dir().join("api-token")
    }

    /// The API server's store (SQLite, WAL mode, mode 0600).
    pub fn store_file(&self) -> PathBuf {
        self.data_dir().join("stigmer.db")
    }

    /// The managed Temporal dev server's SQLite database.
    pub fn temporal_db(&self) -> PathBuf {
        self.data_dir().join("temporal.db")
    }

    /// The log file of one component.
    pub fn log_file(&self, component: Component) -> PathBuf {
        self.logs_dir().join(format!("{}.log", component.name()))
    }

    /// Creates every directory of the layout, each private to the user (mode 0700) whatever
    /// the umask and however an earlier version left it: they hold conversations, tool output,
    /// logs and the API token. The home itself is made private only when created here: an
    /// existing directory chosen as `STIGMER_HOME` keeps the mode its owner gave it.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        if !self.root.exists() {
            fs_err::create_dir_all(&self.root)?;
            set_private(&self.root)?;
        }
        for dir in [
            self.data_dir(),
            self.logs_dir(),
            self.run_dir(),
            self.workspace_dir(),
        ] {
            fs_err::create_dir_all(&dir)?;
            set_private(&dir)?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn set_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if fs_err::metadata(dir)?.permissions().mode() & 0o777 == 0o700 {
        return Ok(());
    }
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn set_private(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The parts of the local stack, as named in status, logs and configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The supervisor itself (only a log source).
    Daemon,
    /// The API server, hosted inside the daemon.
    Server,
    /// The Temporal dev server (managed) or cluster (external).
    Temporal,
    /// The Temporal worker that runs agents.
    AgentRunner,
    /// The Temporal worker that runs workflows.
    WorkflowRunner,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Component; 5] = [
        Component::Daemon,
        Component::Temporal,
        Component::Server,
        Component::AgentRunner,
        Component::WorkflowRunner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Daemon => "daemon",
            Component::Server => "server",
            Component::Temporal => "temporal",
            Component::AgentRunner => "agent-runner",
            Component::WorkflowRunner => "workflow-runner",
        }
    }

    pub fn parse(name: &str) -> Option<Component> {
        Component::ALL
            .into_iter()
            .find(|component| component.name() == name)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_prefers_stigmer_home_then_user_home() {
        let home = StigmerHome::from_env(Some("/tmp/h"), Some("/home/u")).unwrap();
        assert_eq!(home.root(), Path::new("/tmp/h"));
        let home = StigmerHome::from_env(Some(""), Some("/home/u")).unwrap();
        assert_eq!(home.root(), Path::new("/home/u/.stigmer"));
        assert!(StigmerHome::from_env(None, None).is_none());
    }

    #[test]
    fn every_directory_of_the_layout_is_private_whatever_its_mode_was() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| fs_err::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let layout = |home: &StigmerHome| {
            [
                home.data_dir(),
                home.logs_dir(),
                home.run_dir(),
                home.workspace_dir(),
            ]
        };

        // A new home, created here.
        let home = StigmerHome::new(dir.path().join("new"));
        home.create_dirs().unwrap();
        assert_eq!(mode(home.root()), 0o700);
        for path in layout(&home) {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
        }

        // An existing home whose directories a umask of 0 (or an older version) left open: the
        // layout is made private, the chosen directory itself is left as its owner set it.
        let home = StigmerHome::new(dir.path().join("existing"));
        for path in [home.root().to_path_buf(), home.logs_dir()] {
            fs_err::create_dir_all(&path).unwrap();
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        home.create_dirs().unwrap();
        assert_eq!(mode(home.root()), 0o777);
        for path in layout(&home) {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
        }
    }

    #[test]
    fn component_names_round_trip() {
        for component in Component::ALL {
            assert_eq!(Component::parse(component.name()), Some(component));
        }
        assert_eq!(
            serde_json::to_string(&Component::AgentRunner).unwrap(),
            "\"agent-runner\""
        );
    }
}
