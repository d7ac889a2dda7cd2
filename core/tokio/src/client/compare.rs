//! The round trip's download: every verified chunk is compared with the same range of the
//! local file as it arrives, so nothing is written and nothing is read twice.
//!
//! Equal bytes make every digest agree (each chunk was checked against the server's chunk
//! digest on arrival, and the whole-file digest must equal the upload's), so the only other
//! hashing is the plain SHA-256 `sha256sum` would print, fed in file order while the chunks
//! arrive in order (as they do on one TLS stream) and computed from the local file afterwards
//! otherwise.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_core::{Digest, Layout};
use sha2::{Digest as _, Sha256};

use crate::client::download::Sink;
use crate::client::error::ClientError;
use crate::client::partial::Resume;
use crate::client::report::{RoundTripReport, TransferReport};

/// Compares a download with a local file.
pub(crate) struct CompareSink {
    path: PathBuf,
    file: File,
    local_size: u64,
    buf: Vec<u8>,
    /// SHA-256 of the local file's bytes before `hashed_to`, while chunks come in order.
    sha: Option<Sha256>,
    hashed_to: u64,
    /// The downloaded bytes' SHA-256 from the first difference on (before it, `sha`).
    sha_copy: Option<Sha256>,
    first_difference: Option<u64>,
    chunks_compared: u64,
    bytes_compared: u64,
}

impl CompareSink {
    pub(crate) fn open(path: &Path) -> Result<Self, ClientError> {
        let file = File::open(path).map_err(|e| ClientError::io(path, e))?;
        let local_size = file.metadata().map_err(|e| ClientError::io(path, e))?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            local_size,
            buf: Vec::new(),
            sha: Some(Sha256::new()),
            hashed_to: 0,
            sha_copy: None,
            first_difference: None,
            chunks_compared: 0,
            bytes_compared: 0,
        })
    }

    /// The round trip's report, once the download is verified.
    pub(crate) fn report(
        self,
        upload: &TransferReport,
        download: &TransferReport,
    ) -> Result<RoundTripReport, ClientError> {
        // Hashed in file order from the start: the SHA-256 of the local bytes compared, which
        // are the downloaded bytes wherever no difference was found.
        let streamed = self
            .sha
            .filter(|_| self.hashed_to == download.size)
            .map(|sha| format!("{:x}", sha.finalize()));
        let same = self.first_difference.is_none()
            && self.local_size == download.size
            && self.bytes_compared == download.size;
        let sha256 = match &streamed {
            Some(streamed) if self.local_size == download.size => streamed.clone(),
            _ => file_sha256(&self.path)?,
        };
        let downloaded_sha256 = match (self.first_difference, streamed, self.sha_copy) {
            _ if same => Some(sha256.clone()),
            (None, Some(streamed), _) => Some(streamed),
            (Some(_), Some(_), Some(copy)) => Some(format!("{:x}", copy.finalize())),
            // The copy differed and arrived out of order; its bytes were not kept.
            _ => None,
        };
        if let Some(offset) = self.first_difference {
            tracing::warn!(offset, "the downloaded copy differs from the local file");
        }
        Ok(RoundTripReport {
            uploaded_digest: upload.digest.clone(),
            downloaded_digest: download.digest.clone(),
            upload: upload.clone(),
            download: download.clone(),
            sha256,
            downloaded_sha256,
            chunks_compared: self.chunks_compared,
            identical: same && upload.size == download.size && upload.digest == download.digest,
        })
    }
}

impl Sink for CompareSink {
    fn resume(&mut self, _name: &str, _chunk_size: u32) -> Result<Option<Resume>, ClientError> {
        Ok(None) // every attempt compares from the start
    }

    fn start(&mut self, _name: &str, _layout: Layout, _resumed: bool) -> Result<(), ClientError> {
        self.restart()
    }

    fn store(
        &mut self,
        _index: u64,
        offset: u64,
        _digest: &Digest,
        data: &[u8],
    ) -> Result<(), ClientError> {
        self.buf.resize(data.len(), 0);
        let local = read_at(&self.file, &mut self.buf, offset)
            .map_err(|e| ClientError::io(&self.path, e))?;
        let local = &self.buf[..local];
        let in_order = offset == self.hashed_to;
        if local != data && self.first_difference.is_none() {
            self.first_difference = Some(offset);
            self.sha_copy = self.sha.clone().filter(|_| in_order);
        }
        match (self.sha.as_mut(), in_order) {
            (Some(sha), true) => {
                sha.update(local);
                if let Some(copy) = self.sha_copy.as_mut() {
                    copy.update(data);
                }
                self.hashed_to += data.len() as u64;
            }
            // Out of order: the plain SHA-256 is computed from the file at the end.
            _ => self.sha = None,
        }
        self.chunks_compared += 1;
        self.bytes_compared += data.len() as u64;
        Ok(())
    }

    fn commit(&mut self, _size: u64) -> Result<(), ClientError> {
        Ok(())
    }

    fn restart(&mut self) -> Result<(), ClientError> {
        self.sha = Some(Sha256::new());
        self.hashed_to = 0;
        self.sha_copy = None;
        self.first_difference = None;
        self.chunks_compared = 0;
        self.bytes_compared = 0;
        Ok(())
    }
}

/// Reads up to `buf.len()` bytes at `offset`, fewer only at the end of the file.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The plain SHA-256 of a file read from disk, hex (`ferry_core::digest::plain_sha256`
/// hashes bytes in memory).
fn file_sha256(path: &Path) -> Result<String, ClientError> {
    let mut file = File::open(path).map_err(|e| ClientError::io(path, e))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => sha.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ClientError::io(path, e)),
        }
    }
    Ok(format!("{:x}", sha.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(bytes: &[u8], chunk_size: u32) -> TransferReport {
        TransferReport {
            name: "f".into(),
            size: bytes.len() as u64,
            digest: "same".into(),
            chunk_size,
            chunks: (bytes.len() as u64).div_ceil(u64::from(chunk_size)),
            held_at_start: 0,
            chunks_sent: 0,
            last_attempt_sent: 0,
            chunks_resent: 0,
            attempts: 1,
            duration: std::time::Duration::ZERO,
        }
    }

    /// Feeds `copy` in chunks of 1000, in `order`, against a local file holding `local`.
    fn compare(local: &[u8], copy: &[u8], order: &[usize]) -> RoundTripReport {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local");
        std::fs::write(&path, local).unwrap();
        let mut sink = CompareSink::open(&path).unwrap();
        let layout = Layout {
            size: copy.len() as u64,
            chunk_size: 1000,
        };
        sink.start("f", layout, false).unwrap();
        for &index in order {
            let chunk = &copy[index * 1000..copy.len().min((index + 1) * 1000)];
            sink.store(index as u64, index as u64 * 1000, &Digest::default(), chunk)
                .unwrap();
        }
        sink.commit(copy.len() as u64).unwrap();
        sink.report(&report(local, 1000), &report(copy, 1000))
            .unwrap()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    fn data() -> Vec<u8> {
        (0..4500u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn equal_files_are_identical_in_and_out_of_order() {
        let data = data();
        for order in [[0, 1, 2, 3, 4], [0, 2, 1, 4, 3]] {
            let round = compare(&data, &data, &order);
            assert!(round.identical);
            assert_eq!(round.chunks_compared, 5);
            assert_eq!(round.sha256, sha256_hex(&data));
            assert_eq!(round.downloaded_sha256.as_ref(), Some(&round.sha256));
        }
    }

    #[test]
    fn a_difference_is_found_and_each_side_hashed() {
        let data = data();
        let mut copy = data.clone();
        copy[2345] ^= 1;
        let round = compare(&data, &copy, &[0, 1, 2, 3, 4]);
        assert!(!round.identical);
        assert_eq!(round.sha256, sha256_hex(&data));
        assert_eq!(round.downloaded_sha256, Some(sha256_hex(&copy)));

        let out_of_order = compare(&data, &copy, &[0, 2, 1, 3, 4]);
        assert!(!out_of_order.identical);
        assert_eq!(out_of_order.sha256, sha256_hex(&data));

        let shorter = compare(&data, &data[..4000], &[0, 1, 2, 3]);
        assert!(!shorter.identical);
        assert_eq!(shorter.sha256, sha256_hex(&data));
        assert_eq!(shorter.downloaded_sha256, Some(sha256_hex(&data[..4000])));

        let longer_copy = [data.as_slice(), b"more"].concat();
        let longer = compare(&data, &longer_copy, &[0, 1, 2, 3, 4]);
        assert!(!longer.identical);
        assert_eq!(longer.sha256, sha256_hex(&data));
    }

    #[test]
    fn an_attempt_that_starts_over_compares_from_nothing() {
        let data = data();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local");
        std::fs::write(&path, &data).unwrap();
        let mut sink = CompareSink::open(&path).unwrap();
        let layout = Layout {
            size: data.len() as u64,
            chunk_size: 1000,
        };
        sink.start("f", layout, false).unwrap();
        sink.store(0, 0, &Digest::default(), &[9u8; 1000]).unwrap(); // a broken first attempt
        sink.start("f", layout, false).unwrap();
        for index in 0..5 {
            let chunk = &data[index * 1000..data.len().min((index + 1) * 1000)];
            sink.store(index as u64, index as u64 * 1000, &Digest::default(), chunk)
                .unwrap();
        }
        let round = sink
            .report(&report(&data, 1000), &report(&data, 1000))
            .unwrap();
        assert!(round.identical);
        assert_eq!(round.sha256, sha256_hex(&data));
    }
}
