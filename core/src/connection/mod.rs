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

mod actions;
mod config;
mod errors;
mod events;
mod frames;
mod puts;
mod receive;
mod requests;

use heapless::{Deque, String};

use crate::digest::Digest;
use crate::framing::{encode_frame, FrameDecoder};
use crate::transfer::{Receiver, Sender};
use crate::wire::{
    max_body_len, FileAttrs, Frame, Held, ListEntries, TreeEntries, MAGIC, MAX_CHUNK_SIZE,
    MAX_ERROR_TEXT, MAX_NAME_LEN, MAX_WINDOW, MIN_CHUNK_SIZE, PROTOCOL_VERSION,
};

pub use config::{Config, Role};
pub use errors::{Failure, UsageError};
pub use events::{Event, Stats};

use events::Notice;
use frames::{reply_frame, Reply};

#[allow(clippy::large_enum_variant)] // no allocator: a request lives inline
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Hello,
    Upload {
        name: String<MAX_NAME_LEN>,
        size: u64,
        fresh: bool,
        /// Sent as `OpenUploadWith` when given (else the plain `OpenUpload` of old).
        attrs: Option<FileAttrs>,
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
    ListTree {
        prefix: String<MAX_NAME_LEN>,
        start_after: String<MAX_NAME_LEN>,
        limit: u16,
        recursive: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outstanding {
    seq: u32,
    request: Request,
    sent_at: Option<u64>,
    sends: u32,
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
    /// Client: a list page to report (`tree`: it answers `ListTree`).
    ListPage {
        tree: bool,
    },
    /// Server: a verified `Put` whose data the shell takes.
    Put {
        seq: u32,
    },
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

/// Bytes to send, from [`Connection::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit<'a> {
    /// One encoded frame, framing included: write all of it.
    pub bytes: &'a [u8],
    /// The index of the chunk the frame carries, if it is a `Chunk` frame (a
    /// first send or a re-send), so a shell can count chunks as they go out.
    pub chunk: Option<u64>,
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
    /// The index of the chunk in `tx`, if it holds a `Chunk` frame.
    tx_chunk: Option<u64>,
    session: Session,
    last_rx: u64,
    next_seq: u32,
    outstanding: Option<Outstanding>,
    replies: Deque<Reply, 4>,
    notices: Deque<Notice, 4>,
    peer_text: String<MAX_ERROR_TEXT>,
    /// Server: the smallest chunk size it agrees to.
    min_chunk: u32,
    last_request: Option<(u32, Option<Reply>)>,
    transfer: Option<Transfer<W>>,
    puts: puts::Puts<W>,
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
            tx_chunk: None,
            session: Session::Handshake,
            last_rx: now,
            next_seq: 1,
            outstanding: None,
            replies: Deque::new(),
            notices: Deque::new(),
            peer_text: String::new(),
            min_chunk: MIN_CHUNK_SIZE,
            last_request: None,
            transfer: None,
            puts: puts::Puts::default(),
            stats: Stats::default(),
        })
    }

    /// Server: never agree to chunks smaller than `bytes` (clamped to the protocol's
    /// range): a client whose `max_chunk` is smaller is refused with
    /// [`Failure::ChunkTooSmall`]. Small chunks cost the server a held-chunk record each.
    pub fn set_min_chunk(&mut self, bytes: u32) {
        self.min_chunk = bytes.clamp(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE);
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
            || !self.puts.is_empty()
    }

    // ----- driving -----

    /// The next bytes to send, if any. They count as sent: write them all.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Transmit<'_>> {
        if self.tx_len == 0 {
            self.tx_chunk = None;
            self.tx_len = self.next_frame(now).unwrap_or(0);
        }
        if self.tx_len == 0 {
            return None;
        }
        let len = core::mem::replace(&mut self.tx_len, 0);
        Some(Transmit {
            bytes: &self.tx.as_ref()[..len],
            chunk: self.tx_chunk.take(),
        })
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
        if let Some(reply) = self.next_put_answer() {
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
            Request::Upload {
                name,
                size,
                fresh,
                attrs: None,
            } => Frame::OpenUpload {
                seq,
                name,
                size: *size,
                fresh: *fresh,
            },
            Request::Upload {
                name,
                size,
                fresh,
                attrs: Some(attrs),
            } => Frame::OpenUploadWith {
                seq,
                name,
                size: *size,
                fresh: *fresh,
                modified: attrs.modified.unwrap_or(0),
                mode: attrs.mode.unwrap_or(0),
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
            Request::ListTree {
                prefix,
                start_after,
                limit,
                recursive,
            } => Frame::ListTree {
                seq,
                prefix,
                start_after,
                limit: *limit,
                recursive: *recursive,
            },
        };
        encode_frame(&frame, self.config.framing, self.tx.as_mut()).ok()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self, _now: u64) -> Option<Event<'_>> {
        if let Some(notice) = self.notices.pop_front() {
            return Some(notice.event(&self.peer_text));
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
            Held_::ListPage { tree } => {
                self.held_frame = Held_::None;
                if let Some(Frame::ListPage {
                    more,
                    count,
                    entries,
                    ..
                }) = self.current_frame()
                {
                    return Some(if tree {
                        Event::TreePage {
                            entries: TreeEntries::new(count, entries),
                            more,
                        }
                    } else {
                        Event::ListPage {
                            entries: ListEntries::new(count, entries),
                            more,
                        }
                    });
                }
                return None;
            }
            Held_::Put { seq } => {
                let (chunk_size, _) = self.negotiated()?;
                let Some(Frame::Put {
                    name,
                    modified,
                    mode,
                    digest,
                    data,
                    ..
                }) = self.current_frame()
                else {
                    return None;
                };
                let mut file = crate::digest::FileDigest::new(chunk_size, data.len() as u64);
                if !data.is_empty() {
                    file.push(&digest);
                }
                return Some(Event::PutRequested {
                    seq,
                    name,
                    attrs: FileAttrs {
                        modified: (modified != 0).then_some(modified),
                        mode: (mode != 0).then_some(mode),
                    },
                    digest: file.finish(),
                    data,
                });
            }
            Held_::Request { .. } => {
                return match self.current_frame()? {
                    Frame::OpenUpload {
                        name, size, fresh, ..
                    } => Some(Event::UploadRequested {
                        name,
                        size,
                        fresh,
                        attrs: FileAttrs::default(),
                    }),
                    Frame::OpenUploadWith {
                        name,
                        size,
                        fresh,
                        modified,
                        mode,
                        ..
                    } => Some(Event::UploadRequested {
                        name,
                        size,
                        fresh,
                        attrs: FileAttrs {
                            modified: (modified != 0).then_some(modified),
                            mode: (mode != 0).then_some(mode),
                        },
                    }),
                    Frame::ListTree {
                        prefix,
                        start_after,
                        limit,
                        recursive,
                        ..
                    } => Some(Event::ListTreeRequested {
                        prefix,
                        start_after,
                        limit,
                        recursive,
                    }),
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
}
