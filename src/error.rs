//! One error type for the library: every variant says which file, key or field is at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing, unknown or impossible.
    #[error("{file}: `{key}`: {reason}")]
    Config {
        file: String,
        key: String,
        reason: String,
    },
    /// A data file or folder could not be used.
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A setting that cannot be honoured, with its key as data (the experiment file is named
    /// when the error reaches the file's validation: it becomes [`Error::Config`]).
    #[error("`{key}`: {reason}")]
    Param { key: String, reason: String },
    /// A parameter combination that cannot be honoured (named in the message).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn param(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Param {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub fn config(
        file: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}
