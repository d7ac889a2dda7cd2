//! A blocking driver over [`embedded_io`] streams, for firmware and simple hosts.
//!
//! It runs one operation at a time on a [`Connection`] in a loop: write what the
//! connection sends, read what the stream delivers, act on events through the
//! caller's [`ChunkSource`] or [`ChunkSink`]. A stream whose reads can time out
//! (`ErrorKind::TimedOut` or `WouldBlock`) lets re-sends and timeouts fire while
//! the peer is silent; over a stream that blocks forever, they fire only when
//! data arrives.

use embedded_io::{Error as _, ErrorKind, Read, Write};

use crate::connection::{Connection, Event, Failure, UsageError};
use crate::digest::Digest;
use crate::transfer::Layout;

/// The caller's clock: milliseconds from any fixed point, never going back.
pub trait Clock {
    /// Now.
    fn now(&mut self) -> u64;
}

/// Where an upload's data comes from.
pub trait ChunkSource {
    /// Storage error.
    type Error;
    /// Fills `buf` with the bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// The upload started: its layout, and how many chunks the server already
    /// held from an earlier attempt (they are not sent again). Does nothing by default.
    fn started(&mut self, layout: Layout, held_chunks: u64) -> Result<(), Self::Error> {
        let _ = (layout, held_chunks);
        Ok(())
    }
}

/// Where a download's data goes.
pub trait ChunkSink {
    /// Storage error.
    type Error;
    /// Writes verified chunk `index` at `offset` and records it as held with its
    /// digest (so an interrupted download can resume).
    fn write_chunk(
        &mut self,
        index: u64,
        offset: u64,
        data: &[u8],
        digest: &Digest,
    ) -> Result<(), Self::Error>;
    /// Makes the complete, verified file durable.
    fn commit(&mut self, size: u64, digest: &Digest) -> Result<(), Self::Error>;
    /// The download started: the file's layout (its size, as the server has it), and
    /// how many chunks of the `partial` copy offered were accepted as held (0: the
    /// transfer starts from scratch, so drop any partial state). Called before the
    /// first `write_chunk`; does nothing by default.
    fn started(&mut self, layout: Layout, held_chunks: u64) -> Result<(), Self::Error> {
        let _ = (layout, held_chunks);
        Ok(())
    }
}

/// Why a blocking operation ended without success.
///
/// Exhaustive on purpose: a firmware shell maps each way the driver can end to
/// its own error, and a new one must make it decide (there is no sane catch-all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DriverError<E> {
    /// The stream failed.
    #[error("the stream failed: {0}")]
    Io(ErrorKind),
    /// The stream ended.
    #[error("the stream ended")]
    Eof,
    /// The caller's storage failed.
    #[error("storage failed: {0}")]
    Storage(E),
    /// The request or transfer failed; the connection is still usable.
    #[error("{0}")]
    Failed(Failure),
    /// The connection closed.
    #[error("the connection closed: {0}")]
    Closed(Failure),
    /// The connection was not in a state for this operation.
    #[error("{0}")]
    Usage(UsageError),
}

impl<E> From<UsageError> for DriverError<E> {
    fn from(error: UsageError) -> Self {
        Self::Usage(error)
    }
}

/// Runs one connection over a blocking stream.
pub struct Driver<'a, B, const W: usize, T, C> {
    /// The connection being driven.
    pub connection: &'a mut Connection<B, W>,
    io: T,
    clock: C,
    read_buf: &'a mut [u8],
    unread: (usize, usize),
}

impl<'a, B, const W: usize, T, C> Driver<'a, B, W, T, C>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    T: Read + Write,
    C: Clock,
{
    /// Drives `connection` over `io`, reading into `read_buf` (any size; a few KiB is plenty).
    pub fn new(
        connection: &'a mut Connection<B, W>,
        io: T,
        clock: C,
        read_buf: &'a mut [u8],
    ) -> Self {
        Self {
            connection,
            io,
            clock,
            read_buf,
            unread: (0, 0),
        }
    }

    /// Gives the stream back.
    pub fn into_io(self) -> T {
        self.io
    }

    /// Runs until the handshake completes; returns the chunk size and window.
    pub fn connect<E>(&mut self) -> Result<(u32, u16), DriverError<E>> {
        loop {
            self.flush()?;
            let now = self.clock.now();
            match self.connection.poll_event(now) {
                Some(Event::Connected { chunk_size, window }) => return Ok((chunk_size, window)),
                Some(event) => Self::unexpected(event)?,
                None => self.receive()?,
            }
        }
    }

    /// Uploads `size` bytes from `source` as `name`; `chunk_buf` must hold a chunk.
    /// Chunks the server holds of `name` at this size (from an interrupted attempt,
    /// or a committed copy) are not sent again. Returns the verified whole-file digest.
    pub fn upload<S: ChunkSource>(
        &mut self,
        name: &str,
        size: u64,
        source: &mut S,
        chunk_buf: &mut [u8],
    ) -> Result<Digest, DriverError<S::Error>> {
        self.upload_as(name, size, false, source, chunk_buf)
    }

    /// Like [`upload`](Self::upload), but the server first drops whatever it holds
    /// of `name`: the way on after `upload` failed with
    /// `Failure::Transfer(TransferError::SourceChanged)` (the source differs from
    /// the chunks the server held).
    pub fn upload_fresh<S: ChunkSource>(
        &mut self,
        name: &str,
        size: u64,
        source: &mut S,
        chunk_buf: &mut [u8],
    ) -> Result<Digest, DriverError<S::Error>> {
        self.upload_as(name, size, true, source, chunk_buf)
    }

    fn upload_as<S: ChunkSource>(
        &mut self,
        name: &str,
        size: u64,
        fresh: bool,
        source: &mut S,
        chunk_buf: &mut [u8],
    ) -> Result<Digest, DriverError<S::Error>> {
        self.connection.upload(name, size, fresh)?;
        loop {
            self.flush()?;
            let now = self.clock.now();
            match self.connection.poll_event(now) {
                Some(Event::NeedChunk {
                    index, offset, len, ..
                }) => {
                    let buf = chunk_buf
                        .get_mut(..len)
                        .ok_or(UsageError::BuffersTooSmall)?;
                    source.read_at(offset, buf).map_err(DriverError::Storage)?;
                    self.connection.provide_chunk(index, buf, now)?;
                }
                Some(Event::TransferStarted {
                    layout,
                    held_chunks,
                }) => source
                    .started(layout, held_chunks)
                    .map_err(DriverError::Storage)?,
                Some(Event::Verified { digest, .. }) => return Ok(digest),
                Some(event) => Self::unexpected(event)?,
                None => self.receive()?,
            }
        }
    }

    /// Downloads `name` into `sink`. `partial` describes chunks the sink already
    /// holds from an interrupted attempt (see [`Connection::download`]).
    /// Returns the size and the verified whole-file digest.
    pub fn download<S: ChunkSink>(
        &mut self,
        name: &str,
        partial: Option<(u64, &mut dyn Iterator<Item = (u64, Digest)>)>,
        sink: &mut S,
    ) -> Result<(u64, Digest), DriverError<S::Error>> {
        self.connection.download(name, partial)?;
        loop {
            self.flush()?;
            let now = self.clock.now();
            match self.connection.poll_event(now) {
                Some(Event::StoreChunk {
                    index,
                    offset,
                    digest,
                    data,
                }) => {
                    sink.write_chunk(index, offset, data, &digest)
                        .map_err(DriverError::Storage)?;
                    self.connection.chunk_stored(index)?;
                }
                Some(Event::TransferStarted {
                    layout,
                    held_chunks,
                }) => sink
                    .started(layout, held_chunks)
                    .map_err(DriverError::Storage)?,
                Some(Event::Commit { size, digest }) => {
                    sink.commit(size, &digest).map_err(DriverError::Storage)?;
                    self.connection.commit_done()?;
                }
                Some(Event::Verified { size, digest }) => {
                    self.flush()?;
                    return Ok((size, digest));
                }
                Some(event) => Self::unexpected(event)?,
                None => self.receive()?,
            }
        }
    }

    fn unexpected<E>(event: Event<'_>) -> Result<(), DriverError<E>> {
        match event {
            Event::Failed { failure, .. } => Err(DriverError::Failed(failure)),
            Event::Closed { failure, .. } => Err(DriverError::Closed(failure)),
            _ => Ok(()),
        }
    }

    fn flush<E>(&mut self) -> Result<(), DriverError<E>> {
        let now = self.clock.now();
        let mut wrote = false;
        while let Some(transmit) = self.connection.poll_transmit(now) {
            self.io
                .write_all(transmit.bytes)
                .map_err(|e| DriverError::Io(e.kind()))?;
            wrote = true;
        }
        if wrote {
            self.io.flush().map_err(|e| DriverError::Io(e.kind()))?;
        }
        Ok(())
    }

    /// Feeds buffered input, or reads more, then applies timeouts.
    fn receive<E>(&mut self) -> Result<(), DriverError<E>> {
        let now = self.clock.now();
        let (start, end) = self.unread;
        if start < end {
            let used = self
                .connection
                .handle_input(&self.read_buf[start..end], now);
            self.unread = (start + used, end);
            if used > 0 {
                return Ok(());
            }
        } else {
            match self.io.read(self.read_buf) {
                Ok(0) => return Err(DriverError::Eof),
                Ok(n) => self.unread = (0, n),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => return Err(DriverError::Io(e.kind())),
            }
        }
        let now = self.clock.now();
        if self.connection.deadline().is_some_and(|at| now >= at) {
            self.connection.handle_timeout(now);
        }
        Ok(())
    }
}
