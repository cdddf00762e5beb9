use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of each ExecSync stream is kept. kubelet's probes read a few bytes; the cap only
/// protects crius from a command that prints without end. It matches the 16 MiB gRPC message
/// limit crius is built with, since the whole output travels in one `ExecSyncResponse`.
pub const EXEC_SYNC_OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// Output of one stream collected in memory, up to a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureBuf {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl CaptureBuf {
    pub fn new(cap: usize) -> Self {
        CaptureBuf {
            bytes: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// Reads `reader` to EOF, keeping the first `cap` bytes.
    ///
    /// Bytes past the cap are still read and dropped, so the writer never blocks on a full
    /// pipe and the command can finish.
    pub async fn read_from<R>(mut reader: R, cap: usize) -> io::Result<Self>
    where
        R: AsyncRead + Unpin,
    {
        let mut capture = CaptureBuf::new(cap);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(capture),
                Ok(n) => capture.push(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Appends a chunk (for sources that deliver chunks rather than an `AsyncRead`, such as
    /// Docker's multiplexed exec stream).
    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether output past the cap was dropped.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_everything_under_the_cap() {
        let input: &[u8] = b"hello\nworld\n";
        let capture = CaptureBuf::read_from(input, 64).await.unwrap();
        assert_eq!(capture.bytes(), input);
        assert!(!capture.is_truncated());
    }

    #[tokio::test]
    async fn exactly_the_cap_is_not_truncated() {
        let input: &[u8] = b"12345678";
        let capture = CaptureBuf::read_from(input, 8).await.unwrap();
        assert_eq!(capture.len(), 8);
        assert!(!capture.is_truncated());
    }

    #[tokio::test]
    async fn truncates_and_keeps_draining() {
        let input = vec![b'x'; 100_000];
        let (mut tx, rx) = tokio::io::duplex(1024);
        let writer =
            tokio::spawn(async move { tokio::io::AsyncWriteExt::write_all(&mut tx, &input).await });
        let capture = CaptureBuf::read_from(rx, 10).await.unwrap();
        // The writer got every byte out even though only ten were kept.
        writer.await.unwrap().unwrap();
        assert_eq!(capture.into_bytes(), b"xxxxxxxxxx");
    }

    #[test]
    fn push_marks_truncation() {
        let mut capture = CaptureBuf::new(4);
        capture.push(b"ab");
        capture.push(b"cdef");
        capture.push(b"");
        assert_eq!(capture.bytes(), b"abcd");
        assert!(capture.is_truncated());
    }
}
