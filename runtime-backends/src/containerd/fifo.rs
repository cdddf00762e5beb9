//! FIFOs that carry a task's stdio between containerd's shim and crius.
//!
//! crius creates the FIFOs and holds their read ends; the shim opens the write ends when it
//! creates the process. A FIFO read end sees EOF whenever no writer is open, so while the
//! task is being created crius holds a writer of its own ("keeper") that it drops once the
//! shim has opened its side. After a crius restart the shim still holds the write ends and
//! crius simply opens new read ends.

use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use tokio::net::unix::pipe;

use crate::{BackendError, Result, TaskIo};

#[derive(Clone)]
pub(crate) struct FifoSet {
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl FifoSet {
    /// The stdin path as containerd takes it: empty for none.
    pub fn stdin_arg(&self) -> String {
        self.stdin
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

pub(crate) struct OpenFifos {
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    /// Writers that keep the read ends from seeing EOF before the shim connects.
    keepers: Vec<pipe::Sender>,
    /// The stdin read end kept open until the shim opened it (a FIFO writer cannot be
    /// opened without a reader).
    stdin_keeper: Option<pipe::Receiver>,
}

impl OpenFifos {
    /// The shim opened its ends: stop holding ours.
    pub fn release_keepers(&mut self) {
        self.keepers.clear();
        self.stdin_keeper = None;
    }

    pub fn into_task_io(self) -> TaskIo {
        TaskIo {
            stdout: Box::pin(self.stdout),
            stderr: Box::pin(self.stderr),
        }
    }
}

pub(crate) fn paths(io_dir: &Path, prefix: &str, stdin: bool) -> FifoSet {
    FifoSet {
        stdin: stdin.then(|| io_dir.join(format!("{prefix}stdin"))),
        stdout: io_dir.join(format!("{prefix}stdout")),
        stderr: io_dir.join(format!("{prefix}stderr")),
    }
}

fn make_fifo(path: &Path) -> Result<()> {
    match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(errno) => Err(BackendError::io(
            format!("creating FIFO {}", path.display()),
            std::io::Error::from(errno),
        )),
    }
}

fn open_reader(path: &Path) -> Result<pipe::Receiver> {
    pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|e| BackendError::io(format!("opening FIFO {}", path.display()), e))
}

fn open_writer(path: &Path) -> Result<pipe::Sender> {
    pipe::OpenOptions::new()
        .open_sender(path)
        .map_err(|e| BackendError::io(format!("opening FIFO {}", path.display()), e))
}

/// Create the FIFOs and open crius's ends, ready for the shim to connect.
pub(crate) fn create(set: &FifoSet) -> Result<OpenFifos> {
    let dir = set.stdout.parent().unwrap_or_else(|| Path::new("/"));
    std::fs::create_dir_all(dir)
        .map_err(|e| BackendError::io(format!("creating {}", dir.display()), e))?;
    make_fifo(&set.stdout)?;
    make_fifo(&set.stderr)?;
    let stdout = open_reader(&set.stdout)?;
    let stderr = open_reader(&set.stderr)?;
    let keepers = vec![open_writer(&set.stdout)?, open_writer(&set.stderr)?];
    let (stdin, stdin_keeper) = match &set.stdin {
        Some(path) => {
            make_fifo(path)?;
            let keeper = open_reader(path)?;
            (Some(open_writer(path)?), Some(keeper))
        }
        None => (None, None),
    };
    Ok(OpenFifos {
        stdin,
        stdout,
        stderr,
        keepers,
        stdin_keeper,
    })
}

/// Re-open the output FIFOs of a task that outlived crius.
pub(crate) fn reopen_task_io(_id: &str, io_dir: &Path) -> Result<Option<TaskIo>> {
    let set = paths(io_dir, "", false);
    if !set.stdout.exists() || !set.stderr.exists() {
        return Ok(None);
    }
    Ok(Some(TaskIo {
        stdout: Box::pin(open_reader(&set.stdout)?),
        stderr: Box::pin(open_reader(&set.stderr)?),
    }))
}

/// A writer on the stdin FIFO of a running task's init process (the shim reads it).
pub(crate) fn open_init_stdin(io_dir: &Path) -> Result<pipe::Sender> {
    let set = paths(io_dir, "", true);
    match &set.stdin {
        Some(path) if path.exists() => open_writer(path),
        _ => Err(BackendError::FailedPrecondition(format!(
            "the container's stdin is not open (no FIFO in {})",
            io_dir.display()
        ))),
    }
}

/// Remove the FIFOs of a finished process.
pub(crate) fn remove(set: &FifoSet) {
    for path in [Some(&set.stdout), Some(&set.stderr), set.stdin.as_ref()]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_file(path);
    }
}
