//! Atomic file writes.
//!
//! Every file is written to a temporary file in the destination directory, whose mode is set
//! before any byte is written (0600 for anything holding a private key), flushed to disk, and
//! then renamed over (or, without `overwrite`, linked to) its final name. A reader therefore
//! sees either the old file or the whole new one, and a key is never readable by others, not
//! even for a moment.

use crate::error::{CertError, Result};
use std::io::Write;
use std::path::Path;

/// Who may read the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visibility {
    /// Mode 0600: private keys and bundles that contain one.
    Secret,
    /// Mode 0644: certificates, CRL, index.
    Public,
}

impl Visibility {
    #[cfg(unix)]
    fn mode(self) -> u32 {
        match self {
            Visibility::Secret => 0o600,
            Visibility::Public => 0o644,
        }
    }
}

/// Writes `data` to `path` atomically with the given visibility.
///
/// Without `overwrite`, an existing file at `path` is left untouched and
/// [`CertError::AlreadyExists`] is returned (checked atomically by the final rename).
pub(crate) fn write_atomic(
    path: &Path,
    data: &[u8],
    visibility: Visibility,
    overwrite: bool,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-tmp-")
        .tempfile_in(dir)
        .map_err(|e| CertError::io(dir, "create a temporary file in", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(visibility.mode()))
            .map_err(|e| CertError::io(tmp.path(), "set permissions on", e))?;
    }
    #[cfg(not(unix))]
    let _ = visibility;
    tmp.write_all(data)
        .map_err(|e| CertError::io(path, "write", e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CertError::io(path, "flush", e))?;
    let result = if overwrite {
        tmp.persist(path).map(|_| ())
    } else {
        tmp.persist_noclobber(path).map(|_| ())
    };
    if let Err(e) = result {
        if !overwrite && e.error.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(CertError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        return Err(CertError::io(path, "rename a temporary file to", e.error));
    }
    sync_dir(dir);
    Ok(())
}

/// Creates a directory and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| CertError::io(dir, "create directory", e))
}

/// Flushes a directory entry change to disk (best effort: not all systems allow it).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Reads a whole file as UTF-8 text, mapping a missing file to [`CertError::Missing`].
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| CertError::io(path, "read", e))?;
    String::from_utf8(bytes).map_err(|_| CertError::Pem {
        path: path.to_path_buf(),
        reason: "the file is not text (PEM files are ASCII)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_mode_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sub/k.key");
        write_atomic(&key, b"secret", Visibility::Secret, false).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600);

        let err = write_atomic(&key, b"other", Visibility::Secret, false).unwrap_err();
        assert!(matches!(err, CertError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("k.key"));
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");

        write_atomic(&key, b"other", Visibility::Secret, true).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"other");
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600);

        let crt = dir.path().join("c.crt");
        write_atomic(&crt, b"cert", Visibility::Public, false).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&crt), 0o644);

        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".ferry-tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = read_text(Path::new("/nonexistent/ferry/ca.crt")).unwrap_err();
        assert!(matches!(err, CertError::Missing { .. }));
        assert_eq!(err.to_string(), "/nonexistent/ferry/ca.crt: file not found");
    }
}
