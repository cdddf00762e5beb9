//! CRI v1 bindings (`runtime.v1`), as of Kubernetes 1.36.
//!
//! Generated at build time from `proto/api.proto`. No logic lives here.

/// Package `runtime.v1`: the RuntimeService and ImageService with every message.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
