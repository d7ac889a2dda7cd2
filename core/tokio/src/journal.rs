//! The held-chunk journal: the one record of which chunks of a partial file are written and
//! intact, kept beside the partial data by the server (uploads) and the client (downloads),
//! so that an interrupted transfer resumes with only the missing chunks.
//!
//! ```text
//! header (32 B):  "FRYHELD1" | chunk size u32 LE | name length u32 LE | size u64 LE | created u64 LE (unix s)
//! name:           the file's name, UTF-8, name-length bytes (0 where the path already says it)
//! records (40 B): index u64 LE | SHA-256 of the chunk      appended after each chunk is written
//! ```
//!
//! A record is appended after its chunk's data is written, so a crash leaves at worst a
//! record whose data is not on disk: [`verified`] re-reads and re-hashes every recorded
//! chunk and keeps only those that still match. A record cut short is ignored, and the last
//! record of an index wins.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_core::{chunk_digest, Digest, Layout};

const MAGIC: &[u8; 8] = b"FRYHELD1";
/// Bytes of the fixed header, before the name.
pub const HEADER_LEN: usize = 32;
/// Bytes of one record.
pub const RECORD_LEN: usize = 40;

/// What a journal says about its partial file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// The size and chunk size of the file being received.
    pub layout: Layout,
    /// The file's name ("" when the journal's path already identifies it).
    pub name: String,
    /// When the partial file was begun (unix seconds).
    pub created: u64,
    /// Recorded chunks, last record per index winning (not yet checked against the data).
    pub records: BTreeMap<u64, Digest>,
    /// Whether every byte after the header is a whole record of a distinct index: a journal
    /// that is not clean is best rewritten from what [`verified`] keeps.
    pub clean: bool,
}

/// The header of a new journal for `layout`, begun now.
pub fn header(layout: Layout, name: &str) -> Vec<u8> {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = Vec::with_capacity(HEADER_LEN + name.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&layout.chunk_size.to_le_bytes());
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&layout.size.to_le_bytes());
    out.extend_from_slice(&created.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

/// A whole journal: the header and one record per held chunk.
pub fn encode<'a>(
    layout: Layout,
    name: &str,
    records: impl IntoIterator<Item = (u64, &'a Digest)>,
) -> Vec<u8> {
    let mut out = header(layout, name);
    for (index, digest) in records {
        out.extend_from_slice(&record(index, digest));
    }
    out
}

/// The record that says chunk `index` with `digest` is written.
pub fn record(index: u64, digest: &Digest) -> [u8; RECORD_LEN] {
    let mut out = [0u8; RECORD_LEN];
    out[..8].copy_from_slice(&index.to_le_bytes());
    out[8..].copy_from_slice(digest.as_ref());
    out
}

/// Parses a journal; `None` if the bytes are not one (another format, a torn header).
pub fn parse(bytes: &[u8]) -> Option<Journal> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let u32_at = |at: usize| Some(u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?));
    let chunk_size = u32_at(0)?;
    let name_len = usize::try_from(u32_at(4)?).ok()?;
    let size = u64_at(8)?;
    let created = u64_at(16)?;
    let body_at = HEADER_LEN.checked_add(name_len)?;
    let name = std::str::from_utf8(bytes.get(HEADER_LEN..body_at)?).ok()?;
    let body = &bytes[body_at..];
    let mut records = BTreeMap::new();
    for chunk in body.chunks_exact(RECORD_LEN) {
        let index = u64::from_le_bytes(chunk[..8].try_into().ok()?);
        let digest: Digest = chunk[8..].try_into().ok()?;
        records.insert(index, digest);
    }
    let clean = body.len() == records.len() * RECORD_LEN;
    Some(Journal {
        layout: Layout { size, chunk_size },
        name: name.to_string(),
        created,
        records,
        clean,
    })
}

/// The records whose chunk in `part` still hashes to the recorded digest (records past the
/// end of the file, or of chunks the file is too short to hold, are dropped).
pub fn verified(
    records: &BTreeMap<u64, Digest>,
    part: &File,
    layout: Layout,
) -> io::Result<BTreeMap<u64, Digest>> {
    let mut buf = vec![0u8; layout.chunk_size as usize];
    let mut intact = BTreeMap::new();
    for (&index, digest) in records {
        if index >= layout.chunks() {
            continue;
        }
        let data = &mut buf[..layout.len(index)];
        match part.read_exact_at(data, layout.offset(index)) {
            Ok(()) if chunk_digest(data) == *digest => {
                intact.insert(index, *digest);
            }
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
    }
    Ok(intact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layout() -> Layout {
        Layout {
            size: 10,
            chunk_size: 4,
        }
    }

    #[test]
    fn round_trip_with_and_without_a_name() {
        for name in ["", "photo.jpg"] {
            let a = chunk_digest(b"abcd");
            let b = chunk_digest(b"ij");
            let bytes = encode(layout(), name, [(0, &a), (2, &b)]);
            let journal = parse(&bytes).unwrap();
            assert_eq!(journal.layout, layout());
            assert_eq!(journal.name, name);
            assert!(journal.clean);
            assert_eq!(
                journal.records.into_iter().collect::<Vec<_>>(),
                [(0, a), (2, b)]
            );
        }
    }

    #[test]
    fn torn_records_and_foreign_bytes() {
        let a = chunk_digest(b"abcd");
        let mut bytes = encode(layout(), "x", [(0, &a)]);
        bytes.extend_from_slice(&record(1, &a)[..17]);
        let journal = parse(&bytes).unwrap();
        assert_eq!(journal.records.len(), 1);
        assert!(!journal.clean);
        assert!(parse(b"FERRYPT1 something else").is_none());
        assert!(parse(&bytes[..20]).is_none());
    }

    #[test]
    fn the_server_header_of_earlier_releases_still_parses() {
        // Earlier servers wrote a reserved zero where the name length now stands.
        let mut bytes = b"FRYHELD1".to_vec();
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&10u64.to_le_bytes());
        bytes.extend_from_slice(&1_700_000_000u64.to_le_bytes());
        let journal = parse(&bytes).unwrap();
        assert_eq!((journal.layout, journal.name.as_str()), (layout(), ""));
        assert_eq!(journal.created, 1_700_000_000);
    }

    #[test]
    fn only_chunks_whose_data_matches_are_kept() {
        let mut part = tempfile::tempfile().unwrap();
        part.write_all(b"abcdefgh").unwrap(); // the last chunk ("ij") is missing
        let records = BTreeMap::from([
            (0, chunk_digest(b"abcd")),
            (1, chunk_digest(b"XXXX")),
            (2, chunk_digest(b"ij")),
            (9, chunk_digest(b"abcd")),
        ]);
        let intact = verified(&records, &part, layout()).unwrap();
        assert_eq!(intact.keys().copied().collect::<Vec<_>>(), [0]);
    }
}
