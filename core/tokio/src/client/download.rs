//! Downloads: the protocol side of receiving a file, and where its verified chunks go (a
//! [`Sink`]): a partial file renamed into place only once verified ([`FileSink`]), or a
//! comparison with a local file (the round trip's `crate::compare::CompareSink`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_core::{Digest, Layout};

use crate::client::error::ClientError;
use crate::client::op::{begin_request, Conn, Ev, Interrupt, OpKind, Operation, ProgressFn};
use crate::client::partial::{self, PartialFile, PartialPaths, Resume};
use crate::client::report::{Phase, Progress, TransferReport};

/// Where a download's verified chunks go. Errors end the download for good.
pub(crate) trait Sink {
    /// Chunks held from an earlier attempt, to offer the server (each re-verified).
    fn resume(&mut self, name: &str, chunk_size: u32) -> Result<Option<Resume>, ClientError>;
    /// The transfer of `layout` starts; `resumed` if the server accepted the offered chunks.
    fn start(&mut self, name: &str, layout: Layout, resumed: bool) -> Result<(), ClientError>;
    /// A verified chunk.
    fn store(
        &mut self,
        index: u64,
        offset: u64,
        digest: &Digest,
        data: &[u8],
    ) -> Result<(), ClientError>;
    /// Every chunk arrived and the whole-file digest matched.
    fn commit(&mut self, size: u64) -> Result<(), ClientError>;
    /// Forgets what an earlier attempt held (the file changed on the server).
    fn restart(&mut self) -> Result<(), ClientError>;
    /// The download failed for good.
    fn failed(&mut self, _error: &ClientError) {}
}

/// Into `DIR/.NAME.ferry-part`, renamed onto the destination once verified; an interrupted
/// download leaves the partial file for the next one.
pub(crate) struct FileSink {
    dest: PathBuf,
    paths: PartialPaths,
    partial: Option<PartialFile>,
}

impl FileSink {
    pub(crate) fn new(dest: &Path) -> Result<Self, ClientError> {
        let paths = PartialPaths::for_destination(dest).map_err(|e| ClientError::io(dest, e))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            paths,
            partial: None,
        })
    }

    fn part_error(&self, error: std::io::Error) -> ClientError {
        ClientError::io(&self.paths.part, error)
    }
}

impl Sink for FileSink {
    fn resume(&mut self, name: &str, chunk_size: u32) -> Result<Option<Resume>, ClientError> {
        self.partial = None;
        let resume = partial::load(&self.paths, name, chunk_size)
            .map_err(|e| ClientError::io(&self.paths.held, e))?;
        if let Some(resume) = &resume {
            tracing::info!(
                name,
                held = resume.chunks.len(),
                "resuming from {}",
                self.paths.part.display()
            );
        }
        Ok(resume)
    }

    fn start(&mut self, name: &str, layout: Layout, resumed: bool) -> Result<(), ClientError> {
        let partial = if resumed {
            PartialFile::reopen(&self.paths)
        } else {
            PartialFile::create(&self.paths, name, layout.size, layout.chunk_size)
        };
        self.partial = Some(partial.map_err(|e| self.part_error(e))?);
        Ok(())
    }

    fn store(
        &mut self,
        index: u64,
        offset: u64,
        digest: &Digest,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(ClientError::Protocol("a chunk before the transfer".into()));
        };
        partial
            .store(index, offset, digest, data)
            .map_err(|e| ClientError::io(&self.paths.part, e))
    }

    fn commit(&mut self, size: u64) -> Result<(), ClientError> {
        let Some(partial) = self.partial.take() else {
            return Err(ClientError::Protocol("a commit before the transfer".into()));
        };
        partial
            .commit(&self.dest, size)
            .map_err(|e| ClientError::io(&self.dest, e))
    }

    fn restart(&mut self) -> Result<(), ClientError> {
        self.partial = None;
        self.paths
            .remove()
            .map_err(|e| ClientError::io(&self.paths.part, e))
    }

    fn failed(&mut self, error: &ClientError) {
        // Never keep data that failed verification; other failures keep the partial copy
        // for the next attempt.
        if matches!(error, ClientError::Verification { .. }) {
            self.partial = None;
            if let Err(e) = self.paths.remove() {
                tracing::warn!("cannot remove {}: {e}", self.paths.part.display());
            }
        }
    }
}

/// One download, over as many attempts as it takes.
pub(crate) struct DownloadOp<'p, S> {
    name: String,
    sink: S,
    progress: ProgressFn<'p>,
    /// The size of the partial copy offered to the server in this attempt.
    offered: Option<u64>,
    chunk_size: u32,
    layout: Option<Layout>,
    held_at_start: u64,
    stored: u64,
    stored_this_attempt: u64,
    done_bytes: u64,
    committed: bool,
    attempts: u32,
    started: Instant,
}

impl<'p, S: Sink> DownloadOp<'p, S> {
    pub(crate) fn new(name: &str, sink: S, progress: ProgressFn<'p>) -> Self {
        Self {
            name: name.to_string(),
            sink,
            progress,
            offered: None,
            chunk_size: 0,
            layout: None,
            held_at_start: 0,
            stored: 0,
            stored_this_attempt: 0,
            done_bytes: 0,
            committed: false,
            attempts: 0,
            started: Instant::now(),
        }
    }

    /// The sink, once the download is over.
    pub(crate) fn into_sink(self) -> S {
        self.sink
    }

    fn report_progress(&mut self) {
        let total = self.layout.map(|l| l.size).unwrap_or(0);
        (self.progress)(Progress {
            name: self.name.clone(),
            done_bytes: self.done_bytes.min(total),
            total_bytes: total,
            phase: Phase::Download,
        });
    }
}

impl<S: Sink> Operation for DownloadOp<'_, S> {
    type Output = TransferReport;

    fn kind(&self) -> OpKind {
        OpKind::Download
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        self.attempts += 1;
        self.stored_this_attempt = 0;
        self.layout = None;
        self.chunk_size = conn.negotiated().map(|(c, _)| c).unwrap_or(0);
        let resume = self.sink.resume(&self.name, self.chunk_size)?;
        self.offered = resume.as_ref().map(|r| r.size);
        let result = match &resume {
            Some(resume) => {
                let mut chunks = resume.chunks.iter().copied();
                conn.download(&self.name, Some((resume.size, &mut chunks)))
            }
            None => conn.download(&self.name, None),
        };
        begin_request(result, &self.name)
    }

    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        scratch: &[u8],
        _now: u64,
    ) -> Result<Option<TransferReport>, Interrupt> {
        match event {
            Ev::TransferStarted {
                layout,
                held_chunks,
            } => {
                let resumed = self.offered == Some(layout.size) && held_chunks > 0;
                self.sink.start(&self.name, layout, resumed)?;
                self.layout = Some(layout);
                self.held_at_start = held_chunks;
                self.done_bytes = held_chunks.saturating_mul(u64::from(layout.chunk_size));
                self.report_progress();
            }
            Ev::StoreChunk {
                index,
                offset,
                digest,
            } => {
                self.sink.store(index, offset, &digest, scratch)?;
                conn.chunk_stored(index).map_err(|e| {
                    ClientError::Protocol(format!("chunk {index} not expected: {e}"))
                })?;
                self.stored += 1;
                self.stored_this_attempt += 1;
                self.done_bytes += scratch.len() as u64;
                self.report_progress();
            }
            Ev::Commit { size, .. } => {
                self.sink.commit(size)?;
                self.committed = true;
                conn.commit_done()
                    .map_err(|e| ClientError::Protocol(format!("commit not expected: {e}")))?;
            }
            Ev::Verified { size, digest } => {
                let layout = match (self.layout, self.committed) {
                    (Some(layout), true) => layout,
                    _ => {
                        return Err(
                            ClientError::Protocol("verified before the commit".into()).into()
                        )
                    }
                };
                return Ok(Some(TransferReport {
                    name: self.name.clone(),
                    size,
                    digest: digest.to_string(),
                    chunk_size: layout.chunk_size,
                    chunks: layout.chunks(),
                    held_at_start: self.held_at_start,
                    chunks_sent: self.stored,
                    last_attempt_sent: self.stored_this_attempt,
                    chunks_resent: 0,
                    attempts: self.attempts,
                    duration: self.started.elapsed(),
                }));
            }
            _ => {}
        }
        Ok(None)
    }

    fn progress_marker(&self) -> u64 {
        self.stored
    }

    fn restart(&mut self) -> Result<(), ClientError> {
        self.sink.restart()
    }

    fn failed(&mut self, error: &ClientError) {
        self.sink.failed(error);
    }
}
