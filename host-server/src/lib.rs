//! # ferry-server
//!
//! Ferry's file server: clients authenticate with certificates from the operator's CA
//! (mutual TLS 1.3), and each client identity gets its own namespace of files that it
//! uploads, downloads, lists and deletes through the Ferry protocol (`ferry-core`).
//! Transfers resume after a disconnect or a restart of either side, and a file becomes
//! visible only once its whole-file digest is verified and it is durably committed.
//!
//! ## Data flow
//! ```text
//! TCP accept ──(--proxy-protocol: from --proxy-from only, a PROXY v2 header whose client
//!   address replaces the peer's from here on, see [`proxy`])──(global limit)──▶
//!   TLS 1.3 handshake (timeout; client cert must chain to the CA and not be on the CRL,
//!   reloaded on SIGHUP or file change, and shared through the database of --metadata,
//!   see [`cluster_crl`])
//!   ──▶ ClientIdentity {name = CN set by the CA, fingerprint of the key for logs}
//!   ──(per-name limit)──▶
//!   session: ferry_tokio::link::Link drives a ferry_core::Connection; its events become
//!   calls of the Store (LocalStore: STORAGE/<name>/), confined to the identity:
//!     UploadRequested   ─▶ validate_name ─▶ Store::begin_upload (size limit, quota,
//!                          resume from the re-verified partial) ─▶ accept_upload(held)
//!     StoreChunk        ─▶ Upload::store: pwrite into partial/<key>.part, append to .held
//!     Commit            ─▶ Upload::commit: fsync, metadata, rename into files/<name>
//!     DownloadRequested ─▶ Store::open (one version per download) ─▶ accept_download
//!     NeedChunk         ─▶ StoredFile::read_exact_at (pread) ─▶ provide_chunk
//!     ListRequested / DeleteRequested ─▶ Store::list / Store::delete
//! ```
//! The core makes every protocol decision (windows, re-sends, digests, resume); this crate
//! moves bytes, stores data and enforces the server's policies. See [`storage`] for the
//! storage seam, [`storage::local`] for the layout on disk, the commit protocol and quota
//! accounting, [`names`] for the file name rules, and [`config`] for the options.
//!
//! ## Identity and data directory
//! A client's files belong to its client name, which survives `ferry-certs renew` with the
//! same key or a new one. Certificates and storage default to one data directory
//! (`--data-dir`, else `$FERRY_DATA_DIR`, else `~/.local/share/ferry`). [`Server::bind`]
//! listens first, then creates the certificates on first run, then moves storage
//! directories of the earlier key-named layout under their names
//! ([`LocalStore::migrate_key_dirs`]).
//!
//! ## Limits
//! Connections not yet authenticated: `max_handshakes` (at most `max_handshakes_per_source`
//! from one address, random early drop past half the budget; more are dropped unread, see
//! `admission`), each given `handshake_timeout_secs`. Authenticated sessions: `max_connections`
//! and `max_connections_per_identity` (more are answered `BUSY` with a retry-after right
//! after the handshake, and closed), each given `first_request_timeout_secs` for its first
//! request. A session whose certificate a reloaded CRL revokes is ended. A connection runs
//! one transfer at a time, so a client runs several transfers over several connections.
//! One upload per identity and name at a time (a second is answered `BUSY`). Memory per
//! connection is bounded: two protocol buffers of `ferry_core::buffer_len(chunk_size)` bytes
//! (65,854 B each for 64 KiB chunks), the link's 64 KiB read buffer, one chunk of read
//! buffer for downloads and rustls' buffers. They are zero-filled allocations, resident only
//! once touched: 1000 idle sessions that only listed measured 51 KiB each, after an upload
//! of 64 KiB chunks 159 KiB each (`memory_of_1000_idle_sessions` in `tests/admission.rs`),
//! which is why `max_connections` defaults to 512.
//!
//! ## Operations
//! [`Server::metrics`] counts what happens (no per-client labels) and [`Server::health`]
//! answers readiness checks; [`AdminServer`] serves both over HTTP (`--admin ADDR`:
//! `/metrics`, `/healthz`, `/readyz`), see [`admin`] and [`metrics`].
//!
//! ## Shutdown
//! On SIGTERM or SIGINT the binary stops accepting, lets running transfers finish for
//! `shutdown_grace_secs`, then fsyncs the partial uploads still running and closes them;
//! their clients resume later.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
mod admission;
pub mod cluster_crl;
pub mod config;
pub mod metrics;
pub mod names;
pub mod pg;
pub mod proxy;
mod server;
mod session;
pub mod storage;

pub use admin::{AdminArgs, AdminServer, Health};
pub use config::{Args, ConfigError, FileConfig, ServerOptions};
pub use metrics::Metrics;
pub use names::{validate_name, NameError};
pub use server::{run, Bootstrap, Server, ServerError};
pub use storage::{FileMeta, LocalStore, Migration, StorageConfig, StorageError, Store};
