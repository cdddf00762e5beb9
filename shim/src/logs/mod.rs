//! Container logs in the CRI format (DESIGN.md decision 7).
//!
//! crius, not the backend, reads container stdout/stderr and writes the file kubelet named in
//! `log_path`, one line per record:
//!
//! ```text
//! 2026-11-23T19:03:56.123456789Z stdout F hello world
//! ```
//!
//! The split rules follow containerd's CRI logger so that kubelet, `kubectl logs` and log
//! shippers see the same records from crius as from containerd:
//! - a line ends at `\n`; a `\r` right before it is dropped, any other `\r` is kept;
//! - content longer than [`MAX_LINE_BYTES`] is cut into `P` records of exactly that size,
//!   and the rest of the line (possibly exactly [`MAX_LINE_BYTES`] long) is the `F` record;
//! - an empty line is an `F` record with empty content;
//! - content still pending when the stream ends without a newline is written as `P`, since the
//!   line was never completed.

mod capture;
mod copier;
mod file;
mod tap;

pub use capture::{CaptureBuf, EXEC_SYNC_OUTPUT_CAP};
pub use copier::{copy_to_log, spawn_copier, spawn_tapped_copier, LineSplitter, MAX_LINE_BYTES};
pub use file::{encode_entry, LogFile, Stream};
pub use tap::{OutputTap, Tapped, TAP_QUEUE_CHUNKS};
