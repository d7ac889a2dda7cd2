//! Small files as pipelined `Put`s: up to the window in flight on one connection, each
//! answered once the server made it durable. A broken connection sends the unanswered
//! ones again on the next (the server takes a repeated file of the same content as a
//! success).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferry_core::{ErrorCode, Failure, TransferError, UsageError};

use crate::client::error::ClientError;
use crate::client::op::{Conn, Ev, Fill, Interrupt, OpKind, Operation};
use crate::client::report::{Phase, Progress, TransferReport};
use crate::client::tree::{ItemEvent, UploadItem};

/// A file sent and not answered yet.
struct InFlight {
    seq: u32,
    index: usize,
    size: u64,
    sent_at: Instant,
}

/// Sends the files of `queue` (indices into `items`) as `Put`s.
pub(crate) struct PutManyOp<'a, 'e> {
    items: &'a [UploadItem],
    /// Names as sent (NFC, checked).
    names: Vec<String>,
    events: &'e mut (dyn FnMut(ItemEvent<'_>) + Send),
    queue: VecDeque<usize>,
    in_flight: VecDeque<InFlight>,
    /// A file read and not yet sent (the transmit buffer was busy).
    ready: Option<(usize, Vec<u8>)>,
    /// Whether each item's `Started` was reported.
    started: Vec<bool>,
    /// Files that grew beyond one chunk since they were sized: for the chunked path.
    pub(crate) too_big: Vec<usize>,
    pub(crate) results: Vec<Option<Result<TransferReport, ClientError>>>,
    chunk_size: u32,
    attempts: u32,
    answered: u64,
}

impl<'a, 'e> PutManyOp<'a, 'e> {
    pub(crate) fn new(
        items: &'a [UploadItem],
        names: Vec<String>,
        queue: Vec<usize>,
        events: &'e mut (dyn FnMut(ItemEvent<'_>) + Send),
    ) -> Self {
        PutManyOp {
            items,
            names,
            events,
            queue: queue.into(),
            in_flight: VecDeque::new(),
            ready: None,
            started: vec![false; items.len()],
            too_big: Vec::new(),
            results: (0..items.len()).map(|_| None).collect(),
            chunk_size: 0,
            attempts: 0,
            answered: 0,
        }
    }

    fn finish(&mut self, index: usize, result: Result<TransferReport, ClientError>) {
        if let Ok(report) = &result {
            let progress = Progress {
                name: report.name.clone(),
                done_bytes: report.size,
                total_bytes: report.size,
                phase: Phase::Upload,
            };
            (self.events)(ItemEvent::Progress { index, progress });
        }
        (self.events)(ItemEvent::Done {
            index,
            result: &result,
        });
        self.results[index] = Some(result);
        self.answered += 1;
    }

    fn is_done(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty() && self.ready.is_none()
    }

    /// Reads the next file to send (on the blocking pool); `None` when there is none.
    async fn next_ready(&mut self) -> Option<(usize, Vec<u8>)> {
        if let Some(ready) = self.ready.take() {
            return Some(ready);
        }
        while let Some(index) = self.queue.pop_front() {
            let path = &self.items[index].path;
            match tokio::fs::read(path).await {
                Ok(data) if data.len() as u64 > u64::from(self.chunk_size) => {
                    self.too_big.push(index);
                }
                Ok(data) => return Some((index, data)),
                Err(e) => self.finish(index, Err(ClientError::io(path, e))),
            }
        }
        None
    }

    fn failure_error(&self, name: &str, failure: Failure, text: String) -> ClientError {
        match failure {
            Failure::Transfer(TransferError::DigestMismatch)
            | Failure::Peer(ErrorCode::DIGEST_MISMATCH) => {
                ClientError::verification(name, "the whole-file digests of the two ends differ")
            }
            Failure::Peer(code) => ClientError::refused(code, text),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

impl Operation for PutManyOp<'_, '_> {
    type Output = ();

    fn kind(&self) -> OpKind {
        OpKind::Upload
    }

    fn name(&self) -> &str {
        self.in_flight
            .front()
            .map_or("", |f| self.names[f.index].as_str())
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        self.attempts += 1;
        self.chunk_size = conn.negotiated().map_or(0, |(chunk, _)| chunk);
        // A new connection: what was not answered goes again, first and in order.
        if let Some((index, _)) = self.ready.take() {
            self.queue.push_front(index);
        }
        while let Some(lost) = self.in_flight.pop_back() {
            self.queue.push_front(lost.index);
        }
        Ok(())
    }

    async fn fill(&mut self, conn: &mut Conn) -> Result<Fill<()>, Interrupt> {
        let window = conn.negotiated().map_or(1, |(_, w)| usize::from(w));
        if self.in_flight.len() >= window {
            return Ok(Fill::Nothing);
        }
        let Some((index, data)) = self.next_ready().await else {
            return Ok(if self.is_done() {
                Fill::Done(())
            } else {
                Fill::Nothing
            });
        };
        let item = &self.items[index];
        match conn.put(&self.names[index], item.attrs, &data) {
            Ok(seq) => {
                if !self.started[index] {
                    self.started[index] = true;
                    let size = data.len() as u64;
                    (self.events)(ItemEvent::Started { index, size });
                }
                self.in_flight.push_back(InFlight {
                    seq,
                    index,
                    size: data.len() as u64,
                    sent_at: Instant::now(),
                });
                Ok(Fill::Queued)
            }
            Err(UsageError::Busy | UsageError::TransmitPending) => {
                self.ready = Some((index, data));
                Ok(Fill::Nothing)
            }
            Err(e) => Err(Interrupt::Link(std::io::Error::other(format!(
                "connection not ready: {e}"
            )))),
        }
    }

    async fn on_event(
        &mut self,
        event: Ev,
        _conn: &mut Conn,
        _scratch: &[u8],
        _now: u64,
    ) -> Result<Option<()>, Interrupt> {
        let (seq, outcome) = match event {
            Ev::PutVerified { seq, size, digest } => (seq, Ok((size, digest))),
            Ev::PutFailed { seq, failure, text } => (seq, Err((failure, text))),
            _ => return Ok(None),
        };
        let Some(front) = self.in_flight.pop_front() else {
            return Err(ClientError::Protocol("an answer to no Put".into()).into());
        };
        if front.seq != seq {
            return Err(
                ClientError::Protocol("the answers to Puts came out of order".into()).into(),
            );
        }
        let name = self.names[front.index].clone();
        let result = match outcome {
            Ok((size, digest)) => {
                let chunks = u64::from(size > 0);
                Ok(TransferReport {
                    name,
                    size,
                    digest: digest.to_string(),
                    chunk_size: self.chunk_size,
                    chunks,
                    held_at_start: 0,
                    chunks_sent: chunks,
                    last_attempt_sent: chunks,
                    chunks_resent: 0,
                    attempts: self.attempts,
                    duration: front.sent_at.elapsed().max(Duration::from_micros(1)),
                })
            }
            Err((failure, text)) => Err(self.failure_error(&name, failure, text)),
        };
        debug_assert_eq!(result.as_ref().map_or(front.size, |r| r.size), front.size);
        self.finish(front.index, result);
        Ok(self.is_done().then_some(()))
    }

    fn progress_marker(&self) -> u64 {
        self.answered
    }
}
