//! What a connection reports to its shell.

use crate::digest::Digest;
use crate::transfer::Layout;
use crate::wire::{FileAttrs, Held, ListEntries, TreeEntries};

use super::Failure;

/// What the connection reports, or asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The handshake completed with these values.
    Connected {
        /// Negotiated chunk size.
        chunk_size: u32,
        /// Negotiated window.
        window: u16,
    },
    /// Server: a client wants to upload. Answer with
    /// [`accept_upload`](super::Connection::accept_upload) or [`reject`](super::Connection::reject).
    UploadRequested {
        /// File name as sent (validate it before it touches a path).
        name: &'a str,
        /// File size.
        size: u64,
        /// Drop any partial copy held for this name.
        fresh: bool,
        /// Modification time and mode the client gave (`OpenUploadWith`), if any.
        attrs: FileAttrs,
    },
    /// Server: a client wants to download. Answer with
    /// [`accept_download`](super::Connection::accept_download) or [`reject`](super::Connection::reject).
    DownloadRequested {
        /// File name as sent.
        name: &'a str,
        /// Size of the client's partial copy (0 if none).
        size: u64,
        /// Chunks the client holds.
        held: Held,
    },
    /// Server: answer with [`respond_list`](super::Connection::respond_list) or [`reject`](super::Connection::reject).
    ListRequested {
        /// List names after this one ("" from the start).
        start_after: &'a str,
        /// At most this many entries.
        limit: u16,
    },
    /// Server: answer with [`respond_delete`](super::Connection::respond_delete) or [`reject`](super::Connection::reject).
    DeleteRequested {
        /// File name as sent.
        name: &'a str,
    },
    /// Server: answer with [`respond_list_tree`](super::Connection::respond_list_tree) or
    /// [`reject`](super::Connection::reject).
    ListTreeRequested {
        /// List below this prefix ("" for everything).
        prefix: &'a str,
        /// List names after this one ("" from the start); one ending in `/` skips that folder.
        start_after: &'a str,
        /// At most this many entries.
        limit: u16,
        /// Every file below `prefix`, or one level with its folders.
        recursive: bool,
    },
    /// Client: one page of a tree listing.
    TreePage {
        /// The entries.
        entries: TreeEntries<'a>,
        /// More entries follow the last one.
        more: bool,
    },
    /// Client: one page of a listing.
    ListPage {
        /// The entries.
        entries: ListEntries<'a>,
        /// More entries follow the last one.
        more: bool,
    },
    /// Client: the delete succeeded.
    Deleted,
    /// A transfer started: its layout and how many chunks the receiver already held.
    TransferStarted {
        /// File size and chunk size.
        layout: Layout,
        /// Chunks held before this attempt.
        held_chunks: u64,
    },
    /// Sender: read this chunk and pass it to [`provide_chunk`](super::Connection::provide_chunk).
    NeedChunk {
        /// Chunk index.
        index: u64,
        /// Byte offset in the file.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// Receiver: write this verified chunk at `offset`, record `digest` as held,
    /// then call [`chunk_stored`](super::Connection::chunk_stored).
    StoreChunk {
        /// Chunk index.
        index: u64,
        /// Byte offset in the file.
        offset: u64,
        /// SHA-256 of `data`, checked.
        digest: Digest,
        /// The data.
        data: &'a [u8],
    },
    /// Receiver: every chunk is held and the file digest matches. Make the file
    /// durable, then call [`commit_done`](super::Connection::commit_done) (or
    /// [`fail_transfer`](super::Connection::fail_transfer)).
    Commit {
        /// File size.
        size: u64,
        /// Whole-file digest.
        digest: Digest,
    },
    /// The transfer is complete and verified by both ends.
    Verified {
        /// File size.
        size: u64,
        /// Whole-file digest.
        digest: Digest,
    },
    /// The current request or transfer failed; the connection stays usable.
    Failed {
        /// Why.
        failure: Failure,
        /// The peer's text, if it sent one.
        text: &'a str,
    },
    /// Server: a whole file arrived in a `Put`, its data matching its SHA-256. Copy what
    /// is needed, call [`accept_put`](super::Connection::accept_put), make it durable
    /// (several together), then call [`put_done`](super::Connection::put_done).
    PutRequested {
        /// The `Put`'s seq, for `accept_put` and `put_done`.
        seq: u32,
        /// File name as sent (validate it before it touches a path).
        name: &'a str,
        /// Modification time and mode the client gave.
        attrs: FileAttrs,
        /// Whole-file digest ([`FileDigest`](crate::digest::FileDigest)) with the
        /// negotiated chunk size: what the answer reports and the file is recorded with.
        digest: Digest,
        /// The file's bytes.
        data: &'a [u8],
    },
    /// Client: the server made the file of `Put` `seq` durable and verified it.
    PutVerified {
        /// The `Put`'s seq.
        seq: u32,
        /// File size.
        size: u64,
        /// Whole-file digest both ends computed.
        digest: Digest,
    },
    /// Client: the `Put` `seq` failed (the connection stays usable).
    PutFailed {
        /// The `Put`'s seq.
        seq: u32,
        /// Why.
        failure: Failure,
        /// The peer's text, if it sent one.
        text: &'a str,
    },
    /// The connection is finished: close the link.
    Closed {
        /// Why.
        failure: Failure,
        /// The peer's text, if it sent one.
        text: &'a str,
    },
}

/// Counters over the connection's life, for progress and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Chunks sent for the first time.
    pub chunks_sent: u64,
    /// Chunks sent again after a NACK or timeout.
    pub chunks_resent: u64,
    /// Chunks received and stored.
    pub chunks_stored: u64,
    /// Chunks refused (bad digest or length).
    pub chunks_nacked: u64,
    /// Frames dropped by the framing (COBS: damaged).
    pub frames_dropped: u64,
}

/// Events that arise while handling input or time, queued until polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    Connected { chunk_size: u32, window: u16 },
    Started { layout: Layout, held_chunks: u64 },
    Deleted,
    Verified { size: u64, digest: Digest },
    Failed(Failure),
    Commit { size: u64, digest: Digest },
    PutVerified { seq: u32, size: u64, digest: Digest },
    PutFailed { seq: u32, failure: Failure },
}

impl Notice {
    /// The event for this notice; `peer_text` is the peer's last error text.
    pub(super) fn event(self, peer_text: &str) -> Event<'_> {
        match self {
            Notice::Connected { chunk_size, window } => Event::Connected { chunk_size, window },
            Notice::Started {
                layout,
                held_chunks,
            } => Event::TransferStarted {
                layout,
                held_chunks,
            },
            Notice::Deleted => Event::Deleted,
            Notice::Verified { size, digest } => Event::Verified { size, digest },
            Notice::Commit { size, digest } => Event::Commit { size, digest },
            Notice::Failed(failure) => Event::Failed {
                failure,
                text: peer_text,
            },
            Notice::PutVerified { seq, size, digest } => Event::PutVerified { seq, size, digest },
            Notice::PutFailed { seq, failure } => Event::PutFailed {
                seq,
                failure,
                text: peer_text,
            },
        }
    }
}
