//! Test data (reproducible pseudo-random files) and checking copies byte for byte.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// A file of `size` pseudo-random bytes (xorshift64*; incompressible, reproducible).
pub fn write_random(path: &Path, size: u64, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// Whether two files hold the same bytes.
/// Checks the copy a transfer made against `source`: the server's copy `remote` after an
/// upload, the local `download` after a download (removed once checked).
pub fn verify_copy(op: &str, source: &Path, remote: &Path, download: &Path) -> Result<(), String> {
    if op == "upload" {
        return same_bytes(source, remote);
    }
    let checked = same_bytes(source, download);
    let _ = std::fs::remove_file(download);
    checked
}

pub fn same_bytes(a: &Path, b: &Path) -> Result<(), String> {
    let open = |p: &Path| File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (la, lb) = (
        fa.metadata().map(|m| m.len()).unwrap_or(0),
        fb.metadata().map(|m| m.len()).unwrap_or(1),
    );
    if la != lb {
        return Err(format!(
            "{}: {lb} bytes, expected {la} like {}",
            b.display(),
            a.display()
        ));
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(|e| e.to_string())?;
        let m = read_full(&mut fb, &mut bb).map_err(|e| e.to_string())?;
        if n != m || ba[..n] != bb[..m] {
            return Err(format!(
                "{} differs from {} near offset {offset}",
                b.display(),
                a.display()
            ));
        }
        if n == 0 {
            return Ok(());
        }
        offset += n as u64;
    }
}

pub fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Where Ferry stored `name` for some client: STORAGE/<client name>/files/<name>.
pub fn ferry_stored(storage: &Path, name: &str) -> Option<PathBuf> {
    fs::read_dir(storage)
        .ok()?
        .flatten()
        .map(|e| e.path().join("files").join(name))
        .find(|p| p.is_file())
}

pub fn list_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// One file of a test tree: its path relative to the tree's root, and its size.
pub struct TreeFile {
    pub rel: PathBuf,
    pub size: u64,
}

/// Writes `files` below `root` (reproducible contents, one seed per file).
pub fn write_tree(root: &Path, files: &[TreeFile], seed: u64) {
    for (i, file) in files.iter().enumerate() {
        let path = root.join(&file.rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_random(&path, file.size, seed + i as u64);
    }
}

/// Every regular file below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// Whether `copy` holds exactly the files of the tree at `source` (same paths, same bytes,
/// nothing more).
pub fn same_tree_at(source: &Path, files: &[TreeFile], copy: &Path) -> Result<(), String> {
    let found = files_below(copy).len();
    if found != files.len() {
        return Err(format!(
            "{found} files below {}, expected {}",
            copy.display(),
            files.len()
        ));
    }
    for file in files {
        same_bytes(&source.join(&file.rel), &copy.join(&file.rel))?;
    }
    Ok(())
}
