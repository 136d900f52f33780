//! The error type shared by every rnnlab crate.

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure an rnnlab operation reports instead of panicking.
///
/// Messages are lower-case, have no final period and name the operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An array had the wrong shape.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    Shape {
        /// The operation that checked the shape.
        op: String,
        /// What the operation needed.
        expected: String,
        /// What it was given.
        got: String,
    },
    /// A size or hyper-parameter is invalid.
    #[error("{op}: invalid configuration: {msg}")]
    Config {
        /// The operation or config.
        op: String,
        /// What is wrong.
        msg: String,
    },
    /// A value that must be finite was NaN or infinite.
    #[error("{op}: non-finite value in {what}")]
    NonFinite {
        /// The operation.
        op: String,
        /// Which input, parameter or output.
        what: String,
    },
    /// Reading or writing a file failed.
    #[error("{op}: i/o error on {path}: {source}")]
    Io {
        /// The operation.
        op: String,
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file or string did not have the expected format.
    #[error("{op}: bad format: {msg}")]
    Format {
        /// The operation.
        op: String,
        /// What is wrong.
        msg: String,
    },
}

impl Error {
    /// A [`Error::Shape`] error.
    pub fn shape(op: impl Into<String>, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Error::Shape { op: op.into(), expected: expected.into(), got: got.into() }
    }

    /// A [`Error::Config`] error.
    pub fn config(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { op: op.into(), msg: msg.into() }
    }

    /// A [`Error::NonFinite`] error.
    pub fn non_finite(op: impl Into<String>, what: impl Into<String>) -> Self {
        Error::NonFinite { op: op.into(), what: what.into() }
    }

    /// A [`Error::Format`] error.
    pub fn format(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Format { op: op.into(), msg: msg.into() }
    }

    /// An [`Error::Io`] error.
    pub fn io(op: impl Into<String>, path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { op: op.into(), path: path.into(), source }
    }
}
