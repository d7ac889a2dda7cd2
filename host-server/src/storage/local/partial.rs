//! Partial uploads: the data (`.part`, written at chunk offsets) and its held-chunk journal
//! (`.held`, the `ferry_tokio::journal` format with an empty name: the path names it).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use ferry_core::{Digest, Layout};
use ferry_tokio::journal;

use super::private_file;
use crate::storage::error::{io_err, StorageError};

/// Removes a partial upload's journal, then its data (either may be missing).
pub(super) fn remove_partial(part: &Path, held: &Path) -> Result<(), StorageError> {
    for path in [held, part] {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", path.display()))(e)),
        }
    }
    Ok(())
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
    let bytes = journal::encode(
        layout,
        "",
        records.iter().map(|(index, digest)| (*index, digest)),
    );
    temp.write_all(&bytes).map_err(io_err(context()))?;
    temp.as_file().sync_all().map_err(io_err(context()))?;
    temp.persist(path).map_err(|e| io_err(context())(e.error))?;
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(context()))
}

/// Creates the data of a new partial upload at its full size and, for more than one chunk,
/// its journal; returns them open for writing.
pub(super) fn create_partial(
    part_path: &Path,
    held_path: &Path,
    layout: Layout,
) -> Result<(File, Option<File>), StorageError> {
    let context = || format!("creating {}", part_path.display());
    let part = private_file()
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
    let mut held = private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(held_path)
        .map_err(io_err(format!("creating {}", held_path.display())))?;
    held.write_all(&journal::header(layout, ""))
        .map_err(io_err(format!("writing {}", held_path.display())))?;
    Ok((part, Some(held)))
}

/// Loads a partial upload of `layout`, keeping only records whose data in `.part` matches.
/// A partial of another size or chunk size, or an unreadable one, is removed.
#[allow(clippy::type_complexity)]
pub(super) fn load_partial(
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
    let Some(journal) = journal::parse(&bytes).filter(|journal| journal.layout == layout) else {
        remove_partial(part_path, held_path)?;
        return Ok(None);
    };
    let part = match OpenOptions::new().read(true).write(true).open(part_path) {
        Ok(part) => part,
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
    // Check every record against the data: only chunks that read back intact are held.
    let verified = journal::verified(&journal.records, &part, layout).map_err(io_err(context()))?;
    let records = journal.records;
    let clean = journal.clean && verified.len() == records.len();
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
