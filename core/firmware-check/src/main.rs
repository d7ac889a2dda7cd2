//! A firmware-shaped image around ferry-core, to prove that the core builds and
//! links for a Cortex-M4F without `std`, an allocator or unwinding, and to
//! measure what it costs in flash and RAM.
//!
//! It is not a product: the UART is an STM32F4 USART1 at its usual address,
//! driven by polling, and the clock is the DWT cycle counter at an assumed
//! 16 MHz. The image runs a client [`Connection`] with [`Config::lossy_link`]
//! (COBS framing, 1 KiB chunks, window 4) through the blocking [`Driver`]:
//! connect, upload a generated file, download one into a checksum. Both the
//! sending and the receiving halves of the core are therefore linked in.
//!
//! `./build.sh` builds it and prints the sizes.

#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::DWT;
use cortex_m_rt::entry;
use embedded_io::{ErrorKind, ErrorType, Read, Write};
use ferry_core::blocking::{ChunkSink, ChunkSource, Clock, Driver, DriverError};
use ferry_core::{buffer_len, Config, Connection, Digest};

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

/// STM32F4 USART1, polled.
struct Uart;

const USART1_SR: *mut u32 = 0x4001_1000 as *mut u32;
const USART1_DR: *mut u32 = 0x4001_1004 as *mut u32;
const SR_RXNE: u32 = 1 << 5;
const SR_TXE: u32 = 1 << 7;
/// Polls of the status register before a read gives up (lets timeouts fire).
const READ_SPINS: u32 = 10_000;

impl ErrorType for Uart {
    type Error = ErrorKind;
}

impl Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut n = 0;
        let mut spins = 0;
        while n < buf.len() {
            // SAFETY: USART1's registers on an STM32F4; volatile MMIO access.
            let status = unsafe { read_volatile(USART1_SR) };
            if status & SR_RXNE != 0 {
                buf[n] = unsafe { read_volatile(USART1_DR) } as u8;
                n += 1;
            } else if n > 0 {
                break;
            } else {
                spins += 1;
                if spins == READ_SPINS {
                    return Err(ErrorKind::TimedOut);
                }
            }
        }
        Ok(n)
    }
}

impl Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        for &byte in buf {
            // SAFETY: as above.
            unsafe {
                while read_volatile(USART1_SR) & SR_TXE == 0 {}
                write_volatile(USART1_DR, u32::from(byte));
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// Milliseconds from the DWT cycle counter, extended past its 32-bit wrap.
struct CycleClock {
    last: u32,
    cycles: u64,
}

const CYCLES_PER_MS: u64 = 16_000;

impl Clock for CycleClock {
    fn now(&mut self) -> u64 {
        let now = DWT::cycle_count();
        self.cycles += u64::from(now.wrapping_sub(self.last));
        self.last = now;
        self.cycles / CYCLES_PER_MS
    }
}

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
            .chain(digest)
            .fold(self.0 ^ index as u32, |sum, &b| {
                sum.rotate_left(5) ^ u32::from(b)
            });
        Ok(())
    }
    fn commit(&mut self, size: u64, digest: &Digest) -> Result<(), ()> {
        self.0 ^= size as u32 ^ u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
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
    let mut core = cortex_m::Peripherals::take().unwrap();
    core.DCB.enable_trace();
    core.DWT.enable_cycle_counter();

    // The connection lives in .bss (about 2 × BUF + state), not on the stack.
    let connection: &'static mut Conn =
        cortex_m::singleton!(CONNECTION: Conn = new_connection(0)).unwrap();
    let mut read_buf = [0u8; 64];
    let mut chunk_buf = [0u8; CHUNK];
    let mut clock = CycleClock { last: 0, cycles: 0 };

    loop {
        *connection = new_connection(clock.now());
        let mut driver = Driver::new(connection, Uart, &mut clock, &mut read_buf);
        if driver.connect::<()>().is_err() {
            continue;
        }
        count(driver.upload("log.bin", 10_000, &mut Generated, &mut chunk_buf));
        let mut sink = Checksum(0);
        count(driver.download("config.bin", None, &mut sink));
        CHECKSUM.store(sink.0, Ordering::Relaxed);
    }
}

impl Clock for &mut CycleClock {
    fn now(&mut self) -> u64 {
        (**self).now()
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        cortex_m::asm::nop();
    }
}
