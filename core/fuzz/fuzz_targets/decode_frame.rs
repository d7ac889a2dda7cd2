//! `Frame::decode` never panics on any body; a decoded frame re-encodes and
//! decodes to the same frame.
#![no_main]

use ferry_core::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    // A canonical encoding is never longer than the one decoded.
    let mut buf = vec![0u8; data.len() + 16];
    let len = frame
        .encode(&mut buf)
        .expect("a decoded frame re-encodes into as many bytes");
    assert!(
        len <= data.len(),
        "re-encoding grew: {len} > {}",
        data.len()
    );
    let again = Frame::decode(&buf[..len]).expect("a re-encoded frame decodes");
    assert_eq!(frame, again);
    // The canonical encoding is a fixed point.
    let mut buf2 = vec![0u8; len];
    let len2 = again.encode(&mut buf2).expect("encodes again");
    assert_eq!(&buf[..len], &buf2[..len2]);
});
