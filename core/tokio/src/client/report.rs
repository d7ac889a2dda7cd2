//! What operations report: progress while they run, and a report when they are done.

use std::time::Duration;

use serde::{Serialize, Serializer};

pub use crate::event::FileEntry;

/// Which part of an operation progress is reported for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Sending a file to the server.
    Upload,
    /// Receiving a file from the server.
    Download,
}

/// Progress of a running operation, reported after each chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The file's name on the server.
    pub name: String,
    /// Bytes done so far, including those the other side already held.
    pub done_bytes: u64,
    /// Bytes in the file.
    pub total_bytes: u64,
    /// What is being done.
    pub phase: Phase,
}

/// The result of a verified upload or download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferReport {
    /// The file's name on the server.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The whole-file digest both ends verified, hex
    /// (see [`ferry_core::digest`]: SHA-256 over the chunk digests, the chunk size and size).
    pub digest: String,
    /// The chunk size the digest was computed with.
    pub chunk_size: u32,
    /// Chunks in the file.
    pub chunks: u64,
    /// Chunks the receiver held when the last attempt started (resumed or already there).
    pub held_at_start: u64,
    /// Chunks sent for the first time, summed over attempts (upload: by this client;
    /// download: stored by this client).
    pub chunks_sent: u64,
    /// Chunks sent for the first time in the last attempt (download: stored in it); equal to
    /// `chunks - held_at_start`, since only what the receiver lacked moves.
    pub last_attempt_sent: u64,
    /// Chunks sent again after a NACK or timeout (upload only; 0 for a download).
    pub chunks_resent: u64,
    /// Attempts (connections) the operation took; 1 when nothing broke.
    pub attempts: u32,
    /// Time from the start of the operation to verification.
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
}

impl TransferReport {
    /// Average rate in bytes per second over the whole operation.
    pub fn bytes_per_second(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.size as f64 / secs
        } else {
            0.0
        }
    }
}

/// The result of a round trip: upload, download back, compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundTripReport {
    /// The upload.
    pub upload: TransferReport,
    /// The download of the same name.
    pub download: TransferReport,
    /// The whole-file digest verified by the upload (hex).
    pub uploaded_digest: String,
    /// The whole-file digest verified by the download (hex).
    pub downloaded_digest: String,
    /// The plain SHA-256 of the local file, as `sha256sum` prints it.
    pub sha256: String,
    /// The plain SHA-256 of the downloaded copy (hashed separately only where it differs);
    /// absent where a differing copy arrived out of order and its bytes were not kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloaded_sha256: Option<String>,
    /// Chunks compared byte for byte.
    pub chunks_compared: u64,
    /// Whether the downloaded copy equals the local file byte for byte and the whole-file
    /// digests the upload and the download verified agree.
    pub identical: bool,
}

fn as_millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((duration.as_secs_f64() * 1e6).round() / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_serialize_with_milliseconds() {
        let report = TransferReport {
            name: "a".into(),
            size: 3,
            digest: "00".into(),
            chunk_size: 16,
            chunks: 1,
            held_at_start: 0,
            chunks_sent: 1,
            last_attempt_sent: 1,
            chunks_resent: 0,
            attempts: 1,
            duration: Duration::from_micros(1500),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["duration_ms"], 1.5);
        assert_eq!(json["chunks_sent"], 1);
        assert!(report.bytes_per_second() > 0.0);
        let progress = Progress {
            name: "a".into(),
            done_bytes: 1,
            total_bytes: 2,
            phase: Phase::Download,
        };
        assert_eq!(serde_json::to_value(progress).unwrap()["phase"], "download");
    }
}
