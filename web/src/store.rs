//! State on disk: JSON records in a directory of the state directory, one file per key.
//! Sessions live in `sessions/`, named by the SHA-256 of the cookie secret (the secret itself
//! is never written), holding the session's identity (certificate, private key, CA) and CSRF
//! token; resumable uploads live in `uploads/`. Directories are 0700, files 0600, and every
//! record is written to a temporary file and renamed into place.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What is kept of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The certificate's name.
    pub name: String,
    /// The identity's fingerprint (SHA-256 of its public key, hex).
    pub fingerprint: String,
    /// The CSRF token of state-changing requests.
    pub csrf: String,
    /// Certificate, private key and CA, PEM.
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// When the session was made (seconds since the epoch).
    pub created: u64,
    /// Whether this page issued the certificate (rather than a bundle the user loaded):
    /// only those are pruned.
    pub issued_here: bool,
    /// Whether a file was ever stored under this identity from the page.
    pub stored: bool,
}

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A directory of records.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// Creates `dir` (and its parents) with mode 0700 for what this process creates, and makes
/// sure `dir` itself is 0700.
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Whether `key` can name a file (letters, digits, `-`).
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Store {
    /// Opens (creating if needed) the directory `name` of `state_dir`.
    pub fn open(state_dir: &Path, name: &str) -> io::Result<Store> {
        private_dir(state_dir)?;
        let dir = state_dir.join(name);
        private_dir(&dir)?;
        Ok(Store { dir })
    }

    /// The file of `key` with extension `ext` (for files kept beside a record).
    pub fn path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ext}"))
    }

    /// Writes the record of `key` atomically (0600).
    pub fn save<T: Serialize>(&self, key: &str, record: &T) -> io::Result<()> {
        if !valid_key(key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad record key",
            ));
        }
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        // tempfile creates the file 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".record-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(&json)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(key, "json")).map_err(|e| e.error)?;
        Ok(())
    }

    /// The record of `key`, if there is one.
    pub fn load<T: DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        if !valid_key(key) {
            return Ok(None);
        }
        match fs::read(self.path(key, "json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the record of `key` and the files beside it with extensions `extra` (absent
    /// is fine).
    pub fn remove(&self, key: &str, extra: &[&str]) -> io::Result<()> {
        if !valid_key(key) {
            return Ok(());
        }
        for ext in std::iter::once("json").chain(extra.iter().copied()) {
            match fs::remove_file(self.path(key, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every record with its key; unreadable records are skipped (and logged).
    pub fn all<T: DeserializeOwned>(&self) -> io::Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|k| valid_key(k))
            else {
                continue;
            };
            match self.load(key) {
                Ok(Some(record)) => out.push((key.to_string(), record)),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping record {}: {e}", path.display()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_privately() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("web");
        let store = Store::open(&state, "sessions").unwrap();
        let record = Record {
            name: "web-1".into(),
            fingerprint: "ab".into(),
            csrf: "c".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
            ca_pem: "ca".into(),
            created: 5,
            issued_here: true,
            stored: false,
        };
        let key = "07ab";
        assert_eq!(store.load::<Record>(key).unwrap(), None);
        store.save(key, &record).unwrap();
        assert_eq!(store.load(key).unwrap(), Some(record.clone()));
        assert!(store.save("../x", &record).is_err());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("sessions")), 0o700);
        assert_eq!(mode(&store.path(key, "json")), 0o600);
        assert_eq!(store.all().unwrap(), vec![(key.to_string(), record)]);
        store.remove(key, &["ledger"]).unwrap();
        store.remove(key, &["ledger"]).unwrap();
        assert!(store.all::<Record>().unwrap().is_empty());
    }
}
