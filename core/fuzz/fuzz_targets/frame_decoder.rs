//! `FrameDecoder` never panics on any byte stream cut into any pieces, always
//! makes progress, and never returns a body longer than `max_body_len`.
//!
//! Input: first byte = bit 0 framing (0: length-prefixed, 1: COBS), bits 1..=7
//! the piece size minus one (1..=128); the rest is the stream.
#![no_main]

use ferry_core::framing::FrameDecoder;
use ferry_core::{buffer_len, max_body_len, Frame, Framing};
use libfuzzer_sys::fuzz_target;

const CHUNK: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let framing = if first & 1 == 0 {
        Framing::LengthPrefixed
    } else {
        Framing::Cobs
    };
    let step = usize::from(first >> 1) + 1;
    let max_body = max_body_len(CHUNK);
    let mut decoder = FrameDecoder::new([0u8; buffer_len(CHUNK)], framing, max_body);
    for piece in stream.chunks(step) {
        let mut rest = piece;
        let mut idle = 0;
        while !rest.is_empty() {
            match decoder.feed(rest) {
                Ok((used, body)) => {
                    assert!(used <= rest.len(), "consumed more than fed");
                    if let Some(body) = body {
                        assert!(
                            body.len() <= max_body,
                            "body of {} > {max_body}",
                            body.len()
                        );
                        let _ = Frame::decode(body);
                    }
                    if used == 0 {
                        idle += 1;
                        assert!(idle < 2, "the decoder makes no progress");
                    } else {
                        idle = 0;
                    }
                    rest = &rest[used..];
                }
                // Fatal for the stream (length-prefixed only): the connection closes.
                Err(_) => {
                    assert_eq!(framing, Framing::LengthPrefixed);
                    return;
                }
            }
        }
    }
});
