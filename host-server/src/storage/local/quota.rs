//! Quota accounting: what an identity's committed files and reserved partial uploads use.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::dir_sync::DirSync;
use super::IdentityDirs;
use crate::storage::error::{io_err, StorageError};

/// What is kept of an identity between operations, under its lock.
#[derive(Debug, Default)]
pub(super) struct IdentityState {
    /// Bytes in `files/`, once counted: commits and deletes keep it current, so a quota
    /// check does not stat every file. Forgotten by [`Store::expire_partials`](crate::storage::Store::expire_partials), so changes
    /// made by hand are counted again on its next run.
    pub(super) committed_bytes: Option<u64>,
    /// Fsyncs of `files/`, shared by concurrent commits and deletes (waited for outside
    /// the identity's lock).
    pub(super) files_sync: Arc<DirSync>,
}

impl IdentityState {
    /// A committed file of `old` bytes became one of `new` bytes (0: none).
    pub(super) fn count_committed(&mut self, old: u64, new: u64) {
        if let Some(bytes) = self.committed_bytes.as_mut() {
            *bytes = bytes.saturating_sub(old).saturating_add(new);
        }
    }
}

/// Usage of an identity, not counting `exclude`'s committed file and partial: the counted
/// bytes of `files/` plus the `.part` files (few: only running or abandoned uploads).
pub(super) fn usage(
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
pub(super) fn file_len(path: &Path) -> Result<u64, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_file() => Ok(md.len()),
        Ok(_) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}
