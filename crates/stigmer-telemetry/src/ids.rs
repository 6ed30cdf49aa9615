//! Trace and span ids derived from execution ids.
//!
//! Nothing about a trace is stored: every process that works on an execution (the API server,
//! any runner, any attempt of a step) computes the same trace id and the same root span id
//! from the execution id alone, so their spans meet in one trace whatever restarts or retries
//! happen between them.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use sha2::{Digest, Sha256};

fn digest(what: &str, parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"stigmer.");
    hasher.update(what.as_bytes());
    for part in parts {
        // A separator that cannot appear in ids keeps ("a", "bc") apart from ("ab", "c").
        hasher.update([0u8]);
        hasher.update(part.as_bytes());
    }
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&hasher.finalize());
    bytes
}

/// The trace of an execution.
pub fn trace_id(execution_id: &str) -> TraceId {
    let hash = digest("trace", &[execution_id]);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    // An all-zero id is invalid; a hash gives one with probability 2^-128, but never mind.
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    TraceId::from_bytes(bytes)
}

/// The root span of an execution (`invoke_agent …` / `invoke_workflow …`), which the API server
/// emits when the execution ends and every other span of the execution names as its parent.
pub fn root_span_id(execution_id: &str) -> SpanId {
    span_id("root", &[execution_id])
}

/// A span id derived from what identifies the span (a workflow task: the execution, the
/// task's reference and how many times it ran before).
pub fn span_id(what: &str, parts: &[&str]) -> SpanId {
    let hash = digest(what, parts);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash[..8]);
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    SpanId::from_bytes(bytes)
}

/// The root span of an execution as a remote parent: what a runner's spans hang from.
pub fn root_context(execution_id: &str) -> SpanContext {
    SpanContext::new(
        trace_id(execution_id),
        root_span_id(execution_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_valid_and_distinct() {
        assert_eq!(trace_id("aex-1"), trace_id("aex-1"));
        assert_eq!(root_span_id("aex-1"), root_span_id("aex-1"));
        assert_ne!(trace_id("aex-1"), trace_id("aex-2"));
        assert_ne!(root_span_id("aex-1"), root_span_id("aex-2"));
        assert_ne!(trace_id("aex-1"), TraceId::INVALID);
        assert_ne!(root_span_id("aex-1"), SpanId::INVALID);
        assert_ne!(span_id("task", &["a", "bc"]), span_id("task", &["ab", "c"]));
        assert_ne!(span_id("task", &["a"]), span_id("other", &["a"]));
        // Fixed forever: a changed derivation would split the traces of running executions
        // across an upgrade.
        assert_eq!(
            trace_id("aex-1").to_string(),
            "aa62ec6f7ef58902323be6a80767f980"
        );
        assert_eq!(root_span_id("aex-1").to_string(), "b7507bfe6a1fa0f0");
        let root = root_context("wex-9");
        assert!(root.is_valid() && root.is_remote() && root.is_sampled());
        assert_eq!(root.trace_id(), trace_id("wex-9"));
    }
}
