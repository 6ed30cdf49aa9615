//! `stigmer image build [--push]`: the agent-runner image from this very binary.

use crate::cli::ImageBuildArgs;
use crate::failure::Failure;
use crate::printer::{Printer, print_data};
use std::process::ExitCode;
use std::time::Instant;
use stigmer_container::image::{ImagePlan, binary_digest, local_reference};

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
    // The image the daemon would use: built on `agent_runner.image_base` when it is set.
    let home = super::invocation::home()?;
    let config = stigmer_config::ConfigFile::load(&home.config_file()).map_err(Failure::from)?;
    let mut plan = ImagePlan::new(version, &binary);
    plan.base = config
        .agent_runner
        .image_base
        .clone()
        .filter(|base| !base.trim().is_empty());
    if plan.base.is_some() && args.push {
        return Err(Failure::new(
            "pushing an image built on agent_runner.image_base is not supported yet",
        )
        .with_hint(Some(
            "build it without --push (the daemon builds it too), or unset image_base to push the plain image".into(),
        )));
    }
    let reference = match plan.base {
        Some(_) => plan.reference(),
        None => local_reference(version),
    };
    let started = Instant::now();
    engine
        .build_planned_image(&plan, &digest)
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
            None => config.agent_runner.image_registry.ok_or_else(|| {
                Failure::new("no registry to push to").with_hint(Some(
                    "pass --registry HOST[:PORT] or set agent_runner.image_registry in config.yaml"
                        .into(),
                ))
            })?,
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
