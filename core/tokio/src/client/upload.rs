//! Uploads: from a file (positioned reads of exactly the chunks asked for) or from a
//! stream (read once, in order, keeping only the chunks in flight for re-sends).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ferry_core::{FileAttrs, Layout};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::client::error::ClientError;
use crate::client::op::{begin_request, Conn, Ev, Interrupt, OpKind, Operation, ProgressFn};
use crate::client::report::{Phase, Progress, TransferReport};
use crate::client::tally::{Retained, SendTally};

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
        /// The chunk just read and the chunks possibly not yet acknowledged (the last
        /// `window`), for a re-send.
        retained: Retained,
    },
}

const STREAM: &str = "<upload stream>";

impl<R: AsyncRead + Unpin> Source<R> {
    pub(crate) fn open_file(path: &Path) -> Result<Self, ClientError> {
        let file = File::open(path).map_err(|e| ClientError::io(path, e))?;
        Self::opened_file(file, path)
    }

    /// A file already open; `path` names it in messages.
    pub(crate) fn opened_file(file: File, path: &Path) -> Result<Self, ClientError> {
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
            retained: Retained::default(),
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
    /// Sent with the request (`OpenUploadWith`) when given.
    attrs: Option<FileAttrs>,
    buf: Vec<u8>,
    layout: Option<Layout>,
    window: u64,
    done_bytes: u64,
    tally: SendTally,
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
            attrs: None,
            buf: Vec::new(),
            layout: None,
            window: 1,
            done_bytes: 0,
            tally: SendTally::new(),
        }
    }

    /// The file's attributes, for the server to record.
    pub(crate) fn with_attrs(mut self, attrs: FileAttrs) -> Self {
        self.attrs = Some(attrs);
        self
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
                retained,
                ..
            } => {
                if index < *next {
                    let data = retained.chunks.get(&index).ok_or_else(|| {
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
                    retained.pending = Some((index, self.buf.clone()));
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
        self.tally.attempt_started();
        self.layout = None;
        self.window = conn.negotiated().map(|(_, w)| u64::from(w)).unwrap_or(1);
        let size = self.source.size();
        let request = match self.attrs {
            Some(attrs) => conn.upload_with(&self.name, size, self.fresh, attrs),
            None => conn.upload(&self.name, size, self.fresh),
        };
        begin_request(request, &self.name)
    }

    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        _scratch: &[u8],
        now: u64,
    ) -> Result<Option<TransferReport>, Interrupt> {
        match event {
            Ev::TransferStarted {
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
                self.tally.transfer_started(held_chunks);
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
                    ClientError::Protocol(format!("chunk {index} refused by the connection: {e}"))
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
                return Ok(Some(self.tally.report(
                    &self.name,
                    size,
                    digest.to_string(),
                    layout,
                )));
            }
            _ => {}
        }
        Ok(None)
    }

    fn chunk_sent(&mut self, index: u64) {
        let first = self.tally.chunk_sent(index);
        if let (true, Source::Stream { retained, .. }) = (first, &mut self.source) {
            retained.first_sent(index, self.window);
        }
    }

    fn progress_marker(&self) -> u64 {
        self.tally.chunks_sent() + self.done_bytes
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

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: u32 = 16;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 + 1) as u8).collect()
    }

    fn chunk(data: &[u8], index: u64) -> &[u8] {
        let start = index as usize * CHUNK as usize;
        &data[start..(start + CHUNK as usize).min(data.len())]
    }

    async fn read<R: AsyncRead + Unpin>(
        op: &mut UploadOp<'_, R>,
        index: u64,
    ) -> Result<Vec<u8>, Interrupt> {
        let offset = index * u64::from(CHUNK);
        op.chunk_data(index, offset, CHUNK as usize).await?;
        Ok(op.buf.clone())
    }

    #[tokio::test]
    async fn a_stream_keeps_only_the_window_of_sent_chunks() {
        let data = bytes(16 * CHUNK as usize);
        let size = data.len() as u64;
        let mut progress = |_: Progress| {};
        let mut op = UploadOp::new(
            "n",
            Source::stream(std::io::Cursor::new(data.clone()), size),
            &mut progress,
        );
        assert!(op.fresh, "a stream never builds on held chunks");
        op.window = 4;
        op.layout = Some(Layout {
            size,
            chunk_size: CHUNK,
        });
        for index in 0..10 {
            assert_eq!(
                read(&mut op, index).await.ok().unwrap(),
                chunk(&data, index)
            );
            op.chunk_sent(index);
        }
        let Source::Stream { retained, .. } = &op.source else {
            unreachable!()
        };
        assert_eq!(
            retained.chunks.keys().copied().collect::<Vec<_>>(),
            [6, 7, 8, 9]
        );
        assert!(!op.can_retry(), "data was consumed");

        // A re-send comes from memory and counts as one.
        assert_eq!(read(&mut op, 7).await.ok().unwrap(), chunk(&data, 7));
        op.chunk_sent(7);
        assert_eq!((op.tally.chunks_sent(), op.tally.chunks_resent()), (10, 1));

        // A chunk that was only hashed (the receiver held it) is not kept.
        read(&mut op, 10).await.ok().unwrap();
        read(&mut op, 11).await.ok().unwrap();
        op.chunk_sent(11);
        let Source::Stream { retained, .. } = &op.source else {
            unreachable!()
        };
        assert_eq!(
            retained.chunks.keys().copied().collect::<Vec<_>>(),
            [8, 9, 11]
        );

        // Out of the window, or ahead of the stream: refused.
        assert!(read(&mut op, 2).await.is_err());
        assert!(read(&mut op, 14).await.is_err());
    }

    #[tokio::test]
    async fn a_file_is_read_at_the_offsets_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = bytes(3 * CHUNK as usize + 5);
        std::fs::write(&path, &data).unwrap();
        let mut progress = |_: Progress| {};
        let source = Source::<tokio::io::Empty>::open_file(&path).unwrap();
        let mut op = UploadOp::new("n", source, &mut progress);
        assert!(!op.fresh);
        op.chunk_data(3, 3 * u64::from(CHUNK), 5)
            .await
            .ok()
            .unwrap();
        assert_eq!(op.buf, chunk(&data, 3));
        op.chunk_data(1, u64::from(CHUNK), CHUNK as usize)
            .await
            .ok()
            .unwrap();
        assert_eq!(op.buf, chunk(&data, 1));
        // The file shrank under the upload: a verification failure, not garbage.
        std::fs::write(&path, &data[..20]).unwrap();
        match op.chunk_data(2, 2 * u64::from(CHUNK), CHUNK as usize).await {
            Err(Interrupt::Final(error)) => assert_eq!(error.exit_code(), 5, "{error}"),
            _ => panic!("a short read was accepted"),
        }
        assert!(op.can_retry());
        assert!(op.restart().is_ok());
        assert!(op.fresh);
        assert!(Source::<tokio::io::Empty>::open_file(dir.path()).is_err());
    }
}
