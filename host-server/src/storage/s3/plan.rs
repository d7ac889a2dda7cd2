//! Pure arithmetic of the S3 store: object keys, advisory-lock keys, and how a file's
//! chunks group into upload parts.

use ferry_core::{chunk_digest, Layout};

/// S3 allows at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// The key of a new object for `client`: unique per upload (128 random bits), never derived
/// from the file name, so that a replaced file is a new object and no reader or writer ever
/// sees a mix of two versions.
pub(super) fn new_object_key(prefix: &str, client: &str) -> String {
    object_key(prefix, client, fastrand::u128(..))
}

fn object_key(prefix: &str, client: &str, random: u128) -> String {
    format!("{prefix}{client}/objects/{random:032x}")
}

/// The PostgreSQL advisory lock that stands for an upload of (`client`, `name`): the first
/// 8 bytes of the SHA-256 of both, separated by a NUL (which neither contains).
pub(super) fn name_lock_key(client: &str, name: &str) -> i64 {
    let digest = chunk_digest(format!("{client}\0{name}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    i64::from_be_bytes(first)
}

/// The folders a name lies in: `a/b/c` is in `a` and `a/b`.
pub(super) fn ancestors(name: &str) -> Vec<String> {
    name.match_indices('/')
        .map(|(at, _)| name[..at].to_string())
        .collect()
}

/// How an upload's chunks group into parts: whole chunks of about `part_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartPlan {
    /// The file's layout.
    pub(super) layout: Layout,
    /// Chunks in every part but maybe the last.
    pub(super) chunks_per_part: u64,
}

impl PartPlan {
    /// Parts of `part_size` bytes rounded up to whole chunks, larger if the file would take
    /// more than S3's 10,000 parts.
    pub(super) fn new(layout: Layout, part_size: u64) -> PartPlan {
        let chunk = u64::from(layout.chunk_size.max(1));
        let per_part = part_size.div_ceil(chunk).max(1);
        let needed = layout.chunks().div_ceil(MAX_PARTS).max(1);
        PartPlan {
            layout,
            chunks_per_part: per_part.max(needed),
        }
    }

    /// Number of parts (1 for an empty file: one empty object).
    pub(super) fn parts(&self) -> u64 {
        self.layout.chunks().div_ceil(self.chunks_per_part).max(1)
    }

    /// Whether the file goes up as a multipart upload (else one PUT at the commit).
    pub(super) fn is_multipart(&self) -> bool {
        self.parts() > 1
    }

    /// The part a chunk belongs to.
    pub(super) fn part_of(&self, chunk: u64) -> u64 {
        chunk / self.chunks_per_part
    }

    /// The chunks of a part.
    pub(super) fn chunks_of(&self, part: u64) -> std::ops::Range<u64> {
        let start = part.saturating_mul(self.chunks_per_part);
        let end = start
            .saturating_add(self.chunks_per_part)
            .min(self.layout.chunks());
        start.min(end)..end
    }

    /// Byte offset of a part in the file.
    pub(super) fn offset_of(&self, part: u64) -> u64 {
        self.layout.offset(self.chunks_of(part).start)
    }

    /// Bytes in a part.
    pub(super) fn len_of(&self, part: u64) -> u64 {
        let chunks = self.chunks_of(part);
        if chunks.is_empty() {
            return 0;
        }
        self.layout.offset(chunks.end - 1) + self.layout.len(chunks.end - 1) as u64
            - self.layout.offset(chunks.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn plan(size: u64, chunk_size: u32, part: u64) -> PartPlan {
        PartPlan::new(Layout { size, chunk_size }, part)
    }

    #[test]
    fn object_keys_are_per_client_and_unique() {
        assert_eq!(
            object_key("ferry/", "alice", 0xab),
            "ferry/alice/objects/000000000000000000000000000000ab"
        );
        assert_ne!(new_object_key("", "a"), new_object_key("", "a"));
        assert!(new_object_key("", "bob").starts_with("bob/objects/"));
    }

    #[test]
    fn lock_keys_tell_client_and_name_apart() {
        assert_eq!(name_lock_key("a", "b"), name_lock_key("a", "b"));
        assert_ne!(name_lock_key("a", "bc"), name_lock_key("ab", "c"));
        assert_ne!(name_lock_key("a", "b"), name_lock_key("b", "a"));
    }

    #[test]
    fn ancestors_are_the_folders_of_a_name() {
        assert!(ancestors("file").is_empty());
        assert_eq!(ancestors("a/b/c"), ["a", "a/b"]);
    }

    #[test]
    fn parts_are_whole_chunks() {
        let chunk = 64 << 10;
        // One part −1, one part, one part +1 byte.
        let p = plan(5 * MIB - 1, chunk, 5 * MIB);
        assert_eq!((p.parts(), p.is_multipart()), (1, false));
        assert_eq!(p.len_of(0), 5 * MIB - 1);
        let p = plan(5 * MIB, chunk, 5 * MIB);
        assert_eq!((p.parts(), p.is_multipart()), (1, false));
        let p = plan(5 * MIB + 1, chunk, 5 * MIB);
        assert_eq!((p.parts(), p.is_multipart()), (2, true));
        assert_eq!(p.chunks_per_part, 80);
        assert_eq!(p.chunks_of(1), 80..81);
        assert_eq!((p.offset_of(1), p.len_of(1)), (5 * MIB, 1));
        assert_eq!(p.part_of(79), 0);
        assert_eq!(p.part_of(80), 1);
    }

    #[test]
    fn empty_and_tiny_files_are_one_object() {
        let p = plan(0, 64 << 10, 8 * MIB);
        assert_eq!((p.parts(), p.len_of(0)), (1, 0));
        assert!(p.chunks_of(0).is_empty());
        let p = plan(1, 64 << 10, 8 * MIB);
        assert_eq!((p.parts(), p.len_of(0)), (1, 1));
    }

    #[test]
    fn a_chunk_size_that_does_not_divide_the_part_rounds_up() {
        // 3 MiB chunks and 5 MiB parts: two chunks (6 MiB) per part, never below S3's 5 MiB.
        let p = plan(20 * MIB, 3 << 20, 5 * MIB);
        assert_eq!(p.chunks_per_part, 2);
        assert_eq!(p.len_of(0), 6 * MIB);
    }

    #[test]
    fn huge_files_stay_within_ten_thousand_parts() {
        let p = plan(200 << 30, 64 << 10, 8 * MIB);
        assert!(p.parts() <= MAX_PARTS);
        assert_eq!(p.layout.chunks(), (200 << 30) / (64 << 10));
    }
}
