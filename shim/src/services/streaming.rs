//! Exec, Attach and PortForward: validate, cache under a token, answer the URL.
//!
//! The request is checked as far as it can be now (the object exists and runs, the streams
//! make sense), so a client learns a mistake from the RPC's status rather than from a broken
//! stream later. The session itself checks again: a container may stop in between.

use std::sync::Arc;

use cri_api::v1 as cri;

use crate::error::{Error, Result};
use crate::runtime::Crius;
use crate::store::{ContainerState, SandboxState};
use crate::streaming::Pending;

fn require_running(crius: &Crius, id: &str, rpc: &str) -> Result<crate::store::ContainerMeta> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{rpc}: container_id must not be empty"
        )));
    }
    let container = crius.container(id)?;
    if container.status().state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "{rpc}: container {:?} is not running",
            container.meta.id
        )));
    }
    Ok(container.meta.clone())
}

/// The streams of an exec or attach: at least one, and no stderr with a terminal (a pty
/// has one output).
fn check_streams(rpc: &str, tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<()> {
    if tty && stderr {
        return Err(Error::InvalidArgument(format!(
            "{rpc}: tty and stderr cannot both be set: a terminal has a single output stream"
        )));
    }
    if !(stdin || stdout || stderr) {
        return Err(Error::InvalidArgument(format!(
            "{rpc}: at least one of stdin, stdout and stderr must be set"
        )));
    }
    Ok(())
}

pub async fn exec(crius: &Arc<Crius>, request: cri::ExecRequest) -> Result<cri::ExecResponse> {
    require_running(crius, &request.container_id, "Exec")?;
    if request.cmd.is_empty() {
        return Err(Error::InvalidArgument("Exec: cmd must not be empty".into()));
    }
    if request.cmd.iter().any(|arg| arg.contains('\0')) {
        return Err(Error::InvalidArgument(
            "Exec: cmd contains a NUL byte".into(),
        ));
    }
    check_streams(
        "Exec",
        request.tty,
        request.stdin,
        request.stdout,
        request.stderr,
    )?;
    let url = crius.streaming.issue(Pending::Exec(request))?;
    Ok(cri::ExecResponse { url })
}

pub async fn attach(
    crius: &Arc<Crius>,
    request: cri::AttachRequest,
) -> Result<cri::AttachResponse> {
    let meta = require_running(crius, &request.container_id, "Attach")?;
    check_streams(
        "Attach",
        request.tty,
        request.stdin,
        request.stdout,
        request.stderr,
    )?;
    let container_tty = meta.process.terminal().unwrap_or(false);
    if request.tty != container_tty {
        return Err(Error::InvalidArgument(format!(
            "Attach: tty is {} but container {:?} was created with tty {}; they must match",
            request.tty, meta.id, container_tty
        )));
    }
    if request.stdin && !meta.config.stdin {
        return Err(Error::FailedPrecondition(format!(
            "Attach: container {:?} was created without stdin, so there is none to attach to",
            meta.id
        )));
    }
    let url = crius.streaming.issue(Pending::Attach(request))?;
    Ok(cri::AttachResponse { url })
}

pub async fn port_forward(
    crius: &Arc<Crius>,
    request: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse> {
    if request.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument(
            "PortForward: pod_sandbox_id must not be empty".into(),
        ));
    }
    let sandbox = crius.sandbox(&request.pod_sandbox_id)?;
    if sandbox.status().state != SandboxState::Ready {
        return Err(Error::FailedPrecondition(format!(
            "PortForward: pod sandbox {:?} is not ready",
            sandbox.meta.id
        )));
    }
    if let Some(bad) = request.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Error::InvalidArgument(format!(
            "PortForward: port {bad} is not a number from 1 to 65535"
        )));
    }
    let url = crius.streaming.issue(Pending::PortForward(request))?;
    Ok(cri::PortForwardResponse { url })
}
