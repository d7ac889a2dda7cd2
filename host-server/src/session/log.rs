//! The log line and counters of a transfer's end.

use std::time::Instant;

use bytesize::ByteSize;

use super::Session;
use crate::metrics::{Kind, Outcome};

/// A transfer for the log line.
pub(super) struct TransferLog {
    pub(super) op: &'static str,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) chunk_size: u32,
    pub(super) started: Instant,
    pub(super) held_chunks: u64,
}

impl Session {
    /// Counts and logs a transfer's end.
    pub(super) fn log_transfer(&self, log: TransferLog, result: &str) {
        let elapsed = log.started.elapsed();
        let kind = if log.op == "upload" {
            Kind::upload
        } else {
            Kind::download
        };
        let outcome = if result == "verified" {
            Outcome::verified
        } else {
            Outcome::failed
        };
        self.shared
            .metrics
            .transfer_finished(kind, outcome, elapsed);
        let resumed = log
            .held_chunks
            .saturating_mul(u64::from(log.chunk_size))
            .min(log.size);
        let moved = log.size - resumed;
        let mb_s = moved as f64 / 1e6 / elapsed.as_secs_f64().max(1e-6);
        tracing::info!(
            peer = %self.peer,
            client = %self.identity.name,
            fp = %self.identity.short_fingerprint(),
            op = log.op,
            name = %log.name,
            size = log.size,
            human_size = %ByteSize(log.size),
            resumed,
            secs = %format!("{:.3}", elapsed.as_secs_f64()),
            mb_s = %format!("{mb_s:.1}"),
            result,
            "transfer"
        );
    }
}
