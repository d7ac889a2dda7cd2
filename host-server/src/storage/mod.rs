//! The storage seam: the server reaches committed files, partial uploads, their metadata
//! and the quota only through [`Store`], [`Upload`] and [`StoredFile`]. [`LocalStore`]
//! implements them on a local file system (see [`local`] for its layout and durability),
//! [`S3Store`] on an S3 bucket with the metadata in PostgreSQL, shared by several servers
//! (see [`s3`]); [`open_store`] opens the one `--store` names.
//!
//! The traits are shaped for an object store too (several servers sharing one store, an
//! upload cut on one server resumed on another):
//!
//! - an upload is a handle that outlives a connection's interest in it only as stored
//!   state: [`Store::begin_upload`] resumes from whatever chunks the store holds and has
//!   verified, [`Upload::store`] writes one chunk at its offset (streamed writes: a backend
//!   may buffer them into parts), [`Upload::checkpoint`] makes the held chunks durable,
//!   [`Upload::commit`] publishes the verified file atomically, optionally only if the name
//!   is absent or still holds a given digest ([`Precondition`]), and [`Upload::abort`]
//!   drops it;
//! - a download reads ranges of one version ([`StoredFile::read_exact_at`]), which stays
//!   readable while the name is replaced;
//! - listing takes a prefix and a start-after cursor, and every read and list returns
//!   [`FileMeta`] (size, chunk size, digest, modified).
//!
//! **Synchronous on purpose.** The session calls every operation that may wait for a disk
//! or the network (begin, commit, checkpoint, list, delete, usage, expiry) on tokio's
//! blocking pool, where a backend may block (an object store backend blocks on its own
//! runtime handle there). [`Upload::store`] and [`StoredFile::read_exact_at`] are called
//! inline with the chunk borrowed from the connection, so that a chunk is never copied:
//! they must stay short (a `pwrite`/`pread` to the page cache here; an object store
//! backend would hand full parts to a task of its own).

mod error;
pub mod local;
mod open;
pub mod s3;

use std::time::Duration;

use ferry_core::{chunk_digest, Digest, FileAttrs, Layout};
use serde::{Deserialize, Serialize};

pub use error::StorageError;
pub use local::{name_key, LocalStore, Migration, StorageConfig};
pub use open::open_store;
pub use s3::{S3Config, S3Store};

/// The limits every store enforces, from the server's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes each identity may use (committed files plus partial uploads).
    pub quota: u64,
    /// Files each identity may hold (committed files plus partial uploads).
    pub max_files: u64,
    /// Bytes the web page's identities (`web-*`) may use together.
    pub web_quota: u64,
    /// Largest file.
    pub max_file_size: u64,
    /// Partial uploads untouched for this long are removed by [`Store::expire_partials`].
    pub partial_expiry: Duration,
    /// How long an upload waits for another upload of the same identity and name to end
    /// before it is refused with `BUSY` (covers a client that reconnects before the server
    /// has seen its old connection close).
    pub busy_wait: Duration,
}

impl StoreLimits {
    /// Refuses a file larger than [`StoreLimits::max_file_size`].
    pub fn check_size(&self, size: u64) -> Result<(), StorageError> {
        if size > self.max_file_size {
            return Err(StorageError::TooLarge {
                size,
                max: self.max_file_size,
            });
        }
        Ok(())
    }
}

/// The storage's own check of a chunk the core bounded already: its index, offset and end
/// within `layout` (refused as [`StorageError::TooLarge`]).
pub(crate) fn check_chunk(
    layout: Layout,
    index: u64,
    offset: u64,
    len: usize,
) -> Result<(), StorageError> {
    let end = offset.saturating_add(len as u64);
    if index >= layout.chunks() || offset != layout.offset(index) || end > layout.size {
        return Err(StorageError::TooLarge {
            size: end,
            max: layout.size,
        });
    }
    Ok(())
}

/// A store of files, one namespace per client identity (`client`: the client name the CA
/// issued, `ClientIdentity::name`, which stays the same when its certificate is renewed).
/// Names are validated and NFC-normalised by the caller.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Starts or resumes an upload of `name` of `size` bytes in chunks of `chunk_size`:
    /// checks the size limit, takes the name (one upload per identity and name), resumes
    /// a partial upload of the same layout (unless `fresh`, which drops it), or offers every
    /// chunk of an identical committed file, or checks the quota and reserves `size`.
    fn begin_upload(
        &self,
        client: &str,
        name: &str,
        size: u64,
        chunk_size: u32,
        fresh: bool,
    ) -> Result<Box<dyn Upload>, StorageError>;

    /// Opens the current version of a committed file for ranged reads. Metadata that is
    /// missing or stale is recomputed (the digest with `chunk_size`).
    fn open(
        &self,
        client: &str,
        name: &str,
        chunk_size: u32,
    ) -> Result<Box<dyn StoredFile>, StorageError>;

    /// Committed files whose names start with `prefix` and sort after `start_after`, in
    /// name order, at most `limit`.
    fn list(
        &self,
        client: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
        chunk_size: u32,
    ) -> Result<Vec<FileMeta>, StorageError>;

    /// One level of the tree below `prefix` (empty, or ending in `/`), in name order after
    /// `start_after`, at most `limit` items: the files directly in it and, unless
    /// `recursive`, each folder once (its name ends in `/`; folders are implied by the files
    /// below them, as in an object store). `recursive` lists every file below `prefix`
    /// instead, folders not shown. A `start_after` that ends in `/` skips that folder whole.
    fn list_tree(
        &self,
        client: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
        recursive: bool,
        chunk_size: u32,
    ) -> Result<Vec<ListItem>, StorageError> {
        let mut items = Vec::new();
        let mut cursor = start_after.to_string();
        while items.len() < limit {
            let after = folder_end(&cursor);
            let page = self.list(client, prefix, &after, limit - items.len(), chunk_size)?;
            let Some(last) = page.last() else { break };
            cursor = last.name.clone();
            for meta in page {
                let rest = &meta.name[prefix.len()..];
                match rest.find('/').filter(|_| !recursive) {
                    None => items.push(ListItem::File(meta)),
                    Some(slash) => {
                        let folder = format!("{prefix}{}", &rest[..=slash]);
                        cursor = folder.clone();
                        items.push(ListItem::Folder(folder));
                        break;
                    }
                }
            }
        }
        Ok(items)
    }

    /// Commits small files that arrived whole, each verified by the caller against `digest`,
    /// as one batch: a backend may make them durable together (one flush for the batch)
    /// before any is reported. Results come in the order of `items`. The default commits
    /// them one by one as uploads.
    fn put_batch(&self, client: &str, items: Vec<PutItem>) -> Vec<Result<FileMeta, StorageError>> {
        items
            .into_iter()
            .map(|item| put_as_upload(self, client, item))
            .collect()
    }

    /// Deletes a committed file and its metadata ([`StorageError::NotFound`] if none).
    fn delete(&self, client: &str, name: &str) -> Result<(), StorageError>;

    /// Bytes charged to an identity: committed files plus reserved partial uploads.
    fn usage(&self, client: &str) -> Result<u64, StorageError>;

    /// How long a partial upload may stay untouched before [`Store::expire_partials`]
    /// removes it.
    fn partial_expiry(&self) -> Duration;

    /// Removes partial uploads untouched for longer than [`Store::partial_expiry`] at `now`,
    /// skipping running ones. Returns how many were removed.
    fn expire_partials(&self, now: std::time::SystemTime) -> Result<usize, StorageError>;

    /// Checks the services the store depends on beyond its local directory (a database, an
    /// object store) for `/readyz`: what was found, or `None` if there are none. Blocks.
    fn probe(&self) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
}

/// An upload in progress. It holds its name (no other upload of the same identity and
/// name runs) until dropped; dropping it keeps the stored chunks for a resume.
pub trait Upload: Send + Sync + std::fmt::Debug {
    /// The file name.
    fn name(&self) -> &str;

    /// Size and chunk size.
    fn layout(&self) -> Layout;

    /// Chunks held (verified against the stored data), ascending: pass them to
    /// `Connection::accept_upload`.
    fn held_chunks(&self) -> Box<dyn Iterator<Item = (u64, Digest)> + '_>;

    /// Whether an identical committed file makes the upload complete without data.
    fn is_already_stored(&self) -> bool;

    /// Writes a verified chunk at its offset and records it as held.
    fn store(
        &mut self,
        index: u64,
        offset: u64,
        digest: &Digest,
        data: &[u8],
    ) -> Result<(), StorageError>;

    /// What the client said about the file (modification time, mode): recorded with it by
    /// [`Upload::commit`], also when an identical file is already stored.
    fn set_attributes(&mut self, attrs: FileAttrs);

    /// Makes the chunks stored so far durable, so that the upload resumes after a crash.
    fn checkpoint(&self) -> Result<(), StorageError>;

    /// Whether the session should call [`Upload::checkpoint`] (on the blocking pool) before
    /// it acknowledges the chunk just stored: an object store backend says so when a part
    /// is full, so that the part is sent and recorded before more data is taken (which
    /// bounds what a cut loses to one part, and the memory an upload holds). Local files
    /// never ask.
    fn wants_checkpoint(&self) -> bool {
        false
    }

    /// Publishes the verified file under its name, atomically and durably, if `condition`
    /// holds. `digest` is the whole-file digest the core verified; the recorded chunks must
    /// make it up. On failure the upload stays as it was, for a retry.
    fn commit(
        &mut self,
        digest: &Digest,
        condition: Precondition,
    ) -> Result<FileMeta, StorageError>;

    /// Whether [`Upload::commit`] succeeded.
    fn is_committed(&self) -> bool;

    /// Gives the upload up: its stored chunks are removed and its reservation released.
    fn abort(self: Box<Self>) -> Result<(), StorageError>;
}

/// One version of a committed file, opened for reading: it stays readable while the name
/// is replaced or deleted.
pub trait StoredFile: Send + Sync + std::fmt::Debug {
    /// Its metadata.
    fn meta(&self) -> &FileMeta;

    /// Fills `buf` from `offset`. Called inline on the session's task: it must not wait for
    /// the network (see [`StoredFile::needs_fetch`]).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;

    /// Whether `len` bytes at `offset` must be fetched (by [`StoredFile::fetch`], on the
    /// blocking pool) before [`StoredFile::read_exact_at`] can serve them: an object store
    /// backend reads ahead in ranges. Local files never need it.
    fn needs_fetch(&self, _offset: u64, _len: usize) -> bool {
        false
    }

    /// Fetches at least `len` bytes at `offset` (and may read ahead), so that
    /// [`StoredFile::read_exact_at`] serves them without waiting.
    fn fetch(&mut self, _offset: u64, _len: usize) -> std::io::Result<()> {
        Ok(())
    }
}

/// When a commit may replace what the name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    /// Always: the upload replaces any file of the name.
    #[default]
    None,
    /// Only if the name holds no file (create only).
    Absent,
    /// Only if the name holds a file with this whole-file digest (as recorded in its
    /// [`FileMeta`], computed with the chunk size recorded there).
    Digest(Digest),
}

/// A small file that arrived whole (see [`Store::put_batch`]).
#[derive(Debug, Clone)]
pub struct PutItem {
    /// The file name.
    pub name: String,
    /// All of its bytes.
    pub data: Vec<u8>,
    /// The chunk size its digest is computed with.
    pub chunk_size: u32,
    /// Its whole-file digest (ferry-core's `FileDigest`), already verified.
    pub digest: Digest,
    /// What the client said about it.
    pub attrs: FileAttrs,
}

/// One entry of [`Store::list_tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListItem {
    /// A committed file.
    File(FileMeta),
    /// A folder: the full prefix, ending in `/`.
    Folder(String),
}

/// The cursor that lists after `start_after`, past the whole folder if it names one.
fn folder_end(start_after: &str) -> String {
    if start_after.ends_with('/') {
        // Every name in the folder starts with it; char::MAX sorts after all of them.
        format!("{start_after}{}", char::MAX)
    } else {
        start_after.to_string()
    }
}

/// [`Store::put_batch`] for one item, through an ordinary upload.
fn put_as_upload<S: Store + ?Sized>(
    store: &S,
    client: &str,
    item: PutItem,
) -> Result<FileMeta, StorageError> {
    let size = item.data.len() as u64;
    let mut upload = store.begin_upload(client, &item.name, size, item.chunk_size, false)?;
    upload.set_attributes(item.attrs);
    if !upload.is_already_stored() {
        let layout = upload.layout();
        for index in 0..layout.chunks() {
            let offset = layout.offset(index);
            let len = layout.len(index);
            let data = &item.data[offset as usize..offset as usize + len];
            upload.store(index, offset, &chunk_digest(data), data)?;
        }
    }
    upload.commit(&item.digest, Precondition::None)
}

/// What is known of a committed file: returned with every read, list and commit.
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
    /// Modification time, seconds since the Unix epoch: the client's, if it gave one,
    /// else the commit time.
    pub modified: u64,
    /// Unix permission bits the client gave, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Inode of the data file this describes.
    pub inode: u64,
}

impl FileMeta {
    /// The digest as bytes.
    pub fn digest_bytes(&self) -> Digest {
        parse_digest(&self.digest).unwrap_or_default()
    }
}

/// Parses a 64-digit hex SHA-256.
pub fn parse_digest(text: &str) -> Option<Digest> {
    text.parse().ok()
}
