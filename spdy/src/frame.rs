//! SPDY/3.1 frames on the wire: the 8-byte common header, the control frames this crate
//! understands and DATA frames. Header blocks stay compressed here (`headers.rs` owns the
//! per-connection zlib contexts, which must see the blocks in wire order).
//!
//! Layout (draft 3.1, section 2.2): a control frame starts with the control bit, a 15-bit
//! version and a 16-bit type; a DATA frame with a 0 bit and a 31-bit stream id. Both then
//! carry 8 bits of flags and a 24-bit payload length.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only protocol version spoken.
pub const VERSION: u16 = 3;
/// Length of the common frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD: usize = 0x00FF_FFFF;
/// The default limit on one frame's payload (`Decoder::new`). The wire allows 16 MiB; no
/// peer this crate serves sends more than a few tens of KiB at once.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// FIN: the sender sends nothing more on this stream (DATA, SYN_STREAM, SYN_REPLY, HEADERS).
pub const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL (SYN_STREAM): the receiver must not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const STREAM_ID_MASK: u32 = 0x7FFF_FFFF;

/// A RST_STREAM status code (section 2.6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    pub const PROTOCOL_ERROR: RstStatus = RstStatus(1);
    pub const INVALID_STREAM: RstStatus = RstStatus(2);
    pub const REFUSED_STREAM: RstStatus = RstStatus(3);
    pub const UNSUPPORTED_VERSION: RstStatus = RstStatus(4);
    pub const CANCEL: RstStatus = RstStatus(5);
    pub const INTERNAL_ERROR: RstStatus = RstStatus(6);
    pub const FLOW_CONTROL_ERROR: RstStatus = RstStatus(7);
    pub const STREAM_IN_USE: RstStatus = RstStatus(8);
    pub const STREAM_ALREADY_CLOSED: RstStatus = RstStatus(9);
    pub const FRAME_TOO_LARGE: RstStatus = RstStatus(11);

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "PROTOCOL_ERROR",
            2 => "INVALID_STREAM",
            3 => "REFUSED_STREAM",
            4 => "UNSUPPORTED_VERSION",
            5 => "CANCEL",
            6 => "INTERNAL_ERROR",
            7 => "FLOW_CONTROL_ERROR",
            8 => "STREAM_IN_USE",
            9 => "STREAM_ALREADY_CLOSED",
            10 => "INVALID_CREDENTIALS",
            11 => "FRAME_TOO_LARGE",
            _ => return None,
        })
    }
}

impl std::fmt::Display for RstStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

/// A GOAWAY status code (section 2.6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    pub const OK: GoAwayStatus = GoAwayStatus(0);
    pub const PROTOCOL_ERROR: GoAwayStatus = GoAwayStatus(1);
    pub const INTERNAL_ERROR: GoAwayStatus = GoAwayStatus(2);
}

impl std::fmt::Display for GoAwayStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("OK"),
            1 => f.write_str("PROTOCOL_ERROR"),
            2 => f.write_str("INTERNAL_ERROR"),
            other => write!(f, "status {other}"),
        }
    }
}

/// One SETTINGS entry: 8 bits of flags, a 24-bit id and a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A decoded frame. Header blocks are the compressed bytes as they were on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        /// 3 bits, 0 is the highest priority.
        priority: u8,
        /// `FLAG_FIN` and/or `FLAG_UNIDIRECTIONAL`.
        flags: u8,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: RstStatus,
    },
    Settings {
        /// FLAG_SETTINGS_CLEAR_SETTINGS.
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: GoAwayStatus,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
}

/// Why bytes are not a valid frame. Every variant ends the connection: the peer and we no
/// longer agree on where frames start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("control frame of version {0}; only SPDY/3 is spoken")]
    UnsupportedVersion(u16),
    #[error("frame payload of {length} bytes exceeds the limit of {limit}")]
    TooLarge { length: usize, limit: usize },
    #[error("{kind} frame with a payload of {length} bytes")]
    BadLength { kind: &'static str, length: usize },
    #[error("{0} frame for stream 0")]
    ZeroStreamId(&'static str),
    #[error("RST_STREAM with status 0")]
    ZeroRstStatus,
    #[error("the connection ended in the middle of a frame")]
    Truncated,
}

impl Frame {
    /// The frame's name as the spec writes it (for logs and errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::SynStream { .. } => "SYN_STREAM",
            Frame::SynReply { .. } => "SYN_REPLY",
            Frame::RstStream { .. } => "RST_STREAM",
            Frame::Settings { .. } => "SETTINGS",
            Frame::Ping { .. } => "PING",
            Frame::GoAway { .. } => "GOAWAY",
            Frame::Headers { .. } => "HEADERS",
            Frame::WindowUpdate { .. } => "WINDOW_UPDATE",
            Frame::Data { .. } => "DATA",
        }
    }

    /// Appends the frame to `dst`. Fails only when a payload does not fit in 24 bits.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                header_block,
            } => {
                control_header(dst, TYPE_SYN_STREAM, *flags, 10 + header_block.len())?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32(associated_to & STREAM_ID_MASK);
                dst.put_u8((priority & 0x07) << 5);
                dst.put_u8(0); // credential slot: unused
                dst.put_slice(header_block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => {
                control_header(dst, TYPE_SYN_REPLY, fin_flag(*fin), 4 + header_block.len())?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(dst, TYPE_RST_STREAM, 0, 8)?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32(status.0);
            }
            Frame::Settings { clear, entries } => {
                control_header(dst, TYPE_SETTINGS, u8::from(*clear), 4 + 8 * entries.len())?;
                dst.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
                for entry in entries {
                    dst.put_u32((u32::from(entry.flags) << 24) | (entry.id & 0x00FF_FFFF));
                    dst.put_u32(entry.value);
                }
            }
            Frame::Ping { id } => {
                control_header(dst, TYPE_PING, 0, 4)?;
                dst.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(dst, TYPE_GOAWAY, 0, 8)?;
                dst.put_u32(last_good_stream_id & STREAM_ID_MASK);
                dst.put_u32(status.0);
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                control_header(dst, TYPE_HEADERS, fin_flag(*fin), 4 + header_block.len())?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_slice(header_block);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(dst, TYPE_WINDOW_UPDATE, 0, 8)?;
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32(delta & 0x7FFF_FFFF);
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                encode_data_header(dst, *stream_id, *fin, data.len())?;
                dst.put_slice(data);
            }
        }
        Ok(())
    }
}

/// Appends the 8-byte header of a DATA frame whose payload is `len` bytes long (the caller
/// appends the payload).
pub fn encode_data_header(
    dst: &mut BytesMut,
    stream_id: u32,
    fin: bool,
    len: usize,
) -> Result<(), FrameError> {
    let len = payload_len("DATA", len)?;
    dst.reserve(HEADER_LEN);
    dst.put_u32(stream_id & STREAM_ID_MASK);
    dst.put_u32((u32::from(fin_flag(fin)) << 24) | len);
    Ok(())
}

fn fin_flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

fn payload_len(kind: &'static str, len: usize) -> Result<u32, FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge {
            length: len,
            limit: MAX_PAYLOAD,
        });
    }
    u32::try_from(len).map_err(|_| FrameError::BadLength { kind, length: len })
}

fn control_header(dst: &mut BytesMut, kind: u16, flags: u8, len: usize) -> Result<(), FrameError> {
    let len = payload_len("control", len)?;
    dst.reserve(HEADER_LEN + len as usize);
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32((u32::from(flags) << 24) | len);
    Ok(())
}

/// Splits frames off a receive buffer.
///
/// Every malformed input is an `Err`; nothing is buffered beyond one frame of at most
/// `max_frame` payload bytes (a larger frame is refused from its header alone), and unknown
/// control frame types are skipped as they arrive, whatever their length (section 2.2.1).
#[derive(Debug)]
pub struct Decoder {
    max_frame: usize,
    /// Bytes of an unknown control frame still to be discarded.
    skip: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    /// A decoder that refuses frames whose payload is longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Decoder { max_frame, skip: 0 }
    }

    /// True when no partial frame is pending: `buf` is empty and nothing is being skipped.
    /// The end of the input anywhere else is `FrameError::Truncated`.
    pub fn at_frame_boundary(&self, buf: &BytesMut) -> bool {
        self.skip == 0 && buf.is_empty()
    }

    /// The next complete frame in `buf`, consuming its bytes; `Ok(None)` when more bytes are
    /// needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            if buf.len() < HEADER_LEN {
                return Ok(None);
            }
            let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let flags = buf[4];
            let length = usize::from(buf[5]) << 16 | usize::from(buf[6]) << 8 | usize::from(buf[7]);
            if first & 0x8000_0000 == 0 {
                self.check_length(length)?;
                if buf.len() < HEADER_LEN + length {
                    return Ok(None);
                }
                let stream_id = first & STREAM_ID_MASK;
                if stream_id == 0 {
                    return Err(FrameError::ZeroStreamId("DATA"));
                }
                buf.advance(HEADER_LEN);
                let data = buf.split_to(length).freeze();
                return Ok(Some(Frame::Data {
                    stream_id,
                    fin: flags & FLAG_FIN != 0,
                    data,
                }));
            }
            let version = ((first >> 16) & 0x7FFF) as u16;
            if version != VERSION {
                return Err(FrameError::UnsupportedVersion(version));
            }
            let kind = (first & 0xFFFF) as u16;
            if !matches!(
                kind,
                TYPE_SYN_STREAM
                    | TYPE_SYN_REPLY
                    | TYPE_RST_STREAM
                    | TYPE_SETTINGS
                    | TYPE_PING
                    | TYPE_GOAWAY
                    | TYPE_HEADERS
                    | TYPE_WINDOW_UPDATE
            ) {
                // Section 2.2.1: a control frame of an unknown type must be ignored.
                tracing::trace!(kind, length, "skipping an unknown control frame");
                buf.advance(HEADER_LEN);
                self.skip = length;
                continue;
            }
            self.check_length(length)?;
            if buf.len() < HEADER_LEN + length {
                return Ok(None);
            }
            buf.advance(HEADER_LEN);
            let payload = buf.split_to(length).freeze();
            return parse_control(kind, flags, payload).map(Some);
        }
    }

    fn check_length(&self, length: usize) -> Result<(), FrameError> {
        if length > self.max_frame {
            return Err(FrameError::TooLarge {
                length,
                limit: self.max_frame,
            });
        }
        Ok(())
    }
}

fn need(
    kind: &'static str,
    payload: &Bytes,
    exact: Option<usize>,
    min: usize,
) -> Result<(), FrameError> {
    let ok = match exact {
        Some(n) => payload.len() == n,
        None => payload.len() >= min,
    };
    if ok {
        Ok(())
    } else {
        Err(FrameError::BadLength {
            kind,
            length: payload.len(),
        })
    }
}

fn stream_id(kind: &'static str, payload: &mut Bytes) -> Result<u32, FrameError> {
    let id = payload.get_u32() & STREAM_ID_MASK;
    if id == 0 {
        return Err(FrameError::ZeroStreamId(kind));
    }
    Ok(id)
}

/// Parses a control frame of a known type whose whole payload is at hand.
fn parse_control(kind: u16, flags: u8, mut payload: Bytes) -> Result<Frame, FrameError> {
    let fin = flags & FLAG_FIN != 0;
    Ok(match kind {
        TYPE_SYN_STREAM => {
            need("SYN_STREAM", &payload, None, 10)?;
            let stream_id = stream_id("SYN_STREAM", &mut payload)?;
            let associated_to = payload.get_u32() & STREAM_ID_MASK;
            let priority = payload.get_u8() >> 5;
            let _slot = payload.get_u8();
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags: flags & (FLAG_FIN | FLAG_UNIDIRECTIONAL),
                header_block: payload,
            }
        }
        TYPE_SYN_REPLY => {
            need("SYN_REPLY", &payload, None, 4)?;
            let stream_id = stream_id("SYN_REPLY", &mut payload)?;
            Frame::SynReply {
                stream_id,
                fin,
                header_block: payload,
            }
        }
        TYPE_RST_STREAM => {
            need("RST_STREAM", &payload, Some(8), 8)?;
            let stream_id = stream_id("RST_STREAM", &mut payload)?;
            let status = payload.get_u32();
            if status == 0 {
                return Err(FrameError::ZeroRstStatus);
            }
            Frame::RstStream {
                stream_id,
                status: RstStatus(status),
            }
        }
        TYPE_SETTINGS => {
            need("SETTINGS", &payload, None, 4)?;
            let count = payload.get_u32() as usize;
            // Checked before allocating: the count must describe exactly the payload.
            if count.checked_mul(8) != Some(payload.len()) {
                return Err(FrameError::BadLength {
                    kind: "SETTINGS",
                    length: payload.len() + 4,
                });
            }
            let entries = (0..count)
                .map(|_| {
                    let flags_and_id = payload.get_u32();
                    Setting {
                        flags: (flags_and_id >> 24) as u8,
                        id: flags_and_id & 0x00FF_FFFF,
                        value: payload.get_u32(),
                    }
                })
                .collect();
            Frame::Settings {
                clear: flags & 0x01 != 0,
                entries,
            }
        }
        TYPE_PING => {
            need("PING", &payload, Some(4), 4)?;
            Frame::Ping {
                id: payload.get_u32(),
            }
        }
        TYPE_GOAWAY => {
            need("GOAWAY", &payload, Some(8), 8)?;
            Frame::GoAway {
                last_good_stream_id: payload.get_u32() & STREAM_ID_MASK,
                status: GoAwayStatus(payload.get_u32()),
            }
        }
        TYPE_HEADERS => {
            need("HEADERS", &payload, None, 4)?;
            let stream_id = stream_id("HEADERS", &mut payload)?;
            Frame::Headers {
                stream_id,
                fin,
                header_block: payload,
            }
        }
        _ => {
            need("WINDOW_UPDATE", &payload, Some(8), 8)?;
            // Stream 0 is the session window in SPDY/3.1: allowed.
            Frame::WindowUpdate {
                stream_id: payload.get_u32() & STREAM_ID_MASK,
                delta: payload.get_u32() & 0x7FFF_FFFF,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf).unwrap();
        let mut decoder = Decoder::default();
        let decoded = decoder.decode(&mut buf).unwrap();
        assert_eq!(decoded.as_ref(), Some(&frame));
        assert!(decoder.at_frame_boundary(&buf), "bytes left over");
    }

    #[test]
    fn every_frame_type_survives_a_round_trip() {
        let block = Bytes::from_static(b"\x78\xbb\xe3\xc6\xa7\xc2 not really zlib");
        for frame in [
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                header_block: block.clone(),
            },
            Frame::SynStream {
                stream_id: 0x7FFF_FFFF,
                associated_to: 7,
                priority: 7,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                header_block: Bytes::new(),
            },
            Frame::SynReply {
                stream_id: 2,
                fin: true,
                header_block: block.clone(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: RstStatus::CANCEL,
            },
            Frame::Settings {
                clear: true,
                entries: vec![
                    Setting {
                        flags: 1,
                        id: 7,
                        value: 65536,
                    },
                    Setting {
                        flags: 0,
                        id: 4,
                        value: 100,
                    },
                ],
            },
            Frame::Settings {
                clear: false,
                entries: vec![],
            },
            Frame::Ping { id: 0xFFFF_FFFF },
            Frame::GoAway {
                last_good_stream_id: 9,
                status: GoAwayStatus::PROTOCOL_ERROR,
            },
            Frame::Headers {
                stream_id: 5,
                fin: false,
                header_block: block,
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1 << 20,
            },
            Frame::Data {
                stream_id: 11,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 12,
                fin: false,
                data: Bytes::new(),
            },
        ] {
            round_trip(frame);
        }
    }

    #[test]
    fn hand_built_frames_from_the_spec_layout_decode() {
        // RST_STREAM (section 2.6.3): control bit + version 3, type 3, flags 0, length 8,
        // stream id 5, status 5 (CANCEL).
        let mut buf = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
                0x00, 0x05,
            ][..],
        );
        // DATA (section 2.2.2): stream id 3, FIN, length 3, "abc".
        buf.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, b'a', b'b', b'c',
        ]);
        // SYN_STREAM (section 2.6.1): stream 1, associated 0, priority 2 (bits 0b010 << 5),
        // slot 0, a 2-byte header block.
        buf.extend_from_slice(&[
            0x80, 0x03, 0x00, 0x01, 0x02, 0x00, 0x00, 0x0C, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x00, 0x40, 0x00, 0xAB, 0xCD,
        ]);
        let mut decoder = Decoder::default();
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Frame::RstStream {
                stream_id: 5,
                status: RstStatus::CANCEL
            })
        );
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::from_static(b"abc")
            })
        );
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 2,
                flags: FLAG_UNIDIRECTIONAL,
                header_block: Bytes::from_static(&[0xAB, 0xCD]),
            })
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn encoding_matches_the_spec_layout() {
        let mut buf = BytesMut::new();
        Frame::Ping { id: 0x0102_0304 }.encode(&mut buf).unwrap();
        assert_eq!(
            &buf[..],
            &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04]
        );
    }

    #[test]
    fn a_frame_split_across_reads_waits_for_its_last_byte() {
        let mut whole = BytesMut::new();
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"0123456789"),
        }
        .encode(&mut whole)
        .unwrap();
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let frame = decoder.decode(&mut buf).unwrap();
            assert_eq!(frame.is_some(), i == whole.len() - 1, "at byte {i}");
        }
    }

    #[test]
    fn unknown_control_frames_are_skipped_even_when_split() {
        let mut decoder = Decoder::new(16);
        // Type 0x0A (the old CREDENTIAL frame), 40 bytes long: longer than the limit,
        // which applies to known frames only.
        let mut buf = BytesMut::from(&[0x80, 0x03, 0x00, 0x0A, 0x00, 0x00, 0x00, 40][..]);
        buf.extend_from_slice(&[0xEE; 20]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(!decoder.at_frame_boundary(&buf));
        buf.extend_from_slice(&[0xEE; 20]);
        Frame::Ping { id: 2 }.encode(&mut buf).unwrap();
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(Frame::Ping { id: 2 })
        );
        assert!(decoder.at_frame_boundary(&buf));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: &[(&[u8], FrameError)] = &[
            (
                &[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0],
                FrameError::UnsupportedVersion(2),
            ),
            (
                &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 0],
                FrameError::BadLength {
                    kind: "PING",
                    length: 3,
                },
            ),
            (
                &[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
                FrameError::ZeroRstStatus,
            ),
            (
                &[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
                FrameError::ZeroStreamId("RST_STREAM"),
            ),
            (&[0, 0, 0, 0, 0, 0, 0, 0], FrameError::ZeroStreamId("DATA")),
            (
                &[0x80, 0x03, 0x00, 0x04, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0],
                FrameError::BadLength {
                    kind: "SETTINGS",
                    length: 8,
                },
            ),
            (
                &[
                    0x80, 0x03, 0x00, 0x01, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0,
                ],
                FrameError::BadLength {
                    kind: "SYN_STREAM",
                    length: 9,
                },
            ),
        ];
        for (bytes, expected) in cases {
            let mut buf = BytesMut::from(*bytes);
            assert_eq!(
                Decoder::default().decode(&mut buf).as_ref(),
                Err(expected),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header() {
        let mut decoder = Decoder::new(1024);
        // Only the header: the payload is never waited for.
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0, 0, 0x04, 0x01][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge {
                length: 1025,
                limit: 1024
            })
        );
    }

    fn arbitrary_frame() -> impl Strategy<Value = Frame> {
        let id = 1u32..=0x7FFF_FFFF;
        let block = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        prop_oneof![
            (
                id.clone(),
                0u32..=0x7FFF_FFFF,
                0u8..8,
                0u8..4,
                block.clone()
            )
                .prop_map(
                    |(stream_id, associated_to, priority, flags, header_block)| Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        flags,
                        header_block
                    }
                ),
            (id.clone(), any::<bool>(), block.clone()).prop_map(
                |(stream_id, fin, header_block)| {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        header_block,
                    }
                }
            ),
            (id.clone(), 1u32..).prop_map(|(stream_id, status)| Frame::RstStream {
                stream_id,
                status: RstStatus(status)
            }),
            any::<u32>().prop_map(|id| Frame::Ping { id }),
            (0u32..=0x7FFF_FFFF, any::<u32>()).prop_map(|(last_good_stream_id, status)| {
                Frame::GoAway {
                    last_good_stream_id,
                    status: GoAwayStatus(status),
                }
            }),
            (id.clone(), any::<bool>(), block.clone()).prop_map(
                |(stream_id, fin, header_block)| {
                    Frame::Headers {
                        stream_id,
                        fin,
                        header_block,
                    }
                }
            ),
            (0u32..=0x7FFF_FFFF, 0u32..=0x7FFF_FFFF)
                .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
            (id, any::<bool>(), block).prop_map(|(stream_id, fin, data)| Frame::Data {
                stream_id,
                fin,
                data
            }),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_frames_round_trip(frame in arbitrary_frame()) {
            let mut buf = BytesMut::new();
            frame.encode(&mut buf).unwrap();
            let decoded = Decoder::default().decode(&mut buf).unwrap();
            prop_assert_eq!(decoded, Some(frame));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            chunk in 1usize..64,
        ) {
            let mut decoder = Decoder::new(256);
            let mut buf = BytesMut::new();
            'feed: for piece in bytes.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                // Never more than one frame of at most 256 payload bytes is held back.
                prop_assert!(buf.len() < HEADER_LEN + 256 + chunk);
            }
        }

        #[test]
        fn mutated_valid_frames_never_panic(
            frames in proptest::collection::vec(arbitrary_frame(), 1..6),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut wire = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut wire).unwrap();
            }
            let mut wire = wire.to_vec();
            for (index, value) in flips {
                let i = index.index(wire.len());
                wire[i] = value;
            }
            let mut buf = BytesMut::from(&wire[..]);
            let mut decoder = Decoder::default();
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        }
    }
}
