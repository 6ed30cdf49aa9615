//! Planning an apply against what is stored: duplicates, references, and per resource whether
//! it is created, updated or unchanged, with the server-set metadata filled in.

use crate::kind::Kind;
use crate::model::{MASK, MAX_RESOURCE_BYTES, Resource};
use crate::suggest;
use std::collections::{BTreeMap, BTreeSet};

/// Why a [`Lookup`] could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The stored resources could not be read; the store's own error is the source.
    #[error("{0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The plan is no longer wanted (the client of the apply has gone).
    #[error("the apply was abandoned: its client has gone")]
    Abandoned,
}

impl LookupError {
    /// A store failure, kept as the source.
    pub fn store(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        LookupError::Store(Box::new(error))
    }
}

/// Read access to stored resources.
///
/// A plan reads only the stored resources an apply names; references are checked with
/// [`Lookup::contains`] and suggestions come from [`Lookup::names`], so a big stored resource
/// the apply does not touch is never loaded.
pub trait Lookup {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, LookupError>;
    fn list(&self, kind: Kind) -> Result<Vec<Resource>, LookupError>;

    /// Whether `(kind, name)` is stored.
    fn contains(&self, kind: Kind, name: &str) -> Result<bool, LookupError> {
        Ok(self.get(kind, name)?.is_some())
    }

    /// The names of the stored resources of `kind`.
    fn names(&self, kind: Kind) -> Result<Vec<String>, LookupError> {
        Ok(self
            .list(kind)?
            .into_iter()
            .map(|resource| resource.metadata.name)
            .collect())
    }

    /// Called between documents: an error stops the plan (the server's lookup fails with
    /// [`LookupError::Abandoned`] once the client of the apply has gone, so abandoned work does
    /// not hold the apply lock).
    fn proceed(&self) -> Result<(), LookupError> {
        Ok(())
    }
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
) -> Result<Result<Vec<Planned>, Vec<PlanError>>, LookupError> {
    let mut errors = Vec::new();
    let mut first_definition: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    for (index, resource) in resources.iter().enumerate() {
        if index.is_multiple_of(64) {
            lookup.proceed()?;
        }
        let size = canonical_size(resource);
        if size > MAX_RESOURCE_BYTES {
            errors.push(PlanError {
                index,
                path: "metadata.name".into(),
                message: format!(
                    "{} \"{}\" is {} as stored; a resource may be at most {} (keep big content \
                     out of manifests, e.g. split a skill)",
                    resource.kind,
                    resource.metadata.name,
                    human_size(size),
                    human_size(MAX_RESOURCE_BYTES)
                ),
                other_index: None,
            });
        }
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
    let mut known_stored: BTreeSet<(Kind, String)> = BTreeSet::new();
    for (index, resource) in resources.iter().enumerate() {
        if index.is_multiple_of(64) {
            lookup.proceed()?;
        }
        for (kind, name, path) in resource.references() {
            if first_definition.contains_key(&(kind, name.as_str())) {
                continue;
            }
            if known_stored.contains(&(kind, name.clone())) {
                continue;
            }
            if lookup.contains(kind, &name)? {
                known_stored.insert((kind, name));
                continue;
            }
            let known = match stored_names.get(&kind) {
                Some(known) => known,
                None => {
                    let names = lookup.names(kind)?.into_iter().collect();
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
    for (index, resource) in resources.iter().enumerate() {
        lookup.proceed()?;
        let mut resource = resource.clone();
        if resource.kind == Kind::Skill {
            crate::skill::seal(&mut resource);
        }
        let existing = lookup.get(resource.kind, &resource.metadata.name)?;
        // Output of `get` holds masks where secrets were: they keep the stored secret.
        for path in resource.unmask(existing.as_ref()) {
            errors.push(PlanError {
                index,
                message: format!(
                    "{path} is \"{MASK}\", the mask `get` prints in place of a secret, and {} \
                     \"{}\" has no stored secret there to keep: write the real value",
                    resource.kind, resource.metadata.name
                ),
                path,
                other_index: None,
            });
        }
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
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    Ok(Ok(planned))
}

/// The length of a resource's canonical JSON, without building it.
fn canonical_size(resource: &Resource) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing a `Resource` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, resource);
    counter.0
}

/// `12.3 MiB`, `16 MiB`, `512 KiB`, `80 bytes`.
fn human_size(bytes: usize) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 {
        let mib = bytes as f64 / MIB;
        if bytes.is_multiple_of(1024 * 1024) {
            format!("{mib:.0} MiB")
        } else {
            format!("{mib:.1} MiB")
        }
    } else if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// Stored resources that refer to `(kind, name)`, as `Kind "name"` strings.
pub fn referrers(lookup: &dyn Lookup, kind: Kind, name: &str) -> Result<Vec<String>, LookupError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{API_VERSION, Metadata};
    use serde_json::json;
    use std::cell::RefCell;

    /// Stored resources that remember which were loaded whole.
    #[derive(Default)]
    struct Recording {
        stored: Vec<Resource>,
        loaded: RefCell<Vec<String>>,
        listed: RefCell<Vec<Kind>>,
        proceed_budget: Option<RefCell<usize>>,
    }

    impl Lookup for Recording {
        fn get(&self, kind: Kind, name: &str) -> Result<Option<Resource>, LookupError> {
            self.loaded.borrow_mut().push(name.to_owned());
            Ok(self
                .stored
                .iter()
                .find(|r| r.kind == kind && r.metadata.name == name)
                .cloned())
        }

        fn list(&self, kind: Kind) -> Result<Vec<Resource>, LookupError> {
            self.listed.borrow_mut().push(kind);
            Ok(self
                .stored
                .iter()
                .filter(|r| r.kind == kind)
                .cloned()
                .collect())
        }

        fn contains(&self, kind: Kind, name: &str) -> Result<bool, LookupError> {
            Ok(self
                .stored
                .iter()
                .any(|r| r.kind == kind && r.metadata.name == name))
        }

        fn names(&self, kind: Kind) -> Result<Vec<String>, LookupError> {
            Ok(self
                .stored
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.metadata.name.clone())
                .collect())
        }

        fn proceed(&self) -> Result<(), LookupError> {
            match &self.proceed_budget {
                Some(budget) if *budget.borrow() == 0 => Err(LookupError::Abandoned),
                Some(budget) => {
                    *budget.borrow_mut() -= 1;
                    Ok(())
                }
                None => Ok(()),
            }
        }
    }

    fn resource(kind: Kind, name: &str, spec: serde_json::Value) -> Resource {
        Resource {
            api_version: API_VERSION.into(),
            kind,
            metadata: Metadata {
                name: name.into(),
                ..Metadata::default()
            },
            spec,
            status: None,
        }
    }

    /// Plans `resources` against `lookup` and stores the result in it, as an apply does.
    fn apply(lookup: &mut Recording, resources: &[Resource]) -> Vec<Planned> {
        let planned = plan_apply(resources, &*lookup, "2026-01-01T00:00:00.000Z")
            .unwrap()
            .unwrap();
        for p in &planned {
            lookup.stored.retain(|r| {
                (r.kind, &r.metadata.name) != (p.resource.kind, &p.resource.metadata.name)
            });
            lookup.stored.push(p.resource.clone());
        }
        planned
    }

    fn errors(lookup: &Recording, resources: &[Resource]) -> Vec<PlanError> {
        plan_apply(resources, lookup, "2026-01-01T00:00:00.000Z")
            .unwrap()
            .unwrap_err()
    }

    fn stored_spec(lookup: &Recording, name: &str) -> serde_json::Value {
        lookup
            .stored
            .iter()
            .find(|r| r.metadata.name == name)
            .unwrap()
            .spec
            .clone()
    }

    #[test]
    fn applying_get_output_keeps_the_stored_secrets() {
        let mut lookup = Recording::default();
        let environment = resource(
            Kind::Environment,
            "prod",
            json!({"variables": {
                "TOKEN": {"value": "s3cret", "secret": true},
                "REGION": {"value": "eu"},
            }}),
        );
        let agent = resource(
            Kind::Agent,
            "helper",
            json!({"instructions": "Help.", "env": {"KEY": {"default": "k3y", "secret": true}}}),
        );
        apply(&mut lookup, &[environment, agent]);
        // What `get -o yaml` prints, applied again as it is.
        let shown: Vec<Resource> = lookup.stored.iter().map(Resource::masked).collect();
        assert_eq!(shown[0].spec["variables"]["TOKEN"]["value"], MASK);
        assert_eq!(shown[1].spec["env"]["KEY"]["default"], MASK);
        let planned = apply(&mut lookup, &shown);
        assert!(
            planned.iter().all(|p| p.action == Action::Unchanged),
            "{planned:?}"
        );
        assert_eq!(
            stored_spec(&lookup, "prod")["variables"]["TOKEN"]["value"],
            "s3cret"
        );
        assert_eq!(
            stored_spec(&lookup, "helper")["env"]["KEY"]["default"],
            "k3y"
        );
        // An edit beside the mask is an update that still keeps the secret.
        let mut edited = shown[0].clone();
        edited.spec["variables"]["REGION"]["value"] = json!("us");
        let planned = apply(&mut lookup, &[edited]);
        assert_eq!(planned[0].action, Action::Updated);
        assert_eq!(
            stored_spec(&lookup, "prod")["variables"]["TOKEN"]["value"],
            "s3cret"
        );
        assert_eq!(
            stored_spec(&lookup, "prod")["variables"]["REGION"]["value"],
            "us"
        );
    }

    #[test]
    fn a_mask_with_no_stored_secret_behind_it_is_refused() {
        let mut lookup = Recording::default();
        apply(
            &mut lookup,
            &[resource(
                Kind::Environment,
                "prod",
                json!({"variables": {"PLAIN": {"value": "visible"}}}),
            )],
        );
        for (spec, path) in [
            // A new secret variable.
            (
                json!({"variables": {"TOKEN": {"value": MASK, "secret": true}}}),
                "spec.variables.TOKEN.value",
            ),
            // A stored plain value is not a secret the mask could stand for.
            (
                json!({"variables": {"PLAIN": {"value": MASK, "secret": true}}}),
                "spec.variables.PLAIN.value",
            ),
        ] {
            let found = errors(&lookup, &[resource(Kind::Environment, "prod", spec)]);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].path, path);
            assert!(
                found[0].message.contains("write the real value"),
                "{found:?}"
            );
        }
        // A secret made plain while masked would store the mask (or reveal the secret).
        apply(
            &mut lookup,
            &[resource(
                Kind::Environment,
                "prod",
                json!({"variables": {"TOKEN": {"value": "s3cret", "secret": true}}}),
            )],
        );
        let found = errors(
            &lookup,
            &[resource(
                Kind::Environment,
                "prod",
                json!({"variables": {"TOKEN": {"value": MASK}}}),
            )],
        );
        assert_eq!(found[0].path, "spec.variables.TOKEN.value");
        // An agent's secret default, new: refused too.
        let found = errors(
            &lookup,
            &[resource(
                Kind::Agent,
                "new",
                json!({"instructions": "x", "env": {"KEY": {"default": MASK, "secret": true}}}),
            )],
        );
        assert_eq!(found[0].path, "spec.env.KEY.default");
    }

    #[test]
    fn a_resource_above_the_limit_is_refused_by_name() {
        let lookup = Recording::default();
        let big = resource(
            Kind::Agent,
            "huge",
            json!({"instructions": "x".repeat(MAX_RESOURCE_BYTES)}),
        );
        let small = resource(Kind::Agent, "small", json!({"instructions": "x"}));
        let found = errors(&lookup, &[small, big]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].index, 1);
        assert!(
            found[0].message.contains("Agent \"huge\" is 16.0 MiB")
                && found[0].message.contains("at most 16 MiB"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_plan_loads_only_the_stored_resources_the_apply_names() {
        let mut lookup = Recording::default();
        apply(
            &mut lookup,
            &[
                resource(
                    Kind::Agent,
                    "big",
                    json!({"instructions": "x".repeat(1000)}),
                ),
                resource(
                    Kind::Skill,
                    "notes",
                    json!({"description": "d", "files": {"SKILL.md": "s"}}),
                ),
            ],
        );
        lookup.loaded.borrow_mut().clear();
        let mut referring = resource(
            Kind::Agent,
            "new",
            json!({"instructions": "x", "skills": ["notes"]}),
        );
        apply(&mut lookup, std::slice::from_ref(&referring));
        assert_eq!(*lookup.loaded.borrow(), ["new"]);
        // A missing reference is suggested from the names alone.
        referring.spec["skills"] = json!(["note"]);
        let found = errors(&lookup, &[referring]);
        assert!(
            found[0].message.contains("did you mean \"notes\""),
            "{found:?}"
        );
        assert!(lookup.listed.borrow().is_empty());
        assert!(!lookup.loaded.borrow().contains(&"big".to_owned()));
    }

    #[test]
    fn a_plan_stops_when_the_lookup_says_its_client_has_gone() {
        let lookup = Recording {
            proceed_budget: Some(RefCell::new(3)),
            ..Recording::default()
        };
        let many: Vec<Resource> = (0..1000)
            .map(|i| resource(Kind::Agent, &format!("a{i}"), json!({"instructions": "x"})))
            .collect();
        let error = plan_apply(&many, &lookup, "now").unwrap_err();
        assert!(matches!(error, LookupError::Abandoned), "{error:?}");
        assert!(
            lookup.loaded.borrow().len() < 10,
            "{}",
            lookup.loaded.borrow().len()
        );
    }
}
