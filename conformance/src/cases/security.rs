//! `[security]`: run-as user/group/username, supplemental groups, read-only rootfs,
//! capabilities, privileged, no_new_privs, masked/readonly paths, seccomp, AppArmor,
//! user namespaces and the supplemental groups policy.

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Security as G;
    vec![
        case!(G, "run_as_user sets the process uid", [CreateContainer, ExecSync], run_as_user),
        case!(G, "run_as_group sets the process gid", [CreateContainer, ExecSync], run_as_group),
        case!(G, "run_as_username resolves through the image's /etc/passwd", [CreateContainer, ExecSync], run_as_username),
        case!(G, "the image's USER is the default user", [CreateContainer, ExecSync], image_user),
        case!(G, "run_as_user 0 overrides the image's USER", [CreateContainer, ExecSync], run_as_root_overrides),
        case!(G, "supplemental_groups are added to the process", [CreateContainer, ExecSync], supplemental_groups),
        case!(G, "run_as_user also gets the groups /etc/group gives that user", [CreateContainer, ExecSync], run_as_user_groups),
        case!(G, "the image's USER also gets the groups /etc/group gives it", [CreateContainer, ExecSync], image_groups)
            .reference_known_failure("containerd 1.6 looks supplementary groups up for run_as_user (uid 0 when unset), not for the image's USER"),
        case!(G, "a run_as_username the image does not know fails the container", [CreateContainer], unknown_username),
        case!(G, "run_as_group without run_as_user is refused", [CreateContainer], run_as_group_alone),
        case!(G, "a sandbox's run_as_group without run_as_user is refused", [RunPodSandbox], sandbox_run_as_group_alone),
        case!(G, "ContainerStatus.user reports the process identity", [ContainerStatus], status_user),
        case!(G, "supplemental_groups_policy Strict ignores the image's /etc/group", [CreateContainer, Status], groups_policy_strict),
        case!(G, "readonly_rootfs makes the root filesystem read-only", [CreateContainer, ExecSync], readonly_rootfs),
        case!(G, "the root filesystem is writable by default", [CreateContainer, ExecSync], writable_rootfs),
        case!(G, "the default capability set is the runtime default set", [CreateContainer, ExecSync], default_capabilities),
        case!(G, "add_capabilities adds NET_ADMIN", [CreateContainer, ExecSync], add_capability),
        case!(G, "drop_capabilities drops CHOWN and chown fails", [CreateContainer, ExecSync], drop_capability),
        case!(G, "dropping ALL leaves no capabilities", [CreateContainer, ExecSync], drop_all),
        case!(G, "dropping ALL and adding one leaves exactly that one", [CreateContainer, ExecSync], drop_all_add_one),
        case!(G, "a privileged container has every capability the node grants and the host devices", [CreateContainer, ExecSync], privileged),
        case!(G, "a privileged container in an unprivileged sandbox is refused", [CreateContainer], privileged_needs_privileged_sandbox),
        case!(G, "no_new_privs sets NoNewPrivs", [CreateContainer, ExecSync], no_new_privs),
        case!(G, "NoNewPrivs is off by default", [CreateContainer, ExecSync], no_new_privs_default),
        case!(G, "masked_paths hide their content", [CreateContainer, ExecSync], masked_paths),
        case!(G, "readonly_paths cannot be written", [CreateContainer, ExecSync], readonly_paths),
        case!(G, "seccomp RuntimeDefault blocks unshare", [CreateContainer, ExecSync], seccomp_runtime_default),
        case!(G, "seccomp Unconfined allows unshare", [CreateContainer, ExecSync], seccomp_unconfined),
        case!(G, "seccomp Localhost applies the profile file", [CreateContainer, ExecSync], seccomp_localhost),
        case!(G, "seccomp Localhost with a missing profile fails the container", [CreateContainer], seccomp_localhost_missing),
        case!(G, "AppArmor unconfined runs", [CreateContainer, StartContainer], apparmor_unconfined),
        case!(G, "AppArmor localhost/ with a profile that is not loaded is refused", [CreateContainer], apparmor_missing_refused),
        case!(G, "AppArmor: the refusal says the profile is not loaded", [CreateContainer], apparmor_missing_message)
            .reference_known_failure("containerd 1.6 on a host without AppArmor answers \"apparmor is not supported\""),
        case!(G, "a user namespace maps the pod's root to the given host ids", [RunPodSandbox, Status, ExecSync], user_namespace),
    ]
}

/// A running busybox (or `image`) container with `context` as its security context.
async fn with_context(
    ctx: &Ctx,
    image: Option<&str>,
    context: cri::LinuxContainerSecurityContext,
) -> Result<Container> {
    let sandbox = ctx.sandbox().await?;
    let config = config_with(ctx, &sandbox, image, context);
    ctx.running_container(&sandbox, config).await
}

fn config_with(
    ctx: &Ctx,
    sandbox: &Sandbox,
    image: Option<&str>,
    mut context: cri::LinuxContainerSecurityContext,
) -> cri::ContainerConfig {
    let mut config = ctx.container_config(sandbox, &["sleep", "3600"]);
    if let Some(image) = image {
        config.image = Some(image_spec(image));
    }
    context.namespace_options = sandbox.namespace_options();
    if let Some(linux) = config.linux.as_mut() {
        linux.security_context = Some(context);
    }
    config
}

fn id(value: i64) -> Option<cri::Int64Value> {
    Some(cri::Int64Value { value })
}

/// The `CapEff` mask of PID 1.
async fn effective_caps(ctx: &Ctx, container: &Container) -> Result<u64> {
    let line = ctx.sh(&container.id, "grep CapEff /proc/1/status").await?;
    let hex = line.split_whitespace().last().unwrap_or_default();
    u64::from_str_radix(hex, 16).with_context(|| format!("CapEff line {line:?}"))
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_SYS_ADMIN: u64 = 1 << 21;
/// CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
/// SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP: the default set of containerd, CRI-O and Docker.
const DEFAULT_CAPS: u64 = 0xa80425fb;

async fn run_as_user(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        run_as_user: id(1000),
        ..Default::default()
    };
    let container = with_context(&ctx, None, context).await?;
    ensure_eq!(ctx.sh(&container.id, "id -u").await?, "1000", "uid");
    let status = ctx
        .sh(&container.id, "grep -E '^(Uid|Gid):' /proc/1/status")
        .await?;
    ensure_contains("Uid line of PID 1", &status, "Uid:\t1000\t1000\t1000\t1000")?;
    pass()
}

async fn run_as_group(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        run_as_user: id(1000),
        run_as_group: id(2000),
        ..Default::default()
    };
    let container = with_context(&ctx, None, context).await?;
    ensure_eq!(
        ctx.sh(&container.id, "echo $(id -u) $(id -g)").await?,
        "1000 2000",
        "uid gid"
    );
    pass()
}

async fn run_as_username(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        run_as_username: images::USER_IMAGE_USERNAME.into(),
        ..Default::default()
    };
    let image = ctx.images().user.clone();
    let container = with_context(&ctx, Some(&image), context).await?;
    ensure_eq!(
        ctx.sh(&container.id, "echo $(id -u) $(id -g)").await?,
        format!("{} {}", images::USER_IMAGE_UID, images::USER_IMAGE_GID),
        "uid gid of the named user"
    );
    pass()
}

async fn image_user(ctx: Ctx) -> Result<Outcome> {
    let image = ctx.images().user.clone();
    let container = with_context(&ctx, Some(&image), Default::default()).await?;
    ensure_eq!(
        ctx.sh(&container.id, "echo $(id -u) $(id -g)").await?,
        format!("{} {}", images::USER_IMAGE_UID, images::USER_IMAGE_GID),
        "uid gid from the image's USER"
    );
    pass()
}

async fn run_as_root_overrides(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        run_as_user: id(0),
        ..Default::default()
    };
    let image = ctx.images().user.clone();
    let container = with_context(&ctx, Some(&image), context).await?;
    ensure_eq!(ctx.sh(&container.id, "id -u").await?, "0", "uid");
    pass()
}

async fn groups_of(ctx: &Ctx, container: &Container) -> Result<Vec<i64>> {
    let line = ctx.sh(&container.id, "grep Groups /proc/1/status").await?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .filter_map(|g| g.parse().ok())
        .collect())
}

async fn supplemental_groups(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        run_as_user: id(1000),
        run_as_group: id(1000),
        supplemental_groups: vec![3001, 3002],
        ..Default::default()
    };
    let container = with_context(&ctx, None, context).await?;
    let groups = groups_of(&ctx, &container).await?;
    ensure!(
        groups.contains(&3001) && groups.contains(&3002),
        "supplementary groups of PID 1: expected 3001 and 3002, got {groups:?}"
    );
    pass()
}

async fn run_as_user_groups(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        run_as_user: id(images::USER_IMAGE_UID),
        ..Default::default()
    };
    let image = ctx.images().user.clone();
    let container = with_context(&ctx, Some(&image), context).await?;
    let groups = groups_of(&ctx, &container).await?;
    ensure!(
        groups.contains(&images::USER_IMAGE_EXTRA_GID),
        "supplementary groups of PID 1 running as uid {}: expected {} from the image's /etc/group, got {groups:?}",
        images::USER_IMAGE_UID,
        images::USER_IMAGE_EXTRA_GID
    );
    pass()
}

async fn image_groups(ctx: Ctx) -> Result<Outcome> {
    let image = ctx.images().user.clone();
    let container = with_context(&ctx, Some(&image), Default::default()).await?;
    let groups = groups_of(&ctx, &container).await?;
    ensure!(
        groups.contains(&images::USER_IMAGE_EXTRA_GID),
        "supplementary groups of PID 1: expected {} from the image's /etc/group, got {groups:?}",
        images::USER_IMAGE_EXTRA_GID
    );
    pass()
}

async fn unknown_username(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let context = cri::LinuxContainerSecurityContext {
        run_as_username: "no-such-user".into(),
        ..Default::default()
    };
    let image = ctx.images().user.clone();
    let config = config_with(&ctx, &sandbox, Some(&image), context);
    // The user is looked up in the image the request names: bad input.
    ensure_create_fails(
        &ctx,
        &sandbox,
        config,
        Code::InvalidArgument,
        &[Code::Unknown],
    )
    .await?;
    pass()
}

async fn run_as_group_alone(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let context = cri::LinuxContainerSecurityContext {
        run_as_group: id(2000),
        ..Default::default()
    };
    // An image with a USER of its own: the group must not be quietly paired with it.
    let image = ctx.images().user.clone();
    let config = config_with(&ctx, &sandbox, Some(&image), context);
    // api.proto: "run_as_group should only be specified when run_as_user or run_as_username
    // is specified; otherwise, the runtime MUST error." containerd 1.6 refuses it unclassified.
    let status = ensure_create_fails(
        &ctx,
        &sandbox,
        config,
        Code::InvalidArgument,
        &[Code::Unknown],
    )
    .await?;
    if !ctx.settings().reference {
        ensure_contains("the refusal", status.message(), "run_as_group")?;
    }
    pass()
}

async fn sandbox_run_as_group_alone(ctx: Ctx) -> Result<Outcome> {
    let mut config = ctx.sandbox_config()?;
    let linux = config.linux.get_or_insert_with(Default::default);
    linux
        .security_context
        .get_or_insert_with(Default::default)
        .run_as_group = id(2000);
    let request = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    };
    // api.proto (LinuxSandboxSecurityContext): "run_as_group should only be specified when
    // run_as_user is specified; otherwise, the runtime MUST error."
    let status = call_err("RunPodSandbox", ctx.rt().run_pod_sandbox(request)).await?;
    ensure_code_on(
        &ctx,
        "RunPodSandbox(run_as_group alone)",
        &status,
        Code::InvalidArgument,
        &[Code::Unknown],
    )?;
    if !ctx.settings().reference {
        ensure_contains("the refusal", status.message(), "run_as_group")?;
    }
    pass()
}

async fn status_user(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        run_as_user: id(1000),
        run_as_group: id(2000),
        supplemental_groups: vec![3001],
        ..Default::default()
    };
    let container = with_context(&ctx, None, context).await?;
    let status = ctx.container_status(&container.id).await?;
    let Some(linux) = status.user.and_then(|u| u.linux) else {
        return Err(skip(
            "the endpoint does not report ContainerStatus.user (CRI ≥ 1.31)",
        ));
    };
    ensure_eq!(
        (linux.uid, linux.gid),
        (1000, 2000),
        "ContainerStatus.user (uid, gid)"
    );
    ensure!(
        linux.supplemental_groups.contains(&3001),
        "ContainerStatus.user.supplemental_groups lacks 3001: {:?}",
        linux.supplemental_groups
    );
    pass()
}

async fn groups_policy_strict(ctx: Ctx) -> Result<Outcome> {
    let status = ctx.runtime_status().await?;
    if !status
        .features
        .is_some_and(|f| f.supplemental_groups_policy)
    {
        return Err(skip(
            "the endpoint does not report the supplemental_groups_policy feature",
        ));
    }
    let context = cri::LinuxContainerSecurityContext {
        supplemental_groups_policy: cri::SupplementalGroupsPolicy::Strict as i32,
        ..Default::default()
    };
    let image = ctx.images().user.clone();
    let container = with_context(&ctx, Some(&image), context).await?;
    let groups = groups_of(&ctx, &container).await?;
    ensure!(
        !groups.contains(&images::USER_IMAGE_EXTRA_GID),
        "with policy Strict the image's group {} was added: {groups:?}",
        images::USER_IMAGE_EXTRA_GID
    );
    pass()
}

async fn readonly_rootfs(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        readonly_rootfs: true,
        ..Default::default()
    };
    let container = with_context(&ctx, None, context).await?;
    let response = ctx.exec(&container.id, &["touch", "/conformance"]).await?;
    ensure!(
        response.exit_code != 0,
        "writing to a read-only root filesystem succeeded"
    );
    ensure_contains(
        "stderr of the refused write",
        &String::from_utf8_lossy(&response.stderr),
        "Read-only file system",
    )?;
    pass()
}

async fn writable_rootfs(ctx: Ctx) -> Result<Outcome> {
    let container = with_context(&ctx, None, Default::default()).await?;
    ctx.sh(&container.id, "touch /conformance && ls /conformance")
        .await?;
    pass()
}

async fn default_capabilities(ctx: Ctx) -> Result<Outcome> {
    let container = with_context(&ctx, None, Default::default()).await?;
    let caps = effective_caps(&ctx, &container).await?;
    ensure_eq!(
        format!("{caps:#x}"),
        format!("{DEFAULT_CAPS:#x}"),
        "CapEff of PID 1"
    );
    pass()
}

fn capabilities(add: &[&str], drop: &[&str]) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: strings(add),
            drop_capabilities: strings(drop),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn add_capability(ctx: Ctx) -> Result<Outcome> {
    let container = with_context(&ctx, None, capabilities(&["NET_ADMIN"], &[])).await?;
    let caps = effective_caps(&ctx, &container).await?;
    ensure_eq!(
        format!("{caps:#x}"),
        format!("{:#x}", DEFAULT_CAPS | CAP_NET_ADMIN),
        "CapEff of PID 1"
    );
    pass()
}

async fn drop_capability(ctx: Ctx) -> Result<Outcome> {
    let container = with_context(&ctx, None, capabilities(&[], &["CHOWN"])).await?;
    let caps = effective_caps(&ctx, &container).await?;
    ensure_eq!(
        format!("{caps:#x}"),
        format!("{:#x}", DEFAULT_CAPS & !CAP_CHOWN),
        "CapEff of PID 1"
    );
    let response = ctx
        .exec(
            &container.id,
            &["sh", "-c", "touch /tmp/owned && chown 1234 /tmp/owned"],
        )
        .await?;
    ensure!(response.exit_code != 0, "chown succeeded without CAP_CHOWN");
    pass()
}

async fn drop_all(ctx: Ctx) -> Result<Outcome> {
    let container = with_context(&ctx, None, capabilities(&[], &["ALL"])).await?;
    ensure_eq!(
        effective_caps(&ctx, &container).await?,
        0,
        "CapEff of PID 1"
    );
    pass()
}

async fn drop_all_add_one(ctx: Ctx) -> Result<Outcome> {
    let container = with_context(&ctx, None, capabilities(&["NET_BIND_SERVICE"], &["ALL"])).await?;
    ensure_eq!(
        effective_caps(&ctx, &container).await?,
        CAP_NET_BIND_SERVICE,
        "CapEff of PID 1"
    );
    pass()
}

fn privileged_sandbox_config(ctx: &Ctx) -> Result<cri::PodSandboxConfig> {
    let mut config = ctx.sandbox_config()?;
    if let Some(context) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        context.privileged = true;
    }
    Ok(config)
}

async fn privileged(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.run_sandbox(privileged_sandbox_config(&ctx)?).await?;
    let context = cri::LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    };
    let config = config_with(&ctx, &sandbox, None, context);
    let container = ctx.running_container(&sandbox, config).await?;
    let caps = effective_caps(&ctx, &container).await?;
    ensure!(
        caps & CAP_SYS_ADMIN != 0,
        "CapEff {caps:#x} of a privileged container lacks SYS_ADMIN"
    );
    // Every capability the node can grant (what this root process may hold).
    let bounding = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .context("no CapBnd in /proc/self/status")?;
    ensure_eq!(
        format!("{caps:#x}"),
        format!("{bounding:#x}"),
        "CapEff of a privileged container vs the node's bounding set"
    );
    if std::path::Path::new("/dev/kmsg").exists() {
        // Host devices are visible; /dev/kmsg is not among a default container's devices.
        ctx.sh(&container.id, "[ -c /dev/kmsg ]")
            .await
            .context("a privileged container does not see the host's /dev/kmsg")?;
    }
    pass()
}

async fn privileged_needs_privileged_sandbox(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let context = cri::LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    };
    let config = config_with(&ctx, &sandbox, None, context);
    // The request contradicts the sandbox config it carries: bad input.
    ensure_create_fails(
        &ctx,
        &sandbox,
        config,
        Code::InvalidArgument,
        &[Code::Unknown],
    )
    .await?;
    pass()
}

async fn no_new_privs_value(
    ctx: &Ctx,
    context: cri::LinuxContainerSecurityContext,
) -> Result<String> {
    let container = with_context(ctx, None, context).await?;
    let line = ctx
        .sh(&container.id, "grep NoNewPrivs /proc/1/status")
        .await?;
    Ok(line
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned())
}

async fn no_new_privs(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        no_new_privs: true,
        ..Default::default()
    };
    ensure_eq!(
        no_new_privs_value(&ctx, context).await?,
        "1",
        "NoNewPrivs of PID 1"
    );
    pass()
}

async fn no_new_privs_default(ctx: Ctx) -> Result<Outcome> {
    ensure_eq!(
        no_new_privs_value(&ctx, Default::default()).await?,
        "0",
        "NoNewPrivs of PID 1"
    );
    pass()
}

async fn masked_paths(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        masked_paths: strings(&["/proc/version", "/etc/conformance-masked"]),
        ..Default::default()
    };
    let container = with_context(&ctx, None, context).await?;
    ensure_eq!(
        ctx.sh(&container.id, "cat /proc/version").await?,
        "",
        "content of masked /proc/version"
    );
    pass()
}

async fn readonly_paths(ctx: Ctx) -> Result<Outcome> {
    let context = cri::LinuxContainerSecurityContext {
        readonly_paths: strings(&["/tmp"]),
        ..Default::default()
    };
    let container = with_context(&ctx, None, context).await?;
    let response = ctx
        .exec(&container.id, &["touch", "/tmp/conformance"])
        .await?;
    ensure!(
        response.exit_code != 0,
        "writing below a readonly path succeeded"
    );
    ctx.sh(&container.id, "touch /conformance").await?;
    pass()
}

fn seccomp(
    profile_type: cri::security_profile::ProfileType,
    localhost_ref: &str,
) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: profile_type as i32,
            localhost_ref: localhost_ref.into(),
        }),
        ..Default::default()
    }
}

/// Runs `unshare -U true` (a new user namespace; no capability needed, but RuntimeDefault
/// denies unshare without CAP_SYS_ADMIN) and returns its exit code.
async fn unshare_exit(
    ctx: &Ctx,
    context: cri::LinuxContainerSecurityContext,
) -> Result<(i32, String)> {
    let container = with_context(ctx, None, context).await?;
    let response = ctx.exec(&container.id, &["unshare", "-U", "true"]).await?;
    Ok((
        response.exit_code,
        String::from_utf8_lossy(&response.stderr).into_owned(),
    ))
}

async fn seccomp_runtime_default(ctx: Ctx) -> Result<Outcome> {
    let (code, stderr) = unshare_exit(
        &ctx,
        seccomp(cri::security_profile::ProfileType::RuntimeDefault, ""),
    )
    .await?;
    ensure!(
        code != 0,
        "`unshare -U true` succeeded under seccomp RuntimeDefault"
    );
    ensure_contains(
        "stderr of the blocked unshare",
        &stderr,
        "Operation not permitted",
    )?;
    pass()
}

async fn seccomp_unconfined(ctx: Ctx) -> Result<Outcome> {
    let (code, stderr) = unshare_exit(
        &ctx,
        seccomp(cri::security_profile::ProfileType::Unconfined, ""),
    )
    .await?;
    ensure_eq!(
        code,
        0,
        "exit code of `unshare -U true` under seccomp Unconfined (stderr {stderr:?})"
    );
    pass()
}

async fn seccomp_localhost(ctx: Ctx) -> Result<Outcome> {
    let dir = ctx.dir("seccomp")?;
    let profile = dir.join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )?;
    let context = seccomp(
        cri::security_profile::ProfileType::Localhost,
        &profile.to_string_lossy(),
    );
    let container = with_context(&ctx, None, context).await?;
    let response = ctx.exec(&container.id, &["mkdir", "/tmp/denied"]).await?;
    ensure!(
        response.exit_code != 0,
        "mkdir succeeded under a Localhost profile that denies it"
    );
    ctx.sh(&container.id, "touch /tmp/allowed").await?;
    pass()
}

async fn seccomp_localhost_missing(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let missing = ctx.dir("seccomp")?.join("missing.json");
    let context = seccomp(
        cri::security_profile::ProfileType::Localhost,
        &missing.to_string_lossy(),
    );
    let config = config_with(&ctx, &sandbox, None, context);
    // The profile path is part of the request and names nothing readable: bad input.
    ensure_create_fails(
        &ctx,
        &sandbox,
        config,
        Code::InvalidArgument,
        &[Code::Unknown],
    )
    .await?;
    pass()
}

fn apparmor(
    profile_type: cri::security_profile::ProfileType,
    localhost_ref: &str,
) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext {
        apparmor: Some(cri::SecurityProfile {
            profile_type: profile_type as i32,
            localhost_ref: localhost_ref.into(),
        }),
        ..Default::default()
    }
}

async fn apparmor_unconfined(ctx: Ctx) -> Result<Outcome> {
    let container = with_context(
        &ctx,
        None,
        apparmor(cri::security_profile::ProfileType::Unconfined, ""),
    )
    .await?;
    ensure_eq!(
        ctx.sh(&container.id, "echo ok").await?,
        "ok",
        "exec in an AppArmor-unconfined container"
    );
    pass()
}

const MISSING_PROFILE: &str = "crius-conformance-not-loaded";

async fn apparmor_missing_error(ctx: &Ctx) -> Result<String> {
    let sandbox = ctx.sandbox().await?;
    let context = apparmor(
        cri::security_profile::ProfileType::Localhost,
        MISSING_PROFILE,
    );
    let config = config_with(ctx, &sandbox, None, context);
    // A well-formed request the node cannot honour until the profile is loaded.
    ensure_create_fails(
        ctx,
        &sandbox,
        config,
        Code::FailedPrecondition,
        &[Code::Unknown],
    )
    .await
    .map(|status| status.message().to_owned())
}

async fn apparmor_missing_refused(ctx: Ctx) -> Result<Outcome> {
    apparmor_missing_error(&ctx).await?;
    pass()
}

async fn apparmor_missing_message(ctx: Ctx) -> Result<Outcome> {
    let message = apparmor_missing_error(&ctx).await?;
    // kubelet shows this message on the pod.
    ensure_contains(
        "the refusal",
        &message,
        &format!("Cannot enforce AppArmor: profile \"{MISSING_PROFILE}\" is not loaded"),
    )?;
    pass()
}

async fn user_namespace(ctx: Ctx) -> Result<Outcome> {
    let status = ctx.runtime_status().await?;
    let supported = status
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .and_then(|h| h.features.as_ref())
        .is_some_and(|f| f.user_namespaces);
    if !supported {
        return Err(skip(
            "the default runtime handler does not report user_namespaces",
        ));
    }
    let mapping = cri::IdMapping {
        host_id: 200_000,
        container_id: 0,
        length: 65_536,
    };
    let mut config = ctx.sandbox_config()?;
    if let Some(options) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        options.userns_options = Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![mapping],
            gids: vec![mapping],
        });
    }
    let sandbox = ctx.run_sandbox(config).await?;
    let container = ctx.sleeper(&sandbox).await?;
    let uid_map = ctx.sh(&container.id, "cat /proc/self/uid_map").await?;
    ensure_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "200000", "65536"],
        "uid_map in the container"
    );
    pass()
}
