//! Pipelined `Put`s between a client and a server connection: the window bound, answers in
//! arrival order whatever order the shell finishes them in, digest checks on both ends,
//! protocol errors, and a repeated `Put` answered again.

use ferry_core::framing::encode_frame;
use ferry_core::{
    buffer_len, chunk_digest, Config, Connection, Digest, ErrorCode, Event, Failure, FileAttrs,
    FileDigest, Frame, TransferError, UsageError,
};

type Conn = Connection<Vec<u8>, 4>;
const CHUNK: u32 = 4096;

fn config() -> Config {
    Config {
        max_chunk: CHUNK,
        window: 4,
        ..Config::stream()
    }
}

fn conn(server: bool) -> Conn {
    let len = buffer_len(CHUNK as usize);
    let (rx, tx) = (vec![0; len], vec![0; len]);
    if server {
        Conn::server(config(), rx, tx, 0).unwrap()
    } else {
        Conn::client(config(), rx, tx, 0).unwrap()
    }
}

/// Every frame `from` has to send, framed.
fn frames(from: &mut Conn) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(transmit) = from.poll_transmit(0) {
        out.push(transmit.bytes.to_vec());
    }
    out
}

/// Feeds one framed frame; it must be taken whole.
fn feed(to: &mut Conn, bytes: &[u8]) {
    let mut at = 0;
    while at < bytes.len() {
        let used = to.handle_input(&bytes[at..], 0);
        assert!(used > 0, "input not taken");
        at += used;
    }
}

fn connected() -> (Conn, Conn) {
    let (mut client, mut server) = (conn(false), conn(true));
    for frame in frames(&mut client) {
        feed(&mut server, &frame);
    }
    while server.poll_event(0).is_some() {}
    for frame in frames(&mut server) {
        feed(&mut client, &frame);
    }
    while client.poll_event(0).is_some() {}
    assert_eq!(client.negotiated(), Some((CHUNK, 4)));
    (client, server)
}

/// A `Put` from the client: its seq and its framed bytes.
fn put(client: &mut Conn, name: &str, data: &[u8]) -> (u32, Vec<u8>) {
    let seq = client.put(name, FileAttrs::default(), data).unwrap();
    let mut sent = frames(client);
    assert_eq!(sent.len(), 1);
    (seq, sent.remove(0))
}

/// What the server reports for a `Put` it was fed: taken (name, data copied) and accepted.
fn take_put(server: &mut Conn) -> Option<(u32, String, Vec<u8>, Digest, FileAttrs)> {
    match server.poll_event(0)? {
        Event::PutRequested {
            seq,
            name,
            attrs,
            digest,
            data,
        } => {
            let taken = (seq, name.to_string(), data.to_vec(), digest, attrs);
            server.accept_put(seq).unwrap();
            Some(taken)
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn raw(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; buffer_len(CHUNK as usize)];
    let len = encode_frame(frame, config().framing, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn closed_with(conn: &mut Conn) -> Option<Failure> {
    let _ = frames(conn);
    while let Some(event) = conn.poll_event(0) {
        if let Event::Closed { failure, .. } = event {
            return Some(failure);
        }
    }
    None
}

#[test]
fn the_client_keeps_at_most_a_window_of_puts_unanswered() {
    let (mut client, _server) = connected();
    let seqs: Vec<u32> = (0..4)
        .map(|i| put(&mut client, &format!("f{i}"), b"data").0)
        .collect();
    assert_eq!(client.puts_in_flight(), 4);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(
        client.put("f4", FileAttrs::default(), b"data"),
        Err(UsageError::Busy)
    );
    // No other request runs while Puts are unanswered.
    assert_eq!(client.delete("f0"), Err(UsageError::Busy));
}

#[test]
fn a_put_waits_for_its_frame_to_be_sent_and_is_at_most_one_chunk() {
    let (mut client, _server) = connected();
    client.put("a", FileAttrs::default(), b"1").unwrap();
    assert_eq!(
        client.put("b", FileAttrs::default(), b"2"),
        Err(UsageError::TransmitPending)
    );
    let _ = frames(&mut client);
    let big = vec![7u8; CHUNK as usize + 1];
    assert_eq!(
        client.put("c", FileAttrs::default(), &big),
        Err(UsageError::WrongChunk)
    );
    let whole = vec![7u8; CHUNK as usize];
    let long = "n".repeat(ferry_core::wire::MAX_NAME_LEN);
    assert!(client.put(&long, FileAttrs::default(), &whole).is_ok());
}

#[test]
fn answers_go_in_arrival_order_whatever_order_the_shell_finishes() {
    let (mut client, mut server) = connected();
    let files: [&[u8]; 3] = [b"first", b"", b"third file"];
    let mut sent = Vec::new();
    for (i, data) in files.iter().enumerate() {
        sent.push(put(&mut client, &format!("dir/f{i}"), data));
    }
    let mut taken = Vec::new();
    for (_, bytes) in &sent {
        feed(&mut server, bytes);
        taken.push(take_put(&mut server).expect("a Put"));
    }
    for (i, (seq, name, data, digest, _)) in taken.iter().enumerate() {
        assert_eq!(*seq, sent[i].0);
        assert_eq!(name, &format!("dir/f{i}"));
        assert_eq!(data, files[i]);
        assert_eq!(*digest, FileDigest::of(files[i], CHUNK));
    }
    assert_eq!(server.puts_pending(), 3);
    // The last two finish first: nothing goes until the first is answered.
    for i in [2, 1] {
        let (seq, _, data, digest, _) = &taken[i];
        server
            .put_done(*seq, Ok((data.len() as u64, *digest)))
            .unwrap();
    }
    assert!(frames(&mut server).is_empty());
    let (seq, _, data, digest, _) = &taken[0];
    server
        .put_done(*seq, Ok((data.len() as u64, *digest)))
        .unwrap();
    assert_eq!(
        server.put_done(*seq, Ok((0, *digest))),
        Err(UsageError::Unexpected)
    );
    let answers = frames(&mut server);
    assert_eq!(answers.len(), 3);
    assert_eq!(server.puts_pending(), 0);
    let mut verified = Vec::new();
    for answer in answers {
        feed(&mut client, &answer);
        while let Some(event) = client.poll_event(0) {
            match event {
                Event::PutVerified { seq, size, digest } => verified.push((seq, size, digest)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let expected: Vec<_> = (0..3)
        .map(|i| {
            (
                sent[i].0,
                files[i].len() as u64,
                FileDigest::of(files[i], CHUNK),
            )
        })
        .collect();
    assert_eq!(verified, expected);
    assert_eq!(client.puts_in_flight(), 0);
    assert!(!client.is_busy());
    client.delete("x").expect("a request may follow");
}

#[test]
fn a_failed_put_is_reported_for_its_seq_and_the_connection_goes_on() {
    let (mut client, mut server) = connected();
    let (first, bytes) = put(&mut client, "quota", b"too much");
    feed(&mut server, &bytes);
    let (seq, ..) = take_put(&mut server).unwrap();
    assert_eq!(seq, first);
    server
        .put_done(seq, Err((ErrorCode::QUOTA_EXCEEDED, "quota exceeded")))
        .unwrap();
    for answer in frames(&mut server) {
        feed(&mut client, &answer);
    }
    match client.poll_event(0) {
        Some(Event::PutFailed { seq, failure, text }) => {
            assert_eq!(seq, first);
            assert_eq!(failure, Failure::Peer(ErrorCode::QUOTA_EXCEEDED));
            assert_eq!(text, "quota exceeded");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(client.negotiated().is_some());
    assert!(!client.is_busy());
}

#[test]
fn a_verified_answer_with_another_digest_fails_the_put() {
    let (mut client, mut server) = connected();
    let (sent, bytes) = put(&mut client, "a", b"abc");
    feed(&mut server, &bytes);
    let (seq, ..) = take_put(&mut server).unwrap();
    server
        .put_done(seq, Ok((3, Digest::from([1; 32]))))
        .unwrap();
    for answer in frames(&mut server) {
        feed(&mut client, &answer);
    }
    match client.poll_event(0) {
        Some(Event::PutFailed { seq, failure, .. }) => {
            assert_eq!(seq, sent);
            assert_eq!(failure, Failure::Transfer(TransferError::DigestMismatch));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn data_that_does_not_match_its_sha256_is_answered_without_the_shell() {
    let (_client, mut server) = connected();
    let bad = raw(&Frame::Put {
        seq: 5,
        name: "a",
        modified: 0,
        mode: 0,
        digest: chunk_digest(b"other"),
        data: b"data",
    });
    feed(&mut server, &bad);
    assert!(server.poll_event(0).is_none(), "the shell never sees it");
    let answers = frames(&mut server);
    assert_eq!(answers.len(), 1);
    let body = &answers[0][4..];
    match Frame::decode(body) {
        Ok(Frame::Error { seq, code, .. }) => {
            assert_eq!((seq, code), (5, ErrorCode::DIGEST_MISMATCH));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(server.negotiated().is_some());
}

#[test]
fn a_repeated_put_is_taken_and_answered_again() {
    let (mut client, mut server) = connected();
    let (_, bytes) = put(&mut client, "same", b"content");
    let attrs = FileAttrs {
        modified: Some(1_700_000_000),
        mode: Some(0o640),
    };
    let again = client.put("same", attrs, b"content");
    assert!(again.is_ok());
    let repeat = frames(&mut client).remove(0);
    for bytes in [&bytes, &repeat] {
        feed(&mut server, bytes);
        let (seq, name, data, digest, _) = take_put(&mut server).unwrap();
        assert_eq!((name.as_str(), data.as_slice()), ("same", &b"content"[..]));
        server.put_done(seq, Ok((7, digest))).unwrap();
    }
    let mut verified = 0;
    for answer in frames(&mut server) {
        feed(&mut client, &answer);
        while let Some(event) = client.poll_event(0) {
            assert!(
                matches!(event, Event::PutVerified { size: 7, .. }),
                "{event:?}"
            );
            verified += 1;
        }
    }
    assert_eq!(verified, 2);
}

#[test]
fn the_attributes_reach_the_server() {
    let (mut client, mut server) = connected();
    let attrs = FileAttrs {
        modified: Some(1_234_567_890),
        mode: Some(0o755),
    };
    client.put("bin/tool", attrs, b"#!").unwrap();
    for bytes in frames(&mut client) {
        feed(&mut server, &bytes);
    }
    let (.., taken) = take_put(&mut server).unwrap();
    assert_eq!(taken, attrs);
}

fn put_frame(seq: u32, data: &[u8]) -> Vec<u8> {
    raw(&Frame::Put {
        seq,
        name: "x",
        modified: 0,
        mode: 0,
        digest: chunk_digest(data),
        data,
    })
}

#[test]
fn a_put_above_the_window_breaks_the_protocol() {
    let (_client, mut server) = connected();
    for seq in 1..=4 {
        feed(&mut server, &put_frame(seq, b"d"));
        take_put(&mut server).unwrap();
    }
    feed(&mut server, &put_frame(5, b"d"));
    assert_eq!(closed_with(&mut server), Some(Failure::Protocol));
}

#[test]
fn a_put_longer_than_a_chunk_breaks_the_protocol() {
    let (_client, mut server) = connected();
    feed(&mut server, &put_frame(1, &vec![1u8; CHUNK as usize + 1]));
    assert_eq!(closed_with(&mut server), Some(Failure::Protocol));
}

#[test]
fn a_put_during_a_chunked_transfer_breaks_the_protocol() {
    let (mut client, mut server) = connected();
    client.upload("big", 3 * u64::from(CHUNK), false).unwrap();
    for bytes in frames(&mut client) {
        feed(&mut server, &bytes);
    }
    match server.poll_event(0) {
        Some(Event::UploadRequested { .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    server.accept_upload([]).unwrap();
    let _ = frames(&mut server);
    feed(&mut server, &put_frame(9, b"d"));
    assert_eq!(closed_with(&mut server), Some(Failure::Protocol));
}

#[test]
fn a_client_never_takes_a_put() {
    let (mut client, _server) = connected();
    feed(&mut client, &put_frame(1, b"d"));
    assert_eq!(closed_with(&mut client), Some(Failure::Protocol));
}
