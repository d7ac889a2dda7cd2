//! One protocol connection: the session (hello, requests, answers) around at most
//! one transfer at a time, driven by the caller.
//!
//! Driving a connection (every method takes the current time in milliseconds
//! from any monotonic clock the caller owns):
//!
//! 1. Send: while [`poll_transmit`](Connection::poll_transmit) returns bytes, write them.
//! 2. Act: while [`poll_event`](Connection::poll_event) returns an event, handle it
//!    (store a chunk, read a chunk, answer a request, ...). Events that ask for an
//!    action are returned again until the action is taken.
//! 3. Receive: feed received bytes to [`handle_input`](Connection::handle_input),
//!    which consumes up to one frame per call; feed the rest after steps 1 and 2.
//!    Input is not consumed while bytes or an action are pending.
//! 4. Wait for input no longer than [`deadline`](Connection::deadline), then call
//!    [`handle_timeout`](Connection::handle_timeout).
//!
//! Requests that expect an answer (`Hello`, the opens, `List`, `Delete`,
//! `Finish`) are sent again on timeout, bounded by `max_retries`; the server
//! answers a repeated request from its cached answer, so a lossy link never
//! applies a request twice.

use heapless::{Deque, String};

use crate::digest::Digest;
use crate::framing::{encode_frame, FrameDecoder, Framing, FramingError};
use crate::transfer::{
    ChunkVerdict, FinishVerdict, Layout, ProvideError, Receiver, Sender, Timing, TransferError,
};
use crate::wire::{
    max_body_len, pack_entries, BufferTooSmall, DecodeError, ErrorCode, Frame, Held, ListEntries,
    ListEntry, MAGIC, MAX_CHUNK_SIZE, MAX_ERROR_TEXT, MAX_NAME_LEN, MAX_WINDOW, MIN_CHUNK_SIZE,
    PROTOCOL_VERSION,
};

/// Connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How frames are delimited on this link.
    pub framing: Framing,
    /// The largest chunk this side handles (the client proposes it, the server
    /// answers with the smaller of both).
    pub max_chunk: u32,
    /// Chunks in flight (at most the connection's `W` and [`MAX_WINDOW`]).
    pub window: u16,
    /// Milliseconds after which an unanswered frame is sent again.
    pub retransmit_after: u64,
    /// Re-sends before a chunk or request fails.
    pub max_retries: u32,
    /// Milliseconds of silence from the peer after which the connection closes
    /// (the client only counts while it waits for something).
    pub idle_timeout: u64,
}

impl Config {
    /// Settings for a reliable stream (TLS): length-prefixed frames, 64 KiB chunks.
    pub const fn stream() -> Self {
        Self {
            framing: Framing::LengthPrefixed,
            max_chunk: 64 * 1024,
            window: 16,
            retransmit_after: 30_000,
            max_retries: 3,
            idle_timeout: 120_000,
        }
    }

    /// Settings for a lossy link (serial): COBS frames, 1 KiB chunks.
    pub const fn lossy_link() -> Self {
        Self {
            framing: Framing::Cobs,
            max_chunk: 1024,
            window: 4,
            retransmit_after: 500,
            max_retries: 8,
            idle_timeout: 10_000,
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            retransmit_after: self.retransmit_after,
            max_retries: self.max_retries,
        }
    }
}

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens the connection and makes requests.
    Client,
    /// Answers requests.
    Server,
}

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
            | Failure::Framing(_) => ErrorCode::PROTOCOL,
            Failure::Peer(code) | Failure::Local(code) => code,
            Failure::Unanswered | Failure::IdleTimeout => ErrorCode::TIMEOUT,
            Failure::UnsupportedVersion { .. } => ErrorCode::UNSUPPORTED_VERSION,
        }
    }
}

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
    /// [`accept_upload`](Connection::accept_upload) or [`reject`](Connection::reject).
    UploadRequested {
        /// File name as sent (validate it before it touches a path).
        name: &'a str,
        /// File size.
        size: u64,
        /// Drop any partial copy held for this name.
        fresh: bool,
    },
    /// Server: a client wants to download. Answer with
    /// [`accept_download`](Connection::accept_download) or [`reject`](Connection::reject).
    DownloadRequested {
        /// File name as sent.
        name: &'a str,
        /// Size of the client's partial copy (0 if none).
        size: u64,
        /// Chunks the client holds.
        held: Held,
    },
    /// Server: answer with [`respond_list`](Connection::respond_list) or [`reject`](Connection::reject).
    ListRequested {
        /// List names after this one ("" from the start).
        start_after: &'a str,
        /// At most this many entries.
        limit: u16,
    },
    /// Server: answer with [`respond_delete`](Connection::respond_delete) or [`reject`](Connection::reject).
    DeleteRequested {
        /// File name as sent.
        name: &'a str,
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
    /// Sender: read this chunk and pass it to [`provide_chunk`](Connection::provide_chunk).
    NeedChunk {
        /// Chunk index.
        index: u64,
        /// Byte offset in the file.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// Receiver: write this verified chunk at `offset`, record `digest` as held,
    /// then call [`chunk_stored`](Connection::chunk_stored).
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
    /// durable, then call [`commit_done`](Connection::commit_done) (or
    /// [`fail_transfer`](Connection::fail_transfer)).
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
    /// The connection is finished: close the link.
    Closed {
        /// Why.
        failure: Failure,
        /// The peer's text, if it sent one.
        text: &'a str,
    },
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Hello,
    Upload {
        name: String<MAX_NAME_LEN>,
        size: u64,
        fresh: bool,
    },
    Download {
        name: String<MAX_NAME_LEN>,
        size: u64,
        held: Held,
    },
    List {
        start_after: String<MAX_NAME_LEN>,
        limit: u16,
    },
    Delete {
        name: String<MAX_NAME_LEN>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outstanding {
    seq: u32,
    request: Request,
    sent_at: Option<u64>,
    sends: u32,
}

/// Control frames waiting for the link; owned so they outlive the frame that caused them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    HelloAck {
        chunk_size: u32,
        window: u16,
    },
    ResumeStatus {
        seq: u32,
        held: Held,
    },
    FileInfo {
        seq: u32,
        size: u64,
        chunk_size: u32,
    },
    Deleted {
        seq: u32,
    },
    Verified {
        transfer: u32,
        size: u64,
        digest: Digest,
    },
    Nack {
        transfer: u32,
        index: u64,
        reason: crate::wire::NackReason,
    },
    Error {
        seq: u32,
        code: ErrorCode,
        text: String<MAX_ERROR_TEXT>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Client: `Hello` sent, waiting; server: waiting for `Hello`.
    Handshake,
    Ready {
        chunk_size: u32,
        window: u16,
    },
    /// Closing: the last frames are flushed, then `Closed` is reported.
    Closing(Failure),
    Closed,
}

/// What the received frame in the decoder buffer is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held_ {
    None,
    /// Server: a request for the shell (the frame holds its fields).
    Request {
        seq: u32,
    },
    /// Receiver: a verified chunk to store.
    Store {
        index: u64,
        digest: Digest,
    },
    /// Client: a list page to report.
    ListPage,
}

#[allow(clippy::large_enum_variant)] // no allocator: both halves live inline
enum Active<const W: usize> {
    Send(Sender<W>),
    Receive(Receiver<W>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Receiver: the shell is committing.
    Committing(Digest),
    /// Receiver: committed and `Verified` sent; repeated on a repeated `Finish`.
    Verified(Digest),
}

struct Transfer<const W: usize> {
    id: u32,
    active: Active<W>,
    phase: Phase,
    ack_due: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    Connected { chunk_size: u32, window: u16 },
    Started { layout: Layout, held_chunks: u64 },
    Deleted,
    Verified { size: u64, digest: Digest },
    Failed(Failure),
    Commit { size: u64, digest: Digest },
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

/// One end of a Ferry connection. `B` is the buffer type (`[u8; N]`, `&mut [u8]`,
/// `Vec<u8>`, ...) for the receive and transmit buffers, each at least
/// [`buffer_len`](crate::framing::buffer_len)`(config.max_chunk)` bytes; `W` is the
/// largest window (at most 64).
pub struct Connection<B, const W: usize> {
    role: Role,
    config: Config,
    decoder: FrameDecoder<B>,
    rx_body: Option<usize>,
    held_frame: Held_,
    tx: B,
    tx_len: usize,
    session: Session,
    last_rx: u64,
    next_seq: u32,
    outstanding: Option<Outstanding>,
    replies: Deque<Reply, 4>,
    notices: Deque<Notice, 4>,
    peer_text: String<MAX_ERROR_TEXT>,
    last_request: Option<(u32, Option<Reply>)>,
    transfer: Option<Transfer<W>>,
    stats: Stats,
}

fn owned_text<const N: usize>(text: &str) -> String<N> {
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut owned = String::new();
    let _ = owned.push_str(&text[..end]);
    owned
}

fn owned_name(name: &str) -> Result<String<MAX_NAME_LEN>, UsageError> {
    if name.len() > MAX_NAME_LEN {
        return Err(UsageError::BadName);
    }
    Ok(owned_text(name))
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const W: usize> Connection<B, W> {
    const WINDOW_FITS: () = assert!(W >= 1 && W <= MAX_WINDOW as usize, "W must be 1..=64");

    /// A client connection; it sends `Hello` on the first `poll_transmit`.
    pub fn client(config: Config, rx: B, tx: B, now: u64) -> Result<Self, UsageError> {
        let mut connection = Self::new(Role::Client, config, rx, tx, now)?;
        connection.outstanding = Some(Outstanding {
            seq: 0,
            request: Request::Hello,
            sent_at: None,
            sends: 0,
        });
        Ok(connection)
    }

    /// A server connection; it waits for `Hello`.
    pub fn server(config: Config, rx: B, tx: B, now: u64) -> Result<Self, UsageError> {
        Self::new(Role::Server, config, rx, tx, now)
    }

    fn new(role: Role, config: Config, rx: B, tx: B, now: u64) -> Result<Self, UsageError> {
        let () = Self::WINDOW_FITS;
        let mut config = config;
        config.max_chunk = config.max_chunk.clamp(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE);
        config.window = config.window.clamp(1, W as u16);
        let needed = crate::framing::buffer_len(config.max_chunk as usize);
        if rx.as_ref().len() < needed || tx.as_ref().len() < needed {
            return Err(UsageError::BuffersTooSmall);
        }
        Ok(Self {
            role,
            config,
            decoder: FrameDecoder::new(rx, config.framing, max_body_len(config.max_chunk as usize)),
            rx_body: None,
            held_frame: Held_::None,
            tx,
            tx_len: 0,
            session: Session::Handshake,
            last_rx: now,
            next_seq: 1,
            outstanding: None,
            replies: Deque::new(),
            notices: Deque::new(),
            peer_text: String::new(),
            last_request: None,
            transfer: None,
            stats: Stats::default(),
        })
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            frames_dropped: self.decoder.dropped(),
            ..self.stats
        }
    }

    /// Negotiated chunk size and window, once connected.
    pub fn negotiated(&self) -> Option<(u32, u16)> {
        match self.session {
            Session::Ready { chunk_size, window } => Some((chunk_size, window)),
            _ => None,
        }
    }

    /// Whether the connection has finished (after `Closed` was reported).
    pub fn is_closed(&self) -> bool {
        self.session == Session::Closed
    }

    /// Whether a request or transfer is running.
    pub fn is_busy(&self) -> bool {
        self.outstanding.is_some()
            || self
                .transfer
                .as_ref()
                .is_some_and(|t| !matches!(t.phase, Phase::Verified(_)))
            || self.held_frame != Held_::None
    }

    // ----- client requests -----

    fn start_request(&mut self, request: Request) -> Result<u32, UsageError> {
        if self.role != Role::Client || self.negotiated().is_none() {
            return Err(UsageError::NotReady);
        }
        if self.is_busy() {
            return Err(UsageError::Busy);
        }
        // A verified download kept only to answer a repeated `Finish` is done now.
        self.transfer = None;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.outstanding = Some(Outstanding {
            seq,
            request,
            sent_at: None,
            sends: 0,
        });
        Ok(seq)
    }

    /// Client: uploads `name` of `size` bytes. With `fresh`, the server drops any partial copy.
    pub fn upload(&mut self, name: &str, size: u64, fresh: bool) -> Result<(), UsageError> {
        let name = owned_name(name)?;
        self.start_request(Request::Upload { name, size, fresh })
            .map(drop)
    }

    /// Client: downloads `name`. `partial` describes a partial copy from an
    /// earlier attempt: its size and the chunks it holds (index, digest), in
    /// ascending order; the server sends only the rest.
    pub fn download(
        &mut self,
        name: &str,
        partial: Option<(u64, &mut dyn Iterator<Item = (u64, Digest)>)>,
    ) -> Result<(), UsageError> {
        let name = owned_name(name)?;
        let (size, held, receiver) = match (partial, self.negotiated()) {
            (Some((size, chunks)), Some((chunk_size, window))) => {
                let layout = Layout { size, chunk_size };
                let receiver = Receiver::new(layout, window, self.config.timing(), chunks);
                (size, receiver.held(), Some(receiver))
            }
            _ => (0, Held::default(), None),
        };
        let seq = self.start_request(Request::Download { name, size, held })?;
        if let Some(receiver) = receiver {
            self.transfer = Some(Transfer {
                id: seq,
                active: Active::Receive(receiver),
                phase: Phase::Running,
                ack_due: false,
            });
        }
        Ok(())
    }

    /// Client: lists up to `limit` files after `start_after`.
    pub fn list(&mut self, start_after: &str, limit: u16) -> Result<(), UsageError> {
        let start_after = owned_name(start_after)?;
        self.start_request(Request::List { start_after, limit })
            .map(drop)
    }

    /// Client: deletes `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), UsageError> {
        let name = owned_name(name)?;
        self.start_request(Request::Delete { name }).map(drop)
    }

    // ----- server answers -----

    fn take_request(&mut self) -> Result<u32, UsageError> {
        match self.held_frame {
            Held_::Request { seq } => {
                self.held_frame = Held_::None;
                Ok(seq)
            }
            _ => Err(UsageError::Unexpected),
        }
    }

    fn answer(&mut self, seq: u32, reply: Reply) {
        self.last_request = Some((seq, Some(reply.clone())));
        self.queue(reply);
    }

    fn queue(&mut self, reply: Reply) {
        if self.replies.push_back(reply).is_err() {
            // Only a peer ignoring the protocol floods replies; drop the oldest.
            let _ = self.replies.pop_front();
        }
    }

    /// Server: accepts the requested upload. `held_chunks` are the chunks of this
    /// name and size kept from an earlier attempt (index, digest), ascending.
    pub fn accept_upload(
        &mut self,
        held_chunks: impl IntoIterator<Item = (u64, Digest)>,
    ) -> Result<Held, UsageError> {
        let size = match self.current_frame() {
            Some(Frame::OpenUpload { size, .. }) => size,
            _ => return Err(UsageError::Unexpected),
        };
        let (chunk_size, window) = self.negotiated().ok_or(UsageError::NotReady)?;
        let seq = self.take_request()?;
        let layout = Layout { size, chunk_size };
        let receiver = Receiver::new(layout, window, self.config.timing(), held_chunks);
        let held = receiver.held();
        self.answer(seq, Reply::ResumeStatus { seq, held });
        self.start_transfer(seq, Active::Receive(receiver));
        Ok(held)
    }

    /// Server: accepts the requested download of a file of `size` bytes.
    /// `stored_digest` is the digest the file was committed with (for this
    /// connection's chunk size), checked before `Finish` so rotten data is never
    /// reported verified.
    pub fn accept_download(
        &mut self,
        size: u64,
        stored_digest: Option<Digest>,
    ) -> Result<(), UsageError> {
        let (partial_size, held) = match self.current_frame() {
            Some(Frame::OpenDownload { size, held, .. }) => (size, held),
            _ => return Err(UsageError::Unexpected),
        };
        let (chunk_size, window) = self.negotiated().ok_or(UsageError::NotReady)?;
        let seq = self.take_request()?;
        let layout = Layout { size, chunk_size };
        let held = if held.is_empty() {
            Held::default()
        } else {
            held
        };
        if !held.is_empty() && partial_size != size {
            self.fail_request(seq, Failure::Transfer(TransferError::SourceChanged), "");
            return Ok(());
        }
        match Sender::new(layout, window, self.config.timing(), held, stored_digest) {
            Ok(sender) => {
                self.answer(
                    seq,
                    Reply::FileInfo {
                        seq,
                        size,
                        chunk_size,
                    },
                );
                self.start_transfer(seq, Active::Send(sender));
            }
            Err(error) => self.fail_request(seq, Failure::Transfer(error), ""),
        }
        Ok(())
    }

    /// Server: answers the pending `List` with as many `entries` as fit one frame
    /// and the request's limit. Pass the entries after `start_after` in name order:
    /// all of them (lazily), or at least `limit + 1` so the answer can say whether
    /// more follow. Returns how many were sent; the client asks again after the last.
    pub fn respond_list<'e>(
        &mut self,
        entries: impl IntoIterator<Item = ListEntry<'e>>,
    ) -> Result<u16, UsageError> {
        let limit = match self.current_frame() {
            Some(Frame::List { limit, .. }) => limit,
            _ => return Err(UsageError::Unexpected),
        };
        if self.tx_len > 0 {
            return Err(UsageError::TransmitPending);
        }
        let (chunk_size, _) = self.negotiated().ok_or(UsageError::NotReady)?;
        let seq = self.take_request()?;
        self.last_request = Some((seq, None));
        // Entries are packed into the receive buffer (its request is answered), then framed.
        const PAGE_HEADER: usize = 16;
        let space = max_body_len(chunk_size as usize) - PAGE_HEADER;
        self.rx_body = None;
        let scratch = &mut self.decoder.scratch()[..space];
        let mut all = entries.into_iter();
        let mut page = all.by_ref().take(usize::from(limit));
        let (used, count, more) = pack_entries(scratch, &mut page);
        // More follow if the frame filled up, or the limit cut the listing short.
        let more = more || page.next().is_some() || all.next().is_some();
        let frame = Frame::ListPage {
            seq,
            more,
            count,
            entries: &scratch[..used],
        };
        self.tx_len = encode_frame(&frame, self.config.framing, self.tx.as_mut())
            .map_err(|_| UsageError::BuffersTooSmall)?;
        Ok(count)
    }

    /// Server: answers the pending `Delete`.
    pub fn respond_delete(&mut self) -> Result<(), UsageError> {
        match self.current_frame() {
            Some(Frame::Delete { .. }) => {}
            _ => return Err(UsageError::Unexpected),
        }
        let seq = self.take_request()?;
        self.answer(seq, Reply::Deleted { seq });
        Ok(())
    }

    /// Server: refuses the pending request with `code` and a short `text`.
    pub fn reject(&mut self, code: ErrorCode, text: &str) -> Result<(), UsageError> {
        let seq = self.take_request()?;
        self.answer(
            seq,
            Reply::Error {
                seq,
                code,
                text: owned_text(text),
            },
        );
        Ok(())
    }

    fn fail_request(&mut self, seq: u32, failure: Failure, text: &str) {
        self.answer(
            seq,
            Reply::Error {
                seq,
                code: failure.code(),
                text: owned_text(text),
            },
        );
    }

    // ----- transfer actions -----

    fn start_transfer(&mut self, id: u32, active: Active<W>) {
        let (layout, held_chunks) = match &active {
            Active::Send(sender) => (sender.layout(), sender.held().count()),
            Active::Receive(receiver) => (receiver.layout(), receiver.held().count()),
        };
        self.notice(Notice::Started {
            layout,
            held_chunks,
        });
        self.transfer = Some(Transfer {
            id,
            active,
            phase: Phase::Running,
            ack_due: false,
        });
    }

    /// Sender: the data of the chunk asked for by [`Event::NeedChunk`].
    pub fn provide_chunk(&mut self, index: u64, data: &[u8], now: u64) -> Result<(), UsageError> {
        if self.tx_len > 0 {
            return Err(UsageError::TransmitPending);
        }
        let Some(Transfer {
            id,
            active: Active::Send(sender),
            ..
        }) = self.transfer.as_mut()
        else {
            return Err(UsageError::Unexpected);
        };
        let transfer = *id;
        let (sent_before, resent_before) = sender.counts();
        match sender.provide(index, data, now) {
            Ok(Some(digest)) => {
                let (sent, resent) = sender.counts();
                self.stats.chunks_sent += sent - sent_before;
                self.stats.chunks_resent += resent - resent_before;
                let frame = Frame::Chunk {
                    transfer,
                    index,
                    digest,
                    data,
                };
                self.tx_len = encode_frame(&frame, self.config.framing, self.tx.as_mut())
                    .map_err(|BufferTooSmall| UsageError::BuffersTooSmall)?;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(ProvideError::Failed(error)) => {
                self.end_transfer(Failure::Transfer(error), true);
                Ok(())
            }
            Err(ProvideError::NotRequested | ProvideError::WrongLength) => {
                Err(UsageError::WrongChunk)
            }
        }
    }

    /// Receiver: the chunk from [`Event::StoreChunk`] is stored.
    pub fn chunk_stored(&mut self, index: u64) -> Result<(), UsageError> {
        let Held_::Store {
            index: pending,
            digest,
        } = self.held_frame
        else {
            return Err(UsageError::Unexpected);
        };
        if pending != index {
            return Err(UsageError::WrongChunk);
        }
        self.held_frame = Held_::None;
        if let Some(Transfer {
            active: Active::Receive(receiver),
            ack_due,
            ..
        }) = self.transfer.as_mut()
        {
            receiver.stored(index, digest);
            self.stats.chunks_stored += 1;
            *ack_due = true;
        }
        Ok(())
    }

    /// Receiver: the file from [`Event::Commit`] is durable; the sender is told it is verified.
    pub fn commit_done(&mut self) -> Result<(), UsageError> {
        let Some(transfer) = self.transfer.as_mut() else {
            return Err(UsageError::Unexpected);
        };
        let Phase::Committing(digest) = transfer.phase else {
            return Err(UsageError::Unexpected);
        };
        let Active::Receive(receiver) = &transfer.active else {
            return Err(UsageError::Unexpected);
        };
        let size = receiver.layout().size;
        transfer.phase = Phase::Verified(digest);
        let reply = Reply::Verified {
            transfer: transfer.id,
            size,
            digest,
        };
        self.queue(reply);
        self.notice(Notice::Verified { size, digest });
        Ok(())
    }

    /// Either side: fails the running transfer (storage full, quota, cancel) and tells the peer.
    pub fn fail_transfer(&mut self, code: ErrorCode, text: &str) -> Result<(), UsageError> {
        if self.transfer.is_none() {
            return Err(UsageError::Unexpected);
        }
        if matches!(self.held_frame, Held_::Store { .. }) {
            self.held_frame = Held_::None;
        }
        self.peer_text.clear();
        self.send_transfer_error(code, text);
        self.end_transfer(Failure::Local(code), false);
        Ok(())
    }

    fn send_transfer_error(&mut self, code: ErrorCode, text: &str) {
        if let Some(transfer) = &self.transfer {
            let seq = transfer.id;
            self.queue(Reply::Error {
                seq,
                code,
                text: owned_text(text),
            });
        }
    }

    fn end_transfer(&mut self, failure: Failure, tell_peer: bool) {
        if tell_peer {
            self.send_transfer_error(failure.code(), "");
        }
        if self.transfer.take().is_some() {
            self.outstanding = None;
            self.notice(Notice::Failed(failure));
        }
    }

    fn notice(&mut self, notice: Notice) {
        if self.notices.push_back(notice).is_err() {
            let _ = self.notices.pop_front();
            let _ = self.notices.push_back(notice);
        }
    }

    fn close(&mut self, failure: Failure, tell_peer: bool) {
        if matches!(self.session, Session::Closing(_) | Session::Closed) {
            return;
        }
        if tell_peer {
            self.replies.clear();
            self.queue(Reply::Error {
                seq: 0,
                code: failure.code(),
                text: String::new(),
            });
        }
        self.transfer = None;
        self.outstanding = None;
        self.held_frame = Held_::None;
        self.session = Session::Closing(failure);
    }

    // ----- driving -----

    /// The next bytes to send, if any. They count as sent: write them all.
    pub fn poll_transmit(&mut self, now: u64) -> Option<&[u8]> {
        if self.tx_len == 0 {
            self.tx_len = self.next_frame(now).unwrap_or(0);
        }
        if self.tx_len == 0 {
            return None;
        }
        let len = core::mem::replace(&mut self.tx_len, 0);
        Some(&self.tx.as_ref()[..len])
    }

    fn encode(&mut self, frame: &Frame<'_>) -> Option<usize> {
        encode_frame(frame, self.config.framing, self.tx.as_mut()).ok()
    }

    fn next_frame(&mut self, now: u64) -> Option<usize> {
        if self.session == Session::Closed {
            return None;
        }
        if let Some(reply) = self.replies.pop_front() {
            return self.encode(&reply_frame(&reply));
        }
        if let Some(transfer) = self.transfer.as_mut() {
            let id = transfer.id;
            match &mut transfer.active {
                Active::Receive(receiver) if transfer.ack_due => {
                    transfer.ack_due = false;
                    let (cumulative, mask) = receiver.ack();
                    return self.encode(&Frame::Ack {
                        transfer: id,
                        cumulative,
                        mask,
                    });
                }
                Active::Send(sender) => match sender.finish_due(now) {
                    Ok(Some((size, digest))) => {
                        return self.encode(&Frame::Finish {
                            transfer: id,
                            size,
                            digest,
                        });
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.end_transfer(Failure::Transfer(error), true);
                        return self.next_frame(now);
                    }
                },
                _ => {}
            }
        }
        let outstanding = self.outstanding.as_mut()?;
        if outstanding.sent_at.is_some() {
            return None;
        }
        outstanding.sent_at = Some(now);
        outstanding.sends += 1;
        let seq = outstanding.seq;
        let frame = match &outstanding.request {
            Request::Hello => Frame::Hello {
                magic: MAGIC,
                version: PROTOCOL_VERSION,
                max_chunk: self.config.max_chunk,
                max_window: self.config.window,
            },
            Request::Upload { name, size, fresh } => Frame::OpenUpload {
                seq,
                name,
                size: *size,
                fresh: *fresh,
            },
            Request::Download { name, size, held } => Frame::OpenDownload {
                seq,
                name,
                size: *size,
                held: *held,
            },
            Request::List { start_after, limit } => Frame::List {
                seq,
                start_after,
                limit: *limit,
            },
            Request::Delete { name } => Frame::Delete { seq, name },
        };
        encode_frame(&frame, self.config.framing, self.tx.as_mut()).ok()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self, _now: u64) -> Option<Event<'_>> {
        if let Some(notice) = self.notices.pop_front() {
            return Some(self.notice_event(notice));
        }
        if let Session::Closing(failure) = self.session {
            if self.replies.is_empty() && self.tx_len == 0 {
                self.session = Session::Closed;
                return Some(Event::Closed {
                    failure,
                    text: &self.peer_text,
                });
            }
            return None;
        }
        match self.held_frame {
            Held_::None => {}
            Held_::Store { index, digest } => {
                let Some(Frame::Chunk { data, .. }) = self.current_frame() else {
                    return None;
                };
                let Some(Transfer {
                    active: Active::Receive(receiver),
                    ..
                }) = &self.transfer
                else {
                    return None;
                };
                return Some(Event::StoreChunk {
                    index,
                    offset: receiver.layout().offset(index),
                    digest,
                    data,
                });
            }
            Held_::ListPage => {
                self.held_frame = Held_::None;
                if let Some(Frame::ListPage {
                    more,
                    count,
                    entries,
                    ..
                }) = self.current_frame()
                {
                    return Some(Event::ListPage {
                        entries: ListEntries::new(count, entries),
                        more,
                    });
                }
                return None;
            }
            Held_::Request { .. } => {
                return match self.current_frame()? {
                    Frame::OpenUpload {
                        name, size, fresh, ..
                    } => Some(Event::UploadRequested { name, size, fresh }),
                    Frame::OpenDownload {
                        name, size, held, ..
                    } => Some(Event::DownloadRequested { name, size, held }),
                    Frame::List {
                        start_after, limit, ..
                    } => Some(Event::ListRequested { start_after, limit }),
                    Frame::Delete { name, .. } => Some(Event::DeleteRequested { name }),
                    _ => None,
                };
            }
        }
        if self.tx_len > 0 {
            return None;
        }
        let Some(Transfer {
            active: Active::Send(sender),
            ..
        }) = self.transfer.as_mut()
        else {
            return None;
        };
        let request = sender.next_request()?;
        Some(Event::NeedChunk {
            index: request.index,
            offset: request.offset,
            len: request.len,
        })
    }

    fn notice_event(&self, notice: Notice) -> Event<'_> {
        match notice {
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
                text: &self.peer_text,
            },
        }
    }

    /// The frame in the receive buffer, if one is there.
    fn current_frame(&self) -> Option<Frame<'_>> {
        self.current_frame_result().ok()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn deadline(&self) -> Option<u64> {
        if matches!(self.session, Session::Closing(_) | Session::Closed) {
            return None;
        }
        let idle = (self.role == Role::Server || self.is_busy())
            .then(|| self.last_rx.saturating_add(self.config.idle_timeout));
        let request = self
            .outstanding
            .as_ref()
            .and_then(|o| o.sent_at)
            .map(|at| at.saturating_add(self.config.retransmit_after));
        let transfer = match &self.transfer {
            Some(Transfer {
                active: Active::Send(sender),
                ..
            }) => sender.deadline(),
            _ => None,
        };
        [idle, request, transfer].into_iter().flatten().min()
    }

    /// Applies the passage of time: re-sends and timeouts.
    pub fn handle_timeout(&mut self, now: u64) {
        if matches!(self.session, Session::Closing(_) | Session::Closed) {
            return;
        }
        if (self.role == Role::Server || self.is_busy())
            && now >= self.last_rx.saturating_add(self.config.idle_timeout)
        {
            self.peer_text.clear();
            self.close(Failure::IdleTimeout, true);
            return;
        }
        if let Some(outstanding) = self.outstanding.as_mut() {
            if outstanding
                .sent_at
                .is_some_and(|at| now >= at.saturating_add(self.config.retransmit_after))
            {
                if outstanding.sends > self.config.max_retries {
                    self.peer_text.clear();
                    if outstanding.request == Request::Hello {
                        self.close(Failure::Unanswered, false);
                        return;
                    }
                    self.outstanding = None;
                    self.transfer = None;
                    self.notice(Notice::Failed(Failure::Unanswered));
                } else {
                    outstanding.sent_at = None;
                }
            }
        }
        if let Some(Transfer {
            active: Active::Send(sender),
            ..
        }) = self.transfer.as_mut()
        {
            if let Err(error) = sender.on_time(now) {
                self.peer_text.clear();
                self.end_transfer(Failure::Transfer(error), true);
            }
        }
    }

    /// Feeds received bytes; returns how many were consumed (up to one frame's worth).
    /// Returns 0 while earlier output or an action is pending.
    pub fn handle_input(&mut self, input: &[u8], now: u64) -> usize {
        if self.tx_len > 0
            || !self.replies.is_empty()
            || self.held_frame != Held_::None
            || matches!(self.session, Session::Closing(_) | Session::Closed)
        {
            return 0;
        }
        self.rx_body = None;
        let (used, body_len) = match self.decoder.feed(input) {
            Ok((used, body)) => (used, body.map(<[u8]>::len)),
            Err(error) => {
                self.peer_text.clear();
                self.close(Failure::Framing(error), true);
                return input.len();
            }
        };
        if let Some(len) = body_len {
            self.rx_body = Some(len);
            self.last_rx = now;
            self.on_frame();
        }
        used
    }

    fn on_frame(&mut self) {
        let frame = match self.current_frame_result() {
            Ok(frame) => frame,
            Err(error) => {
                // A damaged frame on a lossy link is dropped by the framing's CRC;
                // one that passes it and still does not decode is a broken peer.
                self.peer_text.clear();
                self.close(Failure::Malformed(error), true);
                return;
            }
        };
        let copy = FrameSummary::of(&frame);
        match copy {
            FrameSummary::Hello {
                magic,
                version,
                max_chunk,
                max_window,
            } => self.on_hello(magic, version, max_chunk, max_window),
            FrameSummary::HelloAck {
                version,
                chunk_size,
                window,
            } => self.on_hello_ack(version, chunk_size, window),
            FrameSummary::Request { seq } => self.on_request(seq),
            FrameSummary::ResumeStatus { seq, held } => self.on_resume_status(seq, held),
            FrameSummary::FileInfo {
                seq,
                size,
                chunk_size,
            } => self.on_file_info(seq, size, chunk_size),
            FrameSummary::Chunk {
                transfer,
                index,
                digest,
            } => self.on_chunk(transfer, index, digest),
            FrameSummary::Ack {
                transfer,
                cumulative,
                mask,
            } => {
                if let Some(sender) = self.sender_for(transfer) {
                    sender.on_ack(cumulative, mask);
                }
            }
            FrameSummary::Nack {
                transfer,
                index,
                reason,
            } => {
                if let Some(sender) = self.sender_for(transfer) {
                    sender.on_nack(index, reason);
                }
            }
            FrameSummary::Finish {
                transfer,
                size,
                digest,
            } => self.on_finish(transfer, size, digest),
            FrameSummary::Verified {
                transfer,
                size,
                digest,
            } => self.on_verified(transfer, size, digest),
            FrameSummary::ListPage { seq } => {
                if self.take_outstanding(seq, |r| matches!(r, Request::List { .. })) {
                    self.held_frame = Held_::ListPage;
                }
            }
            FrameSummary::Deleted { seq } => {
                if self.take_outstanding(seq, |r| matches!(r, Request::Delete { .. })) {
                    self.notice(Notice::Deleted);
                }
            }
            FrameSummary::Error { seq, code } => self.on_error(seq, code),
        }
    }

    fn current_frame_result(&self) -> Result<Frame<'_>, DecodeError> {
        let len = self.rx_body.ok_or(DecodeError::Malformed)?;
        Frame::decode(&self.decoder.buffer()[..len])
    }

    fn sender_for(&mut self, id: u32) -> Option<&mut Sender<W>> {
        match self.transfer.as_mut() {
            Some(Transfer {
                id: current,
                active: Active::Send(sender),
                ..
            }) if *current == id => Some(sender),
            _ => None,
        }
    }

    fn take_outstanding(&mut self, seq: u32, kind: impl Fn(&Request) -> bool) -> bool {
        match &self.outstanding {
            Some(outstanding) if outstanding.seq == seq && kind(&outstanding.request) => {
                self.outstanding = None;
                true
            }
            _ => false,
        }
    }

    fn on_hello(&mut self, magic: u32, version: u16, max_chunk: u32, max_window: u16) {
        if self.role != Role::Server {
            return self.close(Failure::Protocol, true);
        }
        if magic != MAGIC {
            return self.close(Failure::Protocol, true);
        }
        if version != PROTOCOL_VERSION {
            return self.close(Failure::UnsupportedVersion { theirs: version }, true);
        }
        let chunk_size = self.config.max_chunk.min(max_chunk);
        let window = self.config.window.min(max_window).max(1);
        if chunk_size < MIN_CHUNK_SIZE {
            return self.close(Failure::Protocol, true);
        }
        match self.session {
            Session::Handshake => {
                self.session = Session::Ready { chunk_size, window };
                self.decoder.limit_body(max_body_len(chunk_size as usize));
                self.notice(Notice::Connected { chunk_size, window });
            }
            Session::Ready { .. } => {}
            _ => return,
        }
        if let Some((chunk_size, window)) = self.negotiated() {
            self.queue(Reply::HelloAck { chunk_size, window });
        }
    }

    fn on_hello_ack(&mut self, version: u16, chunk_size: u32, window: u16) {
        if self.role != Role::Client {
            return self.close(Failure::Protocol, true);
        }
        if self.session != Session::Handshake {
            return;
        }
        if version != PROTOCOL_VERSION {
            return self.close(Failure::UnsupportedVersion { theirs: version }, false);
        }
        if !(MIN_CHUNK_SIZE..=self.config.max_chunk).contains(&chunk_size)
            || window == 0
            || window > self.config.window
        {
            return self.close(Failure::Protocol, true);
        }
        self.outstanding = None;
        self.session = Session::Ready { chunk_size, window };
        self.decoder.limit_body(max_body_len(chunk_size as usize));
        self.notice(Notice::Connected { chunk_size, window });
    }

    fn on_request(&mut self, seq: u32) {
        if self.role != Role::Server || self.negotiated().is_none() {
            return self.close(Failure::Protocol, true);
        }
        if let Some((last, cached)) = &self.last_request {
            if seq == *last {
                // A repeated request whose answer was lost: answer again, act once.
                if let Some(reply) = cached.clone() {
                    self.queue(reply);
                    return;
                }
                if self.transfer.as_ref().is_some_and(|t| t.id == seq) {
                    return;
                }
            } else if seq.wrapping_sub(*last) > u32::MAX / 2 {
                return; // older than the last request: stale
            }
        }
        // A new request ends whatever transfer was running (the client gave up on it).
        if self
            .transfer
            .take()
            .is_some_and(|t| !matches!(t.phase, Phase::Verified(_)))
        {
            self.notice(Notice::Failed(Failure::Local(ErrorCode::CANCELLED)));
        }
        self.last_request = Some((seq, None));
        self.held_frame = Held_::Request { seq };
    }

    fn on_resume_status(&mut self, seq: u32, held: Held) {
        let Some(Outstanding {
            seq: current,
            request: Request::Upload { size, .. },
            ..
        }) = &self.outstanding
        else {
            return;
        };
        if *current != seq {
            return;
        }
        let size = *size;
        self.outstanding = None;
        let Some((chunk_size, window)) = self.negotiated() else {
            return;
        };
        let layout = Layout { size, chunk_size };
        match Sender::new(layout, window, self.config.timing(), held, None) {
            Ok(sender) => self.start_transfer(seq, Active::Send(sender)),
            Err(error) => {
                let failure = Failure::Transfer(error);
                self.fail_request(seq, failure, "");
                self.notice(Notice::Failed(failure));
            }
        }
    }

    fn on_file_info(&mut self, seq: u32, size: u64, chunk_size: u32) {
        let Some(Outstanding {
            seq: current,
            request: Request::Download { .. },
            ..
        }) = &self.outstanding
        else {
            return;
        };
        if *current != seq {
            return;
        }
        self.outstanding = None;
        let Some((negotiated, window)) = self.negotiated() else {
            return;
        };
        if chunk_size != negotiated {
            return self.close(Failure::Protocol, true);
        }
        let layout = Layout { size, chunk_size };
        match self.transfer.take() {
            Some(Transfer {
                active: Active::Receive(receiver),
                ..
            }) if receiver.layout() == layout => {
                self.start_transfer(seq, Active::Receive(receiver));
            }
            _ => {
                let receiver = Receiver::new(layout, window, self.config.timing(), []);
                self.start_transfer(seq, Active::Receive(receiver));
            }
        }
    }

    fn on_chunk(&mut self, id: u32, index: u64, digest: Digest) {
        let Some(Transfer {
            id: current,
            active: Active::Receive(receiver),
            phase,
            ack_due,
        }) = self.transfer.as_mut()
        else {
            return;
        };
        if *current != id || *phase != Phase::Running {
            *ack_due = *current == id;
            return;
        }
        let Some(len) = self.rx_body else { return };
        let Ok(Frame::Chunk { data, .. }) = Frame::decode(&self.decoder.buffer()[..len]) else {
            return;
        };
        match receiver.on_chunk(index, &digest, data) {
            Ok(ChunkVerdict::Store) => self.held_frame = Held_::Store { index, digest },
            Ok(ChunkVerdict::Ignore) => *ack_due = true,
            Ok(ChunkVerdict::Nack(reason)) => {
                self.stats.chunks_nacked += 1;
                let transfer = id;
                self.queue(Reply::Nack {
                    transfer,
                    index,
                    reason,
                });
            }
            Err(error) => {
                self.peer_text.clear();
                self.end_transfer(Failure::Transfer(error), true);
            }
        }
    }

    fn on_finish(&mut self, id: u32, size: u64, digest: Digest) {
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        let Active::Receive(receiver) = &transfer.active else {
            return;
        };
        if transfer.id != id {
            return;
        }
        match transfer.phase {
            Phase::Running => {}
            Phase::Committing(_) => return,
            Phase::Verified(ours) => {
                let reply = Reply::Verified {
                    transfer: id,
                    size,
                    digest: ours,
                };
                return self.queue(reply);
            }
        }
        match receiver.on_finish(size, &digest) {
            Ok(FinishVerdict::Commit(digest)) => {
                transfer.phase = Phase::Committing(digest);
                self.notice(Notice::Commit { size, digest });
            }
            Ok(FinishVerdict::Incomplete) => transfer.ack_due = true,
            Err(error) => {
                self.peer_text.clear();
                self.end_transfer(Failure::Transfer(error), true);
            }
        }
    }

    fn on_verified(&mut self, id: u32, size: u64, digest: Digest) {
        let Some(sender) = self.sender_for(id) else {
            return;
        };
        let result = sender.on_verified(size, digest);
        match result {
            Ok(digest) => {
                self.transfer = None;
                self.notice(Notice::Verified { size, digest });
            }
            Err(error) => {
                self.peer_text.clear();
                self.end_transfer(Failure::Transfer(error), true);
            }
        }
    }

    fn on_error(&mut self, seq: u32, code: ErrorCode) {
        let text = match self.current_frame() {
            Some(Frame::Error { text, .. }) => owned_text::<MAX_ERROR_TEXT>(text),
            _ => String::new(),
        };
        self.peer_text = text;
        if seq == 0 {
            return self.close(Failure::Peer(code), false);
        }
        let ours = self.outstanding.as_ref().is_some_and(|o| o.seq == seq)
            || self.transfer.as_ref().is_some_and(|t| t.id == seq);
        if !ours {
            return;
        }
        if self
            .outstanding
            .as_ref()
            .is_some_and(|o| o.request == Request::Hello)
        {
            return self.close(Failure::Peer(code), false);
        }
        self.outstanding = None;
        self.transfer = None;
        self.notice(Notice::Failed(Failure::Peer(code)));
    }
}

fn reply_frame(reply: &Reply) -> Frame<'_> {
    match reply {
        Reply::HelloAck { chunk_size, window } => Frame::HelloAck {
            version: PROTOCOL_VERSION,
            chunk_size: *chunk_size,
            window: *window,
        },
        Reply::ResumeStatus { seq, held } => Frame::ResumeStatus {
            seq: *seq,
            held: *held,
        },
        Reply::FileInfo {
            seq,
            size,
            chunk_size,
        } => Frame::FileInfo {
            seq: *seq,
            size: *size,
            chunk_size: *chunk_size,
        },
        Reply::Deleted { seq } => Frame::Deleted { seq: *seq },
        Reply::Verified {
            transfer,
            size,
            digest,
        } => Frame::Verified {
            transfer: *transfer,
            size: *size,
            digest: *digest,
        },
        Reply::Nack {
            transfer,
            index,
            reason,
        } => Frame::Nack {
            transfer: *transfer,
            index: *index,
            reason: *reason,
        },
        Reply::Error { seq, code, text } => Frame::Error {
            seq: *seq,
            code: *code,
            text,
        },
    }
}

/// The fields of a received frame that outlive the receive buffer.
enum FrameSummary {
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
    Request {
        seq: u32,
    },
    ResumeStatus {
        seq: u32,
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
    },
    Ack {
        transfer: u32,
        cumulative: u64,
        mask: u64,
    },
    Nack {
        transfer: u32,
        index: u64,
        reason: crate::wire::NackReason,
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
    ListPage {
        seq: u32,
    },
    Deleted {
        seq: u32,
    },
    Error {
        seq: u32,
        code: ErrorCode,
    },
}

impl FrameSummary {
    fn of(frame: &Frame<'_>) -> Self {
        match *frame {
            Frame::Hello {
                magic,
                version,
                max_chunk,
                max_window,
            } => Self::Hello {
                magic,
                version,
                max_chunk,
                max_window,
            },
            Frame::HelloAck {
                version,
                chunk_size,
                window,
            } => Self::HelloAck {
                version,
                chunk_size,
                window,
            },
            Frame::OpenUpload { seq, .. }
            | Frame::OpenDownload { seq, .. }
            | Frame::List { seq, .. }
            | Frame::Delete { seq, .. } => Self::Request { seq },
            Frame::ResumeStatus { seq, held } => Self::ResumeStatus { seq, held },
            Frame::FileInfo {
                seq,
                size,
                chunk_size,
            } => Self::FileInfo {
                seq,
                size,
                chunk_size,
            },
            Frame::Chunk {
                transfer,
                index,
                digest,
                ..
            } => Self::Chunk {
                transfer,
                index,
                digest,
            },
            Frame::Ack {
                transfer,
                cumulative,
                mask,
            } => Self::Ack {
                transfer,
                cumulative,
                mask,
            },
            Frame::Nack {
                transfer,
                index,
                reason,
            } => Self::Nack {
                transfer,
                index,
                reason,
            },
            Frame::Finish {
                transfer,
                size,
                digest,
            } => Self::Finish {
                transfer,
                size,
                digest,
            },
            Frame::Verified {
                transfer,
                size,
                digest,
            } => Self::Verified {
                transfer,
                size,
                digest,
            },
            Frame::ListPage { seq, .. } => Self::ListPage { seq },
            Frame::Deleted { seq } => Self::Deleted { seq },
            Frame::Error { seq, code, .. } => Self::Error { seq, code },
        }
    }
}
