//! Chunk digests and the whole-file digest.
//!
//! Every chunk is identified by `SHA-256(chunk data)`. The whole-file digest is
//! computed over the ordered chunk digests rather than over the raw bytes again:
//!
//! ```text
//! file_digest = SHA-256( "ferry-file-v1" || chunk_size as u32 LE || size as u64 LE
//!                        || SHA-256(chunk 0) || SHA-256(chunk 1) || ... )
//! ```
//!
//! Every byte is covered (each chunk digest covers its bytes), and so are the order
//! (digests are concatenated by index), the chunk size and the length. Both ends get
//! it from the digests they compute anyway, so every byte is hashed once per side
//! instead of twice (the construction of BitTorrent v2 piece layers, Syncthing block
//! lists and S3 composite checksums). The digest depends on the chunk size; the plain
//! `sha256sum` digest is available from [`plain_sha256`] to users who ask for it.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

const FILE_DOMAIN: &[u8] = b"ferry-file-v1";
const HELD_DOMAIN: &[u8] = b"ferry-held-v1";

/// SHA-256 of one chunk's bytes.
pub fn chunk_digest(data: &[u8]) -> Digest {
    Sha256::digest(data).into()
}

/// The plain SHA-256 of a byte string, as `sha256sum` prints it.
pub fn plain_sha256(data: &[u8]) -> Digest {
    chunk_digest(data)
}

/// Builds the whole-file digest from chunk digests fed in index order.
#[derive(Clone)]
pub struct FileDigest {
    hasher: Sha256,
    chunks: u64,
}

impl FileDigest {
    /// Starts the digest of a file of `size` bytes cut into `chunk_size` chunks.
    pub fn new(chunk_size: u32, size: u64) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(FILE_DOMAIN);
        hasher.update(chunk_size.to_le_bytes());
        hasher.update(size.to_le_bytes());
        Self { hasher, chunks: 0 }
    }

    /// Adds the digest of the next chunk.
    pub fn push(&mut self, chunk: &Digest) {
        self.hasher.update(chunk);
        self.chunks += 1;
    }

    /// How many chunk digests have been added.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// The final digest.
    pub fn finish(self) -> Digest {
        self.hasher.finalize().into()
    }

    /// The whole-file digest of `data` (a convenience for tests and small files).
    pub fn of(data: &[u8], chunk_size: u32) -> Digest {
        let mut file = Self::new(chunk_size, data.len() as u64);
        for chunk in data.chunks(chunk_size as usize) {
            file.push(&chunk_digest(chunk));
        }
        file.finish()
    }
}

/// The digest a receiver reports over the chunks it already holds (in index order),
/// so that a sender can detect that its source changed since they were written.
#[derive(Clone)]
pub struct HeldDigest(Sha256);

impl Default for HeldDigest {
    fn default() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(HELD_DOMAIN);
        Self(hasher)
    }
}

impl HeldDigest {
    /// Adds a held chunk: its index and digest.
    pub fn push(&mut self, index: u64, chunk: &Digest) {
        self.0.update(index.to_le_bytes());
        self.0.update(chunk);
    }

    /// The final digest.
    pub fn finish(self) -> Digest {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_digest_covers_order_size_and_chunk_size() {
        let data: [u8; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let mut swapped = data;
        swapped.swap(0, 5);
        let base = FileDigest::of(&data, 5);
        assert_ne!(base, FileDigest::of(&swapped, 5));
        assert_ne!(base, FileDigest::of(&data, 4));
        assert_ne!(base, FileDigest::of(&data[..9], 5));
        assert_eq!(base, FileDigest::of(&data, 5));
    }

    #[test]
    fn empty_file_has_a_digest() {
        assert_eq!(FileDigest::new(16, 0).finish(), FileDigest::of(&[], 16));
        assert_ne!(FileDigest::of(&[], 16), FileDigest::of(&[], 32));
    }

    #[test]
    fn plain_sha256_matches_sha256sum() {
        // `printf abc | sha256sum`
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let got = plain_sha256(b"abc");
        let mut hex = [0u8; 64];
        for (i, b) in got.iter().enumerate() {
            hex[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
            hex[2 * i + 1] = b"0123456789abcdef"[(b & 15) as usize];
        }
        assert_eq!(&hex[..], expected.as_bytes());
    }
}
