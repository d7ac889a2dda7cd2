//! Downloads into a partial file that is renamed into place only once verified.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_core::Layout;

use crate::client::{begin_request, Conn, Ev, Interrupt, OpKind, Operation, ProgressFn};
use crate::error::ClientError;
use crate::partial::{self, PartialFile, PartialPaths};
use crate::report::{hex, Phase, Progress, TransferReport};

/// One download, over as many attempts as it takes.
pub(crate) struct DownloadOp<'p> {
    name: String,
    dest: PathBuf,
    paths: PartialPaths,
    progress: ProgressFn<'p>,
    partial: Option<PartialFile>,
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

impl<'p> DownloadOp<'p> {
    pub(crate) fn new(
        name: &str,
        dest: &Path,
        progress: ProgressFn<'p>,
    ) -> Result<Self, ClientError> {
        let paths = PartialPaths::for_destination(dest).map_err(|e| ClientError::io(dest, e))?;
        Ok(Self {
            name: name.to_string(),
            dest: dest.to_path_buf(),
            paths,
            progress,
            partial: None,
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
        })
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

    fn part_error(&self, error: std::io::Error) -> Interrupt {
        Interrupt::Final(ClientError::io(&self.paths.part, error))
    }
}

impl Operation for DownloadOp<'_> {
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
        self.partial = None;
        self.layout = None;
        self.chunk_size = conn.negotiated().map(|(c, _)| c).unwrap_or(0);
        let resume = partial::load(&self.paths, &self.name, self.chunk_size)
            .map_err(|e| ClientError::io(&self.paths.held, e))?;
        self.offered = resume.as_ref().map(|r| r.size);
        let result = match &resume {
            Some(resume) => {
                tracing::info!(
                    name = %self.name,
                    held = resume.chunks.len(),
                    "resuming from {}",
                    self.paths.part.display()
                );
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
            Ev::Started {
                layout,
                held_chunks,
            } => {
                let partial = if self.offered == Some(layout.size) && held_chunks > 0 {
                    PartialFile::reopen(&self.paths)
                } else {
                    PartialFile::create(&self.paths, &self.name, layout.size, layout.chunk_size)
                };
                self.partial = Some(partial.map_err(|e| self.part_error(e))?);
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
                let Some(partial) = self.partial.as_mut() else {
                    return Err(ClientError::Protocol("a chunk before the transfer".into()).into());
                };
                if let Err(e) = partial.store(index, offset, &digest, scratch) {
                    return Err(self.part_error(e));
                }
                conn.chunk_stored(index).map_err(|e| {
                    ClientError::Protocol(format!("chunk {index} not expected: {e:?}"))
                })?;
                self.stored += 1;
                self.stored_this_attempt += 1;
                self.done_bytes += scratch.len() as u64;
                self.report_progress();
            }
            Ev::Commit { size } => {
                let Some(partial) = self.partial.take() else {
                    return Err(ClientError::Protocol("a commit before the transfer".into()).into());
                };
                partial
                    .commit(&self.dest, size)
                    .map_err(|e| ClientError::io(&self.dest, e))?;
                self.committed = true;
                conn.commit_done()
                    .map_err(|e| ClientError::Protocol(format!("commit not expected: {e:?}")))?;
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
                    digest: hex(&digest),
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
