//! Where a Ferry installation keeps its state when no path is given.
//!
//! One data directory holds the certificate directory and the storage:
//!
//! ```text
//! DATA/certs/     ca.crt ca.key server.* crl.pem index.json clients/NAME.{crt,key,bundle.pem}
//! DATA/storage/   the server's files
//! ```
//!
//! DATA is `$FERRY_DATA_DIR` if set, else the XDG data directory (`$XDG_DATA_HOME/ferry`,
//! normally `~/.local/share/ferry`): a place outside any source tree that every tool run by
//! the same user finds, whatever its working directory. Only where no home directory is known
//! does it fall back to `./ferry-data`.

use crate::dir::{CertDir, CLIENTS_DIR, LOCAL_CLIENT};
use std::path::{Path, PathBuf};

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "FERRY_DATA_DIR";
/// The data directory's name under the XDG data directory.
pub const APP_DIR: &str = "ferry";
/// Fallback data directory, relative to the working directory, when no home is known.
pub const FALLBACK_DATA_DIR: &str = "ferry-data";
/// The certificate directory's name inside the data directory.
pub const CERTS_SUBDIR: &str = "certs";
/// The storage directory's name inside the data directory.
pub const STORAGE_SUBDIR: &str = "storage";

/// A data directory: certificates and storage under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The default one: `$FERRY_DATA_DIR`, else the XDG data directory's `ferry`, else
    /// `./ferry-data`.
    pub fn default_location() -> DataDir {
        let from_env = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty());
        let root = from_env.map(PathBuf::from).unwrap_or_else(|| {
            dirs::data_dir()
                .map(|d| d.join(APP_DIR))
                .unwrap_or_else(|| PathBuf::from(FALLBACK_DATA_DIR))
        });
        DataDir::new(root)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DATA/certs`.
    pub fn certs(&self) -> CertDir {
        CertDir::new(self.root.join(CERTS_SUBDIR))
    }

    /// `DATA/storage`.
    pub fn storage(&self) -> PathBuf {
        self.root.join(STORAGE_SUBDIR)
    }

    /// The bundle of the client `local` that the server's first run issues
    /// (`DATA/certs/clients/local.bundle.pem`).
    pub fn local_bundle(&self) -> PathBuf {
        self.root
            .join(CERTS_SUBDIR)
            .join(CLIENTS_DIR)
            .join(format!("{LOCAL_CLIENT}.bundle.pem"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_certs_and_storage_under_one_root() {
        let data = DataDir::new("/srv/ferry");
        assert_eq!(data.certs().root(), Path::new("/srv/ferry/certs"));
        assert_eq!(data.storage(), Path::new("/srv/ferry/storage"));
        assert_eq!(
            data.local_bundle(),
            Path::new("/srv/ferry/certs/clients/local.bundle.pem")
        );
    }
}
