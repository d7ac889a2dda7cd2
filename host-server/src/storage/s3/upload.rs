//! A running upload to S3. Chunks are written (`pwrite`) into a spool file per part in the
//! spool directory. When a part of a multipart upload is complete, [`Upload::wants_checkpoint`]
//! says so and [`Upload::checkpoint`] sends it (`put_part`) and records it with its chunk
//! digests in `ferry_parts`: only then is the chunk that completed it acknowledged, so a cut
//! sends at most one part again, on any instance. A file of one part goes up in one PUT at
//! the commit. The commit completes the object, then publishes it in one transaction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_core::{Digest, FileAttrs, FileDigest, Layout};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::locks::NameLock;
use super::meta::{self, PartRow, Publish};
use super::plan::PartPlan;
use super::{lock, unix_secs, Shared};
use crate::storage::error::{io_err, remote_err, StorageError};
use crate::storage::{check_chunk, FileMeta, Precondition, Upload};

/// How long a replaced or deleted file's object stays, so that running downloads finish.
pub(super) const REPLACED_GRACE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub(super) enum UploadState {
    /// Chunks go to the spool and up in parts.
    Partial,
    /// An identical committed file: every chunk is held already.
    AlreadyStored,
    /// Committed.
    Done,
}

/// The parts of a multipart upload: sent ones, and the spool files of the others.
#[derive(Debug, Default)]
pub(super) struct Parts {
    /// Parts S3 acknowledged and the database recorded.
    pub(super) sent: BTreeMap<u64, String>,
    /// Spool files of parts being filled, and how many of their chunks are in.
    pub(super) spooled: HashMap<u64, (File, u64)>,
    /// Complete parts on their way to S3, oldest first.
    pub(super) sending: VecDeque<(u64, tokio::task::JoinHandle<Result<String, StorageError>>)>,
}

#[derive(Debug)]
pub(super) struct S3Upload {
    pub(super) shared: Arc<Shared>,
    pub(super) client: String,
    pub(super) name: String,
    pub(super) plan: PartPlan,
    pub(super) object_key: String,
    pub(super) upload_id: Option<String>,
    pub(super) state: UploadState,
    /// Every chunk held: in recorded parts, or spooled in this session.
    pub(super) chunks: BTreeMap<u64, Digest>,
    pub(super) parts: Mutex<Parts>,
    /// The whole object is in S3 (a failed commit transaction is retried without it).
    pub(super) uploaded: bool,
    pub(super) attrs: FileAttrs,
    pub(super) _lock: NameLock,
}

impl S3Upload {
    fn path(&self) -> Path {
        Path::from(self.object_key.as_str())
    }

    fn spool_path(&self, part: u64) -> PathBuf {
        spool_path(&self.shared.config.spool, &self.object_key, part)
    }

    /// Starts sending every complete part not sent yet (multipart uploads only), each on
    /// the blocking pool, then waits until at most `keep_sending` parts are still on their
    /// way (their spool files are theirs now; each records itself when S3 has it).
    fn send_ready_parts(&self, keep_sending: usize) -> Result<(), StorageError> {
        let Some(upload_id) = self.upload_id.as_ref() else {
            return Ok(());
        };
        let mut parts = lock(&self.parts);
        let mut ready: Vec<u64> = parts
            .spooled
            .iter()
            .filter(|(part, (_, count))| *count == self.plan.chunks_of(**part).count() as u64)
            .map(|(part, _)| *part)
            .collect();
        ready.sort_unstable();
        for part in ready {
            let Some((file, _)) = parts.spooled.remove(&part) else {
                continue;
            };
            let job = PartJob {
                shared: self.shared.clone(),
                path: self.path(),
                upload_id: upload_id.clone(),
                client: self.client.clone(),
                name: self.name.clone(),
                object_key: self.object_key.clone(),
                spool: self.spool_path(part),
                len: self.plan.len_of(part),
                row: PartRow {
                    number: part,
                    content_id: String::new(),
                    chunk_digests: self
                        .plan
                        .chunks_of(part)
                        .filter_map(|chunk| self.chunks.get(&chunk).copied())
                        .collect(),
                },
            };
            let task = self.shared.runtime.spawn_blocking(move || job.run(&file));
            parts.sending.push_back((part, task));
        }
        while parts.sending.len() > keep_sending {
            let Some((part, task)) = parts.sending.pop_front() else {
                break;
            };
            let content_id =
                self.shared.runtime.block_on(task).map_err(|e| {
                    StorageError::Inconsistent(format!("sending part {part}: {e}"))
                })??;
            parts.sent.insert(part, content_id);
        }
        Ok(())
    }

    /// Puts the whole object: completes the multipart upload, or PUTs a one-part file.
    fn upload_object(&mut self) -> Result<(), StorageError> {
        let path = self.path();
        let runtime = self.shared.runtime.clone();
        if let Some(upload_id) = self.upload_id.clone() {
            self.send_ready_parts(0)?;
            let sent = lock(&self.parts).sent.clone();
            if sent.len() as u64 != self.plan.parts() {
                return Err(StorageError::Inconsistent(format!(
                    "{} of {} parts of {:?} were sent",
                    sent.len(),
                    self.plan.parts(),
                    self.name
                )));
            }
            let ids = sent
                .into_values()
                .map(|content_id| PartId { content_id })
                .collect();
            let completed =
                runtime.block_on(self.shared.s3.complete_multipart(&path, &upload_id, ids));
            if let Err(e) = completed {
                // A commit whose transaction failed after completing it: the object is there,
                // of this upload's parts (object keys are never reused).
                let head = runtime.block_on(self.shared.s3.head(&path));
                if !head.is_ok_and(|object| object.size == self.plan.layout.size) {
                    return Err(remote_err(format!("completing {path}"))(e));
                }
            }
        } else {
            let _permit = self.shared.send_permit(self.plan.layout.size)?;
            let data = {
                let parts = lock(&self.parts);
                match parts.spooled.get(&0) {
                    Some((file, _)) => read_spool(file, self.plan.len_of(0), &self.spool_path(0))?,
                    None => Vec::new(),
                }
            };
            runtime
                .block_on(self.shared.s3.put(&path, PutPayload::from(data)))
                .map_err(remote_err(format!("storing {path}")))?;
        }
        self.uploaded = true;
        Ok(())
    }

    fn remove_spool(&self) {
        let mut parts = lock(&self.parts);
        for (part, _) in parts.spooled.drain() {
            let _ = fs::remove_file(self.spool_path(part));
        }
    }
}

/// One complete part to send and record, owned by the task that does it.
struct PartJob {
    shared: Arc<Shared>,
    path: Path,
    upload_id: String,
    client: String,
    name: String,
    object_key: String,
    spool: PathBuf,
    len: u64,
    /// Its row, but for the content id S3 gives.
    row: PartRow,
}

impl PartJob {
    /// Reads the part from its spool file (within the instance's send budget), sends it,
    /// records it; its content id.
    fn run(mut self, file: &File) -> Result<String, StorageError> {
        let content_id = {
            let _permit = self.shared.send_permit(self.len)?;
            let data = read_spool(file, self.len, &self.spool)?;
            let index = usize::try_from(self.row.number).unwrap_or(usize::MAX);
            self.shared
                .runtime
                .block_on(self.shared.s3.put_part(
                    &self.path,
                    &self.upload_id,
                    index,
                    PutPayload::from(data),
                ))
                .map_err(remote_err(format!(
                    "sending part {} of {}",
                    self.row.number, self.path
                )))?
                .content_id
        };
        self.row.content_id = content_id.clone();
        let job = &self;
        self.shared.block_on_db(|mut db| async move {
            meta::record_part(
                &mut db,
                &job.client,
                &job.name,
                &job.object_key,
                &job.row,
                SystemTime::now(),
            )
            .await
        })?;
        let _ = fs::remove_file(&self.spool);
        Ok(content_id)
    }
}

/// The spool file of one part of an object.
pub(super) fn spool_path(spool: &std::path::Path, object_key: &str, part: u64) -> PathBuf {
    let id = object_key.rsplit('/').next().unwrap_or(object_key);
    spool.join(format!("{id}.{part}"))
}

fn read_spool(file: &File, len: u64, path: &std::path::Path) -> Result<Vec<u8>, StorageError> {
    let len = usize::try_from(len)
        .map_err(|_| StorageError::Inconsistent(format!("a part of {len} bytes")))?;
    let mut data = vec![0u8; len];
    file.read_exact_at(&mut data, 0)
        .map_err(io_err(format!("reading {}", path.display())))?;
    Ok(data)
}

impl Drop for S3Upload {
    /// Chunks of parts not sent are not held: their spool files go.
    fn drop(&mut self) {
        self.remove_spool();
    }
}

impl Upload for S3Upload {
    fn name(&self) -> &str {
        &self.name
    }

    fn layout(&self) -> Layout {
        self.plan.layout
    }

    fn held_chunks(&self) -> Box<dyn Iterator<Item = (u64, Digest)> + '_> {
        Box::new(self.chunks.iter().map(|(index, digest)| (*index, *digest)))
    }

    fn is_already_stored(&self) -> bool {
        matches!(self.state, UploadState::AlreadyStored)
    }

    fn store(
        &mut self,
        index: u64,
        offset: u64,
        digest: &Digest,
        data: &[u8],
    ) -> Result<(), StorageError> {
        check_chunk(self.plan.layout, index, offset, data.len())?;
        if !matches!(self.state, UploadState::Partial) || self.uploaded {
            return Err(StorageError::Inconsistent(format!(
                "chunk {index} of {:?} arrived for an upload that takes no data",
                self.name
            )));
        }
        let part = self.plan.part_of(index);
        let spool = self.spool_path(part);
        let parts = self.parts.get_mut().unwrap_or_else(|e| e.into_inner());
        if parts.sent.contains_key(&part) {
            // In a part S3 holds: only the same chunk again can be taken.
            return if self.chunks.get(&index) == Some(digest) {
                Ok(())
            } else {
                Err(StorageError::Inconsistent(format!(
                    "chunk {index} of {:?} differs from the part already stored",
                    self.name
                )))
            };
        }
        let (file, count) = match parts.spooled.entry(part) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&spool)
                    .map_err(io_err(format!("creating {}", spool.display())))?;
                entry.insert((file, 0))
            }
        };
        let at = offset - self.plan.offset_of(part);
        file.write_all_at(data, at)
            .map_err(io_err(format!("writing {}", spool.display())))?;
        if self.chunks.insert(index, *digest).is_none() {
            *count += 1;
        }
        Ok(())
    }

    fn set_attributes(&mut self, attrs: FileAttrs) {
        self.attrs = attrs;
    }

    /// Sends the complete parts, leaving at most `parts_in_flight - 1` on their way (they
    /// record themselves); chunks of an incomplete part stay unrecorded (S3 parts are at
    /// least 5 MiB but the last): they are sent again on resume.
    fn checkpoint(&self) -> Result<(), StorageError> {
        if matches!(self.state, UploadState::Partial) && !self.uploaded {
            self.send_ready_parts(self.shared.config.parts_in_flight.saturating_sub(1))?;
        }
        Ok(())
    }

    fn wants_checkpoint(&self) -> bool {
        self.upload_id.is_some()
            && lock(&self.parts)
                .spooled
                .iter()
                .any(|(part, (_, count))| *count == self.plan.chunks_of(*part).count() as u64)
    }

    fn commit(
        &mut self,
        digest: &Digest,
        condition: Precondition,
    ) -> Result<FileMeta, StorageError> {
        let layout = self.plan.layout;
        let chunks = layout.chunks();
        let complete =
            self.chunks.len() as u64 == chunks && self.chunks.keys().copied().eq(0..chunks);
        let mut file_digest = FileDigest::new(layout.chunk_size, layout.size);
        for chunk in self.chunks.values() {
            file_digest.push(chunk);
        }
        if !complete || file_digest.finish() != *digest {
            return Err(StorageError::Inconsistent(format!(
                "the recorded chunks of {:?} do not make up the verified file",
                self.name
            )));
        }
        match self.state {
            UploadState::Done => return Err(StorageError::Inconsistent("committed twice".into())),
            UploadState::AlreadyStored => {
                let (client, name, attrs) = (&self.client, &self.name, self.attrs);
                let meta = self.shared.block_on_db(|mut db| async move {
                    meta::touch_file(&mut db, client, name, attrs.modified, attrs.mode, condition)
                        .await
                })?;
                self.state = UploadState::Done;
                return Ok(meta);
            }
            UploadState::Partial => {}
        }
        if !self.uploaded {
            self.upload_object()?;
        }
        let meta = FileMeta {
            name: self.name.clone(),
            size: layout.size,
            chunk_size: layout.chunk_size,
            digest: digest.to_string(),
            modified: self
                .attrs
                .modified
                .unwrap_or_else(|| unix_secs(SystemTime::now())),
            mode: self.attrs.mode,
            inode: 0,
        };
        let publish = Publish {
            client: &self.client,
            meta: &meta,
            digest,
            chunk_digests: meta::digests_bytes(self.chunks.values()),
            object_key: &self.object_key,
            condition,
            old_delete_after: SystemTime::now() + REPLACED_GRACE,
        };
        self.shared
            .block_on_db(|mut db| async move { meta::publish(&mut db, publish).await })?;
        self.state = UploadState::Done;
        self.remove_spool();
        Ok(FileMeta {
            inode: meta::version_number(&self.object_key),
            ..meta
        })
    }

    fn is_committed(&self) -> bool {
        matches!(self.state, UploadState::Done)
    }

    fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        if !matches!(self.state, UploadState::Partial) {
            return Ok(());
        }
        self.state = UploadState::Done;
        self.remove_spool();
        let (client, name, key) = (&self.client, &self.name, self.object_key.as_str());
        self.shared.block_on_db(|mut db| async move {
            meta::drop_partial(&mut db, client, name, Some(key), SystemTime::now()).await
        })?;
        Ok(())
    }
}

/// Spool files older than `before` (left by a crash) are removed.
pub(super) fn remove_stale_spool(spool: &std::path::Path, before: SystemTime) -> io::Result<()> {
    for entry in fs::read_dir(spool)?.flatten() {
        let stale = entry
            .metadata()
            .and_then(|md| md.modified())
            .is_ok_and(|at| at < before);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}
