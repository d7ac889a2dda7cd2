//! ferry-core alone in a firmware image, to prove that the core builds and
//! links for a Cortex-M4F without `std`, an allocator or unwinding, and to
//! measure what it costs in flash and RAM beside the TLS client image.
//!
//! It runs a client [`Connection`] with [`Config::lossy_link`] (COBS framing,
//! 1 KiB chunks, window 4) through the blocking [`Driver`] on the board's
//! server UART, without TLS: connect, upload a generated file, download one
//! into a checksum. Both the sending and the receiving halves of the core are
//! therefore linked in. (A serial link to a Ferry peer, not to `ferry-server`,
//! which speaks TLS.)

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::entry;
use ferry_core::blocking::{ChunkSink, ChunkSource, Driver, DriverError};
use ferry_core::{buffer_len, Config, Connection, Digest};
use ferry_firmware_device::board;
use ferry_firmware_device::clock::{self, Millis};
use ferry_firmware_device::link::Link;

/// Chunk size of [`Config::lossy_link`].
const CHUNK: usize = 1024;
/// Receive and transmit buffer length for it.
const BUF: usize = buffer_len(CHUNK);
/// Window of [`Config::lossy_link`].
const W: usize = 4;

type Conn = Connection<[u8; BUF], W>;

/// The sizes this image was built with, kept as symbols for `build.sh` to read.
#[no_mangle]
#[used]
pub static FERRY_CONNECTION_SIZE: u32 = core::mem::size_of::<Conn>() as u32;
/// See [`FERRY_CONNECTION_SIZE`].
#[no_mangle]
#[used]
pub static FERRY_BUFFER_LEN: u32 = BUF as u32;

/// Checksum of the last download and count of finished operations, so that
/// nothing the image computes can be optimised away.
static CHECKSUM: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// An upload's data, generated instead of read from storage.
struct Generated;

impl ChunkSource for Generated {
    type Error = ();
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = (at ^ (at >> 8)) as u8;
        }
        Ok(())
    }
}

/// A download's destination: a running checksum.
struct Checksum(u32);

impl ChunkSink for Checksum {
    type Error = ();
    fn write_chunk(
        &mut self,
        index: u64,
        _offset: u64,
        data: &[u8],
        digest: &Digest,
    ) -> Result<(), ()> {
        self.0 = data
            .iter()
            .chain(digest.as_bytes())
            .fold(self.0 ^ index as u32, |sum, &b| {
                sum.rotate_left(5) ^ u32::from(b)
            });
        Ok(())
    }
    fn commit(&mut self, size: u64, digest: &Digest) -> Result<(), ()> {
        let [a, b, c, d, ..] = *digest.as_bytes();
        self.0 ^= size as u32 ^ u32::from_le_bytes([a, b, c, d]);
        Ok(())
    }
}

fn count<T, E>(result: Result<T, DriverError<E>>) {
    match result {
        Ok(_) => DONE.fetch_add(1, Ordering::Relaxed),
        Err(_) => FAILED.fetch_add(1, Ordering::Relaxed),
    };
}

fn new_connection(now: u64) -> Conn {
    match Conn::client(Config::lossy_link(), [0; BUF], [0; BUF], now) {
        Ok(connection) => connection,
        Err(_) => panic!("buffers too small"),
    }
}

#[entry]
fn main() -> ! {
    let core = cortex_m::Peripherals::take().unwrap();
    clock::start(core.SYST, board::CORE_HZ);
    let (uart, _report, _rng) = board::init(1);
    let mut link = Link(uart);

    // The connection lives in .bss (about 2 × BUF + state), not on the stack.
    let connection: &'static mut Conn =
        cortex_m::singleton!(CONNECTION: Conn = new_connection(0)).unwrap();
    let mut read_buf = [0u8; 64];
    let mut chunk_buf = [0u8; CHUNK];

    loop {
        *connection = new_connection(clock::now());
        let mut driver = Driver::new(connection, &mut link, Millis, &mut read_buf);
        if driver.connect::<()>().is_err() {
            continue;
        }
        count(driver.upload("log.bin", 10_000, &mut Generated, &mut chunk_buf));
        let mut sink = Checksum(0);
        count(driver.download("config.bin", None, &mut sink));
        CHECKSUM.store(sink.0, Ordering::Relaxed);
    }
}
