//! The library's one error type. Variants are grouped by what the caller does next: fix the
//! input, accept the refusal, re-read and retry, or stop and investigate. Each maps to one exit
//! code of product.md section 7.

use std::path::PathBuf;

use crate::domain::{Position, Rejection};

/// Everything that can go wrong in ordo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is malformed: bad JSON, a schema violation, a bad time, an over-limit batch.
    /// Fix the input; nothing was written. Exit 2.
    #[error("{0}")]
    InvalidInput(String),

    /// An order rule refused the event (product.md section 3). Nothing was written. Exit 3.
    #[error("{0}")]
    Rejected(Rejection),

    /// `expected_version` did not match, or an event id was reused with other content. Re-read
    /// the order and decide again. Exit 4.
    #[error("{0}")]
    Conflict(String),

    /// The ledger, an order or a file does not exist. Exit 1.
    #[error("{0}")]
    NotFound(String),

    /// Another process has the ledger open for writing. Wait for it, or use its server. Exit 1.
    #[error("{}", in_use(path, server.as_deref()))]
    LedgerInUse {
        /// The ledger directory.
        path: PathBuf,
        /// The URL of the `ordo serve` holding it, when that is what holds it.
        server: Option<String>,
    },

    /// RocksDB or the file system failed. Nothing acknowledged is lost; the operation may be
    /// retried (with the same event ids) once the cause is fixed. Exit 1.
    #[error("storage error: {0}")]
    Storage(String),

    /// Reading or writing a file the user named failed. Exit 1.
    // Not a `#[source]`: the message already includes it, and printing the chain would
    // say it twice.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },

    /// Stored data fails its checks: a checksum, decoding, a gap, a broken hash chain. Stop and
    /// investigate; never "repair" an audit ledger silently. Exit 5.
    #[error("verification failed at position {position}: {reason}")]
    Corruption {
        /// The first position found bad.
        position: Position,
        /// What is wrong there.
        reason: String,
    },

    /// A file of the ledger is damaged: RocksDB found a checksum or format error in a table
    /// or the MANIFEST, or a write-ahead log cannot be replayed whole. Nothing was changed
    /// (damaged files are never deleted or cut short). Restore from a replica or an export,
    /// or see `ordo recover` (docs/reliability.md). Exit 5.
    #[error("the ledger is damaged: {0}")]
    Damaged(String),

    /// A proof, checkpoint or evidence bundle does not hold (`ordo prove check`): what it
    /// claims is not shown by what it carries. Distrust it. Exit 5.
    #[error("the proof does not hold: {0}")]
    Unproven(String),

    /// An `ordo serve` answered with an error (`kind` is one of this enum's kinds, or
    /// `unauthorized`, `unavailable`), or could not be reached. Exit code by kind.
    #[error("{message}")]
    Remote {
        /// The error kind the server named.
        kind: String,
        /// Its message.
        message: String,
    },

    /// An error tied to one line of NDJSON input (1-based).
    #[error("line {line}: {error}")]
    AtLine {
        /// The line number, from 1.
        line: u64,
        /// What is wrong with it.
        error: Box<Error>,
    },
}

impl Error {
    /// A short stable name for the kind of error, used in `{"error":{"kind":..}}`.
    pub fn kind(&self) -> &str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::Rejected(_) => "rejected",
            Error::Conflict(_) => "conflict",
            Error::NotFound(_) => "not_found",
            Error::LedgerInUse { .. } => "ledger_in_use",
            Error::Storage(_) => "storage",
            Error::Io { .. } => "io",
            Error::Corruption { .. } | Error::Damaged(_) | Error::Unproven(_) => "corruption",
            Error::Remote { kind, .. } => kind,
            Error::AtLine { error, .. } => error.kind(),
        }
    }

    /// The process exit code of product.md section 7.
    pub fn exit_code(&self) -> u8 {
        exit_code_of(self.kind())
    }

    /// Ties this error to a line of input.
    pub fn at_line(self, line: u64) -> Error {
        Error::AtLine {
            line,
            error: Box::new(self),
        }
    }

    /// An I/O error on a file the user named.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

/// The exit code of an error kind (product.md section 7); kinds a server adds
/// (`unauthorized`, `unavailable`) and unknown ones are operational errors.
pub fn exit_code_of(kind: &str) -> u8 {
    match kind {
        "invalid_input" => 2,
        "rejected" => 3,
        "conflict" => 4,
        "corruption" => 5,
        _ => 1,
    }
}

fn in_use(path: &std::path::Path, server: Option<&str>) -> String {
    match server {
        Some(url) => format!(
            "ledger {} is held by `ordo serve` at {url}; write through it with --server {url} (or ORDO_SERVER={url})",
            path.display()
        ),
        None => format!(
            "ledger {} is in use by another process; stop it or wait for it to finish",
            path.display()
        ),
    }
}

impl From<crate::domain::FieldError> for Error {
    fn from(e: crate::domain::FieldError) -> Error {
        Error::InvalidInput(e.to_string())
    }
}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Error {
        Error::Rejected(r)
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
