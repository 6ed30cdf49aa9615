//! Against a real engine (`DOCKER_HOST`; `.ci/run` starts Podman's service): the image is
//! built from a binary with no base image, a container runs, prints, exits and is removed; the
//! image has a shell and core utilities; an image of an older layout is not used; and with a
//! base image from a real registry (the local `docker-registry` of `stigmer-test`) the binary
//! runs beside the base's programs.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptions, PushImageOptions, RemoveContainerOptions, RemoveImageOptions,
    TagImageOptions,
};
use futures::StreamExt;
use std::time::{Duration, Instant};
use stigmer_container::image::{
    ImagePlan, ImageSource, binary_digest, build_context, local_reference,
};
use stigmer_container::{ContainerSpec, Engine, LABEL_BINARY};

/// The binary under test: the `stigmer` the workspace built for these tests.
fn stigmer_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let binary = deps.parent().unwrap().parent().unwrap().join("stigmer");
    assert!(
        binary.exists(),
        "build the stigmer binary first: {}",
        binary.display()
    );
    binary
}

async fn connect() -> Engine {
    Engine::connect()
        .await
        .expect("a container engine (DOCKER_HOST)")
}

/// Removes the images (by reference) a test made, even when it fails. The engine is reached
/// again from a thread of its own: a test's runtime cannot block in `drop`.
struct Cleanup {
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let images = std::mem::take(&mut self.images);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(engine) = Engine::connect().await else {
                    return;
                };
                for image in images {
                    let _ = engine
                        .docker()
                        .remove_image(
                            &image,
                            Some(RemoveImageOptions {
                                force: true,
                                ..Default::default()
                            }),
                            None,
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

/// What a command printed (stdout and stderr, in order) and its exit code.
struct Ran {
    code: i64,
    output: String,
}

/// Runs `command` in a container of `image` as `user`, instead of its entry point, and
/// removes the container.
async fn run(engine: &Engine, image: &str, user: &str, command: &[&str]) -> Ran {
    let created = engine
        .docker()
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(image.to_owned()),
                entrypoint: Some(command.iter().map(|part| (*part).to_owned()).collect()),
                cmd: Some(Vec::new()),
                user: Some(user.to_owned()),
                host_config: Some(HostConfig {
                    network_mode: Some("host".into()),
                    ..HostConfig::default()
                }),
                ..ContainerCreateBody::default()
            },
        )
        .await
        .unwrap();
    let ran = async {
        engine
            .docker()
            .start_container(&created.id, None)
            .await
            .unwrap();
        let lines: Vec<_> = tokio::time::timeout(
            Duration::from_secs(60),
            engine.output(&created.id).collect(),
        )
        .await
        .expect("the command ends within a minute");
        let code = engine.wait(&created.id).await;
        let output = lines
            .iter()
            .map(|line| format!("{}\n", line.text))
            .collect();
        Ran { code, output }
    }
    .await;
    let _ = engine
        .docker()
        .remove_container(
            &created.id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    ran
}

#[tokio::test]
async fn an_image_is_built_from_the_binary_and_a_container_runs_and_exits() {
    let engine = connect().await;
    let binary = stigmer_binary();
    let version = format!("test-{}", std::process::id());
    let _cleanup = Cleanup {
        images: vec![local_reference(&version)],
    };
    let plan = ImagePlan::new(version.clone(), binary.clone());
    let built = engine.ensure_image(&plan).await.unwrap();
    assert_eq!(built.source, ImageSource::Built);
    // A second ensure finds it.
    let again = engine.ensure_image(&plan).await.unwrap();
    assert_eq!(again.source, ImageSource::Local);
    let size = engine.image_size(&built.reference).await.unwrap();
    let binary_size = std::fs::metadata(&binary).unwrap().len();
    println!("image {size} bytes for a {binary_size}-byte binary");
    assert!(
        size < binary_size + 10 * 1024 * 1024,
        "image {size} bytes for a {binary_size}-byte binary: no base image expected"
    );

    // Without its launch contract the runner refuses to start, naming a variable, exit 78.
    let id = engine
        .start(&ContainerSpec {
            name: format!("stigmer-test-{}", std::process::id()),
            image: built.reference.clone(),
            ..ContainerSpec::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let lines: Vec<_> = tokio::time::timeout(Duration::from_secs(30), engine.output(&id).collect())
        .await
        .unwrap();
    let code = engine.wait(&id).await;
    assert_eq!(code, 78, "{lines:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        lines
            .iter()
            .any(|line| line.stderr && line.text.contains("refusing to start")),
        "{lines:?}"
    );
    engine.remove(&id).await.unwrap();
}

#[tokio::test]
async fn the_image_has_a_shell_core_utilities_a_home_and_a_writable_tmp() {
    let engine = connect().await;
    let binary = stigmer_binary();
    let version = format!("test-shell-{}", std::process::id());
    let mut cleanup = Cleanup {
        images: vec![local_reference(&version)],
    };
    // An image an older build made from the same binary (no shell, no layout label) is not
    // used: the ensure builds anew.
    let digest = binary_digest(&binary).unwrap();
    let old = format!("FROM scratch\nLABEL {LABEL_BINARY}=\"{digest}\"\n");
    let mut context = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(old.len() as u64);
    header.set_mode(0o644);
    context
        .append_data(&mut header, "Dockerfile", old.as_bytes())
        .unwrap();
    build(
        &engine,
        context.into_inner().unwrap(),
        &local_reference(&version),
    )
    .await;
    // The build takes its tag away: it is removed by id.
    cleanup
        .images
        .extend(engine.image_id(&local_reference(&version)).await);
    let plan = ImagePlan::new(version.clone(), binary.clone());
    let built = engine.ensure_image(&plan).await.unwrap();
    assert_eq!(built.source, ImageSource::Built, "the old image was used");

    let script = "echo ok; ls /bin | head; id -u; echo home=$HOME; \
                  touch /tmp/written && echo tmp-writable; \
                  touch $HOME/written && echo home-writable; \
                  /usr/bin/env sh -c 'echo env-works'; \
                  stigmer --version";
    let ran = run(
        &engine,
        &built.reference,
        "65532:65532",
        &["/bin/sh", "-c", script],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.output);
    let lines: Vec<&str> = ran.output.lines().collect();
    assert_eq!(lines[0], "ok", "{}", ran.output);
    for expected in [
        "65532",
        "home=/home/nonroot",
        "tmp-writable",
        "home-writable",
        "env-works",
    ] {
        assert!(lines.contains(&expected), "no {expected}: {}", ran.output);
    }
    assert!(
        lines.contains(&"busybox") || lines.iter().filter(|line| line.len() < 20).count() >= 10,
        "{}",
        ran.output
    );
    let version_line = lines.last().unwrap();
    assert!(version_line.starts_with("stigmer "), "{}", ran.output);
}

/// Builds a context into `reference`.
async fn build(engine: &Engine, context: Vec<u8>, reference: &str) {
    let mut progress = engine.docker().build_image(
        BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(reference.to_owned()),
            rm: true,
            forcerm: true,
            ..Default::default()
        },
        None,
        Some(bollard::body_full(context.into())),
    );
    while let Some(item) = progress.next().await {
        let info = item.unwrap();
        assert!(info.error_detail.is_none(), "{:?}", info.error_detail);
    }
}

/// Where [`push_base`] builds the base before pushing it.
fn base_build_reference() -> String {
    format!("stigmer-test-base:{}", std::process::id())
}

/// A small base image with a shell and a broken C library: busybox, a few links, and garbage
/// where a glibc distribution keeps its loader, its C library and their cache (a binary that
/// loaded any of them would fail), pushed to the registry as `reference`, with no local copy
/// left.
async fn push_base(engine: &Engine, reference: &str) {
    let mut rootfs = tar::Builder::new(Vec::new());
    let busybox = std::fs::read(stigmer_container::image::HOST_BUSYBOX).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(busybox.len() as u64);
    header.set_mode(0o755);
    rootfs
        .append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in [
        "sh", "echo", "readlink", "sleep", "kill", "cat", "ls", "test", "[",
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        rootfs
            .append_link(&mut header, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for decoy in [
        "lib64/ld-linux-x86-64.so.2",
        "lib/ld-linux-aarch64.so.1",
        "lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "lib/aarch64-linux-gnu/libc.so.6",
        "usr/lib/aarch64-linux-gnu/libc.so.6",
        "lib/libc.so.6",
        "usr/lib/libc.so.6",
        "etc/ld.so.cache",
    ] {
        let garbage = b"not what the stigmer binary needs\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(garbage.len() as u64);
        header.set_mode(0o755);
        rootfs
            .append_data(&mut header, decoy, garbage.as_slice())
            .unwrap();
    }
    let rootfs = rootfs.into_inner().unwrap();
    let dockerfile = "FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\nCMD [\"/bin/sh\"]\n";
    let mut context = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", dockerfile.as_bytes()),
        ("rootfs.tar", rootfs.as_slice()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        context.append_data(&mut header, name, data).unwrap();
    }
    let local = base_build_reference();
    build(engine, context.into_inner().unwrap(), &local).await;
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    engine
        .docker()
        .tag_image(
            &local,
            Some(TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
            }),
        )
        .await
        .unwrap();
    let mut progress = engine.docker().push_image(
        repo,
        Some(PushImageOptions {
            tag: Some(tag.to_owned()),
            ..Default::default()
        }),
        None,
    );
    while let Some(item) = progress.next().await {
        let info = item.unwrap();
        assert!(info.error_detail.is_none(), "{:?}", info.error_detail);
    }
    for image in [local.as_str(), reference] {
        engine
            .docker()
            .remove_image(image, None::<RemoveImageOptions>, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn over_a_base_image_the_binary_runs_beside_the_bases_shell() {
    let engine = connect().await;
    let binary = stigmer_binary();
    let registry = stigmer_test::Registry::start();
    let base = format!(
        "{}/stigmer-test/base:{}",
        registry.address,
        std::process::id()
    );
    let version = format!("test-base-{}", std::process::id());
    let mut plan = ImagePlan::new(version.clone(), binary.clone());
    plan.base = Some(base.clone());
    let _cleanup = Cleanup {
        images: vec![plan.reference(), base.clone(), base_build_reference()],
    };
    push_base(&engine, &base).await;
    assert!(engine.image_id(&base).await.is_none());

    let started = Instant::now();
    let built = engine.ensure_image(&plan).await.unwrap();
    println!(
        "built over {base} in {:?}: {} bytes",
        started.elapsed(),
        engine.image_size(&built.reference).await.unwrap()
    );
    assert_eq!(built.source, ImageSource::Built);
    assert_eq!(built.reference, plan.reference());
    assert_ne!(built.reference, local_reference(&version));
    assert!(
        engine.image_id(&base).await.is_some(),
        "the base was pulled"
    );
    assert_eq!(
        engine.ensure_image(&plan).await.unwrap().source,
        ImageSource::Local
    );

    // The base's shell, and the binary with its own C library (the base has none); while it
    // waits for its settings on stdin, its /proc/self/exe is the stigmer binary, which the
    // runner re-executes.
    let script = "echo base-shell; \
                  /usr/local/bin/stigmer --version || exit 1; \
                  sleep 60 | /usr/local/bin/stigmer internal daemon & \
                  pid=$!; exe=; i=0; \
                  while [ $i -lt 300 ]; do \
                    exe=$(readlink /proc/$pid/exe); \
                    [ \"$exe\" = /opt/stigmer/stigmer ] && break; \
                    sleep 0.1; i=$((i+1)); \
                  done; \
                  echo exe=$exe; kill $pid";
    let ran = run(
        &engine,
        &built.reference,
        "65532:65532",
        &["/bin/sh", "-c", script],
    )
    .await;
    println!("{}", ran.output);
    let lines: Vec<&str> = ran.output.lines().collect();
    assert_eq!(lines.first(), Some(&"base-shell"), "{}", ran.output);
    assert!(
        lines.iter().any(|line| line.starts_with("stigmer ")),
        "{}",
        ran.output
    );
    assert!(
        lines.contains(&"exe=/opt/stigmer/stigmer"),
        "{}",
        ran.output
    );
    // The entry point is the binary: without its launch contract it refuses to start.
    let id = engine
        .start(&ContainerSpec {
            name: format!("stigmer-test-base-{}", std::process::id()),
            image: built.reference.clone(),
            ..ContainerSpec::default()
        })
        .await
        .unwrap();
    let lines: Vec<_> = tokio::time::timeout(Duration::from_secs(30), engine.output(&id).collect())
        .await
        .unwrap();
    let code = engine.wait(&id).await;
    engine.remove(&id).await.unwrap();
    assert_eq!(code, 78, "{lines:?}");

    // A base the registry does not have: the error names it and the setting.
    let mut missing = plan.clone();
    missing.base = Some(format!("{}/stigmer-test/missing:1", registry.address));
    let error = engine.ensure_image(&missing).await.unwrap_err().to_string();
    assert!(error.contains("stigmer-test/missing:1"), "{error}");
    assert!(error.contains("agent_runner.image_base"), "{error}");
}

#[tokio::test]
async fn without_busybox_the_build_fails_and_says_what_to_install() {
    let engine = connect().await;
    let version = format!("test-nobusybox-{}", std::process::id());
    let mut plan = ImagePlan::new(version.clone(), stigmer_binary());
    plan.busybox = "/nonexistent/busybox".into();
    let _cleanup = Cleanup {
        images: vec![plan.reference()],
    };
    assert!(build_context(&plan, "abc").is_err());
    let error = engine.ensure_image(&plan).await.unwrap_err().to_string();
    assert!(
        error.contains("no busybox at /nonexistent/busybox"),
        "{error}"
    );
    assert!(error.contains("busybox-static"), "{error}");
    assert!(engine.image_id(&plan.reference()).await.is_none());
}
