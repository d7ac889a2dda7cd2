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

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. It prints as 64 lowercase hex digits (`{}`, `{:x}`, and
/// inside `{:?}`), parses from 64 hex digits of either case, and goes on the
/// wire as a byte string (postcard: length 32, then the bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest with these bytes (`From<[u8; 32]>`, usable in a `const`).
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<Digest> for [u8; 32] {
    fn from(digest: Digest) -> Self {
        digest.0
    }
}

impl TryFrom<&[u8]> for Digest {
    type Error = core::array::TryFromSliceError;

    /// A digest from exactly 32 bytes.
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes).map(Self)
    }
}

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::LowerHex for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(self, f)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self:x})")
    }
}

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseDigestError {
    /// Not 64 characters long.
    #[error("a digest is 64 hex digits, not {len} characters")]
    Length {
        /// The length found, in bytes.
        len: usize,
    },
    /// A character that is not a hex digit.
    #[error("a digest is hex digits only; byte {at} is not one")]
    NotHex {
        /// Its byte offset.
        at: usize,
    },
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    /// Parses 64 hex digits, upper or lower case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return Err(ParseDigestError::Length { len: text.len() });
        }
        let nibble = |at: usize| match text[at] {
            c @ b'0'..=b'9' => Ok(c - b'0'),
            c @ b'a'..=b'f' => Ok(c - b'a' + 10),
            c @ b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(ParseDigestError::NotHex { at }),
        };
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = nibble(2 * i)? << 4 | nibble(2 * i + 1)?;
        }
        Ok(Self(bytes))
    }
}

/// A byte string, as `serde_bytes` gave the `[u8; 32]` digests of protocol
/// version 1: postcard writes the length (32) and the bytes.
impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_bytes::ByteArray::<32>::deserialize(deserializer)
            .map(|bytes| Self(bytes.into_array()))
    }
}

const FILE_DOMAIN: &[u8] = b"ferry-file-v1";
const HELD_DOMAIN: &[u8] = b"ferry-held-v1";

/// SHA-256 of one chunk's bytes.
pub fn chunk_digest(data: &[u8]) -> Digest {
    Digest(Sha256::digest(data).into())
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
        self.hasher.update(chunk.0);
        self.chunks += 1;
    }

    /// How many chunk digests have been added.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// The final digest.
    pub fn finish(self) -> Digest {
        Digest(self.hasher.finalize().into())
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
        self.0.update(chunk.0);
    }

    /// The final digest.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write as _;

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
        let mut hex = heapless::String::<64>::new();
        write!(hex, "{got:x}").unwrap();
        assert_eq!(hex, expected);
    }

    #[test]
    fn digest_prints_and_parses_hex() {
        let digest = plain_sha256(b"abc");
        let lower = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let mut text = heapless::String::<80>::new();
        write!(text, "{digest}").unwrap();
        assert_eq!(text, lower);
        text.clear();
        write!(text, "{digest:?}").unwrap();
        assert_eq!(
            text,
            "Digest(ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)"
        );
        assert_eq!(lower.parse::<Digest>(), Ok(digest));
        let mut upper = heapless::String::<64>::new();
        upper.push_str(lower).unwrap();
        upper.make_ascii_uppercase();
        assert_eq!(upper.parse::<Digest>(), Ok(digest));
        assert_eq!(
            lower[..62].parse::<Digest>(),
            Err(ParseDigestError::Length { len: 62 })
        );
        let mut bad = heapless::String::<64>::new();
        bad.push_str(&lower[..63]).unwrap();
        bad.push('g').unwrap();
        assert_eq!(
            bad.parse::<Digest>(),
            Err(ParseDigestError::NotHex { at: 63 })
        );
        assert_eq!(Digest::from(*digest.as_bytes()), digest);
        assert_eq!(Digest::try_from(&digest.as_bytes()[..]).ok(), Some(digest));
        assert!(Digest::try_from(&digest.as_bytes()[1..]).is_err());
    }
}
