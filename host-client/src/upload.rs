//! Uploads: from a file (positioned reads of exactly the chunks asked for) or from a
//! stream (read once, in order, keeping only the chunks in flight for re-sends).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use ferry_core::Layout;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::client::{begin_request, Conn, Ev, Interrupt, OpKind, Operation, ProgressFn};
use crate::error::ClientError;
use crate::report::{hex, Phase, Progress, TransferReport};

/// Where an upload's bytes come from.
pub(crate) enum Source<R> {
    File {
        file: File,
        path: PathBuf,
        size: u64,
        modified: Option<SystemTime>,
    },
    Stream {
        reader: R,
        size: u64,
        /// The next index to read from the stream.
        next: u64,
        /// Whether any byte was consumed (a broken link cannot be resumed then).
        consumed: bool,
        /// The chunk just read, until it is known whether it was sent.
        pending: Option<(u64, Vec<u8>)>,
        /// Chunks sent and possibly not yet acknowledged: the last `window`.
        retained: BTreeMap<u64, Vec<u8>>,
    },
}

const STREAM: &str = "<upload stream>";

impl<R: AsyncRead + Unpin> Source<R> {
    pub(crate) fn open_file(path: &Path) -> Result<Self, ClientError> {
        let file = File::open(path).map_err(|e| ClientError::io(path, e))?;
        let meta = file.metadata().map_err(|e| ClientError::io(path, e))?;
        if !meta.is_file() {
            return Err(ClientError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        Ok(Source::File {
            file,
            path: path.to_path_buf(),
            size: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    pub(crate) fn stream(reader: R, size: u64) -> Self {
        Source::Stream {
            reader,
            size,
            next: 0,
            consumed: false,
            pending: None,
            retained: BTreeMap::new(),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Source::File { size, .. } | Source::Stream { size, .. } => *size,
        }
    }

    fn path(&self) -> PathBuf {
        match self {
            Source::File { path, .. } => path.clone(),
            Source::Stream { .. } => PathBuf::from(STREAM),
        }
    }
}

/// One upload, over as many attempts as it takes.
pub(crate) struct UploadOp<'p, R> {
    name: String,
    source: Source<R>,
    progress: ProgressFn<'p>,
    fresh: bool,
    buf: Vec<u8>,
    started: Instant,
    layout: Option<Layout>,
    window: u64,
    held_at_start: u64,
    done_bytes: u64,
    /// The next index whose chunk frame is a first send (first sends go in index order).
    next_first: u64,
    chunks_sent: u64,
    sent_this_attempt: u64,
    chunks_resent: u64,
    attempts: u32,
}

impl<'p, R: AsyncRead + Unpin> UploadOp<'p, R> {
    pub(crate) fn new(name: &str, source: Source<R>, progress: ProgressFn<'p>) -> Self {
        // A stream cannot be read twice: never let the server's held chunks (which are
        // hashed from the source to be checked) meet a source that may have changed.
        let fresh = matches!(source, Source::Stream { .. });
        Self {
            name: name.to_string(),
            source,
            progress,
            fresh,
            buf: Vec::new(),
            started: Instant::now(),
            layout: None,
            window: 1,
            held_at_start: 0,
            done_bytes: 0,
            next_first: 0,
            chunks_sent: 0,
            sent_this_attempt: 0,
            chunks_resent: 0,
            attempts: 0,
        }
    }

    fn report_progress(&mut self) {
        (self.progress)(Progress {
            name: self.name.clone(),
            done_bytes: self.done_bytes,
            total_bytes: self.source.size(),
            phase: Phase::Upload,
        });
    }

    /// The data of chunk `index`: read from the file, from the stream, or (a re-send of a
    /// streamed chunk) from memory.
    async fn chunk_data(&mut self, index: u64, offset: u64, len: usize) -> Result<(), Interrupt> {
        let name = self.name.clone();
        let path = self.source.path();
        let changed = |what: &str| {
            Interrupt::Final(ClientError::verification(
                &name,
                format!("the source changed while it was sent: {what}"),
            ))
        };
        let chunks = self.layout.map(|l| l.chunks()).unwrap_or(0);
        match &mut self.source {
            Source::File { file, .. } => {
                self.buf.resize(len, 0);
                file.read_exact_at(&mut self.buf, offset).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        changed("it is shorter than when the upload started")
                    } else {
                        Interrupt::Final(ClientError::io(&path, e))
                    }
                })?;
            }
            Source::Stream {
                reader,
                next,
                consumed,
                pending,
                retained,
                ..
            } => {
                if index < *next {
                    let data = retained.get(&index).ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "the server asked again for chunk {index}, which is no longer in flight"
                        ))
                    })?;
                    self.buf.clear();
                    self.buf.extend_from_slice(data);
                } else if index == *next {
                    self.buf.resize(len, 0);
                    *consumed = true;
                    reader.read_exact(&mut self.buf).await.map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            Interrupt::Final(ClientError::io(
                                &path,
                                io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "the stream ended before the declared size",
                                ),
                            ))
                        } else {
                            Interrupt::Final(ClientError::io(&path, e))
                        }
                    })?;
                    *next += 1;
                    if *next == chunks {
                        ensure_ended(reader, &path).await?;
                    }
                    *pending = Some((index, self.buf.clone()));
                } else {
                    return Err(ClientError::Protocol(format!(
                        "the server asked for chunk {index} of a stream at chunk {next}"
                    ))
                    .into());
                }
            }
        }
        Ok(())
    }
}

/// Checks that a stream holds no more than its declared size.
async fn ensure_ended<R: AsyncRead + Unpin>(reader: &mut R, path: &Path) -> Result<(), Interrupt> {
    let mut extra = [0u8; 1];
    match reader.read(&mut extra).await {
        Ok(0) => Ok(()),
        Ok(_) => Err(ClientError::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the stream is longer than the declared size",
            ),
        )
        .into()),
        Err(e) => Err(ClientError::io(path, e).into()),
    }
}

impl<R: AsyncRead + Unpin> Operation for UploadOp<'_, R> {
    type Output = TransferReport;

    fn kind(&self) -> OpKind {
        OpKind::Upload
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        self.attempts += 1;
        self.sent_this_attempt = 0;
        self.layout = None;
        self.window = conn.negotiated().map(|(_, w)| u64::from(w)).unwrap_or(1);
        begin_request(
            conn.upload(&self.name, self.source.size(), self.fresh),
            &self.name,
        )
    }

    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        _scratch: &[u8],
        now: u64,
    ) -> Result<Option<TransferReport>, Interrupt> {
        match event {
            Ev::Started {
                layout,
                held_chunks,
            } => {
                if layout.size != self.source.size() {
                    return Err(ClientError::Protocol(format!(
                        "the server started a transfer of {} bytes, not {}",
                        layout.size,
                        self.source.size()
                    ))
                    .into());
                }
                self.layout = Some(layout);
                self.held_at_start = held_chunks;
                self.next_first = 0;
                self.done_bytes = 0;
                if layout.size == 0 {
                    if let Source::Stream { reader, .. } = &mut self.source {
                        ensure_ended(reader, Path::new(STREAM)).await?;
                    }
                }
                self.report_progress();
            }
            Ev::NeedChunk { index, offset, len } => {
                self.chunk_data(index, offset, len).await?;
                conn.provide_chunk(index, &self.buf, now).map_err(|e| {
                    ClientError::Protocol(format!("chunk {index} refused by the connection: {e:?}"))
                })?;
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
                if let Source::File {
                    file,
                    path,
                    size: expected,
                    modified,
                } = &self.source
                {
                    let meta = file
                        .metadata()
                        .map_err(|e| ClientError::io(path.as_path(), e))?;
                    if meta.len() != *expected || meta.modified().ok() != *modified {
                        return Err(ClientError::verification(
                            &self.name,
                            "the source changed while it was sent (size or modification time)",
                        )
                        .into());
                    }
                }
                return Ok(Some(TransferReport {
                    name: self.name.clone(),
                    size,
                    digest: hex(&digest),
                    chunk_size: layout.chunk_size,
                    chunks: layout.chunks(),
                    held_at_start: self.held_at_start,
                    chunks_sent: self.chunks_sent,
                    last_attempt_sent: self.sent_this_attempt,
                    chunks_resent: self.chunks_resent,
                    attempts: self.attempts,
                    duration: self.started.elapsed(),
                }));
            }
            _ => {}
        }
        Ok(None)
    }

    fn chunk_sent(&mut self, index: u64) {
        if index >= self.next_first {
            self.next_first = index + 1;
            self.chunks_sent += 1;
            self.sent_this_attempt += 1;
            if let Source::Stream {
                pending, retained, ..
            } = &mut self.source
            {
                if let Some((pending_index, data)) = pending.take() {
                    if pending_index == index {
                        retained.insert(index, data);
                    }
                }
                // A first send of `index` means every chunk in flight is above
                // `index - window`: older ones are acknowledged.
                let window = self.window;
                retained.retain(|&kept, _| kept + window > index);
                debug_assert!(retained.len() as u64 <= window);
            }
        } else {
            self.chunks_resent += 1;
        }
    }

    fn progress_marker(&self) -> u64 {
        self.chunks_sent + self.done_bytes
    }

    fn can_retry(&self) -> bool {
        match &self.source {
            Source::File { .. } => true,
            Source::Stream { consumed, .. } => !consumed,
        }
    }

    fn restart(&mut self) -> Result<(), ClientError> {
        if let Source::Stream { consumed: true, .. } = &self.source {
            return Err(ClientError::verification(
                &self.name,
                "the server's copy does not match the stream, which cannot be read again",
            ));
        }
        self.fresh = true;
        Ok(())
    }
}
