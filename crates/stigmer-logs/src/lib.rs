//! The log line format every Stigmer component writes, and the writers that produce it.
//!
//! Every line of `$STIGMER_HOME/logs/<component>.log` is one flat JSON object:
//!
//! ```json
//! {"ts":"2026-11-23T05:06:58.123Z","component":"agent-runner","level":"info","message":"Worker polling.","task_queue":"agent_execution_runner"}
//! ```
//!
//! The keys come in this order: `ts` (RFC 3339, UTC, milliseconds, `Z`), `component`, `level`
//! (one of `trace`, `debug`, `info`, `warn`, `error`), `message`, then the line's fields. Our own
//! components write such lines through the `tracing` layer [`JsonLayer`]; the daemon turns every
//! captured output line of a child into one with [`capture_line`] (foreign lines get the capture
//! time, their own timestamp is kept as the field `source_ts`), and writes them through a
//! [`SharedLogFile`], which keeps each file in `ts` order, with size-based rotation
//! ([`RotatingFile`]): the newest lines are in `x.log`, older ones in `x.log.1`, `x.log.2`, …
//! ([`rotated_paths`]). [`read`] reads them back for `stigmer server logs`: merged by `ts`
//! across components, the last lines without reading whole files, filtered, and followed as
//! they grow, so this format is a contract.

mod layer;
pub mod read;
mod record;
mod rotate;

pub use layer::{InitError, JsonLayer, LogSink, init, init_layer};
pub use record::{Level, LogRecord, Stream, capture_line, format_ts};
pub use rotate::{RotatingFile, RotationPolicy, SharedLogFile, rotated_paths};
