//! Writes seed inputs for the `receiver` fuzz target into `seeds/receiver/`:
//! whole conversations (upload, download, list, delete, errors) in the
//! harness-framed mode with digest fix-up, for both framings.
//!
//! `cargo run --example make_seeds` (from `core/fuzz`).

use ferry_core::wire::{ErrorCode, Held, NackReason};
use ferry_core::Frame;

fn conversation(frames: &[Frame<'_>], first: u8) -> Vec<u8> {
    let mut out = vec![first];
    for frame in frames {
        let mut buf = [0u8; 512];
        let len = frame.encode(&mut buf).expect("encodes");
        assert!(
            (1..=255).contains(&len),
            "a seed body must fit a length byte"
        );
        out.push(len as u8);
        out.extend_from_slice(&buf[..len]);
    }
    out
}

fn main() {
    let data = [0x5au8; 64];
    let tail = [0xa5u8; 36];
    let zero = ferry_core::Digest::default();
    let upload = [
        Frame::OpenUpload {
            seq: 1,
            name: "a.bin",
            size: 100,
            fresh: false,
        },
        Frame::Chunk {
            transfer: 1,
            index: 1,
            digest: zero,
            data: &tail,
        },
        Frame::Chunk {
            transfer: 1,
            index: 0,
            digest: zero,
            data: &data,
        },
        Frame::Chunk {
            transfer: 1,
            index: 0,
            digest: zero,
            data: &data,
        },
        Frame::Finish {
            transfer: 1,
            size: 100,
            digest: zero,
        },
        Frame::Finish {
            transfer: 1,
            size: 100,
            digest: zero,
        },
        Frame::List {
            seq: 2,
            start_after: "",
            limit: 10,
        },
        Frame::Delete {
            seq: 3,
            name: "a.bin",
        },
    ];
    let download = [
        Frame::OpenDownload {
            seq: 1,
            name: "f",
            size: 0,
            held: Held::default(),
        },
        Frame::Ack {
            transfer: 1,
            cumulative: 2,
            mask: 0b1,
        },
        Frame::Nack {
            transfer: 1,
            index: 2,
            reason: NackReason::DigestMismatch,
        },
        Frame::Ack {
            transfer: 1,
            cumulative: 5,
            mask: 0,
        },
        Frame::Verified {
            transfer: 1,
            size: 300,
            digest: zero,
        },
        Frame::OpenDownload {
            seq: 2,
            name: "f",
            size: 300,
            held: Held {
                prefix: 2,
                mask: 0,
                digest: zero,
            },
        },
        Frame::Error {
            seq: 2,
            code: ErrorCode::CANCELLED,
            text: "stop",
        },
        Frame::Error {
            seq: 0,
            code: ErrorCode::INTERNAL,
            text: "bye",
        },
    ];
    let resume = [
        Frame::OpenUpload {
            seq: 7,
            name: "r",
            size: 130,
            fresh: true,
        },
        Frame::Chunk {
            transfer: 7,
            index: 0,
            digest: zero,
            data: &data,
        },
        Frame::OpenUpload {
            seq: 7,
            name: "r",
            size: 130,
            fresh: true,
        },
        Frame::OpenUpload {
            seq: 8,
            name: "",
            size: 1,
            fresh: false,
        },
        Frame::OpenUpload {
            seq: 9,
            name: "e",
            size: 0,
            fresh: false,
        },
        Frame::Finish {
            transfer: 9,
            size: 0,
            digest: zero,
        },
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/receiver");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, frames) in [
        ("upload", &upload[..]),
        ("download", &download[..]),
        ("resume", &resume[..]),
    ] {
        // bit 0 framing, bit 1 harness-framed, bit 2 fix digests, bits 3.. piece size.
        for (framing, bit) in [("lp", 0u8), ("cobs", 1u8)] {
            for (pieces, step) in [("whole", 31u8 << 3), ("bytes", 0u8)] {
                let seed = conversation(frames, step | 0b110 | bit);
                std::fs::write(dir.join(format!("{name}-{framing}-{pieces}")), seed).unwrap();
            }
        }
    }
}
