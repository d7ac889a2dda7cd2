//! The round trip's last step: the downloaded copy against the local file.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use ferry_core::{chunk_digest, FileDigest};
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

/// Compares `local` with `copy` chunk by chunk (bytes and chunk digests), computes the
/// whole-file digest of the local file and the plain SHA-256 of both, and checks them
/// against the digests the upload and the download verified.
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
    let mut file_digest = FileDigest::new(chunk_size, upload.size);
    let mut sha_a = Sha256::new();
    let mut sha_b = Sha256::new();
    let mut same = upload.size == download.size;
    let mut done = 0u64;
    let mut chunks = 0u64;
    loop {
        let na = read_full(&mut a, &mut buf_a).map_err(|e| ClientError::io(local, e))?;
        let nb = read_full(&mut b, &mut buf_b).map_err(|e| ClientError::io(copy, e))?;
        if na == 0 && nb == 0 {
            break;
        }
        let (da, db) = (&buf_a[..na], &buf_b[..nb]);
        sha_a.update(da);
        sha_b.update(db);
        let digest_a = chunk_digest(da);
        if na > 0 {
            file_digest.push(&digest_a);
        }
        if da != db || digest_a != chunk_digest(db) {
            if same {
                tracing::warn!(chunk = chunks, "the downloaded copy differs");
            }
            same = false;
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
    let local_digest = hex(&file_digest.finish());
    let sha256 = hex(&sha_a.finalize());
    let downloaded_sha256 = hex(&sha_b.finalize());
    let identical = same
        && done == upload.size
        && local_digest == upload.digest
        && upload.digest == download.digest
        && sha256 == downloaded_sha256;
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
