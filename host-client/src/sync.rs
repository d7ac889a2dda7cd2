//! `ferry sync`: what to do for each file so that one side's tree equals the other's.
//! Size and modification time decide first; where only the time differs, the local file's
//! whole-file digest (with the server's chunk size) is compared with the server's.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use ferry_core::{chunk_digest, FileDigest};

use crate::tree::LocalFile;

/// A file the server holds, named relative to the synced folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteFile {
    pub(crate) relative: String,
    pub(crate) size: u64,
    pub(crate) modified: u64,
    pub(crate) mode: Option<u32>,
    pub(crate) digest: String,
    pub(crate) chunk_size: u32,
}

/// What a sync does with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// New or changed: its data moves.
    Copy,
    /// Same content, other modification time or mode: only the attributes change.
    Touch,
    /// Absent on the source side (with --delete).
    Delete,
}

impl Action {
    pub(crate) fn word(self, down: bool) -> &'static str {
        match (self, down) {
            (Action::Copy, false) => "upload",
            (Action::Copy, true) => "download",
            (Action::Touch, _) => "touch",
            (Action::Delete, _) => "delete",
        }
    }
}

/// The plan: a step per file that differs, in name order, and how many are unchanged.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<(Action, String)>,
    pub(crate) unchanged: u64,
}

/// How a local file compares with the server's copy.
fn compare(local: &LocalFile, remote: &RemoteFile) -> io::Result<Option<Action>> {
    if local.size != remote.size {
        return Ok(Some(Action::Copy));
    }
    let modes_differ = matches!((local.attrs.mode, remote.mode), (Some(a), Some(b)) if a != b);
    if local.attrs.modified == Some(remote.modified) {
        return Ok(modes_differ.then_some(Action::Touch));
    }
    if local_digest(&local.path, remote.chunk_size, local.size)? == remote.digest {
        Ok(Some(Action::Touch))
    } else {
        Ok(Some(Action::Copy))
    }
}

/// The plan for either direction: `down` copies the server's files over the local ones.
/// `local` and `remote` are keyed by their relative names.
pub(crate) fn plan(
    local: &BTreeMap<String, LocalFile>,
    remote: &BTreeMap<String, RemoteFile>,
    down: bool,
    delete: bool,
) -> Result<Plan, (String, io::Error)> {
    let mut plan = Plan::default();
    let (source_names, target_names): (Vec<&String>, Vec<&String>) = match down {
        false => (local.keys().collect(), remote.keys().collect()),
        true => (remote.keys().collect(), local.keys().collect()),
    };
    for name in source_names {
        let action = match (local.get(name), remote.get(name)) {
            (Some(local), Some(remote)) => {
                compare(local, remote).map_err(|e| (local.path.display().to_string(), e))?
            }
            _ => Some(Action::Copy),
        };
        match action {
            Some(action) => plan.steps.push((action, name.clone())),
            None => plan.unchanged += 1,
        }
    }
    if delete {
        for name in target_names {
            let gone = match down {
                false => !local.contains_key(name),
                true => !remote.contains_key(name),
            };
            if gone {
                plan.steps.push((Action::Delete, name.clone()));
            }
        }
    }
    plan.steps.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(plan)
}

/// The whole-file digest of the file at `path` (`size` bytes) with `chunk_size` chunks,
/// as the server reports it (hex).
pub(crate) fn local_digest(path: &Path, chunk_size: u32, size: u64) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = FileDigest::new(chunk_size, size);
    let mut buffer = vec![0u8; chunk_size.max(1) as usize];
    let mut left = size;
    while left > 0 {
        let want = left.min(buffer.len() as u64) as usize;
        file.read_exact(&mut buffer[..want])?;
        digest.push(&chunk_digest(&buffer[..want]));
        left -= want as u64;
    }
    Ok(digest.finish().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::FileAttrs;

    const CHUNK: u32 = 4;

    fn local(dir: &Path, name: &str, data: &[u8], modified: u64) -> (String, LocalFile) {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        let file = LocalFile {
            path,
            relative: name.into(),
            size: data.len() as u64,
            attrs: FileAttrs {
                modified: Some(modified),
                mode: Some(0o644),
            },
        };
        (name.into(), file)
    }

    fn remote(name: &str, data: &[u8], modified: u64) -> (String, RemoteFile) {
        let file = RemoteFile {
            relative: name.into(),
            size: data.len() as u64,
            modified,
            mode: Some(0o644),
            digest: FileDigest::of(data, CHUNK).to_string(),
            chunk_size: CHUNK,
        };
        (name.into(), file)
    }

    #[test]
    fn the_local_digest_is_the_servers() {
        let dir = tempfile::tempdir().unwrap();
        for data in [&b""[..], b"abc", b"abcd", b"abcdefghij"] {
            let path = dir.path().join("f");
            std::fs::write(&path, data).unwrap();
            assert_eq!(
                local_digest(&path, CHUNK, data.len() as u64).unwrap(),
                FileDigest::of(data, CHUNK).to_string()
            );
        }
    }

    #[test]
    fn plans_send_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let locals: BTreeMap<_, _> = [
            local(d, "same", b"same", 10),
            local(d, "touched", b"touched", 20),
            local(d, "changed", b"chang3d", 30),
            local(d, "grown", b"grown!", 40),
            local(d, "new", b"new", 50),
        ]
        .into_iter()
        .collect();
        let remotes: BTreeMap<_, _> = [
            remote("same", b"same", 10),
            remote("touched", b"touched", 25),
            remote("changed", b"changed", 31),
            remote("grown", b"grown", 40),
            remote("extra", b"extra", 1),
        ]
        .into_iter()
        .collect();
        let up = plan(&locals, &remotes, false, false).unwrap();
        assert_eq!(up.unchanged, 1);
        let steps = |plan: &Plan| -> Vec<(Action, String)> { plan.steps.clone() };
        use Action::*;
        assert_eq!(
            steps(&up),
            [
                (Copy, "changed".into()),
                (Copy, "grown".into()),
                (Copy, "new".into()),
                (Touch, "touched".into()),
            ]
        );
        let up = plan(&locals, &remotes, false, true).unwrap();
        assert!(up.steps.contains(&(Delete, "extra".into())));
        assert_eq!(up.steps.len(), 5);

        let down = plan(&locals, &remotes, true, true).unwrap();
        assert_eq!(
            steps(&down),
            [
                (Copy, "changed".into()),
                (Copy, "extra".into()),
                (Copy, "grown".into()),
                (Delete, "new".into()),
                (Touch, "touched".into()),
            ]
        );
        // A mode change alone is a touch.
        let mut moded = remotes.clone();
        moded.get_mut("same").unwrap().mode = Some(0o600);
        let up = plan(&locals, &moded, false, false).unwrap();
        assert!(up.steps.contains(&(Touch, "same".into())));
    }
}
