//! The errors a user sees at the top level, and the exit code each maps to.

use std::path::PathBuf;

/// Exit status: 0 all good, 1 something failed, 2 usage/configuration/script-syntax error,
/// 3 changes pending under `--expect-no-changes`, 130 cancelled by Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    ChangesPending = 3,
    Cancelled = 130,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration problems: every one found, each naming its key and where it came from.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),

    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },

    #[error("{0}")]
    Usage(String),

    /// A script failed; the diagnostic is already rendered (file:line:col, source line, caret).
    #[error("{rendered}")]
    Script { rendered: String, code: ExitCode },

    #[error("cancelled")]
    Cancelled,

    /// `--expect-no-changes` and the dry run planned changes.
    #[error("{0} change(s) pending (--expect-no-changes)")]
    ChangesPending(usize),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) | Error::Usage(_) => ExitCode::Usage,
            Error::Io { .. } => ExitCode::Failed,
            Error::Script { code, .. } => *code,
            Error::Cancelled => ExitCode::Cancelled,
            Error::ChangesPending(_) => ExitCode::ChangesPending,
        }
    }

    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::Io { path: path.into(), message: err.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
