//! Real processes through the `stigmer-exec` wrapper binary: exit codes and output, timeouts,
//! background processes, cancellation, the death of the runner, Landlock and the environment.
//! Every wait has a deadline; a failing test kills what it started.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use stigmer_sandbox::group::group_members;
use stigmer_sandbox::{
    LandlockSupport, ShellOutcome, ShellRequest, Wrapper, landlock_support, minimal_env, run_shell,
};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long a killed group may take to disappear.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// Prints the shell's process group (the wrapper's pid) as `pgid=N`.
const PRINT_GROUP: &str = "echo pgid=$(cut -d' ' -f5 /proc/$$/stat)";

fn wrapper() -> Wrapper {
    Wrapper {
        program: PathBuf::from(env!("CARGO_BIN_EXE_stigmer-exec")),
    }
}

/// A workspace and a private tmp, removed at the end of the test.
struct Dirs {
    workspace: TempDir,
    tmp: TempDir,
}

impl Dirs {
    fn new() -> Self {
        Self {
            workspace: TempDir::new().expect("workspace"),
            tmp: TempDir::new().expect("tmp"),
        }
    }

    fn request(&self, command: &str) -> ShellRequest {
        ShellRequest {
            command: command.to_owned(),
            workspace: self.workspace.path().to_owned(),
            tmp: self.tmp.path().to_owned(),
            env: minimal_env(self.tmp.path()),
            timeout: Duration::from_secs(20),
            confine: false,
            output_limit: 16 * 1024 * 1024,
        }
    }
}

/// Kills a process group if the test fails while it may still exist.
struct KillOnPanic(Pid);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() && !group_members(self.0).is_empty() {
            let _ = killpg(self.0, Signal::SIGKILL);
        }
    }
}

/// The group printed by [`PRINT_GROUP`].
fn printed_group(output: &str) -> Pid {
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix("pgid="))
        .unwrap_or_else(|| panic!("no pgid line in {output:?}"));
    Pid::from_raw(line.trim().parse().expect("a pgid"))
}

/// Waits until the group has no live member; panics with the survivors' command lines.
async fn assert_gone(group: Pid) {
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        let members = group_members(group);
        if members.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let _ = killpg(group, Signal::SIGKILL);
            let names: Vec<String> = members.iter().map(|pid| cmdline(*pid)).collect();
            panic!("group {group} still has {names:?} after {GONE_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the group has at least `count` live members (the test set up what it kills).
async fn wait_members(group: Pid, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_members(group).len() < count {
        assert!(
            Instant::now() < deadline,
            "group {group} never reached {count} members"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cmdline(pid: Pid) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

async fn shell(request: ShellRequest) -> ShellOutcome {
    run_shell(&wrapper(), request).await.expect("run_shell")
}

#[tokio::test]
async fn exit_code_and_combined_output() {
    let dirs = Dirs::new();
    let outcome = shell(dirs.request("echo out; echo err >&2; exit 3")).await;
    assert_eq!(outcome.exit_code, 3, "{outcome:?}");
    assert!(outcome.output.contains("out\n"), "{outcome:?}");
    assert!(outcome.output.contains("[stderr] err\n"), "{outcome:?}");
    assert!(!outcome.timed_out && !outcome.truncated);

    let killed = shell(dirs.request("kill -9 $$")).await;
    assert_eq!(killed.exit_code, 137, "{killed:?}");

    let mut small = dirs.request("printf 'abcdefghij\\n%.0s' 1 2 3 4 5");
    small.output_limit = 12;
    let truncated = shell(small).await;
    assert_eq!(truncated.output, "abcdefghij\na");
    assert!(truncated.truncated && truncated.exit_code == 0);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dirs = Dirs::new();
    let mut request = dirs.request(&format!("{PRINT_GROUP}; sleep 100 & wait"));
    request.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = shell(request).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{outcome:?}");
    assert_eq!(outcome.exit_code, 124, "{outcome:?}");
    assert!(outcome.timed_out);
    assert_gone(printed_group(&outcome.output)).await;
}

#[tokio::test]
async fn background_processes_die_with_the_shell() {
    let dirs = Dirs::new();
    let started = Instant::now();
    let outcome = shell(dirs.request(&format!("{PRINT_GROUP}; sleep 100 &"))).await;
    // Not the timeout: the pipes closed because the wrapper killed the background `sleep`.
    assert!(started.elapsed() < Duration::from_secs(5), "{outcome:?}");
    assert_eq!(outcome.exit_code, 0, "{outcome:?}");
    assert!(!outcome.timed_out);
    assert_gone(printed_group(&outcome.output)).await;

    let waited = shell(dirs.request(&format!("{PRINT_GROUP}; (sleep 100 &); exit 7"))).await;
    assert_eq!(waited.exit_code, 7, "{waited:?}");
    assert_gone(printed_group(&waited.output)).await;
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let dirs = Dirs::new();
    let marker = dirs.workspace.path().join("pgid");
    let command = format!(
        "cut -d' ' -f5 /proc/$$/stat > {}.part && mv {0}.part {0}; sleep 100 & wait",
        marker.display()
    );
    let wrapper = wrapper();
    let run = run_shell(&wrapper, dirs.request(&command));
    let group = tokio::select! {
        outcome = run => panic!("the command ended early: {outcome:?}"),
        group = read_marker(&marker) => group,
    };
    // `run` is dropped here: the group must go with it.
    let _guard = KillOnPanic(group);
    assert_gone(group).await;
}

/// Waits for the file holding the group id.
async fn read_marker(path: &Path) -> Pid {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let group = Pid::from_raw(text.trim().parse().expect("a pgid"));
            // The shell is in the group, and `sleep` soon: wrapper, sh, sleep.
            wait_members(group, 3).await;
            return group;
        }
        assert!(
            Instant::now() < deadline,
            "no marker file {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The name of [`parent_death_helper`] for the test harness, and the variable that turns it on.
const HELPER: &str = "parent_death_helper";
const HELPER_VARIABLE: &str = "STIGMER_SANDBOX_PARENT_DEATH_HELPER";

/// In a child copy of this test binary (see [`the_group_dies_with_the_runner`]): plays the
/// runner, starts a wrapper with `sh -c 'sleep 100 & wait'`, and waits to be killed. A no-op in
/// an ordinary test run.
#[tokio::test]
async fn parent_death_helper() {
    if std::env::var_os(HELPER_VARIABLE).is_none() {
        return;
    }
    let tmp = std::env::temp_dir();
    let mut command = wrapper().command(
        &[
            "sh".to_owned(),
            "-c".to_owned(),
            format!("{PRINT_GROUP}; sleep 100 & wait"),
        ],
        &minimal_env(&tmp),
        &tmp,
        None,
        None,
    );
    command.stdout(Stdio::inherit());
    let mut child = command.spawn().expect("spawn the wrapper");
    // Only a SIGKILL of this process ends the wait.
    let _ = child.wait().await;
}

#[tokio::test]
async fn the_group_dies_with_the_runner() {
    let mut runner = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([HELPER, "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_VARIABLE, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the helper");
    let stdout = runner.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let group = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.expect("helper output") {
            // libtest prints `test parent_death_helper ... ` without a newline first.
            if let Some((_, group)) = line.split_once("pgid=") {
                return Pid::from_raw(group.trim().parse().expect("a pgid"));
            }
        }
        panic!("the helper ended without starting the wrapper");
    })
    .await
    .expect("the helper started the wrapper in time");
    let _guard = KillOnPanic(group);
    wait_members(group, 3).await;
    runner.start_kill().expect("kill -9 the runner");
    let _ = runner.wait().await;
    assert_gone(group).await;
}

#[tokio::test]
async fn the_wrapper_times_out_by_itself() {
    let tmp = TempDir::new().expect("tmp");
    let mut command = wrapper().command(
        &[
            "sh".to_owned(),
            "-c".to_owned(),
            format!("{PRINT_GROUP}; sleep 100 & wait"),
        ],
        &minimal_env(tmp.path()),
        tmp.path(),
        None,
        Some(Duration::from_millis(500)),
    );
    let output = command.stdout(Stdio::piped()).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .expect("the wrapper's own timeout")
        .expect("run the wrapper");
    assert_eq!(output.status.code(), Some(124), "{output:?}");
    assert_gone(printed_group(&String::from_utf8_lossy(&output.stdout))).await;

    let missing = wrapper()
        .command(
            &["/nonexistent/command".to_owned()],
            &[],
            tmp.path(),
            None,
            None,
        )
        .output()
        .await
        .expect("run the wrapper");
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/command"));
}

#[tokio::test]
async fn landlock_confines_writes() {
    // This machine's kernel (6.18) has Landlock: unavailable here is a failure, not a skip.
    let abi = match landlock_support() {
        LandlockSupport::Enforced { abi } => abi,
        LandlockSupport::Unavailable { reason } => panic!("Landlock unavailable: {reason}"),
    };
    assert!(abi >= 1);
    let dirs = Dirs::new();
    let outside = TempDir::new().expect("outside");
    let mut request = dirs.request(&format!(
        "touch in && echo in-ok; \
         touch {outside}/out; echo outside=$?; \
         touch \"$TMPDIR/t\" && echo tmp-ok; \
         echo x > /dev/null && echo null-ok",
        outside = outside.path().display()
    ));
    request.confine = true;
    let outcome = shell(request).await;
    let output = &outcome.output;
    assert!(output.contains("in-ok\n"), "{output}");
    assert!(output.contains("outside=1\n"), "{output}");
    assert!(output.contains("Permission denied"), "{output}");
    assert!(output.contains("tmp-ok\n"), "{output}");
    assert!(output.contains("null-ok\n"), "{output}");
    assert!(dirs.workspace.path().join("in").exists());
    assert!(dirs.tmp.path().join("t").exists());
    assert!(!outside.path().join("out").exists());
}

#[tokio::test]
async fn only_the_minimal_and_declared_environment() {
    // Some variable of the test process outside the minimal set (cargo sets several); the shell
    // must not inherit it.
    let names = [
        "PATH", "HOME", "LANG", "TERM", "USER", "LOGNAME", "SHELL", "TMPDIR",
    ];
    let foreign = std::env::vars()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, _)| name)
        .find(|name| {
            !names.contains(&name.as_str())
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .expect("the test process has a variable outside the minimal set");
    let dirs = Dirs::new();
    let mut request = dirs.request(&format!(
        "echo \"foreign=[${foreign}] declared=[$DECLARED] tmp=[$TMPDIR] path=[$PATH]\""
    ));
    request.env.push(("DECLARED".to_owned(), "yes".to_owned()));
    let outcome = shell(request).await;
    let output = &outcome.output;
    assert!(output.contains("foreign=[]"), "{foreign}: {output}");
    assert!(output.contains("declared=[yes]"), "{output}");
    assert!(
        output.contains(&format!("tmp=[{}]", dirs.tmp.path().display())),
        "{output}"
    );
    assert!(!output.contains("path=[]"), "{output}");
}

/// The cost of the wrapper and `sh` for the smallest command: printed, not asserted.
#[tokio::test]
async fn overhead_of_true() {
    let dirs = Dirs::new();
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let outcome = shell(dirs.request("true")).await;
        times.push(started.elapsed());
        assert_eq!(outcome.exit_code, 0, "{outcome:?}");
    }
    times.sort();
    println!(
        "run_shell(\"true\"): median {:?}, min {:?}, max {:?} over {} runs",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
}
