//! The crate's error type.

use std::io;
use std::sync::Arc;

use crate::frame::{FrameError, GoAwayStatus, RstStatus};
use crate::headers::HeaderError;

/// Which side reset a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Local,
    Peer,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Local => "local side",
            Side::Peer => "peer",
        })
    }
}

/// What went wrong on a connection or a stream. `Clone`, so that every stream of a failed
/// connection and every `Connection::closed` caller can be told the same cause.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad header block: {0}")]
    Headers(#[from] HeaderError),
    #[error("SYN_STREAM for stream {id}: {why}")]
    BadStreamId { id: u32, why: &'static str },
    #[error("the peer opened more than {0} streams at once")]
    TooManyStreams(usize),
    #[error("stream {id} was reset by the {by}: {status}")]
    Reset {
        id: u32,
        status: RstStatus,
        by: Side,
    },
    #[error("stream {0} is not open")]
    UnknownStream(u32),
    #[error("stream {0} was already replied to, or was opened by this side")]
    CannotReply(u32),
    #[error("stream {0} was opened by the peer: there is no reply to wait for")]
    NoReplyExpected(u32),
    #[error("stream {0}: SYN_REPLY must be sent before data")]
    NotReplied(u32),
    #[error("the peer sent GOAWAY ({0}): no new streams")]
    GoneAway(GoAwayStatus),
    #[error("all stream ids of this connection are used")]
    IdsExhausted,
    #[error("I/O: {0}")]
    Io(Arc<io::Error>),
    #[error("the connection is closed")]
    Closed,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// True for errors that are the peer's protocol violations: they end the connection
    /// with GOAWAY(PROTOCOL_ERROR).
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            Error::Frame(_)
                | Error::Headers(_)
                | Error::BadStreamId { .. }
                | Error::TooManyStreams(_)
        )
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io(inner) => inner.kind(),
            Error::Reset { .. } => io::ErrorKind::ConnectionReset,
            Error::Closed | Error::GoneAway(_) => io::ErrorKind::BrokenPipe,
            Error::NotReplied(_) => io::ErrorKind::InvalidInput,
            Error::Frame(_) | Error::Headers(_) | Error::BadStreamId { .. } => {
                io::ErrorKind::InvalidData
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
