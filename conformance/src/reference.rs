//! `conformance --against-reference`: the reference run in one command. The project's harness
//! starts a private containerd (its built-in CRI plugin is the reference), imports the test
//! images, writes a CNI bridge conflist, and starts a plain and a basic-auth registry holding a
//! pull image whose id differs from every preloaded image. Everything is stopped afterwards.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use cri_api::v1 as cri;

use crate::harness::{self, Containerd, ContainerdOptions, Images, Registry};
use crate::runner::AuthRegistry;

/// Where the pull image lives in both registries (`localhost/crius/user:uid`: same layers as
/// the preloaded user image, another config, so another id).
pub const PULL_REPO: &str = "crius/pullme:1";

/// The daemons of a reference run.
pub struct ReferenceEnv {
    containerd: Containerd,
    registry: Registry,
    auth_registry: Registry,
}

impl ReferenceEnv {
    /// Starts everything; blocking (the harness is synchronous).
    pub fn start() -> Result<ReferenceEnv> {
        let images = Images::get().context("building the test images")?;
        let containerd = Containerd::start(ContainerdOptions::default())?;
        images.import_all(&containerd, "k8s.io")?;
        containerd.write_cni_conflist("conformance", None)?;
        let registry = Registry::start(false)?;
        images.push(&registry, harness::images::USER_UID, PULL_REPO)?;
        let auth_registry = Registry::start(true)?;
        images.push(&auth_registry, harness::images::USER_UID, PULL_REPO)?;
        Ok(ReferenceEnv {
            containerd,
            registry,
            auth_registry,
        })
    }

    pub fn endpoint(&self) -> String {
        self.containerd.cri_endpoint()
    }

    /// The private containerd (other runtimes under test may share it, in their own namespace).
    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    pub fn registry(&self) -> String {
        self.registry.addr()
    }

    pub fn auth_registry(&self) -> Option<AuthRegistry> {
        let (user, password) = self.auth_registry.credentials()?;
        Some(AuthRegistry {
            address: self.auth_registry.addr(),
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Stops the registries and containerd (which cleans its CNI network); blocking.
    pub fn shutdown(mut self) -> Result<()> {
        let results = [
            self.registry.shutdown(),
            self.auth_registry.shutdown(),
            self.containerd.shutdown(),
        ];
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| format!("{e:#}")))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("stopping the reference environment: {}", errors.join("; "))
        }
    }
}

/// Waits until the endpoint reports `NetworkReady` (containerd loads the conflist live).
pub async fn wait_network_ready(
    runtime: &mut cri_api::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = runtime
            .status(cri::StatusRequest { verbose: false })
            .await
            .context("Status")?
            .into_inner();
        let ready = status
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.r#type == "NetworkReady" && c.status);
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the endpoint did not report NetworkReady within 30s: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
