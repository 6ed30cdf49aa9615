//! What the commands start from: the home of this invocation and, for those that start the
//! stack, its resolved settings.

use crate::cli::StartArgs;
use crate::failure::Failure;
use stigmer_config::{EnvVars, Overrides, Settings, StigmerHome};

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
