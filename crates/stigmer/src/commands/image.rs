//! `stigmer image build [--push]`: the agent-runner image from this very binary.

use crate::cli::ImageBuildArgs;
use crate::failure::Failure;
use crate::printer::{Printer, print_data};
use std::process::ExitCode;
use std::time::Instant;
use stigmer_container::image::{binary_digest, local_reference};

pub async fn build(args: ImageBuildArgs) -> Result<ExitCode, Failure> {
    let printer = Printer::stderr();
    let engine = stigmer_container::Engine::connect()
        .await
        .map_err(|error| {
            Failure::new(error.to_string()).with_hint(Some(
                "process mode (the default) needs no image and no engine".into(),
            ))
        })?;
    let binary = std::env::current_exe()
        .map_err(|error| Failure::new(format!("cannot find this binary: {error}")))?;
    let digest = binary_digest(&binary)
        .map_err(|error| Failure::new(format!("cannot read {}: {error}", binary.display())))?;
    let version = stigmer_config::VERSION;
    let reference = local_reference(version);
    let started = Instant::now();
    engine
        .build_image(&binary, version, &digest)
        .await
        .map_err(|error| Failure::new(format!("cannot build {reference}: {error}")))?;
    let size = engine.image_size(&reference).await.unwrap_or(0);
    printer.step(&format!(
        "built {reference} in {:.1}s ({:.1} MB, from {})",
        started.elapsed().as_secs_f64(),
        size as f64 / 1_000_000.0,
        binary.display()
    ));
    if args.push {
        let registry = match args.registry {
            Some(registry) => registry,
            None => {
                let home = super::invocation::home()?;
                stigmer_config::ConfigFile::load(&home.config_file())
                    .map_err(Failure::from)?
                    .agent_runner
                    .image_registry
                    .ok_or_else(|| {
                        Failure::new("no registry to push to").with_hint(Some(
                            "pass --registry HOST[:PORT] or set agent_runner.image_registry in config.yaml".into(),
                        ))
                    })?
            }
        };
        let remote = engine
            .push_image(&registry, version)
            .await
            .map_err(|error| Failure::new(format!("cannot push to {registry}: {error}")))?;
        printer.step(&format!("pushed {remote}"));
        print_data(&remote);
    } else {
        print_data(&reference);
    }
    Ok(ExitCode::SUCCESS)
}
