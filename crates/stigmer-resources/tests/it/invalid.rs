//! Invalid manifests: each gets its own message naming file, line, column, document and field.

use crate::{Stored, errors_of};
use stigmer_resources::{API_VERSION, Kind, Metadata, Resource};

/// (case name, manifest text).
const CASES: &[(&str, &str)] = &[
    ("empty_file", r#""#),
    (
        "only_comments",
        r#"# nothing here yet

"#,
    ),
    (
        "yaml_syntax_error",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: x
spec:
  instructions: [unclosed
"#,
    ),
    (
        "yaml_tab_indentation",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
	name: x
"#,
    ),
    (
        "not_a_mapping",
        r#"- apiVersion: agentic.stigmer.ai/v1
- kind: Agent
"#,
    ),
    (
        "scalar_document",
        r#"hello world
"#,
    ),
    (
        "missing_api_version",
        r#"kind: Agent
metadata:
  name: x
spec:
  instructions: hi
"#,
    ),
    (
        "unknown_api_version",
        r#"apiVersion: agentic.stigmer.ai/v2
kind: Agent
metadata:
  name: x
spec:
  instructions: hi
"#,
    ),
    (
        "api_version_not_a_string",
        r#"apiVersion: 1
kind: Agent
metadata:
  name: x
spec:
  instructions: hi
"#,
    ),
    (
        "missing_kind",
        r#"apiVersion: agentic.stigmer.ai/v1
metadata:
  name: x
spec:
  instructions: hi
"#,
    ),
    (
        "kind_typo",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agnet
metadata:
  name: x
spec:
  instructions: hi
"#,
    ),
    (
        "kind_unknown",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Pipeline
metadata:
  name: x
spec: {}
"#,
    ),
    (
        "kind_session_is_system_made",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Session
metadata:
  name: x
spec: {}
"#,
    ),
    (
        "kind_execution_is_system_made",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: AgentExecution
metadata:
  name: x
spec: {}
"#,
    ),
    (
        "missing_metadata",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
spec:
  instructions: hi
"#,
    ),
    (
        "missing_name",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  labels:
    team: a
spec:
  instructions: hi
"#,
    ),
    (
        "name_uppercase",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: My-Agent
spec:
  instructions: hi
"#,
    ),
    (
        "name_underscore",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: my_agent
spec:
  instructions: hi
"#,
    ),
    (
        "name_too_long",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
spec:
  instructions: hi
"#,
    ),
    (
        "name_empty",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: ""
spec:
  instructions: hi
"#,
    ),
    (
        "name_leading_dash",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: "-agent"
spec:
  instructions: hi
"#,
    ),
    (
        "name_wrong_type",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: [a, b]
spec:
  instructions: hi
"#,
    ),
    (
        "metadata_unknown_field",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
  namespace: default
spec:
  instructions: hi
"#,
    ),
    (
        "labels_wrong_type",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
  labels: [team]
spec:
  instructions: hi
"#,
    ),
    (
        "missing_spec",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: x
"#,
    ),
    (
        "agent_missing_instructions",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  description: does things
"#,
    ),
    (
        "agent_unknown_field_typo",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instrucions: be nice
"#,
    ),
    (
        "agent_empty_instructions",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: "  "
"#,
    ),
    (
        "agent_unknown_provider",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  model:
    provider: gemini
    name: g1
"#,
    ),
    (
        "agent_temperature_out_of_range",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  model:
    name: m
    temperature: 3.5
"#,
    ),
    (
        "agent_temperature_wrong_type",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  model:
    temperature: hot
"#,
    ),
    (
        "agent_temperature_not_a_number",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  model:
    temperature: .nan
"#,
    ),
    (
        "agent_temperature_infinite",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  subAgents:
    - name: helper
      instructions: help
      model:
        temperature: -.inf
"#,
    ),
    (
        "agent_max_tokens_negative",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  model:
    maxTokens: -5
"#,
    ),
    (
        "agent_context_window_too_small",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  model:
    name: m
    contextWindow: 512
"#,
    ),
    (
        "agent_model_unknown_field",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  model:
    nmae: qwen
"#,
    ),
    (
        "agent_unknown_tool",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  tools:
    - ls
    - grepp
"#,
    ),
    (
        "agent_tools_not_a_list",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  tools: ls
"#,
    ),
    (
        "agent_dangling_mcp_reference",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  mcpServers:
    - files
"#,
    ),
    (
        "agent_dangling_skill_reference_with_suggestion",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  skills:
    - pdf-tool
"#,
    ),
    (
        "agent_sub_agent_bad_name",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  subAgents:
    - name: Helper
      instructions: help
"#,
    ),
    (
        "agent_sub_agent_duplicate",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  subAgents:
    - name: helper
      instructions: a
    - name: helper
      instructions: b
"#,
    ),
    (
        "agent_sub_agent_missing_instructions",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  subAgents:
    - name: helper
      description: helps
"#,
    ),
    (
        "agent_sub_agent_dangling_reference",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  subAgents:
    - name: helper
      instructions: a
      mcpServers:
        - github
"#,
    ),
    (
        "agent_env_bad_name",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  env:
    1KEY:
      description: nope
"#,
    ),
    (
        "agent_env_unknown_field",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  env:
    API_KEY:
      secrte: true
"#,
    ),
    (
        "agent_max_turns_zero",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  maxTurns: 0
"#,
    ),
    (
        "mcp_both_transports",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  stdio:
    command: npx
  http:
    url: http://localhost:3000/mcp
"#,
    ),
    (
        "mcp_no_transport",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  enabledTools: [read_file]
"#,
    ),
    (
        "mcp_http_bad_url",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  http:
    url: localhost:3000
"#,
    ),
    (
        "mcp_stdio_missing_command",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  stdio:
    args: [-y]
"#,
    ),
    (
        "mcp_stdio_args_not_a_list",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  stdio:
    command: npx
    args: -y
"#,
    ),
    (
        "mcp_stdio_unclosed_variable",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  stdio:
    command: node
    env:
      TOKEN: "${GITHUB_TOKEN"
"#,
    ),
    (
        "mcp_stdio_cwd_outside_workspace",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  stdio:
    command: node
    cwd: ../elsewhere
"#,
    ),
    (
        "mcp_http_bad_header",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: remote
spec:
  http:
    url: https://example.com/mcp
    headers:
      "Bad Header": "Bearer ${1TOKEN}"
"#,
    ),
    (
        "mcp_zero_tool_timeout",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  toolTimeoutSeconds: 0
  stdio:
    command: node
"#,
    ),
    (
        "agent_shell_timeout_too_long",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: shelly
spec:
  instructions: run things
  shell:
    enabled: true
    timeoutSeconds: 3600
"#,
    ),
    (
        "agent_approval_patterns",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: careful
spec:
  instructions: ask first
  mcpServers: [files]
  approval:
    tools: [execute, write_fil, "files*", "web__*", "files__*", "*"]
    timeoutSeconds: 0
"#,
    ),
    (
        "agent_approval_empty",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: careful
spec:
  instructions: ask first
  approval:
    tools: []
"#,
    ),
    (
        "mcp_require_approval_unknown",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  requireApproval: sometimes
  stdio:
    command: node
"#,
    ),
    (
        "environment_value_missing",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Environment
metadata:
  name: dev
spec:
  variables:
    TOKEN:
      secret: true
"#,
    ),
    (
        "environment_bad_variable_name",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Environment
metadata:
  name: dev
spec:
  variables:
    my-var:
      value: x
"#,
    ),
    (
        "workflow_duplicate_task_names",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  tasks:
    - name: fetch
      set: {a: 1}
    - name: fetch
      set: {a: 2}
"#,
    ),
    (
        "workflow_duplicate_task_names_in_do",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - fetch:
        set: {a: 1}
    - fetch:
        set: {a: 2}
"#,
    ),
    (
        "workflow_no_tasks",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  tasks: []
"#,
    ),
    (
        "workflow_task_without_name",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  tasks:
    - call: http
"#,
    ),
    (
        "workflow_both_do_and_tasks",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - a:
        set: {x: 1}
  tasks:
    - name: b
      set: {x: 1}
"#,
    ),
    (
        "workflow_bad_expression",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - check:
        if: '.count > (1'
        set:
          total: ${ .count + 1 }
"#,
    ),
    (
        "workflow_loop_variable_outside_its_loop",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - loop:
        for:
          each: color
          in: .colors
        do:
          - paint:
              set:
                last: ${ $color }
    - after:
        set:
          last: ${ $color }
"#,
    ),
    (
        "workflow_unknown_then_target",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - first:
        set: {x: 1}
        then: secnd
    - second:
        set: {x: 2}
"#,
    ),
    (
        "workflow_unknown_then_target_with_tasks_alias",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  tasks:
    - name: pick
      switch:
        - red:
            when: .color == "red"
            then: paint
        - other:
            then: nowhere
    - name: paint
      set: {painted: true}
"#,
    ),
    (
        "workflow_schema_error_misspelled_field",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - fetch:
        call: http
        with:
          methd: get
          method: get
          endpoint: https://example.com
"#,
    ),
    (
        "workflow_schema_error_wrong_value",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - fetch:
        call: http
        with:
          method: get
          endpoint: https://example.com
          output: body
"#,
    ),
    (
        "workflow_spec_unknown_field",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  dō: []
  do:
    - a:
        set: {x: 1}
"#,
    ),
    (
        "workflow_not_supported_features",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  schedule:
    every: {hours: 1}
  do:
    - remote:
        call: grpc
        with:
          proto: {endpoint: https://example.com/greet.proto}
          service: {name: Greeter, host: example.com}
          method: SayHello
    - shell:
        run:
          shell:
            command: ls
"#,
    ),
    (
        "workflow_unknown_agent",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - review:
        call: agent
        with:
          agent: reviewr
          message: ${ "Review " + .text }
"#,
    ),
    (
        "workflow_unknown_child_workflow",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - child:
        run:
          workflow:
            namespace: default
            name: summarise
            version: latest
---
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: summarize
spec:
  do:
    - a:
        set: {x: 1}
"#,
    ),
    (
        "workflow_run_workflow_not_awaited",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - child:
        run:
          workflow:
            namespace: default
            name: flow
            version: latest
          await: false
"#,
    ),
    (
        "workflow_agent_call_unknown_argument",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  do:
    - review:
        call: agent
        with:
          agent: reviewer
          prompt: hi
"#,
    ),
    (
        "workflow_document_name_differs",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: flow
spec:
  document:
    name: other
  do:
    - a:
        set: {x: 1}
"#,
    ),
    (
        "plain_workflow_unknown_then_target",
        r#"document:
  dsl: '1.0.3'
  namespace: default
  name: plain
  version: '1.0.0'
do:
  - first:
      set: {x: 1}
      then: last
"#,
    ),
    (
        "plain_workflow_name_not_a_dns_label",
        r#"document:
  dsl: '1.0.3'
  namespace: default
  name: MyFlow
  version: '1.0.0'
do:
  - first:
      set: {x: 1}
"#,
    ),
    (
        "plain_workflow_without_name",
        r#"document:
  dsl: '1.0.3'
  namespace: default
  version: '1.0.0'
do:
  - first:
      set: {x: 1}
"#,
    ),
    (
        "skill_without_skill_md",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Skill
metadata:
  name: pdf
spec:
  description: PDFs
  files:
    README.md: hi
"#,
    ),
    (
        "duplicate_names_in_one_apply",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: one
---
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: two
"#,
    ),
    (
        "second_document_invalid",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: McpServer
metadata:
  name: files
spec:
  stdio:
    command: npx
---
# the agent
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  instructions: hi
  tools: [ls, raed_file]
"#,
    ),
    (
        "errors_in_several_documents",
        r#"apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: one
spec:
  instrucions: x
---
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: Two
spec:
  instructions: hi
"#,
    ),
];

/// What is already stored when the cases are checked.
fn stored() -> Stored {
    Stored(vec![
        Resource {
            api_version: API_VERSION.into(),
            kind: Kind::Skill,
            metadata: Metadata {
                name: "pdf-tools".into(),
                ..Metadata::default()
            },
            spec: serde_json::json!({"description": "PDFs", "files": {"SKILL.md": "x"}}),
            status: None,
        },
        Resource {
            api_version: API_VERSION.into(),
            kind: Kind::Agent,
            metadata: Metadata {
                name: "reviewer".into(),
                ..Metadata::default()
            },
            spec: serde_json::json!({"instructions": "Review."}),
            status: None,
        },
    ])
}

#[test]
fn every_invalid_manifest_is_explained() {
    assert!(CASES.len() >= 40, "at least 40 cases");
    let stored = stored();
    for (name, text) in CASES {
        let errors = errors_of(text, &stored);
        assert!(!errors.is_empty(), "case {name} was accepted");
        for error in &errors {
            assert!(error.starts_with("manifests.yaml"), "case {name}: {error}");
        }
        insta::with_settings!({ snapshot_suffix => *name, description => *text }, {
            insta::assert_snapshot!(errors.join("\n"));
        });
    }
}

#[test]
fn a_hundred_thousand_levels_are_refused_before_parsing() {
    let header = "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: deep\nspec:\n";
    for nested in [
        format!("  instructions: {}\n", "[".repeat(100_000)),
        format!("  env: {}\n", "{a: ".repeat(100_000)),
        format!("  tools:\n    {}ls\n", "- ".repeat(100_000)),
    ] {
        let started = std::time::Instant::now();
        let errors = errors_of(&format!("{header}{nested}"), &stored());
        // Generous: the scan takes microseconds; a parse of this depth took seconds.
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("manifests.yaml:")
                && errors[0].contains("nests more than 64 levels deep"),
            "{errors:?}"
        );
    }
}
