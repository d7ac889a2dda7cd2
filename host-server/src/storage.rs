//! The file system store: each identity's committed files, their metadata and partial
//! uploads, with quotas, resumable uploads and atomic commits.
//!
//! ```text
//! STORAGE/<fingerprint>/files/<name>           committed files, plain bytes
//! STORAGE/<fingerprint>/meta/<key>.json        FileMeta of files/<name> where xattrs are missing
//! STORAGE/<fingerprint>/partial/<key>.part     upload data, written at chunk offsets (sparse, declared size)
//! STORAGE/<fingerprint>/partial/<key>.held     header, then one record per stored chunk
//! ```
//!
//! `<fingerprint>` is the client identity (hex SHA-256 of its certificate's public key);
//! `<name>` the validated, NFC-normalised file name; `<key>` the hex SHA-256 of the name, so
//! that a 255-byte name still fits a file name with a suffix.
//!
//! **Uploads.** [`Storage::begin_upload`] checks the size limit, locks the name (one upload
//! per identity and name), resumes a partial of the same size and chunk size, or offers the
//! chunks of an identical committed file, or checks the quota and creates a new partial.
//! Every chunk is written at its offset in `.part` (`pwrite`), then its record (index u64 LE,
//! SHA-256) is appended to `.held`. On resume every record is checked against the data in
//! `.part` (read back and hashed), so a torn write or a lost page never counts as held.
//! [`Upload::commit`] records the metadata on `.part`, fsyncs it (most of the data was
//! written back while the upload ran, see `ferry_tokio::flush`), renames it over
//! `files/<name>` (the old version stays readable until then), fsyncs `files/` (one fsync
//! shared by concurrent commits) and removes `.held`.
//!
//! **Metadata.** [`FileMeta`] records the size, the chunk size and whole-file digest the
//! file was verified with, the commit time and the inode of the data file. It is kept in the
//! data file's extended attribute `user.ferry.meta`, or, on a file system without user
//! attributes, in `meta/<key>.json`. Metadata that is missing or does not match the file (a
//! file replaced by hand, a crash) is recomputed from the data.
//!
//! **Quota.** An identity's usage is the size of its committed files plus the declared size
//! of its partial uploads (a `.part` is created at its full size). A new upload is refused
//! when usage (not counting the file it replaces or its own earlier partial) plus its size
//! exceeds the quota; partials reserve their size, so concurrent uploads cannot overrun it,
//! and data beyond the declared size is refused while it arrives. The committed bytes are
//! counted once per identity and then kept current by commits and deletes, so a quota check
//! costs a look at `partial/`, not a stat of every file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::wire::ErrorCode;
use ferry_core::{chunk_digest, Digest, FileDigest, Layout};
use ferry_tokio::flush::Flusher;
use serde::{Deserialize, Serialize};

use crate::names::validate_name;

/// Magic and version at the start of a `.held` file.
const HELD_MAGIC: &[u8; 8] = b"FRYHELD1";
/// `.held` header: magic, chunk size (u32 LE), reserved (u32), size (u64 LE), created (u64 LE, unix secs).
const HELD_HEADER: usize = 32;
/// One `.held` record: index (u64 LE) and the chunk's SHA-256.
const HELD_RECORD: usize = 40;

/// Storage limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Root directory.
    pub root: PathBuf,
    /// Bytes each identity may use (committed files plus partial uploads).
    pub quota: u64,
    /// Largest file.
    pub max_file_size: u64,
    /// Partial uploads untouched for this long are removed by [`Storage::expire_partials`].
    pub partial_expiry: Duration,
    /// How long an upload waits for another upload of the same identity and name to end
    /// before it is refused with `BUSY` (covers a client that reconnects before the server
    /// has seen its old connection close).
    pub busy_wait: Duration,
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The upload would take the identity over its quota.
    #[error("quota exceeded: {} used + {} requested > {} quota", human(*used), human(*requested), human(*quota))]
    QuotaExceeded {
        /// Bytes in use (not counting a file the upload replaces).
        used: u64,
        /// The upload's size.
        requested: u64,
        /// The quota.
        quota: u64,
    },
    /// The file is larger than the server accepts.
    #[error("file too large: {} ({size} bytes), the server accepts at most {}", human(*size), human(*max))]
    TooLarge {
        /// The declared or reached size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Another upload of the same name by the same identity is running.
    #[error("an upload of this name is already running")]
    Busy,
    /// No such file.
    #[error("no such file")]
    NotFound,
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// Stored data does not add up (a bug or tampering).
    #[error("inconsistent storage: {0}")]
    Inconsistent(String),
}

impl StorageError {
    /// The protocol error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StorageError::QuotaExceeded { .. } => ErrorCode::QUOTA_EXCEEDED,
            StorageError::TooLarge { .. } => ErrorCode::TOO_LARGE,
            StorageError::Busy => ErrorCode::BUSY,
            StorageError::NotFound => ErrorCode::NOT_FOUND,
            StorageError::Io { .. } | StorageError::Inconsistent(_) => ErrorCode::STORAGE,
        }
    }

    /// The text sent to the client: no server paths.
    pub fn client_text(&self) -> String {
        match self {
            StorageError::Io { source, .. } => {
                format!("storage failure on the server: {}", source.kind())
            }
            StorageError::Inconsistent(_) => "storage failure on the server".into(),
            other => other.to_string(),
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

/// A size for people: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Parses a 64-digit hex SHA-256.
pub fn parse_digest(text: &str) -> Option<Digest> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The key of a name in `meta/` and `partial/`: hex SHA-256 of its UTF-8.
pub fn name_key(name: &str) -> String {
    hex(&chunk_digest(name.as_bytes()))
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What is known of a committed file (`meta/<key>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Chunk size the digest was computed with.
    pub chunk_size: u32,
    /// Whole-file digest (ferry-core's `FileDigest`), hex.
    pub digest: String,
    /// Commit time, seconds since the Unix epoch.
    pub modified: u64,
    /// Inode of the data file this describes.
    pub inode: u64,
}

impl FileMeta {
    /// The digest as bytes.
    pub fn digest_bytes(&self) -> Digest {
        parse_digest(&self.digest).unwrap_or_default()
    }
}

/// A committed file opened for reading, with its metadata. The handle keeps this version
/// readable even if the file is replaced meanwhile.
#[derive(Debug)]
pub struct StoredFile {
    /// The open file.
    pub file: File,
    /// Its metadata.
    pub meta: FileMeta,
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
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
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

/// The store. Share it as `Arc<Storage>`.
#[derive(Debug)]
pub struct Storage {
    config: StorageConfig,
    /// (fingerprint, name key) of running uploads.
    uploads: Mutex<HashSet<(String, String)>>,
    /// Serialises quota checks, commits, deletes and metadata repair per identity.
    identities: Mutex<HashMap<String, Arc<Mutex<IdentityState>>>>,
}

/// What is kept of an identity between operations, under its lock.
#[derive(Debug, Default)]
struct IdentityState {
    /// Bytes in `files/`, once counted: commits and deletes keep it current, so a quota
    /// check does not stat every file. Forgotten by [`Storage::expire_partials`], so changes
    /// made by hand are counted again on its next run.
    committed_bytes: Option<u64>,
    /// Fsyncs of `files/`, shared by concurrent commits and deletes (waited for outside
    /// the identity's lock).
    files_sync: Arc<DirSync>,
}

impl IdentityState {
    /// A committed file of `old` bytes became one of `new` bytes (0: none).
    fn count_committed(&mut self, old: u64, new: u64) {
        if let Some(bytes) = self.committed_bytes.as_mut() {
            *bytes = bytes.saturating_sub(old).saturating_add(new);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds an (identity, name) for one upload; released on drop.
#[derive(Debug)]
pub struct NameLock {
    storage: Arc<Storage>,
    key: (String, String),
}

impl Drop for NameLock {
    fn drop(&mut self) {
        lock(&self.storage.uploads).remove(&self.key);
    }
}

impl Storage {
    /// Opens (and creates) the store at `config.root`.
    pub fn open(config: StorageConfig) -> Result<Arc<Storage>, StorageError> {
        fs::create_dir_all(&config.root)
            .map_err(io_err(format!("creating {}", config.root.display())))?;
        Ok(Arc::new(Storage {
            config,
            uploads: Mutex::new(HashSet::new()),
            identities: Mutex::new(HashMap::new()),
        }))
    }

    /// The limits.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    fn dirs(&self, fingerprint: &str) -> Result<IdentityDirs, StorageError> {
        if !is_hex64(fingerprint) {
            return Err(StorageError::Inconsistent(format!(
                "identity {fingerprint:?} is not a hex SHA-256"
            )));
        }
        let base = self.config.root.join(fingerprint);
        Ok(IdentityDirs {
            files: base.join("files"),
            meta: base.join("meta"),
            partial: base.join("partial"),
        })
    }

    /// The path of a committed file (whether or not it exists).
    pub fn file_path(&self, fingerprint: &str, name: &str) -> Result<PathBuf, StorageError> {
        Ok(self.dirs(fingerprint)?.files.join(name))
    }

    fn identity_lock(&self, fingerprint: &str) -> Arc<Mutex<IdentityState>> {
        lock(&self.identities)
            .entry(fingerprint.to_string())
            .or_default()
            .clone()
    }

    fn lock_name_waiting(self: &Arc<Self>, fingerprint: &str, key: &str) -> Option<NameLock> {
        let deadline = std::time::Instant::now() + self.config.busy_wait;
        loop {
            if let Some(lock) = self.lock_name(fingerprint, key) {
                return Some(lock);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock_name(self: &Arc<Self>, fingerprint: &str, key: &str) -> Option<NameLock> {
        let key = (fingerprint.to_string(), key.to_string());
        if !lock(&self.uploads).insert(key.clone()) {
            return None;
        }
        Some(NameLock {
            storage: self.clone(),
            key,
        })
    }

    /// Starts or resumes an upload of `name` (already validated) of `size` bytes in chunks of
    /// `chunk_size`. With `fresh`, a partial copy is dropped first.
    pub fn begin_upload(
        self: &Arc<Self>,
        fingerprint: &str,
        name: &str,
        size: u64,
        chunk_size: u32,
        fresh: bool,
    ) -> Result<Upload, StorageError> {
        if size > self.config.max_file_size {
            return Err(StorageError::TooLarge {
                size,
                max: self.config.max_file_size,
            });
        }
        let dirs = self.dirs(fingerprint)?;
        dirs.create()?;
        let key = name_key(name);
        let name_lock = self
            .lock_name_waiting(fingerprint, &key)
            .ok_or(StorageError::Busy)?;
        let layout = Layout { size, chunk_size };
        let (part_path, held_path) = (dirs.part_path(&key), dirs.held_path(&key));
        let upload = |state: UploadState, chunks| Upload {
            // Without a duplicate handle the commit's fsync writes everything itself.
            flusher: match &state {
                UploadState::Partial { part, .. } => Flusher::new(part).ok(),
                _ => None,
            },
            storage: self.clone(),
            dirs: dirs.clone(),
            fingerprint: fingerprint.to_string(),
            name: name.to_string(),
            key: key.clone(),
            layout,
            state,
            chunks,
            _lock: name_lock,
        };
        if fresh {
            remove_partial(&part_path, &held_path)?;
        } else if let Some((part, held, chunks)) = load_partial(&part_path, &held_path, layout)? {
            let held = Some(held);
            return Ok(upload(UploadState::Partial { part, held }, chunks));
        } else if let Some(chunks) = committed_chunks(&dirs.files.join(name), layout)? {
            return Ok(upload(UploadState::AlreadyStored, chunks));
        }
        // A new partial: check the quota and reserve the size under the identity's lock.
        let identity = self.identity_lock(fingerprint);
        let mut state = lock(&identity);
        let used = usage(&dirs, &mut state, Some((name, &key)))?;
        if used.saturating_add(size) > self.config.quota {
            return Err(StorageError::QuotaExceeded {
                used,
                requested: size,
                quota: self.config.quota,
            });
        }
        let (part, held) = create_partial(&part_path, &held_path, layout)?;
        Ok(upload(UploadState::Partial { part, held }, BTreeMap::new()))
    }

    /// Bytes used by an identity: committed files plus partial uploads.
    pub fn usage(&self, fingerprint: &str) -> Result<u64, StorageError> {
        let dirs = self.dirs(fingerprint)?;
        let identity = self.identity_lock(fingerprint);
        let mut state = lock(&identity);
        usage(&dirs, &mut state, None)
    }

    /// Opens a committed file for download; its metadata is repaired if stale (digest
    /// recomputed with `chunk_size`).
    pub fn open_file(
        &self,
        fingerprint: &str,
        name: &str,
        chunk_size: u32,
    ) -> Result<StoredFile, StorageError> {
        let dirs = self.dirs(fingerprint)?;
        let key = name_key(name);
        let path = dirs.files.join(name);
        if let Some(stored) = open_with_meta(&dirs, &path, name, &key)? {
            return Ok(stored);
        }
        // Stale or missing metadata: look again under the identity's lock (a commit may be
        // between its metadata write and its rename), then recompute.
        let identity = self.identity_lock(fingerprint);
        let _guard = lock(&identity);
        if let Some(stored) = open_with_meta(&dirs, &path, name, &key)? {
            return Ok(stored);
        }
        let file = open_data(&path)?;
        let md = file
            .metadata()
            .map_err(io_err(format!("reading {}", path.display())))?;
        let layout = Layout {
            size: md.len(),
            chunk_size,
        };
        let chunks = hash_chunks(&file, layout, &path)?;
        let mut digest = FileDigest::new(chunk_size, md.len());
        for chunk in &chunks {
            digest.push(chunk);
        }
        let meta = FileMeta {
            name: name.to_string(),
            size: md.len(),
            chunk_size,
            digest: hex(&digest.finish()),
            modified: md.modified().map(unix_secs).unwrap_or(0),
            inode: md.ino(),
        };
        write_meta(&dirs, &key, &file, &meta)?;
        tracing::warn!(
            "{}: metadata was missing or stale, recomputed from the data",
            path.display()
        );
        Ok(StoredFile { file, meta })
    }

    /// Committed files of an identity whose names sort after `start_after`, in name order,
    /// at most `limit`.
    pub fn list(
        &self,
        fingerprint: &str,
        start_after: &str,
        limit: usize,
        chunk_size: u32,
    ) -> Result<Vec<FileMeta>, StorageError> {
        let dirs = self.dirs(fingerprint)?;
        let entries = match fs::read_dir(&dirs.files) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("listing {}", dirs.files.display()))(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(format!("listing {}", dirs.files.display())))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Only names a client could have stored (no stray files, no temporaries).
            if name.as_str() > start_after && validate_name(&name).is_ok_and(|n| n == name) {
                names.push(name);
            }
        }
        names.sort_unstable();
        let mut metas = Vec::new();
        for name in names {
            if metas.len() >= limit {
                break;
            }
            match self.open_file(fingerprint, &name, chunk_size) {
                Ok(stored) => metas.push(stored.meta),
                Err(StorageError::NotFound) => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(metas)
    }

    /// Deletes a committed file and its metadata.
    pub fn delete(&self, fingerprint: &str, name: &str) -> Result<(), StorageError> {
        let dirs = self.dirs(fingerprint)?;
        let identity = self.identity_lock(fingerprint);
        let mut state = lock(&identity);
        let path = dirs.files.join(name);
        let size = match fs::symlink_metadata(&path) {
            Ok(md) if md.is_file() => md.len(),
            Ok(_) => return Err(StorageError::NotFound),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
        state.count_committed(size, 0);
        let meta = dirs.meta_path(&name_key(name));
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", meta.display()))(e)),
        }
        // Outside the identity's lock, so that concurrent commits share the fsync.
        let files_sync = state.files_sync.clone();
        drop(state);
        files_sync.sync(&dirs.files)?;
        Ok(())
    }

    /// Removes partial uploads (and stray temporary files) untouched for longer than the
    /// configured expiry, skipping uploads that are running. Returns how many partial
    /// uploads were removed.
    pub fn expire_partials(self: &Arc<Self>, now: SystemTime) -> Result<usize, StorageError> {
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
                    now.duration_since(at).unwrap_or_default() > self.config.partial_expiry
                })
        };
        for identity in identities.flatten() {
            let Ok(fingerprint) = identity.file_name().into_string() else {
                continue;
            };
            if !is_hex64(&fingerprint) {
                continue;
            }
            lock(&self.identity_lock(&fingerprint)).committed_bytes = None;
            let dirs = self.dirs(&fingerprint)?;
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
                let Some(_name_lock) = self.lock_name(&fingerprint, &key) else {
                    continue; // an upload is running
                };
                remove_partial(&part, &held)?;
                tracing::info!(
                    "removed an abandoned partial upload of {} ({})",
                    &fingerprint[..16],
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

/// Usage of an identity, not counting `exclude`'s committed file and partial: the counted
/// bytes of `files/` plus the `.part` files (few: only running or abandoned uploads).
fn usage(
    dirs: &IdentityDirs,
    state: &mut IdentityState,
    exclude: Option<(&str, &str)>,
) -> Result<u64, StorageError> {
    let committed = match state.committed_bytes {
        Some(bytes) => bytes,
        None => {
            let bytes = dir_bytes(&dirs.files, |_| true)?;
            state.committed_bytes = Some(bytes);
            bytes
        }
    };
    let excluded = match exclude {
        Some((name, _)) => file_len(&dirs.files.join(name))?,
        None => 0,
    };
    let own_part = exclude.map(|(_, key)| format!("{key}.part"));
    let partial = dir_bytes(&dirs.partial, |file_name| {
        file_name.ends_with(".part") && own_part.as_deref() != Some(file_name)
    })?;
    Ok(committed.saturating_sub(excluded).saturating_add(partial))
}

/// Total size of the regular files in `dir` whose names `count` accepts; 0 if `dir` is missing.
fn dir_bytes(dir: &Path, count: impl Fn(&str) -> bool) -> Result<u64, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
    };
    let mut total = 0u64;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
        if count(&entry.file_name().to_string_lossy()) {
            total = total.saturating_add(file_len(&entry.path())?);
        }
    }
    Ok(total)
}

/// The size of a regular file, 0 if there is none at `path`.
fn file_len(path: &Path) -> Result<u64, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_file() => Ok(md.len()),
        Ok(_) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}

fn remove_partial(part: &Path, held: &Path) -> Result<(), StorageError> {
    for path in [held, part] {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", path.display()))(e)),
        }
    }
    Ok(())
}

fn held_header(layout: Layout) -> [u8; HELD_HEADER] {
    let mut header = [0u8; HELD_HEADER];
    header[..8].copy_from_slice(HELD_MAGIC);
    header[8..12].copy_from_slice(&layout.chunk_size.to_le_bytes());
    header[16..24].copy_from_slice(&layout.size.to_le_bytes());
    header[24..32].copy_from_slice(&unix_secs(SystemTime::now()).to_le_bytes());
    header
}

fn held_record(index: u64, digest: &Digest) -> [u8; HELD_RECORD] {
    let mut record = [0u8; HELD_RECORD];
    record[..8].copy_from_slice(&index.to_le_bytes());
    record[8..].copy_from_slice(digest);
    record
}

/// Writes `.held` atomically with a header and `records`, and opens it for appending.
fn write_held(
    dir: &Path,
    path: &Path,
    layout: Layout,
    records: &BTreeMap<u64, Digest>,
) -> Result<File, StorageError> {
    let context = || format!("writing {}", path.display());
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(context()))?;
    let mut bytes = Vec::with_capacity(HELD_HEADER + records.len() * HELD_RECORD);
    bytes.extend_from_slice(&held_header(layout));
    for (index, digest) in records {
        bytes.extend_from_slice(&held_record(*index, digest));
    }
    temp.write_all(&bytes).map_err(io_err(context()))?;
    temp.as_file().sync_all().map_err(io_err(context()))?;
    temp.persist(path).map_err(|e| io_err(context())(e.error))?;
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(context()))
}

fn create_partial(
    part_path: &Path,
    held_path: &Path,
    layout: Layout,
) -> Result<(File, Option<File>), StorageError> {
    let context = || format!("creating {}", part_path.display());
    let part = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(part_path)
        .map_err(io_err(context()))?;
    // Full size up front (sparse): reserves the quota and records the declared size.
    part.set_len(layout.size).map_err(io_err(context()))?;
    if layout.chunks() <= 1 {
        // Nothing to resume: a lost one-chunk upload is sent again whole. Creating an
        // inode is what a small upload costs most.
        return Ok((part, None));
    }
    // No records yet, so neither a temporary file nor an fsync: a torn header only makes
    // a resume start over.
    let mut held = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(held_path)
        .map_err(io_err(format!("creating {}", held_path.display())))?;
    held.write_all(&held_header(layout))
        .map_err(io_err(format!("writing {}", held_path.display())))?;
    Ok((part, Some(held)))
}

/// Loads a partial upload of `layout`, keeping only records whose data in `.part` matches.
/// A partial of another size or chunk size, or an unreadable one, is removed.
#[allow(clippy::type_complexity)]
fn load_partial(
    part_path: &Path,
    held_path: &Path,
    layout: Layout,
) -> Result<Option<(File, File, BTreeMap<u64, Digest>)>, StorageError> {
    let bytes = match fs::read(held_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            remove_partial(part_path, held_path)?;
            return Ok(None);
        }
        Err(e) => return Err(io_err(format!("reading {}", held_path.display()))(e)),
    };
    let header_ok = bytes.len() >= HELD_HEADER
        && &bytes[..8] == HELD_MAGIC
        && bytes[8..12] == layout.chunk_size.to_le_bytes()
        && bytes[16..24] == layout.size.to_le_bytes();
    let part = match OpenOptions::new().read(true).write(true).open(part_path) {
        Ok(part) if header_ok => part,
        Ok(_) => {
            remove_partial(part_path, held_path)?;
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            remove_partial(part_path, held_path)?;
            return Ok(None);
        }
        Err(e) => return Err(io_err(format!("opening {}", part_path.display()))(e)),
    };
    let context = || format!("reading {}", part_path.display());
    let len = part.metadata().map_err(io_err(context()))?.len();
    if len != layout.size {
        part.set_len(layout.size).map_err(io_err(context()))?;
    }
    let body = &bytes[HELD_HEADER..];
    let mut records = BTreeMap::new();
    for record in body.chunks_exact(HELD_RECORD) {
        let index = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
        let digest: Digest = record[8..].try_into().expect("32 bytes");
        records.insert(index, digest); // a later record of the same index wins
    }
    // Check every record against the data: only chunks that read back intact are held.
    let mut buf = vec![0u8; layout.chunk_size as usize];
    let mut verified = BTreeMap::new();
    for (index, digest) in &records {
        if *index >= layout.chunks() {
            continue;
        }
        let data = &mut buf[..layout.len(*index)];
        match part.read_exact_at(data, layout.offset(*index)) {
            Ok(()) if chunk_digest(data) == *digest => {
                verified.insert(*index, *digest);
            }
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(io_err(context())(e)),
        }
    }
    let clean = verified.len() == records.len() && body.len() == records.len() * HELD_RECORD;
    let held = if clean {
        OpenOptions::new()
            .append(true)
            .open(held_path)
            .map_err(io_err(format!("opening {}", held_path.display())))?
    } else {
        if verified.len() != records.len() {
            tracing::warn!(
                "{}: {} of {} recorded chunks do not match their data and will be received again",
                part_path.display(),
                records.len() - verified.len(),
                records.len()
            );
        }
        let dir = held_path.parent().unwrap_or(Path::new("."));
        write_held(dir, held_path, layout, &verified)?
    };
    Ok(Some((part, held, verified)))
}

/// The chunk digests of a committed file of exactly `layout.size` bytes, hashed from its
/// data, or `None` if there is no such file.
fn committed_chunks(
    path: &Path,
    layout: Layout,
) -> Result<Option<BTreeMap<u64, Digest>>, StorageError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("opening {}", path.display()))(e)),
    };
    let md = file
        .metadata()
        .map_err(io_err(format!("reading {}", path.display())))?;
    if !md.is_file() || md.len() != layout.size {
        return Ok(None);
    }
    let chunks = hash_chunks(&file, layout, path)?;
    Ok(Some((0..).zip(chunks).collect()))
}

/// SHA-256 of every chunk of an open file.
fn hash_chunks(file: &File, layout: Layout, path: &Path) -> Result<Vec<Digest>, StorageError> {
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; layout.chunk_size as usize];
    let mut chunks = Vec::with_capacity(layout.chunks() as usize);
    for index in 0..layout.chunks() {
        let data = &mut buf[..layout.len(index)];
        reader
            .read_exact(data)
            .map_err(io_err(format!("reading {}", path.display())))?;
        chunks.push(chunk_digest(data));
    }
    Ok(chunks)
}

fn open_data(path: &Path) -> Result<File, StorageError> {
    match File::open(path) {
        Ok(file) => match file.metadata() {
            Ok(md) if md.is_file() => Ok(file),
            Ok(_) => Err(StorageError::NotFound),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::NotFound),
        Err(e) => Err(io_err(format!("opening {}", path.display()))(e)),
    }
}

/// The extended attribute that holds a committed file's [`FileMeta`] (JSON).
const META_XATTR: &str = "user.ferry.meta";
/// Room for a `FileMeta`: a 255-byte name escaped at worst, a digest and some numbers.
const META_MAX: usize = 4096;

/// Opens a committed file and reads its metadata; `None` if the metadata is missing or
/// describes another version.
fn open_with_meta(
    dirs: &IdentityDirs,
    path: &Path,
    name: &str,
    key: &str,
) -> Result<Option<StoredFile>, StorageError> {
    let file = open_data(path)?;
    let md = file
        .metadata()
        .map_err(io_err(format!("reading {}", path.display())))?;
    let Some(meta) = read_meta(dirs, key, &file, path)? else {
        return Ok(None);
    };
    let current = meta.inode == md.ino()
        && meta.size == md.len()
        && meta.name == name
        && parse_digest(&meta.digest).is_some();
    Ok(current.then_some(StoredFile { file, meta }))
}

/// The metadata of an open data file: its extended attribute, or where the file system has
/// none, `meta/<key>.json`. `None` if missing or unreadable.
fn read_meta(
    dirs: &IdentityDirs,
    key: &str,
    file: &File,
    path: &Path,
) -> Result<Option<FileMeta>, StorageError> {
    let mut buf = [0u8; META_MAX];
    let bytes = match rustix::fs::fgetxattr(file, META_XATTR, &mut buf[..]) {
        Ok(len) => &buf[..len],
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => {
            let meta_path = dirs.meta_path(key);
            return match fs::read(&meta_path) {
                Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(format!("reading {}", meta_path.display()))(e)),
            };
        }
        Err(e) if e == rustix::io::Errno::RANGE => return Ok(None),
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e.into())),
    };
    Ok(serde_json::from_slice(bytes).ok())
}

/// Records `meta` for the data file `file`: in an extended attribute on the file itself,
/// which moves with it on rename and costs no inode (creating inodes is most of what a
/// small upload costs), or where the file system has no user attributes, in
/// `meta/<key>.json`. Not synced here: the commit's fsync of the data covers the attribute,
/// and metadata that a crash left missing, torn or naming another inode is recomputed from
/// the data when the file is next opened.
fn write_meta(
    dirs: &IdentityDirs,
    key: &str,
    file: &File,
    meta: &FileMeta,
) -> Result<(), StorageError> {
    let json = serde_json::to_vec(meta).map_err(|e| StorageError::Inconsistent(e.to_string()))?;
    let meta_path = dirs.meta_path(key);
    let context = || format!("writing {}", meta_path.display());
    match rustix::fs::fsetxattr(file, META_XATTR, &json, rustix::fs::XattrFlags::empty()) {
        // A `meta/` file left from a file system without attributes would only be ignored.
        Ok(()) => match fs::remove_file(&meta_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(context())(e)),
        },
        Err(e) if e == rustix::io::Errno::NOTSUP => {
            let mut temp = tempfile::Builder::new()
                .prefix(".tmp")
                .tempfile_in(&dirs.meta)
                .map_err(io_err(context()))?;
            temp.write_all(&json).map_err(io_err(context()))?;
            temp.persist(&meta_path)
                .map_err(|e| io_err(context())(e.error))?;
            Ok(())
        }
        Err(e) => Err(io_err(context())(e.into())),
    }
}

/// Group commit for one directory: every caller needs an fsync that started after its
/// change (a rename, a removal); callers that arrive while one runs share the next.
#[derive(Debug, Default)]
struct DirSync {
    state: Mutex<DirSyncState>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct DirSyncState {
    /// Fsyncs started and finished, counted; one runs at a time.
    started: u64,
    finished: u64,
    running: bool,
    /// The latest failed fsync's number and error.
    failure: Option<(u64, io::ErrorKind, String)>,
}

impl DirSync {
    fn sync(&self, dir: &Path) -> Result<(), StorageError> {
        let mut state = lock(&self.state);
        let needed = state.started + 1;
        loop {
            if state.finished >= needed {
                return match &state.failure {
                    Some((number, kind, error)) if *number >= needed => {
                        Err(io_err(format!("syncing {}", dir.display()))(
                            io::Error::new(*kind, error.clone()),
                        ))
                    }
                    _ => Ok(()),
                };
            }
            if state.running {
                state = self.finished.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.running = true;
            state.started += 1;
            let number = state.started;
            drop(state);
            let result = File::open(dir).and_then(|d| d.sync_all());
            state = lock(&self.state);
            state.running = false;
            state.finished = number;
            if let Err(e) = result {
                state.failure = Some((number, e.kind(), e.to_string()));
            }
            self.finished.notify_all();
        }
    }
}

#[derive(Debug)]
enum UploadState {
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
pub struct Upload {
    storage: Arc<Storage>,
    dirs: IdentityDirs,
    fingerprint: String,
    name: String,
    key: String,
    layout: Layout,
    state: UploadState,
    chunks: BTreeMap<u64, Digest>,
    /// Writes `.part` to disk while the upload runs.
    flusher: Option<Flusher>,
    _lock: NameLock,
}

impl Upload {
    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size and chunk size.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Chunks held (verified against the stored data), ascending: pass them to
    /// `Connection::accept_upload`.
    pub fn held_chunks(&self) -> impl Iterator<Item = (u64, Digest)> + '_ {
        self.chunks.iter().map(|(index, digest)| (*index, *digest))
    }

    /// Whether an identical committed file makes the upload complete without data.
    pub fn is_already_stored(&self) -> bool {
        matches!(self.state, UploadState::AlreadyStored)
    }

    /// Writes a verified chunk at its offset and records it as held.
    pub fn store(
        &mut self,
        index: u64,
        offset: u64,
        digest: &Digest,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let end = offset.saturating_add(data.len() as u64);
        if index >= self.layout.chunks()
            || offset != self.layout.offset(index)
            || end > self.layout.size
        {
            // The core bounds chunks to the declared size; this is the storage's own check.
            return Err(StorageError::TooLarge {
                size: end,
                max: self.layout.size,
            });
        }
        let UploadState::Partial { part, held } = &mut self.state else {
            return Err(StorageError::Inconsistent(format!(
                "chunk {index} of {:?} arrived for an upload that takes no data",
                self.name
            )));
        };
        part.write_all_at(data, offset).map_err(io_err(format!(
            "writing {:?} of {}",
            self.name,
            &self.fingerprint[..16]
        )))?;
        if let Some(flusher) = self.flusher.as_mut() {
            flusher.wrote(data.len() as u64);
        }
        // The record follows the data: a record never claims data that was not written.
        if let Some(held) = held {
            held.write_all(&held_record(index, digest))
                .map_err(io_err(format!(
                    "recording {:?} of {}",
                    self.name,
                    &self.fingerprint[..16]
                )))?;
        }
        self.chunks.insert(index, *digest);
        Ok(())
    }

    /// Whether [`Upload::commit`] succeeded.
    pub fn is_committed(&self) -> bool {
        matches!(self.state, UploadState::Done)
    }

    /// Flushes the partial data and records to disk, so that the upload resumes after a
    /// crash or power loss.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
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
    pub fn commit(&mut self, digest: &Digest) -> Result<FileMeta, StorageError> {
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
                // The committed file is this file already.
                return self
                    .storage
                    .open_file(&self.fingerprint, &self.name, self.layout.chunk_size)
                    .map(|stored| stored.meta);
            }
            UploadState::Done => {
                return Err(StorageError::Inconsistent("committed twice".into()));
            }
        };
        let result = self.commit_partial(&part, &path, digest);
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

    fn commit_partial(
        &self,
        part: &File,
        path: &Path,
        digest: &Digest,
    ) -> Result<FileMeta, StorageError> {
        let part_path = self.dirs.part_path(&self.key);
        let context = || format!("committing {}", path.display());
        let md = part.metadata().map_err(io_err(context()))?;
        let meta = FileMeta {
            name: self.name.clone(),
            size: self.layout.size,
            chunk_size: self.layout.chunk_size,
            digest: hex(digest),
            modified: unix_secs(SystemTime::now()),
            inode: md.ino(),
        };
        // Before the fsync, which makes an attribute durable with the data. It names the new
        // inode, so until the rename the old file stays readable under its own metadata.
        write_meta(&self.dirs, &self.key, part, &meta)?;
        part.sync_all().map_err(io_err(context()))?;
        let files_sync = {
            let identity = self.storage.identity_lock(&self.fingerprint);
            let mut state = lock(&identity);
            let replaced = file_len(path)?;
            fs::rename(&part_path, path).map_err(io_err(context()))?;
            state.count_committed(replaced, meta.size);
            state.files_sync.clone()
        };
        // Outside the identity's lock, so that concurrent commits share the fsync.
        files_sync.sync(&self.dirs.files)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const FP2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    const CHUNK: u32 = 16;

    fn storage(quota: u64) -> (tempfile::TempDir, Arc<Storage>) {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(StorageConfig {
            root: tmp.path().join("storage"),
            quota,
            max_file_size: 1000,
            partial_expiry: Duration::from_secs(3600),
            busy_wait: Duration::ZERO,
        })
        .unwrap();
        (tmp, storage)
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Stores the chunks `indices` of `data`.
    fn store(upload: &mut Upload, data: &[u8], indices: impl IntoIterator<Item = u64>) {
        let layout = upload.layout();
        for index in indices {
            let offset = layout.offset(index);
            let chunk = &data[offset as usize..offset as usize + layout.len(index)];
            upload
                .store(index, offset, &chunk_digest(chunk), chunk)
                .unwrap();
        }
    }

    fn upload_all(storage: &Arc<Storage>, fp: &str, name: &str, data: &[u8]) -> FileMeta {
        let mut upload = storage
            .begin_upload(fp, name, data.len() as u64, CHUNK, false)
            .unwrap();
        let chunks = upload.layout().chunks();
        store(&mut upload, data, 0..chunks);
        upload.commit(&FileDigest::of(data, CHUNK)).unwrap()
    }

    #[test]
    fn upload_commit_and_read_back() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(100, 1);
        let meta = upload_all(&storage, FP, "a.txt", &bytes);
        assert_eq!(meta.size, 100);
        assert_eq!(meta.digest_bytes(), FileDigest::of(&bytes, CHUNK));
        let path = storage.file_path(FP, "a.txt").unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes);
        let stored = storage.open_file(FP, "a.txt", CHUNK).unwrap();
        assert_eq!(stored.meta, meta);
        // No partial is left behind.
        let partial = storage.dirs(FP).unwrap().partial;
        assert_eq!(fs::read_dir(partial).unwrap().count(), 0);
        assert_eq!(storage.usage(FP).unwrap(), 100);
    }

    #[test]
    fn empty_file() {
        let (_tmp, storage) = storage(10_000);
        let meta = upload_all(&storage, FP, "empty", &[]);
        assert_eq!(meta.size, 0);
        assert_eq!(
            fs::read(storage.file_path(FP, "empty").unwrap()).unwrap(),
            b""
        );
    }

    #[test]
    fn partial_records_resume_after_drop() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(100, 2); // 7 chunks of 16
        let mut upload = storage.begin_upload(FP, "r", 100, CHUNK, false).unwrap();
        assert_eq!(upload.held_chunks().count(), 0);
        store(&mut upload, &bytes, [0, 1, 2, 4]);
        upload.checkpoint().unwrap();
        drop(upload); // disconnect, or a restart: only the files remain
        let mut upload = storage.begin_upload(FP, "r", 100, CHUNK, false).unwrap();
        let held: Vec<u64> = upload.held_chunks().map(|(i, _)| i).collect();
        assert_eq!(held, [0, 1, 2, 4]);
        store(&mut upload, &bytes, [3, 5, 6]);
        upload.commit(&FileDigest::of(&bytes, CHUNK)).unwrap();
        assert_eq!(
            fs::read(storage.file_path(FP, "r").unwrap()).unwrap(),
            bytes
        );
    }

    #[test]
    fn a_one_chunk_upload_keeps_no_records_and_starts_over() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(16, 4); // exactly one chunk
        let dirs = storage.dirs(FP).unwrap();
        let mut upload = storage.begin_upload(FP, "one", 16, CHUNK, false).unwrap();
        store(&mut upload, &bytes, [0]);
        upload.checkpoint().unwrap();
        assert!(dirs.part_path(&name_key("one")).exists());
        assert!(!dirs.held_path(&name_key("one")).exists());
        drop(upload);
        let mut upload = storage.begin_upload(FP, "one", 16, CHUNK, false).unwrap();
        assert_eq!(upload.held_chunks().count(), 0);
        store(&mut upload, &bytes, [0]);
        upload.commit(&FileDigest::of(&bytes, CHUNK)).unwrap();
        assert_eq!(
            fs::read(storage.file_path(FP, "one").unwrap()).unwrap(),
            bytes
        );
        assert!(!dirs.part_path(&name_key("one")).exists());
    }

    #[test]
    fn concurrent_directory_syncs_are_shared_and_failures_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::default());
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (sync, dir) = (sync.clone(), tmp.path().to_path_buf());
                std::thread::spawn(move || (0..25).for_each(|_| sync.sync(&dir).unwrap()))
            })
            .collect();
        callers.into_iter().for_each(|c| c.join().unwrap());
        let state = lock(&sync.state);
        assert!(state.started >= 1 && state.started <= 200, "{state:?}");
        assert_eq!((state.started, state.running), (state.finished, false));
        drop(state);
        let error = sync.sync(&tmp.path().join("gone")).unwrap_err();
        assert_eq!(error.code(), ErrorCode::STORAGE);
        assert!(error.to_string().contains("syncing"), "{error}");
        // A failure is reported to the callers it covered, not to later ones.
        sync.sync(tmp.path()).unwrap();
    }

    #[test]
    fn resume_reverifies_held_chunks_against_the_data() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(64, 3);
        let mut upload = storage.begin_upload(FP, "t", 64, CHUNK, false).unwrap();
        store(&mut upload, &bytes, [0, 1, 2]);
        drop(upload);
        let dirs = storage.dirs(FP).unwrap();
        let key = name_key("t");
        // A torn write: chunk 1's data never reached the disk.
        let part = OpenOptions::new()
            .write(true)
            .open(dirs.part_path(&key))
            .unwrap();
        part.write_all_at(&[0u8; 16], 16).unwrap();
        // And a torn record at the end.
        let mut held = OpenOptions::new()
            .append(true)
            .open(dirs.held_path(&key))
            .unwrap();
        held.write_all(&[7u8; 13]).unwrap();
        let upload = storage.begin_upload(FP, "t", 64, CHUNK, false).unwrap();
        let held: Vec<u64> = upload.held_chunks().map(|(i, _)| i).collect();
        assert_eq!(held, [0, 2]);
        drop(upload);
        // The records were rewritten clean.
        let len = fs::metadata(dirs.held_path(&key)).unwrap().len();
        assert_eq!(len as usize, HELD_HEADER + 2 * HELD_RECORD);
    }

    #[test]
    fn a_partial_of_another_size_or_fresh_starts_over() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(64, 4);
        let mut upload = storage.begin_upload(FP, "s", 64, CHUNK, false).unwrap();
        store(&mut upload, &bytes, [0, 1]);
        drop(upload);
        let upload = storage.begin_upload(FP, "s", 80, CHUNK, false).unwrap();
        assert_eq!(upload.held_chunks().count(), 0);
        drop(upload);
        let mut upload = storage.begin_upload(FP, "s", 80, CHUNK, false).unwrap();
        store(&mut upload, &data(80, 5), [0]);
        drop(upload);
        let upload = storage.begin_upload(FP, "s", 80, 32, false).unwrap();
        assert_eq!(upload.held_chunks().count(), 0, "another chunk size");
        drop(upload);
        let mut upload = storage.begin_upload(FP, "s", 80, CHUNK, false).unwrap();
        store(&mut upload, &data(80, 5), [0]);
        drop(upload);
        let upload = storage.begin_upload(FP, "s", 80, CHUNK, true).unwrap();
        assert_eq!(upload.held_chunks().count(), 0, "fresh");
    }

    #[test]
    fn identical_committed_file_is_held_in_full() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(50, 6);
        let meta = upload_all(&storage, FP, "same", &bytes);
        let mut upload = storage.begin_upload(FP, "same", 50, CHUNK, false).unwrap();
        assert!(upload.is_already_stored());
        let held: Vec<(u64, Digest)> = upload.held_chunks().collect();
        let expected: Vec<(u64, Digest)> = (0..)
            .zip(bytes.chunks(CHUNK as usize).map(chunk_digest))
            .collect();
        assert_eq!(held, expected);
        assert_eq!(upload.commit(&FileDigest::of(&bytes, CHUNK)).unwrap(), meta);
        drop(upload);
        // With `fresh`, the data is sent again.
        let upload = storage.begin_upload(FP, "same", 50, CHUNK, true).unwrap();
        assert!(!upload.is_already_stored());
        assert_eq!(upload.held_chunks().count(), 0);
    }

    #[test]
    fn one_upload_per_name_and_identity() {
        let (_tmp, storage) = storage(10_000);
        let first = storage.begin_upload(FP, "x", 10, CHUNK, false).unwrap();
        assert!(matches!(
            storage.begin_upload(FP, "x", 10, CHUNK, false),
            Err(StorageError::Busy)
        ));
        // Another name, another identity: fine.
        let _y = storage.begin_upload(FP, "y", 10, CHUNK, false).unwrap();
        let _x2 = storage.begin_upload(FP2, "x", 10, CHUNK, false).unwrap();
        drop(first);
        let _again = storage.begin_upload(FP, "x", 10, CHUNK, false).unwrap();
    }

    #[test]
    fn quota_counts_files_and_partials_and_refuses_up_front() {
        let (tmp, storage) = storage(300);
        upload_all(&storage, FP, "a", &data(100, 7));
        let partial = storage.begin_upload(FP, "b", 150, CHUNK, false).unwrap();
        assert_eq!(storage.usage(FP).unwrap(), 250);
        // 250 used + 51 > 300.
        let error = storage.begin_upload(FP, "c", 51, CHUNK, false).unwrap_err();
        assert!(matches!(
            error,
            StorageError::QuotaExceeded {
                used: 250,
                requested: 51,
                quota: 300
            }
        ));
        assert_eq!(error.code(), ErrorCode::QUOTA_EXCEEDED);
        assert!(
            error
                .to_string()
                .contains("250 B used + 51 B requested > 300 B quota"),
            "{error}"
        );
        // Nothing is left behind by a refusal.
        let dirs = storage.dirs(FP).unwrap();
        assert!(!dirs.part_path(&name_key("c")).exists());
        assert!(!dirs.held_path(&name_key("c")).exists());
        let _c = storage.begin_upload(FP, "c", 50, CHUNK, false).unwrap();
        drop(partial);
        // Replacing `a` does not count the old `a`: 150 (b) + 50 (c) + 100 (new a) = 300.
        let _a = storage.begin_upload(FP, "a", 100, CHUNK, true).unwrap();
        // Another identity has its own quota.
        let _other = storage.begin_upload(FP2, "big", 300, CHUNK, false).unwrap();
        drop(tmp);
    }

    #[test]
    fn counted_usage_follows_commits_deletes_and_hand_edits() {
        let (_tmp, storage) = storage(1000);
        upload_all(&storage, FP, "a", &data(100, 1));
        upload_all(&storage, FP, "b", &data(200, 2));
        assert_eq!(storage.usage(FP).unwrap(), 300);
        // Replacing counts the new size instead of the old one.
        upload_all(&storage, FP, "a", &data(40, 3));
        assert_eq!(storage.usage(FP).unwrap(), 240);
        storage.delete(FP, "b").unwrap();
        assert_eq!(storage.usage(FP).unwrap(), 40);
        // A file put there by hand is counted once the expiry pass has run.
        let path = storage.file_path(FP, "by-hand").unwrap();
        fs::write(&path, [0u8; 500]).unwrap();
        assert_eq!(storage.usage(FP).unwrap(), 40);
        storage.expire_partials(SystemTime::now()).unwrap();
        assert_eq!(storage.usage(FP).unwrap(), 540);
        let error = storage
            .begin_upload(FP, "c", 461, CHUNK, false)
            .unwrap_err();
        assert!(matches!(
            error,
            StorageError::QuotaExceeded { used: 540, .. }
        ));
    }

    #[test]
    fn too_large_is_refused_up_front_and_data_is_bounded() {
        let (_tmp, storage) = storage(10_000);
        let error = storage
            .begin_upload(FP, "big", 1001, CHUNK, false)
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::TOO_LARGE);
        let mut upload = storage.begin_upload(FP, "small", 20, CHUNK, false).unwrap();
        // Chunk 1 is 4 bytes long: 16 bytes would go past the declared size.
        let error = upload
            .store(1, 16, &chunk_digest(&[0; 16]), &[0; 16])
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::TOO_LARGE);
        assert!(upload
            .store(2, 32, &chunk_digest(&[0; 1]), &[0; 1])
            .is_err());
    }

    #[test]
    fn commit_refuses_an_incomplete_upload() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(40, 8);
        let mut upload = storage.begin_upload(FP, "i", 40, CHUNK, false).unwrap();
        store(&mut upload, &bytes, [0, 1]);
        let error = upload.commit(&FileDigest::of(&bytes, CHUNK)).unwrap_err();
        assert_eq!(error.code(), ErrorCode::STORAGE);
        assert!(!storage.file_path(FP, "i").unwrap().exists());
        // The partial is kept and completes.
        store(&mut upload, &bytes, [2]);
        upload.commit(&FileDigest::of(&bytes, CHUNK)).unwrap();
        assert_eq!(
            fs::read(storage.file_path(FP, "i").unwrap()).unwrap(),
            bytes
        );
    }

    #[test]
    fn old_version_stays_readable_while_replaced() {
        let (_tmp, storage) = storage(10_000);
        let old = data(48, 9);
        let new = data(48, 10);
        upload_all(&storage, FP, "v", &old);
        let reader = storage.open_file(FP, "v", CHUNK).unwrap();
        let mut upload = storage.begin_upload(FP, "v", 48, CHUNK, true).unwrap();
        store(&mut upload, &new, 0..3);
        // Not committed yet: the file is the old one.
        assert_eq!(fs::read(storage.file_path(FP, "v").unwrap()).unwrap(), old);
        upload.commit(&FileDigest::of(&new, CHUNK)).unwrap();
        assert_eq!(fs::read(storage.file_path(FP, "v").unwrap()).unwrap(), new);
        // A download that opened the old version keeps reading it.
        let mut buf = vec![0; 48];
        reader.file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, old);
        assert_eq!(reader.meta.digest_bytes(), FileDigest::of(&old, CHUNK));
        let current = storage.open_file(FP, "v", CHUNK).unwrap();
        assert_eq!(current.meta.digest_bytes(), FileDigest::of(&new, CHUNK));
    }

    #[test]
    fn stale_metadata_is_recomputed() {
        let (_tmp, storage) = storage(10_000);
        upload_all(&storage, FP, "m", &data(40, 11));
        // Replaced by hand: new inode, no matching metadata.
        let path = storage.file_path(FP, "m").unwrap();
        let replacement = data(33, 12);
        let temp = path.with_file_name("m.new");
        fs::write(&temp, &replacement).unwrap();
        fs::rename(&temp, &path).unwrap();
        let stored = storage.open_file(FP, "m", CHUNK).unwrap();
        assert_eq!(stored.meta.size, 33);
        assert_eq!(
            stored.meta.digest_bytes(),
            FileDigest::of(&replacement, CHUNK)
        );
        // And it was written back.
        let again = storage.open_file(FP, "m", CHUNK).unwrap();
        assert_eq!(again.meta, stored.meta);
    }

    #[test]
    fn metadata_lives_on_the_file_or_in_meta_where_attributes_are_missing() {
        let (_tmp, storage) = storage(10_000);
        let bytes = data(40, 21);
        let committed = upload_all(&storage, FP, "x", &bytes);
        let dirs = storage.dirs(FP).unwrap();
        let file = File::open(storage.file_path(FP, "x").unwrap()).unwrap();
        let meta_file = dirs.meta_path(&name_key("x"));
        let mut buf = [0u8; META_MAX];
        match rustix::fs::fgetxattr(&file, META_XATTR, &mut buf[..]) {
            Ok(len) => {
                let meta: FileMeta = serde_json::from_slice(&buf[..len]).unwrap();
                assert_eq!(meta, committed);
                assert!(!meta_file.exists());
            }
            // A file system without user attributes (as tmpfs before Linux 6.6).
            Err(e) => {
                assert_eq!(e, rustix::io::Errno::NOTSUP);
                assert!(meta_file.exists());
            }
        }
        // Metadata in `meta/` (written where attributes were missing) is read too.
        let plain = storage.file_path(FP, "y").unwrap();
        fs::write(&plain, &bytes).unwrap();
        let ino = fs::metadata(&plain).unwrap().ino();
        let recorded = FileMeta {
            name: "y".into(),
            inode: ino,
            modified: 7,
            ..committed
        };
        fs::write(
            dirs.meta_path(&name_key("y")),
            serde_json::to_vec(&recorded).unwrap(),
        )
        .unwrap();
        assert_eq!(storage.open_file(FP, "y", CHUNK).unwrap().meta, recorded);
    }

    #[test]
    fn list_is_sorted_paged_and_isolated() {
        let (_tmp, storage) = storage(10_000);
        for name in ["b", "a", "d", "c"] {
            upload_all(&storage, FP, name, &data(5, 13));
        }
        upload_all(&storage, FP2, "other", &data(5, 14));
        // A stray file with a name no client could store is not listed.
        for stray in ["-stray", "cafe\u{301}", "tab\there"] {
            let path = storage.file_path(FP, "a").unwrap().with_file_name(stray);
            fs::write(path, b"x").unwrap();
        }
        let names = |list: Vec<FileMeta>| list.into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(
            names(storage.list(FP, "", 100, CHUNK).unwrap()),
            ["a", "b", "c", "d"]
        );
        assert_eq!(names(storage.list(FP, "a", 2, CHUNK).unwrap()), ["b", "c"]);
        assert_eq!(
            names(storage.list(FP, "d", 2, CHUNK).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(names(storage.list(FP2, "", 100, CHUNK).unwrap()), ["other"]);
        let fresh = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(storage.list(fresh, "", 100, CHUNK).unwrap().is_empty());
    }

    #[test]
    fn delete_removes_file_and_metadata() {
        let (_tmp, storage) = storage(10_000);
        upload_all(&storage, FP, "gone", &data(5, 15));
        assert!(matches!(
            storage.delete(FP2, "gone"),
            Err(StorageError::NotFound)
        ));
        storage.delete(FP, "gone").unwrap();
        assert!(!storage.file_path(FP, "gone").unwrap().exists());
        let dirs = storage.dirs(FP).unwrap();
        assert!(!dirs.meta_path(&name_key("gone")).exists());
        assert!(matches!(
            storage.delete(FP, "gone"),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            storage.open_file(FP, "gone", CHUNK),
            Err(StorageError::NotFound)
        ));
    }

    #[test]
    fn abandoned_partials_expire() {
        let (_tmp, storage) = storage(10_000);
        let mut old = storage.begin_upload(FP, "old", 32, CHUNK, false).unwrap();
        store(&mut old, &data(32, 16), [0]);
        drop(old);
        let running = storage
            .begin_upload(FP, "running", 32, CHUNK, false)
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(
            storage.expire_partials(now).unwrap(),
            0,
            "nothing is old yet"
        );
        let later = now + Duration::from_secs(3601);
        assert_eq!(
            storage.expire_partials(later).unwrap(),
            1,
            "the running one is kept"
        );
        let dirs = storage.dirs(FP).unwrap();
        assert!(!dirs.part_path(&name_key("old")).exists());
        assert!(!dirs.held_path(&name_key("old")).exists());
        assert!(dirs.part_path(&name_key("running")).exists());
        drop(running);
        assert_eq!(storage.expire_partials(later).unwrap(), 1);
        assert_eq!(storage.usage(FP).unwrap(), 0);
    }

    #[test]
    fn identities_must_be_fingerprints() {
        let (_tmp, storage) = storage(10_000);
        for fp in ["", "..", "../etc", &FP.to_uppercase(), &FP[..63]] {
            assert!(
                storage.begin_upload(fp, "a", 1, CHUNK, false).is_err(),
                "{fp}"
            );
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10 << 30), "10.0 GiB");
    }
}
