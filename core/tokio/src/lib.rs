//! # ferry-tokio
//!
//! The one async driver of `ferry-core` for tokio streams, shared by every host program:
//! the `ferry-server`, the `ferry` command line and the web page.
//!
//! - [`link`]: drives a `ferry_core::Connection` over any `AsyncRead + AsyncWrite` stream
//!   (TLS over TCP here): bytes read are fed to the connection, bytes it queues are written,
//!   and its deadlines are kept with tokio's clock.
//! - [`flush`]: writes received data back to disk while a transfer runs, so the commit's
//!   fsync waits for the last stretch only.
//! - [`journal`]: the held-chunk record beside a partial file, one format for uploads on the
//!   server and downloads on the client.
//! - [`event`]: owned copies of the core's events, to hold across an `.await`.
//! - `logging` (feature `logging`): the binaries' one logging set-up (`FERRY_LOG`).
//! - [`client`]: the client session: connect over mutual TLS, upload, download, round trip,
//!   list and delete, reconnecting and resuming when the link breaks.
//!
//! ```text
//!  bytes from the peer ─▶ Link::receive ─▶ Connection::handle_input ─▶ events ─▶ shell (storage, files)
//!  shell actions ─▶ Connection (frames queued) ─▶ Link::flush ─▶ bytes to the peer
//! ```
//!
//! ## Example
//!
//! ```no_run
//! use ferry_tokio::client::{Client, ClientOptions};
//! use std::path::Path;
//! # async fn demo() -> Result<(), ferry_tokio::client::ClientError> {
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

pub mod client;
pub mod event;
pub mod flush;
pub mod journal;
pub mod link;
#[cfg(feature = "logging")]
pub mod logging;
pub mod source;
