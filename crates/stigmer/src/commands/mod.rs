//! One module per command group; [`dispatch`] maps parsed arguments to them.

mod executions;
mod image;
mod internal;
mod logs;
mod resources;
mod server;
mod sources;

use crate::cli::{
    Cli, Command, ExecutionCommand, ImageCommand, InternalCommand, ServerCommand, StartArgs,
};
use crate::failure::Failure;
use std::process::ExitCode;
use stigmer_config::{EnvVars, Overrides, Settings, StigmerHome};

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
        Command::Execution(ExecutionCommand::List(args)) => executions::list(args).await,
        Command::Execution(ExecutionCommand::Get(args)) => executions::get(args).await,
        Command::Execution(ExecutionCommand::Cancel(args)) => executions::cancel(args).await,
        Command::Execution(ExecutionCommand::Watch(args)) => executions::watch(args).await,
        Command::Image(ImageCommand::Build(args)) => image::build(args).await,
        Command::Internal(InternalCommand::Daemon) => internal::daemon().await,
        Command::Internal(InternalCommand::AgentRunner) => {
            internal::runner(stigmer_config::RunnerRole::Agent).await
        }
        Command::Internal(InternalCommand::WorkflowRunner) => {
            internal::runner(stigmer_config::RunnerRole::Workflow).await
        }
    }
}

/// The home of this invocation: `$STIGMER_HOME`, else `~/.stigmer`.
pub fn home() -> Result<StigmerHome, Failure> {
    StigmerHome::from_env(
        std::env::var(EnvVars::STIGMER_HOME).ok().as_deref(),
        std::env::var("HOME").ok().as_deref(),
    )
    .ok_or_else(|| Failure::from(stigmer_config::ConfigError::NoHome))
}

/// Resolves settings once: defaults < config.yaml < environment < flags.
pub fn settings(home: StigmerHome, args: &StartArgs) -> Result<Settings, Failure> {
    let overrides = Overrides {
        server_port: args.port,
        temporal_port: args.temporal_port,
        temporal_ui_port: args.temporal_ui_port,
        temporal_address: args.temporal_address.clone(),
        startup_timeout_secs: args.wait_timeout,
        agent_runner_mode: args.agent_runner.clone(),
    };
    Ok(Settings::resolve(
        home,
        &|name| std::env::var(name).ok(),
        &overrides,
    )?)
}
