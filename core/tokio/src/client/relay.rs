//! Relayed uploads: a stream that arrives in pieces (a browser's resumable upload) carried
//! into the server, each piece starting where the server's held chunks end.
//!
//! The relay never keeps the data it passed on: it keeps each chunk's digest in a
//! [`ChunkLedger`], and when a later piece resumes the upload it hands the server's held
//! chunks to the connection by digest (`Connection::provide_held_digest`), so the whole-file
//! digest is computed as if the relay had read every byte.

use std::io;
use std::path::{Path, PathBuf};

use ferry_core::{chunk_digest, Digest, Layout};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::client::error::ClientError;
use crate::client::op::{begin_request, Conn, Ev, Interrupt, OpKind, Operation, ProgressFn};
use crate::client::report::{Phase, Progress, TransferReport};
use crate::client::tally::{Retained, SendTally};

const STREAM: &str = "<relayed stream>";

/// Where a relay keeps the digests (SHA-256 of the chunk's bytes) of the chunks it passed
/// on, by index.
pub trait ChunkLedger: Send {
    /// The digest of chunk `index` as it was read, if kept.
    fn digest(&self, index: u64) -> Option<[u8; 32]>;
    /// Chunk `index` was read with `digest`.
    fn record(&mut self, index: u64, digest: [u8; 32]) -> io::Result<()>;
}

/// How a relayed piece ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutcome {
    /// The whole file is on the server, verified by both ends.
    Verified(TransferReport),
    /// The piece does not start where the server's held data ends: nothing was read.
    OffsetMismatch {
        /// Bytes the server holds from the start of the file.
        held_bytes: u64,
    },
}

/// Bytes of `layout` covered by the first `chunks` chunks.
fn prefix_bytes(layout: Layout, chunks: u64) -> u64 {
    chunks
        .saturating_mul(u64::from(layout.chunk_size))
        .min(layout.size)
}

/// Asks the server what it holds of an upload of `name` (`size` bytes): the bytes held from
/// the start of the file, and the chunk size. Nothing is sent.
pub(crate) struct ProbeOp {
    pub name: String,
    pub size: u64,
}

impl Operation for ProbeOp {
    type Output = (u64, u32);

    fn kind(&self) -> OpKind {
        OpKind::Upload
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        begin_request(conn.upload(&self.name, self.size, false), &self.name)
    }

    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        _scratch: &[u8],
        _now: u64,
    ) -> Result<Option<(u64, u32)>, Interrupt> {
        match event {
            Ev::TransferStarted { layout, .. } => {
                let held = conn.send_held().unwrap_or_default();
                Ok(Some((prefix_bytes(layout, held.prefix), layout.chunk_size)))
            }
            _ => Ok(None),
        }
    }
}

/// One relayed piece: the stream holds the file's bytes from `offset` on.
pub(crate) struct RelayOp<'p, R> {
    name: String,
    size: u64,
    offset: u64,
    reader: R,
    ledger: &'p mut dyn ChunkLedger,
    progress: ProgressFn<'p>,
    layout: Option<Layout>,
    /// The next index to read from the stream.
    next: u64,
    consumed: bool,
    retained: Retained,
    window: u64,
    buf: Vec<u8>,
    done_bytes: u64,
    tally: SendTally,
}

impl<'p, R: AsyncRead + Unpin> RelayOp<'p, R> {
    pub(crate) fn new(
        name: &str,
        size: u64,
        offset: u64,
        reader: R,
        ledger: &'p mut dyn ChunkLedger,
        progress: ProgressFn<'p>,
    ) -> Self {
        RelayOp {
            name: name.to_string(),
            size,
            offset,
            reader,
            ledger,
            progress,
            layout: None,
            next: 0,
            consumed: false,
            retained: Retained::default(),
            window: 1,
            buf: Vec::new(),
            done_bytes: 0,
            tally: SendTally::new(),
        }
    }

    fn path() -> PathBuf {
        PathBuf::from(STREAM)
    }

    fn report_progress(&mut self) {
        (self.progress)(Progress {
            name: self.name.clone(),
            done_bytes: self.done_bytes,
            total_bytes: self.size,
            phase: Phase::Upload,
        });
    }

    /// Reads chunk `index` into `buf`: from the stream, or (a re-send) from memory.
    async fn read_chunk(&mut self, index: u64, len: usize, chunks: u64) -> Result<(), Interrupt> {
        if index < self.next {
            let data = self.retained.chunks.get(&index).ok_or_else(|| {
                ClientError::Protocol(format!(
                    "the server asked again for chunk {index}, which is no longer in flight"
                ))
            })?;
            self.buf.clear();
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        if index != self.next {
            return Err(ClientError::Protocol(format!(
                "the server asked for chunk {index} of a stream at chunk {}",
                self.next
            ))
            .into());
        }
        self.buf.resize(len, 0);
        self.consumed = true;
        self.reader.read_exact(&mut self.buf).await.map_err(|e| {
            let e = if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended before the declared size",
                )
            } else {
                e
            };
            Interrupt::Final(ClientError::io(Self::path(), e))
        })?;
        self.ledger
            .record(index, *chunk_digest(&self.buf).as_bytes())
            .map_err(|e| ClientError::io(Path::new("<chunk ledger>"), e))?;
        self.next += 1;
        if self.next == chunks {
            let mut extra = [0u8; 1];
            match self.reader.read(&mut extra).await {
                Ok(0) => {}
                Ok(_) => {
                    return Err(ClientError::io(
                        Self::path(),
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the stream is longer than the declared size",
                        ),
                    )
                    .into())
                }
                Err(e) => return Err(ClientError::io(Self::path(), e).into()),
            }
        }
        self.retained.pending = Some((index, self.buf.clone()));
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> Operation for RelayOp<'_, R> {
    type Output = RelayOutcome;

    fn kind(&self) -> OpKind {
        OpKind::Upload
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        self.tally.attempt_started();
        self.layout = None;
        self.window = conn.negotiated().map(|(_, w)| u64::from(w)).unwrap_or(1);
        // A piece from the start drops whatever the server held of the name; a reconnection
        // after data moved builds on what the server holds.
        let fresh = self.offset == 0 && !self.consumed;
        begin_request(conn.upload(&self.name, self.size, fresh), &self.name)
    }

    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        _scratch: &[u8],
        now: u64,
    ) -> Result<Option<RelayOutcome>, Interrupt> {
        match event {
            Ev::TransferStarted {
                layout,
                held_chunks,
            } => {
                if layout.size != self.size {
                    return Err(ClientError::Protocol(format!(
                        "the server started a transfer of {} bytes, not {}",
                        layout.size, self.size
                    ))
                    .into());
                }
                let held = conn.send_held().unwrap_or_default();
                let held_bytes = prefix_bytes(layout, held.prefix);
                let aligned = self.offset == self.size
                    || self
                        .offset
                        .is_multiple_of(u64::from(layout.chunk_size.max(1)));
                let start_chunk = if self.offset == self.size {
                    layout.chunks()
                } else {
                    self.offset / u64::from(layout.chunk_size.max(1))
                };
                // Before any byte was read, the start is checked against what is held; once
                // data moved, a new attempt goes on from where the stream is.
                if !self.consumed && (!aligned || held.prefix < start_chunk) {
                    return Ok(Some(RelayOutcome::OffsetMismatch { held_bytes }));
                }
                if !self.consumed {
                    self.next = start_chunk;
                }
                self.layout = Some(layout);
                self.tally.transfer_started(held_chunks);
                self.done_bytes = 0;
                self.report_progress();
            }
            Ev::NeedChunk { index, offset, len } => {
                let chunks = self.layout.map_or(0, |l| l.chunks());
                let held = conn.send_held().is_some_and(|h| h.contains(index));
                // A held chunk already passed on (in an earlier piece or attempt) goes by its
                // digest; the rest is read from the stream or the chunks kept in flight.
                if held && index < self.next {
                    let digest = self.ledger.digest(index).ok_or_else(|| {
                        ClientError::verification(
                            &self.name,
                            format!("the digest of chunk {index} was not kept"),
                        )
                    })?;
                    conn.provide_held_digest(index, Digest::new(digest))
                        .map_err(|e| {
                            ClientError::Protocol(format!("chunk {index} digest refused: {e}"))
                        })?;
                } else {
                    self.read_chunk(index, len, chunks).await?;
                    conn.provide_chunk(index, &self.buf, now).map_err(|e| {
                        ClientError::Protocol(format!(
                            "chunk {index} refused by the connection: {e}"
                        ))
                    })?;
                }
                let end = offset + len as u64;
                if end > self.done_bytes {
                    self.done_bytes = end;
                    self.report_progress();
                }
            }
            Ev::Verified { size, digest } => {
                let layout = self.layout.ok_or_else(|| {
                    ClientError::Protocol("verified before the transfer started".into())
                })?;
                return Ok(Some(RelayOutcome::Verified(self.tally.report(
                    &self.name,
                    size,
                    digest.to_string(),
                    layout,
                ))));
            }
            _ => {}
        }
        Ok(None)
    }

    fn chunk_sent(&mut self, index: u64) {
        if self.tally.chunk_sent(index) {
            self.retained.first_sent(index, self.window);
        }
    }

    fn progress_marker(&self) -> u64 {
        self.tally.chunks_sent() + self.done_bytes
    }

    fn can_retry(&self) -> bool {
        // Every chunk read before the window in flight was acknowledged, so the server holds
        // it (and the ledger its digest); the window's chunks are kept: a new attempt goes
        // on from the stream's position.
        true
    }

    fn restart(&mut self) -> Result<(), ClientError> {
        Err(ClientError::verification(
            &self.name,
            "the server's partial copy does not match the digests this relay kept",
        ))
    }
}
