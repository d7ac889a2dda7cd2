//! Owned copies of the core's events, so that a shell can hold one across an `.await`
//! while the connection (which the borrowed [`Event`] points into) is used again.

use ferry_core::wire::DecodeError;
use ferry_core::{Digest, Event, Failure, FileAttrs, Held, Layout};
use serde::Serialize;

/// An [`Event`] with its borrowed parts copied out. A chunk's data goes to the caller's
/// scratch buffer instead (see [`OwnedEvent::new`]), so that its allocation is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnedEvent {
    /// The handshake completed.
    Connected {
        /// Negotiated chunk size.
        chunk_size: u32,
        /// Negotiated window.
        window: u16,
    },
    /// Server: a client wants to upload.
    UploadRequested {
        /// File name as sent (validate it before it touches a path).
        name: String,
        /// File size.
        size: u64,
        /// Drop any partial copy held for this name.
        fresh: bool,
        /// Modification time and mode the client gave, if any.
        attrs: FileAttrs,
    },
    /// Server: a client wants to download.
    DownloadRequested {
        /// File name as sent.
        name: String,
        /// Size of the client's partial copy (0 if none).
        size: u64,
        /// Chunks the client holds.
        held: Held,
    },
    /// Server: a client wants a page of its listing.
    ListRequested {
        /// List names after this one ("" from the start).
        start_after: String,
        /// At most this many entries.
        limit: u16,
    },
    /// Server: a client wants a file deleted.
    DeleteRequested {
        /// File name as sent.
        name: String,
    },
    /// Server: a client wants a page of its listing below a prefix.
    ListTreeRequested {
        /// List below this prefix.
        prefix: String,
        /// List names after this one ("" from the start).
        start_after: String,
        /// At most this many entries.
        limit: u16,
        /// Every file below `prefix`, or one level with folders.
        recursive: bool,
    },
    /// Client: one page of a tree listing (folders have `folder` set).
    TreePage {
        /// The entries.
        entries: Vec<FileEntry>,
        /// More entries follow the last one.
        more: bool,
    },
    /// Client: one page of a listing.
    ListPage {
        /// The entries.
        entries: Vec<FileEntry>,
        /// More entries follow the last one.
        more: bool,
    },
    /// Client: the delete succeeded.
    Deleted,
    /// A transfer started.
    TransferStarted {
        /// File size and chunk size.
        layout: Layout,
        /// Chunks held before this attempt.
        held_chunks: u64,
    },
    /// Sender: read this chunk and provide it.
    NeedChunk {
        /// Chunk index.
        index: u64,
        /// Byte offset in the file.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// Receiver: store this verified chunk (its data is in the scratch buffer).
    StoreChunk {
        /// Chunk index.
        index: u64,
        /// Byte offset in the file.
        offset: u64,
        /// SHA-256 of the data, checked.
        digest: Digest,
    },
    /// Receiver: every chunk is held and the file digest matches: make the file durable.
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
        text: String,
    },
    /// Server: a whole small file arrived in a `Put` (its data is in the scratch buffer).
    PutRequested {
        /// The `Put`'s seq.
        seq: u32,
        /// File name as sent (validate it before it touches a path).
        name: String,
        /// Modification time and mode the client gave.
        attrs: FileAttrs,
        /// Whole-file digest with the negotiated chunk size.
        digest: Digest,
    },
    /// Client: the server made the file of `Put` `seq` durable and verified it.
    PutVerified {
        /// The `Put`'s seq.
        seq: u32,
        /// File size.
        size: u64,
        /// Whole-file digest.
        digest: Digest,
    },
    /// Client: the `Put` `seq` failed; the connection stays usable.
    PutFailed {
        /// The `Put`'s seq.
        seq: u32,
        /// Why.
        failure: Failure,
        /// The peer's text, if it sent one.
        text: String,
    },
    /// The connection is finished.
    Closed {
        /// Why.
        failure: Failure,
        /// The peer's text, if it sent one.
        text: String,
    },
}

/// One file on the server, as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds since the Unix epoch.
    pub modified: u64,
    /// Whole-file digest, hex.
    pub digest: String,
    /// The chunk size the digest was computed with.
    pub chunk_size: u32,
    /// Unix permission bits, if the uploader gave them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// A folder of a one-level tree listing (its name ends in `/`; no size or digest).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub folder: bool,
}

impl From<ferry_core::ListEntry<'_>> for FileEntry {
    fn from(entry: ferry_core::ListEntry<'_>) -> Self {
        FileEntry {
            name: entry.name.to_string(),
            size: entry.size,
            modified: entry.modified,
            digest: entry.digest.to_string(),
            chunk_size: entry.chunk_size,
            mode: None,
            folder: false,
        }
    }
}

impl From<ferry_core::TreeEntry<'_>> for FileEntry {
    fn from(entry: ferry_core::TreeEntry<'_>) -> Self {
        FileEntry {
            name: entry.name.to_string(),
            size: entry.size,
            modified: entry.modified,
            digest: entry.digest.to_string(),
            chunk_size: entry.chunk_size,
            mode: (entry.mode != 0).then_some(entry.mode),
            folder: entry.folder,
        }
    }
}

impl OwnedEvent {
    /// Copies `event`; a chunk's data is copied into `scratch` (cleared first). Fails only
    /// on a listing page whose entries do not decode.
    pub fn new(event: Event<'_>, scratch: &mut Vec<u8>) -> Result<OwnedEvent, DecodeError> {
        Ok(match event {
            Event::Connected { chunk_size, window } => OwnedEvent::Connected { chunk_size, window },
            Event::UploadRequested {
                name,
                size,
                fresh,
                attrs,
            } => OwnedEvent::UploadRequested {
                name: name.into(),
                size,
                fresh,
                attrs,
            },
            Event::ListTreeRequested {
                prefix,
                start_after,
                limit,
                recursive,
            } => OwnedEvent::ListTreeRequested {
                prefix: prefix.into(),
                start_after: start_after.into(),
                limit,
                recursive,
            },
            Event::TreePage { entries, more } => OwnedEvent::TreePage {
                entries: entries
                    .map(|entry| entry.map(FileEntry::from))
                    .collect::<Result<_, _>>()?,
                more,
            },
            Event::DownloadRequested { name, size, held } => OwnedEvent::DownloadRequested {
                name: name.into(),
                size,
                held,
            },
            Event::ListRequested { start_after, limit } => OwnedEvent::ListRequested {
                start_after: start_after.into(),
                limit,
            },
            Event::DeleteRequested { name } => OwnedEvent::DeleteRequested { name: name.into() },
            Event::ListPage { entries, more } => OwnedEvent::ListPage {
                entries: entries
                    .map(|entry| entry.map(FileEntry::from))
                    .collect::<Result<_, _>>()?,
                more,
            },
            Event::Deleted => OwnedEvent::Deleted,
            Event::TransferStarted {
                layout,
                held_chunks,
            } => OwnedEvent::TransferStarted {
                layout,
                held_chunks,
            },
            Event::NeedChunk { index, offset, len } => OwnedEvent::NeedChunk { index, offset, len },
            Event::StoreChunk {
                index,
                offset,
                digest,
                data,
            } => {
                scratch.clear();
                scratch.extend_from_slice(data);
                OwnedEvent::StoreChunk {
                    index,
                    offset,
                    digest,
                }
            }
            Event::Commit { size, digest } => OwnedEvent::Commit { size, digest },
            Event::Verified { size, digest } => OwnedEvent::Verified { size, digest },
            Event::Failed { failure, text } => OwnedEvent::Failed {
                failure,
                text: text.into(),
            },
            Event::PutRequested {
                seq,
                name,
                attrs,
                digest,
                data,
            } => {
                scratch.clear();
                scratch.extend_from_slice(data);
                OwnedEvent::PutRequested {
                    seq,
                    name: name.into(),
                    attrs,
                    digest,
                }
            }
            Event::PutVerified { seq, size, digest } => {
                OwnedEvent::PutVerified { seq, size, digest }
            }
            Event::PutFailed { seq, failure, text } => OwnedEvent::PutFailed {
                seq,
                failure,
                text: text.into(),
            },
            Event::Closed { failure, text } => OwnedEvent::Closed {
                failure,
                text: text.into(),
            },
            // ferry-core and this crate change together: a new event gets its mirror here.
            other => unreachable!("ferry-core event without an OwnedEvent: {other:?}"),
        })
    }
}
