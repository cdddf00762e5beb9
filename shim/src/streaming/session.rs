//! Exec and attach sessions in terms of byte channels, whatever wire carries them.
//!
//! A wire (SPDY or WebSocket) hands a session the client's stdin as a queue of chunks whose
//! end is the client's half-close, bounded queues for stdout and stderr, terminal sizes, and
//! a token cancelled when the client is gone. The session returns once every output chunk is
//! queued, so the wire can flush them and then write the status.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cri_api::v1 as cri;
use runtime_backends::{BoxedReader, BoxedWriter, ExecRequest, ProcessId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::status::Ended;
use crate::logs::Stream;
use crate::runtime::Crius;
use crate::store::ContainerState;

/// Size of one output read (and so of one chunk on the wire).
const OUTPUT_CHUNK: usize = 32 * 1024;

/// After the process exited, how long its output may take to close (a child that keeps the
/// pipe open must not hold the session forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// The client's side of a session.
pub struct Channels {
    /// Chunks the client typed; the queue's end is the client closing stdin.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
    /// Cancelled when the client disconnects.
    pub gone: CancellationToken,
}

/// Runs `request`'s command with the client's streams; ends when the process exited and its
/// output was queued, or when the client left (the process is then killed).
pub async fn exec(crius: &Arc<Crius>, request: &cri::ExecRequest, channels: Channels) -> Ended {
    ended(
        "exec",
        &request.container_id,
        exec_inner(crius, request, channels).await,
    )
}

/// A session's end; one that could not run is logged (the client gets the reason too).
fn ended(what: &str, container: &str, result: crate::error::Result<Ended>) -> Ended {
    result.unwrap_or_else(|e| {
        tracing::warn!(container, error = %e, "{what} session failed");
        Ended::Failed(e.to_string())
    })
}

async fn exec_inner(
    crius: &Arc<Crius>,
    request: &cri::ExecRequest,
    channels: Channels,
) -> crate::error::Result<Ended> {
    let container = crius.container(&request.container_id)?;
    if container.status().state != ContainerState::Running {
        return Err(crate::error::Error::FailedPrecondition(format!(
            "container {:?} is not running; cannot exec in it",
            container.meta.id
        )));
    }
    let process = crate::container::spec::exec_process(
        &container.meta.process,
        request.cmd.clone(),
        request.tty,
    )?;
    let id = container.meta.id.clone();
    let exec_id = format!("exec-{:016x}", rand::random::<u64>());
    let process_id = ProcessId::Exec(exec_id.clone());
    let io = crius
        .backend
        .exec(ExecRequest {
            container_id: id.clone(),
            exec_id: exec_id.clone(),
            process,
            stdin: channels.stdin.is_some(),
            terminal: request.tty,
            io_dir: crius.container_io_dir(&id),
        })
        .await?;
    tracing::debug!(container = %id, %exec_id, tty = request.tty, "exec session started");
    let Channels {
        stdin,
        stdout,
        stderr,
        resize,
        gone,
    } = channels;
    let stdout_pump = tokio::spawn(pump_output(io.stdout, stdout));
    let stderr_pump = tokio::spawn(pump_output(io.stderr, stderr));
    let stdin_pump = match (stdin, io.stdin) {
        (Some(queue), Some(writer)) => Some(tokio::spawn(pump_stdin(
            crius.clone(),
            id.clone(),
            process_id.clone(),
            queue,
            writer,
            !request.tty,
        ))),
        _ => None,
    };
    let resize_pump = resize.map(|queue| {
        tokio::spawn(pump_resize(
            crius.clone(),
            id.clone(),
            process_id.clone(),
            queue,
        ))
    });
    let waited = tokio::select! {
        exit = crius.backend.wait(&id, &process_id) => Some(exit),
        () = gone.cancelled() => None,
    };
    let ended = match waited {
        Some(exit) => {
            let exit = exit?;
            // All output queued before the status: the pumps end at the pipes' EOF.
            for pump in [stdout_pump, stderr_pump] {
                if tokio::time::timeout(OUTPUT_DRAIN, pump).await.is_err() {
                    tracing::warn!(container = %id, %exec_id, "exec output still open {OUTPUT_DRAIN:?} after the process exited; ending the session");
                }
            }
            Ended::Exited(i32::try_from(exit.exit_code).unwrap_or(i32::MAX))
        }
        None => {
            // The client left: nobody reads the output any more, so the process goes.
            tracing::info!(container = %id, %exec_id, "exec client disconnected; killing its process");
            if let Err(e) = crius
                .backend
                .kill_exec(&id, &exec_id, libc::SIGKILL as u32)
                .await
            {
                tracing::warn!(container = %id, %exec_id, error = %e, "killing an abandoned exec");
            }
            let _ = tokio::time::timeout(OUTPUT_DRAIN, crius.backend.wait(&id, &process_id)).await;
            stdout_pump.abort();
            stderr_pump.abort();
            Ended::Failed("the client disconnected".to_string())
        }
    };
    for pump in [stdin_pump, resize_pump].into_iter().flatten() {
        pump.abort();
    }
    if let Err(e) = crius.backend.delete_exec(&id, &exec_id).await {
        tracing::warn!(container = %id, %exec_id, error = %e, "removing a finished exec");
    }
    Ok(ended)
}

/// Copies a process's output into the client's queue (or drops it when the client did not
/// ask for that stream). Waiting on a full queue is the back-pressure: the process blocks on
/// its pipe instead of crius buffering.
async fn pump_output(mut reader: BoxedReader, queue: Option<mpsc::Sender<Bytes>>) {
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    let mut queue = queue;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(tx) = &queue {
            if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                // The client's side is gone; keep draining so the process is not blocked.
                queue = None;
            }
        }
    }
}

/// Copies the client's stdin to the process; at its end, with `close_at_end`, closes the
/// process's stdin (what was written is still read first).
///
/// An exec's terminal is never closed: closing it hangs the process up (SIGHUP) before it
/// has read what was typed last; a terminal's end of input is the ^D the client types. An
/// attached container's stdin closes only with `stdin_once`; otherwise it stays open for the
/// next attach.
async fn pump_stdin(
    crius: Arc<Crius>,
    id: String,
    process: ProcessId,
    mut queue: mpsc::Receiver<Bytes>,
    mut writer: BoxedWriter,
    close_at_end: bool,
) {
    while let Some(chunk) = queue.recv().await {
        if let Err(e) = writer.write_all(&chunk).await {
            tracing::debug!(container = %id, %process, error = %e, "writing stdin");
            return;
        }
    }
    let _ = writer.shutdown().await;
    drop(writer);
    if close_at_end {
        if let Err(e) = crius.backend.close_stdin(&id, &process).await {
            tracing::debug!(container = %id, %process, error = %e, "closing stdin");
        }
    }
}

async fn pump_resize(
    crius: Arc<Crius>,
    id: String,
    process: ProcessId,
    mut queue: mpsc::Receiver<TermSize>,
) {
    while let Some(size) = queue.recv().await {
        if let Err(e) = crius
            .backend
            .resize(&id, &process, size.width.into(), size.height.into())
            .await
        {
            tracing::debug!(container = %id, %process, error = %e, "resizing the terminal");
        }
    }
}

/// Attaches the client to a running container: its output as the log copier reads it, its
/// stdin (when it has one) and its terminal size. Ends when the container's output ends (it
/// exited) or the client leaves; with `stdin_once` the container's stdin is closed then.
pub async fn attach(crius: &Arc<Crius>, request: &cri::AttachRequest, channels: Channels) -> Ended {
    ended(
        "attach",
        &request.container_id,
        attach_inner(crius, request, channels).await,
    )
}

async fn attach_inner(
    crius: &Arc<Crius>,
    request: &cri::AttachRequest,
    channels: Channels,
) -> crate::error::Result<Ended> {
    let container = crius.container(&request.container_id)?;
    let id = container.meta.id.clone();
    let tap = container.tap.lock().ok().and_then(|slot| slot.clone());
    let Some((subscription, mut output)) = tap.as_ref().and_then(|tap| tap.subscribe()) else {
        return Err(crate::error::Error::FailedPrecondition(format!(
            "container {id:?} is not running; cannot attach to it"
        )));
    };
    let Channels {
        stdin,
        stdout,
        stderr,
        resize,
        gone,
    } = channels;
    let stdin_once = container.meta.config.stdin_once;
    let stdin_pump = match stdin {
        Some(queue) => {
            let writer = crius
                .backend
                .attach_stdin(&id, &crius.container_io_dir(&id))
                .await?;
            Some(tokio::spawn(pump_stdin(
                crius.clone(),
                id.clone(),
                ProcessId::Init,
                queue,
                writer,
                stdin_once,
            )))
        }
        None => None,
    };
    let resize_pump = resize.map(|queue| {
        tokio::spawn(pump_resize(
            crius.clone(),
            id.clone(),
            ProcessId::Init,
            queue,
        ))
    });
    let ended = loop {
        let chunk = tokio::select! {
            chunk = output.recv() => chunk,
            () = gone.cancelled() => break Ended::Failed("the client disconnected".to_string()),
        };
        let Some((stream, data)) = chunk else {
            break if tap.as_ref().is_some_and(|tap| tap.has_ended()) {
                Ended::Exited(0)
            } else {
                Ended::Failed(format!(
                    "the client fell {} chunks behind container {id:?}'s output and was detached",
                    crate::logs::TAP_QUEUE_CHUNKS
                ))
            };
        };
        // With a terminal everything the container prints is on stdout.
        let queue = match stream {
            Stream::Stdout => &stdout,
            Stream::Stderr => &stderr,
        };
        if let Some(tx) = queue {
            if tx.send(data).await.is_err() {
                break Ended::Failed("the client disconnected".to_string());
            }
        }
    };
    if let Some(tap) = &tap {
        tap.unsubscribe(subscription);
    }
    if let Some(pump) = resize_pump {
        pump.abort();
    }
    if let Some(pump) = stdin_pump {
        if stdin_once {
            // The session is over (the client left or the container exited): stdin closes.
            pump.abort();
            let _ = pump.await;
            if let Err(e) = crius.backend.close_stdin(&id, &ProcessId::Init).await {
                tracing::debug!(container = %id, error = %e, "closing stdin after the attach (stdin_once)");
            }
        } else {
            pump.abort();
        }
    }
    Ok(ended)
}
