//! `stigmer apply`, `get`, `delete` against a real daemon and store.

use crate::home;
use nix::sys::signal::Signal;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use stigmer_test::{TestHome, wait_until};

fn examples() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .display()
        .to_string()
}

fn write(home: &TestHome, name: &str, text: &str) -> String {
    let path = home.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn actions(outcome: &stigmer_test::Outcome) -> Vec<(String, String, String)> {
    let items: Vec<serde_json::Value> = serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|error| panic!("apply --json is not JSON ({error}):\n{outcome}"));
    items
        .iter()
        .map(|item| {
            (
                item["kind"].as_str().unwrap().to_owned(),
                item["name"].as_str().unwrap().to_owned(),
                item["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const WORKFLOW: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Workflow
metadata:
  name: nightly
spec:
  tasks:
    - name: fetch
      call: http
      with: {method: get, endpoint: 'https://example.com'}
";

#[test]
fn every_kind_round_trips_through_apply_get_and_delete() {
    let home = home();
    home.start();
    let workflow = write(&home, "workflow.yaml", WORKFLOW);
    let applied = home.run(&["apply", "-f", &examples(), "-f", &workflow, "--json"]);
    assert_eq!(applied.code, 0, "{applied}");
    let mut created = actions(&applied);
    created.sort();
    assert_eq!(
        created,
        [
            ("Agent", "file-helper", "created"),
            ("Agent", "hello", "created"),
            ("Agent", "reviewer", "created"),
            ("Agent", "team-lead", "created"),
            ("Agent", "writer", "created"),
            ("Environment", "dev", "created"),
            ("McpServer", "files", "created"),
            ("Skill", "release-notes", "created"),
            ("Workflow", "checks", "created"),
            ("Workflow", "fetch-pet", "created"),
            ("Workflow", "greet", "created"),
            ("Workflow", "nightly", "created"),
            ("Workflow", "resilient-fetch", "created"),
            ("Workflow", "review-pipeline", "created"),
            ("Workflow", "route-order", "created"),
        ]
        .map(|(k, n, a)| (k.to_owned(), n.to_owned(), a.to_owned()))
    );

    for (kind, name) in [
        ("agent", "hello"),
        ("mcpserver", "files"),
        ("skill", "release-notes"),
        ("environment", "dev"),
        ("workflow", "nightly"),
    ] {
        let got = home.run(&["get", kind, name, "-o", "json"]);
        assert_eq!(got.code, 0, "{got}");
        let resource: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
        assert_eq!(resource["apiVersion"], "agentic.stigmer.ai/v1");
        assert_eq!(resource["metadata"]["name"], name);
        assert_eq!(resource["metadata"]["generation"], 1);
        assert!(resource["metadata"]["id"].is_string());
        assert!(resource["metadata"]["createdAt"].is_string());
        // What `get -o yaml` prints applies again unchanged.
        let yaml = home.run(&["get", kind, name, "-o", "yaml"]);
        let reapplied_path = write(&home, &format!("{name}.yaml"), &yaml.stdout);
        if kind != "environment" && kind != "agent" {
            let again = home.run(&["apply", "-f", &reapplied_path, "--json"]);
            assert_eq!(actions(&again)[0].2, "unchanged", "{again}");
        }
    }
    let list = home.run(&["get", "ag", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    let table = home.run(&["get", "agents"]);
    assert!(table.stdout.starts_with("NAME"), "{table}");
    assert!(table.stdout.contains("file-helper"), "{table}");

    // Deleting in dependency order works; each is gone afterwards.
    for (kind, name) in [
        ("agent", "file-helper"),
        ("agent", "hello"),
        ("mcpserver", "files"),
        ("skill", "release-notes"),
        ("env", "dev"),
        ("wf", "nightly"),
    ] {
        let deleted = home.run(&["delete", kind, name]);
        assert_eq!(deleted.code, 0, "{deleted}");
        let gone = home.run(&["get", kind, name]);
        assert_eq!(gone.code, 1, "{gone}");
        assert!(gone.stderr.contains("not found"), "{gone}");
    }
}

#[test]
fn apply_says_created_then_unchanged_then_updated() {
    let home = home();
    home.start();
    let hello = format!("{}/hello-agent.yaml", examples());
    assert_eq!(
        actions(&home.run(&["apply", "-f", &hello, "--json"]))[0].2,
        "created"
    );
    assert_eq!(
        actions(&home.run(&["apply", "-f", &hello, "--json"]))[0].2,
        "unchanged"
    );
    let text = std::fs::read_to_string(&hello)
        .unwrap()
        .replace("temperature: 0.2", "temperature: 0.7");
    let changed = write(&home, "hello.yaml", &text);
    let updated = home.run(&["apply", "-f", &changed]);
    assert_eq!(updated.code, 0, "{updated}");
    assert!(
        updated.stdout.contains("Agent  hello  updated"),
        "{updated}"
    );
    let got = home.run(&["get", "agent", "hello", "-o", "json"]);
    let resource: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(resource["metadata"]["generation"], 2);
    assert_eq!(resource["spec"]["model"]["temperature"], 0.7);
}

#[test]
fn an_apply_with_one_invalid_document_writes_nothing() {
    let home = home();
    home.start();
    // Valid on its own, but the second document refers to a server that does not exist:
    // only the server can tell, and then nothing of the apply may be stored.
    let text = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata: {name: good}
spec: {instructions: fine}
---
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata: {name: bad}
spec:
  instructions: hi
  mcpServers: [missing]
";
    let path = write(&home, "mixed.yaml", text);
    let outcome = home.run(&["apply", "-f", &path]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "{path}:11:3: document 2 (Agent \"bad\"): spec.mcpServers[0]: McpServer \"missing\" does not exist"
        )),
        "{outcome}"
    );
    assert!(outcome.stderr.contains("nothing was applied"), "{outcome}");
    let list = home.run(&["get", "agents", "-o", "json"]);
    assert_eq!(list.stdout.trim(), "{\n  \"items\": []\n}", "{list}");

    // A schema error is caught before anything is sent.
    let path = write(
        &home,
        "schema.yaml",
        &text.replace("instructions: fine", "instrucions: fine"),
    );
    let outcome = home.run(&["apply", "-f", &path]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(outcome.stderr.contains(":4:8: document 1"), "{outcome}");
    assert!(
        outcome.stderr.contains("did you mean `instructions`"),
        "{outcome}"
    );
}

#[test]
fn resources_survive_a_restart_and_a_kill_of_the_daemon() {
    let home = home();
    home.start();
    assert_eq!(home.run(&["apply", "-f", &examples()]).code, 0);
    assert_eq!(home.run(&["server", "restart"]).code, 0);
    assert_eq!(home.run(&["get", "agent", "hello"]).code, 0);

    let daemon = home.status()["daemon_pid"].as_u64().unwrap() as u32;
    stigmer_test::signal(daemon, Signal::SIGKILL);
    wait_until(Duration::from_secs(10), "the daemon to die", || {
        (!stigmer_test::is_alive(daemon)).then_some(())
    });
    home.wait_until_stopped();
    // Readable without a daemon (the store is a file), then again after a start.
    let offline = home.run(&["get", "agents", "-o", "json"]);
    let offline: serde_json::Value =
        serde_json::from_str(&offline.stdout).unwrap_or_else(|error| panic!("{error}: {offline}"));
    assert_eq!(offline["items"].as_array().unwrap().len(), 5);
    home.start();
    let again = home.run(&["apply", "-f", &examples(), "--json"]);
    assert!(
        actions(&again)
            .iter()
            .all(|(_, _, action)| action == "unchanged"),
        "{again}"
    );
}

#[test]
fn concurrent_applies_of_different_resources_all_land() {
    let home = home();
    home.start();
    let children: Vec<_> = (0..8)
        .map(|index| {
            let path = write(
                &home,
                &format!("agent-{index}.yaml"),
                &format!(
                    "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata: {{name: agent-{index}}}\nspec: {{instructions: number {index}}}\n"
                ),
            );
            home.command(&["apply", "-f", &path])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let list = home.run(&["get", "agents", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 8);
}

#[test]
fn dry_run_works_without_a_daemon_and_writes_nothing() {
    let home = home();
    let outcome = home.run(&["apply", "-f", &examples(), "--dry-run", "--json"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert!(
        actions(&outcome)
            .iter()
            .all(|(_, _, action)| action == "created")
    );
    assert_eq!(
        home.run(&["server", "status"]).code,
        3,
        "dry run must not start a daemon"
    );
    assert!(!home.path().join("data/stigmer.db").exists());

    home.start();
    assert_eq!(home.run(&["apply", "-f", &examples()]).code, 0);
    let dry = home.run(&["apply", "-f", &examples(), "--dry-run", "--json"]);
    assert!(
        actions(&dry)
            .iter()
            .all(|(_, _, action)| action == "unchanged"),
        "{dry}"
    );
}

#[test]
fn referenced_resources_are_not_deleted_without_force() {
    let home = home();
    home.start();
    assert_eq!(home.run(&["apply", "-f", &examples()]).code, 0);
    let refused = home.run(&["delete", "mcpserver", "files"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains("used by Agent \"file-helper\""),
        "{refused}"
    );
    assert_eq!(home.run(&["get", "mcpserver", "files"]).code, 0);
    let forced = home.run(&["delete", "mcpserver", "files", "--force"]);
    assert_eq!(forced.code, 0, "{forced}");
}

#[test]
fn secrets_are_masked_and_never_logged_and_the_store_is_private() {
    let home = home();
    home.start();
    let text = "\
apiVersion: agentic.stigmer.ai/v1
kind: Environment
metadata: {name: prod}
spec:
  variables:
    TOKEN: {value: super-secret-value-42, secret: true}
    REGION: {value: eu-west-1}
";
    let path = write(&home, "env.yaml", text);
    assert_eq!(home.run(&["apply", "-f", &path]).code, 0);
    for format in ["json", "yaml", "table"] {
        let got = home.run(&["get", "env", "prod", "-o", format]);
        assert!(!got.stdout.contains("super-secret-value-42"), "{got}");
    }
    let got = home.run(&["get", "env", "prod", "-o", "json"]);
    assert!(
        got.stdout.contains("eu-west-1") && got.stdout.contains("****"),
        "{got}"
    );
    for component in ["daemon", "agent-runner", "workflow-runner", "temporal"] {
        assert!(!home.log(component).contains("super-secret-value-42"));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.path().join("data/stigmer.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the store must be readable by the user alone"
    );
    let data_mode = std::fs::metadata(home.path().join("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(data_mode & 0o077, 0);
}

#[test]
fn manifests_are_read_from_stdin() {
    let home = home();
    home.start();
    let mut child = home
        .command(&["apply", "-f", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(WORKFLOW.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let items: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(items[0]["name"], "nightly");
}

#[test]
fn bad_input_exits_2_and_names_the_file() {
    let home = home();
    let empty = write(&home, "empty.yaml", "");
    let outcome = home.run(&["apply", "-f", &empty]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains(&format!("{empty}: the file holds no manifest")),
        "{outcome}"
    );
    let missing = home.run(&["apply", "-f", "/no/such/file.yaml"]);
    assert_eq!(missing.code, 2, "{missing}");
    assert!(missing.stderr.contains("/no/such/file.yaml"), "{missing}");
    let kind = home.run(&["get", "agnets"]);
    assert_eq!(kind.code, 2, "{kind}");
    assert!(kind.stderr.contains("did you mean `agents`"), "{kind}");
    assert_eq!(
        home.run(&["server", "status"]).code,
        3,
        "bad input must not start a daemon"
    );
}

#[test]
fn requests_without_the_token_are_rejected() {
    let home = home();
    home.start();
    let address = TestHome::component(&home.status(), "server")["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use stigmer_proto::resources::v1::ListRequest;
        use stigmer_proto::resources::v1::resource_service_client::ResourceServiceClient;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ResourceServiceClient::new(channel.clone());
        let status = client
            .list(ListRequest {
                kind: "Agent".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let mut request = tonic::Request::new(ListRequest {
            kind: "Agent".into(),
        });
        request
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        let status = client.list(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        // Health stays open, for probes and grpcurl.
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(answer.into_inner().status, 1, "SERVING");
    });
}

#[test]
fn server_reflection_lists_the_services() {
    let home = home();
    home.start();
    let address = TestHome::component(&home.status(), "server")["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let services = runtime.block_on(async {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect::<Vec<_>>(),
            other => panic!("unexpected reflection answer: {other:?}"),
        }
    });
    for expected in [
        "stigmer.daemon.v1.DaemonService",
        "stigmer.resources.v1.ResourceService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.iter().any(|s| s == expected), "{services:?}");
    }
}

#[test]
fn endless_and_special_inputs_are_refused_and_a_pipe_path_reads_like_stdin() {
    let home = home();
    // Standard input that never ends: refused at the bound, quickly, with the reason.
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let output = home
        .command(&["apply", "-f", "-"])
        .stdin(zero)
        .output()
        .unwrap();
    let outcome = stigmer_test::Outcome::from(output);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("<stdin>: larger than 16 MiB, the most one input may hold"),
        "{outcome}"
    );

    // A skill file linked to /dev/zero is named, not read.
    let skill = home.path().join("skill");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        "---\nname: s\ndescription: d\n---\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", skill.join("zero.txt")).unwrap();
    let outcome = home.run(&["apply", "-f", &skill.display().to_string()]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome
            .stderr
            .contains("zero.txt: a symbolic link to /dev/zero, outside the skill folder"),
        "{outcome}"
    );

    // `apply -f <(…)`: the shell's pipe path is read like `-`.
    let manifest = write(&home, "agent.yaml", HELLO);
    let output = std::process::Command::new("bash")
        .args([
            "-c",
            r#"exec "$0" apply -f <(cat "$1") --dry-run --json"#,
            env!("CARGO_BIN_EXE_stigmer"),
            &manifest,
        ])
        .env("STIGMER_HOME", home.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let outcome = stigmer_test::Outcome::from(output);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert_eq!(
        actions(&outcome),
        [("Agent".to_owned(), "pipe".to_owned(), "created".to_owned())]
    );
}

const HELLO: &str = "\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: pipe
spec:
  instructions: hi
";

/// Forwards one connection at a time to `target` and cuts each connection once more than
/// `cut_after` bytes came from the client: the daemon's answer to a large request never
/// arrives, as when a connection drops mid-apply.
fn cutting_proxy(target: std::net::SocketAddr, cut_after: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = std::net::TcpStream::connect(target) else {
                return;
            };
            let (mut client_reader, mut server_writer) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut server_reader, mut client_writer) =
                (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_reader, &mut client_writer);
            });
            std::thread::spawn(move || {
                let mut sent = 0;
                let mut buffer = [0u8; 16 * 1024];
                while let Ok(read) = client_reader.read(&mut buffer) {
                    if read == 0 || sent + read > cut_after {
                        break;
                    }
                    sent += read;
                    if server_writer.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    address
}

#[test]
fn an_apply_whose_connection_drops_says_the_outcome_is_unknown() {
    let home = home();
    home.start();
    let state_file = home.path().join("run/state.json");
    let state = std::fs::read_to_string(&state_file).unwrap();
    let mut parsed: serde_json::Value = serde_json::from_str(&state).unwrap();
    let real: std::net::SocketAddr = parsed["server_address"].as_str().unwrap().parse().unwrap();
    // Small calls (the status check) pass; the apply's 2,000 documents do not.
    let proxy = cutting_proxy(real, 64 * 1024);
    parsed["server_address"] = serde_json::Value::from(proxy.to_string());
    std::fs::write(&state_file, parsed.to_string()).unwrap();

    let many: String = (0..2000)
        .map(|index| HELLO.replace("name: pipe", &format!("name: agent-{index}")) + "---\n")
        .collect();
    let manifest = write(&home, "many.yaml", &many);
    let outcome = home.run(&["apply", "-f", &manifest]);
    std::fs::write(&state_file, state).unwrap();
    assert_eq!(outcome.code, 1, "{outcome}");
    assert!(
        outcome.stderr.contains(
            "the connection to the daemon was lost during the apply: its outcome is unknown"
        ),
        "{outcome}"
    );
    assert!(
        outcome
            .stderr
            .contains(&format!("stigmer apply -f {manifest} --dry-run")),
        "{outcome}"
    );
    // All or none, as the message says; applying again settles it.
    let listed = home.run(&["get", "agents", "-o", "json"]);
    assert_eq!(listed.code, 0, "{listed}");
    let count = serde_json::from_str::<serde_json::Value>(&listed.stdout)
        .map(|items| items.as_array().map_or(0, Vec::len))
        .unwrap_or(0);
    assert!(count == 0 || count == 2000, "{count} agents stored");
    let again = home.run(&["apply", "-f", &manifest]);
    assert_eq!(again.code, 0, "{again}");
}

#[test]
fn a_plain_serverless_workflow_file_applies_under_its_name_or_name() {
    let home = home();
    let plain = write(
        &home,
        "greet.sw.json",
        r#"{
  "document": {"dsl": "1.0.3", "namespace": "default", "name": "greet", "version": "1.0.0"},
  "do": [{"hello": {"set": {"message": "${ \"Hello \" + .name }"}}}]
}"#,
    );
    let applied = home.run(&["apply", "-f", &plain, "--dry-run", "--json"]);
    assert_eq!(applied.code, 0, "{applied}");
    assert_eq!(
        actions(&applied),
        [("Workflow".into(), "greet".into(), "created".into())]
    );
    let renamed = home.run(&[
        "apply",
        "-f",
        &plain,
        "--name",
        "hello",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(renamed.code, 0, "{renamed}");
    assert_eq!(
        actions(&renamed),
        [("Workflow".into(), "hello".into(), "created".into())]
    );

    // --name names one plain workflow file, nothing else.
    let refused = home.run(&["apply", "-f", &examples(), "--name", "x", "--dry-run"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused
            .stderr
            .contains("--name applies to a single plain Serverless Workflow file"),
        "{refused}"
    );

    // Problems are reported where the file writes them.
    let broken = write(
        &home,
        "broken.sw.yaml",
        "document:\n  dsl: '1.0.3'\n  namespace: default\n  name: broken\n  version: '1.0.0'\ndo:\n  - first:\n      set: {x: 1}\n      then: nowhere\n",
    );
    let outcome = home.run(&["apply", "-f", &broken, "--dry-run"]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome.stderr.contains(&format!(
            "{broken}:9:7: document 1 (Workflow \"broken\"): do[0].first.then: unknown `then` target \"nowhere\""
        )),
        "{outcome}"
    );
}
