//! The two halves of a transfer: [`Sender`] and [`Receiver`].
//!
//! They know nothing of frames or sessions; the [`Connection`](crate::Connection)
//! feeds them decoded fields and encodes what they ask for. The same types serve
//! a client's upload and the server's download.
//!
//! Window: the sender keeps at most `window` chunks in flight, all with indices
//! below `base + window`, where `base` is its lowest unacknowledged index; the
//! receiver accepts indices in `[base, base + window)`. Each in-flight chunk has
//! a slot (`index % W`) holding its digest, send time and send count. An ACK
//! frees slots (cumulative plus a 64-bit selective mask); a NACK or a timeout
//! marks a slot for re-sending; a slot sent `1 + max_retries` times that is not
//! acknowledged fails the transfer.

use crate::digest::{chunk_digest, Digest, FileDigest, HeldDigest};
use crate::wire::{Held, NackReason};

/// Size and chunking of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// File size in bytes.
    pub size: u64,
    /// Chunk size in bytes (the last chunk may be shorter).
    pub chunk_size: u32,
}

impl Layout {
    /// Number of chunks (0 for an empty file).
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(u64::from(self.chunk_size))
    }

    /// Byte offset of chunk `index`.
    pub fn offset(&self, index: u64) -> u64 {
        index * u64::from(self.chunk_size)
    }

    /// Length of chunk `index`.
    pub fn len(&self, index: u64) -> usize {
        let rest = self.size - self.offset(index);
        rest.min(u64::from(self.chunk_size)) as usize
    }
}

/// Why a transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// A chunk was sent `1 + max_retries` times without being acknowledged.
    #[error("chunk {index} was never acknowledged, however often it was sent")]
    RetriesExhausted {
        /// The chunk.
        index: u64,
    },
    /// `Finish` was sent `1 + max_retries` times without an answer.
    #[error("the receiver never answered the end of the transfer")]
    FinishUnanswered,
    /// The whole-file digests of the two ends differ.
    #[error("the whole-file digests of the two ends differ")]
    DigestMismatch,
    /// The sender's data changed since the receiver stored the held chunks, or
    /// between a chunk's first and a later send.
    #[error("the source changed during the transfer")]
    SourceChanged,
    /// The stored file does not match the digest it was committed with.
    #[error("the stored file does not match the digest it was committed with")]
    StoredDataCorrupt,
    /// The sender sent too many chunks that failed their digest.
    #[error("the sender sent too many chunks that failed their digest")]
    TooManyBadChunks,
    /// The peer sent a field that cannot be right (an index beyond the file, a size that differs).
    #[error("the peer sent a transfer field that cannot be right")]
    Protocol,
}

/// Retransmission settings shared by both halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time after which an unacknowledged chunk or `Finish` is sent again.
    pub retransmit_after: u64,
    /// Sends after the first before a chunk fails the transfer.
    pub max_retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    InFlight,
    Resend,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: SlotState,
    index: u64,
    digest: Digest,
    sent_at: u64,
    sends: u32,
}

const FREE_SLOT: Slot = Slot {
    state: SlotState::Free,
    index: 0,
    digest: Digest::new([0; 32]),
    sent_at: 0,
    sends: 0,
};

/// A chunk the sender needs from its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRequest {
    /// Chunk index.
    pub index: u64,
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: usize,
    /// Whether the data is only hashed (the receiver already holds it).
    pub held: bool,
}

/// Sends one file: decides which chunk to read next, when to re-send and when to finish.
#[derive(Clone)]
pub struct Sender<const W: usize> {
    layout: Layout,
    window: u64,
    timing: Timing,
    held: Held,
    held_end: u64,
    next: u64,
    file: Option<FileDigest>,
    file_digest: Option<Digest>,
    expected: Option<Digest>,
    held_digest: Option<HeldDigest>,
    slots: [Slot; W],
    in_flight: usize,
    waiting: Option<ChunkRequest>,
    finish_sent_at: Option<u64>,
    finish_sends: u32,
    sent: u64,
    resent: u64,
}

impl<const W: usize> Sender<W> {
    /// A sender for `layout`, given what the receiver holds. `expected` is the
    /// digest the source was stored with, if known: a mismatch fails the transfer
    /// before `Finish` (the server's defence against data rotting on disk).
    pub fn new(
        layout: Layout,
        window: u16,
        timing: Timing,
        held: Held,
        expected: Option<Digest>,
    ) -> Result<Self, TransferError> {
        if held.end() > layout.chunks() {
            return Err(TransferError::Protocol);
        }
        Ok(Self {
            layout,
            window: u64::from(window).clamp(1, W as u64),
            timing,
            held,
            held_end: held.end(),
            next: 0,
            file: Some(FileDigest::new(layout.chunk_size, layout.size)),
            file_digest: None,
            expected,
            held_digest: (!held.is_empty()).then(HeldDigest::default),
            slots: [FREE_SLOT; W],
            in_flight: 0,
            waiting: None,
            finish_sent_at: None,
            finish_sends: 0,
            sent: 0,
            resent: 0,
        })
    }

    /// The file's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Chunks sent for the first time, and sent again.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.resent)
    }

    /// Chunks the receiver held when the transfer started.
    pub fn held(&self) -> Held {
        self.held
    }

    fn base(&self) -> u64 {
        self.slots
            .iter()
            .filter(|slot| slot.state != SlotState::Free)
            .map(|slot| slot.index)
            .min()
            .unwrap_or(self.next)
    }

    /// The chunk to read next, if any: a re-send first, then the next new chunk
    /// the window allows. The same request is returned until it is provided.
    pub fn next_request(&mut self) -> Option<ChunkRequest> {
        if let Some(waiting) = self.waiting {
            return Some(waiting);
        }
        let resend = self
            .slots
            .iter()
            .filter(|slot| slot.state == SlotState::Resend)
            .map(|slot| slot.index)
            .min();
        let index = match resend {
            Some(index) => index,
            None if self.next < self.layout.chunks()
                && (self.held.contains(self.next)
                    || (self.next < self.base() + self.window
                        && self.in_flight < self.window as usize)) =>
            {
                self.next
            }
            None => return None,
        };
        let request = ChunkRequest {
            index,
            offset: self.layout.offset(index),
            len: self.layout.len(index),
            held: resend.is_none() && self.held.contains(index),
        };
        self.waiting = Some(request);
        Some(request)
    }

    /// Takes the data of the requested chunk. Returns its digest when the chunk
    /// must be sent, `None` when it was only hashed. `data` of the wrong length
    /// or for another chunk is refused with `Ok(None)` untouched... (see below)
    pub fn provide(
        &mut self,
        index: u64,
        data: &[u8],
        now: u64,
    ) -> Result<Option<Digest>, ProvideError> {
        let request = match self.waiting {
            Some(request) if request.index == index => request,
            _ => return Err(ProvideError::NotRequested),
        };
        if data.len() != request.len {
            return Err(ProvideError::WrongLength);
        }
        self.accept(request, chunk_digest(data), now)
    }

    /// Takes the digest of a requested chunk the receiver already holds, in place of its
    /// data: for a sender that no longer has the data but kept the digest of what it sent
    /// (a relay that resumes a stream). Only held chunks can be provided this way.
    pub fn provide_held_digest(&mut self, index: u64, digest: Digest) -> Result<(), ProvideError> {
        let request = match self.waiting {
            Some(request) if request.index == index && request.held => request,
            _ => return Err(ProvideError::NotRequested),
        };
        self.accept(request, digest, 0).map(drop)
    }

    /// Accounts for the requested chunk with `digest`: hashed only when held, otherwise
    /// put in flight (its digest returned, to be sent with the data).
    fn accept(
        &mut self,
        request: ChunkRequest,
        digest: Digest,
        now: u64,
    ) -> Result<Option<Digest>, ProvideError> {
        let index = request.index;
        self.waiting = None;
        let slot = &mut self.slots[(index % W as u64) as usize];
        if index < self.next {
            // A re-send: the data must not have changed since it was first hashed.
            if slot.digest != digest {
                return Err(ProvideError::Failed(TransferError::SourceChanged));
            }
            if slot.sends > self.timing.max_retries {
                return Err(ProvideError::Failed(TransferError::RetriesExhausted {
                    index,
                }));
            }
            slot.state = SlotState::InFlight;
            slot.sends += 1;
            slot.sent_at = now;
            self.resent += 1;
            return Ok(Some(digest));
        }
        self.next += 1;
        if let Some(file) = self.file.as_mut() {
            file.push(&digest);
        }
        if self.next == self.layout.chunks() {
            self.file_digest = self.file.take().map(FileDigest::finish);
        }
        if request.held {
            if let Some(held_digest) = self.held_digest.as_mut() {
                held_digest.push(index, &digest);
            }
            if self.next == self.held_end {
                let ours = self.held_digest.take().map(HeldDigest::finish);
                if ours != Some(self.held.digest) {
                    return Err(ProvideError::Failed(TransferError::SourceChanged));
                }
            }
            return Ok(None);
        }
        *slot = Slot {
            state: SlotState::InFlight,
            index,
            digest,
            sent_at: now,
            sends: 1,
        };
        self.in_flight += 1;
        self.sent += 1;
        Ok(Some(digest))
    }

    /// Applies an acknowledgement.
    pub fn on_ack(&mut self, cumulative: u64, mask: u64) {
        for slot in self.slots.iter_mut() {
            if slot.state == SlotState::Free {
                continue;
            }
            let acked = slot.index < cumulative
                || (slot.index > cumulative
                    && slot.index - cumulative <= 64
                    && mask & (1 << (slot.index - cumulative - 1)) != 0);
            if acked {
                slot.state = SlotState::Free;
                self.in_flight -= 1;
                if self.waiting.is_some_and(|w| w.index == slot.index) {
                    self.waiting = None;
                }
            }
        }
    }

    /// Applies a negative acknowledgement: the chunk is sent again.
    pub fn on_nack(&mut self, index: u64, _reason: NackReason) {
        let slot = &mut self.slots[(index % W as u64) as usize];
        if slot.state == SlotState::InFlight && slot.index == index {
            slot.state = SlotState::Resend;
        }
    }

    /// Marks timed-out chunks for re-sending; fails when one has used its retries.
    pub fn on_time(&mut self, now: u64) -> Result<(), TransferError> {
        for slot in self.slots.iter_mut() {
            if slot.state == SlotState::InFlight
                && now >= slot.sent_at.saturating_add(self.timing.retransmit_after)
            {
                if slot.sends > self.timing.max_retries {
                    return Err(TransferError::RetriesExhausted { index: slot.index });
                }
                slot.state = SlotState::Resend;
            }
        }
        if let Some(sent_at) = self.finish_sent_at {
            if now >= sent_at.saturating_add(self.timing.retransmit_after) {
                if self.finish_sends > self.timing.max_retries {
                    return Err(TransferError::FinishUnanswered);
                }
                self.finish_sent_at = None;
            }
        }
        Ok(())
    }

    /// The next time [`on_time`](Self::on_time) has something to do.
    pub fn deadline(&self) -> Option<u64> {
        let chunks = self
            .slots
            .iter()
            .filter(|slot| slot.state == SlotState::InFlight)
            .map(|slot| slot.sent_at);
        chunks
            .chain(self.finish_sent_at)
            .min()
            .map(|at| at.saturating_add(self.timing.retransmit_after))
    }

    /// `Finish` fields when it is due (every chunk acknowledged, not sent or timed out).
    pub fn finish_due(&mut self, now: u64) -> Result<Option<(u64, Digest)>, TransferError> {
        let done = self.next == self.layout.chunks() && self.in_flight == 0;
        if !done || self.finish_sent_at.is_some() {
            return Ok(None);
        }
        let digest = match self.file_digest {
            Some(digest) => digest,
            None => {
                // An empty file has no chunks to trigger the digest.
                let digest = self.file.take().map(FileDigest::finish).unwrap_or_default();
                self.file_digest = Some(digest);
                digest
            }
        };
        if self.expected.is_some_and(|expected| expected != digest) {
            return Err(TransferError::StoredDataCorrupt);
        }
        self.finish_sent_at = Some(now);
        self.finish_sends += 1;
        Ok(Some((self.layout.size, digest)))
    }

    /// Checks the receiver's `Verified` against what was sent.
    pub fn on_verified(&self, size: u64, digest: Digest) -> Result<Digest, TransferError> {
        match self.file_digest {
            Some(ours) if ours == digest && size == self.layout.size => Ok(ours),
            _ => Err(TransferError::DigestMismatch),
        }
    }
}

/// Why [`Sender::provide`] refused data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvideError {
    /// Not the chunk that was requested.
    #[error("this chunk was not requested")]
    NotRequested,
    /// Not as long as the chunk.
    #[error("the data is not as long as the chunk")]
    WrongLength,
    /// The transfer failed.
    #[error("{0}")]
    Failed(TransferError),
}

/// What the receiver makes of an arriving chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// New and intact: store it, then call [`Receiver::stored`].
    Store,
    /// Already held, or outside the window: acknowledge again.
    Ignore,
    /// Damaged: NACK it.
    Nack(NackReason),
}

/// What the receiver makes of `Finish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishVerdict {
    /// Every chunk is held and the digest matches: commit the file.
    Commit(Digest),
    /// Chunks are missing: acknowledge again.
    Incomplete,
}

/// Receives one file: checks every chunk, tracks what is held, verifies the whole file.
#[derive(Clone)]
pub struct Receiver<const W: usize> {
    layout: Layout,
    window: u64,
    max_bad_chunks: u32,
    base: u64,
    slots: [Option<Digest>; W],
    file: FileDigest,
    held: Held,
    bad_chunks: u32,
    received: u64,
}

impl<const W: usize> Receiver<W> {
    /// A receiver for `layout` that already holds `held_chunks` (index, digest),
    /// in ascending index order, as recorded by an earlier attempt. Chunks it
    /// cannot use (out of order or beyond the window) are dropped and sent again.
    pub fn new(
        layout: Layout,
        window: u16,
        timing: Timing,
        held_chunks: impl IntoIterator<Item = (u64, Digest)>,
    ) -> Self {
        let window = u64::from(window).clamp(1, W as u64);
        let mut receiver = Self {
            layout,
            window,
            max_bad_chunks: timing
                .max_retries
                .saturating_add(1)
                .saturating_mul(window as u32),
            base: 0,
            slots: [None; W],
            file: FileDigest::new(layout.chunk_size, layout.size),
            held: Held::default(),
            bad_chunks: 0,
            received: 0,
        };
        let mut held_digest = HeldDigest::default();
        let mut last = None;
        for (index, digest) in held_chunks {
            if last.is_some_and(|last| index <= last) || index >= layout.chunks() {
                continue;
            }
            if index == receiver.base {
                receiver.file.push(&digest);
                receiver.base += 1;
            } else if index > receiver.base + 1 + 63 || index >= receiver.base + window {
                continue;
            } else {
                receiver.slots[(index % W as u64) as usize] = Some(digest);
            }
            held_digest.push(index, &digest);
            last = Some(index);
        }
        let (cumulative, mask) = receiver.ack();
        receiver.held = Held {
            prefix: cumulative,
            mask,
            digest: if cumulative == 0 && mask == 0 {
                Digest::default()
            } else {
                held_digest.finish()
            },
        };
        receiver
    }

    /// The file's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// What was held when the transfer started (for `ResumeStatus`).
    pub fn held(&self) -> Held {
        self.held
    }

    /// Chunks received and stored in this attempt.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn slot(&self, index: u64) -> usize {
        (index % W as u64) as usize
    }

    fn holds(&self, index: u64) -> bool {
        index < self.base
            || (index < self.base + self.window && self.slots[self.slot(index)].is_some())
    }

    /// Checks an arriving chunk.
    pub fn on_chunk(
        &mut self,
        index: u64,
        digest: &Digest,
        data: &[u8],
    ) -> Result<ChunkVerdict, TransferError> {
        if index >= self.layout.chunks() {
            return Err(TransferError::Protocol);
        }
        if self.holds(index) || index >= self.base + self.window {
            return Ok(ChunkVerdict::Ignore);
        }
        let reason = if data.len() != self.layout.len(index) {
            NackReason::BadLength
        } else if chunk_digest(data) != *digest {
            NackReason::DigestMismatch
        } else {
            return Ok(ChunkVerdict::Store);
        };
        self.bad_chunks += 1;
        if self.bad_chunks > self.max_bad_chunks {
            return Err(TransferError::TooManyBadChunks);
        }
        Ok(ChunkVerdict::Nack(reason))
    }

    /// Records that chunk `index` (checked by [`on_chunk`](Self::on_chunk)) is stored.
    pub fn stored(&mut self, index: u64, digest: Digest) {
        if self.holds(index) || index >= self.base + self.window {
            return;
        }
        self.received += 1;
        let slot = self.slot(index);
        self.slots[slot] = Some(digest);
        while let Some(digest) = self.slots[self.slot(self.base)].take() {
            self.file.push(&digest);
            self.base += 1;
            if self.base == self.layout.chunks() {
                break;
            }
        }
    }

    /// The acknowledgement to send: cumulative index and selective mask.
    pub fn ack(&self) -> (u64, u64) {
        let mut mask = 0u64;
        for bit in 0..64u64 {
            let index = self.base + 1 + bit;
            if index < self.base + self.window && self.slots[self.slot(index)].is_some() {
                mask |= 1 << bit;
            }
        }
        (self.base, mask)
    }

    /// Checks `Finish`.
    pub fn on_finish(&self, size: u64, digest: &Digest) -> Result<FinishVerdict, TransferError> {
        if size != self.layout.size {
            return Err(TransferError::Protocol);
        }
        if self.base < self.layout.chunks() {
            return Ok(FinishVerdict::Incomplete);
        }
        let ours = self.file.clone().finish();
        if ours == *digest {
            Ok(FinishVerdict::Commit(ours))
        } else {
            Err(TransferError::DigestMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        retransmit_after: 100,
        max_retries: 2,
    };

    fn layout(size: u64) -> Layout {
        Layout {
            size,
            chunk_size: 4,
        }
    }

    #[test]
    fn layout_of_edge_sizes() {
        assert_eq!(layout(0).chunks(), 0);
        assert_eq!(layout(1).chunks(), 1);
        assert_eq!(layout(4).chunks(), 1);
        assert_eq!(layout(5).chunks(), 2);
        assert_eq!(layout(5).len(1), 1);
        assert_eq!(layout(5).offset(1), 4);
    }

    #[test]
    fn window_bounds_chunks_in_flight() {
        let mut sender = Sender::<4>::new(layout(100), 3, TIMING, Held::default(), None).unwrap();
        for index in 0..3 {
            let request = sender.next_request().unwrap();
            assert_eq!(request.index, index);
            assert!(sender.provide(index, &[0; 4], 0).unwrap().is_some());
        }
        assert_eq!(sender.next_request(), None);
        sender.on_ack(1, 0);
        assert_eq!(sender.next_request().map(|r| r.index), Some(3));
    }

    #[test]
    fn timeout_resends_then_fails() {
        let mut sender = Sender::<4>::new(layout(4), 4, TIMING, Held::default(), None).unwrap();
        sender.next_request().unwrap();
        sender.provide(0, &[1; 4], 0).unwrap();
        let mut now = 0;
        for _ in 0..TIMING.max_retries {
            now += 100;
            sender.on_time(now).unwrap();
            assert_eq!(sender.next_request().map(|r| r.index), Some(0));
            sender.provide(0, &[1; 4], now).unwrap();
        }
        assert_eq!(
            sender.on_time(now + 100),
            Err(TransferError::RetriesExhausted { index: 0 })
        );
    }

    #[test]
    fn changed_data_on_resend_is_detected() {
        let mut sender = Sender::<4>::new(layout(4), 4, TIMING, Held::default(), None).unwrap();
        sender.next_request().unwrap();
        sender.provide(0, &[1; 4], 0).unwrap();
        sender.on_nack(0, NackReason::DigestMismatch);
        sender.next_request().unwrap();
        assert_eq!(
            sender.provide(0, &[2; 4], 1),
            Err(ProvideError::Failed(TransferError::SourceChanged))
        );
    }

    #[test]
    fn receiver_restores_prefix_and_window() {
        let digests: [(u64, Digest); 4] = [0, 1, 3, 9].map(|i| (i, Digest::new([i as u8; 32])));
        let receiver = Receiver::<4>::new(layout(40), 4, TIMING, digests);
        let held = receiver.held();
        assert_eq!((held.prefix, held.mask), (2, 0b1));
        assert!(held.contains(3) && !held.contains(2) && !held.contains(9));
    }

    #[test]
    fn endless_bad_chunks_fail_the_receiver() {
        let mut receiver = Receiver::<4>::new(layout(8), 2, TIMING, []);
        let digest = chunk_digest(&[7u8; 4]);
        // (1 + max_retries) sends for each of the window's chunks, then it gives up.
        for _ in 0..(TIMING.max_retries + 1) * 2 {
            assert!(matches!(
                receiver.on_chunk(0, &digest, &[8; 4]),
                Ok(ChunkVerdict::Nack(_))
            ));
        }
        assert_eq!(
            receiver.on_chunk(0, &digest, &[8; 4]),
            Err(TransferError::TooManyBadChunks)
        );
    }

    #[test]
    fn bad_chunk_is_nacked_and_duplicate_ignored() {
        let mut receiver = Receiver::<4>::new(layout(8), 4, TIMING, []);
        let data = [7u8; 4];
        let digest = chunk_digest(&data);
        assert_eq!(
            receiver.on_chunk(0, &digest, &[8; 4]),
            Ok(ChunkVerdict::Nack(NackReason::DigestMismatch))
        );
        assert_eq!(
            receiver.on_chunk(0, &digest, &data),
            Ok(ChunkVerdict::Store)
        );
        receiver.stored(0, digest);
        assert_eq!(
            receiver.on_chunk(0, &digest, &data),
            Ok(ChunkVerdict::Ignore)
        );
        assert_eq!(
            receiver.on_chunk(2, &digest, &data),
            Err(TransferError::Protocol)
        );
    }

    #[test]
    fn held_chunks_can_be_provided_by_digest() {
        let data: [[u8; 4]; 4] = [[1; 4], [2; 4], [3; 4], [4; 4]];
        let digests = data.map(|d| chunk_digest(&d));
        // The receiver holds chunks 0 and 1.
        let receiver =
            Receiver::<4>::new(layout(16), 4, TIMING, [(0, digests[0]), (1, digests[1])]);
        let held = receiver.held();
        let run = |by_digest: bool| {
            let mut sender = Sender::<4>::new(layout(16), 4, TIMING, held, None).unwrap();
            for index in 0..4u64 {
                let request = sender.next_request().unwrap();
                assert_eq!(request.index, index);
                let i = index as usize;
                if request.held && by_digest {
                    sender.provide_held_digest(index, digests[i]).unwrap();
                } else {
                    let sent = sender.provide(index, &data[i], 0).unwrap();
                    assert_eq!(sent.is_some(), !request.held);
                }
            }
            sender.on_ack(4, 0);
            sender.finish_due(0).unwrap().unwrap()
        };
        assert_eq!(run(true), run(false), "the same file digest");

        // Only a held chunk, and only the one requested, is taken by digest.
        let mut sender = Sender::<4>::new(layout(16), 4, TIMING, held, None).unwrap();
        sender.next_request().unwrap();
        assert_eq!(
            sender.provide_held_digest(1, digests[1]),
            Err(ProvideError::NotRequested)
        );
        sender.provide_held_digest(0, digests[0]).unwrap();
        // A wrong digest for the held prefix: the source changed.
        sender.next_request().unwrap();
        assert_eq!(
            sender.provide_held_digest(1, digests[2]),
            Err(ProvideError::Failed(TransferError::SourceChanged))
        );
        let mut sender = Sender::<4>::new(layout(16), 4, TIMING, Held::default(), None).unwrap();
        sender.next_request().unwrap();
        assert_eq!(
            sender.provide_held_digest(0, digests[0]),
            Err(ProvideError::NotRequested)
        );
    }
}
