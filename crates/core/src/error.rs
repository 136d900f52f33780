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

    /// The error of a part, reported by the enclosing call `op` under the `field` the user
    /// wrote: a [`Error::Config`] "hidden_dim = 10⁹ is over the limit …" of `ModelConfig`
    /// becomes "model.hidden_dim = 10⁹ is over the limit …" of `TrainConfig`. A message that
    /// does not start with a field name is put after `field: `.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_core::Error;
    /// let e = Error::config("AdamConfig", "eps must be > 0, got 0").within("TrainConfig", "optimizer");
    /// assert_eq!(e.to_string(), "TrainConfig: invalid configuration: optimizer.eps must be > 0, got 0");
    /// let e = Error::config("Init::Uniform", "bad uniform range").within("LstmConfig::init", "w_ih_init");
    /// assert_eq!(e.to_string(), "LstmConfig::init: invalid configuration: w_ih_init: bad uniform range");
    /// ```
    #[must_use]
    pub fn within(self, op: &str, field: &str) -> Self {
        let join = |msg: String| {
            if starts_with_field(&msg) { format!("{field}.{msg}") } else { format!("{field}: {msg}") }
        };
        match self {
            Error::Config { msg, .. } => Error::Config { op: op.into(), msg: join(msg) },
            Error::Format { msg, .. } => Error::Format { op: op.into(), msg: join(msg) },
            Error::NonFinite { what, .. } => Error::NonFinite { op: op.into(), what: format!("{field}: {what}") },
            Error::Shape { op: inner, expected, got } => {
                Error::Shape { op: format!("{op}: {field} ({inner})"), expected, got }
            }
            Error::Io { op: inner, path, source } => Error::Io { op: format!("{op}: {field} ({inner})"), path, source },
        }
    }

    /// An [`Error::Io`] error.
    pub fn io(op: impl Into<String>, path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { op: op.into(), path: path.into(), source }
    }
}

/// Whether `msg` starts with a field name: a snake-case identifier followed by " must ",
/// " = ", "." or ": " (the forms of rnnlab's validation messages).
fn starts_with_field(msg: &str) -> bool {
    let end = msg.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(msg.len());
    let (name, rest) = msg.split_at(end);
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && [" must ", " = ", ".", ": "].iter().any(|p| rest.starts_with(p))
}
