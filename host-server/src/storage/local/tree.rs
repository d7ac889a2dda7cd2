//! Nested names on the file system: `files/<a>/<b>/<c>` with real directories. Directories
//! are implied by the files below them: a commit creates the ones its name needs (each new
//! one made durable in its parent), a delete removes the ones it leaves empty. One walk of
//! `files/` counts an identity's usage and builds its name index together.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::create_private_dir;
use super::dir_sync::DirSync;
use super::quota::Usage;
use crate::names::{validate_name, MAX_COMPONENTS};
use crate::storage::error::{io_err, StorageError};

/// Whether an I/O error means "no such file": a missing entry, or a path through a file.
pub(super) fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Refuses `name` if a folder of its path is a file (`a` is a file and `a/b` comes), or if it
/// is a folder itself (`a/b` exists and `a` comes). The caller holds the identity's lock for a
/// commit; a check without it only refuses early.
pub(super) fn check_conflict(files: &Path, name: &str) -> Result<(), StorageError> {
    let mut path = files.to_path_buf();
    let components: Vec<&str> = name.split('/').collect();
    let (last, folders) = components.split_last().expect("split yields one item");
    for (depth, folder) in folders.iter().enumerate() {
        path.push(folder);
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(StorageError::NameConflict {
                    name: name.to_string(),
                    reason: format!("its folder {:?} is a file", components[..=depth].join("/")),
                })
            }
            Err(e) if is_absent(&e) => return Ok(()),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }
    path.push(last);
    match fs::symlink_metadata(&path) {
        Ok(md) if md.is_dir() => Err(StorageError::NameConflict {
            name: name.to_string(),
            reason: "it is a folder".into(),
        }),
        Ok(_) => Ok(()),
        Err(e) if is_absent(&e) => Ok(()),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}

/// Creates the missing folders of `name` below `files` (mode 0700) and returns the
/// directories whose entries changed: the parent of each new folder. The caller syncs them
/// (and the file's own directory after its rename) before the commit is reported.
pub(super) fn create_folders(files: &Path, name: &str) -> Result<Vec<PathBuf>, StorageError> {
    let mut changed = Vec::new();
    let Some((folders, _)) = name.rsplit_once('/') else {
        return Ok(changed);
    };
    let mut path = files.to_path_buf();
    for folder in folders.split('/') {
        let parent = path.clone();
        path.push(folder);
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => continue,
            Ok(_) => {
                return Err(StorageError::NameConflict {
                    name: name.to_string(),
                    reason: format!("its folder {folder:?} is a file"),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        }
        create_private_dir(&path)?;
        changed.push(parent);
    }
    Ok(changed)
}

/// The directory that holds the committed file `name`.
pub(super) fn parent_dir(files: &Path, name: &str) -> PathBuf {
    match name.rsplit_once('/') {
        Some((folders, _)) => files.join(folders),
        None => files.to_path_buf(),
    }
}

/// Removes the folders of `name` that are empty now, deepest first, never `files/` itself;
/// returns the deepest directory left, whose entries changed (sync it).
pub(super) fn remove_empty_folders(files: &Path, name: &str) -> PathBuf {
    let mut dir = parent_dir(files, name);
    while dir != files && dir.starts_with(files) {
        // Fails on a folder that still holds something (or one a commit just made use of:
        // commits and deletes hold the identity's lock).
        if fs::remove_dir(&dir).is_err() {
            break;
        }
        dir.pop();
    }
    dir
}

/// Fsyncs each directory once: `files/` through its fsync shared by concurrent commits and
/// deletes, the folders below it directly.
pub(super) fn sync_changed(
    files_sync: &DirSync,
    files: &Path,
    dirs: impl IntoIterator<Item = PathBuf>,
) -> Result<(), StorageError> {
    let mut done = HashSet::new();
    for dir in dirs {
        if !done.insert(dir.clone()) {
            continue;
        }
        if dir == files {
            files_sync.sync(files)?;
        } else {
            fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(format!("syncing {}", dir.display())))?;
        }
    }
    Ok(())
}

/// One walk of `files/`: the names a client could have stored (valid, NFC, no symbolic
/// links) and what every regular file below it uses.
pub(super) fn walk(files: &Path) -> Result<(BTreeSet<String>, Usage), StorageError> {
    let mut names = BTreeSet::new();
    let mut usage = Usage::default();
    let mut pending = vec![(files.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        let context = || format!("listing {}", dir.display());
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(context())(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(context()))?;
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let file_name = entry.file_name();
            let name = file_name
                .to_str()
                .map(|component| format!("{prefix}{component}"));
            if file_type.is_dir() {
                if let Some(name) = name.filter(|_| depth + 1 < MAX_COMPONENTS) {
                    pending.push((entry.path(), format!("{name}/"), depth + 1));
                }
            } else if file_type.is_file() {
                let len = entry.metadata().map_err(io_err(context()))?.len();
                usage.bytes = usage.bytes.saturating_add(len);
                usage.files += 1;
                if let Some(name) = name.filter(|n| validate_name(n).is_ok_and(|v| v == *n)) {
                    names.insert(name);
                }
            }
        }
    }
    Ok((names, usage))
}
