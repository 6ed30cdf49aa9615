//! Starting children: the parent-death signal, the minimal environment, and the command line of
//! the resident wrapper.

use crate::exec::ExecArgs;
use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Makes the kernel send `signal` to the child when its parent dies, however it dies.
///
/// Linux sends the signal when the *thread* that spawned the child exits, not the process: spawn
/// from a long-lived thread (an async task on a runtime worker), never from `spawn_blocking`,
/// whose idle threads exit after a few seconds. The signal is not inherited by the child's own
/// children (`fork` clears it), which is why the shell and MCP servers run under the wrapper.
/// Takes the std command; a tokio command passes `command.as_std_mut()`.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "pre_exec is the only way to run code between fork and exec"
)]
pub fn die_with_parent(command: &mut std::process::Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec; it only calls prctl and getppid,
    // which are async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal).map_err(std::io::Error::from)?;
            // The parent may have died between fork and prctl; then nobody would signal us.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the parent exited during spawn"));
            }
            Ok(())
        });
    }
}

/// Without `PR_SET_PDEATHSIG` there is nothing to arrange; the process group still holds.
#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_command: &mut std::process::Command, _signal: Signal) {}

/// The variables a child inherits from the runner; everything else in the runner's environment
/// (API tokens, provider keys) stays out.
const INHERITED: [&str; 7] = ["PATH", "HOME", "LANG", "TERM", "USER", "LOGNAME", "SHELL"];

/// `PATH` when the runner has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment of a shell command or stdio MCP server before what the agent declares:
/// `PATH HOME LANG TERM USER LOGNAME SHELL` from this process when set (`PATH` defaults to
/// `/usr/local/bin:/usr/bin:/bin`), and `TMPDIR` = `tmpdir`. Never the rest of the environment.
pub fn minimal_env(tmpdir: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = INHERITED
        .iter()
        .filter_map(|name| {
            let value = std::env::var(name)
                .ok()
                .or_else(|| (*name == "PATH").then(|| DEFAULT_PATH.to_owned()))?;
            Some(((*name).to_owned(), value))
        })
        .collect();
    env.push(("TMPDIR".to_owned(), tmpdir.to_string_lossy().into_owned()));
    env
}

/// Where a confined command may write: its workspace and a private temporary directory (plus
/// `/dev/null` and `/dev/tty`); everything else is read and execute only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    pub workspace: PathBuf,
    pub tmp: PathBuf,
}

/// The resident wrapper: `program internal exec … -- argv…`.
#[derive(Debug, Clone)]
pub struct Wrapper {
    /// The stigmer binary (in tests, `stigmer-exec`, which takes the same arguments).
    pub program: PathBuf,
}

impl Wrapper {
    /// The command that runs `argv` under the wrapper: a cleared environment plus `env`, `cwd` as
    /// the working directory, leader of a new process group (whose id is the wrapper's pid),
    /// SIGTERM when the spawning thread dies, stdin from `/dev/null` (callers may pipe it).
    /// Spawn it from an async task, never from `spawn_blocking` (see [`die_with_parent`]).
    pub fn command(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: &Path,
        confine: Option<&Confinement>,
        timeout: Option<Duration>,
    ) -> tokio::process::Command {
        let args = ExecArgs {
            confine: confine.cloned(),
            timeout,
            argv: argv.iter().map(OsString::from).collect(),
        };
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("internal")
            .arg("exec")
            .args(args.to_args())
            .env_clear()
            .envs(env.iter().map(|(name, value)| (name, value)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .process_group(0);
        die_with_parent(command.as_std_mut(), Signal::SIGTERM);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_env_has_only_the_inherited_names_and_tmpdir() {
        let env = minimal_env(Path::new("/run/tmp-x"));
        assert!(
            env.iter()
                .any(|(name, value)| name == "PATH" && !value.is_empty())
        );
        assert!(env.contains(&("TMPDIR".to_owned(), "/run/tmp-x".to_owned())));
        for (name, _) in &env {
            assert!(
                INHERITED.contains(&name.as_str()) || name == "TMPDIR",
                "{name}"
            );
        }
    }

    #[test]
    fn wrapper_command_line() {
        let wrapper = Wrapper {
            program: PathBuf::from("/bin/stigmer"),
        };
        let confinement = Confinement {
            workspace: PathBuf::from("/w"),
            tmp: PathBuf::from("/t"),
        };
        let command = wrapper.command(
            &["sh".to_owned(), "-c".to_owned(), "true".to_owned()],
            &[],
            Path::new("/w"),
            Some(&confinement),
            Some(Duration::from_millis(1500)),
        );
        let args: Vec<_> = command.as_std().get_args().collect();
        assert_eq!(
            args,
            [
                "internal",
                "exec",
                "--workspace",
                "/w",
                "--tmp",
                "/t",
                "--timeout-ms",
                "1500",
                "--",
                "sh",
                "-c",
                "true"
            ]
        );
        assert_eq!(command.as_std().get_envs().count(), 0);
    }
}
