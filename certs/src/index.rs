//! `index.json`: every certificate issued from a certificate directory.
//!
//! The index keeps serial numbers unique, remembers which client names exist (so `revoke`
//! can find their serials), records revocations and holds the current CRL number.

use crate::ca::CertKind;
use crate::error::{CertError, Result};
use crate::fsutil::{write_atomic, Visibility};
use crate::x509::parse_rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// The lock file beside the index (see [`IndexLock`]).
pub const INDEX_LOCK_FILE: &str = "index.lock";

/// Current index format version.
pub const INDEX_VERSION: u32 = 1;

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Client name, `server`, or the CA's common name.
    pub name: String,
    /// CA, server or client.
    pub kind: CertKind,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub fingerprint: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// When it was revoked, RFC 3339; absent if it is not revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl IndexEntry {
    /// Whether the certificate has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// The whole index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Format version ([`INDEX_VERSION`]).
    pub version: u32,
    /// Number of the most recently written CRL (0: none yet).
    pub crl_number: u64,
    /// Issued certificates, oldest first.
    pub entries: Vec<IndexEntry>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            version: INDEX_VERSION,
            crl_number: 0,
            entries: Vec::new(),
        }
    }
}

impl Index {
    /// Reads the index; a missing file is an empty index.
    pub fn load(path: &Path) -> Result<Index> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(CertError::io(path, "read", e)),
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| CertError::Index {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        index.check().map_err(|reason| CertError::Index {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(index)
    }

    /// Writes the index atomically.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| CertError::Index {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        write_atomic(path, text.as_bytes(), Visibility::Public, true)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.version != INDEX_VERSION {
            return Err(format!(
                "unsupported version {} (expected {INDEX_VERSION})",
                self.version
            ));
        }
        let mut serials = HashSet::new();
        for e in &self.entries {
            if hex::decode(&e.serial).ok().is_none_or(|s| s.is_empty()) {
                return Err(format!(
                    "entry {:?}: serial {:?} is not hex",
                    e.name, e.serial
                ));
            }
            if !serials.insert(e.serial.to_ascii_lowercase()) {
                return Err(format!("serial {} appears twice", e.serial));
            }
            for (field, value) in [("not_before", &e.not_before), ("not_after", &e.not_after)] {
                if parse_rfc3339(value).is_none() {
                    return Err(format!(
                        "entry {:?}: {field} {value:?} is not RFC 3339",
                        e.name
                    ));
                }
            }
            if let Some(r) = &e.revoked_at {
                if parse_rfc3339(r).is_none() {
                    return Err(format!(
                        "entry {:?}: revoked_at {r:?} is not RFC 3339",
                        e.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether a serial number (hex) is already recorded.
    pub fn contains_serial(&self, serial: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.serial.eq_ignore_ascii_case(serial))
    }

    /// Adds an entry; a serial already present is an error.
    pub(crate) fn add(&mut self, entry: IndexEntry, path: &Path) -> Result<()> {
        if self.contains_serial(&entry.serial) {
            return Err(CertError::Index {
                path: path.to_path_buf(),
                reason: format!("serial {} is already recorded", entry.serial),
            });
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Whether client `name` is free, issued or revoked.
    pub fn name_status(&self, name: &str) -> NameStatus {
        let mut status = NameStatus::Free;
        for e in self.clients_named(name) {
            if !e.is_revoked() {
                return NameStatus::Active;
            }
            status = NameStatus::Revoked;
        }
        status
    }

    /// Client entries with the given name.
    pub fn clients_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a IndexEntry> {
        self.entries
            .iter()
            .filter(move |e| e.kind == CertKind::Client && e.name == name)
    }
}

/// What the index says about a client name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameStatus {
    /// Never issued.
    Free,
    /// At least one certificate of the name is not revoked.
    Active,
    /// Issued before, and every certificate of the name is revoked.
    Revoked,
}

/// An exclusive lock on a certificate directory's index, held until dropped.
///
/// Every change of the index (issuing, recording, revoking) reads, checks and writes it
/// under this lock, so that `ferry-certs` and a running web page never hand out one name
/// twice nor lose each other's entries. It is an `flock` on `index.lock` (the index itself
/// is replaced by rename on every write, so it cannot carry the lock).
#[derive(Debug)]
pub struct IndexLock {
    _file: std::fs::File,
}

impl IndexLock {
    /// Waits for and takes the lock of the index in `dir` (creating `dir/index.lock`).
    pub(crate) fn acquire(dir: &Path) -> Result<IndexLock> {
        crate::fsutil::create_dir(dir)?;
        let path = dir.join(INDEX_LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CertError::io(&path, "open", e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| CertError::io(&path, "lock", e.into()))?;
        Ok(IndexLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: &str) -> IndexEntry {
        IndexEntry {
            name: "a".into(),
            kind: CertKind::Client,
            serial: serial.into(),
            fingerprint: "00".into(),
            not_before: "2025-01-01T00:00:00Z".into(),
            not_after: "2026-01-01T00:00:00Z".into(),
            revoked_at: None,
        }
    }

    #[test]
    fn round_trip_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        assert_eq!(Index::load(&path).unwrap(), Index::default());
        let mut index = Index::default();
        index.add(entry("01ab"), &path).unwrap();
        assert!(index.add(entry("01AB"), &path).is_err());
        index.crl_number = 3;
        index.save(&path).unwrap();
        let back = Index::load(&path).unwrap();
        assert_eq!(back, index);
        assert!(back.contains_serial("01AB"));
        assert_eq!(back.clients_named("a").count(), 1);
        assert_eq!(back.clients_named("b").count(), 0);
        assert_eq!(back.name_status("a"), NameStatus::Active);
        assert_eq!(back.name_status("b"), NameStatus::Free);
        let mut revoked = back.clone();
        revoked.entries[0].revoked_at = Some("2025-06-01T00:00:00Z".into());
        assert_eq!(revoked.name_status("a"), NameStatus::Revoked);
    }

    #[test]
    fn lock_is_exclusive_across_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let held = IndexLock::acquire(dir.path()).unwrap();
        let other = std::fs::File::open(dir.path().join(INDEX_LOCK_FILE)).unwrap();
        let busy = rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        assert!(busy.is_err(), "a second lock must wait");
        drop(held);
        rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    }

    #[test]
    fn broken_index_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Index::load(&path).unwrap_err();
        assert!(
            err.to_string().contains("index.json: broken index"),
            "{err}"
        );

        let mut index = Index::default();
        index.entries.push(entry("01"));
        index.entries.push(entry("01"));
        std::fs::write(&path, serde_json::to_string(&index).unwrap()).unwrap();
        let err = Index::load(&path).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}
