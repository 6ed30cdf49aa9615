//! Against a real engine (`DOCKER_HOST`; `.ci/run` starts Podman's service): the image is
//! built from a binary with no base image, and a container runs, prints, exits and is removed.

use futures::StreamExt;
use std::time::{Duration, Instant};
use stigmer_container::image::{ImagePlan, ImageSource, local_reference};
use stigmer_container::{ContainerSpec, Engine};

/// The binary under test: the `stigmer` the workspace built for these tests.
fn stigmer_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    deps.parent().unwrap().parent().unwrap().join("stigmer")
}

#[tokio::test]
async fn an_image_is_built_from_the_binary_and_a_container_runs_and_exits() {
    let engine = Engine::connect()
        .await
        .expect("a container engine (DOCKER_HOST)");
    let binary = stigmer_binary();
    assert!(
        binary.exists(),
        "build the stigmer binary first: {}",
        binary.display()
    );
    let version = format!("test-{}", std::process::id());
    let plan = ImagePlan {
        version: version.clone(),
        binary: binary.clone(),
        registry: None,
    };
    let built = engine.ensure_image(&plan).await.unwrap();
    assert_eq!(built.source, ImageSource::Built);
    // A second ensure finds it.
    let again = engine.ensure_image(&plan).await.unwrap();
    assert_eq!(again.source, ImageSource::Local);
    let size = engine.image_size(&built.reference).await.unwrap();
    let binary_size = std::fs::metadata(&binary).unwrap().len();
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
    let _ = engine
        .docker()
        .remove_image(
            &local_reference(&version),
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}
