//! Drives a [`Connection`] over an async byte stream (TLS over TCP in Ferry's hosts).
//!
//! The shell's loop is: [`Link::flush`] what the connection sends, act on one
//! [`Connection::poll_event`], and when there is no event, [`Link::receive`]:
//! feed buffered input, or wait for more input until the connection's deadline,
//! then apply timeouts. The server uses the same loop; the client skips the flush while
//! [`Link::can_defer_flush`], so that a download acknowledges the chunks of one read
//! together.

use std::io;
use std::time::{Duration, Instant};

use ferry_core::Connection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from the stream per read call unless told otherwise. The server keeps one
/// buffer per connection, so this size weighs on its memory under many connections.
const READ_BUF: usize = 64 * 1024;

/// A byte stream with the receive buffer and clock a connection needs.
pub struct Link<S> {
    stream: S,
    read_buf: Box<[u8]>,
    unread: (usize, usize),
    /// The connection took none of the unread input last time (it has output to send first).
    stalled: bool,
    epoch: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Self::with_read_buffer(stream, READ_BUF)
    }

    /// Wraps `stream`, reading up to `bytes` per read call.
    pub fn with_read_buffer(stream: S, bytes: usize) -> Self {
        Self {
            stream,
            read_buf: vec![0; bytes.max(1)].into_boxed_slice(),
            unread: (0, 0),
            stalled: false,
            epoch: Instant::now(),
        }
    }

    /// Whether flushing can wait: input read from the stream is still waiting and the
    /// connection is taking it. A receiver that flushes only otherwise acknowledges the
    /// chunks of one read together (the core's acknowledgement is cumulative).
    pub fn can_defer_flush(&self) -> bool {
        self.unread.0 < self.unread.1 && !self.stalled
    }

    /// The connection clock: milliseconds since this link was made.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The stream, for shutdown.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Writes everything the connection has to send.
    pub async fn flush<B, const W: usize>(&mut self, conn: &mut Connection<B, W>) -> io::Result<()>
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
    {
        self.flush_inspect(conn, |_| {}).await
    }

    /// Like [`flush`](Self::flush), telling `chunk_sent` the index of each chunk
    /// frame before it is written (the client uses it to count the chunks it sends).
    pub async fn flush_inspect<B, const W: usize>(
        &mut self,
        conn: &mut Connection<B, W>,
        mut chunk_sent: impl FnMut(u64),
    ) -> io::Result<()>
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
    {
        let mut wrote = false;
        while let Some(transmit) = conn.poll_transmit(self.now()) {
            if let Some(index) = transmit.chunk {
                chunk_sent(index);
            }
            self.stream.write_all(transmit.bytes).await?;
            wrote = true;
        }
        if wrote {
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Feeds buffered input to the connection, or waits for input no longer than
    /// the connection's deadline; then applies timeouts. A closed stream is
    /// `UnexpectedEof`.
    pub async fn receive<B, const W: usize>(
        &mut self,
        conn: &mut Connection<B, W>,
    ) -> io::Result<()>
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
    {
        let (start, end) = self.unread;
        if start < end {
            let used = conn.handle_input(&self.read_buf[start..end], self.now());
            self.unread = (start + used, end);
            self.stalled = used == 0;
            if used > 0 {
                return Ok(());
            }
        } else {
            let wait = conn
                .deadline()
                .map(|at| Duration::from_millis(at.saturating_sub(self.now())));
            let read = self.stream.read(&mut self.read_buf);
            let read = match wait {
                Some(wait) => tokio::time::timeout(wait, read).await.ok(),
                None => Some(read.await),
            };
            match read {
                Some(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Some(Ok(n)) => self.unread = (0, n),
                Some(Err(error)) => return Err(error),
                None => {}
            }
        }
        let now = self.now();
        if conn.deadline().is_some_and(|at| now >= at) {
            conn.handle_timeout(now);
        }
        Ok(())
    }
}
