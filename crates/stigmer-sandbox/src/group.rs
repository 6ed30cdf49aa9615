//! The members of a process group, found in `/proc`, and killing them.
//!
//! A process group has no kernel handle to wait on: the only complete list of its members is a
//! scan of `/proc/<pid>/stat`. Zombies are left out: they are dead already and only wait for their
//! parent (or init) to reap them.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;

/// How often the wrapper scans for survivors before it gives up (a process in uninterruptible
/// sleep dies only when its system call returns).
const KILL_ROUNDS: u32 = 200;

/// The pause between two scans, giving killed processes time to die.
const KILL_PAUSE: Duration = Duration::from_millis(5);

/// The live (non-zombie) members of process group `group`. An unreadable `/proc` yields none.
pub fn group_members(group: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            // A process may exit between listing and reading: then it is not a member any more.
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (state, pgrp) = parse_stat(&stat)?;
            (pgrp == group.as_raw() && state != 'Z' && state != 'X').then(|| Pid::from_raw(pid))
        })
        .collect()
}

/// The state and process group of a `/proc/<pid>/stat` line. The command name may hold spaces
/// and parentheses, so the fields are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Sends SIGKILL to every live member of `group` but the calling process, scanning again until
/// none is left (at most about a second); returns how many were still alive at the last scan.
pub async fn kill_others(group: Pid) -> usize {
    let me = nix::unistd::getpid();
    let mut survivors = 0;
    for round in 0..KILL_ROUNDS {
        let others: Vec<Pid> = group_members(group)
            .into_iter()
            .filter(|pid| *pid != me)
            .collect();
        survivors = others.len();
        if others.is_empty() {
            break;
        }
        for pid in others {
            // ESRCH: it died on its own meanwhile.
            let _ = kill(pid, Signal::SIGKILL);
        }
        if round + 1 < KILL_ROUNDS {
            tokio::time::sleep(KILL_PAUSE).await;
        }
    }
    survivors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat = "4242 (a (b) c) S 1 4240 4240 0 -1 4194560 0 0";
        assert_eq!(parse_stat(stat), Some(('S', 4240)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_a_member_of_its_group() {
        let members = group_members(nix::unistd::getpgrp());
        assert!(members.contains(&nix::unistd::getpid()));
    }
}
