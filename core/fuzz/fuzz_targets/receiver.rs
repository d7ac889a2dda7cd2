//! A server `Connection` after a real handshake, fed arbitrary bytes, with a
//! shell that answers every event the way a server shell would. It never
//! panics, never refuses input while nothing is pending, never stalls without a
//! deadline, and closes by itself once the input ends (idle timeout).
//!
//! Input: first byte
//! - bit 0: framing (0: length-prefixed, 1: COBS);
//! - bit 1: 0 = the rest is the raw byte stream; 1 = the rest is a sequence of
//!   frame bodies `[len: u8][body]`, which the harness frames correctly itself
//!   (a `len` of 0 is a pause of 97 ms instead), so COBS bodies pass their CRC;
//! - bit 2 (with bit 1): fix up digests: a `Chunk` body gets the right SHA-256 of
//!   its data, a `Finish` the right file digest of what was stored and a
//!   `Verified` that of the download's file, so the store / commit / verified
//!   paths are reachable (seeds in `seeds/receiver`, made by `examples/make_seeds.rs`);
//! - bits 3..=7: the size of the pieces handed to `handle_input` (1 + 9 × n).

#![no_main]

use std::collections::BTreeMap;

use ferry_core::digest::{chunk_digest, Digest, FileDigest};
use ferry_core::framing::encode_frame;
use ferry_core::wire::{ErrorCode, MAGIC, PROTOCOL_VERSION};
use ferry_core::{buffer_len, max_body_len, Config, Connection, Event, Frame, Framing};
use libfuzzer_sys::fuzz_target;

const CHUNK: usize = 64;
const W: usize = 4;
const N: usize = buffer_len(CHUNK);
const IDLE: u64 = 1_000;

type Conn = Connection<[u8; N], W>;

/// The file a download reads (5 chunks, the last one short).
fn file() -> Vec<u8> {
    (0..300u32).map(|i| (i * 7 + i / 13) as u8).collect()
}

/// The server shell's state.
struct Shell {
    file: Vec<u8>,
    file_digest: Digest,
    /// The running upload's size and the chunks stored for it.
    upload: Option<u64>,
    stored: BTreeMap<u64, Digest>,
}

/// What the shell does about an event (copied out of the borrow).
enum Action {
    Nothing,
    Closed,
    AcceptUpload(u64),
    Reject(ErrorCode),
    AcceptDownload,
    Provide {
        index: u64,
        offset: u64,
        len: usize,
    },
    Store {
        index: u64,
        digest: Digest,
    },
    Commit,
    List,
    ListTree,
    Delete,
    /// A `Put` taken and answered at once.
    Put {
        seq: u32,
        size: u64,
        digest: Digest,
    },
}

impl Shell {
    fn action(&self, event: Event<'_>) -> Action {
        match event {
            Event::Connected { .. }
            | Event::TransferStarted { .. }
            | Event::Verified { .. }
            | Event::Failed { .. } => Action::Nothing,
            Event::Closed { .. } => Action::Closed,
            Event::UploadRequested { name, size, .. } => {
                if name.is_empty() {
                    Action::Reject(ErrorCode::INVALID_NAME)
                } else {
                    Action::AcceptUpload(size)
                }
            }
            Event::DownloadRequested { name, .. } => {
                if name.is_empty() {
                    Action::Reject(ErrorCode::NOT_FOUND)
                } else {
                    Action::AcceptDownload
                }
            }
            Event::ListRequested { .. } => Action::List,
            Event::ListTreeRequested { .. } => Action::ListTree,
            Event::PutRequested {
                seq, digest, data, ..
            } => {
                assert!(data.len() <= CHUNK, "a Put of {} bytes", data.len());
                let expected = ferry_core::FileDigest::of(data, CHUNK as u32);
                assert_eq!(expected, digest, "a Put handed over unverified");
                Action::Put {
                    seq,
                    size: data.len() as u64,
                    digest,
                }
            }
            Event::DeleteRequested { .. } => Action::Delete,
            Event::NeedChunk { index, offset, len } => Action::Provide { index, offset, len },
            Event::StoreChunk {
                index,
                offset,
                digest,
                data,
            } => {
                assert_eq!(chunk_digest(data), digest, "a chunk handed over unverified");
                assert!(
                    data.len() <= CHUNK && !data.is_empty(),
                    "chunk of {} bytes",
                    data.len()
                );
                assert_eq!(offset, index * CHUNK as u64, "wrong offset");
                if let Some(size) = self.upload {
                    assert!(offset + data.len() as u64 <= size, "chunk beyond the file");
                }
                Action::Store { index, digest }
            }
            Event::Commit { .. } => Action::Commit,
            Event::ListPage { .. } | Event::Deleted => {
                panic!("a server reported a client event")
            }
            other => panic!("an event this harness does not know: {other:?}"),
        }
    }

    fn apply(&mut self, server: &mut Conn, action: Action, now: u64) {
        match action {
            Action::Nothing | Action::Closed => {}
            Action::AcceptUpload(size) => {
                self.upload = Some(size);
                self.stored.clear();
                server.accept_upload([]).expect("accept_upload");
            }
            Action::Reject(code) => server.reject(code, "no").expect("reject"),
            Action::AcceptDownload => {
                self.upload = None;
                server
                    .accept_download(self.file.len() as u64, Some(self.file_digest))
                    .expect("accept_download");
            }
            Action::Provide { index, offset, len } => {
                let start = offset as usize;
                let data = self
                    .file
                    .get(start..start + len)
                    .expect("NeedChunk beyond the file");
                server
                    .provide_chunk(index, data, now)
                    .expect("provide_chunk");
            }
            Action::Store { index, digest } => {
                self.stored.insert(index, digest);
                server.chunk_stored(index).expect("chunk_stored");
            }
            Action::Commit => server.commit_done().expect("commit_done"),
            Action::List => {
                server
                    .respond_list(core::iter::empty())
                    .expect("respond_list");
            }
            Action::ListTree => {
                server
                    .respond_list_tree(core::iter::empty(), 10)
                    .expect("respond_list_tree");
            }
            Action::Delete => server.respond_delete().expect("respond_delete"),
            Action::Put { seq, size, digest } => {
                server.accept_put(seq).expect("accept_put");
                server.put_done(seq, Ok((size, digest))).expect("put_done");
            }
        }
    }

    /// Structure-aware repair of a body: right digests where the fuzzer cannot guess them.
    fn fix_up(&self, body: &[u8], out: &mut [u8]) -> Option<usize> {
        let fixed = match Frame::decode(body).ok()? {
            Frame::Chunk {
                transfer,
                index,
                data,
                ..
            } => Frame::Chunk {
                transfer,
                index,
                digest: chunk_digest(data),
                data,
            },
            Frame::Finish { transfer, size, .. } if self.upload == Some(size) => {
                let chunks = size.div_ceil(CHUNK as u64);
                if chunks > 64 || self.stored.len() as u64 != chunks {
                    return None;
                }
                let mut file = FileDigest::new(CHUNK as u32, size);
                for digest in self.stored.values() {
                    file.push(digest);
                }
                Frame::Finish {
                    transfer,
                    size,
                    digest: file.finish(),
                }
            }
            Frame::Verified { transfer, size, .. } if size == self.file.len() as u64 => {
                Frame::Verified {
                    transfer,
                    size,
                    digest: self.file_digest,
                }
            }
            _ => return None,
        };
        fixed.encode(out).ok()
    }
}

/// The bytes the server is fed, produced lazily so fix-ups see the shell's state.
struct Feed<'a> {
    framing: Framing,
    harness_framed: bool,
    fix_digests: bool,
    step: usize,
    input: &'a [u8],
    wire: Vec<u8>,
    pos: usize,
}

impl Feed<'_> {
    /// Refills the wire when it is used up; returns a pause in ms if the input asks for one.
    fn refill(&mut self, shell: &Shell) -> u64 {
        if self.pos < self.wire.len() || self.input.is_empty() {
            return 0;
        }
        self.wire.clear();
        self.pos = 0;
        if !self.harness_framed {
            let take = self.step.min(self.input.len());
            self.wire.extend_from_slice(&self.input[..take]);
            self.input = &self.input[take..];
            return 0;
        }
        let len = usize::from(self.input[0]);
        if len == 0 {
            self.input = &self.input[1..];
            return 97;
        }
        let body = &self.input[1..(1 + len).min(self.input.len())];
        self.input = &self.input[1 + body.len()..];
        let mut fixed = [0u8; max_body_len(CHUNK)];
        let body = match self.fix_digests.then(|| shell.fix_up(body, &mut fixed)) {
            Some(Some(len)) => &fixed[..len],
            _ => body,
        };
        match self.framing {
            Framing::LengthPrefixed => {
                self.wire
                    .extend_from_slice(&(body.len() as u32).to_le_bytes());
                self.wire.extend_from_slice(body);
            }
            Framing::Cobs => {
                let mut raw = body.to_vec();
                raw.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
                let mut encoded = vec![0u8; cobs::max_encoding_length(raw.len())];
                let n = cobs::encode(&raw, &mut encoded);
                self.wire.extend_from_slice(&encoded[..n]);
                self.wire.push(0);
            }
        }
        0
    }

    fn piece(&self) -> &[u8] {
        let end = (self.pos + self.step).min(self.wire.len());
        &self.wire[self.pos..end]
    }

    fn exhausted(&self) -> bool {
        self.pos == self.wire.len() && self.input.is_empty()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let framing = if first & 1 == 0 {
        Framing::LengthPrefixed
    } else {
        Framing::Cobs
    };
    let config = Config {
        framing,
        max_chunk: CHUNK as u32,
        window: W as u16,
        retransmit_after: 50,
        max_retries: 3,
        idle_timeout: IDLE,
    };
    let mut server = Conn::server(config, [0; N], [0; N], 0).expect("server");
    let file = file();
    let mut shell = Shell {
        file_digest: FileDigest::of(&file, CHUNK as u32),
        file,
        upload: None,
        stored: BTreeMap::new(),
    };

    // The handshake: a real Hello, as a client sends it.
    let mut hello = [0u8; N];
    let len = encode_frame(
        &Frame::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            max_chunk: CHUNK as u32,
            max_window: W as u16,
        },
        framing,
        &mut hello,
    )
    .expect("Hello fits");
    assert_eq!(server.handle_input(&hello[..len], 0), len);
    assert!(matches!(
        server.poll_event(0),
        Some(Event::Connected { .. })
    ));
    assert!(server.poll_transmit(0).is_some(), "HelloAck");
    assert_eq!(server.negotiated(), Some((CHUNK as u32, W as u16)));

    let mut feed = Feed {
        framing,
        harness_framed: first & 2 != 0,
        fix_digests: first & 4 != 0,
        step: 1 + 9 * usize::from(first >> 3),
        input,
        wire: Vec::new(),
        pos: 0,
    };

    let mut now = 0u64;
    // Every step consumes input, acts on an event or lets time pass; after the
    // input ends the idle timeout closes the connection within a bounded number of steps.
    let max_steps = 10_000 + 8 * data.len();
    for _ in 0..max_steps {
        let mut sent = 0;
        while let Some(bytes) = server.poll_transmit(now).map(|t| t.bytes) {
            assert!(!bytes.is_empty() && bytes.len() <= N);
            sent += 1;
            assert!(sent <= 64, "poll_transmit never runs dry");
        }
        if let Some(event) = server.poll_event(now) {
            match shell.action(event) {
                Action::Closed => {
                    assert!(server.is_closed());
                    assert_eq!(server.deadline(), None);
                    return;
                }
                action => shell.apply(&mut server, action, now),
            }
            continue;
        }
        assert!(!server.is_closed(), "closed without reporting Closed");
        let pause = feed.refill(&shell);
        now += pause;
        if !feed.piece().is_empty() {
            let used = server.handle_input(feed.piece(), now);
            assert!(used > 0, "input refused while nothing is pending");
            assert!(used <= feed.piece().len());
            feed.pos += used;
            now += 1;
            if server.deadline().is_some_and(|at| at <= now) {
                server.handle_timeout(now);
            }
            continue;
        }
        if !feed.exhausted() {
            // A pause.
            if server.deadline().is_some_and(|at| at <= now) {
                server.handle_timeout(now);
            }
            continue;
        }
        // Input used up: let time pass to the next deadline.
        let at = server
            .deadline()
            .expect("a server with nothing to do and no deadline stalls forever");
        assert!(
            at <= now + IDLE,
            "deadline {at} beyond the idle timeout at {now}"
        );
        now = now.max(at);
        server.handle_timeout(now);
    }
    panic!("the connection did not close within {max_steps} steps");
});
