//! The log's typed errors.

use spool_batch::BatchError;
use spool_types::ErrorCode;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the log, each with a stable wire code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error(
        "offset {requested} is out of range: the log holds offsets {start} to {end} (exclusive)"
    )]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
    #[error("offset {offset} is not the start of a batch")]
    NotBatchBoundary { offset: i64 },
    #[error("the disk is full: could not write {path}")]
    StorageFull { path: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("the log stopped after an earlier storage failure ({0}); reopen it to recover")]
    Failed(String),
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    /// The directory was written in the other mode (entry mode or plain);
    /// the message says what to do.
    #[error("{0}")]
    WrongMode(String),
    /// An entry-mode operation on a log opened without entry mode.
    #[error("{op} needs a log opened in entry mode (LogConfig::entry_mode)")]
    NotEntryMode { op: &'static str },
    /// A plain-log operation on a log in entry mode.
    #[error("{op} is not for a log in entry mode: use {instead}")]
    InEntryMode {
        op: &'static str,
        instead: &'static str,
    },
    #[error("term {term} is too large: terms are stored in a batch's partitionLeaderEpoch, at most {max}", max = i32::MAX)]
    TermTooLarge { term: u64 },
    /// An entry index outside the entries the log stores (`last` is `None`
    /// when it stores none; `first` is then the index the next entry gets).
    #[error("entry {requested} is out of range: the log holds entries {first} to {}", match last { Some(l) => l.to_string(), None => "none".into() })]
    EntryOutOfRange {
        requested: u64,
        first: u64,
        last: Option<u64>,
    },
    /// Removing entries would remove committed offsets: a bug in the caller.
    #[error("cannot remove entry {index}: it starts at offset {offset}, below the committed end {committed_end}")]
    BelowCommitted {
        index: u64,
        offset: i64,
        committed_end: i64,
    },
}

impl LogError {
    /// Wraps an I/O error with the file it concerns, recognising a full disk.
    pub(crate) fn io(path: &Path, source: io::Error) -> LogError {
        let full = matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        );
        if full {
            LogError::StorageFull {
                path: path.to_owned(),
            }
        } else {
            LogError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    pub(crate) fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            path: path.to_owned(),
            position,
            reason: reason.into(),
        }
    }

    /// A copy of this error for another waiter on the same failed sync
    /// (`LogError` holds an `io::Error`, which is not `Clone`).
    pub(crate) fn replicate(&self) -> LogError {
        match self {
            LogError::StorageFull { path } => LogError::StorageFull { path: path.clone() },
            LogError::Io { path, source } => LogError::Io {
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            other => LogError::Failed(other.to_string()),
        }
    }

    /// The stable error code for the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            LogError::InvalidBatch(e) => e.code(),
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            LogError::NotBatchBoundary { .. } => ErrorCode::InvalidRequest,
            LogError::StorageFull { .. } => ErrorCode::StorageFull,
            LogError::Io { .. } | LogError::Failed(_) => ErrorCode::StorageError,
            LogError::Corrupt { .. } => ErrorCode::CorruptData,
            LogError::InvalidConfig(_) | LogError::WrongMode(_) => ErrorCode::InvalidConfig,
            LogError::NotEntryMode { .. }
            | LogError::InEntryMode { .. }
            | LogError::TermTooLarge { .. }
            | LogError::BelowCommitted { .. } => ErrorCode::InvalidRequest,
            LogError::EntryOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        }
    }
}
