//! # ferry-client
//!
//! The client side of Ferry: upload, download, list and delete files on a Ferry server
//! over mutual TLS, with automatic resume. This library is used by the `ferry` command
//! line and by the web page; it never prints (progress goes to a callback, results are
//! returned as reports). The [`link`] module, which drives a `ferry_core::Connection`
//! over an async stream, is shared with the server.
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
//!            ──StoreChunk──▶ DIR/.NAME.ferry-part (write_at) + DIR/.NAME.ferry-held (index, digest)
//!            ──Commit (whole-file digest matched)──▶ fsync, rename onto DIR/NAME ──▶ Verified
//! ```
//!
//! The protocol core decides everything that goes on the wire; this crate moves bytes,
//! reads and writes files, keeps time and reports progress. One [`Client`] holds one
//! connection and runs one operation at a time.
//!
//! ## Resume
//!
//! When the link breaks (I/O error, end of stream, TLS error, a silent server), the client
//! reconnects with exponential backoff (100 ms doubling to 2 s, up to
//! [`ClientOptions::retries`] times, counted afresh after every attempt that made progress)
//! and issues the same operation again. The receiver reports the chunks it holds, so only
//! the rest moves: the server holds an interrupted upload's chunks, the client holds an
//! interrupted download's partial file (which also survives the process, so a later
//! download of the same name into the same place resumes). Uploading a file the server
//! already holds with the same content completes without sending data. If the source
//! changed under the held chunks, the transfer starts over once from nothing.
//!
//! ## Example
//!
//! ```no_run
//! use ferry_client::{Client, ClientOptions};
//! use std::path::Path;
//! # async fn demo() -> Result<(), ferry_client::ClientError> {
//! let options = ClientOptions::from_files(
//!     "127.0.0.1:9000",
//!     Path::new("certs/ca.crt"),
//!     Path::new("certs/clients/local.crt"),
//!     Path::new("certs/clients/local.key"),
//! )?;
//! let mut client = Client::connect(options).await?;
//! let report = client
//!     .upload_file(Path::new("photo.jpg"), "photo.jpg", &mut |p| {
//!         eprintln!("{} / {}", p.done_bytes, p.total_bytes)
//!     })
//!     .await?;
//! println!("{} verified as {}", report.name, report.digest);
//! # Ok(()) }
//! ```
//!
//! ## Exit codes of `ferry`
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | other error (protocol violation, internal error) |
//! | 2 | usage error (bad arguments) |
//! | 3 | could not connect, TLS refused, or the connection was lost for good |
//! | 4 | refused by the server: not found, invalid name, quota exceeded, too large, busy, forbidden |
//! | 5 | verification failed: digest mismatch, corrupted data, a source that kept changing |
//! | 6 | local file error (including unreadable certificate or key files) |
//!
//! [`ClientError::exit_code`] gives the code of each error.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod compare;
mod download;
mod error;
pub mod flush;
pub mod link;
mod options;
pub mod partial;
mod report;
mod upload;

pub use client::{Client, ProgressFn, LIST_PAGE, WINDOW};
pub use error::{exit, ClientError};
pub use options::{
    split_server, ClientOptions, DEFAULT_PORT, DEFAULT_RETRIES, DEFAULT_SERVER, FIRST_BACKOFF,
    MAX_BACKOFF,
};
pub use report::{hex, FileEntry, Phase, Progress, RoundTripReport, TransferReport};

/// Re-exported so callers name the same error codes.
pub use ferry_core::ErrorCode;
