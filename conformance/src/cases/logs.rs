//! `[container]` logs: the CRI log format on both streams, long lines split P…F, TTY output,
//! complete output of short-lived containers, rotation with ReopenContainerLog, and the new
//! file of a restarted container (attempt 1).

use std::path::Path;

use super::prelude::*;

pub fn cases() -> Vec<Case> {
    use Group::Container as G;
    vec![
        case!(
            G,
            "log lines are `<RFC3339Nano> <stream> <P|F> <text>` for stdout and stderr",
            [CreateContainer, StartContainer],
            log_format
        ),
        case!(
            G,
            "the log is a regular file kubelet can rotate",
            [CreateContainer, StartContainer],
            log_regular_file
        ),
        case!(
            G,
            "a long line is logged as P records ending with an F record",
            [CreateContainer, StartContainer],
            log_long_line
        ),
        case!(
            G,
            "empty lines are logged as empty F records",
            [CreateContainer, StartContainer],
            log_empty_lines
        ),
        case!(
            G,
            "all output of a short-lived container is logged when it has exited",
            [CreateContainer, StartContainer],
            log_complete
        ),
        case!(
            G,
            "output without a final newline is logged when the container exits",
            [CreateContainer, StartContainer],
            log_unterminated
        ),
        case!(
            G,
            "a TTY container logs everything as stdout",
            [CreateContainer, StartContainer],
            log_tty
        ),
        case!(
            G,
            "ReopenContainerLog: after the log is renamed, output goes to a new file",
            [ReopenContainerLog],
            reopen_log
        ),
        case!(
            G,
            "ReopenContainerLog of an exited container fails and makes no new log file",
            [ReopenContainerLog],
            reopen_exited
        ),
        case!(
            G,
            "a restarted container (attempt 1) logs to a new file and the old one is kept",
            [CreateContainer, StartContainer],
            log_restart_attempt
        ),
    ]
}

async fn exited_log(
    ctx: &Ctx,
    config: cri::ContainerConfig,
    sandbox: &Sandbox,
    done: impl Fn(&[LogRecord]) -> bool,
) -> Result<Vec<LogRecord>> {
    let (container, _) = ctx.run_to_exit(sandbox, config).await?;
    ctx.wait_log(&container.log_path, Duration::from_secs(10), done)
        .await
}

async fn log_format(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(
        &sandbox,
        &[
            "sh",
            "-c",
            "echo out-1; echo err-1 >&2; sleep 0.2; echo out-2; echo 'err 2' >&2",
        ],
    );
    let records = exited_log(&ctx, config, &sandbox, |r| r.len() >= 4).await?;
    ensure_eq!(
        logs::stream_lines(&records, Stream::Stdout),
        vec!["out-1", "out-2"],
        "stdout lines"
    );
    ensure_eq!(
        logs::stream_lines(&records, Stream::Stderr),
        vec!["err-1", "err 2"],
        "stderr lines"
    );
    ensure!(
        records.iter().all(|r| !r.partial),
        "short lines were logged as partial: {records:?}"
    );
    for stream in [Stream::Stdout, Stream::Stderr] {
        let times: Vec<_> = records
            .iter()
            .filter(|r| r.stream == stream)
            .map(|r| r.time)
            .collect();
        ensure!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{stream:?} timestamps go backwards: {times:?}"
        );
    }
    let now = chrono::Utc::now();
    for record in &records {
        let age = now.signed_duration_since(record.time);
        ensure!(
            age >= chrono::Duration::zero() - chrono::Duration::seconds(5)
                && age < chrono::Duration::seconds(120),
            "log timestamp {} is not the time the line was written (now {now})",
            record.time
        );
    }
    pass()
}

async fn log_regular_file(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["sh", "-c", "echo hello"]);
    let (container, _) = ctx.run_to_exit(&sandbox, config).await?;
    ctx.wait_log(&container.log_path, Duration::from_secs(10), |r| {
        !r.is_empty()
    })
    .await?;
    let metadata = std::fs::symlink_metadata(&container.log_path)
        .with_context(|| format!("{}", container.log_path.display()))?;
    ensure!(
        metadata.file_type().is_file(),
        "{} is not a regular file: {:?}",
        container.log_path.display(),
        metadata.file_type()
    );
    pass()
}

async fn log_long_line(ctx: Ctx) -> Result<Outcome> {
    const LEN: usize = 40_000;
    let sandbox = ctx.sandbox().await?;
    let script = format!("head -c {LEN} /dev/zero | tr '\\0' a; echo; echo after");
    let config = ctx.container_config(&sandbox, &["sh", "-c", &script]);
    let records = exited_log(&ctx, config, &sandbox, |r| {
        logs::stream_lines(r, Stream::Stdout).len() >= 2
    })
    .await?;
    let lines = logs::stream_lines(&records, Stream::Stdout);
    ensure_eq!(lines.len(), 2, "complete stdout lines");
    ensure_eq!(lines[0].len(), LEN, "length of the reassembled long line");
    ensure!(
        lines[0].bytes().all(|b| b == b'a'),
        "the reassembled long line holds bytes other than 'a'"
    );
    ensure_eq!(lines[1], "after", "the line after the long one");
    let long: Vec<&LogRecord> = records.iter().take_while(|r| r.text != "after").collect();
    ensure!(
        long.len() >= 2,
        "a {LEN}-byte line was logged as {} record(s)",
        long.len()
    );
    ensure!(
        long[..long.len() - 1].iter().all(|r| r.partial),
        "records before the last piece of the long line must be P"
    );
    ensure!(
        long.last().is_some_and(|r| !r.partial),
        "the last piece of the long line must be F"
    );
    pass()
}

async fn log_empty_lines(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["sh", "-c", "echo; echo x; echo"]);
    let records = exited_log(&ctx, config, &sandbox, |r| r.len() >= 3).await?;
    ensure_eq!(
        logs::stream_lines(&records, Stream::Stdout),
        vec!["", "x", ""],
        "stdout lines"
    );
    pass()
}

async fn log_complete(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["seq", "1", "2000"]);
    let records = exited_log(&ctx, config, &sandbox, |r| r.len() >= 2000).await?;
    let expected: Vec<String> = (1..=2000).map(|n| n.to_string()).collect();
    ensure_eq!(
        logs::stream_lines(&records, Stream::Stdout),
        expected,
        "stdout lines of `seq 1 2000`"
    );
    pass()
}

async fn log_unterminated(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let config = ctx.container_config(&sandbox, &["sh", "-c", "echo first; printf no-newline"]);
    let records = exited_log(&ctx, config, &sandbox, |r| r.len() >= 2).await?;
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    ensure_eq!(texts, vec!["first", "no-newline"], "logged texts");
    pass()
}

async fn log_tty(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let mut config = ctx.container_config(&sandbox, &["sh", "-c", "echo to-out; echo to-err >&2"]);
    config.tty = true;
    let records = exited_log(&ctx, config, &sandbox, |r| r.len() >= 2).await?;
    ensure!(
        records.iter().all(|r| r.stream == Stream::Stdout),
        "a TTY container logged on stderr: {records:?}"
    );
    let lines: Vec<String> = logs::stream_lines(&records, Stream::Stdout)
        .into_iter()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    ensure_eq!(lines, vec!["to-out", "to-err"], "TTY output lines");
    pass()
}

fn rotated(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    name.into()
}

async fn reopen_log(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let script = "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done";
    let container = ctx
        .running_container(
            &sandbox,
            ctx.container_config(&sandbox, &["sh", "-c", script]),
        )
        .await?;
    ctx.wait_log(&container.log_path, Duration::from_secs(10), |r| {
        r.len() >= 3
    })
    .await?;
    // What kubelet's log rotation does: rename, then ask the runtime to reopen.
    let old = rotated(&container.log_path);
    std::fs::rename(&container.log_path, &old)?;
    let request = cri::ReopenContainerLogRequest {
        container_id: container.id.clone(),
    };
    call("ReopenContainerLog", ctx.rt().reopen_container_log(request)).await?;
    let fresh = ctx
        .wait_log(&container.log_path, Duration::from_secs(10), |r| {
            r.len() >= 3
        })
        .await?;
    let rotated_records =
        logs::parse_log(&std::fs::read_to_string(&old)?).context("the rotated log file")?;
    let last_old = rotated_records
        .last()
        .map(|r| r.text.clone())
        .unwrap_or_default();
    let first_new = fresh.first().map(|r| r.text.clone()).unwrap_or_default();
    let number = |s: &str| s.strip_prefix("line-").and_then(|n| n.parse::<u64>().ok());
    ensure!(
        matches!((number(&last_old), number(&first_new)), (Some(a), Some(b)) if b > a),
        "the new file must continue after the rotated one: last rotated {last_old:?}, first new {first_new:?}"
    );
    pass()
}

async fn reopen_exited(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let (container, _) = ctx
        .run_to_exit(&sandbox, ctx.container_config(&sandbox, &["true"]))
        .await?;
    // kubelet's rotation renames the file first; a failed reopen must not make a new one.
    let log_path = Path::new(&container.log_path);
    if log_path.exists() {
        std::fs::rename(log_path, rotated(log_path))?;
    }
    let request = cri::ReopenContainerLogRequest {
        container_id: container.id.clone(),
    };
    let status = call_err("ReopenContainerLog", ctx.rt().reopen_container_log(request)).await?;
    // CRI: reopening needs a running container: a wrong state.
    ensure_code_on(
        &ctx,
        "ReopenContainerLog(exited)",
        &status,
        Code::FailedPrecondition,
        &[Code::Unknown],
    )?;
    // api.proto: "If reopening the container log failed, no new log file MUST be created."
    ensure!(
        !log_path.exists(),
        "a failed ReopenContainerLog created {}",
        log_path.display()
    );
    pass()
}

async fn log_restart_attempt(ctx: Ctx) -> Result<Outcome> {
    let sandbox = ctx.sandbox().await?;
    let first = ctx.container_config(&sandbox, &["echo", "attempt-0"]);
    let (first_container, _) = ctx.run_to_exit(&sandbox, first.clone()).await?;
    ctx.wait_log(&first_container.log_path, Duration::from_secs(10), |r| {
        !r.is_empty()
    })
    .await?;
    // kubelet restarts a container as a new one with attempt + 1 and log `<name>/<attempt>.log`.
    let mut second = first;
    second.command = strings(&["echo", "attempt-1"]);
    if let Some(metadata) = second.metadata.as_mut() {
        metadata.attempt = 1;
    }
    second.log_path = second.log_path.replace("/0.log", "/1.log");
    let (second_container, _) = ctx.run_to_exit(&sandbox, second).await?;
    ensure!(
        second_container.log_path != first_container.log_path,
        "both attempts share a log path"
    );
    let new = ctx
        .wait_log(&second_container.log_path, Duration::from_secs(10), |r| {
            !r.is_empty()
        })
        .await?;
    ensure_eq!(
        logs::stream_lines(&new, Stream::Stdout),
        vec!["attempt-1"],
        "log of attempt 1"
    );
    let old = logs::parse_log(&std::fs::read_to_string(&first_container.log_path)?)?;
    ensure_eq!(
        logs::stream_lines(&old, Stream::Stdout),
        vec!["attempt-0"],
        "log of attempt 0 after the restart"
    );
    pass()
}
