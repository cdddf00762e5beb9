//! SPDY/3.1 as kubelet and kubectl speak it for `exec`, `attach` and `port-forward`
//! (draft 3.1 of the SPDY protocol; the Kubernetes streaming protocols run on top).
//!
//! - [`frame`]: the frame codec (a bounded decoder over a `BytesMut`).
//! - [`headers`]: header blocks and their per-connection zlib contexts.
//! - [`Connection`]: an async multiplexed connection over any byte stream, in the server or
//!   the client role, with bounded buffering per stream and no SPDY flow control (Go's
//!   client ignores WINDOW_UPDATE; enforcing windows would stall transfers at 64 KiB).

mod conn;
mod error;
pub mod frame;
pub mod headers;
mod stream;

pub use conn::{Connection, Incoming, Limits, Role};
pub use error::{Error, Side};
pub use frame::{GoAwayStatus, RstStatus};
pub use headers::Headers;
pub use stream::{RecvHalf, SendHalf, Stream, MAX_DATA_CHUNK};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
