//! Handling of each received frame.

use heapless::String;

use crate::digest::Digest;
use crate::transfer::{ChunkVerdict, FinishVerdict, Layout, Receiver, Sender};
use crate::wire::{
    max_body_len, DecodeError, ErrorCode, Frame, Held, ListEntries, TreeEntries, MAGIC,
    MAX_ERROR_TEXT, MIN_CHUNK_SIZE, PROTOCOL_VERSION,
};

use super::events::Notice;
use super::frames::{FrameSummary, Reply};
use super::{
    owned_text, Active, Connection, Failure, Held_, Outstanding, Phase, Request, Role, Session,
    Transfer,
};

impl<B: AsRef<[u8]> + AsMut<[u8]>, const W: usize> Connection<B, W> {
    pub(super) fn on_frame(&mut self) {
        let frame = match self.current_frame_result() {
            Ok(frame) => frame,
            Err(DecodeError::NameTooLong) if self.role == Role::Server => {
                match self.current_long_name_seq() {
                    Some(seq) => self.on_long_name_request(seq),
                    None => self.close(Failure::Malformed(DecodeError::NameTooLong), true),
                }
                return;
            }
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
            FrameSummary::ListPage { seq } => self.on_list_page(seq),
            FrameSummary::Deleted { seq } => {
                if self.take_outstanding(seq, |r| matches!(r, Request::Delete { .. })) {
                    self.notice(Notice::Deleted);
                }
            }
            FrameSummary::Error { seq, code } => self.on_error(seq, code),
            FrameSummary::Put { seq } => self.on_put(seq),
        }
    }

    fn on_list_page(&mut self, seq: u32) {
        let tree = match &self.outstanding {
            Some(o) if o.seq == seq => match o.request {
                Request::List { .. } => false,
                Request::ListTree { .. } => true,
                _ => return,
            },
            _ => return,
        };
        // The frame decoded as a page of either kind: it must be of the kind asked for.
        let valid = match self.current_frame() {
            Some(Frame::ListPage { count, entries, .. }) if tree => {
                TreeEntries::new(count, entries).all(|e| e.is_ok())
            }
            Some(Frame::ListPage { count, entries, .. }) => {
                ListEntries::new(count, entries).all(|e| e.is_ok())
            }
            _ => false,
        };
        if !valid {
            self.peer_text.clear();
            return self.close(Failure::Malformed(DecodeError::BadListPage), true);
        }
        self.outstanding = None;
        self.held_frame = Held_::ListPage { tree };
    }

    pub(super) fn current_frame_result(&self) -> Result<Frame<'_>, DecodeError> {
        let len = self.rx_body.ok_or(DecodeError::Malformed)?;
        Frame::decode(&self.decoder.buffer()[..len])
    }

    fn current_long_name_seq(&self) -> Option<u32> {
        let len = self.rx_body?;
        Frame::long_name_request_seq(&self.decoder.buffer()[..len])
    }

    /// A request whose name is too long for the wire: answered `INVALID_NAME`, and the
    /// connection goes on (the shell never sees it).
    fn on_long_name_request(&mut self, seq: u32) {
        if self.admit_request(seq) {
            let text = "a name longer than 1024 bytes";
            self.fail_request(seq, Failure::Local(ErrorCode::INVALID_NAME), text);
        }
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
        if chunk_size < self.min_chunk {
            let failure = Failure::ChunkTooSmall {
                offered: max_chunk,
                min: self.min_chunk,
            };
            return self.close(failure, true);
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
        if !self.admit_request(seq) {
            return;
        }
        self.last_request = Some((seq, None));
        self.held_frame = Held_::Request { seq };
    }

    /// Whether request `seq` is new and is to be acted on; a repeated one is answered
    /// again, a stale one dropped. A new request ends the running transfer.
    fn admit_request(&mut self, seq: u32) -> bool {
        if self.role != Role::Server || self.negotiated().is_none() {
            self.close(Failure::Protocol, true);
            return false;
        }
        if let Some((last, cached)) = &self.last_request {
            if seq == *last {
                // A repeated request whose answer was lost: answer again, act once.
                if let Some(reply) = cached.clone() {
                    self.queue(reply);
                    return false;
                }
                if self.transfer.as_ref().is_some_and(|t| t.id == seq) {
                    return false;
                }
            } else if seq.wrapping_sub(*last) > u32::MAX / 2 {
                return false; // older than the last request: stale
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
        true
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
        if self.on_put_verified(id, size, digest) {
            return;
        }
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
        if self.on_put_error(seq, code) {
            return;
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
