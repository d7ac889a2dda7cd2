//! Why a request, a transfer or the connection failed, and calls that do not fit.

use crate::framing::FramingError;
use crate::transfer::TransferError;
use crate::wire::{DecodeError, ErrorCode, MAX_NAME_LEN, PROTOCOL_VERSION};

/// Why a request, a transfer or the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The transfer failed on this side.
    #[error("{0}")]
    Transfer(TransferError),
    /// The peer reported an error (its text comes with the event).
    #[error("the peer reported an error: {0}")]
    Peer(ErrorCode),
    /// This side's shell failed the transfer or request (storage, quota, ...).
    #[error("this side failed the transfer: {0}")]
    Local(ErrorCode),
    /// A request went unanswered `1 + max_retries` times.
    #[error("the peer did not answer a request, however often it was sent")]
    Unanswered,
    /// The peer was silent for `idle_timeout`.
    #[error("the peer was silent for too long")]
    IdleTimeout,
    /// A frame that does not decode.
    #[error("the peer sent a frame that does not decode: {0}")]
    Malformed(DecodeError),
    /// A frame that cannot be right here (wrong order, bad field).
    #[error("the peer broke the protocol (a frame out of order or with a bad field)")]
    Protocol,
    /// A length prefix above the bound.
    #[error("{0}")]
    Framing(FramingError),
    /// The peer speaks another protocol version.
    #[error(
        "the peer speaks protocol version {theirs}, this side speaks version {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion {
        /// The version the peer asked for or answered with.
        theirs: u16,
    },
    /// The client's largest chunk is below the server's smallest
    /// ([`Connection::set_min_chunk`](crate::Connection::set_min_chunk)).
    #[error(
        "the client offers chunks of at most {offered} bytes, the server takes at least {min}"
    )]
    ChunkTooSmall {
        /// The client's `max_chunk`.
        offered: u32,
        /// The server's minimum.
        min: u32,
    },
}

impl Failure {
    /// The code sent to the peer for this failure.
    pub fn code(self) -> ErrorCode {
        match self {
            Failure::Transfer(TransferError::DigestMismatch) => ErrorCode::DIGEST_MISMATCH,
            Failure::Transfer(TransferError::SourceChanged) => ErrorCode::SOURCE_CHANGED,
            Failure::Transfer(TransferError::StoredDataCorrupt) => ErrorCode::STORAGE,
            Failure::Transfer(TransferError::RetriesExhausted { .. })
            | Failure::Transfer(TransferError::FinishUnanswered)
            | Failure::Transfer(TransferError::TooManyBadChunks) => ErrorCode::RETRIES_EXHAUSTED,
            Failure::Transfer(TransferError::Protocol)
            | Failure::Malformed(_)
            | Failure::Protocol
            | Failure::Framing(_)
            | Failure::ChunkTooSmall { .. } => ErrorCode::PROTOCOL,
            Failure::Peer(code) | Failure::Local(code) => code,
            Failure::Unanswered | Failure::IdleTimeout => ErrorCode::TIMEOUT,
            Failure::UnsupportedVersion { .. } => ErrorCode::UNSUPPORTED_VERSION,
        }
    }
}

/// A call that does not fit the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The handshake is not complete, or the connection is closed.
    #[error("the connection is not ready (handshake incomplete, or closed)")]
    NotReady,
    /// A request or transfer is already running.
    #[error("a request or transfer is already running")]
    Busy,
    /// Nothing is waiting for this call.
    #[error("nothing is waiting for this call")]
    Unexpected,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("the name is longer than {MAX_NAME_LEN} bytes")]
    BadName,
    /// Bytes from `poll_transmit` must be taken first.
    #[error("the bytes from poll_transmit must be taken first")]
    TransmitPending,
    /// The data is not what was asked for.
    #[error("the chunk data is not what was asked for")]
    WrongChunk,
    /// The buffers are too small for the configured chunk size.
    #[error("the buffers are too small for the configured chunk size")]
    BuffersTooSmall,
}
