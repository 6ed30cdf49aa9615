//! Child processes that never outlive their run: the shell tool's `execute` and the stdio MCP
//! servers of the agent-runner.
//!
//! Every such child runs under a *resident wrapper*, `stigmer internal exec` ([`exec_main`]):
//! the wrapper leads a process group of its own, gets a parent-death signal from the runner,
//! optionally confines itself with Landlock (inherited by everything it starts), starts the
//! command in its group and waits. When the command exits, times out, or the runner dies, the
//! wrapper kills every other member of its group, so background processes and grandchildren die
//! with the run. The runner side builds the wrapper's command line with [`Wrapper::command`] and
//! kills the whole group when a run is cancelled ([`run_shell`] does both for the shell).
//!
//! - [`spawn`]: the parent-death signal ([`die_with_parent`]), the minimal environment and the
//!   wrapper's command line.
//! - [`exec`]: the wrapper itself.
//! - [`group`]: finding and killing the members of a process group through `/proc`.
//! - [`confine`]: Landlock (the probe and the ruleset the wrapper applies to itself).
//! - [`shell`]: `sh -c` through the wrapper, with combined output and a timeout.

pub mod confine;
pub mod exec;
pub mod group;
pub mod shell;
pub mod spawn;

pub use confine::{LandlockSupport, landlock_support};
pub use exec::{EXIT_TIMEOUT, EXIT_WRAPPER_FAILED, ExecArgs, ExecArgsError, exec_main};
pub use shell::{ShellError, ShellOutcome, ShellRequest, run_shell};
pub use spawn::{Confinement, Wrapper, die_with_parent, minimal_env};
