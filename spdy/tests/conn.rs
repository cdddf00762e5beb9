//! A client and a server `Connection` over an in-memory pipe, and a raw peer that writes
//! frames by hand to check how a connection answers protocol errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::ErrorKind;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use spdy::frame::{Decoder, Frame};
use spdy::headers::{HeaderDecoder, HeaderEncoder};
use spdy::{Connection, Error, GoAwayStatus, Headers, Incoming, Limits, RstStatus, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

const WITHIN: Duration = Duration::from_secs(20);

fn pair(limits: Limits) -> (Connection, Incoming, Connection, Incoming) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, client_incoming) = Connection::client(a, limits);
    let (server, server_incoming) = Connection::server(b, limits);
    (client, client_incoming, server, server_incoming)
}

/// FNV-1a, 64 bits: enough to tell a reordered, lost or duplicated chunk.
fn checksum(data: &[u8], mut hash: u64) -> u64 {
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A deterministic, non-repeating-looking pattern.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn accept(incoming: &mut Incoming) -> Stream {
    timeout(WITHIN, incoming.next())
        .await
        .expect("no stream within the time limit")
        .expect("the connection ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_open_both_ways_with_headers_and_replies() {
    let (client, mut client_incoming, server, mut server_incoming) = pair(Limits::default());

    let mut opened = client
        .open(
            Headers::new()
                .with("streamtype", "stdout")
                .with("Port", "80"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(opened.id, 1);
    let accepted = accept(&mut server_incoming).await;
    assert_eq!(accepted.id, 1);
    assert_eq!(accepted.headers.get("streamtype"), Some("stdout"));
    assert_eq!(accepted.headers.get("port"), Some("80"));
    server
        .reply(accepted.id, Headers::new().with("x-ok", "yes"), false)
        .await
        .unwrap();
    let reply = timeout(WITHIN, opened.reply_headers())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.get("x-ok"), Some("yes"));
    // A second reply to the same stream is refused locally.
    assert!(matches!(
        server.reply(accepted.id, Headers::new(), false).await,
        Err(Error::CannotReply(1))
    ));

    // The server opens one too: even ids.
    let mut pushed = server
        .open(Headers::new().with("streamtype", "push"), false)
        .await
        .unwrap();
    assert_eq!(pushed.id, 2);
    let mut got = accept(&mut client_incoming).await;
    assert_eq!(got.headers.get("streamtype"), Some("push"));
    client.reply(got.id, Headers::new(), false).await.unwrap();
    timeout(WITHIN, pushed.reply_headers())
        .await
        .unwrap()
        .unwrap();
    pushed.writer.write_all(b"from the server").await.unwrap();
    pushed.writer.shutdown().await.unwrap();
    let mut text = String::new();
    got.reader.read_to_string(&mut text).await.unwrap();
    assert_eq!(text, "from the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mebibytes_cross_one_stream_intact() {
    let (client, _ci, server, mut server_incoming) = pair(Limits::default());
    let data = pattern(10 << 20);
    let expected = checksum(&data, FNV_START);

    let mut stream = client
        .open(Headers::new().with("streamtype", "stdin"), false)
        .await
        .unwrap();
    let accepted = accept(&mut server_incoming).await;
    server
        .reply(accepted.id, Headers::new(), false)
        .await
        .unwrap();
    stream.reply_headers().await.unwrap();

    let Stream { mut writer, .. } = stream;
    let sender = tokio::spawn(async move {
        // Uneven writes: the half splits them into frames of at most 32 KiB.
        for chunk in data.chunks(100_003) {
            writer.write_all(chunk).await.unwrap();
        }
        writer.shutdown().await.unwrap();
    });
    let Stream { mut reader, .. } = accepted;
    let mut hash = FNV_START;
    let mut total = 0usize;
    let mut buf = vec![0u8; 50_000];
    loop {
        let n = timeout(WITHIN, reader.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        hash = checksum(&buf[..n], hash);
        total += n;
    }
    sender.await.unwrap();
    assert_eq!(total, 10 << 20);
    assert_eq!(hash, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_stream_still_carries_the_other_direction_and_is_then_forgotten() {
    let (client, _ci, server, mut server_incoming) = pair(Limits::default());
    let mut stream = client.open(Headers::new(), false).await.unwrap();
    let mut accepted = accept(&mut server_incoming).await;
    server
        .reply(accepted.id, Headers::new(), false)
        .await
        .unwrap();
    stream.reply_headers().await.unwrap();

    stream.writer.write_all(b"question").await.unwrap();
    stream.writer.shutdown().await.unwrap();
    assert!(
        stream.writer.write_all(b"more").await.is_err(),
        "write after FIN"
    );
    let mut question = Vec::new();
    accepted.reader.read_to_end(&mut question).await.unwrap();
    assert_eq!(question, b"question");

    accepted.writer.write_all(b"answer").await.unwrap();
    accepted.writer.shutdown().await.unwrap();
    let mut answer = Vec::new();
    stream.reader.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"answer");

    // Both sides finished: both connections forget the stream.
    for conn in [&client, &server] {
        let deadline = tokio::time::Instant::now() + WITHIN;
        while conn.open_streams() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream never forgotten"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_fails_both_halves_on_both_sides() {
    let (client, _ci, server, mut server_incoming) = pair(Limits::default());
    let mut stream = client.open(Headers::new(), false).await.unwrap();
    let mut accepted = accept(&mut server_incoming).await;
    server
        .reply(accepted.id, Headers::new(), false)
        .await
        .unwrap();
    stream.reply_headers().await.unwrap();

    server.reset(accepted.id, RstStatus::CANCEL).await.unwrap();
    let mut buf = [0u8; 16];
    let local = accepted.reader.read(&mut buf).await.unwrap_err();
    assert_eq!(local.kind(), ErrorKind::ConnectionReset);
    assert!(accepted.writer.write_all(b"x").await.is_err());

    let remote = timeout(WITHIN, stream.reader.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(remote.kind(), ErrorKind::ConnectionReset);
    assert!(remote.to_string().contains("CANCEL"), "{remote}");
    assert!(stream.writer.write_all(b"x").await.is_err());
    assert_eq!(client.open_streams(), 0);
    assert_eq!(server.open_streams(), 0);

    // A stream reset before its reply fails the one waiting for the reply.
    let mut refused = client.open(Headers::new(), false).await.unwrap();
    let accepted = accept(&mut server_incoming).await;
    server
        .reset(accepted.id, RstStatus::REFUSED_STREAM)
        .await
        .unwrap();
    let error = timeout(WITHIN, refused.reply_headers())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Reset {
                status: RstStatus::REFUSED_STREAM,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_both_ways() {
    let (client, _ci, server, _si) = pair(Limits::default());
    for _ in 0..3 {
        timeout(WITHIN, client.ping()).await.unwrap().unwrap();
        timeout(WITHIN, server.ping()).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stream_pushes_back_instead_of_buffering() {
    let limits = Limits {
        stream_buffer_frames: 4,
        ..Limits::default()
    };
    let (client, _ci, server, mut server_incoming) = pair(limits);
    let mut stream = client.open(Headers::new(), false).await.unwrap();
    let accepted = accept(&mut server_incoming).await;
    server
        .reply(accepted.id, Headers::new(), false)
        .await
        .unwrap();
    stream.reply_headers().await.unwrap();

    // Nobody reads the server side: the writes must stall well before 16 MiB are taken.
    let Stream { mut writer, .. } = stream;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = progress.clone();
    let sender = tokio::spawn(async move {
        let chunk = vec![7u8; 32 * 1024];
        for _ in 0..512 {
            writer.write_all(&chunk).await.unwrap();
            counted.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
        writer.shutdown().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled_at = progress.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        stalled_at < 4 << 20,
        "{stalled_at} bytes were accepted with nobody reading"
    );
    // Reading releases it all.
    let Stream { mut reader, .. } = accepted;
    let mut all = Vec::new();
    timeout(WITHIN, reader.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.len(), 16 << 20);
    sender.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_reader_discards_its_data_without_stalling_other_streams() {
    let limits = Limits {
        stream_buffer_frames: 2,
        ..Limits::default()
    };
    let (client, _ci, server, mut server_incoming) = pair(limits);
    let mut ignored = client.open(Headers::new(), false).await.unwrap();
    let dropped = accept(&mut server_incoming).await;
    server
        .reply(dropped.id, Headers::new(), false)
        .await
        .unwrap();
    ignored.reply_headers().await.unwrap();
    let Stream {
        reader,
        writer: _keep,
        ..
    } = dropped;
    drop(reader);

    let mut live = client.open(Headers::new(), false).await.unwrap();
    let mut accepted = accept(&mut server_incoming).await;
    server
        .reply(accepted.id, Headers::new(), false)
        .await
        .unwrap();
    live.reply_headers().await.unwrap();

    let junk = vec![1u8; 4 << 20];
    timeout(WITHIN, ignored.writer.write_all(&junk))
        .await
        .unwrap()
        .unwrap();
    live.writer.write_all(b"still flowing").await.unwrap();
    live.writer.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(WITHIN, accepted.reader.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"still flowing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_finished_streams_leave_nothing_behind() {
    let limits = Limits {
        max_streams: 8,
        ..Limits::default()
    };
    let (client, _ci, server, mut server_incoming) = pair(limits);
    let server_side = tokio::spawn(async move {
        while let Some(mut stream) = server_incoming.next().await {
            server
                .reply(stream.id, Headers::new(), false)
                .await
                .unwrap();
            let mut request = Vec::new();
            stream.reader.read_to_end(&mut request).await.unwrap();
            stream.writer.write_all(&request).await.unwrap();
            // Dropping the writer half-closes too.
        }
        server
    });
    for i in 0..2000u32 {
        let mut stream = client.open(Headers::new(), false).await.unwrap();
        stream.reply_headers().await.unwrap();
        let message = i.to_string();
        stream.writer.write_all(message.as_bytes()).await.unwrap();
        stream.writer.shutdown().await.unwrap();
        let mut echo = String::new();
        timeout(WITHIN, stream.reader.read_to_string(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, message);
    }
    assert_eq!(client.open_streams(), 0);
    client.close().await;
    let server = timeout(WITHIN, server_side).await.unwrap().unwrap();
    assert_eq!(server.open_streams(), 0);
    timeout(WITHIN, client.closed()).await.unwrap().unwrap();
    timeout(WITHIN, server.closed()).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_ends_open_streams_with_eof() {
    let (client, _ci, server, mut server_incoming) = pair(Limits::default());
    let mut stream = client.open(Headers::new(), false).await.unwrap();
    let accepted = accept(&mut server_incoming).await;
    server
        .reply(accepted.id, Headers::new(), false)
        .await
        .unwrap();
    stream.reply_headers().await.unwrap();
    let Stream { mut writer, .. } = accepted;
    writer.write_all(b"last words").await.unwrap();
    server.close().await;
    let mut got = Vec::new();
    timeout(WITHIN, stream.reader.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"last words");
    timeout(WITHIN, client.closed()).await.unwrap().unwrap();
    timeout(WITHIN, server.closed()).await.unwrap().unwrap();
    assert!(matches!(
        client.open(Headers::new(), false).await,
        Err(Error::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_before_the_reply_is_refused() {
    let (client, _ci, _server, mut server_incoming) = pair(Limits::default());
    let _stream = client.open(Headers::new(), false).await.unwrap();
    let mut accepted = accept(&mut server_incoming).await;
    let error = accepted.writer.write_all(b"early").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

/// A hand-driven peer: writes frames, reads what the connection under test answers.
struct RawPeer {
    io: DuplexStream,
    headers_out: HeaderEncoder,
    headers_in: HeaderDecoder,
    decoder: Decoder,
    buf: BytesMut,
}

impl RawPeer {
    fn new(io: DuplexStream) -> Self {
        RawPeer {
            io,
            headers_out: HeaderEncoder::new().unwrap(),
            headers_in: HeaderDecoder::new(),
            decoder: Decoder::default(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn syn_stream(&mut self, id: u32, headers: &Headers) {
        let header_block = self.headers_out.encode(headers).unwrap();
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            header_block,
        })
        .await;
    }

    /// The next frame from the connection under test; `None` at EOF.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                if let Frame::SynReply { header_block, .. }
                | Frame::SynStream { header_block, .. } = &frame
                {
                    self.headers_in.decode(header_block).unwrap();
                }
                return Some(frame);
            }
            let n = timeout(WITHIN, self.io.read_buf(&mut self.buf))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }

    async fn expect_goaway(&mut self) {
        loop {
            match self.next().await {
                Some(Frame::GoAway { status, .. }) => {
                    assert_eq!(status, GoAwayStatus::PROTOCOL_ERROR);
                    return;
                }
                Some(_) => continue,
                None => panic!("the connection closed without GOAWAY"),
            }
        }
    }
}

fn raw_server(limits: Limits) -> (RawPeer, Connection, Incoming) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (server, incoming) = Connection::server(b, limits);
    (RawPeer::new(a), server, incoming)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_id_of_the_wrong_parity_ends_the_connection_with_goaway() {
    let (mut peer, server, _incoming) = raw_server(Limits::default());
    peer.syn_stream(2, &Headers::new()).await;
    peer.expect_goaway().await;
    let error = timeout(WITHIN, server.closed()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::BadStreamId { id: 2, .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_stream_id_ends_the_connection_with_goaway() {
    let (mut peer, server, mut incoming) = raw_server(Limits::default());
    peer.syn_stream(3, &Headers::new()).await;
    accept(&mut incoming).await;
    peer.syn_stream(1, &Headers::new()).await;
    peer.expect_goaway().await;
    let error = timeout(WITHIN, server.closed()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::BadStreamId { id: 1, .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_too_many_ends_the_connection_with_goaway() {
    let limits = Limits {
        max_streams: 3,
        ..Limits::default()
    };
    let (mut peer, server, _incoming) = raw_server(limits);
    for id in [1, 3, 5, 7] {
        peer.syn_stream(id, &Headers::new()).await;
    }
    peer.expect_goaway().await;
    let error = timeout(WITHIN, server.closed()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::TooManyStreams(3)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_the_connection_with_goaway() {
    let limits = Limits {
        max_frame: 4096,
        ..Limits::default()
    };
    let (mut peer, server, mut incoming) = raw_server(limits);
    peer.syn_stream(1, &Headers::new()).await;
    accept(&mut incoming).await;
    peer.send(Frame::Data {
        stream_id: 1,
        fin: false,
        data: Bytes::from(vec![0u8; 4097]),
    })
    .await;
    peer.expect_goaway().await;
    let error = timeout(WITHIN, server.closed()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Frame(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_header_block_ends_the_connection_with_goaway() {
    let (mut peer, server, _incoming) = raw_server(Limits::default());
    peer.send(Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        flags: 0,
        header_block: Bytes::from_static(b"definitely not zlib"),
    })
    .await;
    peer.expect_goaway().await;
    let error = timeout(WITHIN, server.closed()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Headers(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_for_an_unknown_stream_is_answered_with_invalid_stream() {
    let (mut peer, server, _incoming) = raw_server(Limits::default());
    peer.send(Frame::Data {
        stream_id: 9,
        fin: false,
        data: Bytes::from_static(b"?"),
    })
    .await;
    match peer.next().await {
        Some(Frame::RstStream { stream_id, status }) => {
            assert_eq!((stream_id, status), (9, RstStatus::INVALID_STREAM));
        }
        other => panic!("expected RST_STREAM, got {other:?}"),
    }
    // The connection goes on: a ping is still answered.
    peer.send(Frame::Ping { id: 1 }).await;
    assert_eq!(peer.next().await, Some(Frame::Ping { id: 1 }));
    assert!(!server.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_window_updates_and_unknown_frames_are_ignored() {
    let (mut peer, server, mut incoming) = raw_server(Limits::default());
    peer.send(Frame::Settings {
        clear: false,
        entries: vec![spdy::frame::Setting {
            flags: 0,
            id: 7,
            value: 1,
        }],
    })
    .await;
    peer.send(Frame::WindowUpdate {
        stream_id: 0,
        delta: 1,
    })
    .await;
    // A control frame of type 0x0A (the old CREDENTIAL frame).
    peer.io
        .write_all(&[0x80, 0x03, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x02, 0xAB, 0xCD])
        .await
        .unwrap();
    peer.syn_stream(1, &Headers::new().with("streamtype", "error"))
        .await;
    let stream = accept(&mut incoming).await;
    assert_eq!(stream.headers.get("streamtype"), Some("error"));
    server.reply(1, Headers::new(), true).await.unwrap();
    match peer.next().await {
        Some(Frame::SynReply { stream_id, fin, .. }) => assert_eq!((stream_id, fin), (1, true)),
        other => panic!("expected SYN_REPLY, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_frame_is_an_error_and_streams_fail() {
    let (mut peer, server, mut incoming) = raw_server(Limits::default());
    peer.syn_stream(1, &Headers::new()).await;
    let mut stream = accept(&mut incoming).await;
    peer.io
        .write_all(&[0x00, 0x00, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    peer.io.shutdown().await.unwrap();
    let error = timeout(WITHIN, server.closed()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Frame(_)), "{error}");
    let mut buf = [0u8; 4];
    assert!(stream.reader.read(&mut buf).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_arrived_before_a_reset_still_reads_then_the_reset() {
    // What a Go server does at the end of an exec: the status on the error stream, then
    // RST_STREAM on every stream as it closes the connection.
    let (mut peer, _server, mut incoming) = raw_server(Limits::default());
    peer.syn_stream(1, &Headers::new().with("streamtype", "error"))
        .await;
    let mut stream = accept(&mut incoming).await;
    peer.send(Frame::Data {
        stream_id: 1,
        fin: false,
        data: Bytes::from_static(b"{\"status\":\"Success\"}"),
    })
    .await;
    peer.send(Frame::RstStream {
        stream_id: 1,
        status: RstStatus::CANCEL,
    })
    .await;
    let mut got = Vec::new();
    let error = timeout(WITHIN, stream.reader.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(got, b"{\"status\":\"Success\"}");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
}
