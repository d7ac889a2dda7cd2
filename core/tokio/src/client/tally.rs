//! What a sending operation (an upload, or the web page's relay) counts over its attempts,
//! and the streamed chunks it keeps for a re-send: one copy for both.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_core::Layout;

use crate::client::report::TransferReport;

/// Counts of chunks sent, re-sent and held, over every attempt of one transfer.
pub(crate) struct SendTally {
    started: Instant,
    held_at_start: u64,
    /// The next index whose chunk frame is a first send (first sends go in index order).
    next_first: u64,
    chunks_sent: u64,
    sent_this_attempt: u64,
    chunks_resent: u64,
    attempts: u32,
}

impl SendTally {
    pub(crate) fn new() -> SendTally {
        SendTally {
            started: Instant::now(),
            held_at_start: 0,
            next_first: 0,
            chunks_sent: 0,
            sent_this_attempt: 0,
            chunks_resent: 0,
            attempts: 0,
        }
    }

    /// A new connection attempt begins.
    pub(crate) fn attempt_started(&mut self) {
        self.attempts += 1;
        self.sent_this_attempt = 0;
    }

    /// The server accepted the transfer and holds `held_chunks` of it already.
    pub(crate) fn transfer_started(&mut self, held_chunks: u64) {
        self.held_at_start = held_chunks;
        self.next_first = 0;
    }

    /// Counts a frame of chunk `index`; true for its first send, false for a re-send.
    pub(crate) fn chunk_sent(&mut self, index: u64) -> bool {
        if index >= self.next_first {
            self.next_first = index + 1;
            self.chunks_sent += 1;
            self.sent_this_attempt += 1;
            true
        } else {
            self.chunks_resent += 1;
            false
        }
    }

    /// Chunks sent for the first time, over every attempt.
    pub(crate) fn chunks_sent(&self) -> u64 {
        self.chunks_sent
    }

    /// Chunks sent again (NACKed or asked for again).
    #[cfg(test)]
    pub(crate) fn chunks_resent(&self) -> u64 {
        self.chunks_resent
    }

    /// The report of the verified transfer.
    pub(crate) fn report(
        &self,
        name: &str,
        size: u64,
        digest: String,
        layout: Layout,
    ) -> TransferReport {
        TransferReport {
            name: name.to_string(),
            size,
            digest,
            chunk_size: layout.chunk_size,
            chunks: layout.chunks(),
            held_at_start: self.held_at_start,
            chunks_sent: self.chunks_sent,
            last_attempt_sent: self.sent_this_attempt,
            chunks_resent: self.chunks_resent,
            attempts: self.attempts,
            duration: self.started.elapsed(),
        }
    }
}

/// Streamed chunks kept for a re-send: the chunk being sent (`pending`) and the ones in flight
/// (`retained`), at most a window's worth.
#[derive(Default)]
pub(crate) struct Retained {
    pub(crate) pending: Option<(u64, Vec<u8>)>,
    pub(crate) chunks: BTreeMap<u64, Vec<u8>>,
}

impl Retained {
    /// Chunk `index` went out for the first time: keep it if it was pending, and drop what is
    /// older than the window (a first send of `index` means every chunk in flight is above
    /// `index - window`: older ones are acknowledged).
    pub(crate) fn first_sent(&mut self, index: u64, window: u64) {
        if let Some((pending_index, data)) = self.pending.take() {
            if pending_index == index {
                self.chunks.insert(index, data);
            }
        }
        self.chunks.retain(|&kept, _| kept + window > index);
        debug_assert!(self.chunks.len() as u64 <= window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sends_and_resends_are_told_apart_across_attempts() {
        let mut tally = SendTally::new();
        tally.attempt_started();
        tally.transfer_started(2);
        assert!(tally.chunk_sent(2));
        assert!(tally.chunk_sent(3));
        assert!(!tally.chunk_sent(2), "chunk 2 again is a re-send");
        tally.attempt_started();
        tally.transfer_started(4);
        assert!(tally.chunk_sent(4));
        let layout = Layout {
            size: 80,
            chunk_size: 16,
        };
        let report = tally.report("f", 80, "d".into(), layout);
        assert_eq!(report.chunks_sent, 3);
        assert_eq!(report.chunks_resent, 1);
        assert_eq!(report.last_attempt_sent, 1);
        assert_eq!(report.held_at_start, 4);
        assert_eq!(report.attempts, 2);
        assert_eq!(report.chunks, 5);
    }

    #[test]
    fn retained_chunks_stay_within_the_window() {
        let mut retained = Retained::default();
        for index in 0..6 {
            retained.pending = Some((index, vec![index as u8]));
            retained.first_sent(index, 3);
        }
        assert_eq!(
            retained.chunks.keys().copied().collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(retained.pending.is_none());
        // A pending chunk of another index is not kept.
        retained.pending = Some((9, vec![9]));
        retained.first_sent(6, 3);
        assert_eq!(retained.chunks.keys().copied().collect::<Vec<_>>(), [4, 5]);
    }
}
