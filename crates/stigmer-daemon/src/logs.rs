//! The log files the daemon writes: its own and one per supervised component, rotated by size
//! as the settings say.

use crate::error::{DaemonError, io_error};
use stigmer_config::{Component, Settings};
use stigmer_logs::{RotationPolicy, SharedLogFile};

/// Opens the daemon's own log file, for the caller to install as its tracing sink before
/// calling `run`.
pub fn open_daemon_log(settings: &Settings) -> std::io::Result<SharedLogFile> {
    SharedLogFile::open(
        settings.home.log_file(Component::Daemon),
        rotation(settings),
    )
}

/// Opens the log file a supervised component's output is captured into.
pub fn open_log(settings: &Settings, component: Component) -> Result<SharedLogFile, DaemonError> {
    let path = settings.home.log_file(component);
    SharedLogFile::open(&path, rotation(settings))
        .map_err(io_error(format!("cannot open {}", path.display())))
}

fn rotation(settings: &Settings) -> RotationPolicy {
    RotationPolicy {
        max_bytes: settings.logs.max_file_bytes,
        max_files: settings.logs.max_files,
    }
}
