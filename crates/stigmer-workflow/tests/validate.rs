//! Validation against the specification's own data: the documents the schema must reject
//! (`fixtures/invalid/`, from the specification's CI) and every workflow of the Conformance
//! Test Kit (`ctk/*.feature`), which must be accepted unless it needs what version 1 does not
//! run (`call: openapi`), in which case it is refused as not supported.

use serde_json::Value;
use std::path::{Path, PathBuf};
use stigmer_workflow::validate::{normalise, validate};

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// Each `Given a workflow with definition:` block of a feature file: (scenario, YAML text).
fn ctk_workflows(feature: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut scenario = String::new();
    let mut lines = feature.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("Scenario:") {
            scenario = name.trim().to_owned();
        }
        if !trimmed.starts_with("Given a workflow with definition:") {
            continue;
        }
        let Some(open) = lines.next() else { break };
        assert_eq!(open.trim(), "\"\"\"yaml", "in {scenario}");
        let indent = open.len() - open.trim_start().len();
        let mut text = String::new();
        for line in lines.by_ref() {
            if line.trim() == "\"\"\"" {
                break;
            }
            text.push_str(line.get(indent..).unwrap_or(line.trim_start()));
            text.push('\n');
        }
        found.push((scenario.clone(), text));
    }
    found
}

#[test]
fn every_ctk_workflow_is_accepted_or_refused_as_not_supported() {
    let mut features: Vec<PathBuf> = std::fs::read_dir(folder("ctk"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "feature"))
        .collect();
    features.sort();
    assert_eq!(features.len(), 11, "{features:?}");
    let mut accepted = 0;
    let mut refused = 0;
    for path in features {
        let text = std::fs::read_to_string(&path).unwrap();
        for (scenario, yaml) in ctk_workflows(&text) {
            let document: Value = serde_yaml_ng::from_str(&yaml)
                .unwrap_or_else(|error| panic!("{scenario}: {error}\n{yaml}"));
            let errors = validate(&normalise(document));
            if yaml.contains("call: openapi") {
                assert!(
                    !errors.is_empty()
                        && errors.iter().all(|error| {
                            error.message.contains("`call: openapi` is not supported")
                                && error.pointer.ends_with("/call")
                        }),
                    "{scenario}: {errors:#?}"
                );
                refused += 1;
            } else {
                assert!(errors.is_empty(), "{scenario}: {errors:#?}\n{yaml}");
                accepted += 1;
            }
        }
    }
    assert_eq!((accepted, refused), (19, 2));
}

#[test]
fn the_specification_s_invalid_documents_are_rejected() {
    let mut seen = 0;
    for entry in std::fs::read_dir(folder("fixtures/invalid")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        // One of them repeats a key, which YAML itself refuses.
        let Ok(document) = serde_yaml_ng::from_str::<Value>(&text) else {
            continue;
        };
        let errors = validate(&normalise(document));
        assert!(!errors.is_empty(), "{}", path.display());
    }
    assert_eq!(seen, 3);
}

#[test]
fn the_invalid_documents_are_reported_precisely() {
    let read = |name: &str| -> Value {
        serde_yaml_ng::from_str(
            &std::fs::read_to_string(folder("fixtures/invalid").join(name)).unwrap(),
        )
        .unwrap()
    };
    let errors = validate(&read("extra-property-in-call.yaml"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].pointer, "/do/0/getPet/foo");
    assert!(
        errors[0].message.starts_with("unknown field `foo`"),
        "{errors:#?}"
    );

    let errors = validate(&read("two-tasks-in-one-item.yaml"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].pointer, "/do/0");
    assert!(
        errors[0]
            .message
            .contains("holds 2 tasks (getPet, setMessage)"),
        "{errors:#?}"
    );
}
