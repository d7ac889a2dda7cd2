//! A firmware-shaped image of the Ferry device client, to prove that
//! `ferry-firmware-client` (ferry-core + embedded-tls mutual TLS) builds and
//! links for a Cortex-M4F with `#![no_std]`, `#![no_main]`, no allocator and no
//! unwinding, and to measure what it costs in flash and RAM.
//!
//! It is shaped like a real device but has not run on one: an STM32F407-class
//! part whose USART1 (polled) carries the byte stream to the server (a modem in
//! transparent mode, say), whose hardware RNG feeds TLS, and whose last two
//! 128 KiB flash sectors hold a staging slot for downloads and the held-chunk
//! record that lets a download resume after a reset. The device's certificate,
//! key, CA and server pin live in a provisioning block in flash, written at
//! manufacturing.
//!
//! The loop: a round trip (upload a generated log, download it back and compare),
//! then a resumable download of `update.bin` into the staging slot.
//!
//! `./build.sh` builds it and prints the sizes.

#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::DWT;
use cortex_m_rt::entry;
use embedded_io::{ErrorKind, ErrorType, Read, Write};
use ferry_core::blocking::{ChunkSink, ChunkSource, Clock};
use ferry_core::{Digest, Layout};
use ferry_firmware_client::p256::ecdsa::SigningKey;
use ferry_firmware_client::{
    device_config, state_sizes, Error, FirmwareClient, HeldStore, Identity, NoClock, ServerPin,
    SmallBuffers,
};
use rand_core::{CryptoRng, RngCore};

/// Every buffer of the client, in `.bss` (not on the stack).
static mut BUFFERS: SmallBuffers = SmallBuffers::new();

/// Sizes this image was built with, kept as symbols for `build.sh` to read.
#[no_mangle]
#[used]
pub static FERRY_BUFFERS_SIZE: u32 = core::mem::size_of::<SmallBuffers>() as u32;
/// See [`FERRY_BUFFERS_SIZE`]: the core connection without its buffers.
#[no_mangle]
#[used]
pub static FERRY_CONNECTION_SIZE: u32 = state_sizes::<Uart, 4>().connection as u32;
/// The embedded-tls connection over the UART (keys, record state).
#[no_mangle]
#[used]
pub static FERRY_TLS_SIZE: u32 = state_sizes::<Uart, 4>().tls as u32;
/// The server verifier, alive during the handshake.
#[no_mangle]
#[used]
pub static FERRY_VERIFIER_SIZE: u32 = state_sizes::<Uart, 4>().verifier as u32;

static DONE: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

// ----- provisioning -----

/// What the factory writes into the device (DER certificates, the raw P-256
/// scalar, the server's DNS name and key pin). Zeroes here: the factory tool
/// patches this block in the image.
#[repr(C)]
struct Provisioning {
    cert_len: u32,
    cert: [u8; 1024],
    ca_len: u32,
    ca: [u8; 1024],
    key: [u8; 32],
    server_name_len: u32,
    server_name: [u8; 64],
    server_pin: [u8; 32],
}

#[link_section = ".rodata.ferry_provisioning"]
#[no_mangle]
static PROVISIONING: Provisioning = Provisioning {
    cert_len: 0,
    cert: [0; 1024],
    ca_len: 0,
    ca: [0; 1024],
    key: [0; 32],
    server_name_len: 0,
    server_name: [0; 64],
    server_pin: [0; 32],
};

fn provisioned() -> Option<Identity<'static>> {
    // Read through `black_box`: the block is patched after the build, so the
    // compiler must not fold its zeroes.
    let p: &'static Provisioning = core::hint::black_box(&PROVISIONING);
    Some(Identity {
        certificate: p.cert.get(..p.cert_len as usize)?,
        key: SigningKey::from_bytes(&p.key.into()).ok()?,
        ca: p.ca.get(..p.ca_len as usize)?,
        server_name: core::str::from_utf8(p.server_name.get(..p.server_name_len as usize)?).ok()?,
        server_pin: ServerPin(p.server_pin),
    })
}

// ----- transport: STM32F4 USART1, polled -----

/// The link to the server. Reads block until a byte arrives or about a second
/// of silence; a timeout ends the TLS session (the client reconnects and the
/// transfer resumes).
struct Uart;

const USART1_SR: *mut u32 = 0x4001_1000 as *mut u32;
const USART1_DR: *mut u32 = 0x4001_1004 as *mut u32;
const SR_RXNE: u32 = 1 << 5;
const SR_TXE: u32 = 1 << 7;
const READ_SPINS: u32 = 16_000_000;

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

// ----- the hardware RNG (TLS keys and nonces) -----

/// The STM32F4's true random number generator.
struct HwRng;

const RCC_AHB2ENR: *mut u32 = 0x4002_3834 as *mut u32;
const RNG_CR: *mut u32 = 0x5006_0800 as *mut u32;
const RNG_SR: *mut u32 = 0x5006_0804 as *mut u32;
const RNG_DR: *mut u32 = 0x5006_0808 as *mut u32;

impl HwRng {
    fn enable() -> Self {
        // SAFETY: RCC and RNG registers of an STM32F4; read-modify-write at start-up.
        unsafe {
            write_volatile(RCC_AHB2ENR, read_volatile(RCC_AHB2ENR) | 1 << 6);
            write_volatile(RNG_CR, 1 << 2);
        }
        HwRng
    }
}

impl RngCore for HwRng {
    fn next_u32(&mut self) -> u32 {
        loop {
            // SAFETY: RNG registers; volatile MMIO access.
            let status = unsafe { read_volatile(RNG_SR) };
            if status & 0b110 != 0 {
                // Seed or clock error: restart the generator (reference manual's recovery).
                unsafe {
                    write_volatile(RNG_SR, 0);
                    write_volatile(RNG_CR, 0);
                    write_volatile(RNG_CR, 1 << 2);
                }
            } else if status & 1 != 0 {
                return unsafe { read_volatile(RNG_DR) };
            }
        }
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32()) << 32 | u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(4) {
            let word = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for HwRng {}

// ----- clock -----

/// Milliseconds from the DWT cycle counter, extended past its 32-bit wrap.
struct CycleClock {
    last: u32,
    cycles: u64,
}

const CYCLES_PER_MS: u64 = 168_000;

impl Clock for CycleClock {
    fn now(&mut self) -> u64 {
        let now = DWT::cycle_count();
        self.cycles += u64::from(now.wrapping_sub(self.last));
        self.last = now;
        self.cycles / CYCLES_PER_MS
    }
}

// ----- flash: staging slot and held-chunk record -----

const FLASH_KEYR: *mut u32 = 0x4002_3C04 as *mut u32;
const FLASH_SR: *mut u32 = 0x4002_3C0C as *mut u32;
const FLASH_CR: *mut u32 = 0x4002_3C10 as *mut u32;
const CR_PG: u32 = 1 << 0;
const CR_SER: u32 = 1 << 1;
const CR_PSIZE_X32: u32 = 0b10 << 8;
const CR_STRT: u32 = 1 << 16;
const CR_LOCK: u32 = 1 << 31;
const SR_BSY: u32 = 1 << 16;
const SR_ERRORS: u32 = 0xf0 | 1 << 1;

/// Sector 10: the staging slot downloads are written to.
const STAGING: (u32, u32) = (10, 0x080C_0000);
/// Sector 11: the held-chunk record.
const RECORD: (u32, u32) = (11, 0x080E_0000);
const SECTOR_LEN: u32 = 128 * 1024;

#[derive(Debug, Clone, Copy)]
enum FlashError {
    Program,
    TooLarge,
}

/// The STM32F4 flash controller, 32-bit programming.
struct Flash;

impl Flash {
    fn wait() -> Result<(), FlashError> {
        // SAFETY: flash controller registers; volatile MMIO access.
        unsafe {
            while read_volatile(FLASH_SR) & SR_BSY != 0 {}
            let status = read_volatile(FLASH_SR);
            write_volatile(FLASH_SR, status); // clear the flags (write 1 to clear)
            if status & SR_ERRORS != 0 {
                return Err(FlashError::Program);
            }
        }
        Ok(())
    }

    fn unlock() {
        // SAFETY: the documented key sequence.
        unsafe {
            if read_volatile(FLASH_CR) & CR_LOCK != 0 {
                write_volatile(FLASH_KEYR, 0x4567_0123);
                write_volatile(FLASH_KEYR, 0xCDEF_89AB);
            }
        }
    }

    fn erase(sector: u32) -> Result<(), FlashError> {
        Self::unlock();
        Self::wait()?;
        // SAFETY: sector erase of a sector that holds no code (see memory.x).
        unsafe {
            write_volatile(FLASH_CR, CR_PSIZE_X32 | CR_SER | sector << 3);
            write_volatile(FLASH_CR, CR_PSIZE_X32 | CR_SER | sector << 3 | CR_STRT);
        }
        let result = Self::wait();
        unsafe { write_volatile(FLASH_CR, CR_LOCK) };
        result
    }

    /// Programs `data` at `address` (word-aligned); a last partial word is padded with 0xff.
    fn program(address: u32, data: &[u8]) -> Result<(), FlashError> {
        Self::unlock();
        Self::wait()?;
        unsafe { write_volatile(FLASH_CR, CR_PSIZE_X32 | CR_PG) };
        let mut result = Ok(());
        for (i, chunk) in data.chunks(4).enumerate() {
            let mut word = [0xff; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: a word of an erased data sector (see memory.x), PG set.
            unsafe {
                write_volatile(
                    (address + 4 * i as u32) as *mut u32,
                    u32::from_le_bytes(word),
                )
            };
            result = Self::wait();
            if result.is_err() {
                break;
            }
        }
        unsafe { write_volatile(FLASH_CR, CR_LOCK) };
        result
    }

    fn read(address: u32, buf: &mut [u8]) {
        for (i, byte) in buf.iter_mut().enumerate() {
            // SAFETY: memory-mapped flash inside the data sectors.
            *byte = unsafe { read_volatile((address as usize + i) as *const u8) };
        }
    }
}

/// A download's destination: the staging slot (say, a firmware update).
struct Staging;

impl ChunkSink for Staging {
    type Error = FlashError;
    fn started(&mut self, layout: Layout, held_chunks: u64) -> Result<(), FlashError> {
        if layout.size > u64::from(SECTOR_LEN) {
            return Err(FlashError::TooLarge);
        }
        if held_chunks == 0 {
            Flash::erase(STAGING.0)?;
        }
        Ok(())
    }
    fn write_chunk(
        &mut self,
        _: u64,
        offset: u64,
        data: &[u8],
        _: &Digest,
    ) -> Result<(), FlashError> {
        Flash::program(STAGING.1 + offset as u32, data)
    }
    fn commit(&mut self, _: u64, _: &Digest) -> Result<(), FlashError> {
        Ok(()) // a real device would now mark the slot bootable
    }
}

/// The held-chunk record in its flash sector: a header (magic, chunk size,
/// size, name) and 40-byte entries (index, digest) appended behind it; erased
/// flash (0xff) ends the list.
struct FlashRecord {
    next: u32,
}

const MAGIC: u32 = 0x4652_5931; // "FRY1"
const HEADER_LEN: u32 = 96;
const ENTRY_LEN: u32 = 40;
const MAX_NAME: usize = 80;

impl HeldStore for FlashRecord {
    type Error = FlashError;

    fn find(&mut self, name: &str, chunk_size: u32) -> Result<Option<u64>, FlashError> {
        let mut header = [0u8; HEADER_LEN as usize];
        Flash::read(RECORD.1, &mut header);
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let name_len = (word(12) as usize).min(MAX_NAME);
        if word(0) != MAGIC
            || word(4) != chunk_size
            || &header[16..16 + name_len] != name.as_bytes()
        {
            return Ok(None);
        }
        let mut count = 0;
        while self.entry(u64::from(count))?.is_some() {
            count += 1;
        }
        self.next = count;
        Ok(Some(u64::from(word(8))))
    }

    fn entry(&mut self, position: u64) -> Result<Option<(u64, Digest)>, FlashError> {
        let at = HEADER_LEN as u64 + position * u64::from(ENTRY_LEN);
        if at + u64::from(ENTRY_LEN) > u64::from(SECTOR_LEN) {
            return Ok(None);
        }
        let mut entry = [0u8; ENTRY_LEN as usize];
        Flash::read(RECORD.1 + at as u32, &mut entry);
        let mut index = [0u8; 8];
        index.copy_from_slice(&entry[..8]);
        let index = u64::from_le_bytes(index);
        if index == u64::MAX {
            return Ok(None);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&entry[8..]);
        Ok(Some((index, digest)))
    }

    fn start(&mut self, name: &str, size: u64, chunk_size: u32) -> Result<(), FlashError> {
        if name.len() > MAX_NAME || size > u64::from(SECTOR_LEN) {
            return Err(FlashError::TooLarge);
        }
        Flash::erase(RECORD.0)?;
        let mut header = [0xffu8; HEADER_LEN as usize];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&chunk_size.to_le_bytes());
        header[8..12].copy_from_slice(&(size as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(name.len() as u32).to_le_bytes());
        header[16..16 + name.len()].copy_from_slice(name.as_bytes());
        Flash::program(RECORD.1, &header)?;
        self.next = 0;
        Ok(())
    }

    fn record(&mut self, index: u64, digest: &Digest) -> Result<(), FlashError> {
        let at = HEADER_LEN + self.next * ENTRY_LEN;
        if at + ENTRY_LEN > SECTOR_LEN {
            return Ok(()); // full: later chunks are simply not resumable
        }
        let mut entry = [0u8; ENTRY_LEN as usize];
        entry[..8].copy_from_slice(&index.to_le_bytes());
        entry[8..].copy_from_slice(digest);
        Flash::program(RECORD.1 + at, &entry)?;
        self.next += 1;
        Ok(())
    }

    fn clear(&mut self) -> Result<(), FlashError> {
        self.next = 0;
        Flash::erase(RECORD.0)
    }
}

// ----- data -----

/// An upload's data (a log), generated instead of read from storage.
struct Log;

impl ChunkSource for Log {
    type Error = FlashError;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FlashError> {
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = (at ^ (at >> 8)) as u8;
        }
        Ok(())
    }
}

fn count<T, E>(result: Result<T, Error<E>>) {
    match result {
        Ok(_) => DONE.fetch_add(1, Ordering::Relaxed),
        Err(_) => FAILED.fetch_add(1, Ordering::Relaxed),
    };
}

#[entry]
fn main() -> ! {
    let mut core = cortex_m::Peripherals::take().unwrap();
    core.DCB.enable_trace();
    core.DWT.enable_cycle_counter();

    let Some(identity) = provisioned() else {
        // Not provisioned: nothing to connect with.
        loop {
            cortex_m::asm::wfi();
        }
    };
    // SAFETY: the only reference to BUFFERS, taken once before the loop.
    let buffers: &'static mut SmallBuffers = unsafe { &mut *addr_of_mut!(BUFFERS) };
    let mut client = FirmwareClient::<_, _, NoClock, 4>::new(
        buffers.buffers(),
        identity,
        device_config(),
        HwRng::enable(),
        CycleClock { last: 0, cycles: 0 },
    );
    let mut record = FlashRecord { next: 0 };
    loop {
        count(client.roundtrip(Uart, "log.bin", 10_000, &mut Log));
        count(client.download(Uart, "update.bin", &mut Staging, &mut record));
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        cortex_m::asm::nop();
    }
}
