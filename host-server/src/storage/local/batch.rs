//! [`Store::put_batch`](crate::storage::Store::put_batch) on the local file system: small
//! files that arrived whole, made durable together.
//!
//! 1. Each item's name is locked (as an upload's), then under the identity's lock its name,
//!    quota and file limit are checked as a new upload's are, and its bytes and metadata are
//!    written to a temporary file in `partial/` (charged meanwhile as
//!    `IdentityState::staged`). An identical file already stored only gets its attributes.
//! 2. One `syncfs` makes all of them durable: data, metadata and attributes.
//! 3. Under the identity's lock each is renamed into place (its folders created), checked
//!    again against the tree; the counters and the index follow.
//! 4. Each directory whose entries changed is fsynced once, then the results are returned.
//!
//! An item that fails gets its own error; the others still commit.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use tempfile::TempPath;

use super::committed::{open_file_locked, write_meta};
use super::quota::{file_len, usage, IdentityState, Usage};
use super::tree::{check_conflict, create_folders, parent_dir, sync_changed};
use super::upload::record_attributes;
use super::{lock, name_key, unix_secs, IdentityDirs, LocalStore, NameLock, WEB_IDENTITY_PREFIX};
use crate::storage::error::{io_err, StorageError};
use crate::storage::{FileMeta, PutItem};

type Outcome = Result<FileMeta, StorageError>;

/// An item written to `partial/`, waiting for the batch's `syncfs` and its rename.
struct Staged {
    index: usize,
    temp: TempPath,
    meta: FileMeta,
}

/// How an item came through the first step.
enum Stage {
    /// Written to a temporary file.
    Written(Staged),
    /// An identical file is stored; `true` if its attributes changed (to be synced).
    Identical(FileMeta, bool),
}

impl LocalStore {
    pub(super) fn put_batch_local(&self, client: &str, items: Vec<PutItem>) -> Vec<Outcome> {
        let count = items.len();
        let dirs = match self
            .dirs(client)
            .and_then(|dirs| dirs.create().map(|()| dirs))
        {
            Ok(dirs) => dirs,
            Err(e) => return (0..count).map(|_| Err(e.duplicate())).collect(),
        };
        let mut results: Vec<Option<Outcome>> = (0..count).map(|_| None).collect();
        // Name locks first, outside the identity's lock (as `begin_upload` takes them).
        let mut locked = Vec::with_capacity(count);
        let mut seen = HashSet::new();
        for (index, item) in items.into_iter().enumerate() {
            match self.lock_item(client, &item, &mut seen) {
                Ok(name_lock) => locked.push((index, item, name_lock)),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let identity = self.identity_lock(client);
        let (staged, attributes_changed) =
            self.stage(client, &dirs, &identity, locked, &mut results);
        let durable = if staged.is_empty() && attributes_changed.is_empty() {
            Ok(())
        } else {
            File::open(&dirs.partial)
                .and_then(|dir| rustix::fs::syncfs(&dir).map_err(Into::into))
                .map_err(io_err(format!("syncing {}", dirs.partial.display())))
        };
        if let Err(e) = &durable {
            for index in attributes_changed {
                results[index] = Some(Err(e.duplicate()));
            }
        }
        self.publish(client, &dirs, &identity, staged, durable, &mut results);
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| Err(StorageError::Inconsistent("no result".into())))
            })
            .collect()
    }

    fn lock_item(
        &self,
        client: &str,
        item: &PutItem,
        seen: &mut HashSet<String>,
    ) -> Result<NameLock, StorageError> {
        let size = item.data.len() as u64;
        self.config.limits.check_size(size)?;
        // The same name twice in one batch: the second waits for no one.
        if !seen.insert(item.name.clone()) {
            return Err(StorageError::Busy);
        }
        self.lock_name_waiting(client, &name_key(&item.name))
            .ok_or(StorageError::Busy)
    }

    /// Step 1, under the identity's lock: checks and writes each item. Returns the staged
    /// items and the indices of identical files whose attributes changed.
    fn stage(
        &self,
        client: &str,
        dirs: &IdentityDirs,
        identity: &Mutex<IdentityState>,
        locked: Vec<(usize, PutItem, NameLock)>,
        results: &mut [Option<Outcome>],
    ) -> (Vec<(Staged, NameLock)>, Vec<usize>) {
        let mut staged = Vec::new();
        let mut attributes_changed = Vec::new();
        if locked.is_empty() {
            return (staged, attributes_changed);
        }
        let web_lock = client
            .starts_with(WEB_IDENTITY_PREFIX)
            .then(|| lock(&self.web_reservations));
        let web_used = match web_lock {
            Some(_) => self.web_usage(client).map(Some),
            None => Ok(None),
        };
        let mut state = lock(identity);
        let used = web_used.and_then(|web_used| {
            let committed = self.committed_usage(client, dirs, &mut state)?;
            Ok((web_used, usage(dirs, committed, None)?))
        });
        let (web_used, mut used) = match used {
            Ok(used) => used,
            Err(e) => {
                for (index, ..) in locked {
                    results[index] = Some(Err(e.duplicate()));
                }
                return (staged, attributes_changed);
            }
        };
        for (index, item, name_lock) in locked {
            let stage = self.stage_one(dirs, &mut state, &mut used, web_used, index, item);
            match stage {
                Ok(Stage::Written(item)) => staged.push((item, name_lock)),
                Ok(Stage::Identical(meta, changed)) => {
                    if changed {
                        attributes_changed.push(index);
                    }
                    results[index] = Some(Ok(meta));
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        (staged, attributes_changed)
    }

    fn stage_one(
        &self,
        dirs: &IdentityDirs,
        state: &mut IdentityState,
        used: &mut Usage,
        web_used: Option<u64>,
        index: usize,
        item: PutItem,
    ) -> Result<Stage, StorageError> {
        let name = item.name.as_str();
        let key = name_key(name);
        let size = item.data.len() as u64;
        check_conflict(&dirs.files, name)?;
        match open_file_locked(dirs, name, item.chunk_size) {
            Ok(stored)
                if stored.meta.size == size
                    && stored.meta.chunk_size == item.chunk_size
                    && stored.meta.digest_bytes() == item.digest =>
            {
                let (stored, changed) = record_attributes(dirs, &key, stored, item.attrs)?;
                return Ok(Stage::Identical(stored.meta, changed));
            }
            Ok(_) | Err(StorageError::NotFound) => {}
            Err(e) => return Err(e),
        }
        // The limits of a new upload, the file this one replaces not counted.
        let replaced = file_len(&dirs.files.join(name))?;
        let others = Usage {
            bytes: used.bytes.saturating_sub(replaced.unwrap_or(0)),
            files: used.files.saturating_sub(u64::from(replaced.is_some())),
        };
        if others.bytes.saturating_add(size) > self.config.limits.quota {
            return Err(StorageError::QuotaExceeded {
                used: others.bytes,
                requested: size,
                quota: self.config.limits.quota,
            });
        }
        if others.files >= self.config.limits.max_files {
            return Err(StorageError::FileLimit {
                files: others.files,
                max: self.config.limits.max_files,
            });
        }
        if let Some(web_used) = web_used {
            let web_total = web_used.saturating_add(others.bytes);
            if web_total.saturating_add(size) > self.config.limits.web_quota {
                return Err(StorageError::WebQuotaExceeded {
                    used: web_total,
                    requested: size,
                    quota: self.config.limits.web_quota,
                });
            }
        }
        let written = Usage {
            bytes: size,
            files: 1,
        };
        let staged = write_staged(dirs, &key, index, item)?;
        *used = others.plus(written);
        state.staged = state.staged.plus(written);
        Ok(Stage::Written(staged))
    }

    /// Steps 3 and 4: renames what was made durable into place and syncs the directories.
    fn publish(
        &self,
        client: &str,
        dirs: &IdentityDirs,
        identity: &Mutex<IdentityState>,
        staged: Vec<(Staged, NameLock)>,
        durable: Result<(), StorageError>,
        results: &mut [Option<Outcome>],
    ) {
        if staged.is_empty() {
            return;
        }
        let mut renamed = Vec::new();
        let mut changed: Vec<PathBuf> = Vec::new();
        let mut state = lock(identity);
        for (item, _name_lock) in staged {
            let written = Usage {
                bytes: item.meta.size,
                files: 1,
            };
            state.staged = state.staged.minus(written);
            let index = item.index;
            let outcome = match &durable {
                // Dropping the temporary file removes it.
                Err(e) => Err(e.duplicate()),
                Ok(()) => rename_into_place(dirs, &mut state, item, &mut changed),
            };
            match outcome {
                Ok(meta) => {
                    self.index.inserted(client, &meta.name);
                    renamed.push(index);
                    results[index] = Some(Ok(meta));
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let files_sync = state.files_sync.clone();
        drop(state);
        // Outside the identity's lock, so that concurrent commits share the fsync of `files/`.
        if let Err(e) = sync_changed(&files_sync, &dirs.files, changed) {
            for index in renamed {
                results[index] = Some(Err(e.duplicate()));
            }
        }
    }
}

/// Writes an item's bytes and metadata to a temporary file in `partial/` (mode 0600).
fn write_staged(
    dirs: &IdentityDirs,
    key: &str,
    index: usize,
    item: PutItem,
) -> Result<Staged, StorageError> {
    let context = || format!("writing {:?} to {}", item.name, dirs.partial.display());
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp")
        .tempfile_in(&dirs.partial)
        .map_err(io_err(context()))?;
    temp.write_all(&item.data).map_err(io_err(context()))?;
    let inode = temp.as_file().metadata().map_err(io_err(context()))?.ino();
    let meta = FileMeta {
        size: item.data.len() as u64,
        chunk_size: item.chunk_size,
        digest: item.digest.to_string(),
        modified: item
            .attrs
            .modified
            .unwrap_or_else(|| unix_secs(SystemTime::now())),
        mode: item.attrs.mode,
        inode,
        name: item.name,
    };
    write_meta(dirs, key, temp.as_file(), &meta)?;
    Ok(Staged {
        index,
        temp: temp.into_temp_path(),
        meta,
    })
}

/// Step 3 for one item, under the identity's lock.
fn rename_into_place(
    dirs: &IdentityDirs,
    state: &mut IdentityState,
    item: Staged,
    changed: &mut Vec<PathBuf>,
) -> Outcome {
    let name = item.meta.name.as_str();
    let path = dirs.files.join(name);
    check_conflict(&dirs.files, name)?;
    let replaced = file_len(&path)?;
    changed.extend(create_folders(&dirs.files, name)?);
    item.temp
        .persist(&path)
        .map_err(|e| io_err(format!("committing {}", path.display()))(e.error))?;
    changed.push(parent_dir(&dirs.files, name));
    state.count_committed(replaced, Some(item.meta.size));
    Ok(item.meta)
}
