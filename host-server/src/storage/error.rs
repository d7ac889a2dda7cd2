//! What can go wrong in a store, and how it is told to the client.

use std::io;

use bytesize::ByteSize;
use ferry_core::wire::ErrorCode;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The upload would take the identity over its quota.
    #[error("quota exceeded: {} used + {} requested > {} quota", ByteSize(*used), ByteSize(*requested), ByteSize(*quota))]
    QuotaExceeded {
        /// Bytes in use (not counting a file the upload replaces).
        used: u64,
        /// The upload's size.
        requested: u64,
        /// The quota.
        quota: u64,
    },
    /// The upload would take the identity over its limit of files (committed files plus
    /// partial uploads).
    #[error("file limit reached: {files} files stored or uploading, at most {max} per client")]
    FileLimit {
        /// Files and partial uploads the identity holds (not counting a file the upload replaces).
        files: u64,
        /// The limit.
        max: u64,
    },
    /// The upload would take the web page's identities together over their shared quota.
    #[error("web quota exceeded: {} used by all web identities + {} requested > {} shared web quota", ByteSize(*used), ByteSize(*requested), ByteSize(*quota))]
    WebQuotaExceeded {
        /// Bytes all `web-*` identities use together.
        used: u64,
        /// What the upload reserves.
        requested: u64,
        /// The shared quota.
        quota: u64,
    },
    /// The server's file system is full (ENOSPC, or EDQUOT of the server's user).
    #[error("server disk full: {context}: {source}")]
    DiskFull {
        /// What was being done, with the path.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The file is larger than the server accepts.
    #[error("file too large: {} ({size} bytes), the server accepts at most {} ({max} bytes)", ByteSize(*size), ByteSize(*max))]
    TooLarge {
        /// The declared or reached size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Another upload of the same name by the same identity is running.
    #[error("an upload of this name is already running")]
    Busy,
    /// The name collides with the tree: a folder of its path is a file, or the name is a
    /// folder (it holds files).
    #[error("invalid name: {reason} (storing {name:?})")]
    NameConflict {
        /// The name.
        name: String,
        /// Which part collides.
        reason: String,
    },
    /// No such file.
    #[error("no such file")]
    NotFound,
    /// The condition of a conditional commit does not hold (the name exists, or holds a
    /// file with another digest).
    #[error("the stored file is not the one the commit was conditioned on")]
    PreconditionFailed,
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// Stored data does not add up (a bug or tampering).
    #[error("inconsistent storage: {0}")]
    Inconsistent(String),
    /// The object store or the metadata database failed or cannot be reached.
    #[error("{context}: {reason}")]
    Remote {
        /// What was being done (the object key or the query's purpose).
        context: String,
        /// The error the service or client library gave.
        reason: String,
    },
}

impl StorageError {
    /// The protocol error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StorageError::QuotaExceeded { .. }
            | StorageError::FileLimit { .. }
            | StorageError::WebQuotaExceeded { .. } => ErrorCode::QUOTA_EXCEEDED,
            StorageError::TooLarge { .. } => ErrorCode::TOO_LARGE,
            StorageError::Busy => ErrorCode::BUSY,
            StorageError::PreconditionFailed => ErrorCode::SOURCE_CHANGED,
            StorageError::NotFound => ErrorCode::NOT_FOUND,
            StorageError::NameConflict { .. } => ErrorCode::INVALID_NAME,
            StorageError::Io { .. }
            | StorageError::DiskFull { .. }
            | StorageError::Inconsistent(_)
            | StorageError::Remote { .. } => ErrorCode::STORAGE,
        }
    }

    /// The same error again, for each item of a batch that one failed step fails together.
    pub(crate) fn duplicate(&self) -> StorageError {
        let again = |source: &io::Error| io::Error::new(source.kind(), source.to_string());
        match self {
            StorageError::QuotaExceeded {
                used,
                requested,
                quota,
            } => StorageError::QuotaExceeded {
                used: *used,
                requested: *requested,
                quota: *quota,
            },
            StorageError::FileLimit { files, max } => StorageError::FileLimit {
                files: *files,
                max: *max,
            },
            StorageError::WebQuotaExceeded {
                used,
                requested,
                quota,
            } => StorageError::WebQuotaExceeded {
                used: *used,
                requested: *requested,
                quota: *quota,
            },
            StorageError::DiskFull { context, source } => StorageError::DiskFull {
                context: context.clone(),
                source: again(source),
            },
            StorageError::TooLarge { size, max } => StorageError::TooLarge {
                size: *size,
                max: *max,
            },
            StorageError::Busy => StorageError::Busy,
            StorageError::NameConflict { name, reason } => StorageError::NameConflict {
                name: name.clone(),
                reason: reason.clone(),
            },
            StorageError::NotFound => StorageError::NotFound,
            StorageError::PreconditionFailed => StorageError::PreconditionFailed,
            StorageError::Io { context, source } => StorageError::Io {
                context: context.clone(),
                source: again(source),
            },
            StorageError::Inconsistent(text) => StorageError::Inconsistent(text.clone()),
            StorageError::Remote { context, reason } => StorageError::Remote {
                context: context.clone(),
                reason: reason.clone(),
            },
        }
    }

    /// Whether the file system is full: the failed upload's partial is better freed at once.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }

    /// The text sent to the client: no server paths.
    pub fn client_text(&self) -> String {
        match self {
            StorageError::Io { source, .. } => {
                format!("storage failure on the server: {}", source.kind())
            }
            StorageError::DiskFull { .. } => "server disk full".into(),
            StorageError::Inconsistent(_) | StorageError::Remote { .. } => {
                "storage failure on the server".into()
            }
            other => other.to_string(),
        }
    }
}

/// Maps an I/O error to [`StorageError::Io`] with what was being done.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
    let context = context.into();
    move |source| match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            StorageError::DiskFull { context, source }
        }
        _ => StorageError::Io { context, source },
    }
}

/// Maps an object store or database error to [`StorageError::Remote`] with what was being done.
pub(crate) fn remote_err<E: std::fmt::Display>(
    context: impl Into<String>,
) -> impl FnOnce(E) -> StorageError {
    let context = context.into();
    move |e| StorageError::Remote {
        context,
        reason: e.to_string(),
    }
}
