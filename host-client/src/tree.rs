//! Local trees: walking a directory into server names (upload -r, sync), and turning server
//! names back into paths inside a directory (download -r, sync --down) without trusting them.

use std::collections::HashSet;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_client::ClientError;
use ferry_client::FileAttrs;
use unicode_normalization::UnicodeNormalization;

/// A regular file found in a local tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalFile {
    pub(crate) path: PathBuf,
    /// Its path below the walked directory, `/`-separated, in NFC.
    pub(crate) relative: String,
    pub(crate) size: u64,
    pub(crate) attrs: FileAttrs,
}

/// What a walk found: files in name order, and a warning per entry it skipped.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub(crate) files: Vec<LocalFile>,
    pub(crate) skipped: Vec<String>,
}

/// Unix seconds of a time (0 before 1970).
pub(crate) fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The attributes the server records for a file: modification time and permission bits.
pub(crate) fn attrs_of(meta: &std::fs::Metadata) -> FileAttrs {
    use std::os::unix::fs::PermissionsExt;
    FileAttrs {
        modified: meta.modified().ok().map(unix_secs),
        mode: Some(meta.permissions().mode() & 0o777),
    }
}

/// Every regular file below `root` (or `root` itself if it is a file). Symbolic links are
/// followed only with `follow` (a loop is skipped with a warning); special files and names
/// that are not UTF-8 are skipped with a warning; names are NFC-normalised, and a second
/// local file with the same NFC name is skipped.
pub(crate) fn walk(root: &Path, follow: bool) -> Result<Walk, ClientError> {
    let meta = std::fs::metadata(root).map_err(|e| ClientError::Io {
        path: root.to_path_buf(),
        source: e,
    })?;
    let mut found = Walk::default();
    let mut taken = HashSet::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(follow)
        .sort_by_file_name();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let at = e.path().unwrap_or(root).display().to_string();
                match e.loop_ancestor() {
                    Some(_) => found.skipped.push(format!("{at}: a symbolic link loop")),
                    None => found.skipped.push(format!("{at}: {e}")),
                }
                continue;
            }
        };
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        let shown = entry.path().display();
        if kind.is_symlink() {
            found
                .skipped
                .push(format!("{shown}: a symbolic link, not followed (use -L)"));
            continue;
        }
        if !kind.is_file() {
            found.skipped.push(format!(
                "{shown}: not a regular file (fifo, socket or device)"
            ));
            continue;
        }
        let relative = if meta.is_dir() {
            entry.path().strip_prefix(root).ok().and_then(slash_path)
        } else {
            entry
                .path()
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.nfc().collect())
        };
        let Some(relative) = relative else {
            found.skipped.push(format!(
                "{shown}: not a UTF-8 name, cannot be named on the server"
            ));
            continue;
        };
        if !taken.insert(relative.clone()) {
            found.skipped.push(format!(
                "{shown}: another file here has the same name in Unicode NFC ({relative})"
            ));
            continue;
        }
        match entry.metadata() {
            Ok(meta) => found.files.push(LocalFile {
                path: entry.path().to_path_buf(),
                relative,
                size: meta.len(),
                attrs: attrs_of(&meta),
            }),
            Err(e) => found.skipped.push(format!("{shown}: {e}")),
        }
    }
    found.files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(found)
}

/// A relative path as `/`-separated NFC text (None if a part is not UTF-8).
fn slash_path(relative: &Path) -> Option<String> {
    let parts: Option<Vec<String>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str().map(|p| p.nfc().collect()),
            _ => None,
        })
        .collect();
    Some(parts?.join("/"))
}

/// The name a directory given on the command line is stored under: its own name
/// (`photos/` and `/x/photos` give `photos`; `.` gives the current directory's name).
pub(crate) fn base_name(dir: &Path) -> Result<String, ClientError> {
    let named = match dir.file_name() {
        Some(name) => PathBuf::from(name),
        None => dir
            .canonicalize()
            .map_err(|e| ClientError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    match named.to_str() {
        Some(name) if !name.is_empty() => Ok(name.nfc().collect()),
        _ => Err(ClientError::InvalidName {
            name: dir.display().to_string(),
            reason: "no UTF-8 directory name to store it under".into(),
        }),
    }
}

/// A server folder as given on the command line, without its trailing `/` (empty: the top).
pub(crate) fn folder(prefix: &str) -> String {
    prefix.trim_end_matches('/').nfc().collect()
}

/// `folder/name` (just `name` at the top).
pub(crate) fn join_name(folder: &str, name: &str) -> String {
    match folder {
        "" => name.to_string(),
        folder => format!("{folder}/{name}"),
    }
}

/// What listing a folder asks for: every name starting with this.
pub(crate) fn list_prefix(folder: &str) -> String {
    match folder {
        "" => String::new(),
        folder => format!("{folder}/"),
    }
}

/// The part of `folder` a download keeps: everything below `folder`'s parent.
pub(crate) fn parent_of(folder: &str) -> &str {
    folder.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// The relative local path of server name `name` below `base` (a folder without its
/// trailing `/`, or empty), checked part by part: None unless every part is a plain name
/// (no `..`, `.`, empty part, backslash or NUL) and `name` lies below `base`.
pub(crate) fn local_relative(name: &str, base: &str) -> Option<PathBuf> {
    let rest = match base {
        "" => name,
        base => name.strip_prefix(base)?.strip_prefix('/')?,
    };
    let mut path = PathBuf::new();
    for part in rest.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains(['\\', '\0']) {
            return None;
        }
        path.push(part);
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

/// Creates the directories between `root` and `root/relative`'s file, refusing any that
/// exists as something other than a real directory (a symbolic link could lead outside
/// `root`). Returns the file's path.
pub(crate) fn prepare_dest(root: &Path, relative: &Path) -> Result<PathBuf, ClientError> {
    let io_error = |path: &Path, source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut dir = root.to_path_buf();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            dir.push(part);
            match std::fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    let refused = io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a directory (a symbolic link is not followed)",
                    );
                    return Err(io_error(&dir, refused));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(&dir) {
                    Ok(()) => {}
                    // Made by a download on another connection meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_real_dir(&dir) => {}
                    Err(e) => return Err(io_error(&dir, e)),
                },
                Err(e) => return Err(io_error(&dir, e)),
            }
        }
    }
    let file = root.join(relative);
    if let Ok(meta) = std::fs::symlink_metadata(&file) {
        if !meta.is_file() {
            let refused = io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a regular file (not replaced)",
            );
            return Err(io_error(&file, refused));
        }
    }
    Ok(file)
}

/// A directory, not a symbolic link to one.
fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
}

/// Restores what the server recorded of a downloaded file: modification time first (a
/// read-only mode would forbid it), then permission bits.
pub(crate) fn restore_attrs(path: &Path, modified: u64, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if modified > 0 {
        let file = std::fs::File::options().write(true).open(path)?;
        file.set_modified(UNIX_EPOCH + Duration::from_secs(modified))?;
    }
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(walk: &Walk) -> Vec<&str> {
        walk.files.iter().map(|f| f.relative.as_str()).collect()
    }

    #[test]
    fn a_walk_names_files_below_the_root_and_skips_what_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("a/b/c.jpg"), b"c").unwrap();
        std::fs::write(root.join("top.txt"), b"").unwrap();
        // NFD on disk, NFC on the server.
        std::fs::write(root.join("Cafe\u{301}.txt"), b"x").unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"s").unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink(&root, root.join("a/loop")).unwrap();
        let fifo = root.join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());

        let walk = walk(&root, false).unwrap();
        assert_eq!(names(&walk), ["Caf\u{e9}.txt", "a/b/c.jpg", "top.txt"]);
        assert_eq!(walk.skipped.len(), 3, "{:?}", walk.skipped);
        assert!(walk.skipped.iter().any(|s| s.contains("fifo")));
        assert!(walk.skipped.iter().any(|s| s.contains("use -L")));
        assert_eq!(walk.files[1].size, 1);
        assert!(walk.files[1].attrs.modified.unwrap() > 0);
        assert!(walk.files[1].attrs.mode.unwrap() <= 0o777);

        // -L follows the link out of the tree (stored under the tree's name) and stops at
        // the loop.
        let walk = super::walk(&root, true).unwrap();
        assert_eq!(
            names(&walk),
            ["Caf\u{e9}.txt", "a/b/c.jpg", "link", "top.txt"]
        );
        assert!(
            walk.skipped.iter().any(|s| s.contains("loop")),
            "{:?}",
            walk.skipped
        );
    }

    #[test]
    fn nfc_twins_are_skipped_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("e\u{301}"), b"1").unwrap();
        std::fs::write(dir.path().join("\u{e9}"), b"2").unwrap();
        let walk = walk(dir.path(), false).unwrap();
        assert_eq!(names(&walk), ["\u{e9}"]);
        assert_eq!(walk.skipped.len(), 1);
    }

    #[test]
    fn server_names_map_to_paths_below_the_base_only() {
        assert_eq!(
            local_relative("photos/a/b.jpg", ""),
            Some(PathBuf::from("photos/a/b.jpg"))
        );
        assert_eq!(
            local_relative("x/photos/a", "x"),
            Some(PathBuf::from("photos/a"))
        );
        for (name, base) in [
            ("../x", ""),
            ("a/../../x", ""),
            ("/etc/passwd", ""),
            ("a//b", ""),
            ("a/./b", ""),
            ("a\\..\\b", ""),
            ("other/a", "photos"),
            ("photosx/a", "photos"),
            ("photos", "photos"),
            ("photos/", "photos"),
            ("", ""),
        ] {
            assert_eq!(local_relative(name, base), None, "{name:?} below {base:?}");
        }
    }

    #[test]
    fn folders_and_names() {
        assert_eq!(folder("photos/"), "photos");
        assert_eq!(folder("/"), "");
        assert_eq!(list_prefix("a/b"), "a/b/");
        assert_eq!(list_prefix(""), "");
        assert_eq!(parent_of("a/b/photos"), "a/b");
        assert_eq!(parent_of("photos"), "");
        assert_eq!(join_name("", "x"), "x");
        assert_eq!(join_name("p", "x/y"), "p/x/y");
        assert_eq!(base_name(Path::new("/x/photos/")).unwrap(), "photos");
    }

    #[test]
    fn destinations_never_pass_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir(&root).unwrap();
        let file = prepare_dest(&root, Path::new("a/b/c")).unwrap();
        assert_eq!(file, root.join("a/b/c"));
        assert!(root.join("a/b").is_dir());
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, root.join("l")).unwrap();
        assert!(prepare_dest(&root, Path::new("l/x")).is_err());
        assert!(prepare_dest(&root, Path::new("l")).is_err());
        assert!(!outside.join("x").exists());
    }

    #[test]
    fn attributes_are_restored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        restore_attrs(&path, 1_000_000_000, Some(0o640)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(unix_secs(meta.modified().unwrap()), 1_000_000_000);
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }
}
