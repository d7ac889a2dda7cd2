//! The round trip's last step: the downloaded copy against the local file.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::client::ProgressFn;
use crate::error::ClientError;
use crate::report::{hex, Phase, Progress, RoundTripReport, TransferReport};

/// Reads up to `buf.len()` bytes, fewer only at the end of the file.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Compares `local` with `copy` byte for byte and hashes the local file once (plain
/// SHA-256). The copy's chunks were verified as they arrived and its whole-file digest
/// must equal the upload's, so equal bytes make every digest agree without hashing again;
/// the copy is hashed on its own only from the first difference on.
pub(crate) async fn compare_files(
    local: &Path,
    copy: &Path,
    upload: &TransferReport,
    download: &TransferReport,
    progress: ProgressFn<'_>,
) -> Result<RoundTripReport, ClientError> {
    let mut a = File::open(local).map_err(|e| ClientError::io(local, e))?;
    let mut b = File::open(copy).map_err(|e| ClientError::io(copy, e))?;
    let chunk_size = upload.chunk_size.max(1);
    let mut buf_a = vec![0u8; chunk_size as usize];
    let mut buf_b = vec![0u8; chunk_size as usize];
    let mut sha_a = Sha256::new();
    // The copy's hash while it differs; until then it is `sha_a`.
    let mut sha_b: Option<Sha256> = None;
    let mut done = 0u64;
    let mut chunks = 0u64;
    loop {
        let na = read_full(&mut a, &mut buf_a).map_err(|e| ClientError::io(local, e))?;
        let nb = read_full(&mut b, &mut buf_b).map_err(|e| ClientError::io(copy, e))?;
        if na == 0 && nb == 0 {
            break;
        }
        let (da, db) = (&buf_a[..na], &buf_b[..nb]);
        if sha_b.is_none() && da != db {
            tracing::warn!(chunk = chunks, "the downloaded copy differs");
            sha_b = Some(sha_a.clone());
        }
        sha_a.update(da);
        if let Some(sha_b) = sha_b.as_mut() {
            sha_b.update(db);
        }
        chunks += 1;
        done += na as u64;
        progress(Progress {
            name: upload.name.clone(),
            done_bytes: done,
            total_bytes: upload.size,
            phase: Phase::Verify,
        });
        tokio::task::yield_now().await;
    }
    let same = sha_b.is_none();
    let sha256 = hex(&sha_a.finalize());
    let downloaded_sha256 = sha_b.map_or_else(|| sha256.clone(), |sha_b| hex(&sha_b.finalize()));
    let identical = same
        && done == upload.size
        && upload.size == download.size
        && upload.digest == download.digest;
    Ok(RoundTripReport {
        uploaded_digest: upload.digest.clone(),
        downloaded_digest: download.digest.clone(),
        upload: upload.clone(),
        download: download.clone(),
        sha256,
        downloaded_sha256,
        chunks_compared: chunks,
        identical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, bytes: &[u8], chunk_size: u32) -> TransferReport {
        TransferReport {
            name: name.into(),
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

    async fn compare(local: &[u8], copy: &[u8]) -> RoundTripReport {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, local).unwrap();
        std::fs::write(&b, copy).unwrap();
        let upload = report("f", local, 1000);
        let download = report("f", copy, 1000);
        compare_files(&a, &b, &upload, &download, &mut |_| {})
            .await
            .unwrap()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn equal_files_are_identical_with_one_hash() {
        let data: Vec<u8> = (0..4500u32).map(|i| (i * 7 % 251) as u8).collect();
        let round = compare(&data, &data).await;
        assert!(round.identical);
        assert_eq!(round.chunks_compared, 5);
        assert_eq!(round.sha256, sha256_hex(&data));
        assert_eq!(round.downloaded_sha256, round.sha256);
    }

    #[tokio::test]
    async fn a_difference_is_found_and_each_side_hashed() {
        let data: Vec<u8> = (0..4500u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut copy = data.clone();
        copy[2345] ^= 1;
        let round = compare(&data, &copy).await;
        assert!(!round.identical);
        assert_eq!(round.sha256, sha256_hex(&data));
        assert_eq!(round.downloaded_sha256, sha256_hex(&copy));

        let shorter = compare(&data, &data[..4000]).await;
        assert!(!shorter.identical);
        assert_eq!(shorter.downloaded_sha256, sha256_hex(&data[..4000]));
    }
}
