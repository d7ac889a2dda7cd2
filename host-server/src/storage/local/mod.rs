//! The file system store: each identity's committed files, their metadata and partial
//! uploads, with quotas, resumable uploads and atomic commits.
//!
//! ```text
//! STORAGE/<client>/files/<name>           committed files, plain bytes (`a/b/c` in folders `a/b/`)
//! STORAGE/<client>/meta/<key>.json        FileMeta of files/<name> where xattrs are missing
//! STORAGE/<client>/partial/<key>.part     upload data, written at chunk offsets (sparse, declared size)
//! STORAGE/<client>/partial/<key>.held     header, then one record per stored chunk
//! ```
//!
//! `<client>` is the client identity: the client name the CA issued (the certificate's
//! common name), so a renewed certificate, with a new key or not, finds the same files.
//! Directories of the earlier layout, keyed by the hex SHA-256 of a client's public key, are
//! moved under the name on start (see [`LocalStore::migrate_key_dirs`]);
//! `<name>` the validated, NFC-normalised file name; `<key>` the hex SHA-256 of the name, so
//! that a 255-byte name still fits a file name with a suffix.
//!
//! **Uploads.** [`Store::begin_upload`] checks the size limit, locks the name (one upload
//! per identity and name), resumes a partial of the same size and chunk size, or offers the
//! chunks of an identical committed file, or checks the quota and creates a new partial.
//! Every chunk is written at its offset in `.part` (`pwrite`), then its record is appended
//! to `.held` (the `ferry_tokio::journal` format, with an empty name). On resume every
//! record is checked against the data in `.part` (read back and hashed), so a torn write or
//! a lost page never counts as held. [`Upload::commit`] records the metadata on `.part`,
//! fsyncs it (most of the data was written back while the upload ran, see
//! `ferry_tokio::flush`), renames it over `files/<name>` (the old version stays readable
//! until then), fsyncs `files/` (one fsync shared by concurrent commits) and removes
//! `.held`. A conditional commit checks its [`Precondition`](crate::storage::Precondition)
//! under the identity's lock, which every commit and delete takes.
//!
//! **Metadata.** [`FileMeta`] records the size, the chunk size and whole-file digest the
//! file was verified with, the commit time and the inode of the data file. It is kept in the
//! data file's extended attribute `user.ferry.meta`, or, on a file system without user
//! attributes, in `meta/<key>.json`. Metadata that is missing or does not match the file (a
//! file replaced by hand, a crash) is recomputed from the data.
//!
//! **Quota.** An identity's usage is the size of its committed files plus, for each partial
//! upload, its declared size (a `.part` is created at its full size) and the most its
//! `.held` can grow to (a 40-byte record per chunk: with small chunks that is more than the
//! data). A new upload is refused when usage (not counting the file it replaces or its own
//! earlier partial) plus its reservation exceeds the quota; partials reserve up front, so
//! concurrent or abandoned uploads cannot overrun it, and data beyond the declared size is
//! refused while it arrives. Files count too: committed files plus partial uploads are at
//! most `max_files`. Identities named `web-*` (the web page's) share `web_quota` on top of
//! their own. The committed bytes and files are counted once per identity and then kept
//! current by commits and deletes, so a quota check costs a look at `partial/`, not a stat
//! of every file.
//!
//! **Full disk.** An I/O error for a full file system (ENOSPC, EDQUOT) is
//! [`StorageError::DiskFull`]; the session then aborts the upload, which frees its partial.
//!
//! **Folders.** A name of several components (`a/b/c`) is stored in real directories,
//! created by its commit (each new one fsynced in its parent) and removed by the delete that
//! leaves them empty. A name whose folder is a file, or that is a folder itself, is refused
//! ([`StorageError::NameConflict`]).
//!
//! **Listing** reads a page of a sorted name index (see `index`), not the directory. One
//! walk of `files/` counts an identity's usage and builds its index together.
//!
//! Modules: `committed` (committed files and their metadata), `partial` (`.part` and
//! `.held`), `upload` (store, checkpoint, commit), `quota` (usage), `index` (sorted names
//! for listing), `tree` (folders and the walk of `files/`), `batch` (`put_batch`: small
//! files made durable by one `syncfs`), `dir_sync` (shared directory fsyncs).

mod batch;
mod committed;
mod dir_sync;
mod index;
mod migrate;
mod partial;
mod quota;
mod tree;
mod upload;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::{chunk_digest, FileAttrs, Layout};
use ferry_tokio::flush::Flusher;

pub use self::migrate::Migration;

use self::committed::{committed_chunks, open_file};
use self::index::{page_of, tree_page_of, NameIndexes, TreeName};
use self::partial::{create_partial, load_partial, remove_partial};
use self::quota::{journal_reservation, usage, IdentityState, Usage};
use self::tree::{check_conflict, is_absent, remove_empty_folders};
use self::upload::{LocalUpload, UploadState};
use super::error::{io_err, StorageError};
use super::{FileMeta, ListItem, PutItem, Store, StoreLimits, StoredFile, Upload};

/// Storage limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Root directory.
    pub root: PathBuf,
    /// The limits (here the quota also counts partial uploads' held-chunk records).
    pub limits: StoreLimits,
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Names of the identities the web page issues start with this; they share
/// [`StoreLimits::web_quota`].
pub const WEB_IDENTITY_PREFIX: &str = "web-";

/// The key of a name in `meta/` and `partial/`: hex SHA-256 of its UTF-8.
pub fn name_key(name: &str) -> String {
    chunk_digest(name.as_bytes()).to_string()
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The directories of one identity.
#[derive(Debug, Clone)]
struct IdentityDirs {
    files: PathBuf,
    meta: PathBuf,
    partial: PathBuf,
}

impl IdentityDirs {
    fn create(&self) -> Result<(), StorageError> {
        for dir in [&self.files, &self.meta, &self.partial] {
            create_private_dir(dir)?;
        }
        Ok(())
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.meta.join(format!("{key}.json"))
    }

    fn part_path(&self, key: &str) -> PathBuf {
        self.partial.join(format!("{key}.part"))
    }

    fn held_path(&self, key: &str) -> PathBuf {
        self.partial.join(format!("{key}.held"))
    }
}

/// The local file system store (layout in the [module documentation](self)).
#[derive(Debug)]
pub struct LocalStore {
    config: StorageConfig,
    /// (client, name key) of running uploads.
    uploads: Arc<Mutex<HashSet<(String, String)>>>,
    /// Serialises quota checks, commits, deletes and metadata repair per identity.
    identities: Mutex<HashMap<String, Arc<Mutex<IdentityState>>>>,
    /// Sorted names of identities that listed lately.
    index: Arc<NameIndexes>,
    /// Serialises the reservations of `web-*` identities (taken before an identity's lock).
    web_reservations: Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds an (identity, name) for one upload; released on drop.
#[derive(Debug)]
struct NameLock {
    uploads: Arc<Mutex<HashSet<(String, String)>>>,
    key: (String, String),
}

impl Drop for NameLock {
    fn drop(&mut self) {
        lock(&self.uploads).remove(&self.key);
    }
}

impl LocalStore {
    /// Opens (and creates) the store at `config.root`.
    pub fn open(config: StorageConfig) -> Result<LocalStore, StorageError> {
        create_private_dir(&config.root)?;
        Ok(LocalStore {
            config,
            uploads: Arc::default(),
            identities: Mutex::new(HashMap::new()),
            index: Arc::default(),
            web_reservations: Mutex::new(()),
        })
    }

    /// The limits.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    fn dirs(&self, client: &str) -> Result<IdentityDirs, StorageError> {
        if let Err(e) = ferry_certs::validate_client_name(client) {
            return Err(StorageError::Inconsistent(format!("identity: {e}")));
        }
        let base = self.config.root.join(client);
        Ok(IdentityDirs {
            files: base.join("files"),
            meta: base.join("meta"),
            partial: base.join("partial"),
        })
    }

    /// The path of a committed file (whether or not it exists).
    pub fn file_path(&self, client: &str, name: &str) -> Result<PathBuf, StorageError> {
        Ok(self.dirs(client)?.files.join(name))
    }

    fn identity_lock(&self, client: &str) -> Arc<Mutex<IdentityState>> {
        lock(&self.identities)
            .entry(client.to_string())
            .or_default()
            .clone()
    }

    fn lock_name_waiting(&self, client: &str, key: &str) -> Option<NameLock> {
        let deadline = std::time::Instant::now() + self.config.limits.busy_wait;
        loop {
            if let Some(lock) = self.lock_name(client, key) {
                return Some(lock);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock_name(&self, client: &str, key: &str) -> Option<NameLock> {
        let key = (client.to_string(), key.to_string());
        if !lock(&self.uploads).insert(key.clone()) {
            return None;
        }
        Some(NameLock {
            uploads: self.uploads.clone(),
            key,
        })
    }
}

impl LocalStore {
    /// Bytes the `web-*` identities but `client` use together. The caller holds
    /// `web_reservations`, so none of them reserves more meanwhile.
    fn web_usage(&self, client: &str) -> Result<u64, StorageError> {
        let root = &self.config.root;
        let entries = fs::read_dir(root).map_err(io_err(format!("listing {}", root.display())))?;
        let mut total = 0u64;
        for entry in entries.flatten() {
            let Ok(other) = entry.file_name().into_string() else {
                continue;
            };
            if other == client
                || !other.starts_with(WEB_IDENTITY_PREFIX)
                || ferry_certs::validate_client_name(&other).is_err()
            {
                continue;
            }
            let dirs = self.dirs(&other)?;
            let identity = self.identity_lock(&other);
            let mut state = lock(&identity);
            let committed = self.committed_usage(&other, &dirs, &mut state)?;
            total = total.saturating_add(usage(&dirs, committed, None)?.bytes);
        }
        Ok(total)
    }

    /// An identity's committed files (counted once by a walk of `files/` that builds its
    /// name index too, then kept current by commits and deletes) and the staged files of
    /// batches being committed.
    fn committed_usage(
        &self,
        client: &str,
        dirs: &IdentityDirs,
        state: &mut IdentityState,
    ) -> Result<Usage, StorageError> {
        let committed = match state.committed {
            Some(committed) => committed,
            None => {
                let (names, committed) = tree::walk(&dirs.files)?;
                state.committed = Some(committed);
                self.index.install(client, names);
                committed
            }
        };
        Ok(committed.plus(state.staged))
    }

    /// Reads `client`'s sorted names: its index, or a walk of `files/` that builds the index
    /// (and counts the usage) under the identity's lock.
    fn over_names<T>(
        &self,
        client: &str,
        dirs: &IdentityDirs,
        identity: &Mutex<IdentityState>,
        read: impl Fn(&BTreeSet<String>) -> T,
    ) -> Result<T, StorageError> {
        if let Some(found) = self.index.with(client, &read) {
            return Ok(found);
        }
        let mut state = lock(identity);
        if let Some(found) = self.index.with(client, &read) {
            return Ok(found);
        }
        let (names, committed) = tree::walk(&dirs.files)?;
        state.committed = Some(committed);
        let found = read(&names);
        self.index.install(client, names);
        Ok(found)
    }

    /// The metadata of the committed files `names`, skipping those deleted meanwhile.
    fn metas(
        &self,
        dirs: &IdentityDirs,
        identity: &Mutex<IdentityState>,
        names: impl IntoIterator<Item = String>,
        chunk_size: u32,
    ) -> Result<Vec<FileMeta>, StorageError> {
        let mut metas = Vec::new();
        for name in names {
            match open_file(dirs, identity, &name, chunk_size) {
                Ok(stored) => metas.push(stored.meta),
                Err(StorageError::NotFound) => {} // deleted meanwhile, or by hand
                Err(e) => return Err(e),
            }
        }
        Ok(metas)
    }
}

impl Store for LocalStore {
    fn begin_upload(
        &self,
        client: &str,
        name: &str,
        size: u64,
        chunk_size: u32,
        fresh: bool,
    ) -> Result<Box<dyn Upload>, StorageError> {
        self.config.limits.check_size(size)?;
        let dirs = self.dirs(client)?;
        dirs.create()?;
        // Early, before any data comes; the commit checks again under the identity's lock.
        check_conflict(&dirs.files, name)?;
        let key = name_key(name);
        let name_lock = self
            .lock_name_waiting(client, &key)
            .ok_or(StorageError::Busy)?;
        let layout = Layout { size, chunk_size };
        let (part_path, held_path) = (dirs.part_path(&key), dirs.held_path(&key));
        let identity = self.identity_lock(client);
        let upload = |state: UploadState, chunks| -> Box<dyn Upload> {
            Box::new(LocalUpload {
                // Without a duplicate handle the commit's fsync writes everything itself.
                flusher: match &state {
                    UploadState::Partial { part, .. } => Flusher::new(part).ok(),
                    _ => None,
                },
                identity: identity.clone(),
                index: self.index.clone(),
                dirs: dirs.clone(),
                client: client.to_string(),
                name: name.to_string(),
                key: key.clone(),
                layout,
                state,
                chunks,
                attrs: FileAttrs::default(),
                _lock: name_lock,
            })
        };
        if fresh {
            remove_partial(&part_path, &held_path)?;
        } else if let Some((part, held, chunks)) = load_partial(&part_path, &held_path, layout)? {
            let held = Some(held);
            return Ok(upload(UploadState::Partial { part, held }, chunks));
        } else if let Some(chunks) = committed_chunks(&dirs.files.join(name), layout)? {
            return Ok(upload(UploadState::AlreadyStored, chunks));
        }
        // A new partial: check the limits and reserve under the identity's lock.
        let reserved = size.saturating_add(journal_reservation(layout));
        let web_lock = client
            .starts_with(WEB_IDENTITY_PREFIX)
            .then(|| lock(&self.web_reservations));
        let web_used = if web_lock.is_some() {
            self.web_usage(client)?
        } else {
            0
        };
        let mut state = lock(&identity);
        let committed = self.committed_usage(client, &dirs, &mut state)?;
        let used = usage(&dirs, committed, Some((name, &key)))?;
        if used.bytes.saturating_add(reserved) > self.config.limits.quota {
            return Err(StorageError::QuotaExceeded {
                used: used.bytes,
                requested: reserved,
                quota: self.config.limits.quota,
            });
        }
        if used.files >= self.config.limits.max_files {
            return Err(StorageError::FileLimit {
                files: used.files,
                max: self.config.limits.max_files,
            });
        }
        if web_lock.is_some() {
            let used = web_used.saturating_add(used.bytes);
            if used.saturating_add(reserved) > self.config.limits.web_quota {
                return Err(StorageError::WebQuotaExceeded {
                    used,
                    requested: reserved,
                    quota: self.config.limits.web_quota,
                });
            }
        }
        let (part, held) = match create_partial(&part_path, &held_path, layout) {
            Ok(created) => created,
            Err(e) => {
                // A full disk may leave the journal unwritten: nothing half-made stays.
                let _ = remove_partial(&part_path, &held_path);
                return Err(e);
            }
        };
        drop(state);
        drop(web_lock);
        Ok(upload(UploadState::Partial { part, held }, BTreeMap::new()))
    }

    fn usage(&self, client: &str) -> Result<u64, StorageError> {
        let dirs = self.dirs(client)?;
        let identity = self.identity_lock(client);
        let mut state = lock(&identity);
        let committed = self.committed_usage(client, &dirs, &mut state)?;
        Ok(usage(&dirs, committed, None)?.bytes)
    }

    fn open(
        &self,
        client: &str,
        name: &str,
        chunk_size: u32,
    ) -> Result<Box<dyn StoredFile>, StorageError> {
        let dirs = self.dirs(client)?;
        let identity = self.identity_lock(client);
        Ok(Box::new(open_file(&dirs, &identity, name, chunk_size)?))
    }

    fn partial_expiry(&self) -> Duration {
        self.config.limits.partial_expiry
    }

    fn list(
        &self,
        client: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
        chunk_size: u32,
    ) -> Result<Vec<FileMeta>, StorageError> {
        let dirs = self.dirs(client)?;
        let identity = self.identity_lock(client);
        let names = self.over_names(client, &dirs, &identity, |names| {
            page_of(names, prefix, start_after, limit)
        })?;
        // The metadata of this page's files only.
        self.metas(&dirs, &identity, names, chunk_size)
    }

    /// From the sorted name index: a range lookup per folder, the metadata of the page's
    /// files only.
    fn list_tree(
        &self,
        client: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
        recursive: bool,
        chunk_size: u32,
    ) -> Result<Vec<ListItem>, StorageError> {
        let dirs = self.dirs(client)?;
        let identity = self.identity_lock(client);
        let entries = self.over_names(client, &dirs, &identity, |names| {
            tree_page_of(names, prefix, start_after, limit, recursive)
        })?;
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                TreeName::Folder(folder) => items.push(ListItem::Folder(folder)),
                TreeName::File(name) => {
                    let meta = self.metas(&dirs, &identity, [name], chunk_size)?;
                    items.extend(meta.into_iter().map(ListItem::File));
                }
            }
        }
        Ok(items)
    }

    /// Durable together: one `syncfs` for the batch (see `batch`).
    fn put_batch(&self, client: &str, items: Vec<PutItem>) -> Vec<Result<FileMeta, StorageError>> {
        self.put_batch_local(client, items)
    }

    fn delete(&self, client: &str, name: &str) -> Result<(), StorageError> {
        let dirs = self.dirs(client)?;
        let identity = self.identity_lock(client);
        let mut state = lock(&identity);
        let path = dirs.files.join(name);
        let size = match fs::symlink_metadata(&path) {
            Ok(md) if md.is_file() => md.len(),
            Ok(_) => return Err(StorageError::NotFound),
            Err(e) if is_absent(&e) => return Err(StorageError::NotFound),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
        // Under the identity's lock: a commit into the folder cannot be creating it meanwhile.
        let changed_dir = remove_empty_folders(&dirs.files, name);
        state.count_committed(Some(size), None);
        self.index.removed(client, name);
        let meta = dirs.meta_path(&name_key(name));
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", meta.display()))(e)),
        }
        // Outside the identity's lock, so that concurrent commits share the fsync of `files/`.
        let files_sync = state.files_sync.clone();
        drop(state);
        tree::sync_changed(&files_sync, &dirs.files, [changed_dir])
    }

    /// Stray temporary files in `partial/` and `meta/` expire too.
    fn expire_partials(&self, now: SystemTime) -> Result<usize, StorageError> {
        let root = &self.config.root;
        let mut removed = 0;
        let identities = match fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) => return Err(io_err(format!("listing {}", root.display()))(e)),
        };
        let expired = |path: &Path| -> bool {
            fs::symlink_metadata(path)
                .and_then(|md| md.modified())
                .is_ok_and(|at| {
                    now.duration_since(at).unwrap_or_default() > self.config.limits.partial_expiry
                })
        };
        for identity in identities.flatten() {
            let Ok(client) = identity.file_name().into_string() else {
                continue;
            };
            if ferry_certs::validate_client_name(&client).is_err() {
                continue;
            }
            lock(&self.identity_lock(&client)).committed = None;
            self.index.forget(&client);
            let dirs = self.dirs(&client)?;
            let Ok(entries) = fs::read_dir(&dirs.partial) else {
                continue;
            };
            let mut keys = HashSet::new();
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                match file_name.split_once('.') {
                    Some((key, "part" | "held")) if is_hex64(key) => {
                        keys.insert(key.to_string());
                    }
                    _ if file_name.starts_with(".tmp") && expired(&entry.path()) => {
                        let _ = fs::remove_file(entry.path());
                    }
                    _ => {}
                }
            }
            for key in keys {
                let (part, held) = (dirs.part_path(&key), dirs.held_path(&key));
                // `.held` is appended to on every stored chunk: its time is the last activity.
                let last = if held.exists() { &held } else { &part };
                if !expired(last) {
                    continue;
                }
                let Some(_name_lock) = self.lock_name(&client, &key) else {
                    continue; // an upload is running
                };
                remove_partial(&part, &held)?;
                tracing::info!(
                    "removed an abandoned partial upload of {} ({})",
                    client,
                    part.display()
                );
                removed += 1;
            }
            if let Ok(entries) = fs::read_dir(&dirs.meta) {
                for entry in entries.flatten() {
                    let is_temp = entry
                        .file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(".tmp"));
                    if is_temp && expired(&entry.path()) {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;

/// Directories of the store are 0700 and its files 0600, whatever the umask: the store holds
/// every client's files, readable by the server's user only.
const PRIVATE_DIR_MODE: u32 = 0o700;
const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700, and makes an existing one 0700 (a store
/// made by an earlier version was 0755 under the usual umask).
fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let context = || format!("creating {}", dir.display());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(io_err(context()))?;
    let mode = fs::metadata(dir)
        .map_err(io_err(context()))?
        .permissions()
        .mode();
    if mode & 0o7777 != PRIVATE_DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io_err(context()))?;
    }
    Ok(())
}

/// `OpenOptions` that create files with mode 0600.
fn private_file() -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.mode(PRIVATE_FILE_MODE);
    options
}
