//! Compiles the `.proto` files with protox (pure Rust, so no `protoc` is needed) and keeps the
//! encoded descriptor set for gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/stigmer/daemon/v1/daemon.proto",
        "proto/stigmer/resources/v1/resources.proto",
        "proto/stigmer/executions/v1/executions.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("stigmer_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
