//! crius: a CRI v1 runtime shim for containerd (and, next, Docker Engine).
//!
//! See DESIGN.md: `services/` speaks CRI and converts to `domain` types, the managers
//! (`sandbox/`, `container/`) do the work on a `runtime_backends::Backend`, and `store/`
//! answers the hot read calls from memory.

pub mod cgroups;
pub mod cleanup;
pub mod config;
pub mod container;
pub mod cri_metrics;
pub mod doctor;
pub mod domain;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod features;
pub mod instrument;
pub mod layer_usage;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod network;
pub mod pause;
pub mod pod_events;
#[cfg(test)]
mod properties;
pub mod recover;
pub mod runtime;
pub mod sandbox;
pub mod security;
pub mod server;
pub mod services;
pub mod stats;
pub mod store;
pub mod streaming;
pub mod wire;
