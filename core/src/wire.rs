//! The frames on the wire and their postcard encoding.
//!
//! A frame body is one postcard-encoded [`Frame`]: a varint variant tag, then the
//! fields in order (integers as varints, byte strings and names as a varint length
//! and the bytes). Decoding borrows names and chunk data from the receive buffer;
//! nothing is allocated. [`Frame::decode`] rejects unknown tags, truncated or
//! trailing bytes, names and texts over their bounds and invalid UTF-8.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Protocol magic, first field of [`Frame::Hello`] ("FRY1").
pub const MAGIC: u32 = 0x4652_5931;
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The longest file name (a whole `/`-separated path), in bytes of UTF-8. The limits of
/// each component (255 bytes) and of the depth are the server's, not the wire's.
pub const MAX_NAME_LEN: usize = 1024;
/// The longest error text, in bytes of UTF-8.
pub const MAX_ERROR_TEXT: usize = 128;
/// The largest window: the ACK bitmap is 64 bits wide.
pub const MAX_WINDOW: u16 = 64;
/// Smallest chunk size a peer may negotiate.
pub const MIN_CHUNK_SIZE: u32 = 16;
/// Largest chunk size a peer may negotiate.
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;

/// Bytes a chunk frame adds to its data: tag (1), transfer (≤5), index (≤10),
/// digest (1 + 32), data length (≤5).
pub const CHUNK_FRAME_OVERHEAD: usize = 1 + 5 + 10 + 33 + 5;
/// Upper bound of every frame that is not a chunk, a `Put` or a list page (the largest is
/// [`Frame::ListTree`] with two names of [`MAX_NAME_LEN`] bytes, 2,062 bytes).
pub const CONTROL_FRAME_MAX: usize = 2 * MAX_NAME_LEN + 64;

/// Bytes a [`Frame::Put`] adds to its name and data: tag (1), seq (≤5), name length (≤2),
/// modified (≤10), mode (≤5), digest (1 + 32), data length (≤5).
pub const PUT_FRAME_OVERHEAD: usize = 1 + 5 + 2 + 10 + 5 + 33 + 5;

/// Whether a file of `size` bytes named `name` (`name_len` bytes) goes in one
/// [`Frame::Put`] on a connection of `chunk_size`: at most one chunk (the frame then fits
/// [`max_body_len`]).
pub const fn fits_put(name_len: usize, size: u64, chunk_size: u32) -> bool {
    size <= chunk_size as u64 && name_len <= MAX_NAME_LEN
}

/// The largest frame body for a given chunk size; decoders reject anything longer. The
/// largest frame with data is a [`Frame::Put`] of a whole chunk under the longest name.
pub const fn max_body_len(chunk_size: usize) -> usize {
    let chunk = chunk_size + PUT_FRAME_OVERHEAD + MAX_NAME_LEN;
    if chunk > CONTROL_FRAME_MAX {
        chunk
    } else {
        CONTROL_FRAME_MAX
    }
}

/// The fewest bytes a [`TreeEntry`] takes in a list page: as a [`ListEntry`], plus the
/// mode and the folder flag.
pub const TREE_ENTRY_MIN_LEN: usize = LIST_ENTRY_MIN_LEN + 2;

/// The fewest bytes a [`ListEntry`] takes in a list page: a one-byte name (with its
/// length), one-byte size, time and chunk size, and the digest (1 + 32).
pub const LIST_ENTRY_MIN_LEN: usize = 1 + 1 + 1 + 1 + 1 + 33;
/// Bytes of a `ListPage` frame besides its entries (tag, seq, more, count, length), rounded up.
pub const LIST_PAGE_HEADER: usize = 16;

/// The most entries one list page can carry for a chunk size: a server never needs to
/// read more entries' metadata than this (plus one, to tell whether more follow) per page.
pub const fn list_page_capacity(chunk_size: usize) -> usize {
    (max_body_len(chunk_size) - LIST_PAGE_HEADER) / LIST_ENTRY_MIN_LEN
}

/// Why a chunk was refused.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackReason {
    /// The data does not match the digest that came with it.
    DigestMismatch,
    /// The data is not as long as a chunk at that index must be.
    BadLength,
}

/// An error code on the wire. Unknown codes from newer peers survive decoding.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The peer broke the protocol (bad frame, bad order, bad field).
    pub const PROTOCOL: Self = Self(1);
    /// The peer speaks a protocol version this side does not.
    pub const UNSUPPORTED_VERSION: Self = Self(2);
    /// No such file.
    pub const NOT_FOUND: Self = Self(3);
    /// The file name is not acceptable.
    pub const INVALID_NAME: Self = Self(4);
    /// The identity's quota would be exceeded.
    pub const QUOTA_EXCEEDED: Self = Self(5);
    /// The file is larger than the server accepts.
    pub const TOO_LARGE: Self = Self(6);
    /// Storage failed (disk full, I/O error).
    pub const STORAGE: Self = Self(7);
    /// Too many connections or transfers.
    pub const BUSY: Self = Self(8);
    /// The whole-file digest did not match.
    pub const DIGEST_MISMATCH: Self = Self(9);
    /// The source changed since the held chunks were written.
    pub const SOURCE_CHANGED: Self = Self(10);
    /// A chunk was refused too many times.
    pub const RETRIES_EXHAUSTED: Self = Self(11);
    /// The peer stopped answering.
    pub const TIMEOUT: Self = Self(12);
    /// The transfer was cancelled.
    pub const CANCELLED: Self = Self(13);
    /// Not allowed.
    pub const FORBIDDEN: Self = Self(14);
    /// An internal error on the peer.
    pub const INTERNAL: Self = Self(15);

    /// A short name for logs and error messages ("unknown error" for a code
    /// this crate does not know; [`Display`](core::fmt::Display) adds its number).
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "protocol violation",
            2 => "unsupported version",
            3 => "not found",
            4 => "invalid name",
            5 => "quota exceeded",
            6 => "too large",
            7 => "storage failure",
            8 => "busy",
            9 => "digest mismatch",
            10 => "source changed",
            11 => "retries exhausted",
            12 => "timeout",
            13 => "cancelled",
            14 => "forbidden",
            15 => "internal error",
            _ => "unknown error",
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            "unknown error" => write!(f, "unknown error (code {})", self.0),
            name => f.write_str(name),
        }
    }
}

/// How a server that refuses a connection for capacity says when to come back: it sends
/// an `Error` with code [`ErrorCode::BUSY`] on seq 0 (so it closes the connection) whose
/// text ends with `retry-after=N`, N a whole number of seconds. The frame layout is
/// unchanged, so older peers read it as a plain `BUSY` with a text.
pub const RETRY_AFTER: &str = "retry-after=";

/// The seconds of a [`RETRY_AFTER`] at the end of an error text, if there is one.
pub fn retry_after_secs(text: &str) -> Option<u32> {
    let (_, tail) = text.rsplit_once(RETRY_AFTER)?;
    let tail = tail.trim_end();
    if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// What a client says about a file besides its bytes, kept with the file and given back in
/// listings so that a download can restore it. `None`: not given (the server records the
/// commit time and no mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileAttrs {
    /// Modification time, seconds since the Unix epoch.
    pub modified: Option<u64>,
    /// Unix permission bits (`0o777` at most; set-id and sticky bits are never kept).
    pub mode: Option<u32>,
}

/// What a receiver already holds of a file: every chunk below `prefix`, and chunk
/// `prefix + 1 + i` for every bit `i` set in `mask`. `digest` is the
/// [`HeldDigest`](crate::digest::HeldDigest) over those chunks, in index order.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// Every chunk below this index is held.
    pub prefix: u64,
    /// Bit `i`: chunk `prefix + 1 + i` is held.
    pub mask: u64,
    /// Digest over the held chunks' indices and digests.
    pub digest: Digest,
}

impl Held {
    /// Whether chunk `index` is held.
    pub fn contains(&self, index: u64) -> bool {
        if index < self.prefix {
            return true;
        }
        let bit = index - self.prefix;
        (1..=64).contains(&bit) && self.mask & (1 << (bit - 1)) != 0
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.prefix == 0 && self.mask == 0
    }

    /// One past the highest held index (0 when nothing is held).
    pub fn end(&self) -> u64 {
        if self.mask == 0 {
            self.prefix
        } else {
            self.prefix + 1 + (64 - u64::from(self.mask.leading_zeros()))
        }
    }

    /// How many chunks are held.
    pub fn count(&self) -> u64 {
        self.prefix + u64::from(self.mask.count_ones())
    }
}

/// One file in a listing.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry<'a> {
    /// File name.
    pub name: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds since the Unix epoch.
    pub modified: u64,
    /// Chunk size the digest was computed with.
    pub chunk_size: u32,
    /// Whole-file digest ([`FileDigest`](crate::digest::FileDigest)).
    pub digest: Digest,
}

/// One entry of a listing by [`Frame::ListTree`]: a file, or a folder (a name ending in
/// `/`, size 0, zero digest) that holds files below it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeEntry<'a> {
    /// Full name (path) of the file, or the folder's prefix ending in `/`.
    pub name: &'a str,
    /// Size in bytes (0 for a folder).
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (0 for a folder).
    pub modified: u64,
    /// Unix permission bits, 0 if not given.
    pub mode: u32,
    /// Chunk size the digest was computed with.
    pub chunk_size: u32,
    /// Whole-file digest ([`FileDigest`](crate::digest::FileDigest)); zero for a folder.
    pub digest: Digest,
    /// Whether this is a folder.
    pub folder: bool,
}

/// Every frame of protocol version 1.
///
/// | frame | fields | sent by | when |
/// |---|---|---|---|
/// | `Hello` | magic, version, max chunk size, max window | client | first, re-sent until answered |
/// | `HelloAck` | version, chunk size, window | server | answer to `Hello`: the negotiated values |
/// | `OpenUpload` | seq, name, size, fresh | client | to start or resume an upload (`fresh`: drop what the server holds) |
/// | `ResumeStatus` | seq, held | server | answer to `OpenUpload`: what it already holds; the upload's transfer id is `seq` |
/// | `OpenDownload` | seq, name, size, held | client | to start or resume a download (`size`/`held` describe a partial copy, zero if none) |
/// | `FileInfo` | seq, size, chunk size | server | answer to `OpenDownload`; chunks follow |
/// | `Chunk` | transfer, index, SHA-256, data | sender | for each chunk the receiver does not hold; again after a NACK or timeout |
/// | `Ack` | transfer, cumulative, mask | receiver | after a chunk is stored or a duplicate arrives: all chunks below `cumulative` and chunk `cumulative + 1 + i` for each bit `i` are held |
/// | `Nack` | transfer, index, reason | receiver | a chunk whose data does not match its digest or length |
/// | `Finish` | transfer, size, file digest | sender | all chunks acknowledged; re-sent until answered |
/// | `Verified` | transfer, size, file digest | receiver | the file digest matched and the file is committed |
/// | `List` | seq, start after, limit | client | list files in name order after a name |
/// | `ListPage` | seq, more, count, entries | server | answer to `List`: postcard-encoded [`ListEntry`]s, as many as fit one frame |
/// | `Delete` | seq, name | client | delete a file |
/// | `Deleted` | seq | server | answer to `Delete` |
/// | `Error` | seq (request or transfer, 0: connection), code, text | either | a request or transfer failed; with seq 0 the sender closes |
/// | `Put` | seq, name, modified, mode, SHA-256, data | client | a whole file of at most one chunk; up to `window` unanswered at once; answered `Verified` (transfer = seq) or `Error`, in order |
/// | `OpenUploadWith` | seq, name, size, fresh, modified, mode | client | `OpenUpload` with attributes (0: not given) |
/// | `ListTree` | seq, prefix, start after, limit, recursive | client | list below `prefix`: every file (`recursive`) or one level with folders; answered by `ListPage` of [`TreeEntry`]s |
#[allow(missing_docs)] // the fields are documented in the table above
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello {
        magic: u32,
        version: u16,
        max_chunk: u32,
        max_window: u16,
    },
    HelloAck {
        version: u16,
        chunk_size: u32,
        window: u16,
    },
    OpenUpload {
        seq: u32,
        name: &'a str,
        size: u64,
        fresh: bool,
    },
    ResumeStatus {
        seq: u32,
        held: Held,
    },
    OpenDownload {
        seq: u32,
        name: &'a str,
        size: u64,
        held: Held,
    },
    FileInfo {
        seq: u32,
        size: u64,
        chunk_size: u32,
    },
    Chunk {
        transfer: u32,
        index: u64,
        digest: Digest,
        #[serde(with = "serde_bytes")]
        data: &'a [u8],
    },
    Ack {
        transfer: u32,
        cumulative: u64,
        mask: u64,
    },
    Nack {
        transfer: u32,
        index: u64,
        reason: NackReason,
    },
    Finish {
        transfer: u32,
        size: u64,
        digest: Digest,
    },
    Verified {
        transfer: u32,
        size: u64,
        digest: Digest,
    },
    List {
        seq: u32,
        start_after: &'a str,
        limit: u16,
    },
    ListPage {
        seq: u32,
        more: bool,
        count: u16,
        #[serde(with = "serde_bytes")]
        entries: &'a [u8],
    },
    Delete {
        seq: u32,
        name: &'a str,
    },
    Deleted {
        seq: u32,
    },
    Error {
        seq: u32,
        code: ErrorCode,
        text: &'a str,
    },
    Put {
        seq: u32,
        name: &'a str,
        modified: u64,
        mode: u32,
        digest: Digest,
        #[serde(with = "serde_bytes")]
        data: &'a [u8],
    },
    OpenUploadWith {
        seq: u32,
        name: &'a str,
        size: u64,
        fresh: bool,
        modified: u64,
        mode: u32,
    },
    ListTree {
        seq: u32,
        prefix: &'a str,
        start_after: &'a str,
        limit: u16,
        recursive: bool,
    },
}

/// Why a frame body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a valid encoding of any frame (unknown tag, truncated, bad varint, bad UTF-8).
    #[error("not a valid frame (unknown tag, truncated, bad varint or bad UTF-8)")]
    Malformed,
    /// Bytes left over after a complete frame.
    #[error("bytes left over after a complete frame")]
    TrailingBytes,
    /// A name longer than [`MAX_NAME_LEN`].
    #[error("a name longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// An error text longer than [`MAX_ERROR_TEXT`].
    #[error("an error text longer than {MAX_ERROR_TEXT} bytes")]
    TextTooLong,
    /// A list page whose entries do not decode to `count` valid entries.
    #[error("a list page whose entries do not decode")]
    BadListPage,
}

/// The output buffer is too small for the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the output buffer is too small for the frame")]
pub struct BufferTooSmall;

impl<'a> Frame<'a> {
    /// Decodes and validates one frame body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let (frame, rest) =
            postcard::take_from_bytes::<Frame<'a>>(body).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        frame.validate()?;
        Ok(frame)
    }

    /// The `seq` of a request (`OpenUpload`, `OpenUploadWith`, `OpenDownload`, `Delete`,
    /// `List`, `ListTree`) whose body
    /// [`Frame::decode`] refused with [`DecodeError::NameTooLong`]: that request can be
    /// answered `INVALID_NAME` instead of closing the connection.
    pub fn long_name_request_seq(body: &'a [u8]) -> Option<u32> {
        match postcard::take_from_bytes::<Frame<'a>>(body) {
            Ok((frame, [])) => match frame {
                Frame::OpenUpload { seq, name, .. }
                | Frame::OpenUploadWith { seq, name, .. }
                | Frame::OpenDownload { seq, name, .. }
                | Frame::Delete { seq, name }
                | Frame::List {
                    seq,
                    start_after: name,
                    ..
                } if name.len() > MAX_NAME_LEN => Some(seq),
                Frame::ListTree {
                    seq,
                    prefix,
                    start_after,
                    ..
                } if prefix.len().max(start_after.len()) > MAX_NAME_LEN => Some(seq),
                _ => None,
            },
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        match *self {
            Frame::OpenUpload { name, .. }
            | Frame::OpenUploadWith { name, .. }
            | Frame::Put { name, .. }
            | Frame::OpenDownload { name, .. }
            | Frame::Delete { name, .. }
            | Frame::List {
                start_after: name, ..
            } if name.len() > MAX_NAME_LEN => Err(DecodeError::NameTooLong),
            Frame::ListTree {
                prefix,
                start_after,
                ..
            } if prefix.len().max(start_after.len()) > MAX_NAME_LEN => {
                Err(DecodeError::NameTooLong)
            }
            Frame::Error { text, .. } if text.len() > MAX_ERROR_TEXT => {
                Err(DecodeError::TextTooLong)
            }
            // A page answers `List` (entries are `ListEntry`s) or `ListTree` (`TreeEntry`s):
            // the frame alone does not say which, so it must be valid as one of them; the
            // client checks the kind it asked for.
            Frame::ListPage { count, entries, .. } => {
                if ListEntries::new(count, entries).all(|e| e.is_ok())
                    || TreeEntries::new(count, entries).all(|e| e.is_ok())
                {
                    Ok(())
                } else {
                    Err(DecodeError::BadListPage)
                }
            }
            _ => Ok(()),
        }
    }

    /// Encodes the frame body into `out`, returning its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        postcard::to_slice(self, out)
            .map(|used| used.len())
            .map_err(|_| BufferTooSmall)
    }
}

/// An entry of a list page: [`ListEntry`] or [`TreeEntry`].
pub trait PageEntry<'a>: Deserialize<'a> + Serialize {
    /// The entry's name.
    fn name(&self) -> &'a str;
}

impl<'a> PageEntry<'a> for ListEntry<'a> {
    fn name(&self) -> &'a str {
        self.name
    }
}

impl<'a> PageEntry<'a> for TreeEntry<'a> {
    fn name(&self) -> &'a str {
        self.name
    }
}

/// Iterates the entries of a [`Frame::ListPage`] answering `List`.
pub type ListEntries<'a> = PageEntries<'a, ListEntry<'a>>;
/// Iterates the entries of a [`Frame::ListPage`] answering `ListTree`.
pub type TreeEntries<'a> = PageEntries<'a, TreeEntry<'a>>;

/// Iterates the entries of a [`Frame::ListPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEntries<'a, E> {
    remaining: u16,
    bytes: &'a [u8],
    entry: core::marker::PhantomData<E>,
}

impl<'a, E> PageEntries<'a, E> {
    /// Iterates `count` entries encoded back to back in `bytes`.
    pub fn new(count: u16, bytes: &'a [u8]) -> Self {
        Self {
            remaining: count,
            bytes,
            entry: core::marker::PhantomData,
        }
    }
}

impl<'a, E: PageEntry<'a>> Iterator for PageEntries<'a, E> {
    type Item = Result<E, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return (!self.bytes.is_empty()).then(|| {
                self.bytes = &[];
                Err(DecodeError::TrailingBytes)
            });
        }
        self.remaining -= 1;
        match postcard::take_from_bytes::<E>(self.bytes) {
            Ok((entry, rest)) if entry.name().len() <= MAX_NAME_LEN => {
                self.bytes = rest;
                Some(Ok(entry))
            }
            Ok(_) => {
                self.remaining = 0;
                self.bytes = &[];
                Some(Err(DecodeError::NameTooLong))
            }
            Err(_) => {
                self.remaining = 0;
                self.bytes = &[];
                Some(Err(DecodeError::Malformed))
            }
        }
    }
}

/// Packs list entries into the space of one [`Frame::ListPage`].
pub(crate) fn pack_entries<'e, E: PageEntry<'e>>(
    out: &mut [u8],
    entries: &mut dyn Iterator<Item = E>,
) -> (usize, u16, bool) {
    let mut used = 0;
    let mut count: u16 = 0;
    let mut more = false;
    for entry in entries {
        if entry.name().len() > MAX_NAME_LEN {
            continue;
        }
        match postcard::to_slice(&entry, &mut out[used..]) {
            Ok(written) if count < u16::MAX => {
                used += written.len();
                count += 1;
            }
            _ => {
                more = true;
                break;
            }
        }
    }
    (used, count, more)
}

#[cfg(test)]
mod tests;
