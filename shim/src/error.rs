//! crius's error type and its one mapping to gRPC status codes.

use runtime_backends::BackendError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A create failed, and undoing some of its steps failed too (see `crate::cleanup`).
    #[error("{cause}; undoing it failed too: {}", cleanup.join("; "))]
    CleanupFailed {
        cause: Box<Error>,
        cleanup: Vec<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn internal(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }

    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) | Error::Backend(BackendError::NotFound { .. }) => true,
            Error::CleanupFailed { cause, .. } => cause.is_not_found(),
            _ => false,
        }
    }
}

impl From<crate::security::SpecError> for Error {
    fn from(err: crate::security::SpecError) -> Self {
        use crate::security::SpecError;
        match err {
            SpecError::InvalidArgument(m) => Error::InvalidArgument(m),
            SpecError::FailedPrecondition(m) => Error::FailedPrecondition(m),
            SpecError::NotFound(m) => Error::NotFound(m),
        }
    }
}

impl From<crate::cgroups::CgroupError> for Error {
    fn from(err: crate::cgroups::CgroupError) -> Self {
        Error::InvalidArgument(err.to_string())
    }
}

impl Error {
    /// The gRPC code this error answers with.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Internal(_) => Code::Internal,
            // The caller is told why the create failed; the cleanup's failure rides along.
            Error::CleanupFailed { cause, .. } => cause.code(),
            Error::Backend(e) => match e {
                BackendError::Unavailable { .. } => Code::Unavailable,
                BackendError::NotFound { .. } => Code::NotFound,
                BackendError::AlreadyExists { .. } => Code::AlreadyExists,
                BackendError::FailedPrecondition(_) => Code::FailedPrecondition,
                BackendError::InvalidArgument(_) => Code::InvalidArgument,
                BackendError::DeadlineExceeded(_) => Code::DeadlineExceeded,
                BackendError::Unauthenticated(_) => Code::Unauthenticated,
                // An engine answer crius cannot classify (containerd sends these as Unknown,
                // e.g. runc failing to start an exec's command) is passed on as Unknown:
                // Internal would claim that crius itself broke.
                BackendError::Engine { .. } => Code::Unknown,
                BackendError::Io { .. } => Code::Internal,
            },
        }
    }
}

/// The longest message a status carries, in bytes. A status travels in HTTP/2 headers
/// (`grpc-message`, percent-encoded): one that echoes a 1 MiB id back overflows the client's
/// header list limit (16 KiB in h2), and the client then loses the whole connection, which
/// kubelet shares between all its calls, instead of reading the code.
pub const MAX_STATUS_MESSAGE: usize = 1024;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let mut message = err.to_string();
        if message.len() > MAX_STATUS_MESSAGE {
            let mut end = MAX_STATUS_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        tonic::Status::new(err.code(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_message_is_cut_to_fit_a_header_and_keeps_its_code() {
        let huge = format!("pod sandbox {:?} not found", "é".repeat(1 << 20));
        let status = tonic::Status::from(Error::NotFound(huge.clone()));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().len() <= MAX_STATUS_MESSAGE + "…".len());
        assert!(huge.starts_with(status.message().trim_end_matches('…')));
        let short = tonic::Status::from(Error::InvalidArgument("bad".into()));
        assert_eq!(short.message(), "bad");
    }
}
