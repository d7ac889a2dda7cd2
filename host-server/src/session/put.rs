//! Small files that arrive whole in pipelined `Put`s: the ones that arrive back to back
//! (what is readable, up to the window) are committed as one batch by `Store::put_batch`
//! on the blocking pool, so that one durability step covers them, then each is answered.

use std::time::Instant;

use ferry_core::{Digest, ErrorCode, FileAttrs};

use super::{Conn, Session, TransferLog};
use crate::metrics::{Kind, Op};
use crate::names::validate_name;
use crate::storage::PutItem;

/// A `Put` taken from the connection, waiting for its batch.
pub(super) struct TakenPut {
    seq: u32,
    name: String,
    data: Vec<u8>,
    digest: Digest,
    attrs: FileAttrs,
}

impl TakenPut {
    pub(super) fn new(seq: u32, name: &str, data: &[u8], digest: Digest, attrs: FileAttrs) -> Self {
        TakenPut {
            seq,
            name: name.to_string(),
            data: data.to_vec(),
            digest,
            attrs,
        }
    }
}

impl Session {
    /// Commits the collected `Put`s as one batch and answers each.
    pub(super) async fn commit_puts(&mut self, conn: &mut Conn) {
        let taken = std::mem::take(&mut self.puts);
        let chunk_size = self.chunk_size(conn);
        let started = Instant::now();
        let mut items = Vec::with_capacity(taken.len());
        // (seq, name, size) of the items handed to the store, in order.
        let mut batch = Vec::with_capacity(taken.len());
        for put in taken {
            let name = match validate_name(&put.name) {
                Ok(name) => name,
                Err(e) => {
                    self.put_refused(
                        conn,
                        put.seq,
                        &put.name,
                        ErrorCode::INVALID_NAME,
                        &e.to_string(),
                    );
                    continue;
                }
            };
            self.shared.metrics.transfer_started(Kind::upload);
            self.shared.metrics.received(put.data.len());
            batch.push((put.seq, name.clone(), put.data.len() as u64, put.digest));
            items.push(PutItem {
                name,
                data: put.data,
                chunk_size,
                digest: put.digest,
                attrs: put.attrs,
            });
        }
        if items.is_empty() {
            return;
        }
        let (storage, client) = (self.shared.storage.clone(), self.client());
        let results = tokio::task::spawn_blocking(move || storage.put_batch(&client, items)).await;
        let results = match results {
            Ok(results) if results.len() == batch.len() => results,
            Ok(_) | Err(_) => {
                tracing::error!(
                    "{}: the batch of {} small files failed",
                    self.peer,
                    batch.len()
                );
                for (seq, name, ..) in batch {
                    self.put_refused(conn, seq, &name, ErrorCode::INTERNAL, "internal error");
                }
                return;
            }
        };
        self.shared.metrics.committed(started.elapsed());
        for ((seq, name, size, digest), result) in batch.into_iter().zip(results) {
            let log = TransferLog {
                op: "upload",
                name,
                size,
                chunk_size,
                started,
                held_chunks: 0,
            };
            match result {
                Ok(_meta) => {
                    if let Err(e) = conn.put_done(seq, Ok((size, digest))) {
                        tracing::warn!("{}: put_done: {e}", self.peer);
                    }
                    self.log_transfer(log, "verified");
                }
                Err(e) => {
                    if e.is_disk_full()
                        || matches!(e.code(), ErrorCode::STORAGE | ErrorCode::INTERNAL)
                    {
                        tracing::error!("putting {:?} for {}: {e}", log.name, self.identity.name);
                    }
                    if let Err(e) = conn.put_done(seq, Err((e.code(), &e.client_text()))) {
                        tracing::warn!("{}: put_done: {e}", self.peer);
                    }
                    self.log_transfer(log, &format!("failed: {e}"));
                }
            }
        }
    }

    /// Answers a `Put` refused before it reached the store; logs the refusal.
    fn put_refused(&self, conn: &mut Conn, seq: u32, name: &str, code: ErrorCode, text: &str) {
        self.shared.metrics.request_refused(Op::upload, code);
        tracing::info!(
            peer = %self.peer,
            client = %self.identity.name,
            fp = %self.identity.short_fingerprint(),
            op = "upload",
            name,
            result = %format!("refused: {}: {text}", code.name()),
            "request"
        );
        if let Err(e) = conn.put_done(seq, Err((code, text))) {
            tracing::warn!("{}: put_done: {e}", self.peer);
        }
    }
}
