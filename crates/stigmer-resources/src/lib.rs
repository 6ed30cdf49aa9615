//! The resource model: kinds, the envelope, typed specs, manifest parsing with located errors,
//! and the apply plan (created / updated / unchanged, references, duplicates).
//!
//! No I/O: the CLI reads files and the server owns the store; both call into this crate, so
//! a manifest is judged by the same rules on either side.

mod depth;
mod kind;
mod locate;
mod manifest;
mod model;
mod plan;
mod skill;
pub mod variables;
mod workflow;

pub use kind::Kind;
pub use locate::locate;
pub use manifest::{
    ManifestError, ParsedDocument, Source, parse_sources, parse_sources_with, validate,
};
pub use model::*;
pub use plan::{
    Action, Lookup, LookupError, PlanError, Planned, locate_plan_errors, plan_apply, referrers,
};
pub use skill::{SkillError, skill_from_files};
pub use variables::VariableError;
pub use workflow::{DEFAULT_DSL, DEFAULT_NAMESPACE, DEFAULT_VERSION, workflow_document};

/// True for a DNS label: 1–63 lowercase letters, digits and `-`, starting and ending with a
/// letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The candidate closest to `text`, if it is close enough to be a likely typo.
pub fn suggest<'a>(text: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(text, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// A new id for a resource of `kind`: `agt-3f9c…` (prefix and 16 random hex digits).
pub fn new_id(kind: Kind) -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Randomness is only for uniqueness; the clock is a fine fallback.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", kind.id_prefix())
}

/// Now, as resources record times (RFC 3339, UTC, milliseconds).
pub fn now() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// A time as resources record times (RFC 3339, UTC, milliseconds).
pub fn rfc3339(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "my-agent", "a1", "x".repeat(63).as_str()] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "My", "a_b", "a.b", "x".repeat(64).as_str()] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn ids_have_the_kind_prefix_and_differ() {
        let first = new_id(Kind::Agent);
        assert!(first.starts_with("agt-") && first.len() == 20, "{first}");
        assert_ne!(first, new_id(Kind::Agent));
    }
}
