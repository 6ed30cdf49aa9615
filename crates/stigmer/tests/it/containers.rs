//! Container mode: the agent-runner in a container on a real Docker-API engine (`DOCKER_HOST`;
//! `scripts/test` starts Podman's service), the scripted LLM on the host.

use crate::home;
use crate::runs::{AGENT, printed};
use serde_json::{Value, json};
use std::time::Duration;
use stigmer_container::{Engine, LABEL_HOME, home_label};
use stigmer_test::llm::{ScriptedLlm, Turn};
use stigmer_test::{TestHome, wait_until};

const CONTAINER_CONFIG: &str = "agent_runner:\n  mode: container\n";

/// The engine, from a runtime of the test's own. Container tests share the engine's one image
/// tag (one test removes it to prove the pull path), so they run one at a time.
struct TestEngine {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl TestEngine {
    fn connect() -> TestEngine {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine = runtime
            .block_on(Engine::connect())
            .expect("container tests need an engine at DOCKER_HOST (scripts/test starts one)");
        TestEngine {
            runtime,
            engine,
            _serial: serial,
        }
    }

    /// Ids of the containers (running or not) labelled with `home`.
    fn containers_of(&self, home: &TestHome) -> Vec<String> {
        let filters = std::collections::HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_HOME}={}", home_label(home.path()))],
        )]);
        self.runtime
            .block_on(self.engine.docker().list_containers(Some(
                bollard::query_parameters::ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                },
            )))
            .unwrap()
            .into_iter()
            .filter_map(|container| container.id)
            .collect()
    }
}

/// Removes a test home's containers even when the test fails.
struct Cleanup<'a>(&'a TestEngine, &'a TestHome);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.1.stop_everything();
        let label = home_label(self.1.path());
        let _ = self
            .0
            .runtime
            .block_on(self.0.engine.remove_labelled(LABEL_HOME, &label));
    }
}

fn container_home(llm: &ScriptedLlm, extra: &str) -> TestHome {
    let home = home();
    home.write_config(&format!(
        "{}{CONTAINER_CONFIG}llm:\n  provider: openai\n  model: scripted\n  base_url: {}\n{extra}",
        stigmer_test::TEST_CONFIG,
        llm.v1_url()
    ));
    home
}

fn agent_runner(home: &TestHome) -> Value {
    TestHome::component(&home.status(), "agent-runner")
}

#[test]
fn an_agent_runs_to_completion_with_its_runner_in_a_container() {
    let engine = TestEngine::connect();
    let llm = ScriptedLlm::start(vec![
        Turn::tool_call(
            "write_file",
            json!({"path": "from-container.txt", "content": "hi"}),
        ),
        Turn::text("Written from the container."),
    ]);
    let home = container_home(&llm, "");
    let _cleanup = Cleanup(&engine, &home);
    home.start();
    let runner = agent_runner(&home);
    assert_eq!(runner["mode"], "container");
    assert_eq!(runner["state"], "running");
    let id = runner["container_id"].as_str().unwrap().to_owned();
    assert_eq!(engine.containers_of(&home), std::slice::from_ref(&id));
    let table = home.run(&["server", "status"]);
    assert!(
        table.stdout.contains(&format!("container {}", &id[..12])),
        "{table}"
    );

    let manifest = home.path().join("agent.yaml");
    std::fs::write(&manifest, AGENT).unwrap();
    assert_eq!(
        home.run(&["apply", "-f", manifest.to_str().unwrap()]).code,
        0
    );
    let outcome = home.run(&["run", "helper", "Write a file", "--json"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let events: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        printed::phases(&events),
        ["pending", "running", "completed"]
    );
    assert_eq!(printed::text_of(&events), "Written from the container.");
    // The file the container wrote is in the session workspace on the host.
    let listed = home.run(&["execution", "list", "-o", "json"]);
    let list: Value = serde_json::from_str(&listed.stdout).unwrap();
    let session = list["items"][0]["spec"]["session"].as_str().unwrap();
    let file = home
        .path()
        .join("workspace")
        .join(session)
        .join("from-container.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "hi");

    // Its output is in agent-runner.log like a process's: JSON lines, our component name. The
    // engine delivers a container's output asynchronously (behind the run on a busy machine).
    let polling = wait_until(
        Duration::from_secs(30),
        "the runner's own log lines in agent-runner.log",
        || {
            home.log("agent-runner")
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|record| record["message"] == "Worker polling.")
        },
    );
    assert_eq!(polling["component"], "agent-runner");
    assert!(polling["ts"].as_str().unwrap().ends_with('Z'));

    let stopped = home.run(&["server", "stop"]);
    assert_eq!(stopped.code, 0, "{stopped}");
    assert!(
        engine.containers_of(&home).is_empty(),
        "stop removes the container"
    );
}

#[test]
fn the_shell_runs_inside_the_container_and_a_missing_server_command_says_what_to_do() {
    let engine = TestEngine::connect();
    let llm = ScriptedLlm::start(vec![
        Turn::tool_call(
            "execute",
            json!({"command": "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /bin/busybox; echo made > from-shell.txt"}),
        ),
        Turn::text("Ran it."),
    ]);
    let home = container_home(&llm, "");
    let _cleanup = Cleanup(&engine, &home);
    home.start();
    assert_eq!(agent_runner(&home)["mode"], "container");
    let manifest = home.path().join("agent.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata:\n  name: files\nspec:\n  stdio:\n    command: npx\n    args: [-y, some-server]\n---\n\
apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n  mcpServers: [files]\n  shell:\n    enabled: true\n",
    )
    .unwrap();
    let applied = home.run(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{applied}");
    let outcome = home.run(&["run", "helper", "Where are you?", "--json"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    let events: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // npx is not in the image: the server's start fails with the command and both remedies,
    // and the run goes on without it.
    let failed = events
        .iter()
        .find(|event| event["kind"] == "mcp_server_failed")
        .unwrap_or_else(|| panic!("{events:#?}"));
    let reason = failed["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("`npx` is not installed"), "{reason}");
    assert!(reason.contains("agent_runner.image_base"), "{reason}");
    assert!(reason.contains("agent_runner.mode: process"), "{reason}");
    // The shell ran in the runner's container: its process 1 is the agent-runner.
    let asked = llm.requests()[1].body.to_string();
    assert!(asked.contains("stigmer internal agent-runner"), "{asked}");
    assert!(asked.contains("/bin/busybox"), "{asked}");
    assert!(asked.contains("Exit code: 0"), "{asked}");
    let listed = home.run(&["execution", "list", "-o", "json"]);
    let list: Value = serde_json::from_str(&listed.stdout).unwrap();
    let session = list["items"][0]["spec"]["session"].as_str().unwrap();
    let file = home
        .path()
        .join("workspace")
        .join(session)
        .join("from-shell.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "made\n");
}

#[test]
fn a_container_that_dies_is_restarted_with_the_reason() {
    let engine = TestEngine::connect();
    let llm = ScriptedLlm::start(vec![]);
    let home = container_home(&llm, "");
    let _cleanup = Cleanup(&engine, &home);
    home.start();
    let first = agent_runner(&home)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    engine
        .runtime
        .block_on(engine.engine.docker().kill_container(
            &first,
            Some(bollard::query_parameters::KillContainerOptions {
                signal: "SIGKILL".into(),
            }),
        ))
        .unwrap();
    let runner = wait_until(Duration::from_secs(60), "a new runner container", || {
        let runner = agent_runner(&home);
        (runner["state"] == "running" && runner["restarts"] == 1).then_some(runner)
    });
    assert_ne!(runner["container_id"].as_str().unwrap(), first);
    let reason = runner["last_exit"].as_str().unwrap();
    assert!(reason.contains(&first[..12]), "{reason}");
    assert!(reason.contains("exit code 137"), "{reason}");
    // The dead container was removed; only the new one is there.
    assert_eq!(engine.containers_of(&home).len(), 1);
}

#[test]
fn a_container_left_by_a_killed_daemon_is_removed_by_the_next_start() {
    let engine = TestEngine::connect();
    let llm = ScriptedLlm::start(vec![]);
    let home = container_home(&llm, "");
    let _cleanup = Cleanup(&engine, &home);
    home.start();
    let orphan = agent_runner(&home)["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let daemon = home.status()["daemon_pid"].as_u64().unwrap() as u32;
    stigmer_test::signal(daemon, nix::sys::signal::Signal::SIGKILL);
    home.wait_until_stopped();
    // The engine, not the daemon, owns the container: it outlives the daemon.
    assert_eq!(engine.containers_of(&home), std::slice::from_ref(&orphan));

    home.start();
    let containers = engine.containers_of(&home);
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_ne!(containers[0], orphan);
    assert!(home.log("daemon").contains("left behind"));

    // Again, and this time the next start is in process mode: the orphan goes all the same.
    let daemon = home.status()["daemon_pid"].as_u64().unwrap() as u32;
    stigmer_test::signal(daemon, nix::sys::signal::Signal::SIGKILL);
    home.wait_until_stopped();
    assert_eq!(engine.containers_of(&home), containers);
    let outcome = home.run(&["server", "start", "--agent-runner", "process"]);
    assert_eq!(outcome.code, 0, "{outcome}");
    assert_eq!(agent_runner(&home)["mode"], "process");
    assert!(engine.containers_of(&home).is_empty());
}

#[test]
fn the_image_is_pulled_from_the_registry_and_tagged() {
    let engine = TestEngine::connect();
    let registry = stigmer_test::Registry::start();
    let llm = ScriptedLlm::start(vec![]);
    let home = home();
    home.write_config(&format!(
        "{}agent_runner:\n  mode: container\n  image_registry: {}\nllm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
        registry.address,
        llm.v1_url()
    ));
    let _cleanup = Cleanup(&engine, &home);
    // Build and push it, then drop the local tag: the start must pull it back.
    let pushed = home.run(&["image", "build", "--push"]);
    assert_eq!(pushed.code, 0, "{pushed}");
    let remote = format!(
        "{}/stigmer/agent-runner:{}",
        registry.address,
        stigmer_config::VERSION
    );
    assert_eq!(pushed.stdout.trim(), remote);
    let local = format!("stigmer-agent-runner:{}", stigmer_config::VERSION);
    for reference in [&local, &remote] {
        engine
            .runtime
            .block_on(engine.engine.docker().remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            ))
            .unwrap();
    }
    home.start();
    let ready = home
        .log("daemon")
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["message"] == "Agent-runner image ready.")
        .expect("the daemon says how it got the image");
    assert_eq!(ready["source"], "Pulled", "{ready}");
    assert_eq!(ready["image"], local.as_str());
    assert!(
        engine
            .runtime
            .block_on(engine.engine.docker().inspect_image(&local))
            .is_ok()
    );
}

#[test]
fn the_image_holds_the_binary_and_its_libraries_only() {
    let engine = TestEngine::connect();
    let home = home();
    let built = home.run(&["image", "build"]);
    assert_eq!(built.code, 0, "{built}");
    let reference = built.stdout.trim().to_owned();
    assert_eq!(
        reference,
        format!("stigmer-agent-runner:{}", stigmer_config::VERSION)
    );
    let size = engine
        .runtime
        .block_on(engine.engine.image_size(&reference))
        .unwrap();
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_stigmer"))
        .unwrap()
        .len();
    // No base image: the binary plus a few MB of shared libraries and CA certificates.
    assert!(
        size <= binary + 8 * 1024 * 1024,
        "image {size} bytes for a {binary}-byte binary"
    );
    let inspected = engine
        .runtime
        .block_on(engine.engine.docker().inspect_image(&reference))
        .unwrap();
    let config = inspected.config.unwrap();
    assert_eq!(config.user.as_deref(), Some("65532:65532"));
    assert_eq!(
        config.entrypoint.unwrap(),
        ["/usr/local/bin/stigmer", "internal", "agent-runner"]
    );
    assert_eq!(inspected.root_fs.unwrap().layers.unwrap().len(), 1);
}

#[test]
fn without_an_engine_container_mode_says_what_to_do_and_leaves_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let llm = ScriptedLlm::start(vec![]);
    let mut home = container_home(&llm, "");
    home.set_env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let started = home.run(&["server", "start"]);
    assert_ne!(started.code, 0, "{started}");
    assert!(
        started
            .stderr
            .contains("no container engine answers at unix:///nonexistent/docker.sock"),
        "{started}"
    );
    assert!(
        started.stderr.contains("podman system service"),
        "{started}"
    );
    assert!(started.stderr.contains("process mode"), "{started}");
    assert_eq!(
        home.run(&["server", "status"]).code,
        3,
        "nothing may be left running"
    );
    if let Some((pid, _)) = home.lock_holder() {
        assert!(
            !stigmer_test::is_alive(pid),
            "the daemon {pid} is still alive"
        );
    }
    // Process mode needs nothing: the same home starts with the flag.
    let process = home.run(&["server", "start", "--agent-runner", "process"]);
    assert_eq!(process.code, 0, "{process}");
    assert_eq!(agent_runner(&home)["mode"], "process");
}

#[test]
fn a_bridge_network_on_linux_is_refused_with_what_to_use() {
    let llm = ScriptedLlm::start(vec![]);
    let home = home();
    home.write_config(&format!(
        "{}agent_runner:\n  mode: container\n  network: bridge\nllm:\n  provider: openai\n  model: scripted\n  base_url: {}\n",
        stigmer_test::TEST_CONFIG,
        llm.v1_url()
    ));
    let started = home.run(&["server", "start"]);
    assert_ne!(started.code, 0, "{started}");
    assert!(
        started
            .stderr
            .contains("agent_runner.network: bridge cannot work on Linux"),
        "{started}"
    );
    assert!(started.stderr.contains("network: host"), "{started}");
    assert_eq!(home.run(&["server", "status"]).code, 3);
}
