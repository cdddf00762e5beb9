//! Arbitrary bytes, and arbitrary mutations of a valid client conversation, fed to a server
//! `Connection`: it must never panic, and must end (cleanly or with an error) once the input
//! ends, whatever the input was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spdy::frame::Frame;
use spdy::headers::HeaderEncoder;
use spdy::{Connection, Headers, Limits, RstStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs a server connection on `input`; returns whether it ended in time and how.
fn serve(input: Vec<u8>) -> Result<Result<(), spdy::Error>, &'static str> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (mut peer, server_io) = tokio::io::duplex(1 << 20);
        let limits = Limits {
            max_frame: 64 * 1024,
            max_streams: 8,
            stream_buffer_frames: 2,
        };
        let (server, mut incoming) = Connection::server(server_io, limits);
        // Accept and drain every stream, answering some, as a server would.
        let acceptor = {
            let server = server.clone();
            tokio::spawn(async move {
                while let Some(mut stream) = incoming.next().await {
                    let _ = server
                        .reply(stream.id, Headers::new(), stream.id % 3 == 0)
                        .await;
                    tokio::spawn(async move {
                        let mut sink = Vec::new();
                        let _ = stream.reader.read_to_end(&mut sink).await;
                        let _ = stream.writer.write_all(&sink[..sink.len().min(64)]).await;
                    });
                }
            })
        };
        peer.write_all(&input).await.map_err(|_| "write")?;
        peer.shutdown().await.map_err(|_| "shutdown")?;
        let (mut peer_read, _peer_write) = tokio::io::split(peer);
        tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(peer_read.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let ended = tokio::time::timeout(Duration::from_secs(10), server.closed())
            .await
            .map_err(|_| "the connection did not end after its input did")?;
        acceptor.abort();
        Ok(ended)
    })
}

/// A valid conversation of a client: streams with headers and data, a ping, a reset.
fn conversation(data: Vec<Vec<u8>>) -> Vec<u8> {
    let mut headers = HeaderEncoder::new().expect("encoder");
    let mut wire = BytesMut::new();
    let mut push = |frame: Frame| frame.encode(&mut wire).expect("encode");
    for (i, payload) in data.iter().enumerate() {
        let id = 2 * i as u32 + 1;
        let block = headers
            .encode(
                &Headers::new()
                    .with("streamtype", "stdin")
                    .with("n", i.to_string()),
            )
            .expect("headers");
        push(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            header_block: block,
        });
        push(Frame::Data {
            stream_id: id,
            fin: false,
            data: Bytes::from(payload.clone()),
        });
        push(Frame::Ping { id: id * 2 + 1 });
        if i % 2 == 0 {
            push(Frame::Data {
                stream_id: id,
                fin: true,
                data: Bytes::new(),
            });
        } else {
            push(Frame::RstStream {
                stream_id: id,
                status: RstStatus::CANCEL,
            });
        }
    }
    wire.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_end_the_connection_cleanly_or_with_an_error(
        input in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let outcome = serve(input);
        prop_assert!(outcome.is_ok(), "{:?}", outcome.err());
    }

    #[test]
    fn mutated_conversations_end_the_connection_cleanly_or_with_an_error(
        data in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let mut wire = conversation(data);
        let unmodified = flips.is_empty();
        for (index, value) in flips {
            let i = index.index(wire.len());
            wire[i] = value;
        }
        let outcome = serve(wire);
        prop_assert!(outcome.is_ok(), "{:?}", outcome.as_ref().err());
        if unmodified {
            // The valid conversation itself is served without error.
            prop_assert!(outcome.unwrap().is_ok());
        }
    }
}
