//! The Ferry device client as a Cortex-M4F firmware image: `ferry-firmware-client`
//! (ferry-core + embedded-tls mutual TLS) with `#![no_std]`, `#![no_main]`, no
//! allocator and no unwinding, on one of two boards (`src/board/`):
//!
//! - `stm32f407` (default feature): USART1 to the server (a modem in
//!   transparent mode, say), the hardware RNG, flash sectors 10 and 11 for the
//!   download slot and the held-chunk record;
//! - `mps2-an386`: the same application under `qemu-system-arm -M mps2-an386`,
//!   its UART0 connected straight to a real `ferry-server` (`run-qemu.sh`).
//!
//! The device's certificate, key, CA and server pin live in a provisioning
//! block in flash, written at manufacturing (`provision.py` patches it into
//! the image).
//!
//! A boot: a round trip (upload a generated log, download it back and
//! compare), then a resumable download of `update.bin` into the staging slot,
//! on one TLS session; a transport failure is retried on a new session (the
//! download resumes from the held chunks, after a reset too). The report UART
//! says what happened, with the figures and the peak stack; the board then
//! hands over the verdict (`board::finish`).
//!
//! `./build.sh` builds it and prints the sizes.

#![no_std]
#![no_main]

mod storage;

use core::mem::MaybeUninit;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use cortex_m_rt::entry;
use ferry_core::blocking::ChunkSource;
use ferry_firmware_client::p256::ecdsa::SigningKey;
use ferry_firmware_client::{
    device_config, state_sizes, Error, FirmwareClient, Identity, NoClock, ServerPin, SmallBuffers,
    TlsError,
};
use sha2::{Digest as _, Sha256};

use ferry_firmware_device::board::{self, FlashError, LinkUart};
use ferry_firmware_device::clock::{self, Millis};
use ferry_firmware_device::link::Link;
use ferry_firmware_device::report::{self, Line};
use ferry_firmware_device::stack;
use storage::{Record, Staging};

/// Every buffer of the client, in `.bss` (not on the stack).
static mut BUFFERS: SmallBuffers = SmallBuffers::new();

type Transport = &'static mut Link<LinkUart>;

/// Sizes this image was built with, kept as symbols for `build.sh` to read.
#[no_mangle]
#[used]
pub static FERRY_BUFFERS_SIZE: u32 = core::mem::size_of::<SmallBuffers>() as u32;
/// See [`FERRY_BUFFERS_SIZE`]: the core connection without its buffers.
#[no_mangle]
#[used]
pub static FERRY_CONNECTION_SIZE: u32 = state_sizes::<Transport, 4>().connection as u32;
/// The embedded-tls connection over the UART (keys, record state).
#[no_mangle]
#[used]
pub static FERRY_TLS_SIZE: u32 = state_sizes::<Transport, 4>().tls as u32;
/// The server verifier, alive during the handshake.
#[no_mangle]
#[used]
pub static FERRY_VERIFIER_SIZE: u32 = state_sizes::<Transport, 4>().verifier as u32;

/// The round trip's file.
const LOG_NAME: &str = "log.bin";
const LOG_SIZE: u64 = 24 * 1024;
/// The download's file (put on the server by the operator).
const UPDATE_NAME: &str = "update.bin";
/// Sessions tried before the device gives up.
const MAX_ATTEMPTS: u32 = 4;
/// Quiet line wanted before a handshake.
const QUIET_MS: u64 = 1_500;

// ----- provisioning -----

/// What the factory writes into the device (DER certificates, the raw P-256
/// scalar, the server's DNS name and key pin). Zeroes here: `provision.py`
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
        certificate: p
            .cert
            .get(..p.cert_len as usize)
            .filter(|c| !c.is_empty())?,
        key: SigningKey::from_bytes(&p.key.into()).ok()?,
        ca: p.ca.get(..p.ca_len as usize).filter(|c| !c.is_empty())?,
        server_name: core::str::from_utf8(p.server_name.get(..p.server_name_len as usize)?).ok()?,
        server_pin: ServerPin(p.server_pin),
    })
}

// ----- boots -----

/// The boot counter, in RAM the start-up code leaves alone, so it survives a
/// reset (not a power cycle). Tells the report (and the runner) which boot this
/// is, and feeds the emulated board's entropy.
#[link_section = ".uninit.ferry_boots"]
static mut BOOTS: MaybeUninit<[u32; 2]> = MaybeUninit::uninit();
const BOOTS_MAGIC: u32 = 0xB007_C0DE;

fn next_boot() -> u32 {
    let boots = addr_of_mut!(BOOTS).cast::<[u32; 2]>();
    // SAFETY: read and written once, before anything else runs; any bit
    // pattern is a valid [u32; 2]. Volatile: the compiler sees no initial
    // value and must not assume one.
    let [magic, last] = unsafe { read_volatile(boots) };
    let boot = if magic == BOOTS_MAGIC {
        last.wrapping_add(1)
    } else {
        1
    };
    unsafe { write_volatile(boots, [BOOTS_MAGIC, boot]) };
    boot
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

// ----- the run -----

fn rate(line: Line, bytes: u64, ms: u64) -> Line {
    line.num(ms)
        .text(" ms, ")
        .num(bytes * 1000 / ms.max(1))
        .text(" B/s")
}

fn describe(line: Line, error: &Error<FlashError>) -> Line {
    match error {
        Error::Tls(TlsError::Io(embedded_io::ErrorKind::TimedOut)) => {
            line.text("no answer from the server (read timeout)")
        }
        Error::Tls(TlsError::Io(_)) => line.text("transport error"),
        Error::Tls(TlsError::HandshakeAborted(_, alert)) => line
            .text("the server refused the session, TLS alert ")
            .num(*alert as u64),
        Error::Tls(TlsError::ConnectionClosed) => line.text("the server closed the session"),
        // embedded-tls's name for a fatal alert after the handshake: the server
        // refused the session once it had checked the device's certificate.
        Error::Tls(TlsError::InternalError) => {
            line.text("the server refused the session (TLS alert after the handshake)")
        }
        Error::Tls(TlsError::InvalidSignature) => {
            line.text("the server's handshake signature is wrong")
        }
        Error::Tls(TlsError::InvalidRecord | TlsError::CryptoError | TlsError::DecodeError) => {
            line.text("TLS record not readable (a stale session's bytes, or not TLS)")
        }
        Error::Tls(_) => line.text("TLS failure"),
        Error::ServerPin => line.text("the server's key is not the pinned one"),
        Error::Eof => line.text("the stream ended"),
        Error::Storage(FlashError::Program) => line.text("storage: program failed"),
        Error::Storage(FlashError::TooLarge) => line.text("storage: file too large"),
        Error::Failed(failure) => line
            .text("refused by the server, code ")
            .num(u64::from(failure.code().0)),
        Error::Closed(failure) => line
            .text("connection closed, code ")
            .num(u64::from(failure.code().0)),
        Error::Usage(_) => line.text("usage error"),
        Error::Buffers => line.text("buffers too small"),
        Error::Mismatch { offset } => line
            .text("round trip: the download differs at offset ")
            .num(*offset),
    }
}

/// Worth a new session: the transport or the TLS stream broke (a reset, a
/// dropped line). Not: the server refused us, the pin, storage, a mismatch.
fn retryable(error: &Error<FlashError>) -> bool {
    matches!(error, Error::Eof)
        || matches!(error, Error::Tls(tls)
            if !matches!(tls, TlsError::HandshakeAborted(..) | TlsError::InternalError))
}

/// One boot's work; true if the round trip and the download verified.
fn run(link: Transport, rng: Option<board::Rng>) -> bool {
    let Some(identity) = provisioned() else {
        report::line().text("FAIL: not provisioned").end();
        return false;
    };
    let Some(rng) = rng else {
        report::line().text("FAIL: no entropy (no seed)").end();
        return false;
    };
    // SAFETY: the only reference to BUFFERS, taken once.
    let buffers: &'static mut SmallBuffers = unsafe { &mut *addr_of_mut!(BUFFERS) };
    let mut client = FirmwareClient::<_, _, NoClock, 4>::new(
        buffers.buffers(),
        identity,
        device_config(),
        rng,
        Millis,
    );
    let mut record = Record::new();
    for attempt in 1..=MAX_ATTEMPTS {
        link.drain(QUIET_MS);
        report::line()
            .text("session ")
            .num(u64::from(attempt))
            .end();
        let opened = clock::now();
        let result = client.connect(&mut *link, |session| {
            report::line()
                .text("session open (TLS 1.3 + Ferry handshake) in ")
                .num(clock::now() - opened)
                .text(" ms")
                .end();
            let started = clock::now();
            let trip = session.roundtrip(LOG_NAME, LOG_SIZE, &mut Log)?;
            rate(
                report::line()
                    .text("roundtrip verified: ")
                    .num(trip.uploaded.size)
                    .text(" B up (chunks held by the server ")
                    .num(trip.uploaded.held_chunks)
                    .text(", sent ")
                    .num(trip.uploaded.chunks_sent)
                    .text(") and down, "),
                2 * trip.uploaded.size,
                clock::now() - started,
            )
            .end();
            let started = clock::now();
            let mut staging = Staging { stored: 0 };
            let got = session.download(UPDATE_NAME, &mut staging, &mut record)?;
            rate(
                report::line()
                    .text("download verified: ")
                    .num(got.size)
                    .text(" B, chunks held ")
                    .num(got.held_chunks)
                    .text(" stored ")
                    .num(got.chunks_stored)
                    .text(", "),
                got.chunks_stored * 1024,
                clock::now() - started,
            )
            .end();
            Ok(got)
        });
        match result {
            Ok(got) => {
                let mut sha = Sha256::new();
                storage::staged(got.size as usize, |bytes| sha.update(bytes));
                report::line()
                    .text("staged sha256 ")
                    .hex(&sha.finalize())
                    .end();
                return true;
            }
            Err(error) => {
                let last = attempt == MAX_ATTEMPTS || !retryable(&error);
                describe(
                    report::line().text(if last { "FAIL: " } else { "retry: " }),
                    &error,
                )
                .end();
                if last {
                    return false;
                }
            }
        }
    }
    false
}

#[entry]
fn main() -> ! {
    stack::paint();
    let boot = next_boot();
    let core = cortex_m::Peripherals::take().unwrap();
    clock::start(core.SYST, board::CORE_HZ);
    let (link, _report, rng) = board::init(boot);
    report::line()
        .text("boot ")
        .num(u64::from(boot))
        .text(" on ")
        .text(board::NAME)
        .end();
    let link: Transport = cortex_m::singleton!(LINK: Link<LinkUart> = Link(link)).unwrap();
    let passed = run(link, rng);
    report::line()
        .text("peak stack ")
        .num(stack::peak() as u64)
        .text(" B, static RAM ")
        .num(stack::static_ram() as u64)
        .text(" B")
        .end();
    report::line()
        .text(if passed { "PASS" } else { "FAIL" })
        .end();
    board::finish(passed)
}
