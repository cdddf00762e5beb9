//! Exec, Attach and PortForward (DESIGN.md decision 11).
//!
//! The three RPCs only validate their request and cache it under a random single-use token;
//! they answer with an absolute URL on crius's streaming server. kubelet (or a direct client)
//! then upgrades a connection to that URL to SPDY/3.1 or WebSocket, and the session runs:
//!
//! - `tokens`: the cached requests (single use, one minute, a cap on how many wait);
//! - `server`: the HTTP server, the routes and the protocol negotiation;
//! - `session`: exec, attach and port-forward in terms of byte channels, whatever the wire;
//! - `ws` and `spdy`: the two wires;
//! - `dial`: reaching a port inside a pod's network namespace;
//! - `tls`: the optional certificate.

mod dial;
mod server;
mod session;
mod spdy;
mod status;
mod tls;
mod tokens;
mod ws;

pub use server::{Endpoint, Serving};
pub use tokens::{Pending, Tokens, MAX_PENDING, TOKEN_TTL};
