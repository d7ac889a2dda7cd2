//! Committed files and their metadata: opening one version for reading, the metadata kept
//! in an extended attribute (or `meta/<key>.json` without them), recomputing it from the
//! data when it is missing or stale, and the chunks of an identical committed file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use ferry_core::{chunk_digest, Digest, FileDigest, Layout};

use super::quota::IdentityState;
use super::tree::is_absent;
use super::{lock, name_key, unix_secs, IdentityDirs};
use crate::storage::error::{io_err, StorageError};
use crate::storage::{parse_digest, FileMeta, StoredFile};

/// A committed file opened for reading, with its metadata. The handle keeps this version
/// readable even if the file is replaced meanwhile.
#[derive(Debug)]
pub(super) struct LocalFile {
    pub(super) file: File,
    pub(super) meta: FileMeta,
}

impl StoredFile for LocalFile {
    fn meta(&self) -> &FileMeta {
        &self.meta
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// Opens the committed file `name`; its metadata is repaired if stale (digest recomputed
/// with `chunk_size`).
pub(super) fn open_file(
    dirs: &IdentityDirs,
    identity: &Mutex<IdentityState>,
    name: &str,
    chunk_size: u32,
) -> Result<LocalFile, StorageError> {
    let path = dirs.files.join(name);
    if let Some(stored) = open_with_meta(dirs, &path, name, &name_key(name))? {
        return Ok(stored);
    }
    // Stale or missing metadata: look again under the identity's lock (a commit may be
    // between its metadata write and its rename), then recompute.
    let _guard = lock(identity);
    open_file_locked(dirs, name, chunk_size)
}

/// [`open_file`] for a caller that holds the identity's lock.
pub(super) fn open_file_locked(
    dirs: &IdentityDirs,
    name: &str,
    chunk_size: u32,
) -> Result<LocalFile, StorageError> {
    let key = name_key(name);
    let path = dirs.files.join(name);
    if let Some(stored) = open_with_meta(dirs, &path, name, &key)? {
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
        digest: digest.finish().to_string(),
        modified: md.modified().map(unix_secs).unwrap_or(0),
        mode: None,
        inode: md.ino(),
    };
    write_meta(dirs, &key, &file, &meta)?;
    tracing::warn!(
        "{}: metadata was missing or stale, recomputed from the data",
        path.display()
    );
    Ok(LocalFile { file, meta })
}

/// The chunk digests of a committed file of exactly `layout.size` bytes, hashed from its
/// data, or `None` if there is no such file.
pub(super) fn committed_chunks(
    path: &Path,
    layout: Layout,
) -> Result<Option<BTreeMap<u64, Digest>>, StorageError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if is_absent(&e) => return Ok(None),
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
        Err(e) if is_absent(&e) => Err(StorageError::NotFound),
        Err(e) => Err(io_err(format!("opening {}", path.display()))(e)),
    }
}

/// The extended attribute that holds a committed file's [`FileMeta`] (JSON).
pub(super) const META_XATTR: &str = "user.ferry.meta";
/// Room for a `FileMeta`: a 255-byte name escaped at worst, a digest and some numbers.
pub(super) const META_MAX: usize = 4096;

/// Opens a committed file and reads its metadata; `None` if the metadata is missing or
/// describes another version.
fn open_with_meta(
    dirs: &IdentityDirs,
    path: &Path,
    name: &str,
    key: &str,
) -> Result<Option<LocalFile>, StorageError> {
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
    Ok(current.then_some(LocalFile { file, meta }))
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
pub(super) fn write_meta(
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
