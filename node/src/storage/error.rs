//! Why a storage operation failed: [`StorageError`], which keeps the `std::io::Error`
//! (or the codec error) that caused it, so a caller can still tell a full disk
//! (`ErrorKind::StorageFull`) from a failing one.
//!
//! Owns the error type and its messages only. Cloning is cheap (sources are shared
//! behind an `Arc`), so one failed group commit can answer each of its waiters with the
//! same error. Every message names its cause in its own text, because most callers turn
//! it into a string at a boundary (a `WireError`, a log line).

use meshlog_protocol::codec::CodecError;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The store could not be opened (missing permissions, corrupt files, locked by
    /// another process).
    #[error("cannot open the store at {path}: {why}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        why: OpenError,
    },
    /// An I/O error while reading, writing or flushing (a full disk, a failing device).
    #[error("storage I/O error during {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error the system (or sled) returned.
        #[source]
        source: Arc<io::Error>,
    },
    /// An I/O error on one file (a segment of a partition log, its directory).
    #[error("storage I/O error during {op}: {path}: {source}")]
    File {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error the system returned.
        #[source]
        source: Arc<io::Error>,
    },
    /// An fsync failed earlier, so no flush of this store can be trusted any more
    /// (see [`super::Store::flush`]); a restart recovers from what is on disk.
    #[error("storage I/O error during flush: an earlier fsync failed: {first}")]
    FsyncFailed {
        /// The failed fsync.
        #[source]
        first: Box<StorageError>,
    },
    /// A stored value does not decode.
    #[error("cannot decode the stored {what}: {source}")]
    Decode {
        /// What it holds, and whose it is.
        what: String,
        /// The codec's error.
        #[source]
        source: Arc<CodecError>,
    },
    /// A value to store could not be encoded (a bug).
    #[error("cannot encode the {what}: {source}")]
    Encode {
        /// What it is.
        what: &'static str,
        /// The codec's error.
        #[source]
        source: Arc<CodecError>,
    },
    /// Stored data is damaged: it is kept as it is and nothing is written over it.
    #[error("{what} is damaged: {reason}")]
    Damaged {
        /// What is damaged.
        what: String,
        /// How.
        reason: String,
    },
    /// A call that would break the store's invariants (a bug in the caller), refused
    /// before anything changed.
    #[error("storage refused {op}: {reason}")]
    Refused {
        /// What was asked.
        op: &'static str,
        /// Why it cannot be done.
        reason: String,
    },
    /// A storage thread or task is gone (the node is stopping, or it panicked).
    #[error("the {what} has stopped")]
    Stopped {
        /// Which.
        what: &'static str,
    },
    /// A batch larger than a partition log keeps ([`super::MAX_BATCH_BYTES`]).
    #[error("batch of {len} bytes is over the store's limit of {max} bytes")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a store could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the data directory's lock.
    #[error("the data directory is in use by another running meshlog node")]
    InUse {
        /// The lock error.
        #[source]
        source: Arc<io::Error>,
    },
    /// sled found its files corrupt.
    #[error("the store is corrupt (at {at}); restore it or wipe it and let it catch up")]
    Corrupt {
        /// Where, as sled reports it.
        at: String,
    },
    /// An I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being opened.
        what: &'static str,
        /// The error.
        #[source]
        source: Arc<io::Error>,
    },
}

impl StorageError {
    /// An I/O error during `op` (a sled error counts as one: sled turns its own kinds
    /// into `io::Error`s).
    pub fn io(op: &'static str, e: impl Into<io::Error>) -> Self {
        StorageError::Io { op, source: Arc::new(e.into()) }
    }

    /// An I/O error on the file or directory `path`.
    pub(super) fn file(op: &'static str, path: &std::path::Path, e: io::Error) -> Self {
        StorageError::File { op, path: path.to_path_buf(), source: Arc::new(e) }
    }

    /// The stored `what` does not decode.
    pub fn decode(what: String, e: CodecError) -> Self {
        StorageError::Decode { what, source: Arc::new(e) }
    }

    /// `what` could not be encoded for storing.
    pub fn encode(what: &'static str, e: CodecError) -> Self {
        StorageError::Encode { what, source: Arc::new(e) }
    }

    /// A call refused before anything changed.
    pub fn refused(op: &'static str, reason: String) -> Self {
        StorageError::Refused { op, reason }
    }

    /// The kind of the I/O error underneath, if one is (`StorageFull` for a full disk).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StorageError::Io { source, .. } | StorageError::File { source, .. } => Some(source.kind()),
            StorageError::Open {
                why: OpenError::Io { source, .. } | OpenError::InUse { source }, ..
            } => Some(source.kind()),
            StorageError::FsyncFailed { first } => first.io_kind(),
            _ => None,
        }
    }
}

impl OpenError {
    /// An I/O error while opening `what`.
    pub(super) fn io(what: &'static str, e: impl Into<io::Error>) -> Self {
        OpenError::Io { what, source: Arc::new(e.into()) }
    }
}
