//! Valid manifests: canonical form, created → unchanged → updated, references across files in
//! any order, masking, and a property test that the parser never panics.

use crate::{Stored, check};
use proptest::prelude::*;
use stigmer_resources::{Action, Kind, MASK, Source, parse_sources};

const AGENT: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
  labels:
    team: docs
spec:
  description: Says hello
  instructions: Greet the user.
  model:
    provider: ollama
    name: qwen2.5-coder:7b
    temperature: 0.2
    contextWindow: 1024
  tools: [write_todos, ls]
  mcpServers: [files]
  env:
    API_TOKEN:
      description: a token
      default: s3cret
      secret: true
";

const MCP: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  stdio:
    command: npx
    args: ['-y', '@modelcontextprotocol/server-filesystem', '.']
";

#[test]
fn references_resolve_within_one_apply_in_any_order() {
    let planned = check(&[("a.yaml", AGENT), ("b.yaml", MCP)], &Stored(vec![])).unwrap();
    assert_eq!(planned.len(), 2);
    assert!(planned.iter().all(|p| p.action == Action::Created));
    let agent = &planned[0].resource;
    assert_eq!(agent.metadata.generation, Some(1));
    assert!(agent.metadata.id.as_deref().unwrap().starts_with("agt-"));
    assert_eq!(agent.spec["model"]["temperature"], 0.2);
    assert_eq!(agent.spec["model"]["contextWindow"], 1024);
    assert_eq!(agent.metadata.labels["team"], "docs");
}

#[test]
fn created_then_unchanged_then_updated() {
    let first = check(&[("a.yaml", AGENT), ("b.yaml", MCP)], &Stored(vec![])).unwrap();
    let stored = Stored(first.iter().map(|p| p.resource.clone()).collect());
    let again = check(&[("a.yaml", AGENT), ("b.yaml", MCP)], &stored).unwrap();
    assert!(again.iter().all(|p| p.action == Action::Unchanged));
    assert_eq!(
        again[0].resource, first[0].resource,
        "unchanged keeps every field"
    );

    // Formatting and key order do not make a change; content does.
    let reformatted = AGENT.replace(
        "tools: [write_todos, ls]",
        "tools:\n    - write_todos\n    - ls",
    );
    let same = check(&[("a.yaml", &reformatted)], &stored).unwrap();
    assert_eq!(same[0].action, Action::Unchanged);
    let changed = AGENT.replace("Greet the user.", "Greet the user warmly.");
    let updated = check(&[("a.yaml", &changed)], &stored).unwrap();
    assert_eq!(updated[0].action, Action::Updated);
    assert_eq!(updated[0].resource.metadata.generation, Some(2));
    assert_eq!(
        updated[0].resource.metadata.id,
        first[0].resource.metadata.id
    );
    assert_eq!(
        updated[0].resource.metadata.created_at,
        first[0].resource.metadata.created_at
    );
}

#[test]
fn get_output_applies_again_unchanged() {
    let first = check(&[("a.yaml", AGENT), ("b.yaml", MCP)], &Stored(vec![])).unwrap();
    let stored = Stored(first.iter().map(|p| p.resource.clone()).collect());
    // What `get -o yaml` prints, server fields and all, is a valid manifest.
    let printed = serde_yaml_ng::to_string(&first[1].resource).unwrap();
    let again = check(&[("printed.yaml", &printed)], &stored).unwrap();
    assert_eq!(again[0].action, Action::Unchanged);
}

#[test]
fn secrets_are_masked_for_output() {
    let planned = check(&[("a.yaml", AGENT), ("b.yaml", MCP)], &Stored(vec![])).unwrap();
    let masked = planned[0].resource.masked();
    assert_eq!(masked.spec["env"]["API_TOKEN"]["default"], MASK);
    assert_eq!(
        planned[0].resource.spec["env"]["API_TOKEN"]["default"],
        "s3cret"
    );
    let environment = "\
apiVersion: agentic.stigmer.ai/v1
kind: Environment
metadata:
  name: dev
spec:
  variables:
    REGION: {value: eu-west-1}
    TOKEN: {value: abc123, secret: true}
";
    let planned = check(&[("e.yaml", environment)], &Stored(vec![])).unwrap();
    let masked = planned[0].resource.masked();
    assert_eq!(masked.spec["variables"]["TOKEN"]["value"], MASK);
    assert_eq!(masked.spec["variables"]["REGION"]["value"], "eu-west-1");
}

#[test]
fn every_declarable_kind_parses() {
    let text = "\
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata: {name: flow}
spec:
  tasks:
    - name: fetch
      call: http
      with: {method: get, endpoint: 'https://example.com'}
---
apiVersion: agentic.stigmer.ai/v1
kind: Skill
metadata: {name: pdf}
spec:
  description: PDFs
  files: {SKILL.md: '# PDF'}
";
    let planned = check(&[("w.yaml", text)], &Stored(vec![])).unwrap();
    assert_eq!(planned[0].resource.kind, Kind::Workflow);
    assert_eq!(planned[0].resource.spec["tasks"][0]["call"], "http");
    assert!(
        planned[1].resource.spec["contentHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary text never panics the parser.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse_sources(&[Source { name: "fuzz.yaml".into(), text }]);
    }

    /// Valid manifests with bytes cut out or replaced never panic it either, and every error
    /// names the file.
    #[test]
    fn mutated_manifests_never_panic(position in 0usize..AGENT.len(), length in 0usize..20, insert in "[ :\\-\\[\\]{}a-z0-9\\n\\t'\"#&*!|>]{0,6}") {
        let mut text = AGENT.as_bytes().to_vec();
        let end = (position + length).min(text.len());
        text.splice(position..end, insert.bytes());
        let text = String::from_utf8_lossy(&text).into_owned();
        if let Err(errors) = parse_sources(&[Source { name: "fuzz.yaml".into(), text }]) {
            for error in errors {
                prop_assert!(error.to_string().starts_with("fuzz.yaml"));
            }
        }
    }
}

#[test]
fn a_plain_serverless_workflow_file_is_applied_unchanged() {
    let text = "\
document:
  dsl: '1.0.0'
  namespace: examples
  name: fetch-pet
  version: '0.1.0'
  title: Fetch a pet
use:
  secrets: [PETSTORE_TOKEN]
do:
  - getPet:
      call: http
      with:
        method: get
        endpoint:
          uri: https://petstore.swagger.io/v2/pet/{petId}
      output:
        as: .name
  - greet:
      set:
        message: ${ \"Hello \" + . }
";
    let planned = check(&[("pet.yaml", text)], &Stored(vec![])).unwrap();
    let resource = &planned[0].resource;
    assert_eq!(resource.kind, Kind::Workflow);
    assert_eq!(resource.metadata.name, "fetch-pet");
    // The document the runner runs is the file itself.
    let original: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
    assert_eq!(stigmer_resources::workflow_document(resource), original);
    // JSON is YAML too.
    let json = serde_json::to_string_pretty(&original).unwrap();
    let planned = check(&[("pet.json", &json)], &Stored(vec![])).unwrap();
    assert_eq!(
        stigmer_resources::workflow_document(&planned[0].resource),
        original
    );

    // `--name` stores it under another name, which becomes the document's name.
    let documents = stigmer_resources::parse_sources_with(
        &[stigmer_resources::Source {
            name: "pet.yaml".into(),
            text: text.into(),
        }],
        Some("pets"),
    )
    .unwrap();
    assert!(documents[0].serverless_workflow);
    assert_eq!(documents[0].resource.metadata.name, "pets");
    assert_eq!(
        stigmer_resources::workflow_document(&documents[0].resource)["document"]["name"],
        "pets"
    );
}

#[test]
fn the_tasks_alias_is_kept_as_written_and_runs_as_do() {
    let text = "\
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata: {name: flow}
spec:
  description: Says hello
  tasks:
    - name: greet
      set: {hello: world}
      then: shout
    - name: shout
      set:
        loud: ${ .hello | ascii_upcase }
";
    let planned = check(&[("w.yaml", text)], &Stored(vec![])).unwrap();
    let resource = &planned[0].resource;
    assert_eq!(resource.spec["tasks"][0]["name"], "greet");
    assert_eq!(
        stigmer_resources::workflow_document(resource),
        serde_json::json!({
            "document": {"dsl": "1.0.3", "namespace": "default", "name": "flow", "version": "0.0.1"},
            "do": [
                {"greet": {"set": {"hello": "world"}, "then": "shout"}},
                {"shout": {"set": {"loud": "${ .hello | ascii_upcase }"}}},
            ],
        })
    );
}

#[test]
fn a_call_agent_resolves_against_the_same_apply() {
    let text = "\
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata: {name: flow}
spec:
  do:
    - review:
        call: agent
        with:
          agent: reviewer
          message: Review this.
          config: {model: gpt-4o, timeout: PT5M}
---
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata: {name: reviewer}
spec:
  instructions: Review.
";
    let planned = check(&[("w.yaml", text)], &Stored(vec![])).unwrap();
    assert_eq!(planned.len(), 2);
}
