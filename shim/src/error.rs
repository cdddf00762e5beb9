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

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        tonic::Status::new(err.code(), err.to_string())
    }
}
