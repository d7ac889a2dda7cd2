//! Quota accounting: what an identity's committed files and partial uploads use, in bytes
//! and in files.
//!
//! A partial upload is charged its declared size (`.part` is created at full size) plus the
//! largest its held-chunk journal (`.held`) can grow to: the header and one record per
//! chunk. Both are reserved when the upload begins, so an abandoned upload never holds more
//! disk than it was charged, whatever its chunk size.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use ferry_core::Layout;
use ferry_tokio::journal;

use super::dir_sync::DirSync;
use super::tree::is_absent;
use super::IdentityDirs;
use crate::storage::error::{io_err, StorageError};

/// What is kept of an identity between operations, under its lock.
#[derive(Debug, Default)]
pub(super) struct IdentityState {
    /// Bytes and number of the files in `files/`, once counted: commits and deletes keep
    /// them current, so a quota check does not stat every file. Forgotten by
    /// [`Store::expire_partials`](crate::storage::Store::expire_partials), so changes made
    /// by hand are counted again on its next run.
    pub(super) committed: Option<Usage>,
    /// Files of a batch (`Store::put_batch`) written but not yet renamed into `files/`:
    /// charged like committed files meanwhile.
    pub(super) staged: Usage,
    /// Fsyncs of `files/`, shared by concurrent commits and deletes (waited for outside
    /// the identity's lock).
    pub(super) files_sync: Arc<DirSync>,
}

/// Bytes and files charged to an identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    /// Bytes: files, partial data and the reservations of their journals.
    pub(super) bytes: u64,
    /// Committed files plus partial uploads.
    pub(super) files: u64,
}

impl Usage {
    /// Both together.
    pub(super) fn plus(self, other: Usage) -> Usage {
        Usage {
            bytes: self.bytes.saturating_add(other.bytes),
            files: self.files.saturating_add(other.files),
        }
    }

    /// `self` without `other`.
    pub(super) fn minus(self, other: Usage) -> Usage {
        Usage {
            bytes: self.bytes.saturating_sub(other.bytes),
            files: self.files.saturating_sub(other.files),
        }
    }
}

impl IdentityState {
    /// A committed file of `old` bytes (`None`: none) became one of `new` bytes (`None`:
    /// deleted).
    pub(super) fn count_committed(&mut self, old: Option<u64>, new: Option<u64>) {
        if let Some(usage) = self.committed.as_mut() {
            usage.bytes = usage
                .bytes
                .saturating_sub(old.unwrap_or(0))
                .saturating_add(new.unwrap_or(0));
            usage.files = usage
                .files
                .saturating_sub(u64::from(old.is_some()))
                .saturating_add(u64::from(new.is_some()));
        }
    }
}

/// The bytes a partial upload of `layout` reserves for its held-chunk journal: none for one
/// chunk (it keeps no journal), else the header and a record per chunk.
pub(super) fn journal_reservation(layout: Layout) -> u64 {
    if layout.chunks() <= 1 {
        return 0;
    }
    (journal::HEADER_LEN as u64)
        .saturating_add(layout.chunks().saturating_mul(journal::RECORD_LEN as u64))
}

/// Usage of an identity, not counting `exclude`'s committed file and partial upload: the
/// `committed` files (counted, see [`IdentityState::committed`]) plus what is in `partial/`
/// (few: only running or abandoned uploads).
pub(super) fn usage(
    dirs: &IdentityDirs,
    committed: Usage,
    exclude: Option<(&str, &str)>,
) -> Result<Usage, StorageError> {
    let (excluded_bytes, excluded_files) = match exclude {
        Some((name, _)) => match file_len(&dirs.files.join(name))? {
            Some(len) => (len, 1),
            None => (0, 0),
        },
        None => (0, 0),
    };
    let own_key = exclude.map(|(_, key)| key);
    let partial = partial_usage(&dirs.partial, own_key)?;
    Ok(Usage {
        bytes: committed
            .bytes
            .saturating_sub(excluded_bytes)
            .saturating_add(partial.bytes),
        files: committed
            .files
            .saturating_sub(excluded_files)
            .saturating_add(partial.files),
    })
}

/// What the partial uploads in `partial/` use, but the one of key `exclude`: each `.part`
/// its length and one file, each `.held` the larger of its length and its reservation.
fn partial_usage(dir: &Path, exclude: Option<&str>) -> Result<Usage, StorageError> {
    let mut usage = Usage::default();
    for_each_entry(dir, |file_name, path| {
        let Some((key, suffix)) = file_name.split_once('.') else {
            return Ok(());
        };
        if exclude == Some(key) {
            return Ok(());
        }
        let bytes = match suffix {
            "part" => {
                usage.files += 1;
                file_len(path)?.unwrap_or(0)
            }
            "held" => held_charge(path)?,
            _ => 0,
        };
        usage.bytes = usage.bytes.saturating_add(bytes);
        Ok(())
    })?;
    Ok(usage)
}

/// Calls `each(file name, path)` for the entries of `dir`; nothing if it is missing.
fn for_each_entry(
    dir: &Path,
    mut each: impl FnMut(&str, &Path) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
        each(&entry.file_name().to_string_lossy(), &entry.path())?;
    }
    Ok(())
}

/// A journal's charge: the larger of its length and the reservation its header declares.
fn held_charge(path: &Path) -> Result<u64, StorageError> {
    let Some(len) = file_len(path)? else {
        return Ok(0);
    };
    let mut header = [0u8; journal::HEADER_LEN];
    let read = File::open(path).and_then(|mut file| file.read_exact(&mut header));
    let reserved = match read {
        Ok(()) => header_layout(&header).map_or(0, journal_reservation),
        Err(_) => 0, // cut short or gone: its length is what it holds
    };
    Ok(len.max(reserved))
}

/// The layout a journal header declares (see `ferry_tokio::journal`).
fn header_layout(header: &[u8; journal::HEADER_LEN]) -> Option<Layout> {
    if &header[..8] != b"FRYHELD1" {
        return None;
    }
    let chunk_size = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let size = u64::from_le_bytes(header[16..24].try_into().ok()?);
    (chunk_size > 0).then_some(Layout { size, chunk_size })
}

/// The size of a regular file, `None` if there is none at `path`.
pub(super) fn file_len(path: &Path) -> Result<Option<u64>, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_file() => Ok(Some(md.len())),
        Ok(_) => Ok(None),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}
