//! Integration tests of the real `stigmer` binary against the real Temporal dev server.
//! Each test has its own `STIGMER_HOME` with free ports, and stops what it started on drop.

mod agent_guards;
mod agent_tools;
mod approvals;
mod containers;
mod contract;
mod dashboard;
mod lifecycle;
mod logs;
mod resources;
mod runs;
mod server_limits;
mod sub_agents;
mod telemetry;
mod tools;
mod workflow_children;
mod workflow_examples;
mod workflow_runs;
mod workflows;

use stigmer_test::TestHome;

/// A test home running the binary under test.
pub fn home() -> TestHome {
    TestHome::new(env!("CARGO_BIN_EXE_stigmer"))
}
