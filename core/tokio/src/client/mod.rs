//! The client: upload, download, round-trip, list and delete files on a Ferry server over
//! mutual TLS, with automatic resume. Used by the `ferry` command line and by the web page;
//! it never prints (progress goes to a callback, results are returned as reports).
//!
//! ## Data flow
//!
//! ```text
//!  upload:   file ──read_at(offset, len) on NeedChunk──▶ Connection (hashes, frames, window)
//!                                                        │ Link: TLS over TCP
//!                                                        ▼
//!            server stores and verifies ──▶ Verified{size, digest} ──▶ TransferReport
//!
//!  download: server ──Chunk──▶ Connection (checks each chunk's SHA-256)
//!            ──StoreChunk──▶ DIR/.NAME.ferry-part (write_at) + DIR/.NAME.ferry-held (journal)
//!            ──Commit (whole-file digest matched)──▶ fsync, rename onto DIR/NAME ──▶ Verified
//! ```
//!
//! [`Client`] (in `session`) holds one connection and runs one operation at a time: each
//! operation (`upload`, `download`, `compare` for the round trip, and list/delete inside the
//! session) implements the `op::Operation` trait, and the session runs it in attempts over
//! (re)connected connections.
//!
//! ## Resume
//!
//! When the link breaks (I/O error, end of stream, TLS error, a silent server), the client
//! reconnects with exponential backoff (100 ms doubling to 2 s, plus up to 100 ms of jitter; up to
//! [`ClientOptions::retries`] times, counted afresh after every attempt that made progress)
//! and issues the same operation again. The receiver reports the chunks it holds, so only
//! the rest moves: the server holds an interrupted upload's chunks, the client holds an
//! interrupted download's partial file (which also survives the process, so a later
//! download of the same name into the same place resumes). Uploading a file the server
//! already holds with the same content completes without sending data. If the source
//! changed under the held chunks, the transfer starts over once from nothing.
//!
//! ## A busy server
//!
//! [`Client::connect`] waits out a server that refuses for capacity (`BUSY` with a
//! retry-after, or a connection closed during the TLS handshake, which is how a server
//! sheds load before authentication): up to [`CAPACITY_ATTEMPTS`] attempts within
//! [`CAPACITY_BUDGET`], each wait drawn at random up to a doubling ceiling (full jitter)
//! and never shorter than the retry-after, with one warning per wait. A refused
//! certificate is never retried.

mod capacity;
mod compare;
mod download;
mod error;
mod op;
mod options;
pub mod partial;
mod put_many;
mod relay;
mod report;
mod session;
mod tally;
mod tree;
mod upload;

pub use capacity::{CAPACITY_ATTEMPTS, CAPACITY_BUDGET, CAPACITY_LONGEST_WAIT};
pub use error::{exit, ClientError};
pub use op::{ProgressFn, WINDOW};
pub use options::{
    split_server, ClientOptions, DEFAULT_PORT, DEFAULT_RETRIES, DEFAULT_SERVER, FIRST_BACKOFF,
    MAX_BACKOFF,
};
pub use relay::{ChunkLedger, RelayOutcome};
pub use report::{FileEntry, Phase, Progress, RoundTripReport, TransferReport};
pub use session::{Client, LIST_PAGE};
pub use tree::{FileAttrs, ItemEvent, UploadItem};

/// Re-exported so callers name the same error codes.
pub use ferry_core::ErrorCode;
