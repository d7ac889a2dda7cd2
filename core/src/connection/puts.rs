//! Pipelined `Put`s: whole small files, up to `window` unanswered at once, answered in the
//! order they arrived.
//!
//! Client: [`put`](Connection::put) encodes the frame straight into the transmit buffer;
//! each answer becomes [`Event::PutVerified`](super::Event::PutVerified) or
//! [`Event::PutFailed`](super::Event::PutFailed). Nothing is re-sent on a timer (the link
//! is a stream); a shell whose connection broke sends the unanswered files again on a
//! new one, and the server takes a repeated file of the same content as a success.
//!
//! Server: a `Put` whose data matches its SHA-256 becomes
//! [`Event::PutRequested`](super::Event::PutRequested); the frame stays in the receive
//! buffer until the shell calls [`accept_put`](Connection::accept_put), and is answered
//! when it calls [`put_done`](Connection::put_done). One whose data does not match is
//! answered `DIGEST_MISMATCH` without the shell. A `Put` during a chunked transfer, above
//! the window or longer than a chunk breaks the protocol.

use heapless::Deque;

use crate::digest::{chunk_digest, Digest, FileDigest};
use crate::framing::encode_frame;
use crate::wire::{ErrorCode, FileAttrs, Frame, MAX_ERROR_TEXT};

use super::events::Notice;
use super::frames::Reply;
use super::{owned_text, Connection, Failure, Held_, Phase, Role, Session, UsageError};

/// Client: a `Put` sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SentPut {
    seq: u32,
    size: u64,
    /// The whole-file digest the server must answer with.
    digest: Digest,
}

/// Server: a `Put` taken, in arrival order, and its answer once there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TakenPut {
    seq: u32,
    answer: Option<Reply>,
}

/// Both ends' `Put` state (only one end's half is used).
#[derive(Debug, Default)]
pub(super) struct Puts<const W: usize> {
    pub(super) sent: Deque<SentPut, W>,
    pub(super) taken: Deque<TakenPut, W>,
}

impl<const W: usize> Puts<W> {
    pub(super) fn is_empty(&self) -> bool {
        self.sent.is_empty() && self.taken.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.sent.clear();
        self.taken.clear();
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const W: usize> Connection<B, W> {
    /// Client: sends the whole file `name` (`data`, at most one chunk) with `attrs` as a
    /// `Put`, encoded straight into the transmit buffer. Returns its seq, which the
    /// answer's event names. Up to the negotiated window of them may be unanswered; no
    /// other request may run meanwhile.
    pub fn put(&mut self, name: &str, attrs: FileAttrs, data: &[u8]) -> Result<u32, UsageError> {
        if self.role != Role::Client {
            return Err(UsageError::Unexpected);
        }
        let (chunk_size, window) = self.negotiated().ok_or(UsageError::NotReady)?;
        if self.outstanding.is_some()
            || self
                .transfer
                .as_ref()
                .is_some_and(|t| !matches!(t.phase, Phase::Verified(_)))
            || self.held_frame != Held_::None
            || self.puts.sent.len() >= usize::from(window)
        {
            return Err(UsageError::Busy);
        }
        if self.tx_len > 0 {
            return Err(UsageError::TransmitPending);
        }
        if name.len() > crate::wire::MAX_NAME_LEN {
            return Err(UsageError::BadName);
        }
        if data.len() > chunk_size as usize {
            return Err(UsageError::WrongChunk);
        }
        self.transfer = None;
        let seq = self.next_seq;
        let frame = Frame::Put {
            seq,
            name,
            modified: attrs.modified.unwrap_or(0),
            mode: attrs.mode.unwrap_or(0),
            digest: chunk_digest(data),
            data,
        };
        self.tx_len = encode_frame(&frame, self.config.framing, self.tx.as_mut())
            .map_err(|_| UsageError::BuffersTooSmall)?;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        let sent = SentPut {
            seq,
            size: data.len() as u64,
            digest: FileDigest::of(data, chunk_size),
        };
        // Room was checked above: the window is at most W.
        let _ = self.puts.sent.push_back(sent);
        self.stats.chunks_sent += 1;
        Ok(seq)
    }

    /// Client: how many `Put`s wait for their answer.
    pub fn puts_in_flight(&self) -> usize {
        self.puts.sent.len()
    }

    /// Client: the answer `Verified` for a `Put`, if `id` is the oldest one unanswered.
    /// Returns whether it was one.
    pub(super) fn on_put_verified(&mut self, id: u32, size: u64, digest: Digest) -> bool {
        let Some(front) = self.puts.sent.front().copied() else {
            return false;
        };
        if !self.puts.sent.iter().any(|p| p.seq == id) {
            return false;
        }
        if front.seq != id {
            // Answers come in the order the Puts went.
            self.peer_text.clear();
            self.close(Failure::Protocol, true);
            return true;
        }
        self.puts.sent.pop_front();
        if size == front.size && digest == front.digest {
            self.notice(Notice::PutVerified {
                seq: id,
                size,
                digest,
            });
        } else {
            self.peer_text.clear();
            let failure = Failure::Transfer(crate::transfer::TransferError::DigestMismatch);
            self.notice(Notice::PutFailed { seq: id, failure });
        }
        true
    }

    /// Client: an `Error` for a `Put`. Returns whether it was one.
    pub(super) fn on_put_error(&mut self, seq: u32, code: ErrorCode) -> bool {
        match self.puts.sent.front() {
            Some(front) if front.seq == seq => {
                self.puts.sent.pop_front();
                let failure = Failure::Peer(code);
                self.notice(Notice::PutFailed { seq, failure });
                true
            }
            _ if self.puts.sent.iter().any(|p| p.seq == seq) => {
                self.close(Failure::Protocol, true);
                true
            }
            _ => false,
        }
    }

    /// Server: a `Put` arrived (the frame is in the receive buffer).
    pub(super) fn on_put(&mut self, seq: u32) {
        let Some((chunk_size, window)) = self.negotiated() else {
            return self.close(Failure::Protocol, true);
        };
        let running = self
            .transfer
            .as_ref()
            .is_some_and(|t| !matches!(t.phase, Phase::Verified(_)));
        let Some(Frame::Put { data, digest, .. }) = self.current_frame() else {
            return self.close(Failure::Protocol, true);
        };
        if self.role != Role::Server
            || running
            || self.puts.taken.len() >= usize::from(window)
            || data.len() > chunk_size as usize
        {
            return self.close(Failure::Protocol, true);
        }
        let intact = chunk_digest(data) == digest;
        self.transfer = None;
        let answer = (!intact).then(|| Reply::Error {
            seq,
            code: ErrorCode::DIGEST_MISMATCH,
            text: owned_text("the data does not match its SHA-256"),
        });
        if !intact {
            self.stats.chunks_nacked += 1;
        }
        // Room was checked above: the window is at most W.
        let _ = self.puts.taken.push_back(TakenPut { seq, answer });
        if intact {
            self.held_frame = Held_::Put { seq };
        }
    }

    /// Server: the data of the `Put` reported by `Event::PutRequested` was taken; the
    /// receive buffer is free for the next frame. Answer it later with
    /// [`put_done`](Self::put_done).
    pub fn accept_put(&mut self, seq: u32) -> Result<(), UsageError> {
        match self.held_frame {
            Held_::Put { seq: held } if held == seq => {
                self.held_frame = Held_::None;
                self.rx_body = None;
                Ok(())
            }
            _ => Err(UsageError::Unexpected),
        }
    }

    /// Server: the `Put` `seq` is durable (`Ok((size, whole-file digest))`) or failed
    /// (`Err((code, text))`). Answers go out in the order the Puts arrived.
    pub fn put_done(
        &mut self,
        seq: u32,
        result: Result<(u64, Digest), (ErrorCode, &str)>,
    ) -> Result<(), UsageError> {
        if matches!(self.held_frame, Held_::Put { seq: held } if held == seq) {
            return Err(UsageError::Unexpected);
        }
        let Some(taken) = self
            .puts
            .taken
            .iter_mut()
            .find(|p| p.seq == seq && p.answer.is_none())
        else {
            return Err(UsageError::Unexpected);
        };
        taken.answer = Some(match result {
            Ok((size, digest)) => Reply::Verified {
                transfer: seq,
                size,
                digest,
            },
            Err((code, text)) => Reply::Error {
                seq,
                code,
                text: owned_text::<MAX_ERROR_TEXT>(text),
            },
        });
        Ok(())
    }

    /// Server: how many `Put`s wait for their answer to be sent.
    pub fn puts_pending(&self) -> usize {
        self.puts.taken.len()
    }

    /// Server: the next answer to a `Put` that can go (the oldest one, once answered).
    pub(super) fn next_put_answer(&mut self) -> Option<Reply> {
        if matches!(self.session, Session::Closing(_) | Session::Closed) {
            return None;
        }
        // The oldest goes first, once answered.
        self.puts.taken.front()?.answer.as_ref()?;
        self.puts.taken.pop_front()?.answer
    }
}
