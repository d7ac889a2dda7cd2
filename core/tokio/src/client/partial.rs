//! A download in progress: a partial file beside the destination and a record of the
//! chunks it holds, so that an interrupted download resumes where it stopped.
//!
//! For a destination `DIR/NAME` the data goes to `DIR/.NAME.ferry-part` (written at each
//! chunk's offset) and the held chunks are recorded in `DIR/.NAME.ferry-held`, a
//! journal (`crate::journal`) that also names the remote file.
//!
//! On resume every recorded chunk is read back from the partial file and hashed again;
//! only chunks whose data still matches are offered to the server as held. A record cut
//! short by a crash is ignored. After the whole file is verified the partial file is
//! synced, renamed onto the destination (so the destination only ever holds a verified
//! file) and the record is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_core::{Digest, Layout};

use crate::flush::Flusher;
use crate::journal;

/// The two files of a download in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialPaths {
    /// The data: `DIR/.NAME.ferry-part`.
    pub part: PathBuf,
    /// The held-chunk record: `DIR/.NAME.ferry-held`.
    pub held: PathBuf,
}

impl PartialPaths {
    /// The partial files for the destination `dest` (a file path).
    pub fn for_destination(dest: &Path) -> io::Result<Self> {
        let file_name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            part: dir.join(format!(".{file_name}.ferry-part")),
            held: dir.join(format!(".{file_name}.ferry-held")),
        })
    }

    /// Removes both files (missing files are fine).
    pub fn remove(&self) -> io::Result<()> {
        for path in [&self.part, &self.held] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// What an earlier attempt left: the file size and the chunks still intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The size of the file being downloaded.
    pub size: u64,
    /// Held chunks (index, digest), ascending, each re-verified against the partial data.
    pub chunks: Vec<(u64, Digest)>,
}

/// Reads what an earlier attempt to download `name` with `chunk_size` chunks left at
/// `paths`, re-verifying every recorded chunk. `None` when there is nothing usable
/// (no files, another name or chunk size, a partial file of the wrong length).
pub fn load(paths: &PartialPaths, name: &str, chunk_size: u32) -> io::Result<Option<Resume>> {
    let mut bytes = Vec::new();
    match File::open(&paths.held) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(journal) = journal::parse(&bytes) else {
        return Ok(None);
    };
    let layout = journal.layout;
    if journal.name != name || layout.chunk_size != chunk_size || chunk_size == 0 {
        return Ok(None);
    }
    let part = match File::open(&paths.part) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if part.metadata()?.len() != layout.size {
        return Ok(None);
    }
    let chunks: Vec<_> = journal::verified(&journal.records, &part, layout)?
        .into_iter()
        .collect();
    if chunks.is_empty() {
        return Ok(None);
    }
    let size = layout.size;
    Ok(Some(Resume { size, chunks }))
}

/// An open partial download.
#[derive(Debug)]
pub struct PartialFile {
    paths: PartialPaths,
    part: File,
    held: File,
    flusher: Flusher,
}

impl PartialFile {
    /// Starts a new partial download of `size` bytes (replacing any earlier one).
    pub fn create(
        paths: &PartialPaths,
        name: &str,
        size: u64,
        chunk_size: u32,
    ) -> io::Result<Self> {
        let part = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&paths.part)?;
        part.set_len(size)?;
        let mut held = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&paths.held)?;
        held.write_all(&journal::header(Layout { size, chunk_size }, name))?;
        Ok(Self {
            paths: paths.clone(),
            flusher: Flusher::new(&part)?,
            part,
            held,
        })
    }

    /// Continues the partial download that [`load`] read.
    pub fn reopen(paths: &PartialPaths) -> io::Result<Self> {
        let part = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&paths.part)?;
        let held = OpenOptions::new().append(true).open(&paths.held)?;
        Ok(Self {
            paths: paths.clone(),
            flusher: Flusher::new(&part)?,
            part,
            held,
        })
    }

    /// Writes a verified chunk at `offset` and records it as held.
    pub fn store(
        &mut self,
        index: u64,
        offset: u64,
        digest: &Digest,
        data: &[u8],
    ) -> io::Result<()> {
        self.part.write_all_at(data, offset)?;
        self.flusher.wrote(data.len() as u64);
        self.held.write_all(&journal::record(index, digest))
    }

    /// Makes the complete, verified file durable at `dest`: sync, rename, sync the
    /// directory, remove the record.
    pub fn commit(mut self, dest: &Path, size: u64) -> io::Result<()> {
        if self.part.metadata()?.len() != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the partial file does not have the verified size",
            ));
        }
        self.flusher.finish()?;
        self.part.sync_all()?;
        drop(self.part);
        fs::rename(&self.paths.part, dest)?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Persist the rename; some file systems cannot sync a directory.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        drop(self.held);
        match fs::remove_file(&self.paths.held) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{chunk_digest, FileDigest};

    const CHUNK: u32 = 16;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn write_all(paths: &PartialPaths, name: &str, bytes: &[u8], chunks: &[u64]) {
        let layout = Layout {
            size: bytes.len() as u64,
            chunk_size: CHUNK,
        };
        let mut partial = PartialFile::create(paths, name, layout.size, CHUNK).unwrap();
        for &index in chunks {
            let offset = layout.offset(index);
            let chunk = &bytes[offset as usize..offset as usize + layout.len(index)];
            partial
                .store(index, offset, &chunk_digest(chunk), chunk)
                .unwrap();
        }
    }

    #[test]
    fn paths_sit_beside_the_destination() {
        let paths = PartialPaths::for_destination(Path::new("/tmp/x/report.pdf")).unwrap();
        assert_eq!(paths.part, Path::new("/tmp/x/.report.pdf.ferry-part"));
        assert_eq!(paths.held, Path::new("/tmp/x/.report.pdf.ferry-held"));
        let here = PartialPaths::for_destination(Path::new("a")).unwrap();
        assert_eq!(here.part, Path::new("./.a.ferry-part"));
        assert!(PartialPaths::for_destination(Path::new("/")).is_err());
    }

    #[test]
    fn held_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PartialPaths::for_destination(&dir.path().join("f")).unwrap();
        let bytes = data(5 * CHUNK as usize + 3);
        write_all(&paths, "f", &bytes, &[0, 1, 3, 5]);
        let resume = load(&paths, "f", CHUNK).unwrap().unwrap();
        assert_eq!(resume.size, bytes.len() as u64);
        let indices: Vec<u64> = resume.chunks.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, [0, 1, 3, 5]);
        let last = &bytes[5 * CHUNK as usize..];
        assert_eq!(resume.chunks[3].1, chunk_digest(last));
        // Another name or chunk size: nothing usable.
        assert_eq!(load(&paths, "g", CHUNK).unwrap(), None);
        assert_eq!(load(&paths, "f", 2 * CHUNK).unwrap(), None);
    }

    #[test]
    fn damaged_chunks_are_not_offered_again() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PartialPaths::for_destination(&dir.path().join("f")).unwrap();
        let bytes = data(4 * CHUNK as usize);
        write_all(&paths, "f", &bytes, &[0, 1, 2, 3]);
        // Flip a byte of chunk 2 on disk.
        let part = OpenOptions::new().write(true).open(&paths.part).unwrap();
        part.write_all_at(&[bytes[2 * CHUNK as usize] ^ 1], 2 * u64::from(CHUNK))
            .unwrap();
        // A record cut short by a crash is ignored.
        let mut held = OpenOptions::new().append(true).open(&paths.held).unwrap();
        held.write_all(&[1, 2, 3]).unwrap();
        let resume = load(&paths, "f", CHUNK).unwrap().unwrap();
        let indices: Vec<u64> = resume.chunks.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, [0, 1, 3]);
    }

    #[test]
    fn a_partial_of_the_wrong_length_or_garbage_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PartialPaths::for_destination(&dir.path().join("f")).unwrap();
        assert_eq!(load(&paths, "f", CHUNK).unwrap(), None, "no files");
        let bytes = data(3 * CHUNK as usize);
        write_all(&paths, "f", &bytes, &[0]);
        fs::OpenOptions::new()
            .write(true)
            .open(&paths.part)
            .unwrap()
            .set_len(5)
            .unwrap();
        assert_eq!(load(&paths, "f", CHUNK).unwrap(), None);
        fs::write(&paths.held, b"garbage").unwrap();
        assert_eq!(load(&paths, "f", CHUNK).unwrap(), None);
        write_all(&paths, "f", &bytes, &[]);
        assert_eq!(load(&paths, "f", CHUNK).unwrap(), None, "nothing held");
    }

    #[test]
    fn resumed_partial_appends_and_commits_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let paths = PartialPaths::for_destination(&dest).unwrap();
        let bytes = data(3 * CHUNK as usize + 1);
        write_all(&paths, "n", &bytes, &[0, 2]);
        let resume = load(&paths, "n", CHUNK).unwrap().unwrap();
        assert_eq!(resume.chunks.len(), 2);
        let mut partial = PartialFile::reopen(&paths).unwrap();
        let layout = Layout {
            size: bytes.len() as u64,
            chunk_size: CHUNK,
        };
        for index in [1u64, 3] {
            let offset = layout.offset(index);
            let chunk = &bytes[offset as usize..offset as usize + layout.len(index)];
            partial
                .store(index, offset, &chunk_digest(chunk), chunk)
                .unwrap();
        }
        let resume = load(&paths, "n", CHUNK).unwrap().unwrap();
        assert_eq!(resume.chunks.len(), 4);
        let mut file = FileDigest::new(CHUNK, layout.size);
        for (_, digest) in &resume.chunks {
            file.push(digest);
        }
        assert_eq!(file.finish(), FileDigest::of(&bytes, CHUNK));
        partial.commit(&dest, layout.size).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), bytes);
        assert!(!paths.part.exists() && !paths.held.exists());
    }

    #[test]
    fn commit_refuses_a_file_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let paths = PartialPaths::for_destination(&dest).unwrap();
        let partial = PartialFile::create(&paths, "n", 10, CHUNK).unwrap();
        assert!(partial.commit(&dest, 11).is_err());
        assert!(!dest.exists());
        paths.remove().unwrap();
        paths.remove().unwrap();
        assert!(!paths.part.exists());
    }
}
