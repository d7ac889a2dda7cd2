//! What the shell does for a running transfer (provide, store, commit, fail),
//! and how a transfer or the connection ends.

use core::fmt::Write as _;

use heapless::String;

use crate::digest::Digest;
use crate::framing::encode_frame;
use crate::transfer::ProvideError;
use crate::wire::{BufferTooSmall, ErrorCode, Frame, Held};

use super::events::Notice;
use super::frames::Reply;
use super::{owned_text, Active, Connection, Failure, Held_, Phase, Session, Transfer, UsageError};

impl<B: AsRef<[u8]> + AsMut<[u8]>, const W: usize> Connection<B, W> {
    pub(super) fn start_transfer(&mut self, id: u32, active: Active<W>) {
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

    /// Sender: the data of the chunk asked for by [`Event::NeedChunk`](super::Event::NeedChunk).
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
                self.tx_chunk = Some(index);
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

    /// Sender: the digest of a chunk asked for by [`Event::NeedChunk`](super::Event::NeedChunk)
    /// that the receiver already holds (see [`Connection::send_held`]), in place of its
    /// data (see [`Sender::provide_held_digest`](crate::transfer::Sender::provide_held_digest)).
    pub fn provide_held_digest(&mut self, index: u64, digest: Digest) -> Result<(), UsageError> {
        if self.tx_len > 0 {
            return Err(UsageError::TransmitPending);
        }
        let Some(Transfer {
            active: Active::Send(sender),
            ..
        }) = self.transfer.as_mut()
        else {
            return Err(UsageError::Unexpected);
        };
        match sender.provide_held_digest(index, digest) {
            Ok(()) => Ok(()),
            Err(ProvideError::Failed(error)) => {
                self.end_transfer(Failure::Transfer(error), true);
                Ok(())
            }
            Err(_) => Err(UsageError::WrongChunk),
        }
    }

    /// Sender: the chunks the receiver held when the running transfer started.
    pub fn send_held(&self) -> Option<Held> {
        match self.transfer.as_ref() {
            Some(Transfer {
                active: Active::Send(sender),
                ..
            }) => Some(sender.held()),
            _ => None,
        }
    }

    /// Receiver: the chunk from [`Event::StoreChunk`](super::Event::StoreChunk) is stored.
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

    /// Receiver: the file from [`Event::Commit`](super::Event::Commit) is durable; the sender is told it is verified.
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

    pub(super) fn end_transfer(&mut self, failure: Failure, tell_peer: bool) {
        if tell_peer {
            self.send_transfer_error(failure.code(), "");
        }
        if self.transfer.take().is_some() {
            self.outstanding = None;
            self.notice(Notice::Failed(failure));
        }
    }

    pub(super) fn notice(&mut self, notice: Notice) {
        if self.notices.push_back(notice).is_err() {
            let _ = self.notices.pop_front();
            let _ = self.notices.push_back(notice);
        }
    }

    /// Either side: ends the connection, telling the peer why with an `Error` on seq 0
    /// (for instance a server refusing a connection for capacity with
    /// [`ErrorCode::BUSY`] and a [`retry-after`](crate::wire::RETRY_AFTER), or ending one
    /// whose certificate was revoked with [`ErrorCode::FORBIDDEN`]). A running transfer or
    /// request ends with the connection, without an event of its own: checkpoint it first.
    /// `Closed` is reported once the frame is sent. Does nothing on a closing connection.
    pub fn close_with(&mut self, code: ErrorCode, text: &str) {
        if matches!(self.session, Session::Closing(_) | Session::Closed) {
            return;
        }
        self.replies.clear();
        self.queue(Reply::Error {
            seq: 0,
            code,
            text: owned_text(text),
        });
        self.peer_text.clear();
        self.close(Failure::Local(code), false);
    }

    pub(super) fn close(&mut self, failure: Failure, tell_peer: bool) {
        if matches!(self.session, Session::Closing(_) | Session::Closed) {
            return;
        }
        if tell_peer {
            self.replies.clear();
            let mut text = String::new();
            if let Failure::ChunkTooSmall { .. } = failure {
                // The one refusal a client can fix itself: it says how.
                let _ = write!(text, "{failure}");
            }
            self.queue(Reply::Error {
                seq: 0,
                code: failure.code(),
                text,
            });
        }
        self.transfer = None;
        self.outstanding = None;
        self.held_frame = Held_::None;
        self.puts.clear();
        self.session = Session::Closing(failure);
    }
}
