//! A large upload streams through the page with bounded memory: the body is generated on the
//! fly, goes through warp's multipart stream and ferry-client to the server, and the peak
//! resident memory of this whole process (client, page and server together) must stay far
//! below the file's size.
//!
//! 64 MiB by default; `FERRY_WEB_BIG=1` makes it 1 GiB (`FERRY_WEB_BIG_MIB=N` picks N MiB).
//! This file is its own test binary, so nothing else runs in the process meanwhile.

mod support;

use std::time::Instant;

use bytes::Bytes;
use futures_util::stream;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use support::{file_sha256, Browser, Env};

const BLOCK: usize = 256 * 1024;

fn size_mib() -> u64 {
    if let Ok(n) = std::env::var("FERRY_WEB_BIG_MIB") {
        return n.parse().expect("FERRY_WEB_BIG_MIB is a number");
    }
    if std::env::var("FERRY_WEB_BIG").is_ok_and(|v| v == "1") {
        1024
    } else {
        64
    }
}

/// Peak resident set size of this process, KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Resets the peak to the current resident size.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

/// Block `i` of the generated file: cheap, deterministic, not compressible.
fn block(i: u64) -> Bytes {
    let mut state = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = vec![0u8; BLOCK];
    for word in data.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    Bytes::from(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_with_bounded_memory() {
    let mib = size_mib();
    let size = mib * 1024 * 1024;
    let blocks = size / BLOCK as u64;
    let env = Env::start().await;
    let browser = Browser::open(&env).await;
    let mut expected = Sha256::new();
    for i in 0..blocks {
        expected.update(block(i));
    }
    let expected: [u8; 32] = expected.finalize().into();

    let body = reqwest::Body::wrap_stream(stream::iter(
        (0..blocks).map(|i| Ok::<_, std::io::Error>(block(i))),
    ));
    let form = Form::new().text("size", size.to_string()).part(
        "file",
        Part::stream_with_length(body, size).file_name("big.bin"),
    );
    reset_peak();
    let before = peak_rss_kib();
    let started = Instant::now();
    let response = browser.post_form(browser.headers(true), form).await;
    let elapsed = started.elapsed();
    let peak = peak_rss_kib();
    assert_eq!(response.status(), StatusCode::OK);
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["size"], size);
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "uploaded {mib} MiB through the page in {:.1} s ({:.0} MB/s); process peak RSS {} MiB, \
         {growth_mib} MiB above the start",
        elapsed.as_secs_f64(),
        size as f64 / elapsed.as_secs_f64() / 1e6,
        peak / 1024
    );
    assert!(
        growth_mib < 48,
        "memory grew by {growth_mib} MiB during a {mib} MiB upload"
    );
    let stored = env.stored(&browser.identity, "big.bin");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), size);
    assert_eq!(
        file_sha256(&stored),
        expected,
        "the server holds other bytes"
    );
    env.stop().await;
}
