//! One module per command group; [`dispatch`] maps parsed arguments to them. The modules never
//! import from this one: what they share lives in modules of its own (`invocation`, `output`,
//! `table`, `execution_output`, `approvals`, `follow`), so no module imports from one that
//! imports from it.

mod approvals;
mod dashboard;
mod execution_output;
mod executions;
mod follow;
mod image;
mod internal;
mod invocation;
mod logs;
mod output;
mod resources;
mod server;
mod sources;
mod table;

use crate::cli::{Cli, Command, ExecutionCommand, ImageCommand, InternalCommand, ServerCommand};
use crate::failure::Failure;
use std::ops::ControlFlow;
use std::process::ExitCode;

/// Runs the commands that must start before the async runtime (and its threads) exists, and hands
/// the others back: `internal exec` confines itself with Landlock, which binds only the calling
/// thread.
pub fn dispatch_before_runtime(cli: Cli) -> ControlFlow<ExitCode, Cli> {
    match cli.command {
        Command::Internal(InternalCommand::Exec(args)) => ControlFlow::Break(internal::exec(args)),
        command => ControlFlow::Continue(Cli { command }),
    }
}

/// Runs one command.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Server(ServerCommand::Start(args)) => server::start(args).await,
        Command::Server(ServerCommand::Stop) => server::stop().await,
        Command::Server(ServerCommand::Restart(args)) => server::restart(args).await,
        Command::Server(ServerCommand::Status(args)) => server::status(args).await,
        Command::Server(ServerCommand::Logs(args)) => logs::logs(args).await,
        Command::Apply(args) => resources::apply(args).await,
        Command::Get(args) => resources::get(args).await,
        Command::Delete(args) => resources::delete(args).await,
        Command::Run(args) => executions::run(args).await,
        Command::Dashboard(args) => dashboard::open(args).await,
        Command::Execution(ExecutionCommand::List(args)) => executions::list(args).await,
        Command::Execution(ExecutionCommand::Get(args)) => executions::get(args).await,
        Command::Execution(ExecutionCommand::Cancel(args)) => executions::cancel(args).await,
        Command::Execution(ExecutionCommand::Watch(args)) => executions::watch(args).await,
        Command::Execution(ExecutionCommand::Approve(args)) => approvals::approve(args).await,
        Command::Execution(ExecutionCommand::Deny(args)) => approvals::deny(args).await,
        Command::Image(ImageCommand::Build(args)) => image::build(args).await,
        Command::Internal(InternalCommand::Daemon) => internal::daemon().await,
        Command::Internal(InternalCommand::AgentRunner) => {
            internal::runner(stigmer_config::RunnerRole::Agent).await
        }
        Command::Internal(InternalCommand::WorkflowRunner) => {
            internal::runner(stigmer_config::RunnerRole::Workflow).await
        }
        // Handled by `dispatch_before_runtime`; it cannot run inside a runtime.
        Command::Internal(InternalCommand::Exec(_)) => Err(Failure::new(
            "internal exec must start before the async runtime",
        )),
    }
}
