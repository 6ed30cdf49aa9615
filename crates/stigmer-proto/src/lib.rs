//! The wire protocol shared by every process boundary: the CLI, the daemon, the API server and
//! the runners import these generated types, so a renamed field breaks the build, not a user.

/// The daemon's control API.
pub mod daemon {
    pub mod v1 {
        tonic::include_proto!("stigmer.daemon.v1");
    }
}

/// Declared and system-created resources.
pub mod resources {
    pub mod v1 {
        tonic::include_proto!("stigmer.resources.v1");
    }
}

/// Agent executions and their event log.
pub mod executions {
    pub mod v1 {
        tonic::include_proto!("stigmer.executions.v1");
    }
}

/// Encoded descriptors of every service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/stigmer_descriptor.bin"));

/// Bumped on every incompatible change of the protocol.
pub const PROTOCOL_VERSION: u32 = 1;
