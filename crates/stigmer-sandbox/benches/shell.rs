//! The shell tool's `execute` of `true`: [`run_shell`] (`sh -c true` through the resident
//! wrapper, in process mode) with and without Landlock confinement, next to, in the same run:
//!
//! - a plain `tokio::process::Command::new("sh").args(["-c", "true"])`, spawned with its output
//!   piped and read to the end, then waited for (what any tool that runs a shell pays);
//! - the wrapper alone: `Wrapper::command` for `sh -c true`, spawned and waited for the same way,
//!   without `run_shell`'s output handling and group guard.
//!
//! The variants take turns, one call each, so that all see the same machine. The wrapper is
//! this package's `stigmer-exec` binary (`CARGO_BIN_EXE_stigmer-exec`: cargo builds the binaries
//! of a package for its benches too), which runs the same `exec_main` as
//! `stigmer internal exec`; `WRAPPER=/path/to/stigmer` measures another binary taking the same
//! arguments (the release `stigmer`, whose `internal exec` is dispatched before anything else).
//!
//! `cargo bench -p stigmer-sandbox --bench shell` (RUNS=300 calls of each after 30 of warm-up).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stigmer_sandbox::{
    LandlockSupport, ShellRequest, Wrapper, landlock_support, minimal_env, run_shell,
};
use tempfile::TempDir;

const WARM_UP: usize = 30;

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The value below which `fraction` of the values lie (nearest rank).
fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[derive(Clone, Copy)]
enum Variant {
    PlainSh,
    WrapperAlone,
    RunShell,
    RunShellConfined,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::PlainSh => "plain `sh -c true` (tokio spawn, read, wait)",
            Variant::WrapperAlone => "wrapper + `sh -c true` (spawn, read, wait)",
            Variant::RunShell => "run_shell(\"true\"), no confinement",
            Variant::RunShellConfined => "run_shell(\"true\"), Landlock",
        }
    }
}

struct Bench {
    wrapper: Wrapper,
    workspace: TempDir,
    tmp: TempDir,
}

impl Bench {
    fn request(&self, confine: bool) -> ShellRequest {
        ShellRequest {
            command: "true".to_owned(),
            workspace: self.workspace.path().to_owned(),
            tmp: self.tmp.path().to_owned(),
            env: minimal_env(self.tmp.path()),
            timeout: Duration::from_secs(20),
            confine,
            output_limit: 1024 * 1024,
        }
    }

    async fn run(&self, variant: Variant) -> Duration {
        let started = Instant::now();
        let code = match variant {
            Variant::PlainSh => {
                let output = tokio::process::Command::new("sh")
                    .args(["-c", "true"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output()
                    .await
                    .expect("sh runs");
                output.status.code().unwrap_or(-1)
            }
            Variant::WrapperAlone => {
                let argv = ["sh", "-c", "true"].map(str::to_owned);
                let env = minimal_env(self.tmp.path());
                let output = self
                    .wrapper
                    .command(&argv, &env, self.workspace.path(), None, None)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output()
                    .await
                    .expect("the wrapper runs");
                output.status.code().unwrap_or(-1)
            }
            Variant::RunShell | Variant::RunShellConfined => {
                let confine = matches!(variant, Variant::RunShellConfined);
                run_shell(&self.wrapper, self.request(confine))
                    .await
                    .expect("run_shell")
                    .exit_code
            }
        };
        let elapsed = started.elapsed();
        assert_eq!(code, 0, "{}", variant.label());
        elapsed
    }
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(300);
    let program = std::env::var_os("WRAPPER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stigmer-exec")));
    let bench = Bench {
        wrapper: Wrapper { program },
        workspace: TempDir::new().expect("workspace"),
        tmp: TempDir::new().expect("tmp"),
    };
    let landlock = landlock_support();
    let mut variants = vec![Variant::PlainSh, Variant::WrapperAlone, Variant::RunShell];
    match &landlock {
        LandlockSupport::Enforced { .. } => variants.push(Variant::RunShellConfined),
        LandlockSupport::Unavailable { reason } => {
            println!("Landlock unavailable, the confined variant is skipped: {reason}");
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let times = runtime.block_on(async {
        for _ in 0..WARM_UP {
            for variant in &variants {
                bench.run(*variant).await;
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); variants.len()];
        for i in 0..runs {
            // Rotate the order, so that no variant always follows the same one.
            for k in 0..variants.len() {
                let index = (i + k) % variants.len();
                times[index].push(ms(bench.run(variants[index]).await));
            }
        }
        times
    });

    println!(
        "shell: `true`, {runs} calls of each, wrapper {} ({landlock:?})",
        bench.wrapper.program.display()
    );
    let plain = percentile(&times[0], 0.5);
    for (variant, times) in variants.iter().zip(&times) {
        let p50 = percentile(times, 0.5);
        println!(
            "  {:<46} p50 {p50:.2} ms  p99 {:.2} ms  (p50 {:+.2} ms over plain sh)",
            variant.label(),
            percentile(times, 0.99),
            p50 - plain
        );
    }
}
