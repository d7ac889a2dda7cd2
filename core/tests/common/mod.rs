//! A deterministic simulator: a client and a server `Connection` joined by an
//! in-memory link with a seeded fault injector, and in-memory storage shells.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use ferry_core::connection::{Config, Connection, Event, Failure, Transmit};
use ferry_core::digest::{chunk_digest, Digest, FileDigest};
use ferry_core::framing::FrameDecoder;
use ferry_core::wire::{ErrorCode, Frame, ListEntry};
use ferry_core::{buffer_len, Framing};

pub const W: usize = 8;
pub type Conn = Connection<Vec<u8>, W>;

/// A small deterministic RNG (SplitMix64): the simulator must replay exactly from its seed.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The bytes of `transmit`, once their frame is decoded here and found to be a
/// chunk exactly when `transmit.chunk` names one, with that index.
pub fn checked_bytes(transmit: Transmit<'_>, framing: Framing) -> &[u8] {
    let bytes = transmit.bytes;
    // Room for the CRC and delimiter the decoder reserves beyond the body.
    let mut decoder = FrameDecoder::new(vec![0; bytes.len() + 8], framing, bytes.len());
    let (used, body) = decoder.feed(bytes).expect("a frame this side encoded");
    assert_eq!(used, bytes.len(), "one transmit is one frame");
    let carried = match Frame::decode(body.expect("a complete frame")) {
        Ok(Frame::Chunk { index, .. }) => Some(index),
        _ => None,
    };
    assert_eq!(
        transmit.chunk, carried,
        "poll_transmit names the chunk it sends"
    );
    bytes
}

/// Fault rates, in per mille of segments (one segment = one `poll_transmit` output).
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub drop: u32,
    pub corrupt: u32,
    pub duplicate: u32,
    pub reorder: u32,
    pub truncate: u32,
    pub stall: u32,
    /// Per mille of steps at which the link breaks (both ends lose the connection).
    pub disconnect: u32,
}

impl Faults {
    pub fn none() -> Self {
        Self::default()
    }
}

#[derive(Default, Debug, Clone, Copy)]
pub struct FaultCounts {
    pub segments: u64,
    pub dropped: u64,
    pub corrupted: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub truncated: u64,
    pub stalled: u64,
    pub disconnects: u64,
}

/// One direction of the link.
#[derive(Default)]
struct Pipe {
    in_flight: Vec<(u64, u64, Vec<u8>)>, // (deliver_at, order, bytes)
    arrived: VecDeque<u8>,
    order: u64,
}

impl Pipe {
    fn send(
        &mut self,
        bytes: &[u8],
        now: u64,
        faults: &Faults,
        rng: &mut Rng,
        counts: &mut FaultCounts,
    ) {
        counts.segments += 1;
        if rng.chance(faults.drop) {
            counts.dropped += 1;
            return;
        }
        let mut bytes = bytes.to_vec();
        if rng.chance(faults.corrupt) && !bytes.is_empty() {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
            counts.corrupted += 1;
        }
        if rng.chance(faults.truncate) && !bytes.is_empty() {
            let keep = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(keep);
            counts.truncated += 1;
        }
        let mut at = now + 1 + rng.below(3);
        if rng.chance(faults.stall) {
            at += 50 + rng.below(400);
            counts.stalled += 1;
        }
        if rng.chance(faults.reorder) {
            // Jump ahead of whatever is queued.
            counts.reordered += 1;
            self.order += 1;
            self.in_flight.push((now + 1, 0, bytes.clone()));
        } else {
            self.order += 1;
            self.in_flight.push((at, self.order, bytes.clone()));
        }
        if rng.chance(faults.duplicate) {
            counts.duplicated += 1;
            self.order += 1;
            self.in_flight.push((at + rng.below(20), self.order, bytes));
        }
    }

    fn deliver(&mut self, now: u64) {
        self.in_flight.sort_by_key(|(at, order, _)| (*at, *order));
        while self.in_flight.first().is_some_and(|(at, _, _)| *at <= now) {
            let (_, _, bytes) = self.in_flight.remove(0);
            self.arrived.extend(bytes);
        }
    }

    fn next_delivery(&self) -> Option<u64> {
        self.in_flight.iter().map(|(at, _, _)| *at).min()
    }
}

#[derive(Clone, Debug)]
pub struct StoredFile {
    pub data: Vec<u8>,
    pub digest: Digest,
    pub chunks: Vec<Digest>,
}

#[derive(Clone, Debug, Default)]
pub struct Partial {
    pub size: u64,
    pub data: Vec<u8>,
    pub held: BTreeMap<u64, Digest>,
}

/// The server's storage shell: committed files and partial uploads, surviving reconnects.
#[derive(Default)]
pub struct ServerStore {
    pub files: BTreeMap<String, StoredFile>,
    pub partials: BTreeMap<String, Partial>,
    pub current: Option<String>,
    pub commits: u64,
    pub stores: u64,
}

/// What the client is doing.
#[derive(Clone, Debug)]
pub enum Op {
    Upload { name: String, data: Vec<u8> },
    Download { name: String },
    List,
    Delete { name: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Uploaded(Digest),
    Downloaded(Vec<u8>, Digest),
    Listed(Vec<(String, u64)>),
    Deleted,
    Failed(Failure, String),
}

pub struct Sim {
    pub config: Config,
    pub faults: Faults,
    pub rng: Rng,
    pub now: u64,
    pub client: Conn,
    pub server: Conn,
    up: Pipe,
    down: Pipe,
    pub store: ServerStore,
    pub counts: FaultCounts,
    /// Chunks the client sent for the first time / again, over all attempts.
    pub client_sent: u64,
    pub client_resent: u64,
    /// Per attempt: (chunks held by the receiver at start, chunks sent first-time).
    pub attempts: Vec<(u64, u64)>,
    download: Partial,
    listed: Vec<(String, u64)>,
    list_cursor: String,
    op_started: bool,
    started_held: u64,
    pub max_time: u64,
    /// Break the link once the server has stored this many chunks in total.
    pub break_after_stores: Option<u64>,
    client_break_after: Option<usize>,
    fresh: bool,
    stats_base: ferry_core::Stats,
}

pub fn config(framing: Framing, chunk: u32, window: u16) -> Config {
    Config {
        framing,
        max_chunk: chunk,
        window,
        retransmit_after: 40,
        max_retries: 8,
        idle_timeout: 1_000,
    }
}

fn connection(config: Config, client: bool, now: u64) -> Conn {
    let len = buffer_len(config.max_chunk as usize);
    if client {
        Connection::client(config, vec![0; len], vec![0; len], now).unwrap()
    } else {
        Connection::server(config, vec![0; len], vec![0; len], now).unwrap()
    }
}

impl Sim {
    pub fn new(config: Config, faults: Faults, seed: u64) -> Self {
        Self {
            config,
            faults,
            rng: Rng::new(seed),
            now: 0,
            client: connection(config, true, 0),
            server: connection(config, false, 0),
            up: Pipe::default(),
            down: Pipe::default(),
            store: ServerStore::default(),
            counts: FaultCounts::default(),
            client_sent: 0,
            client_resent: 0,
            attempts: Vec::new(),
            download: Partial::default(),
            listed: Vec::new(),
            list_cursor: String::new(),
            op_started: false,
            started_held: 0,
            max_time: 600_000,
            break_after_stores: None,
            client_break_after: None,
            fresh: false,
            stats_base: Default::default(),
        }
    }

    /// Breaks the link: both ends lose their connection, in-flight bytes are gone.
    pub fn disconnect(&mut self) {
        self.counts.disconnects += 1;
        self.record_attempt();
        self.client = connection(self.config, true, self.now);
        self.stats_base = Default::default();
        self.server = connection(self.config, false, self.now);
        self.up = Pipe::default();
        self.down = Pipe::default();
        self.store.current = None;
        self.op_started = false;
    }

    fn record_attempt(&mut self) {
        let stats = self.client.stats();
        let sent = stats.chunks_sent - self.stats_base.chunks_sent;
        let resent = stats.chunks_resent - self.stats_base.chunks_resent;
        self.stats_base = stats;
        self.client_sent += sent;
        self.client_resent += resent;
        if self.op_started {
            self.attempts.push((self.started_held, sent));
        }
    }

    /// Runs `op` to its end, reconnecting (and resuming) up to `attempts` times.
    pub fn run(&mut self, op: &Op, attempts: u32) -> Outcome {
        let mut outcome = None;
        self.fresh = false;
        for attempt in 0..attempts {
            if attempt > 0 || self.client.is_busy() || self.client.is_closed() {
                self.disconnect();
            }
            match self.attempt(op) {
                Some(Outcome::Failed(
                    Failure::Transfer(ferry_core::TransferError::SourceChanged),
                    _,
                )) if attempt + 1 < attempts => {
                    // The source changed under the held chunks: start over.
                    self.fresh = true;
                    continue;
                }
                Some(result @ Outcome::Failed(..)) => outcome = Some(result),
                Some(result) => {
                    self.record_attempt();
                    self.op_started = false;
                    return result;
                }
                None => {} // link broke: try again
            }
            if matches!(outcome, Some(Outcome::Failed(..))) {
                // A clean failure: retry too, as a user's client would, unless it is final.
                if attempt + 1 == attempts {
                    break;
                }
                outcome = None;
            }
        }
        self.record_attempt();
        self.op_started = false;
        outcome.unwrap_or(Outcome::Failed(Failure::Unanswered, "gave up".into()))
    }

    /// Downloads `name`, breaking the link once the client has stored `n` chunks,
    /// then resumes from the client's partial copy.
    pub fn run_download_broken_after(&mut self, name: &str, n: usize) -> Outcome {
        let op = Op::Download { name: name.into() };
        self.client_break_after = Some(n);
        let first = self.attempt(&op);
        assert!(
            first.is_none(),
            "the first attempt should break, got {first:?}"
        );
        let partial = std::mem::take(&mut self.download);
        self.disconnect();
        self.download = partial;
        let outcome = self
            .attempt_keeping_partial(&op)
            .expect("second attempt completes");
        self.record_attempt();
        self.op_started = false;
        outcome
    }

    /// One attempt over the current connection: `None` if the link broke.
    fn attempt(&mut self, op: &Op) -> Option<Outcome> {
        self.download = Partial::default();
        self.attempt_keeping_partial(op)
    }

    fn attempt_keeping_partial(&mut self, op: &Op) -> Option<Outcome> {
        let mut requested = false;
        let mut steps = 0u64;
        self.listed.clear();
        self.list_cursor.clear();
        loop {
            steps += 1;
            assert!(steps < 2_000_000, "simulation does not terminate");
            if self.now > self.max_time {
                panic!(
                    "simulated time ran past {} ms: an unbounded wait",
                    self.max_time
                );
            }
            if self.faults.disconnect > 0 && self.rng.chance(self.faults.disconnect) {
                return None;
            }
            if self
                .client_break_after
                .is_some_and(|n| self.download.held.len() >= n)
            {
                self.client_break_after = None;
                return None;
            }
            if self
                .break_after_stores
                .is_some_and(|n| self.store.stores >= n)
            {
                self.break_after_stores = None;
                return None;
            }
            let mut progress = self.step_server();
            match self.step_client(op, &mut requested) {
                Step::Progress => progress = true,
                Step::Idle => {}
                Step::Done(outcome) => return Some(outcome),
                Step::Closed(failure, text) => {
                    // The client saw the connection close; a real client reconnects.
                    if matches!(
                        failure,
                        Failure::IdleTimeout
                            | Failure::Unanswered
                            | Failure::Peer(_)
                            | Failure::Malformed(_)
                            | Failure::Framing(_)
                    ) {
                        return None;
                    }
                    return Some(Outcome::Failed(failure, text));
                }
            }
            self.up.deliver(self.now);
            self.down.deliver(self.now);
            if !self.up.arrived.is_empty() || !self.down.arrived.is_empty() {
                progress = true;
            }
            if !progress {
                let next = [
                    self.up.next_delivery(),
                    self.down.next_delivery(),
                    self.client.deadline(),
                    self.server.deadline(),
                ]
                .into_iter()
                .flatten()
                .min();
                match next {
                    Some(at) => self.now = self.now.max(at),
                    None => {
                        if self.server.is_closed() && !self.client.is_closed() {
                            return None;
                        }
                        panic!(
                            "deadlock: nothing in flight and no deadline at {} ms",
                            self.now
                        )
                    }
                }
                if self.client.deadline().is_some_and(|at| at <= self.now) {
                    self.client.handle_timeout(self.now);
                }
                if self.server.deadline().is_some_and(|at| at <= self.now) {
                    self.server.handle_timeout(self.now);
                }
            }
        }
    }

    fn step_server(&mut self) -> bool {
        let now = self.now;
        let mut progress = false;
        loop {
            let mut moved = false;
            while let Some(transmit) = self.server.poll_transmit(now) {
                let bytes = checked_bytes(transmit, self.config.framing);
                self.down
                    .send(bytes, now, &self.faults, &mut self.rng, &mut self.counts);
                moved = true;
            }
            if let Some(event) = self.server.poll_event(now).map(own) {
                moved = true;
                serve(&mut self.server, &mut self.store, event, now);
                if self
                    .break_after_stores
                    .is_some_and(|n| self.store.stores >= n)
                {
                    return true;
                }
            }
            if !self.up.arrived.is_empty() && !self.server.is_closed() {
                let (a, b) = self.up.arrived.as_slices();
                let input = if a.is_empty() { b } else { a };
                let used = self.server.handle_input(input, now);
                self.up.arrived.drain(..used);
                moved |= used > 0;
            }
            if self.server.is_closed() {
                // A real server drops the socket; the client will see silence, then reconnect.
                self.up.arrived.clear();
            }
            if !moved {
                return progress;
            }
            progress = true;
        }
    }

    fn step_client(&mut self, op: &Op, requested: &mut bool) -> Step {
        let now = self.now;
        let mut progress = false;
        loop {
            let mut moved = false;
            while let Some(transmit) = self.client.poll_transmit(now) {
                let bytes = checked_bytes(transmit, self.config.framing);
                self.up
                    .send(bytes, now, &self.faults, &mut self.rng, &mut self.counts);
                moved = true;
            }
            if self.client.negotiated().is_some() && !*requested {
                *requested = true;
                moved = true;
                self.request(op);
            }
            if let Some(event) = self.client.poll_event(now).map(own) {
                moved = true;
                if let Some(step) = self.on_client_event(op, event) {
                    return step;
                }
                if self
                    .client_break_after
                    .is_some_and(|n| self.download.held.len() >= n)
                {
                    return Step::Progress;
                }
            }
            if !self.down.arrived.is_empty() {
                let (a, b) = self.down.arrived.as_slices();
                let input = if a.is_empty() { b } else { a };
                let used = self.client.handle_input(input, now);
                self.down.arrived.drain(..used);
                moved |= used > 0;
            }
            if !moved {
                return if progress { Step::Progress } else { Step::Idle };
            }
            progress = true;
        }
    }

    fn request(&mut self, op: &Op) {
        match op {
            Op::Upload { name, data } => self
                .client
                .upload(name, data.len() as u64, self.fresh)
                .unwrap(),
            Op::Download { name } => {
                let size = self.download.size;
                let held: Vec<(u64, Digest)> =
                    self.download.held.iter().map(|(i, d)| (*i, *d)).collect();
                let mut iter = held.into_iter();
                let partial = (!self.download.held.is_empty())
                    .then_some((size, &mut iter as &mut dyn Iterator<Item = (u64, Digest)>));
                self.client.download(name, partial).unwrap()
            }
            Op::List => self.client.list(&self.list_cursor.clone(), 100).unwrap(),
            Op::Delete { name } => self.client.delete(name).unwrap(),
        }
    }

    fn on_client_event(&mut self, op: &Op, event: Owned) -> Option<Step> {
        let now = self.now;
        match event {
            Owned::Plain(_) => {}
            Owned::Started {
                layout,
                held_chunks,
            } => {
                self.op_started = true;
                self.started_held = held_chunks;
                if matches!(op, Op::Download { .. }) && self.download.size != layout.size {
                    self.download = Partial {
                        size: layout.size,
                        data: vec![0; layout.size as usize],
                        held: BTreeMap::new(),
                    };
                }
            }
            Owned::NeedChunk { index, offset, len } => {
                let Op::Upload { data, .. } = op else {
                    panic!("NeedChunk on a download")
                };
                let chunk = data[offset as usize..offset as usize + len].to_vec();
                self.client.provide_chunk(index, &chunk, now).unwrap();
            }
            Owned::StoreChunk {
                index,
                offset,
                digest,
                data,
            } => {
                assert_eq!(
                    chunk_digest(&data),
                    digest,
                    "a chunk handed over unverified"
                );
                self.download.data[offset as usize..offset as usize + data.len()]
                    .copy_from_slice(&data);
                self.download.held.insert(index, digest);
                self.client.chunk_stored(index).unwrap();
            }
            Owned::Commit { .. } => self.client.commit_done().unwrap(),
            Owned::Verified { digest } => {
                return Some(Step::Done(match op {
                    Op::Upload { .. } => Outcome::Uploaded(digest),
                    _ => Outcome::Downloaded(std::mem::take(&mut self.download.data), digest),
                }));
            }
            Owned::ListPage { entries, more } => {
                for (name, size) in entries {
                    self.list_cursor = name.clone();
                    self.listed.push((name, size));
                }
                if more {
                    self.client.list(&self.list_cursor.clone(), 100).unwrap();
                } else {
                    return Some(Step::Done(Outcome::Listed(std::mem::take(
                        &mut self.listed,
                    ))));
                }
            }
            Owned::Deleted => return Some(Step::Done(Outcome::Deleted)),
            Owned::Failed { failure, text } => {
                return Some(Step::Done(Outcome::Failed(failure, text)))
            }
            Owned::Closed { failure, text } => return Some(Step::Closed(failure, text)),
            other => panic!("client got a server event: {other:?}"),
        }
        None
    }
}

/// An event copied out of the connection, so the shell can act on the connection.
#[derive(Debug)]
pub enum Owned {
    Plain(String),
    UploadRequested {
        name: String,
        size: u64,
        fresh: bool,
    },
    DownloadRequested {
        name: String,
    },
    ListRequested {
        start_after: String,
        limit: u16,
    },
    DeleteRequested {
        name: String,
    },
    ListPage {
        entries: Vec<(String, u64)>,
        more: bool,
    },
    Deleted,
    Started {
        layout: ferry_core::Layout,
        held_chunks: u64,
    },
    NeedChunk {
        index: u64,
        offset: u64,
        len: usize,
    },
    StoreChunk {
        index: u64,
        offset: u64,
        digest: Digest,
        data: Vec<u8>,
    },
    Commit {
        digest: Digest,
    },
    Verified {
        digest: Digest,
    },
    Failed {
        failure: Failure,
        text: String,
    },
    Closed {
        failure: Failure,
        text: String,
    },
}

pub fn own(event: Event<'_>) -> Owned {
    match event {
        Event::Connected { .. } => Owned::Plain("connected".into()),
        Event::UploadRequested {
            name, size, fresh, ..
        } => Owned::UploadRequested {
            name: name.into(),
            size,
            fresh,
        },
        Event::DownloadRequested { name, .. } => Owned::DownloadRequested { name: name.into() },
        Event::ListRequested { start_after, limit } => Owned::ListRequested {
            start_after: start_after.into(),
            limit,
        },
        Event::DeleteRequested { name } => Owned::DeleteRequested { name: name.into() },
        Event::ListPage { entries, more } => Owned::ListPage {
            entries: entries
                .map(|e| {
                    let e = e.expect("decoded page");
                    (e.name.to_string(), e.size)
                })
                .collect(),
            more,
        },
        Event::Deleted => Owned::Deleted,
        Event::TransferStarted {
            layout,
            held_chunks,
        } => Owned::Started {
            layout,
            held_chunks,
        },
        Event::NeedChunk { index, offset, len } => Owned::NeedChunk { index, offset, len },
        Event::StoreChunk {
            index,
            offset,
            digest,
            data,
        } => Owned::StoreChunk {
            index,
            offset,
            digest,
            data: data.to_vec(),
        },
        Event::Commit { digest, .. } => Owned::Commit { digest },
        Event::Verified { digest, .. } => Owned::Verified { digest },
        Event::Failed { failure, text } => Owned::Failed {
            failure,
            text: text.into(),
        },
        Event::Closed { failure, text } => Owned::Closed {
            failure,
            text: text.into(),
        },
        other => panic!("an event the simulation does not know: {other:?}"),
    }
}

enum Step {
    Progress,
    Idle,
    Done(Outcome),
    Closed(Failure, String),
}

/// The server's storage shell: what `ferry-server` does with a file system.
pub fn serve(server: &mut Conn, store: &mut ServerStore, event: Owned, now: u64) {
    let chunk_size = server.negotiated().map(|(c, _)| c).unwrap_or(0);
    match event {
        Owned::Plain(_) | Owned::Started { .. } | Owned::Verified { .. } => {}
        Owned::UploadRequested { name, size, fresh } => {
            if name.is_empty() || name.contains('/') {
                server.reject(ErrorCode::INVALID_NAME, "bad name").unwrap();
                return;
            }
            let partial = store.partials.entry(name.clone()).or_default();
            if fresh || partial.size != size || partial.data.len() as u64 != size {
                *partial = Partial {
                    size,
                    data: vec![0; size as usize],
                    held: BTreeMap::new(),
                };
                // An identical committed file is held in full: the upload completes without data.
                if let Some(file) = store.files.get(&name) {
                    if file.data.len() as u64 == size {
                        partial.data = file.data.clone();
                        partial.held = file
                            .chunks
                            .iter()
                            .copied()
                            .enumerate()
                            .map(|(i, d)| (i as u64, d))
                            .collect();
                    }
                }
            }
            let held: Vec<(u64, Digest)> = partial.held.iter().map(|(i, d)| (*i, *d)).collect();
            store.current = Some(name);
            server.accept_upload(held).unwrap();
        }
        Owned::StoreChunk {
            index,
            offset,
            digest,
            data,
        } => {
            let name = store.current.clone().expect("a store without an upload");
            let partial = store.partials.get_mut(&name).unwrap();
            partial.data[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
            partial.held.insert(index, digest);
            store.stores += 1;
            server.chunk_stored(index).unwrap();
        }
        Owned::Commit { digest } => {
            let name = store.current.clone().unwrap();
            let partial = store.partials.remove(&name).unwrap();
            let chunks: Vec<Digest> = partial.held.values().copied().collect();
            assert_eq!(
                FileDigest::of(&partial.data, chunk_size),
                digest,
                "server committed a file whose bytes do not match the verified digest"
            );
            store.files.insert(
                name,
                StoredFile {
                    data: partial.data,
                    digest,
                    chunks,
                },
            );
            store.commits += 1;
            server.commit_done().unwrap();
        }
        Owned::DownloadRequested { name } => match store.files.get(&name) {
            Some(file) => {
                let digest = file.digest;
                let size = file.data.len() as u64;
                store.current = Some(name.clone());
                server.accept_download(size, Some(digest)).unwrap();
            }
            None => server.reject(ErrorCode::NOT_FOUND, "no such file").unwrap(),
        },
        Owned::NeedChunk { index, offset, len } => {
            let name = store.current.clone().unwrap();
            let file = &store.files[&name];
            let chunk = file.data[offset as usize..offset as usize + len].to_vec();
            server.provide_chunk(index, &chunk, now).unwrap();
        }
        Owned::ListRequested { start_after, limit } => {
            let entries: Vec<ListEntry<'_>> = store
                .files
                .range::<String, _>((
                    std::ops::Bound::Excluded(&start_after),
                    std::ops::Bound::Unbounded,
                ))
                .take(limit as usize + 1)
                .map(|(name, file)| ListEntry {
                    name,
                    size: file.data.len() as u64,
                    modified: 0,
                    chunk_size,
                    digest: file.digest,
                })
                .collect();
            server.respond_list(entries).unwrap();
        }
        Owned::DeleteRequested { name } => {
            if store.files.remove(&name).is_some() {
                server.respond_delete().unwrap();
            } else {
                server.reject(ErrorCode::NOT_FOUND, "no such file").unwrap();
            }
        }
        Owned::Failed { .. } | Owned::Closed { .. } => {
            store.current = None;
        }
        other => panic!("server got a client event: {other:?}"),
    }
}

/// Serves one connection until the client goes away.
pub fn serve_connection(stream: std::net::TcpStream, config: Config) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let clock = std::time::Instant::now();
    let now = || clock.elapsed().as_millis() as u64;
    let len = buffer_len(config.max_chunk as usize);
    let mut server: Conn =
        Connection::server(config, vec![0; len], vec![0; len], now()).expect("buffers fit");
    let mut store = ServerStore::default();
    let mut stream = stream;
    stream.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
    let mut input = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0, 0);
    loop {
        while let Some(transmit) = server.poll_transmit(now()) {
            stream.write_all(transmit.bytes)?;
        }
        if let Some(event) = server.poll_event(now()).map(own) {
            if matches!(event, Owned::Closed { .. }) {
                return Ok(());
            }
            serve(&mut server, &mut store, event, now());
            continue;
        }
        if start == end {
            match stream.read(&mut input) {
                Ok(0) => return Ok(()),
                Ok(n) => (start, end) = (0, n),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        start += server.handle_input(&input[start..end], now());
        if server.deadline().is_some_and(|at| now() >= at) {
            server.handle_timeout(now());
        }
    }
}

/// A monotonic clock for the blocking driver.
pub struct Monotonic(pub std::time::Instant);
impl ferry_core::blocking::Clock for Monotonic {
    fn now(&mut self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// An upload source in memory.
pub struct Memory<'a>(pub &'a [u8]);
impl ferry_core::blocking::ChunkSource for Memory<'_> {
    type Error = ();
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
        let start = offset as usize;
        buf.copy_from_slice(self.0.get(start..start + buf.len()).ok_or(())?);
        Ok(())
    }
}

/// A download sink in memory that records held chunks and the commit.
#[derive(Default)]
pub struct Collect {
    pub data: Vec<u8>,
    pub held: Vec<(u64, Digest)>,
    pub committed: Option<Digest>,
}
impl ferry_core::blocking::ChunkSink for Collect {
    type Error = ();
    fn write_chunk(
        &mut self,
        index: u64,
        offset: u64,
        data: &[u8],
        digest: &Digest,
    ) -> Result<(), ()> {
        let end = offset as usize + data.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(data);
        self.held.push((index, *digest));
        Ok(())
    }
    fn commit(&mut self, _size: u64, digest: &Digest) -> Result<(), ()> {
        self.committed = Some(*digest);
        Ok(())
    }
}
