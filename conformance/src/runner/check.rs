//! Assertions and RPC call helpers. A failed check is an `Err` that says what was expected
//! and what came back; an RPC answering `Unimplemented` turns the case into a skip.

use std::fmt::Debug;
use std::future::Future;

use anyhow::{bail, Result};
use cri_api::v1 as cri;
use tonic::{Code, Status};

use super::{skip, Ctx, Sandbox};

/// `code: message` of a gRPC status, for failure messages.
pub fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The skip every helper raises for an RPC the endpoint does not implement.
pub fn unimplemented(rpc: &str, status: &Status) -> anyhow::Error {
    skip(format!(
        "{rpc} is not implemented by the endpoint ({})",
        describe(status)
    ))
}

/// Awaits an RPC and returns its message. `Unimplemented` skips the case; any other error
/// fails it, naming the RPC.
pub async fn call<T>(
    rpc: &'static str,
    request: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T> {
    match request.await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if status.code() == Code::Unimplemented => Err(unimplemented(rpc, &status)),
        Err(status) => bail!("{rpc} failed: {}", describe(&status)),
    }
}

/// Awaits an RPC that must fail and returns its status. Success fails the case;
/// `Unimplemented` skips it.
pub async fn call_err<T: Debug>(
    rpc: &'static str,
    request: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<Status> {
    match request.await {
        Ok(response) => bail!(
            "{rpc}: expected an error, got success: {:?}",
            response.into_inner()
        ),
        Err(status) if status.code() == Code::Unimplemented => Err(unimplemented(rpc, &status)),
        Err(status) => Ok(status),
    }
}

/// Fails unless `status` carries one of `codes`; no codes means no error was expected.
pub fn ensure_code(rpc: &str, status: &Status, codes: &[Code]) -> Result<()> {
    if codes.contains(&status.code()) {
        Ok(())
    } else if codes.is_empty() {
        bail!("{rpc}: expected no error, got {}", describe(status))
    } else {
        bail!(
            "{rpc}: expected an error with code {}, got {}",
            codes
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(" or "),
            describe(status)
        )
    }
}

/// Fails unless `status` carries the code a negative case expects of this endpoint: exactly
/// `crius` (what api.proto and the CRI contract imply) on the endpoint under test, one of
/// `reference` on containerd 1.6's built-in CRI. The reference's codes are pinned as it
/// answers them (often `Unknown`), so a change there is noticed rather than accepted.
pub fn ensure_code_on(
    ctx: &Ctx,
    rpc: &str,
    status: &Status,
    crius: Code,
    reference: &[Code],
) -> Result<()> {
    if ctx.settings().reference {
        ensure_code(rpc, status, reference)
    } else {
        ensure_code(rpc, status, &[crius])
    }
}

/// CreateContainer of `config` in `sandbox` must be refused with the code [`ensure_code_on`]
/// expects; returns the refusal. A refusal belongs at create, before any work: crius checks
/// what it can before touching the backend, and containerd 1.6 refuses what it cannot build
/// a spec for there too, so no case waits for StartContainer to see it.
pub async fn ensure_create_fails(
    ctx: &Ctx,
    sandbox: &Sandbox,
    config: cri::ContainerConfig,
    crius: Code,
    reference: &[Code],
) -> Result<Status> {
    let request = cri::CreateContainerRequest {
        pod_sandbox_id: sandbox.id.clone(),
        config: Some(config),
        sandbox_config: Some(sandbox.config.clone()),
    };
    // A container created by mistake is removed with its sandbox at cleanup.
    let status = call_err("CreateContainer", ctx.rt().create_container(request)).await?;
    ensure_code_on(ctx, "CreateContainer", &status, crius, reference)?;
    Ok(status)
}

/// Fails unless `haystack` contains `needle`.
pub fn ensure_contains(what: &str, haystack: &str, needle: &str) -> Result<()> {
    if haystack.contains(needle) {
        Ok(())
    } else {
        bail!("{what}: expected to contain {needle:?}, got {haystack:?}")
    }
}

/// `ensure_eq!(got, expected, "what {}", arg)`: fails with `what: expected X, got Y`.
#[macro_export]
macro_rules! ensure_eq {
    ($got:expr, $want:expr, $($what:tt)+) => {
        // `match` keeps temporaries in `$got` alive for the comparison.
        match (&$got, &$want) {
            (got, want) => {
                if got != want {
                    ::anyhow::bail!("{}: expected {:?}, got {:?}", format!($($what)+), want, got);
                }
            }
        }
    };
}
