//! The Serverless Workflow DSL (CNCF, 1.0.x): its documents, their validation, jq expressions
//! and a deterministic interpreter, free of Temporal. Side effects (HTTP calls, agent runs,
//! timers, the clock) go through a [`Host`](interp::Host), which the workflow runner binds to
//! Temporal and tests bind to the process.

pub mod error;
pub mod expr;

pub use error::{ErrorType, Problem};
pub mod http;
pub mod interp;
pub mod local;
pub mod model;
pub mod secrets;
pub mod validate;

pub use interp::{Host, Run, TaskEvent, TaskEventKind, run};
pub use model::Workflow;
