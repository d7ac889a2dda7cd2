//! Every malformed, truncated, oversized or out-of-place frame is rejected with an
//! error value, never a panic, and a connection that gets one closes cleanly.
use ferry_core::connection::{Config, Connection, Event, Failure};
use ferry_core::framing::{encode_frame, Framing};
use ferry_core::wire::{
    DecodeError, ErrorCode, Frame, Held, NackReason, MAGIC, MAX_ERROR_TEXT, MAX_NAME_LEN,
    PROTOCOL_VERSION,
};
use ferry_core::{buffer_len, max_body_len};
use proptest::prelude::*;

const CHUNK: u32 = 256;

fn samples() -> Vec<Frame<'static>> {
    let held = Held {
        prefix: 3,
        mask: 5,
        digest: [7; 32].into(),
    };
    vec![
        Frame::Hello {
            magic: MAGIC,
            version: 1,
            max_chunk: 1024,
            max_window: 4,
        },
        Frame::HelloAck {
            version: 1,
            chunk_size: 1024,
            window: 4,
        },
        Frame::OpenUpload {
            seq: 1,
            name: "a.txt",
            size: 99,
            fresh: false,
        },
        Frame::ResumeStatus { seq: 1, held },
        Frame::OpenDownload {
            seq: 2,
            name: "b",
            size: 5,
            held,
        },
        Frame::FileInfo {
            seq: 2,
            size: 5,
            chunk_size: 1024,
        },
        Frame::Chunk {
            transfer: 1,
            index: 2,
            digest: [1; 32].into(),
            data: b"hello",
        },
        Frame::Ack {
            transfer: 1,
            cumulative: 3,
            mask: 1,
        },
        Frame::Nack {
            transfer: 1,
            index: 3,
            reason: NackReason::DigestMismatch,
        },
        Frame::Finish {
            transfer: 1,
            size: 5,
            digest: [2; 32].into(),
        },
        Frame::Verified {
            transfer: 1,
            size: 5,
            digest: [2; 32].into(),
        },
        Frame::List {
            seq: 3,
            start_after: "",
            limit: 10,
        },
        Frame::ListPage {
            seq: 3,
            more: false,
            count: 0,
            entries: &[],
        },
        Frame::Delete {
            seq: 4,
            name: "a.txt",
        },
        Frame::Deleted { seq: 4 },
        Frame::Error {
            seq: 0,
            code: ErrorCode::BUSY,
            text: "busy",
        },
    ]
}

#[test]
fn every_truncation_of_every_frame_is_rejected() {
    let mut buf = [0u8; 1024];
    for frame in samples() {
        let len = frame.encode(&mut buf).unwrap();
        assert_eq!(Frame::decode(&buf[..len]), Ok(frame));
        for cut in 0..len {
            assert!(
                Frame::decode(&buf[..cut]).is_err(),
                "{frame:?} cut at {cut} decoded"
            );
        }
        buf[len] = 0;
        assert_eq!(
            Frame::decode(&buf[..len + 1]),
            Err(DecodeError::TrailingBytes),
            "{frame:?}"
        );
    }
}

#[test]
fn unknown_tags_are_rejected() {
    for tag in [19u8, 20, 100, 127] {
        assert_eq!(Frame::decode(&[tag, 0, 0, 0]), Err(DecodeError::Malformed));
    }
    // A varint tag that never ends.
    assert_eq!(Frame::decode(&[0xff; 12]), Err(DecodeError::Malformed));
}

#[test]
fn overlong_names_and_texts_are_rejected() {
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let mut buf = vec![0u8; 2048];
    let frames = [
        Frame::OpenUpload {
            seq: 1,
            name: &long,
            size: 1,
            fresh: false,
        },
        Frame::OpenDownload {
            seq: 1,
            name: &long,
            size: 0,
            held: Held::default(),
        },
        Frame::Delete {
            seq: 1,
            name: &long,
        },
        Frame::List {
            seq: 1,
            start_after: &long,
            limit: 1,
        },
    ];
    for frame in frames {
        let len = frame.encode(&mut buf).unwrap();
        assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::NameTooLong));
    }
    let text = "t".repeat(MAX_ERROR_TEXT + 1);
    let len = Frame::Error {
        seq: 1,
        code: ErrorCode::BUSY,
        text: &text,
    }
    .encode(&mut buf)
    .unwrap();
    assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::TextTooLong));
}

#[test]
fn invalid_utf8_names_are_rejected() {
    let mut buf = [0u8; 64];
    let len = Frame::Delete { seq: 1, name: "ab" }
        .encode(&mut buf)
        .unwrap();
    buf[len - 1] = 0xff;
    assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::Malformed));
}

#[test]
fn list_page_with_wrong_count_or_garbage_is_rejected() {
    let mut buf = [0u8; 64];
    let len = Frame::ListPage {
        seq: 1,
        more: false,
        count: 1,
        entries: &[],
    }
    .encode(&mut buf)
    .unwrap();
    assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::BadListPage));
    let len = Frame::ListPage {
        seq: 1,
        more: false,
        count: 0,
        entries: &[1, 2],
    }
    .encode(&mut buf)
    .unwrap();
    assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::BadListPage));
}

fn server(framing: Framing) -> Connection<Vec<u8>, 4> {
    let config = Config {
        framing,
        max_chunk: CHUNK,
        window: 4,
        ..Config::stream()
    };
    let len = buffer_len(CHUNK as usize);
    Connection::server(config, vec![0; len], vec![0; len], 0).unwrap()
}

fn framed(frame: &Frame<'_>, framing: Framing) -> Vec<u8> {
    let mut buf = vec![0u8; buffer_len(CHUNK as usize)];
    let len = encode_frame(frame, framing, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// Feeds all of `input`, collecting (failure, error code sent back) once closed.
fn feed_until_closed(
    server: &mut Connection<Vec<u8>, 4>,
    input: &[u8],
) -> (Option<Failure>, Vec<ErrorCode>) {
    let mut sent = Vec::new();
    let mut rest = input;
    let mut closed = None;
    for _ in 0..10_000 {
        while let Some(bytes) = server.poll_transmit(0).map(|t| t.bytes) {
            if bytes.len() > 4 {
                if let Ok(Frame::Error { code, .. }) = Frame::decode(&bytes[4..]) {
                    sent.push(code);
                }
            }
        }
        match server.poll_event(0) {
            Some(Event::Closed { failure, .. }) => {
                closed = Some(failure);
                break;
            }
            Some(Event::UploadRequested { .. }) => {
                server.accept_upload([]).unwrap();
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        if rest.is_empty() {
            break;
        }
        let used = server.handle_input(rest, 0);
        rest = &rest[used..];
    }
    (closed, sent)
}

fn hello(version: u16, magic: u32) -> Frame<'static> {
    Frame::Hello {
        magic,
        version,
        max_chunk: CHUNK,
        max_window: 4,
    }
}

#[test]
fn oversized_length_prefix_closes_the_connection() {
    let mut server = server(Framing::LengthPrefixed);
    let too_long = (max_body_len(CHUNK as usize) as u32 + 1).to_le_bytes();
    let (closed, sent) = feed_until_closed(&mut server, &too_long);
    assert!(matches!(closed, Some(Failure::Framing(_))), "{closed:?}");
    assert_eq!(sent, vec![ErrorCode::PROTOCOL]);
}

#[test]
fn unknown_version_and_bad_magic_are_refused() {
    let mut server1 = server(Framing::LengthPrefixed);
    let (closed, sent) = feed_until_closed(
        &mut server1,
        &framed(&hello(PROTOCOL_VERSION + 1, MAGIC), Framing::LengthPrefixed),
    );
    assert_eq!(
        closed,
        Some(Failure::UnsupportedVersion {
            theirs: PROTOCOL_VERSION + 1
        })
    );
    assert_eq!(sent, vec![ErrorCode::UNSUPPORTED_VERSION]);

    let mut server2 = server(Framing::LengthPrefixed);
    let (closed, _) = feed_until_closed(
        &mut server2,
        &framed(
            &hello(PROTOCOL_VERSION, 0xdead_beef),
            Framing::LengthPrefixed,
        ),
    );
    assert_eq!(closed, Some(Failure::Protocol));
}

#[test]
fn requests_before_hello_are_refused() {
    let mut server = server(Framing::LengthPrefixed);
    let open = Frame::OpenUpload {
        seq: 1,
        name: "x",
        size: 1,
        fresh: false,
    };
    let (closed, _) = feed_until_closed(&mut server, &framed(&open, Framing::LengthPrefixed));
    assert_eq!(closed, Some(Failure::Protocol));
}

#[test]
fn garbage_after_hello_closes_with_malformed() {
    let mut server = server(Framing::LengthPrefixed);
    let mut input = framed(&hello(PROTOCOL_VERSION, MAGIC), Framing::LengthPrefixed);
    input.extend_from_slice(&[3, 0, 0, 0, 0x7f, 0x7f, 0x7f]);
    let (closed, sent) = feed_until_closed(&mut server, &input);
    assert_eq!(closed, Some(Failure::Malformed(DecodeError::Malformed)));
    assert_eq!(sent, vec![ErrorCode::PROTOCOL]);
}

#[test]
fn chunk_beyond_the_file_fails_the_transfer() {
    let mut server = server(Framing::LengthPrefixed);
    let mut input = framed(&hello(PROTOCOL_VERSION, MAGIC), Framing::LengthPrefixed);
    input.extend(framed(
        &Frame::OpenUpload {
            seq: 1,
            name: "x",
            size: 10,
            fresh: false,
        },
        Framing::LengthPrefixed,
    ));
    let data = [0u8; 10];
    let digest = ferry_core::chunk_digest(&data);
    input.extend(framed(
        &Frame::Chunk {
            transfer: 1,
            index: 5,
            digest,
            data: &data,
        },
        Framing::LengthPrefixed,
    ));
    let (_, sent) = feed_until_closed(&mut server, &input);
    assert_eq!(
        sent,
        vec![ErrorCode::PROTOCOL],
        "the transfer fails and the peer is told"
    );
    assert!(!server.is_busy());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), cobs in any::<bool>(), after_hello in any::<bool>()) {
        let framing = if cobs { Framing::Cobs } else { Framing::LengthPrefixed };
        let mut server = server(framing);
        let mut input = if after_hello { framed(&hello(PROTOCOL_VERSION, MAGIC), framing) } else { Vec::new() };
        input.extend(bytes);
        let _ = feed_until_closed(&mut server, &input);
        let _ = Frame::decode(&input);
    }
}

/// The figures in the crate docs' memory table and the README, exactly: a change
/// of the connection's size must update them. Sizes depend on the pointer width.
#[test]
#[cfg(target_pointer_width = "64")]
fn state_sizes() {
    use core::mem::size_of;
    const SMALL: usize = buffer_len(1024);
    const LARGE: usize = buffer_len(64 * 1024);
    let small = size_of::<Connection<[u8; SMALL], 4>>();
    let large = size_of::<Connection<[u8; LARGE], 16>>();
    println!("buffer_len(1 KiB) = {SMALL}, Connection<[u8; {SMALL}], 4> = {small} bytes");
    println!("buffer_len(64 KiB) = {LARGE}, Connection<[u8; {LARGE}], 16> = {large} bytes");
    assert_eq!((SMALL, small - 2 * SMALL, small), (2_126, 5_060, 9_312));
    assert_eq!((LARGE, large - 2 * LARGE, large), (66_889, 8_142, 141_920));
}
