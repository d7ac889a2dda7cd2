//! Moving storage directories of the earlier layout, named by the hex SHA-256 of a client's
//! public key, under the client's name.
//!
//! Each step is one `rename`, so a crash leaves every file either in the old directory or
//! in the new one, and running the migration again finishes the job. Nothing is deleted
//! but empty directories: a file whose name the client's directory already holds stays in
//! the old directory, with a warning naming it.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use ferry_certs::{CertKind, Index};

use super::{create_private_dir, is_hex64, LocalStore};
use crate::storage::error::{io_err, StorageError};

/// What [`LocalStore::migrate_key_dirs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    /// (key, client name) of each old directory moved or merged under the name.
    pub moved: Vec<(String, String)>,
    /// Files left in an old directory because the client's directory has one of that name.
    pub kept: Vec<PathBuf>,
    /// Old directories left in place: no certificate in the index has their key, or
    /// certificates of several names do.
    pub left: Vec<String>,
}

impl LocalStore {
    /// Moves every `STORAGE/<64 hex>/` directory whose key the CA's index knows (any client
    /// certificate, revoked or not) to `STORAGE/<name>/`: a rename of the whole directory,
    /// or, if the name's directory exists, of each file into it. Directories of unknown
    /// keys are left in place, with one warning. Call it before serving.
    pub fn migrate_key_dirs(&self, index: &Index) -> Result<Migration, StorageError> {
        let root = &self.config.root;
        let mut names: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for e in index.entries.iter().filter(|e| e.kind == CertKind::Client) {
            names.entry(&e.fingerprint).or_default().insert(&e.name);
        }
        let listing = || format!("listing {}", root.display());
        let mut old_dirs = Vec::new();
        for entry in fs::read_dir(root).map_err(io_err(listing()))? {
            let entry = entry.map_err(io_err(listing()))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match entry.file_name().into_string() {
                Ok(key) if is_dir && is_hex64(&key) => old_dirs.push(key),
                _ => {}
            }
        }
        old_dirs.sort();
        let mut report = Migration::default();
        for key in old_dirs {
            let old = root.join(&key);
            let client = match names.get(key.as_str()) {
                Some(clients) if clients.len() == 1 => *clients.first().expect("one name"),
                Some(clients) => {
                    tracing::warn!(
                        "storage migration: {} left in place: its key belongs to several client names ({})",
                        old.display(),
                        clients.iter().copied().collect::<Vec<_>>().join(", ")
                    );
                    report.left.push(key);
                    continue;
                }
                None => {
                    report.left.push(key);
                    continue;
                }
            };
            if client == key {
                continue; // a client named like its own key: already in place
            }
            let target = root.join(client);
            match fs::symlink_metadata(&target) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::rename(&old, &target).map_err(io_err(format!(
                        "moving {} to {}",
                        old.display(),
                        target.display()
                    )))?;
                    tracing::info!(
                        "storage migration: moved {} to {} (client {client})",
                        old.display(),
                        target.display()
                    );
                }
                Ok(md) if md.is_dir() => {
                    tracing::info!(
                        "storage migration: merging {} into {} (client {client})",
                        old.display(),
                        target.display()
                    );
                    merge_into(&old, &target, &mut report.kept)?;
                }
                Ok(_) => {
                    tracing::warn!(
                        "storage migration: {} left in place: {} is not a directory",
                        old.display(),
                        target.display()
                    );
                    report.left.push(key);
                    continue;
                }
                Err(e) => return Err(io_err(format!("reading {}", target.display()))(e)),
            }
            report.moved.push((key, client.to_string()));
        }
        if !report.moved.is_empty() {
            sync_dir(root)?;
        }
        let unknown: Vec<&str> = report
            .left
            .iter()
            .map(String::as_str)
            .filter(|key| !names.contains_key(key))
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(
                "storage migration: {} director{} in {} named by a key that no certificate in the CA's index has, left in place: {}",
                unknown.len(),
                if unknown.len() == 1 { "y" } else { "ies" },
                root.display(),
                unknown.join(", ")
            );
        }
        Ok(report)
    }
}

/// Moves every entry of `old` (files, and the files of its subdirectories `files/`, `meta/`,
/// `partial/`) into the same place under `target`, never over an existing one; then removes
/// the directories it emptied.
fn merge_into(old: &Path, target: &Path, kept: &mut Vec<PathBuf>) -> Result<(), StorageError> {
    for entry in read_sorted(old)? {
        let dest = target.join(entry.file_name().unwrap_or_default());
        if fs::symlink_metadata(&entry).is_ok_and(|md| md.is_dir()) {
            create_private_dir(&dest)?;
            merge_into(&entry, &dest, kept)?;
            continue;
        }
        if fs::symlink_metadata(&dest).is_ok() {
            tracing::warn!(
                "storage migration: kept {} where it is: {} already exists (both are kept)",
                entry.display(),
                dest.display()
            );
            kept.push(entry);
            continue;
        }
        fs::rename(&entry, &dest).map_err(io_err(format!(
            "moving {} to {}",
            entry.display(),
            dest.display()
        )))?;
        tracing::info!(
            "storage migration: moved {} to {}",
            entry.display(),
            dest.display()
        );
    }
    sync_dir(target)?;
    // Fails, harmlessly, while a kept file remains.
    let _ = fs::remove_dir(old);
    Ok(())
}

fn read_sorted(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let context = || format!("listing {}", dir.display());
    let mut entries = fs::read_dir(dir)
        .map_err(io_err(context()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_err(context()))?;
    entries.sort();
    Ok(entries)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", dir.display())))
}
