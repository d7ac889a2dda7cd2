//! Per-chunk cost of the protocol core beside one bare SHA-256 pass.
//!
//! `cargo bench -p ferry-core --bench core`
//!
//! A client and a server [`Connection`] are joined in memory over the
//! length-prefixed framing, with an upload running of a file so large that it
//! never ends during the bench. Each iteration moves exactly one chunk end to
//! end (chunk frame client → server, Ack server → client, so the window never
//! stalls) and times one side of it:
//!
//! - `sha256`: `Sha256::digest` of the chunk (the floor: each side hashes each byte once);
//! - `sender`: the client's calls for one chunk: `poll_event` (NeedChunk),
//!   `provide_chunk` (SHA-256 + frame encode into the transmit buffer),
//!   `poll_transmit`, and `handle_input` of the server's Ack;
//! - `receiver`: the server's calls for one chunk: `handle_input` of the chunk
//!   frame (copy into the receive buffer, decode, SHA-256 verify), `poll_event`
//!   (StoreChunk), `chunk_stored`, `poll_transmit` (the Ack);
//! - `chunk_round_trip`: both sides together.
//!
//! The bytes pass from one connection's transmit buffer straight to the other's
//! `handle_input`, so no shell copy is counted on either side.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_core::{buffer_len, Config, Connection, Event, Framing};
use sha2::{Digest as _, Sha256};

const WINDOW: usize = 16;
const SIZES: [(usize, &str); 2] = [(16 * 1024, "16KiB"), (64 * 1024, "64KiB")];

type Conn = Connection<Vec<u8>, WINDOW>;

/// A connected client/server pair with an upload running.
struct Pair {
    client: Conn,
    server: Conn,
    data: Vec<u8>,
    chunks_moved: u64,
}

fn test_data(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Moves every pending frame from `from` to `to` (control traffic only).
fn pump(from: &mut Conn, to: &mut Conn) {
    while let Some(transmit) = from.poll_transmit(0) {
        let mut rest = transmit.bytes;
        while !rest.is_empty() {
            let used = to.handle_input(rest, 0);
            assert!(used > 0, "the peer stopped taking input during setup");
            rest = &rest[used..];
        }
    }
}

impl Pair {
    fn new(chunk: usize) -> Self {
        let config = Config {
            framing: Framing::LengthPrefixed,
            max_chunk: chunk as u32,
            window: WINDOW as u16,
            ..Config::stream()
        };
        let len = buffer_len(chunk);
        let mut client = Conn::client(config, vec![0; len], vec![0; len], 0).unwrap();
        let mut server = Conn::server(config, vec![0; len], vec![0; len], 0).unwrap();

        // Handshake.
        pump(&mut client, &mut server);
        assert!(matches!(
            server.poll_event(0),
            Some(Event::Connected { .. })
        ));
        pump(&mut server, &mut client);
        assert!(matches!(
            client.poll_event(0),
            Some(Event::Connected { .. })
        ));
        assert_eq!(client.negotiated(), Some((chunk as u32, WINDOW as u16)));

        // An upload that never ends during the bench.
        let size = chunk as u64 * 1_000_000_000;
        client.upload("bench.bin", size, false).unwrap();
        pump(&mut client, &mut server);
        assert!(matches!(
            server.poll_event(0),
            Some(Event::UploadRequested { .. })
        ));
        server.accept_upload([]).unwrap();
        assert!(matches!(
            server.poll_event(0),
            Some(Event::TransferStarted { .. })
        ));
        pump(&mut server, &mut client);
        assert!(matches!(
            client.poll_event(0),
            Some(Event::TransferStarted { .. })
        ));

        Self {
            client,
            server,
            data: test_data(chunk),
            chunks_moved: 0,
        }
    }

    /// Moves one chunk end to end; returns the time spent in the sender's and
    /// in the receiver's calls.
    #[inline(always)]
    fn one_chunk(&mut self) -> (Duration, Duration) {
        let Self {
            client,
            server,
            data,
            ..
        } = self;

        // Sender: read request, hash + encode, hand out the frame.
        let t0 = Instant::now();
        let Some(Event::NeedChunk { index, len, .. }) = client.poll_event(0) else {
            panic!("the sender did not ask for a chunk: the window stalled or the file ended");
        };
        client
            .provide_chunk(index, black_box(&data[..len]), 0)
            .unwrap();
        let frame = client.poll_transmit(0).expect("a chunk frame").bytes;
        let t1 = Instant::now();

        // Receiver: take the frame, verify, hand over, acknowledge.
        let used = server.handle_input(black_box(frame), 0);
        debug_assert_eq!(used, frame.len());
        let Some(Event::StoreChunk {
            index: got, data, ..
        }) = server.poll_event(0)
        else {
            panic!("the receiver did not hand over the chunk");
        };
        black_box(data);
        server.chunk_stored(got).unwrap();
        let ack = server.poll_transmit(0).expect("an Ack").bytes;
        let t2 = Instant::now();

        // Sender: apply the Ack (frees the window slot).
        let used = client.handle_input(black_box(ack), 0);
        let t3 = Instant::now();
        debug_assert_eq!(used, ack.len());
        assert_eq!(index, got);
        let _ = used;

        self.chunks_moved += 1;
        ((t1 - t0) + (t3 - t2), t2 - t1)
    }
}

fn sanity_check(chunk: usize) {
    let mut pair = Pair::new(chunk);
    for _ in 0..3 * WINDOW {
        pair.one_chunk();
    }
    assert_eq!(pair.client.stats().chunks_sent, 3 * WINDOW as u64);
    assert_eq!(pair.server.stats().chunks_stored, 3 * WINDOW as u64);
    assert_eq!(pair.server.stats().chunks_nacked, 0);
    assert_eq!(pair.client.stats().chunks_resent, 0);
    assert!(pair.chunks_moved == 3 * WINDOW as u64);
}

fn bench_sha256(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for (chunk, name) in SIZES {
        let data = test_data(chunk);
        group.throughput(Throughput::Bytes(chunk as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
            b.iter(|| Sha256::digest(black_box(&data[..])))
        });
    }
    group.finish();
}

fn bench_side(c: &mut Criterion, group_name: &str, pick: fn((Duration, Duration)) -> Duration) {
    let mut group = c.benchmark_group(group_name);
    for (chunk, name) in SIZES {
        sanity_check(chunk);
        let mut pair = Pair::new(chunk);
        group.throughput(Throughput::Bytes(chunk as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += pick(pair.one_chunk());
                }
                total
            })
        });
    }
    group.finish();
}

fn bench_sender(c: &mut Criterion) {
    bench_side(c, "sender", |(sender, _)| sender);
}

fn bench_receiver(c: &mut Criterion) {
    bench_side(c, "receiver", |(_, receiver)| receiver);
}

fn bench_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk_round_trip");
    for (chunk, name) in SIZES {
        let mut pair = Pair::new(chunk);
        group.throughput(Throughput::Bytes(chunk as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(pair.one_chunk()))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_sha256,
    bench_sender,
    bench_receiver,
    bench_round_trip
);
criterion_main!(benches);
