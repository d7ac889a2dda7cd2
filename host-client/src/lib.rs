//! # ferry-client
//!
//! The `ferry` command line. The client session it drives (upload, download, round trip,
//! list, delete, with automatic resume) lives in [`ferry_tokio::client`], shared with the
//! web page; this crate re-exports it so library users keep one name.
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

pub use ferry_tokio::client::*;
