//! # ferry-firmware-client
//!
//! Ferry's device client: the [`ferry_core`] protocol over mutual TLS 1.3 from
//! [`embedded_tls`], on any [`embedded_io`] byte stream (a TCP socket of the
//! device's network stack, or `std::net::TcpStream` through
//! `embedded-io-adapters` on a host). `no_std`, no allocator, every buffer
//! supplied by the caller; the same code runs in a `#![no_main]` Cortex-M image
//! (see `device/` beside this crate) and in the host tests against the real
//! `ferry-server`.
//!
//! ## Data flow
//! ```text
//! ChunkSource ─▶ Driver (ferry_core::blocking) ─▶ Connection ─▶ tx ─▶ TlsConnection ─▶ tls_write ─▶ transport
//!  (flash, a     one loop for every operation      (protocol       (embedded-tls, AES-128-GCM,
//!  generator)    ◀─ NeedChunk / StoreChunk          state)          P-256 client certificate)
//! ChunkSink  ◀── + HeldStore (resume state) ◀── rx ◀── input ◀──── TlsConnection ◀── tls_read ◀── transport
//! ```
//! [`FirmwareClient::connect`] opens TLS (verifying the server, see below), runs
//! the Ferry handshake and hands a [`Session`] to the caller: upload, download
//! and round trip run on one connection, through the core's blocking
//! [`Driver`]; the client adds no protocol logic of its own.
//!
//! ## Verifying the server: CA, DNS name, and a pinned key
//! embedded-tls checks that the server certificate chains to the CA and that a
//! DNS name matches, but not the extended key usage, the basic constraints or
//! IP SANs. Every device certificate comes from the same CA as the server's, so
//! a device certificate and key read out of one stolen device would otherwise
//! pass as the server's (its common name may even be the server's name). So:
//! - connect by **DNS name** ([`Identity::server_name`], `localhost` in the
//!   tests; the server certificate has SAN `localhost`), never by IP address;
//! - **pin the server's key** ([`Identity::server_pin`]): the SHA-256 of the
//!   server certificate's DER `SubjectPublicKeyInfo`, provisioned with the
//!   device certificate. Compute it from the server's certificate with
//!   `openssl x509 -in certs/server.crt -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`
//!   (or [`spki_sha256`]). A handshake with any other key fails with
//!   [`Error::ServerPin`] before the device sends anything but its hello. The
//!   pin names the key, not the certificate: renewing the server certificate
//!   with the same key keeps devices working; a new server key needs a new pin
//!   on the devices first.
//!
//! Certificate validity periods are checked only if the device has a wall
//! clock (the `Tc` parameter, an [`embedded_tls::blocking::TlsClock`]); the
//! default [`NoClock`] checks none (the pin still binds the key).
//!
//! ## Resume across a reset
//! Uploads: the server keeps the chunks it holds; a device that resets
//! uploads the same name and size again and sends only the chunks the server
//! lacks ([`Uploaded::held_chunks`], [`Uploaded::chunks_sent`]). Downloads:
//! the device's [`HeldStore`] (flash) records each chunk once its data is
//! durable in the [`ChunkSink`]; the next download of the same name offers
//! those chunks and the server sends only the rest. If the file changed on the
//! server meanwhile, the partial copy is dropped and the download starts over.
//!
//! ## Transport
//! The stream must not time out inside a TLS record: embedded-tls cannot
//! resume a record read halfway, so any transport error, a timeout included,
//! ends the session ([`Error::Tls`]). Give the socket a read timeout of about
//! the core's `idle_timeout` to notice a dead server; then reconnect, and the
//! transfer resumes.
//!
//! ## Memory (Cortex-M4F, see the crate README section for the measured image)
//! Buffers, all supplied by the caller ([`Buffers`], or [`BufferSet`] to hold
//! them in one static):
//!
//! | buffer | size for 1 KiB chunks and a server with `--max-fragment-size 1024` |
//! |---|---|
//! | `tls_read`: one whole TLS record from the server | 2,048 B (a record of 1,024 B of data is 1,045 B) |
//! | `tls_write`: one TLS record to the server, and the client's handshake | 2,048 B |
//! | `rx`, `tx`: the core's frame buffers | 2 × [`buffer_len`]`(1024)` = 2 × 2,126 B |
//! | `input`: decrypted bytes on their way to the core | 256 B |
//! | `chunk`: one chunk read from the source | 1,024 B |
//!
//! State on the stack while a session runs: the core [`Connection`] without
//! its buffers, the TLS connection (key schedule), and during the handshake
//! the verifier (which keeps the server's certificate, up to
//! [`MAX_SERVER_CHAIN`] bytes) and the handshake state; `device/build.sh`
//! prints their sizes for the target.

#![no_std]

mod held;
mod pin;

use core::cell::{Cell, RefCell};

use embedded_io::{ErrorKind, ErrorType, Read, Write};
pub use embedded_tls::blocking::NoClock;
use embedded_tls::blocking::{
    Aes128GcmSha256, Certificate, CryptoProvider, TlsClock, TlsConfig, TlsConnection, TlsContext,
    TlsVerifier,
};
use embedded_tls::SignatureScheme;
pub use embedded_tls::{CryptoRng, CryptoRngCore};
use ferry_core::blocking::{ChunkSink, ChunkSource, Clock, Driver, DriverError};
use ferry_core::{
    buffer_len, Config, Connection, Digest, ErrorCode, Failure, Framing, Layout, Stats,
    TransferError, UsageError,
};
use p256::ecdsa::{DerSignature, SigningKey};

pub use held::{HeldStore, NoResume};
pub use pin::{spki, spki_sha256, ServerPin, MAX_SERVER_CHAIN};

/// Re-exported: the versions this crate's API uses.
pub use embedded_tls::{self, blocking::TlsError};
pub use p256;

/// The ferry-core settings for a device on TLS: length-prefixed frames (TLS is
/// reliable), 1 KiB chunks, a window of 4, and the stream timings.
pub const fn device_config() -> Config {
    Config {
        framing: Framing::LengthPrefixed,
        max_chunk: 1024,
        window: 4,
        ..Config::stream()
    }
}

/// Who the device is, and how it recognises the server.
#[derive(Clone)]
pub struct Identity<'a> {
    /// The device's certificate (DER), issued by the operator's CA; its key is P-256.
    pub certificate: &'a [u8],
    /// The device's private key.
    pub key: SigningKey,
    /// The operator's CA certificate (DER), the one trust anchor.
    pub ca: &'a [u8],
    /// The server's DNS name (it must be a DNS SAN of the server certificate).
    pub server_name: &'a str,
    /// SHA-256 of the server's `SubjectPublicKeyInfo`.
    pub server_pin: ServerPin,
}

/// The caller's buffers. Sizes: see the crate documentation.
pub struct Buffers<'a> {
    /// Holds one whole TLS record from the server.
    pub tls_read: &'a mut [u8],
    /// Holds one TLS record to the server (and the client's handshake messages).
    pub tls_write: &'a mut [u8],
    /// The core's receive buffer, at least [`buffer_len`]`(max_chunk)` bytes.
    pub rx: &'a mut [u8],
    /// The core's transmit buffer, at least [`buffer_len`]`(max_chunk)` bytes.
    pub tx: &'a mut [u8],
    /// Decrypted input on its way to the core (any size; a few hundred bytes).
    pub input: &'a mut [u8],
    /// One chunk read from a [`ChunkSource`] (at least the negotiated chunk size).
    pub chunk: &'a mut [u8],
}

/// Every buffer of a [`FirmwareClient`] in one value, for a `static` (or a
/// stack frame). `FRAME` must be at least [`buffer_len`]`(CHUNK)`.
pub struct BufferSet<
    const TLS_READ: usize,
    const TLS_WRITE: usize,
    const FRAME: usize,
    const CHUNK: usize,
    const INPUT: usize,
> {
    tls_read: [u8; TLS_READ],
    tls_write: [u8; TLS_WRITE],
    rx: [u8; FRAME],
    tx: [u8; FRAME],
    input: [u8; INPUT],
    chunk: [u8; CHUNK],
}

/// The buffers for 1 KiB chunks and TLS records of up to 2 KiB.
pub type SmallBuffers = BufferSet<2048, 2048, { buffer_len(1024) }, 1024, 256>;

impl<
        const TLS_READ: usize,
        const TLS_WRITE: usize,
        const FRAME: usize,
        const CHUNK: usize,
        const INPUT: usize,
    > BufferSet<TLS_READ, TLS_WRITE, FRAME, CHUNK, INPUT>
{
    /// Zeroed buffers (usable in a `static` initialiser).
    pub const fn new() -> Self {
        Self {
            tls_read: [0; TLS_READ],
            tls_write: [0; TLS_WRITE],
            rx: [0; FRAME],
            tx: [0; FRAME],
            input: [0; INPUT],
            chunk: [0; CHUNK],
        }
    }

    /// Lends the buffers to a client.
    pub fn buffers(&mut self) -> Buffers<'_> {
        Buffers {
            tls_read: &mut self.tls_read,
            tls_write: &mut self.tls_write,
            rx: &mut self.rx,
            tx: &mut self.tx,
            input: &mut self.input,
            chunk: &mut self.chunk,
        }
    }
}

impl<
        const TLS_READ: usize,
        const TLS_WRITE: usize,
        const FRAME: usize,
        const CHUNK: usize,
        const INPUT: usize,
    > Default for BufferSet<TLS_READ, TLS_WRITE, FRAME, CHUNK, INPUT>
{
    fn default() -> Self {
        Self::new()
    }
}

/// The RAM a session keeps outside the caller's buffers, in bytes, on the
/// target it is compiled for (the device image prints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSizes {
    /// The core [`Connection`] (window `W`, buffers borrowed).
    pub connection: usize,
    /// The TLS connection over the transport `T` (keys, record state).
    pub tls: usize,
    /// The server verifier, during the handshake (keeps the server's certificate).
    pub verifier: usize,
}

/// See [`StateSizes`].
pub const fn state_sizes<T: Read + Write + 'static, const W: usize>() -> StateSizes {
    StateSizes {
        connection: core::mem::size_of::<Connection<&'static mut [u8], W>>(),
        tls: core::mem::size_of::<TlsConnection<'static, T, Aes128GcmSha256>>(),
        verifier: core::mem::size_of::<pin::PinnedVerifier<'static, 'static, NoClock>>(),
    }
}

/// Why an operation failed. `E` is the caller's storage error.
#[derive(Debug, Clone, Copy)]
pub enum Error<E> {
    /// The TLS handshake or record layer failed, or the transport did
    /// (`TlsError::Io(kind)`); the session is over.
    Tls(TlsError),
    /// The server's key is not the pinned one: not our server.
    ServerPin,
    /// The stream ended.
    Eof,
    /// The caller's storage failed.
    Storage(E),
    /// The request or transfer failed (the peer's or this side's reason); the
    /// session is still usable.
    Failed(Failure),
    /// The Ferry connection closed.
    Closed(Failure),
    /// A call that did not fit the connection's state.
    Usage(UsageError),
    /// A buffer is too small for the negotiated chunk size.
    Buffers,
    /// Round trip: the downloaded file differs from the source at this offset.
    Mismatch {
        /// Byte offset of the first chunk that differs.
        offset: u64,
    },
}

impl<E> From<UsageError> for Error<E> {
    fn from(error: UsageError) -> Self {
        Error::Usage(error)
    }
}

/// A finished upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    /// File size.
    pub size: u64,
    /// The whole-file digest both ends verified.
    pub digest: Digest,
    /// Chunks the server already held from an earlier attempt (not sent again).
    pub held_chunks: u64,
    /// Chunks sent in this attempt (first sends).
    pub chunks_sent: u64,
    /// Chunks sent again (NACK or timeout).
    pub chunks_resent: u64,
}

/// A finished download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// File size.
    pub size: u64,
    /// The whole-file digest both ends verified.
    pub digest: Digest,
    /// Chunks the device already held from an earlier attempt (not fetched again).
    pub held_chunks: u64,
    /// Chunks received and stored in this attempt.
    pub chunks_stored: u64,
}

/// A finished round trip: the upload, and the download that matched it byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roundtrip {
    /// The upload.
    pub uploaded: Uploaded,
    /// The download back, compared with the source.
    pub downloaded: Downloaded,
}

/// The device client. `R` is the device's random number generator (its
/// TRNG), `C` its millisecond clock, `Tc` its wall clock for certificate
/// validity ([`NoClock`]: none), `W` the largest window.
pub struct FirmwareClient<'a, R, C, Tc = NoClock, const W: usize = 4> {
    buffers: Buffers<'a>,
    identity: Identity<'a>,
    config: Config,
    rng: R,
    clock: C,
    _tls_clock: core::marker::PhantomData<Tc>,
}

impl<'a, R, C, Tc, const W: usize> FirmwareClient<'a, R, C, Tc, W>
where
    R: CryptoRngCore,
    C: Clock,
    Tc: TlsClock,
{
    /// A client with these buffers, identity and core settings (see [`device_config`]).
    pub fn new(
        buffers: Buffers<'a>,
        identity: Identity<'a>,
        config: Config,
        rng: R,
        clock: C,
    ) -> Self {
        Self {
            buffers,
            identity,
            config,
            rng,
            clock,
            _tls_clock: core::marker::PhantomData,
        }
    }

    /// Opens mutual TLS over `transport` (verifying and pinning the server), runs
    /// the Ferry handshake, runs `run` with the session, and closes TLS.
    pub fn connect<T, O, E>(
        &mut self,
        transport: T,
        run: impl FnOnce(&mut Session<'_, '_, T, C, W>) -> Result<O, Error<E>>,
    ) -> Result<O, Error<E>>
    where
        T: Read + Write,
    {
        let Buffers {
            tls_read,
            tls_write,
            rx,
            tx,
            input,
            chunk,
        } = &mut self.buffers;
        let mut tls = TlsConnection::<T, Aes128GcmSha256>::new(transport, tls_read, tls_write);
        let mismatch = Cell::new(false);
        let tls_config = TlsConfig::new().with_server_name(self.identity.server_name);
        let provider = Provider {
            rng: &mut self.rng,
            identity: &self.identity,
            verifier: pin::PinnedVerifier::<Tc>::new(
                self.identity.ca,
                self.identity.server_pin,
                &mismatch,
            ),
        };
        if let Err(error) = tls.open(TlsContext::new(&tls_config, provider)) {
            return Err(if mismatch.get() {
                Error::ServerPin
            } else {
                Error::Tls(error)
            });
        }

        let tls_error = Cell::new(None);
        let now = self.clock.now();
        let mut connection =
            Connection::<&mut [u8], W>::client(self.config, &mut **rx, &mut **tx, now)?;
        let stream = TlsStream {
            tls,
            error: &tls_error,
        };
        let mut driver = Driver::new(&mut connection, stream, ClockRef(&mut self.clock), input);
        let (chunk_size, window) = driver
            .connect::<E>()
            .map_err(|e| convert(e, &tls_error, Error::Storage))?;
        if chunk.len() < chunk_size as usize {
            return Err(Error::Buffers);
        }
        let mut session = Session {
            driver,
            chunk,
            tls_error: &tls_error,
            chunk_size,
            window,
        };
        let out = run(&mut session)?;
        session
            .driver
            .into_io()
            .tls
            .close()
            .map_err(|(_, error)| Error::Tls(error))?;
        Ok(out)
    }

    /// Uploads `size` bytes from `source` as `name` on a connection of its own.
    pub fn upload<T: Read + Write, S: ChunkSource>(
        &mut self,
        transport: T,
        name: &str,
        size: u64,
        source: &mut S,
    ) -> Result<Uploaded, Error<S::Error>> {
        self.connect(transport, |session| session.upload(name, size, source))
    }

    /// Downloads `name` into `sink` on a connection of its own, resuming from
    /// `held` and recording progress in it.
    pub fn download<T, K, H, E>(
        &mut self,
        transport: T,
        name: &str,
        sink: &mut K,
        held: &mut H,
    ) -> Result<Downloaded, Error<E>>
    where
        T: Read + Write,
        K: ChunkSink<Error = E>,
        H: HeldStore<Error = E>,
    {
        self.connect(transport, |session| session.download(name, sink, held))
    }

    /// Uploads `source` as `name`, downloads it back and compares it, on a
    /// connection of its own.
    pub fn roundtrip<T: Read + Write, S: ChunkSource>(
        &mut self,
        transport: T,
        name: &str,
        size: u64,
        source: &mut S,
    ) -> Result<Roundtrip, Error<S::Error>> {
        self.connect(transport, |session| session.roundtrip(name, size, source))
    }
}

/// One open connection to the server (see [`FirmwareClient::connect`]).
pub struct Session<'s, 'b, T: Read + Write, C: Clock, const W: usize> {
    driver: Driver<'s, &'b mut [u8], W, TlsStream<'s, 'b, T>, ClockRef<'s, C>>,
    chunk: &'s mut [u8],
    tls_error: &'s Cell<Option<TlsError>>,
    chunk_size: u32,
    window: u16,
}

impl<T: Read + Write, C: Clock, const W: usize> Session<'_, '_, T, C, W> {
    /// The negotiated chunk size and window.
    pub fn negotiated(&self) -> (u32, u16) {
        (self.chunk_size, self.window)
    }

    /// The connection's counters so far.
    pub fn stats(&self) -> Stats {
        self.driver.connection.stats()
    }

    /// Uploads `size` bytes from `source` as `name`. If the server holds chunks
    /// of `name` with this size (from an interrupted attempt, or a committed
    /// copy), only the rest is sent; if what it holds differs from `source`, the
    /// upload starts over with the server's copy dropped.
    pub fn upload<S: ChunkSource>(
        &mut self,
        name: &str,
        size: u64,
        source: &mut S,
    ) -> Result<Uploaded, Error<S::Error>> {
        match self.upload_once(name, size, source, false) {
            Err(Error::Failed(Failure::Transfer(TransferError::SourceChanged))) => {
                self.upload_once(name, size, source, true)
            }
            result => result,
        }
    }

    fn upload_once<S: ChunkSource>(
        &mut self,
        name: &str,
        size: u64,
        source: &mut S,
        fresh: bool,
    ) -> Result<Uploaded, Error<S::Error>> {
        let before = self.stats();
        let mut observed = Observed {
            source,
            held_chunks: 0,
        };
        let result = if fresh {
            self.driver
                .upload_fresh(name, size, &mut observed, self.chunk)
        } else {
            self.driver.upload(name, size, &mut observed, self.chunk)
        };
        let digest = result.map_err(|e| convert(e, self.tls_error, Error::Storage))?;
        let after = self.stats();
        Ok(Uploaded {
            size,
            digest,
            held_chunks: observed.held_chunks,
            chunks_sent: after.chunks_sent - before.chunks_sent,
            chunks_resent: after.chunks_resent - before.chunks_resent,
        })
    }

    /// Downloads `name` into `sink`. If `held` has a partial copy of `name`, the
    /// server sends only the rest; every chunk stored is recorded in `held`, which
    /// is cleared once the file is committed.
    pub fn download<K, H, E>(
        &mut self,
        name: &str,
        sink: &mut K,
        held: &mut H,
    ) -> Result<Downloaded, Error<E>>
    where
        K: ChunkSink<Error = E>,
        H: HeldStore<Error = E>,
    {
        let offer = held.find(name, self.chunk_size).map_err(Error::Storage)?;
        if offer.is_some() {
            // Read the record through once, so that a storage error shows here
            // rather than as a shorter list.
            let mut position = 0;
            while held.entry(position).map_err(Error::Storage)?.is_some() {
                position += 1;
            }
        }
        match self.download_once(name, offer, sink, held) {
            Err(Error::Failed(failure))
                if offer.is_some() && failure.code() == ErrorCode::SOURCE_CHANGED =>
            {
                // The file changed since the partial copy: start over.
                held.clear().map_err(Error::Storage)?;
                self.download_once(name, None, sink, held)
            }
            result => result,
        }
    }

    fn download_once<K, H, E>(
        &mut self,
        name: &str,
        offer: Option<u64>,
        sink: &mut K,
        held: &mut H,
    ) -> Result<Downloaded, Error<E>>
    where
        K: ChunkSink<Error = E>,
        H: HeldStore<Error = E>,
    {
        let before = self.stats();
        let store = RefCell::new(held);
        let mut position = 0;
        let mut entries = core::iter::from_fn(|| {
            // Checked just before; a late error only shortens the offer.
            let entry = store.borrow_mut().entry(position).ok().flatten();
            position += 1;
            entry
        });
        let partial = offer.map(|size| (size, &mut entries as &mut dyn Iterator<Item = _>));
        let mut recording = Recording {
            sink,
            store: &store,
            name,
            held_chunks: 0,
        };
        let (size, digest) = self
            .driver
            .download(name, partial, &mut recording)
            .map_err(|e| convert(e, self.tls_error, Error::Storage))?;
        let after = self.stats();
        Ok(Downloaded {
            size,
            digest,
            held_chunks: recording.held_chunks,
            chunks_stored: after.chunks_stored - before.chunks_stored,
        })
    }

    /// Uploads `size` bytes from `source` as `name`, downloads the file back and
    /// compares every chunk with `source` (reading it again; no second copy is
    /// stored), and checks that both transfers verified the same digest.
    pub fn roundtrip<S: ChunkSource>(
        &mut self,
        name: &str,
        size: u64,
        source: &mut S,
    ) -> Result<Roundtrip, Error<S::Error>> {
        let uploaded = self.upload(name, size, source)?;
        let before = self.stats();
        let mut compare = Compare {
            source,
            buf: &mut *self.chunk,
        };
        let (got_size, digest) = self
            .driver
            .download(name, None, &mut compare)
            .map_err(|e| {
                convert(e, self.tls_error, |e| match e {
                    CompareError::Source(e) => Error::Storage(e),
                    CompareError::Differs { offset } => Error::Mismatch { offset },
                })
            })?;
        if got_size != uploaded.size || digest != uploaded.digest {
            return Err(Error::Mismatch { offset: 0 });
        }
        let after = self.stats();
        Ok(Roundtrip {
            uploaded,
            downloaded: Downloaded {
                size: got_size,
                digest,
                held_chunks: 0,
                chunks_stored: after.chunks_stored - before.chunks_stored,
            },
        })
    }
}

fn convert<E, F>(
    error: DriverError<E>,
    tls_error: &Cell<Option<TlsError>>,
    storage: impl FnOnce(E) -> Error<F>,
) -> Error<F> {
    match error {
        DriverError::Io(kind) => Error::Tls(tls_error.get().unwrap_or(TlsError::Io(kind))),
        DriverError::Eof => Error::Eof,
        DriverError::Storage(e) => storage(e),
        DriverError::Failed(failure) => Error::Failed(failure),
        DriverError::Closed(failure) => Error::Closed(failure),
        DriverError::Usage(UsageError::BuffersTooSmall) => Error::Buffers,
        DriverError::Usage(usage) => Error::Usage(usage),
    }
}

/// The device's keys and verifier, as embedded-tls asks for them.
struct Provider<'p, 'a, 'f, R, Tc: TlsClock> {
    rng: &'p mut R,
    identity: &'p Identity<'a>,
    verifier: pin::PinnedVerifier<'a, 'f, Tc>,
}

impl<R: CryptoRngCore, Tc: TlsClock> CryptoProvider for Provider<'_, '_, '_, R, Tc> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }

    fn signer(
        &mut self,
    ) -> Result<
        (
            impl p256::ecdsa::signature::SignerMut<DerSignature>,
            SignatureScheme,
        ),
        TlsError,
    > {
        Ok((
            self.identity.key.clone(),
            SignatureScheme::EcdsaSecp256r1Sha256,
        ))
    }

    fn client_cert(&mut self) -> Option<Certificate<impl AsRef<[u8]>>> {
        Some(Certificate::X509(self.identity.certificate))
    }
}

/// The TLS connection as the core's stream. Keeps the last TLS error for the
/// caller, and reports a timeout as fatal: embedded-tls cannot resume a record
/// whose read was cut short.
struct TlsStream<'e, 'b, T: Read + Write> {
    tls: TlsConnection<'b, T, Aes128GcmSha256>,
    error: &'e Cell<Option<TlsError>>,
}

impl<T: Read + Write> TlsStream<'_, '_, T> {
    fn fail(&self, error: TlsError) -> StreamError {
        self.error.set(Some(error));
        StreamError(match error {
            TlsError::Io(ErrorKind::TimedOut | ErrorKind::Interrupted) => ErrorKind::Other,
            TlsError::Io(kind) => kind,
            _ => ErrorKind::Other,
        })
    }
}

#[derive(Debug)]
struct StreamError(ErrorKind);

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TLS stream: {:?}", self.0)
    }
}

impl core::error::Error for StreamError {}

impl embedded_io::Error for StreamError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

impl<T: Read + Write> ErrorType for TlsStream<'_, '_, T> {
    type Error = StreamError;
}

impl<T: Read + Write> Read for TlsStream<'_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        self.tls.read(buf).map_err(|e| self.fail(e))
    }
}

impl<T: Read + Write> Write for TlsStream<'_, '_, T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, StreamError> {
        self.tls.write(buf).map_err(|e| self.fail(e))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        self.tls.flush().map_err(|e| self.fail(e))
    }
}

struct ClockRef<'c, C>(&'c mut C);

impl<C: Clock> Clock for ClockRef<'_, C> {
    fn now(&mut self) -> u64 {
        self.0.now()
    }
}

/// An upload's source, noting how many chunks the server already held.
struct Observed<'s, S> {
    source: &'s mut S,
    held_chunks: u64,
}

impl<S: ChunkSource> ChunkSource for Observed<'_, S> {
    type Error = S::Error;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), S::Error> {
        self.source.read_at(offset, buf)
    }
    fn started(&mut self, layout: Layout, held_chunks: u64) -> Result<(), S::Error> {
        self.held_chunks = held_chunks;
        self.source.started(layout, held_chunks)
    }
}

/// A download's sink that records each stored chunk in the [`HeldStore`].
struct Recording<'r, 'h, K, H> {
    sink: &'r mut K,
    store: &'r RefCell<&'h mut H>,
    name: &'r str,
    held_chunks: u64,
}

impl<K, H, E> ChunkSink for Recording<'_, '_, K, H>
where
    K: ChunkSink<Error = E>,
    H: HeldStore<Error = E>,
{
    type Error = E;

    fn started(&mut self, layout: Layout, held_chunks: u64) -> Result<(), E> {
        self.held_chunks = held_chunks;
        if held_chunks == 0 {
            self.store
                .borrow_mut()
                .start(self.name, layout.size, layout.chunk_size)?;
        }
        self.sink.started(layout, held_chunks)
    }

    fn write_chunk(
        &mut self,
        index: u64,
        offset: u64,
        data: &[u8],
        digest: &Digest,
    ) -> Result<(), E> {
        self.sink.write_chunk(index, offset, data, digest)?;
        self.store.borrow_mut().record(index, digest)
    }

    fn commit(&mut self, size: u64, digest: &Digest) -> Result<(), E> {
        self.sink.commit(size, digest)?;
        self.store.borrow_mut().clear()
    }
}

enum CompareError<E> {
    Source(E),
    Differs { offset: u64 },
}

/// A download's sink that compares each chunk with the source instead of storing it.
struct Compare<'c, S> {
    source: &'c mut S,
    buf: &'c mut [u8],
}

impl<S: ChunkSource> ChunkSink for Compare<'_, S> {
    type Error = CompareError<S::Error>;

    fn write_chunk(
        &mut self,
        _index: u64,
        offset: u64,
        data: &[u8],
        _digest: &Digest,
    ) -> Result<(), Self::Error> {
        let expected = self
            .buf
            .get_mut(..data.len())
            .ok_or(CompareError::Differs { offset })?;
        self.source
            .read_at(offset, expected)
            .map_err(CompareError::Source)?;
        if expected != data {
            return Err(CompareError::Differs { offset });
        }
        Ok(())
    }

    fn commit(&mut self, _size: u64, _digest: &Digest) -> Result<(), Self::Error> {
        Ok(())
    }
}
