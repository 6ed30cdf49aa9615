//! What a daemon owns, on disk: the lock that says "running" and the state file that says what
//! it started.
//!
//! The OS file lock on `run/daemon.lock` is the only source of truth for "a daemon is running":
//! the kernel releases it when the daemon dies, however it dies, so a stale lock can never block
//! a start. `run/state.json` records endpoints and every child's pid and start time, so the next
//! daemon can reap exactly what a crashed one left behind.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use stigmer_config::{Component, StigmerHome};

/// The daemon's exclusive lock, held for its whole life and released by the kernel at exit.
pub struct DaemonLock {
    _lock: Flock<std::fs::File>,
}

impl DaemonLock {
    /// Takes the lock, or returns `None` when another process holds it. The holder writes its
    /// pid and `start_time` (its process start time, which identifies it with the pid) into the
    /// file, so a stop can find it even without the state file.
    pub fn try_acquire(path: &Path, start_time: u64) -> std::io::Result<Option<DaemonLock>> {
        let file = open_lock_file(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let pid = std::process::id();
                lock.set_len(0)?;
                std::io::Seek::seek(&mut *lock, std::io::SeekFrom::Start(0))?;
                lock.write_all(format!("{pid} {start_time}\n").as_bytes())?;
                Ok(Some(DaemonLock { _lock: lock }))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(std::io::Error::other(format!(
                "cannot lock {}: {errno}",
                path.display()
            ))),
        }
    }
}

/// The pid and start time the current (or last) lock holder wrote into the lock file.
pub fn lock_holder(path: &Path) -> Option<(u32, u64)> {
    let text = fs_err::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// True when some process holds the daemon lock of this home.
pub fn is_locked(path: &Path) -> bool {
    if !path.exists() {
        return false;
    }
    match open_lock_file(path) {
        // Taking a shared lock succeeds only when nobody holds the exclusive one; it is dropped
        // (released) immediately.
        Ok(file) => Flock::lock(file, FlockArg::LockSharedNonblock).is_err(),
        Err(_) => false,
    }
}

fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    Ok(file.into_parts().0)
}

/// `run/state.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub daemon_pid: u32,
    pub daemon_start_time: u64,
    /// When the daemon started, RFC 3339.
    pub started_at: String,
    /// The API server, `127.0.0.1:port`.
    pub server_address: Option<String>,
    /// Temporal's frontend, `host:port`.
    pub temporal_address: Option<String>,
    pub temporal_ui: Option<String>,
    /// Children alive right now.
    pub children: Vec<ChildRecord>,
    /// The agent-runner runs in containers: the next daemon removes what this one left on the
    /// engine, whatever mode it runs in itself.
    #[serde(default)]
    pub container_mode: bool,
}

/// One child process as the daemon started it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub component: Component,
    pub pid: u32,
    pub start_time: u64,
}

/// Why `run/state.json` exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{} cannot be read: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is damaged: {message}", path.display())]
    Damaged {
        path: std::path::PathBuf,
        message: String,
    },
}

impl RunState {
    /// Reads the state file; a missing or unreadable file is `None` (it is advisory).
    pub fn load(home: &StigmerHome) -> Option<RunState> {
        RunState::read(home).ok().flatten()
    }

    /// Reads the state file, telling a missing file (`None`, nothing recorded) from one that is
    /// there but cannot be read or parsed (it is written atomically, so that is damage).
    pub fn read(home: &StigmerHome) -> Result<Option<RunState>, StateFileError> {
        let path = home.state_file();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateFileError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StateFileError::Damaged {
                path,
                message: error.to_string(),
            })
    }

    /// Writes the state file atomically (write a temporary file, then rename over).
    pub fn save(&self, home: &StigmerHome) -> std::io::Result<()> {
        let path = home.state_file();
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let mut file = fs_err::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs_err::rename(&temporary, &path)
    }
}

/// Reads the per-home API token, creating it (mode 0600) on first use.
pub fn ensure_api_token(home: &StigmerHome) -> std::io::Result<String> {
    let path = home.token_file();
    if let Ok(token) = fs_err::read_to_string(&path) {
        let token = token.trim().to_owned();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut fs_err::File::open("/dev/urandom")?, &mut bytes)?;
    let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    let temporary = path.with_extension("tmp");
    {
        use fs_err::os::unix::fs::OpenOptionsExt;
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(token.as_bytes())?;
    }
    fs_err::rename(&temporary, &path)?;
    Ok(token)
}

/// Reads the API token, if the daemon has created one.
pub fn read_api_token(home: &StigmerHome) -> Option<String> {
    fs_err::read_to_string(home.token_file())
        .ok()
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_state_file_is_nothing_and_a_damaged_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let home = StigmerHome::new(dir.path());
        home.create_dirs().unwrap();
        assert!(matches!(RunState::read(&home), Ok(None)));
        fs_err::write(home.state_file(), "{ not json").unwrap();
        let error = RunState::read(&home).unwrap_err().to_string();
        assert!(error.contains("run/state.json is damaged: "), "{error}");
        assert!(error.contains("line 1 column 3"), "{error}");
        assert_eq!(RunState::load(&home), None);
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/daemon.lock");
        assert!(!is_locked(&path));
        let lock = DaemonLock::try_acquire(&path, 1)
            .unwrap()
            .expect("free lock");
        assert!(is_locked(&path));
        assert!(DaemonLock::try_acquire(&path, 1).unwrap().is_none());
        let (pid, start_time) = lock_holder(&path).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(start_time, 1);
        drop(lock);
        assert!(!is_locked(&path));
        assert!(DaemonLock::try_acquire(&path, 1).unwrap().is_some());
    }

    #[test]
    fn state_round_trips_and_token_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = StigmerHome::new(dir.path());
        home.create_dirs().unwrap();
        let state = RunState {
            daemon_pid: 42,
            children: vec![ChildRecord {
                component: Component::AgentRunner,
                pid: 43,
                start_time: 7,
            }],
            ..RunState::default()
        };
        state.save(&home).unwrap();
        assert_eq!(RunState::load(&home), Some(state));
        assert!(matches!(RunState::read(&home), Ok(Some(_))));

        let token = ensure_api_token(&home).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(ensure_api_token(&home).unwrap(), token);
        assert_eq!(read_api_token(&home), Some(token));
        let mode = fs_err::metadata(home.token_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
