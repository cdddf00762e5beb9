use std::io;
use std::sync::Arc;

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::file::{encode_entry, LogFile, Stream};
use super::tap::OutputTap;

/// Longest content of one record; containerd's default `max_container_log_line_size`.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

const READ_BUF_BYTES: usize = 8 * 1024;

/// Cuts a byte stream into CRI records: `(partial, content)` pairs, content without newline.
///
/// It holds at most `max_line + 1` bytes of an unfinished line between pushes, so a container
/// printing a gigabyte without a newline costs no more memory than one that prints short lines.
#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    pending: Vec<u8>,
}

impl LineSplitter {
    /// `max_line` of 0 is treated as 1: a record must carry some content to make progress.
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            max_line: max_line.max(1),
            pending: Vec::new(),
        }
    }

    /// Feeds bytes; calls `emit` for every record that is now complete.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(bool, &[u8])) {
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&data[..newline]);
            if self.pending.last() == Some(&b'\r') {
                self.pending.pop();
            }
            self.emit_chunks_over(self.max_line, &mut emit);
            emit(false, &self.pending);
            self.pending.clear();
            data = &data[newline + 1..];
        }
        self.pending.extend_from_slice(data);
        // A trailing '\r' may be the first half of "\r\n" and so not content at all: it must
        // not push the line over the limit until the next byte decides.
        let held_back = usize::from(self.pending.last() == Some(&b'\r'));
        self.emit_chunks_over(self.max_line + held_back, &mut emit);
    }

    /// Flushes what is left at end of stream; an unterminated line is written as partial.
    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8])) {
        if self.pending.is_empty() {
            return;
        }
        self.emit_chunks_over(self.max_line, &mut emit);
        emit(true, &self.pending);
        self.pending.clear();
    }

    /// Emits full-size partial records while more than `threshold` bytes are pending.
    fn emit_chunks_over(&mut self, threshold: usize, emit: &mut impl FnMut(bool, &[u8])) {
        if self.pending.len() <= threshold {
            return;
        }
        let mut start = 0;
        while self.pending.len() - start > threshold {
            emit(true, &self.pending[start..start + self.max_line]);
            start += self.max_line;
        }
        self.pending.drain(..start);
    }
}

/// Starts a task that copies `reader` into `log` as CRI records until EOF.
pub fn spawn_copier<R>(reader: R, stream: Stream, log: Arc<LogFile>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(copy_to_log(reader, stream, log, MAX_LINE_BYTES))
}

/// Copies `reader` into `log` until EOF or a read error.
pub async fn copy_to_log<R>(reader: R, stream: Stream, log: Arc<LogFile>, max_line: usize)
where
    R: AsyncRead + Unpin,
{
    copy_output(reader, stream, Some(&log), None, max_line).await
}

/// Starts a task that copies a container's output into its log (when it has one) and to its
/// attached clients, until EOF; the tap learns when the stream ended.
pub fn spawn_tapped_copier<R>(
    reader: R,
    stream: Stream,
    log: Option<Arc<LogFile>>,
    tap: Arc<OutputTap>,
) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        copy_output(reader, stream, log.as_deref(), Some(&tap), MAX_LINE_BYTES).await;
        tap.ended();
    })
}

/// Copies `reader` into `log` (if any) and `tap` (if any) until EOF or a read error.
///
/// A failing write never stops the copy: the container would block on a full pipe, so output
/// keeps being drained (and dropped) exactly as containerd does.
///
/// Writes are plain blocking appends from the task: they land in the page cache and cost
/// less than a hop to tokio's blocking pool for every read.
async fn copy_output<R>(
    mut reader: R,
    stream: Stream,
    log: Option<&LogFile>,
    tap: Option<&OutputTap>,
    max_line: usize,
) where
    R: AsyncRead + Unpin,
{
    let mut splitter = LineSplitter::new(max_line);
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let mut records = Vec::new();
    let mut write_failed = false;
    loop {
        let read = match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(%stream, error = %err,
                    "reading container output failed; flushing what was read");
                break;
            }
        };
        if let Some(tap) = tap {
            tap.publish(stream, &buf[..read]);
        }
        let Some(log) = log else { continue };
        // Records from one read arrived together, so they share a timestamp; it also batches
        // them into one write under the file lock.
        let now = Utc::now();
        records.clear();
        splitter.push(&buf[..read], |partial, content| {
            encode_entry(&mut records, stream, partial, content, now)
        });
        write_records(log, stream, &records, &mut write_failed);
    }
    let Some(log) = log else { return };
    let now = Utc::now();
    records.clear();
    splitter.finish(|partial, content| encode_entry(&mut records, stream, partial, content, now));
    write_records(log, stream, &records, &mut write_failed);
}

fn write_records(log: &LogFile, stream: Stream, records: &[u8], write_failed: &mut bool) {
    match log.append(records) {
        Ok(()) => *write_failed = false,
        // Report a failure once per run of failures rather than once per line.
        Err(err) if !*write_failed => {
            *write_failed = true;
            tracing::warn!(path = %log.path().display(), %stream, error = %err,
                "writing container log failed; output is dropped until a write succeeds");
        }
        Err(_) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use regex::Regex;

    fn split(max: usize, pushes: &[&[u8]]) -> Vec<(bool, Vec<u8>)> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        for data in pushes {
            splitter.push(data, |p, c| out.push((p, c.to_vec())));
        }
        splitter.finish(|p, c| out.push((p, c.to_vec())));
        out
    }

    fn rec(partial: bool, content: &str) -> (bool, Vec<u8>) {
        (partial, content.as_bytes().to_vec())
    }

    #[test]
    fn splits_plain_lines() {
        assert_eq!(
            split(16, &[b"a\nbb\n\nccc\n"]),
            vec![
                rec(false, "a"),
                rec(false, "bb"),
                rec(false, ""),
                rec(false, "ccc")
            ]
        );
    }

    #[test]
    fn line_across_reads_is_one_record() {
        assert_eq!(
            split(16, &[b"hel", b"lo\nwor", b"ld\n"]),
            vec![rec(false, "hello"), rec(false, "world")]
        );
    }

    #[test]
    fn crlf_is_stripped_but_lone_cr_kept() {
        assert_eq!(
            split(16, &[b"a\r\nb\rc\n"]),
            vec![rec(false, "a"), rec(false, "b\rc")]
        );
        // "\r\n" straddling two reads.
        assert_eq!(
            split(16, &[b"a\r", b"\nb\n"]),
            vec![rec(false, "a"), rec(false, "b")]
        );
    }

    #[test]
    fn unterminated_tail_is_partial() {
        assert_eq!(
            split(16, &[b"done\nhalf"]),
            vec![rec(false, "done"), rec(true, "half")]
        );
        assert_eq!(split(16, &[b"cr\r"]), vec![rec(true, "cr\r")]);
    }

    #[test]
    fn long_lines_split_at_max() {
        assert_eq!(
            split(4, &[b"abcdefghij\n"]),
            vec![rec(true, "abcd"), rec(true, "efgh"), rec(false, "ij")]
        );
        // Exactly the limit is one full record; a multiple of it leaves no empty record.
        assert_eq!(split(4, &[b"abcd\n"]), vec![rec(false, "abcd")]);
        assert_eq!(
            split(4, &[b"abcdefgh\n"]),
            vec![rec(true, "abcd"), rec(false, "efgh")]
        );
        // Byte by byte gives the same records as one big read.
        let bytes: Vec<&[u8]> = b"abcdefghij\n".chunks(1).collect();
        assert_eq!(split(4, &bytes), split(4, &[b"abcdefghij\n"]));
    }

    #[test]
    fn cr_at_the_limit_waits_for_the_next_byte() {
        assert_eq!(split(4, &[b"abcd\r", b"\n"]), vec![rec(false, "abcd")]);
        assert_eq!(
            split(4, &[b"abcd\r", b"x\n"]),
            vec![rec(true, "abcd"), rec(false, "\rx")]
        );
        assert_eq!(
            split(4, &[b"abcd\r"]),
            vec![rec(true, "abcd"), rec(true, "\r")]
        );
    }

    #[test]
    fn unterminated_long_tail_is_all_partial() {
        assert_eq!(
            split(4, &[b"abcdefghij"]),
            vec![rec(true, "abcd"), rec(true, "efgh"), rec(true, "ij")]
        );
    }

    #[test]
    fn zero_max_still_makes_progress() {
        assert_eq!(split(0, &[b"ab\n"]), vec![rec(true, "a"), rec(false, "b")]);
    }

    struct Parsed {
        stream: String,
        tag: String,
        content: String,
    }

    fn parse_file(path: &std::path::Path) -> Vec<Parsed> {
        let re = Regex::new(
            r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (stdout|stderr) (P|F) (.*)$",
        )
        .unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|line| {
                let caps = re
                    .captures(line)
                    .unwrap_or_else(|| panic!("bad CRI line {line:?}"));
                chrono::DateTime::parse_from_rfc3339(&caps[1]).unwrap();
                Parsed {
                    stream: caps[2].to_string(),
                    tag: caps[3].to_string(),
                    content: caps[4].to_string(),
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn copier_writes_cri_lines_including_empty_and_unterminated() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(LogFile::open(dir.path().join("0.log")).unwrap());
        let input: &[u8] = b"first\n\nthird\r\nno newline";
        spawn_copier(input, Stream::Stdout, log.clone())
            .await
            .unwrap();

        let lines = parse_file(log.path());
        let got: Vec<(&str, &str, &str)> = lines
            .iter()
            .map(|l| (l.stream.as_str(), l.tag.as_str(), l.content.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("stdout", "F", "first"),
                ("stdout", "F", ""),
                ("stdout", "F", "third"),
                ("stdout", "P", "no newline"),
            ]
        );
    }

    #[tokio::test]
    async fn copier_splits_40k_line_into_p_p_f() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(LogFile::open(dir.path().join("0.log")).unwrap());
        let line: String = (0..40 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let input = format!("{line}\n").into_bytes();
        // A duplex pipe with a small buffer delivers the line in many short reads.
        let (mut tx, rx) = tokio::io::duplex(1000);
        let copier = spawn_copier(rx, Stream::Stderr, log.clone());
        tokio::io::AsyncWriteExt::write_all(&mut tx, &input)
            .await
            .unwrap();
        drop(tx);
        copier.await.unwrap();

        let lines = parse_file(log.path());
        let tags: Vec<&str> = lines.iter().map(|l| l.tag.as_str()).collect();
        assert_eq!(tags, vec!["P", "P", "F"]);
        assert_eq!(lines[0].content.len(), MAX_LINE_BYTES);
        assert_eq!(lines[1].content.len(), MAX_LINE_BYTES);
        assert!(lines.iter().all(|l| l.stream == "stderr"));
        let joined: String = lines.iter().map(|l| l.content.as_str()).collect();
        assert_eq!(joined, line);
    }

    #[tokio::test]
    async fn stdout_and_stderr_interleave_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(LogFile::open(dir.path().join("0.log")).unwrap());
        let (mut out_tx, out_rx) = tokio::io::duplex(64);
        let (mut err_tx, err_rx) = tokio::io::duplex(64);
        let out_copier = spawn_copier(out_rx, Stream::Stdout, log.clone());
        let err_copier = spawn_copier(err_rx, Stream::Stderr, log.clone());
        for i in 0..200 {
            use tokio::io::AsyncWriteExt;
            out_tx
                .write_all(format!("out line {i}\n").as_bytes())
                .await
                .unwrap();
            err_tx
                .write_all(format!("err line {i}\n").as_bytes())
                .await
                .unwrap();
        }
        drop(out_tx);
        drop(err_tx);
        out_copier.await.unwrap();
        err_copier.await.unwrap();

        let lines = parse_file(log.path());
        assert_eq!(lines.len(), 400);
        for (stream, prefix) in [("stdout", "out"), ("stderr", "err")] {
            let contents: Vec<String> = lines
                .iter()
                .filter(|l| l.stream == stream)
                .inspect(|l| assert_eq!(l.tag, "F"))
                .map(|l| l.content.clone())
                .collect();
            let expected: Vec<String> = (0..200).map(|i| format!("{prefix} line {i}")).collect();
            assert_eq!(contents, expected);
        }
    }

    #[tokio::test]
    async fn copier_follows_reopen_after_rotation() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotated = dir.path().join("0.log.1");
        let log = Arc::new(LogFile::open(&path).unwrap());
        let (mut tx, rx) = tokio::io::duplex(64);
        let copier = spawn_copier(rx, Stream::Stdout, log.clone());

        tx.write_all(b"before\n").await.unwrap();
        wait_for_lines(&path, 1).await;
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen().unwrap();
        tx.write_all(b"after\n").await.unwrap();
        drop(tx);
        copier.await.unwrap();
        log.close();

        let old: Vec<String> = parse_file(&rotated)
            .into_iter()
            .map(|l| l.content)
            .collect();
        let new: Vec<String> = parse_file(&path).into_iter().map(|l| l.content).collect();
        assert_eq!(old, vec!["before"]);
        assert_eq!(new, vec!["after"]);
    }

    #[tokio::test]
    async fn copier_drains_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(LogFile::open(dir.path().join("0.log")).unwrap());
        log.close();
        let input: &[u8] = b"dropped\n";
        // Must finish (not hang or panic) although every write fails.
        spawn_copier(input, Stream::Stdout, log.clone())
            .await
            .unwrap();
        assert_eq!(std::fs::read(log.path()).unwrap(), b"");
    }

    async fn wait_for_lines(path: &std::path::Path, count: usize) {
        for _ in 0..500 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("{} never reached {count} lines", path.display());
    }
}
