//! What every case module uses.

pub use std::collections::HashMap;
pub use std::time::{Duration, Instant};

pub use anyhow::{bail, ensure, Context, Result};
pub use cri_api::v1 as cri;
pub use tonic::Code;

pub use crate::images;
pub use crate::runner::check::{
    call, call_err, describe, ensure_code, ensure_code_on, ensure_contains, ensure_create_fails,
};
pub use crate::runner::logs::{self, LogRecord, Stream};
pub use crate::runner::{
    host, image_spec, skip, strings, Case, Container, Ctx, Group, Outcome, Sandbox,
};
pub use crate::{case, ensure_eq};

/// The end of a case that passed.
pub fn pass() -> Result<Outcome> {
    Ok(Outcome::Pass)
}

/// Nanoseconds since the epoch, as CRI timestamps are.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}
