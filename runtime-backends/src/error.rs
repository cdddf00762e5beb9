use thiserror::Error;

/// Errors of a backend call, in terms the shim can map to gRPC codes.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The engine cannot be reached (socket missing, connection refused, engine restarting).
    #[error("{engine} is unavailable: {message}")]
    Unavailable {
        engine: &'static str,
        message: String,
    },
    /// The object does not exist in the engine.
    #[error("{kind} {id:?} not found in the engine")]
    NotFound { kind: &'static str, id: String },
    /// The object already exists in the engine.
    #[error("{kind} {id:?} already exists in the engine")]
    AlreadyExists { kind: &'static str, id: String },
    /// The object is in a state that does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request was malformed (bad spec, bad image data).
    #[error("{0}")]
    InvalidArgument(String),
    /// The call ran past its deadline.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A registry refused the credentials given, or wanted some and got none.
    #[error("{0}")]
    Unauthenticated(String),
    /// Anything else the engine answered.
    #[error("{engine}: {message}")]
    Engine {
        engine: &'static str,
        message: String,
    },
    /// Local I/O (FIFOs, files) failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BackendError::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the error says the object is missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;
