//! A running upload on the local file system: chunks written at their offsets in `.part`
//! and recorded in `.held`, then committed by an fsync and an atomic rename.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ferry_core::{Digest, FileAttrs, FileDigest, Layout};
use ferry_tokio::flush::Flusher;
use ferry_tokio::journal;

use super::committed::{open_file_locked, write_meta, LocalFile};
use super::index::NameIndexes;
use super::partial::remove_partial;
use super::quota::{file_len, IdentityState};
use super::tree::{check_conflict, create_folders, is_absent, parent_dir, sync_changed};
use super::{lock, unix_secs, IdentityDirs, NameLock};
use crate::storage::error::{io_err, StorageError};
use crate::storage::{check_chunk, FileMeta, Precondition, StoredFile, Upload};

#[derive(Debug)]
pub(super) enum UploadState {
    /// Data goes to `.part`, records to `.held`.
    /// (`held` is `None` for a one-chunk upload, which keeps no records on disk.)
    Partial { part: File, held: Option<File> },
    /// An identical committed file: every chunk is held already.
    AlreadyStored,
    /// Committed.
    Done,
}

/// A running upload: holds the name's lock until dropped.
#[derive(Debug)]
pub(super) struct LocalUpload {
    /// The identity's state: its lock serialises commits with quota checks and deletes.
    pub(super) identity: Arc<Mutex<IdentityState>>,
    /// The store's name indexes, told of the commit.
    pub(super) index: Arc<NameIndexes>,
    pub(super) dirs: IdentityDirs,
    pub(super) client: String,
    pub(super) name: String,
    pub(super) key: String,
    pub(super) layout: Layout,
    pub(super) state: UploadState,
    pub(super) chunks: BTreeMap<u64, Digest>,
    /// Writes `.part` to disk while the upload runs.
    pub(super) flusher: Option<Flusher>,
    /// What the client said about the file, recorded by the commit.
    pub(super) attrs: FileAttrs,
    pub(super) _lock: NameLock,
}

impl Upload for LocalUpload {
    /// The file name.
    fn name(&self) -> &str {
        &self.name
    }

    /// Size and chunk size.
    fn layout(&self) -> Layout {
        self.layout
    }

    /// Chunks held (verified against the stored data), ascending: pass them to
    /// `Connection::accept_upload`.
    fn held_chunks(&self) -> Box<dyn Iterator<Item = (u64, Digest)> + '_> {
        Box::new(self.chunks.iter().map(|(index, digest)| (*index, *digest)))
    }

    /// Whether an identical committed file makes the upload complete without data.
    fn is_already_stored(&self) -> bool {
        matches!(self.state, UploadState::AlreadyStored)
    }

    /// Writes a verified chunk at its offset and records it as held.
    fn store(
        &mut self,
        index: u64,
        offset: u64,
        digest: &Digest,
        data: &[u8],
    ) -> Result<(), StorageError> {
        check_chunk(self.layout, index, offset, data.len())?;
        let UploadState::Partial { part, held } = &mut self.state else {
            return Err(StorageError::Inconsistent(format!(
                "chunk {index} of {:?} arrived for an upload that takes no data",
                self.name
            )));
        };
        part.write_all_at(data, offset).map_err(io_err(format!(
            "writing {:?} of {}",
            self.name, self.client
        )))?;
        if let Some(flusher) = self.flusher.as_mut() {
            flusher.wrote(data.len() as u64);
        }
        // The record follows the data: a record never claims data that was not written.
        // A chunk held already (sent again) needs no second record: the journal stays
        // within its reservation of one record per chunk.
        let recorded = self.chunks.get(&index) == Some(digest);
        if let (Some(held), false) = (held, recorded) {
            held.write_all(&journal::record(index, digest))
                .map_err(io_err(format!(
                    "recording {:?} of {}",
                    self.name, self.client
                )))?;
        }
        self.chunks.insert(index, *digest);
        Ok(())
    }

    /// Whether [`Upload::commit`] succeeded.
    fn is_committed(&self) -> bool {
        matches!(self.state, UploadState::Done)
    }

    /// Flushes the partial data and records to disk, so that the upload resumes after a
    /// crash or power loss.
    fn set_attributes(&mut self, attrs: FileAttrs) {
        self.attrs = attrs;
    }

    fn checkpoint(&self) -> Result<(), StorageError> {
        if let UploadState::Partial { part, held } = &self.state {
            let context = || format!("syncing the partial upload {:?}", self.name);
            part.sync_data().map_err(io_err(context()))?;
            if let Some(held) = held {
                held.sync_data().map_err(io_err(context()))?;
            }
        }
        Ok(())
    }

    /// Makes the verified file durable and visible as `files/<name>`: fsync, metadata, atomic
    /// rename. `digest` is the whole-file digest the core verified.
    fn commit(
        &mut self,
        digest: &Digest,
        condition: Precondition,
    ) -> Result<FileMeta, StorageError> {
        let chunks = self.layout.chunks();
        let complete =
            self.chunks.len() as u64 == chunks && self.chunks.keys().copied().eq(0..chunks);
        let mut file_digest = FileDigest::new(self.layout.chunk_size, self.layout.size);
        for chunk in self.chunks.values() {
            file_digest.push(chunk);
        }
        if !complete || file_digest.finish() != *digest {
            return Err(StorageError::Inconsistent(format!(
                "the recorded chunks of {:?} do not make up the verified file",
                self.name
            )));
        }
        let path = self.dirs.files.join(&self.name);
        if let Some(flusher) = self.flusher.as_mut() {
            flusher
                .finish()
                .map_err(io_err(format!("committing {}", path.display())))?;
        }
        let part = match std::mem::replace(&mut self.state, UploadState::Done) {
            UploadState::Partial { part, held: _ } => part,
            UploadState::AlreadyStored => {
                // The committed file is this file already: only its attributes may be new.
                let guard = lock(&self.identity);
                let chunk_size = self.layout.chunk_size;
                let result = check(condition, &self.dirs, &self.name, chunk_size)
                    .and_then(|()| open_file_locked(&self.dirs, &self.name, chunk_size))
                    .and_then(|stored| {
                        let (stored, changed) =
                            record_attributes(&self.dirs, &self.key, stored, self.attrs)?;
                        if changed {
                            // An attribute is made durable with the file's own fsync.
                            let context = format!("recording the attributes of {:?}", self.name);
                            stored.file.sync_all().map_err(io_err(context))?;
                        }
                        Ok(stored)
                    });
                drop(guard);
                if result.is_err() {
                    self.state = UploadState::AlreadyStored;
                }
                return result.map(|stored| stored.meta);
            }
            UploadState::Done => {
                return Err(StorageError::Inconsistent("committed twice".into()));
            }
        };
        let result = self.commit_partial(&part, &path, digest, condition);
        if result.is_err() {
            // Keep the partial for a retry.
            let held = OpenOptions::new()
                .append(true)
                .open(self.dirs.held_path(&self.key))
                .ok();
            self.state = UploadState::Partial { part, held };
        }
        result
    }

    fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        if let UploadState::Partial { .. } = std::mem::replace(&mut self.state, UploadState::Done) {
            let (part, held) = (
                self.dirs.part_path(&self.key),
                self.dirs.held_path(&self.key),
            );
            remove_partial(&part, &held)?;
        }
        Ok(())
    }
}

impl LocalUpload {
    fn commit_partial(
        &self,
        part: &File,
        path: &Path,
        digest: &Digest,
        condition: Precondition,
    ) -> Result<FileMeta, StorageError> {
        let part_path = self.dirs.part_path(&self.key);
        let context = || format!("committing {}", path.display());
        let md = part.metadata().map_err(io_err(context()))?;
        let meta = FileMeta {
            name: self.name.clone(),
            size: self.layout.size,
            chunk_size: self.layout.chunk_size,
            digest: digest.to_string(),
            modified: self
                .attrs
                .modified
                .unwrap_or_else(|| unix_secs(SystemTime::now())),
            mode: self.attrs.mode,
            inode: md.ino(),
        };
        // Before the fsync, which makes an attribute durable with the data. It names the new
        // inode, so until the rename the old file stays readable under its own metadata.
        write_meta(&self.dirs, &self.key, part, &meta)?;
        part.sync_all().map_err(io_err(context()))?;
        let (files_sync, new_folders) = {
            let mut state = lock(&self.identity);
            check_conflict(&self.dirs.files, &self.name)?;
            check(condition, &self.dirs, &self.name, self.layout.chunk_size)?;
            let replaced = file_len(path)?;
            let new_folders = create_folders(&self.dirs.files, &self.name)?;
            fs::rename(&part_path, path).map_err(io_err(context()))?;
            state.count_committed(replaced, Some(meta.size));
            self.index.inserted(&self.client, &self.name);
            (state.files_sync.clone(), new_folders)
        };
        // Outside the identity's lock, so that concurrent commits share the fsync of `files/`.
        let mut changed = new_folders;
        changed.push(parent_dir(&self.dirs.files, &self.name));
        sync_changed(&files_sync, &self.dirs.files, changed)?;
        let held_path = self.dirs.held_path(&self.key);
        match fs::remove_file(&held_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", held_path.display()))(e)),
        }
        // Not synced: a `.held` that outlives a crash has no `.part` and is removed as such.
        Ok(meta)
    }
}

/// Records the attributes a client gave for a file already stored with identical content
/// (a sync that only touched the modification time sends no data, but updates the time).
/// Returns whether they changed: if so, the caller makes them durable (an fsync of the file,
/// or a batch's `syncfs`). The caller holds the identity's lock.
pub(super) fn record_attributes(
    dirs: &IdentityDirs,
    key: &str,
    mut stored: LocalFile,
    attrs: FileAttrs,
) -> Result<(LocalFile, bool), StorageError> {
    let modified = attrs.modified.unwrap_or(stored.meta.modified);
    let mode = attrs.mode.or(stored.meta.mode);
    if (modified, mode) == (stored.meta.modified, stored.meta.mode) {
        return Ok((stored, false));
    }
    stored.meta.modified = modified;
    stored.meta.mode = mode;
    write_meta(dirs, key, &stored.file, &stored.meta)?;
    Ok((stored, true))
}

/// Fails with [`StorageError::PreconditionFailed`] unless `condition` holds for what `name`
/// holds now. The caller holds the identity's lock, which every commit and delete takes.
fn check(
    condition: Precondition,
    dirs: &IdentityDirs,
    name: &str,
    chunk_size: u32,
) -> Result<(), StorageError> {
    let holds = match condition {
        Precondition::None => true,
        Precondition::Absent => {
            let path = dirs.files.join(name);
            match fs::symlink_metadata(&path) {
                Ok(_) => false,
                Err(e) if is_absent(&e) => true,
                Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
            }
        }
        Precondition::Digest(expected) => match open_file_locked(dirs, name, chunk_size) {
            Ok(current) => current.meta().digest_bytes() == expected,
            Err(StorageError::NotFound) => false,
            Err(e) => return Err(e),
        },
    };
    if holds {
        Ok(())
    } else {
        Err(StorageError::PreconditionFailed)
    }
}
