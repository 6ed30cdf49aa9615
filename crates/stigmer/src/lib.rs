//! The `stigmer` command line: argument parsing, dispatch, and turning failures into exit codes
//! and readable errors. The same binary also runs the hidden roles the daemon starts
//! (`stigmer internal daemon|agent-runner|workflow-runner`).

mod cli;
mod client;
mod commands;
mod failure;
mod printer;
mod render;

pub use failure::Failure;

use clap::Parser;
use std::ops::ControlFlow;
use std::process::ExitCode;

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    // `internal exec` must run while this process has one thread (Landlock binds only the calling
    // thread), so before the multi-thread runtime below starts its workers.
    let args = match commands::dispatch_before_runtime(cli::Cli::parse()) {
        ControlFlow::Break(code) => return code,
        ControlFlow::Continue(args) => args,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(args)) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
