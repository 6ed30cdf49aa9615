//! Operating-system facts about processes and ports, used to reap exactly what this home owns
//! and to name whoever holds a port we need.
//!
//! A process is identified by its pid *and* its start time (field 22 of `/proc/<pid>/stat`), so
//! a recycled pid is never mistaken for one of ours. Nothing is ever found or killed by name.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// The kernel's start time of `pid` in clock ticks since boot, or `None` when it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let state_and_rest: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts with field 3 (state); field 22 is index 19 from there.
    let state = *state_and_rest.first()?;
    if state == "Z" || state == "X" {
        return None;
    }
    state_and_rest.get(19)?.parse().ok()
}

/// True when `pid` is stopped (state `T`, by a signal such as SIGSTOP, or `t`, by a tracer): it
/// runs no code, so it cannot poll, heartbeat or answer until it is continued.
pub fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = fs_err::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, Some("T" | "t"))
}

/// True when `pid` is alive and is the same process that had `start_time` when it was recorded.
pub fn is_same_process(pid: u32, recorded_start_time: u64) -> bool {
    start_time(pid) == Some(recorded_start_time)
}

/// Sends `signal` to the process group led by `pid` (children are started as group leaders).
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if killpg(Pid::from_raw(raw), signal).is_err() {
        // The group may be gone already; fall back to the process itself.
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// Sends `signal` to one process.
pub fn signal_process(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// Stops a recorded process group that outlived its daemon: SIGTERM, a short grace, SIGKILL.
/// Only acts when the process still has the recorded start time. Returns true if it acted.
pub fn reap_recorded(pid: u32, recorded_start_time: u64, grace: Duration) -> bool {
    if !is_same_process(pid, recorded_start_time) {
        return false;
    }
    signal_group(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_same_process(pid, recorded_start_time) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(pid, Signal::SIGKILL);
    true
}

/// Describes how a child ended, for status and restart records.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(number) => match Signal::try_from(number) {
            Ok(signal) => format!("killed by signal {number} ({})", signal.as_str()),
            Err(_) => format!("killed by signal {number}"),
        },
        None => "exited".into(),
    }
}

/// A port that another process already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub pid: u32,
    pub command: String,
}

/// Binds 127.0.0.1:`port`, which proves the port is free; `0` picks a free port.
pub fn bind_loopback(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// A port that is free right now on 127.0.0.1, for a program that binds it itself.
pub fn free_port() -> std::io::Result<u16> {
    Ok(bind_loopback(0)?.local_addr()?.port())
}

/// The process listening on TCP `port`, where the OS tells (Linux: `/proc/net/tcp*` and the
/// socket links in `/proc/<pid>/fd`; other users' processes may not be visible).
pub fn port_holder(port: u16) -> Option<PortHolder> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs_err::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    for entry in fs_err::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs_err::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if targets
                .iter()
                .any(|target| link.as_os_str() == target.as_str())
            {
                return Some(PortHolder {
                    pid,
                    command: command_line(pid).unwrap_or_else(|| "?".into()),
                });
            }
        }
    }
    None
}

/// The command line of `pid`, arguments separated by spaces.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = fs_err::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = raw
        .split(|byte| *byte == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    // One readable line: no embedded newlines, and not a whole script.
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 120 {
        text = text.chars().take(117).collect::<String>() + "...";
    }
    (!text.is_empty()).then_some(text)
}

/// Inodes of sockets in LISTEN state (0A) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let wanted = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let local = columns.get(1)?;
            let state = columns.get(3)?;
            let inode = columns.get(9)?;
            let local_port = local.rsplit(':').next()?;
            (local_port == wanted && *state == "0A").then(|| (*inode).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable_and_identifies_us() {
        let pid = std::process::id();
        let first = start_time(pid).unwrap();
        assert_eq!(start_time(pid), Some(first));
        assert!(is_same_process(pid, first));
        assert!(!is_same_process(pid, first + 1));
        assert_eq!(start_time(u32::MAX - 1), None);
    }

    #[test]
    fn a_stopped_process_is_seen_as_stopped_until_continued() {
        /// Killed and reaped however the test ends.
        struct Sleeper(std::process::Child);
        impl Drop for Sleeper {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Sleeper(
            std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        let wait_for = |stopped: bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while is_stopped(pid) != stopped {
                assert!(
                    Instant::now() < deadline,
                    "is_stopped never became {stopped}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        assert!(!is_stopped(pid));
        signal_process(pid, Signal::SIGSTOP);
        wait_for(true);
        signal_process(pid, Signal::SIGCONT);
        wait_for(false);
        drop(child);
        assert!(!is_stopped(pid));
    }

    #[test]
    fn the_holder_of_a_port_is_named() {
        let listener = bind_loopback(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(port).expect("our own listener is visible");
        assert_eq!(holder.pid, std::process::id());
        assert!(!holder.command.is_empty());
        drop(listener);
        assert_eq!(port_holder(port), None);
    }

    #[test]
    fn listening_sockets_are_parsed_from_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1C41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1C42 0100007F:9999 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 7233), vec!["12345".to_owned()]);
        assert!(listening_inodes(table, 7234).is_empty());
    }

    #[test]
    fn exits_are_described_with_code_or_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe_exit(std::process::ExitStatus::from_raw(3 << 8)),
            "exited with code 3"
        );
        assert_eq!(
            describe_exit(std::process::ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
