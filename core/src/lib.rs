//! # ferry-core
//!
//! Ferry's protocol: chunked file transfer with a SHA-256 per chunk, selective
//! acknowledgement, bounded re-sends, resume, and a whole-file digest, as a
//! deterministic state machine. `no_std`, no allocator, no I/O, no clock: the
//! caller feeds received bytes and the current time, and polls for bytes to send,
//! the next deadline, and events. Every server, client, web page and firmware
//! image of Ferry is a shell around [`Connection`].
//!
//! ## Data flow
//! ```text
//! bytes in ─▶ FrameDecoder (framing) ─▶ Frame::decode (postcard, bounded) ─▶ Connection
//!                                                                              │ session: Hello, requests, answers
//!                                                                              │ transfer: Sender / Receiver (window, ACK/NACK, retries, resume)
//! bytes out ◀─ encode_frame ◀──────────────────────────────────────────────────┤
//! events out ◀─ NeedChunk / StoreChunk / Commit / Verified / Failed ◀──────────┘
//! ```
//! Storage stays with the caller: the connection asks for chunk data
//! ([`Event::NeedChunk`]) and hands over verified chunks ([`Event::StoreChunk`]).
//!
//! ## Wire format (version 1)
//! The frames are listed in [`Frame`]. Over TLS they are length-prefixed; over
//! a lossy link, COBS-framed with a CRC-32 ([`framing`]). The largest frame body
//! is [`max_body_len`]`(chunk_size)` = `max(chunk_size + 54, 512)` bytes, a
//! compile-time constant for a given chunk size; a longer one is refused before
//! it is buffered.
//!
//! ## Digests
//! Each chunk carries `SHA-256(data)`; the file digest is SHA-256 over the
//! ordered chunk digests (see [`digest`]), so each end hashes each byte once.
//!
//! ## Memory
//! Buffers are supplied by the caller: two of [`buffer_len`]`(chunk)` bytes
//! (receive and transmit). The rest of the state is fixed by the window `W`.
//! Measured on x86_64 (`core::mem::size_of`, see the `state_sizes` test):
//!
//! | configuration | buffers | state besides buffers | `Connection` with inline buffers |
//! |---|---|---|---|
//! | 1 KiB chunks, window 4 | 2 × 2,126 B | 5,060 B | 9,312 B |
//! | 64 KiB chunks, window 16 | 2 × 66,889 B | 8,142 B | 141,920 B |

#![no_std]

pub mod blocking;
pub mod connection;
pub mod digest;
pub mod framing;
pub mod transfer;
pub mod wire;

pub use connection::{Config, Connection, Event, Failure, Role, Stats, Transmit, UsageError};
pub use digest::{chunk_digest, Digest, FileDigest};
pub use framing::{buffer_len, Framing};
pub use transfer::{Layout, TransferError};
pub use wire::{
    max_body_len, retry_after_secs, ErrorCode, FileAttrs, Frame, Held, ListEntries, ListEntry,
    TreeEntries, TreeEntry, RETRY_AFTER,
};
