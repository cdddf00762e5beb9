//! `[container]` mounts and devices: bind mounts read-write and read-only, propagation
//! private/rslave/rshared (observed by mounting on the host after the container started),
//! missing host paths, file mounts, devices and their cgroup permissions.

use std::path::Path;

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Container as G;
    vec![
        case!(
            G,
            "a read-write bind mount: what the container writes shows on the host",
            [CreateContainer, ExecSync],
            bind_rw
        ),
        case!(
            G,
            "a read-only bind mount can be read but not written",
            [CreateContainer, ExecSync],
            bind_ro
        ),
        case!(
            G,
            "a host file can be bind-mounted onto a file",
            [CreateContainer, ExecSync],
            bind_file
        ),
        case!(
            G,
            "ContainerStatus reports the container's mounts",
            [ContainerStatus],
            status_mounts
        ),
        case!(
            G,
            "propagation private: host mounts made after start stay invisible",
            [CreateContainer, ExecSync],
            propagation_private
        ),
        case!(
            G,
            "propagation rslave: host mounts made after start appear in the container",
            [CreateContainer, ExecSync],
            propagation_rslave
        ),
        case!(
            G,
            "propagation rshared: the mount is shared both ways",
            [CreateContainer, ExecSync],
            propagation_rshared
        ),
        case!(
            G,
            "a bind mount whose host path does not exist is created as a directory",
            [CreateContainer, StartContainer],
            missing_host_path
        ),
        case!(
            G,
            "recursive read-only mounts make submounts read-only too",
            [CreateContainer, Status],
            recursive_read_only
        ),
        case!(
            G,
            "a device is created in the container with its node type",
            [CreateContainer, ExecSync],
            device_rwm
        ),
        case!(
            G,
            "device permissions: \"r\" refuses opening for writing, \"rw\" allows it",
            [CreateContainer, ExecSync],
            device_read_only
        ),
    ]
}

const IN_CONTAINER: &str = "/mnt/conformance";

fn bind(host_path: &Path, readonly: bool, propagation: cri::MountPropagation) -> cri::Mount {
    cri::Mount {
        container_path: IN_CONTAINER.into(),
        host_path: host_path.to_string_lossy().into_owned(),
        readonly,
        propagation: propagation as i32,
        ..Default::default()
    }
}

/// A host directory every uid may write.
fn open_dir(ctx: &Ctx, what: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = ctx.dir(what)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

async fn sleeper_with(ctx: &Ctx, sandbox: &Sandbox, mounts: Vec<cri::Mount>) -> Result<Container> {
    let mut config = ctx.container_config(sandbox, &["sleep", "3600"]);
    config.mounts = mounts;
    ctx.running_container(sandbox, config).await
}

async fn bind_rw(ctx: Ctx) -> Result<Outcome> {
    let dir = open_dir(&ctx, "rw")?;
    std::fs::write(dir.join("from-host"), "host-data")?;
    let sandbox = ctx.sandbox().await?;
    let container = sleeper_with(
        &ctx,
        &sandbox,
        vec![bind(&dir, false, cri::MountPropagation::PropagationPrivate)],
    )
    .await?;
    ensure_eq!(
        ctx.sh(&container.id, &format!("cat {IN_CONTAINER}/from-host"))
            .await?,
        "host-data",
        "file read through the mount"
    );
    ctx.sh(
        &container.id,
        &format!("echo container-data > {IN_CONTAINER}/from-container"),
    )
    .await?;
    let written = std::fs::read_to_string(dir.join("from-container"))
        .context("the file the container wrote is not on the host")?;
    ensure_eq!(
        written.trim(),
        "container-data",
        "host view of the container's file"
    );
    pass()
}

async fn bind_ro(ctx: Ctx) -> Result<Outcome> {
    let dir = open_dir(&ctx, "ro")?;
    std::fs::write(dir.join("from-host"), "host-data")?;
    let sandbox = ctx.sandbox().await?;
    let container = sleeper_with(
        &ctx,
        &sandbox,
        vec![bind(&dir, true, cri::MountPropagation::PropagationPrivate)],
    )
    .await?;
    ensure_eq!(
        ctx.sh(&container.id, &format!("cat {IN_CONTAINER}/from-host"))
            .await?,
        "host-data",
        "file read through the mount"
    );
    let response = ctx
        .exec(
            &container.id,
            &["sh", "-c", &format!("echo x > {IN_CONTAINER}/new")],
        )
        .await?;
    ensure!(
        response.exit_code != 0,
        "writing into a read-only mount succeeded"
    );
    ensure_contains(
        "stderr of the refused write",
        &String::from_utf8_lossy(&response.stderr),
        "Read-only file system",
    )?;
    ensure!(
        !dir.join("new").exists(),
        "the refused write created a file on the host"
    );
    pass()
}

async fn bind_file(ctx: Ctx) -> Result<Outcome> {
    let dir = open_dir(&ctx, "file")?;
    let file = dir.join("conformance.txt");
    std::fs::write(&file, "single-file\n")?;
    let sandbox = ctx.sandbox().await?;
    let mount = cri::Mount {
        container_path: "/etc/conformance.txt".into(),
        host_path: file.to_string_lossy().into_owned(),
        readonly: true,
        ..Default::default()
    };
    let container = sleeper_with(&ctx, &sandbox, vec![mount]).await?;
    ensure_eq!(
        ctx.sh(&container.id, "cat /etc/conformance.txt").await?,
        "single-file",
        "content of the mounted file"
    );
    pass()
}

async fn status_mounts(ctx: Ctx) -> Result<Outcome> {
    let dir = open_dir(&ctx, "status")?;
    let sandbox = ctx.sandbox().await?;
    let wanted = bind(&dir, true, cri::MountPropagation::PropagationPrivate);
    let container = sleeper_with(&ctx, &sandbox, vec![wanted.clone()]).await?;
    let status = ctx.container_status(&container.id).await?;
    let reported = status
        .mounts
        .iter()
        .find(|m| m.container_path == IN_CONTAINER)
        .with_context(|| {
            format!(
                "ContainerStatus.mounts lacks {IN_CONTAINER}: {:?}",
                status.mounts
            )
        })?;
    ensure_eq!(
        (reported.host_path.as_str(), reported.readonly),
        (wanted.host_path.as_str(), true),
        "reported (host_path, readonly)"
    );
    pass()
}

/// The optional fields (`shared:N`, `master:N`) of the mountinfo line for `mount_point`.
async fn propagation_fields(ctx: &Ctx, container: &Container, mount_point: &str) -> Result<String> {
    let mountinfo = ctx.sh(&container.id, "cat /proc/self/mountinfo").await?;
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mount_point))
        .with_context(|| format!("{mount_point} is not in the container's mountinfo"))?;
    let fields: Vec<&str> = line.split(' ').skip(6).take_while(|f| *f != "-").collect();
    Ok(fields.join(" "))
}

/// Mounts a shared tmpfs on a host dir, runs a container binding it with `propagation`,
/// then mounts a second tmpfs below it on the host. Returns whether the container sees the
/// second mount's file, and the mount's propagation fields in the container.
async fn propagation_probe(
    ctx: &Ctx,
    propagation: cri::MountPropagation,
) -> Result<(bool, String)> {
    let dir = ctx.dir("prop")?;
    host::mount_shared_tmpfs(&dir)?;
    ctx.track_mount(&dir);
    let mut config = ctx.sandbox_config()?;
    if propagation == cri::MountPropagation::PropagationBidirectional {
        // Bidirectional propagation is only allowed for privileged containers by kubelet.
        if let Some(context) = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            context.privileged = true;
        }
    }
    let sandbox = ctx.run_sandbox(config).await?;
    let mut container_config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    container_config.mounts = vec![bind(&dir, false, propagation)];
    if propagation == cri::MountPropagation::PropagationBidirectional {
        if let Some(context) = container_config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            context.privileged = true;
        }
    }
    let container = ctx.running_container(&sandbox, container_config).await?;
    let fields = propagation_fields(ctx, &container, IN_CONTAINER).await?;

    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub)?;
    host::mount_tmpfs(&sub)?;
    ctx.track_mount(&sub);
    std::fs::write(sub.join("marker"), "propagated")?;
    let seen = ctx
        .exec(
            &container.id,
            &["cat", &format!("{IN_CONTAINER}/sub/marker")],
        )
        .await?;
    let visible =
        seen.exit_code == 0 && String::from_utf8_lossy(&seen.stdout).trim() == "propagated";
    Ok((visible, fields))
}

async fn propagation_private(ctx: Ctx) -> Result<Outcome> {
    let (visible, fields) =
        propagation_probe(&ctx, cri::MountPropagation::PropagationPrivate).await?;
    ensure!(
        !visible,
        "a host mount made after start is visible through a private bind mount"
    );
    ensure!(
        !fields.contains("shared:") && !fields.contains("master:"),
        "propagation fields of a private mount: expected none, got {fields:?}"
    );
    pass()
}

async fn propagation_rslave(ctx: Ctx) -> Result<Outcome> {
    let (visible, fields) =
        propagation_probe(&ctx, cri::MountPropagation::PropagationHostToContainer).await?;
    ensure!(
        visible,
        "a host mount made after start is not visible through an rslave bind mount"
    );
    ensure_contains("propagation fields of an rslave mount", &fields, "master:")?;
    pass()
}

async fn propagation_rshared(ctx: Ctx) -> Result<Outcome> {
    let (visible, fields) =
        propagation_probe(&ctx, cri::MountPropagation::PropagationBidirectional).await?;
    ensure!(
        visible,
        "a host mount made after start is not visible through an rshared bind mount"
    );
    ensure_contains("propagation fields of an rshared mount", &fields, "shared:")?;
    pass()
}

async fn missing_host_path(ctx: Ctx) -> Result<Outcome> {
    let missing = ctx.dir("missing")?.join("does-not-exist");
    let sandbox = ctx.sandbox().await?;
    // kubelet and dockershim behaviour, kept by containerd: a missing host path becomes an
    // empty directory instead of failing the container.
    let container = sleeper_with(
        &ctx,
        &sandbox,
        vec![bind(
            &missing,
            false,
            cri::MountPropagation::PropagationPrivate,
        )],
    )
    .await?;
    ensure!(
        missing.is_dir(),
        "the missing host path {} was not created as a directory",
        missing.display()
    );
    let listing = ctx
        .sh(&container.id, &format!("ls -A {IN_CONTAINER}"))
        .await?;
    ensure_eq!(listing, "", "content of the created mount");
    pass()
}

async fn recursive_read_only(ctx: Ctx) -> Result<Outcome> {
    let status = ctx.runtime_status().await?;
    let supported = status
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .and_then(|h| h.features.as_ref())
        .is_some_and(|f| f.recursive_read_only_mounts);
    if !supported {
        return Err(skip(
            "the default runtime handler does not report recursive_read_only_mounts",
        ));
    }
    let dir = ctx.dir("rro")?;
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub)?;
    host::mount_tmpfs(&sub)?;
    ctx.track_mount(&sub);
    let sandbox = ctx.sandbox().await?;
    let mut mount = bind(&dir, true, cri::MountPropagation::PropagationPrivate);
    mount.recursive_read_only = true;
    let container = sleeper_with(&ctx, &sandbox, vec![mount]).await?;
    let response = ctx
        .exec(
            &container.id,
            &["sh", "-c", &format!("echo x > {IN_CONTAINER}/sub/new")],
        )
        .await?;
    ensure!(
        response.exit_code != 0,
        "writing into a submount of a recursive read-only mount succeeded"
    );
    pass()
}

fn device(host_path: &str, container_path: &str, permissions: &str) -> cri::Device {
    cri::Device {
        container_path: container_path.into(),
        host_path: host_path.into(),
        permissions: permissions.into(),
    }
}

async fn device_rwm(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sleep", "3600"]);
    config.devices = vec![device("/dev/zero", "/dev/conformance-zero", "rwm")];
    let container = ctx.running_container(&sandbox, config).await?;
    ensure_eq!(
        ctx.sh(&container.id, "[ -c /dev/conformance-zero ] && echo char")
            .await?,
        "char",
        "/dev/conformance-zero is a character device"
    );
    let bytes = ctx
        .sh(
            &container.id,
            "head -c 4 /dev/conformance-zero | od -An -tx1",
        )
        .await?;
    ensure_eq!(
        bytes.split_whitespace().collect::<Vec<_>>(),
        vec!["00"; 4],
        "bytes read from the device"
    );
    ctx.sh(&container.id, "echo x > /dev/conformance-zero")
        .await?;
    pass()
}

/// `/dev/kmsg` is not among the devices runtimes allow by default, so the device cgroup
/// rule of the config alone decides whether it can be opened for writing.
const RULED_DEVICE: &str = "/dev/kmsg";

/// Whether `: > /dev/conformance-kmsg` (open for writing, write nothing) succeeds in a
/// container granted `permissions` on the device.
async fn opens_for_writing(
    ctx: &Ctx,
    sandbox: &Sandbox,
    permissions: &str,
) -> Result<(bool, String)> {
    let mut config = ctx.container_config(sandbox, &["sleep", "3600"]);
    config.devices = vec![device(RULED_DEVICE, "/dev/conformance-kmsg", permissions)];
    let container = ctx.running_container(sandbox, config).await?;
    ctx.sh(&container.id, "[ -c /dev/conformance-kmsg ]")
        .await?;
    let response = ctx
        .exec(&container.id, &["sh", "-c", ": > /dev/conformance-kmsg"])
        .await?;
    Ok((
        response.exit_code == 0,
        String::from_utf8_lossy(&response.stderr).into_owned(),
    ))
}

async fn device_read_only(ctx: Ctx) -> Result<Outcome> {
    if !Path::new(RULED_DEVICE).exists() {
        return Err(skip(format!("the node has no {RULED_DEVICE}")));
    }
    let sandbox = ctx.sandbox().await?;
    let (writable, stderr) = opens_for_writing(&ctx, &sandbox, "rw").await?;
    ensure!(
        writable,
        "opening a device granted \"rw\" for writing failed: {stderr}"
    );
    let (writable, stderr) = opens_for_writing(&ctx, &sandbox, "r").await?;
    ensure!(
        !writable,
        "opening a device granted \"r\" for writing succeeded"
    );
    ensure_contains(
        "stderr of the refused open",
        &stderr,
        "Operation not permitted",
    )?;
    pass()
}
