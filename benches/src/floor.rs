//! What moving an answer's bytes costs on this machine with nobody in the way.
//!
//! `ListContainers(floor)` takes the length of the endpoint's own unfiltered ListContainers
//! answer and moves that many bytes back and forth between two threads of the bench over a
//! unix socket pair, with blocking reads and writes: a one-byte request one way, the answer
//! the other, written as HTTP/2 would send it to a client that keeps HTTP/2's default frame
//! size (a 9-byte frame header and up to 16 KiB of payload per write). No gRPC, no HTTP/2
//! state, no async runtime, no endpoint. It is timed like `ListContainers(wire)`, from the
//! request to the answer's last byte, in the round of turns right after that row's, so it
//! tells what moving those bytes cost this machine in those seconds.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::measure::Latencies;

/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE: the largest DATA payload a server may send a
/// client that does not raise it (grpc-go, as kubelet uses it, does not).
pub const FRAME_PAYLOAD: usize = 16 * 1024;
/// An HTTP/2 frame header.
const FRAME_HEADER: usize = 9;

/// Exchanges `answer_len` bytes for `duration` (at least 3 times); returns each exchange's
/// latency and the time taken.
pub fn transfer(answer_len: usize, duration: Duration) -> Result<(Latencies, Duration)> {
    let (mut client, mut server) = UnixStream::pair().context("creating a unix socket pair")?;
    let writes = frames(answer_len);
    let total: usize = writes.iter().sum();
    let answerer = std::thread::Builder::new()
        .name("floor-answerer".into())
        .spawn(move || -> std::io::Result<()> {
            let buffers: Vec<Vec<u8>> = writes.iter().map(|&len| vec![0u8; len]).collect();
            let mut request = [0u8; 1];
            // The client closing its end ends the loop (a read of 0 bytes).
            while server.read(&mut request)? == 1 {
                for buffer in &buffers {
                    server.write_all(buffer)?;
                }
            }
            Ok(())
        })
        .context("starting the answering thread")?;

    let mut answer = vec![0u8; total];
    let mut latencies = Latencies::new();
    let begin = Instant::now();
    let mut exchanges = 0;
    let outcome = loop {
        if begin.elapsed() >= duration && exchanges >= 3 {
            break Ok(());
        }
        let t = Instant::now();
        if let Err(e) = client
            .write_all(&[1])
            .and_then(|()| client.read_exact(&mut answer))
        {
            break Err(e);
        }
        latencies.record(t.elapsed());
        exchanges += 1;
    };
    let elapsed = begin.elapsed();
    drop(client);
    let answered = answerer
        .join()
        .map_err(|_| anyhow::anyhow!("the answering thread panicked"))?;
    outcome.context("exchanging over the socket pair")?;
    answered.context("answering over the socket pair")?;
    Ok((latencies, elapsed))
}

/// The length of each write that carries an answer of `answer_len` bytes: one DATA frame per
/// write, each with its header. An empty answer is one empty frame.
fn frames(answer_len: usize) -> Vec<usize> {
    let full = answer_len / FRAME_PAYLOAD;
    let rest = answer_len % FRAME_PAYLOAD;
    let mut writes = vec![FRAME_HEADER + FRAME_PAYLOAD; full];
    if rest > 0 || full == 0 {
        writes.push(FRAME_HEADER + rest);
    }
    writes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_cut_into_frames_as_http2_sends_it() {
        assert_eq!(frames(0), vec![9]);
        assert_eq!(frames(100), vec![109]);
        assert_eq!(frames(FRAME_PAYLOAD), vec![9 + FRAME_PAYLOAD]);
        assert_eq!(frames(FRAME_PAYLOAD + 1), vec![9 + FRAME_PAYLOAD, 10]);
        let big = frames(290_000);
        assert_eq!(big.len(), 18);
        assert_eq!(big.iter().sum::<usize>(), 290_000 + 18 * 9);
    }

    #[test]
    fn exchanges_run_for_the_duration_and_are_timed() {
        let (latencies, elapsed) = transfer(300_000, Duration::from_millis(100)).unwrap();
        let row = latencies.row(0, "x", "ListContainers(floor)", elapsed);
        assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
        assert!(row.count >= 3, "{}", row.count);
        assert_eq!(row.errors, 0);
        assert!(row.p50_us > 0.0 && row.p99_us >= row.p50_us, "{row:?}");
    }
}
