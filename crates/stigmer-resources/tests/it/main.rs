//! Manifest parsing and planning, table-driven: every invalid manifest must produce its own
//! clear message with file, line, column, document and field (snapshots), and the parser must
//! never panic on arbitrary input (property test).

mod invalid;
mod valid;

use stigmer_resources::{
    Kind, Lookup, LookupError, ManifestError, Resource, Source, locate_plan_errors, parse_sources,
    plan_apply,
};

/// A store with a few resources, for reference checks.
pub struct Stored(pub Vec<Resource>);

impl Lookup for Stored {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, LookupError> {
        Ok(self
            .0
            .iter()
            .find(|r| r.kind == kind && r.metadata.name == name)
            .cloned())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Resource>, LookupError> {
        Ok(self.0.iter().filter(|r| r.kind == kind).cloned().collect())
    }
}

/// Parses and plans `text` as the file `manifests.yaml`; returns every error rendered.
pub fn errors_of(text: &str, stored: &Stored) -> Vec<String> {
    match check(&[("manifests.yaml", text)], stored) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Parses and plans several files.
pub fn check(
    files: &[(&str, &str)],
    stored: &Stored,
) -> Result<Vec<stigmer_resources::Planned>, Vec<ManifestError>> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(name, text)| Source {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    let documents = parse_sources(&sources)?;
    let resources: Vec<Resource> = documents.iter().map(|d| d.resource.clone()).collect();
    match plan_apply(&resources, stored, "2026-01-01T00:00:00.000Z").expect("lookup") {
        Ok(planned) => Ok(planned),
        Err(errors) => Err(locate_plan_errors(&documents, &errors)),
    }
}
