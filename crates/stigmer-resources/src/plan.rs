//! Planning an apply against what is stored: duplicates, references, and per resource whether
//! it is created, updated or unchanged, with the server-set metadata filled in.

use crate::kind::Kind;
use crate::model::Resource;
use crate::suggest;
use std::collections::{BTreeMap, BTreeSet};

/// Read access to stored resources.
pub trait Lookup {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, String>;
    fn list(&self, kind: Kind) -> Result<Vec<Resource>, String>;
}

/// What an apply does to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
        }
    }
}

/// One resource of an apply, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub action: Action,
    pub resource: Resource,
}

/// A problem found while planning, about document `index` (0-based in the apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    pub index: usize,
    pub path: String,
    pub message: String,
    /// Another document the problem involves (the first definition of a duplicate).
    pub other_index: Option<usize>,
}

/// Plans an apply of `resources` (already parsed and validated one by one). All or nothing:
/// any error means nothing may be written.
pub fn plan_apply(
    resources: &[Resource],
    lookup: &dyn Lookup,
    now: &str,
) -> Result<Result<Vec<Planned>, Vec<PlanError>>, String> {
    let mut errors = Vec::new();
    let mut first_definition: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    for (index, resource) in resources.iter().enumerate() {
        let key = (resource.kind, resource.metadata.name.as_str());
        if let Some(first) = first_definition.get(&key) {
            errors.push(PlanError {
                index,
                path: "metadata.name".into(),
                message: format!(
                    "{} \"{}\" is defined more than once in this apply",
                    resource.kind, resource.metadata.name
                ),
                other_index: Some(*first),
            });
        } else {
            first_definition.insert(key, index);
        }
        for problem in crate::validate(resource) {
            errors.push(PlanError {
                index,
                path: problem.0,
                message: problem.1,
                other_index: None,
            });
        }
    }

    // References resolve against this apply and the store.
    let mut stored_names: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
    for (index, resource) in resources.iter().enumerate() {
        for (kind, name, path) in resource.references() {
            if first_definition.contains_key(&(kind, name.as_str())) {
                continue;
            }
            if lookup.get(kind, &name)?.is_some() {
                continue;
            }
            let known = match stored_names.get(&kind) {
                Some(known) => known,
                None => {
                    let names = lookup
                        .list(kind)?
                        .into_iter()
                        .map(|resource| resource.metadata.name)
                        .collect();
                    stored_names.entry(kind).or_insert(names)
                }
            };
            let in_apply = first_definition
                .keys()
                .filter(|(candidate_kind, _)| *candidate_kind == kind)
                .map(|(_, candidate)| *candidate);
            let hint = suggest(&name, known.iter().map(String::as_str).chain(in_apply))
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            errors.push(PlanError {
                index,
                path,
                message: format!(
                    "{kind} \"{name}\" does not exist{hint}: apply it in the same command or first"
                ),
                other_index: None,
            });
        }
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }

    let mut planned = Vec::with_capacity(resources.len());
    for resource in resources {
        let mut resource = resource.clone();
        if resource.kind == Kind::Skill {
            crate::skill::seal(&mut resource);
        }
        let existing = lookup.get(resource.kind, &resource.metadata.name)?;
        let action = match &existing {
            None => {
                resource.metadata.id = Some(crate::new_id(resource.kind));
                resource.metadata.created_at = Some(now.to_owned());
                resource.metadata.updated_at = Some(now.to_owned());
                resource.metadata.generation = Some(1);
                Action::Created
            }
            Some(stored) => {
                resource.metadata.id = stored.metadata.id.clone();
                resource.metadata.created_at = stored.metadata.created_at.clone();
                resource.status = stored.status.clone();
                if stored.spec == resource.spec
                    && stored.metadata.labels == resource.metadata.labels
                {
                    resource.metadata.updated_at = stored.metadata.updated_at.clone();
                    resource.metadata.generation = stored.metadata.generation;
                    Action::Unchanged
                } else {
                    resource.metadata.updated_at = Some(now.to_owned());
                    resource.metadata.generation =
                        Some(stored.metadata.generation.unwrap_or(0) + 1);
                    Action::Updated
                }
            }
        };
        planned.push(Planned { action, resource });
    }
    Ok(Ok(planned))
}

/// Stored resources that refer to `(kind, name)`, as `Kind "name"` strings.
pub fn referrers(lookup: &dyn Lookup, kind: Kind, name: &str) -> Result<Vec<String>, String> {
    if !matches!(kind, Kind::McpServer | Kind::Skill) {
        return Ok(Vec::new());
    }
    Ok(lookup
        .list(Kind::Agent)?
        .into_iter()
        .filter(|agent| {
            agent
                .references()
                .iter()
                .any(|(ref_kind, ref_name, _)| *ref_kind == kind && ref_name == name)
        })
        .map(|agent| format!("Agent \"{}\"", agent.metadata.name))
        .collect())
}

/// Turns plan errors into located manifest errors, using the documents they are about.
pub fn locate_plan_errors(
    documents: &[crate::ParsedDocument],
    errors: &[PlanError],
) -> Vec<crate::ManifestError> {
    errors
        .iter()
        .filter_map(|error| {
            let document = documents.get(error.index)?;
            let mut message = error.message.clone();
            if let Some(other) = error.other_index.and_then(|other| documents.get(other)) {
                message.push_str(&format!(
                    " (first defined at {}:{}, document {})",
                    other.file,
                    crate::locate(&other.text, "metadata.name")
                        .map(|(line, _)| other.first_line + line - 1)
                        .unwrap_or(other.first_line),
                    other.index
                ));
            }
            Some(document.error_at(&error.path, message))
        })
        .collect()
}
