use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Which container stream a record came from; the second field of a CRI log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Log files are read by kubelet (root) and by node log agents running in the file's group;
/// nobody else needs to see container output.
const LOG_FILE_MODE: u32 = 0o640;

enum State {
    Open(File),
    Closed,
}

/// The CRI log file of one container, shared by its stdout and stderr copiers.
///
/// One mutex around the file makes every record a single `write` under the lock, so records of
/// the two streams never interleave inside a line, and `reopen` never races a half-written one.
pub struct LogFile {
    path: PathBuf,
    state: Mutex<State>,
}

impl fmt::Debug for LogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl LogFile {
    /// Opens (creating it and its parent directories) the log file at `path` for appending.
    ///
    /// The path must be absolute: kubelet always sends one, and a relative path would land in
    /// crius's working directory where kubelet never looks.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log path {} is not absolute", path.display()),
            ));
        }
        let file = open_append(&path)?;
        Ok(LogFile {
            path,
            state: Mutex::new(State::Open(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record, timestamped `ts`. `content` must not contain the terminating newline.
    pub fn write_entry(
        &self,
        stream: Stream,
        partial: bool,
        content: &[u8],
        ts: DateTime<Utc>,
    ) -> io::Result<()> {
        let mut line = Vec::with_capacity(content.len() + 48);
        encode_entry(&mut line, stream, partial, content, ts);
        self.append(&line)
    }

    /// Appends already encoded, complete records in one write.
    pub(crate) fn append(&self, records: &[u8]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        match &mut *self.lock() {
            State::Open(file) => file.write_all(records),
            State::Closed => Err(closed_error(&self.path)),
        }
    }

    /// Closes the current file and opens `path` again, creating it.
    ///
    /// kubelet rotates by renaming the file away and then calling `ReopenContainerLog`; until
    /// then records keep going to the renamed file, which is what kubelet expects. The new file
    /// is opened before the old one is dropped, so a failed reopen leaves logging where it was.
    pub fn reopen(&self) -> io::Result<()> {
        let mut state = self.lock();
        if let State::Closed = *state {
            return Err(closed_error(&self.path));
        }
        let file = open_append(&self.path)?;
        *state = State::Open(file);
        Ok(())
    }

    /// Releases the file descriptor for good; later writes and reopens fail.
    pub fn close(&self) {
        *self.lock() = State::Closed;
    }

    pub fn is_closed(&self) -> bool {
        matches!(*self.lock(), State::Closed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent (it is replaced
        // whole), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

fn closed_error(path: &Path) -> io::Error {
    io::Error::other(format!("log file {} is closed", path.display()))
}

/// Appends one CRI log record (`<ts> <stream> <P|F> <content>\n`) to `out`.
///
/// The timestamp always has nine fractional digits: kubelet parses RFC 3339 with any number
/// of them, and a fixed width keeps records sortable as plain text.
pub fn encode_entry(
    out: &mut Vec<u8>,
    stream: Stream,
    partial: bool,
    content: &[u8],
    ts: DateTime<Utc>,
) {
    push_timestamp(out, ts);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

fn push_timestamp(out: &mut Vec<u8>, ts: DateTime<Utc>) {
    let year = ts.year();
    if year < 0 {
        out.push(b'-');
    }
    push_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    push_padded(out, ts.month(), 2);
    out.push(b'-');
    push_padded(out, ts.day(), 2);
    out.push(b'T');
    push_padded(out, ts.hour(), 2);
    out.push(b':');
    push_padded(out, ts.minute(), 2);
    out.push(b':');
    push_padded(out, ts.second(), 2);
    out.push(b'.');
    // chrono encodes a leap second as nanoseconds past 1e9; RFC 3339 readers reject that.
    push_padded(out, ts.nanosecond().min(999_999_999), 9);
    out.push(b'Z');
}

fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut rest = value;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(len)));
    out.extend(digits[..len].iter().rev());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ts(nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 19, 3, 56)
            .single()
            .map(|t| t + chrono::Duration::nanoseconds(i64::from(nanos)))
            .unwrap()
    }

    #[test]
    fn encodes_timestamp_with_nine_digits() {
        let mut out = Vec::new();
        encode_entry(&mut out, Stream::Stdout, false, b"hello", ts(123_456_789));
        assert_eq!(out, b"2026-11-23T19:03:56.123456789Z stdout F hello\n");

        out.clear();
        encode_entry(&mut out, Stream::Stderr, true, b"", ts(1_000));
        assert_eq!(out, b"2026-11-23T19:03:56.000001000Z stderr P \n");
    }

    #[test]
    fn timestamp_round_trips_through_rfc3339_parser() {
        let t = ts(42);
        let mut out = Vec::new();
        push_timestamp(&mut out, t);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(DateTime::parse_from_rfc3339(&text).unwrap(), t);
    }

    #[test]
    fn relative_path_is_rejected() {
        let err = LogFile::open("relative/c.log").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn creates_parents_with_mode_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/ctr/0.log");
        let log = LogFile::open(&path).unwrap();
        log.write_entry(Stream::Stdout, false, b"x", Utc::now())
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.is_file());
        // umask may only remove bits.
        assert_eq!(meta.permissions().mode() & 0o7777 & !0o640, 0);
    }

    #[test]
    fn appends_to_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = LogFile::open(&path).unwrap();
        log.write_entry(Stream::Stdout, false, b"later", ts(0))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "earlier\n2026-11-23T19:03:56.000000000Z stdout F later\n"
        );
    }

    #[test]
    fn reopen_after_rename_starts_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotated = dir.path().join("0.log.20261123-190356");
        let log = LogFile::open(&path).unwrap();
        log.write_entry(Stream::Stdout, false, b"old", ts(0))
            .unwrap();

        std::fs::rename(&path, &rotated).unwrap();
        // Until kubelet asks for a reopen, records follow the renamed file.
        log.write_entry(Stream::Stdout, false, b"still old", ts(0))
            .unwrap();
        log.reopen().unwrap();
        log.write_entry(Stream::Stderr, false, b"new", ts(0))
            .unwrap();

        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2);
        assert!(old.ends_with(" stdout F still old\n"));
        assert_eq!(new, "2026-11-23T19:03:56.000000000Z stderr F new\n");
    }

    #[test]
    fn close_releases_and_rejects_writes() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(dir.path().join("0.log")).unwrap();
        log.close();
        assert!(log.is_closed());
        assert!(log
            .write_entry(Stream::Stdout, false, b"x", Utc::now())
            .is_err());
        assert!(log.reopen().is_err());
    }
}
