//! Host stand-ins for what a device provides: certificates from the operator's
//! CA, an RNG, clocks, a flash-like partial file and a file-backed held-chunk
//! store, and the real `ferry-server` binary.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read as _, Seek, SeekFrom, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use embedded_io_adapters::std::FromStd;
use ferry_certs::rustls::pki_types::pem::PemObject;
use ferry_certs::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ferry_certs::{Ca, CertDir, IssuedClient};
use ferry_core::blocking::{ChunkSink, ChunkSource, Clock};
use ferry_core::{Digest, Layout};
use ferry_firmware_client::embedded_tls::blocking::TlsClock;
use ferry_firmware_client::p256::ecdsa::SigningKey;
use ferry_firmware_client::p256::pkcs8::DecodePrivateKey;
use ferry_firmware_client::{spki_sha256, HeldStore, Identity, ServerPin};

/// Milliseconds since the client was made.
pub struct Monotonic(pub Instant);

impl Clock for Monotonic {
    fn now(&mut self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// The host's wall clock, so that certificate validity is checked.
pub struct WallClock;

impl TlsClock for WallClock {
    fn now() -> Option<u64> {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }
}

/// What a device is provisioned with, owned.
pub struct Provisioned {
    pub cert_der: Vec<u8>,
    pub key: SigningKey,
    pub ca_der: Vec<u8>,
    pub pin: ServerPin,
    pub issued: IssuedClient,
}

impl Provisioned {
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            certificate: &self.cert_der,
            key: self.key.clone(),
            ca: &self.ca_der,
            server_name: "localhost",
            server_pin: self.pin,
        }
    }
}

/// The P-256 signing key of a PKCS#8 DER private key.
pub fn signing_key(key: &PrivateKeyDer<'_>) -> SigningKey {
    SigningKey::from_pkcs8_der(key.secret_der()).expect("a PKCS#8 P-256 key")
}

pub fn read_cert(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_vec()
}

/// Issues a device certificate from the CA in `certs` (recorded in its index),
/// and pins the server certificate found there.
pub fn provision(certs: &Path, name: &str) -> Provisioned {
    let dir = CertDir::new(certs);
    let issued = Ca::load(certs).unwrap().issue_client(name, 30).unwrap();
    dir.record_client(&issued).unwrap();
    let server = read_cert(&dir.server_cert());
    Provisioned {
        cert_der: issued.cert_der.to_vec(),
        key: signing_key(&issued.key_der()),
        ca_der: read_cert(&dir.ca_cert()),
        pin: spki_sha256(&server).expect("server certificate parses"),
        issued,
    }
}

/// Connects to the server as a device would: by name (`localhost` resolves to
/// the address the server listens on), blocking, with a read timeout as a
/// safety net.
pub fn dial(addr: SocketAddr) -> FromStd<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    FromStd::new(stream)
}

/// Deterministic test data (the kit's generator; not every test file uses it).
#[allow(unused_imports)]
pub use ferry_testkit::data::pseudo_random as data;

/// A device's simulated power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerLoss;

/// An upload source in memory that loses power after `budget` chunk reads.
pub struct Source<'d> {
    pub data: &'d [u8],
    pub budget: Option<u64>,
    pub reads: u64,
    pub started: Option<(Layout, u64)>,
}

impl<'d> Source<'d> {
    pub fn new(data: &'d [u8]) -> Self {
        Self {
            data,
            budget: None,
            reads: 0,
            started: None,
        }
    }

    pub fn failing_after(data: &'d [u8], reads: u64) -> Self {
        Self {
            budget: Some(reads),
            ..Self::new(data)
        }
    }
}

impl ChunkSource for Source<'_> {
    type Error = PowerLoss;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), PowerLoss> {
        if self.budget.is_some_and(|budget| self.reads >= budget) {
            return Err(PowerLoss);
        }
        self.reads += 1;
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }
    fn started(&mut self, layout: Layout, held_chunks: u64) -> Result<(), PowerLoss> {
        self.started = Some((layout, held_chunks));
        Ok(())
    }
}

/// Errors of the host's "flash".
#[derive(Debug)]
pub enum StoreError {
    Io(io::ErrorKind),
    PowerLoss,
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e.kind())
    }
}

/// A download's destination: a file written in place at chunk offsets, like a
/// flash partition; it can lose power after `budget` chunks.
pub struct FileSink {
    pub file: File,
    pub budget: Option<u64>,
    pub writes: u64,
    pub committed: Option<(u64, Digest)>,
}

impl FileSink {
    pub fn open(path: &Path, budget: Option<u64>) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Self {
            file,
            budget,
            writes: 0,
            committed: None,
        }
    }
}

impl ChunkSink for FileSink {
    type Error = StoreError;
    fn write_chunk(
        &mut self,
        _index: u64,
        offset: u64,
        data: &[u8],
        _digest: &Digest,
    ) -> Result<(), StoreError> {
        if self.budget.is_some_and(|budget| self.writes >= budget) {
            return Err(StoreError::PowerLoss);
        }
        self.writes += 1;
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(data)?;
        self.file.sync_data()?;
        Ok(())
    }
    fn commit(&mut self, size: u64, digest: &Digest) -> Result<(), StoreError> {
        self.file.set_len(size)?;
        self.file.sync_all()?;
        self.committed = Some((size, *digest));
        Ok(())
    }
}

/// The held-chunk record in a file: a header (name length, name, size, chunk
/// size), then one 40-byte entry (index, digest) per chunk, appended. On a
/// device the same layout lives in a flash sector.
pub struct FileHeld {
    pub path: PathBuf,
    header_len: u64,
}

const ENTRY: u64 = 40;

impl FileHeld {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            header_len: 0,
        }
    }

    fn header(&self) -> io::Result<Option<(String, u64, u32, u64)>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut len = [0u8; 1];
        file.read_exact(&mut len)?;
        let mut name = vec![0u8; usize::from(len[0])];
        file.read_exact(&mut name)?;
        let mut size = [0u8; 8];
        file.read_exact(&mut size)?;
        let mut chunk = [0u8; 4];
        file.read_exact(&mut chunk)?;
        let header_len = 1 + u64::from(len[0]) + 12;
        Ok(Some((
            String::from_utf8_lossy(&name).into_owned(),
            u64::from_le_bytes(size),
            u32::from_le_bytes(chunk),
            header_len,
        )))
    }

    /// Entries recorded so far.
    pub fn count(&self) -> u64 {
        match (self.header(), std::fs::metadata(&self.path)) {
            (Ok(Some((_, _, _, header_len))), Ok(meta)) => (meta.len() - header_len) / ENTRY,
            _ => 0,
        }
    }
}

impl HeldStore for FileHeld {
    type Error = StoreError;

    fn find(&mut self, name: &str, chunk_size: u32) -> Result<Option<u64>, StoreError> {
        Ok(match self.header()? {
            Some((held_name, size, held_chunk, header_len))
                if held_name == name && held_chunk == chunk_size =>
            {
                self.header_len = header_len;
                Some(size)
            }
            _ => None,
        })
    }

    fn entry(&mut self, position: u64) -> Result<Option<(u64, Digest)>, StoreError> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.header_len + position * ENTRY))?;
        let mut entry = [0u8; ENTRY as usize];
        match file.read_exact(&mut entry) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let index = u64::from_le_bytes(entry[..8].try_into().unwrap());
        Ok(Some((index, entry[8..].try_into().unwrap())))
    }

    fn start(&mut self, name: &str, size: u64, chunk_size: u32) -> Result<(), StoreError> {
        let mut header = vec![name.len() as u8];
        header.extend_from_slice(name.as_bytes());
        header.extend_from_slice(&size.to_le_bytes());
        header.extend_from_slice(&chunk_size.to_le_bytes());
        let mut file = File::create(&self.path)?;
        file.write_all(&header)?;
        file.sync_all()?;
        self.header_len = header.len() as u64;
        Ok(())
    }

    fn record(&mut self, index: u64, digest: &Digest) -> Result<(), StoreError> {
        let mut file = OpenOptions::new().append(true).open(&self.path)?;
        let mut entry = index.to_le_bytes().to_vec();
        entry.extend_from_slice(digest.as_bytes());
        file.write_all(&entry)?;
        file.sync_data()?;
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// The real `ferry-server` binary, started on an ephemeral port of 127.0.0.1.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub storage: PathBuf,
    pub certs: PathBuf,
}

impl Server {
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        let storage = root.join("storage");
        let certs = root.join("certs");
        let mut child = Command::new(server_binary())
            .args(["--no-web", "--listen", "127.0.0.1:0"])
            .arg("--storage")
            .arg(&storage)
            .arg("--certs")
            .arg(&certs)
            .args(extra)
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ferry-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("ferry-server exited before it listened")
                .unwrap();
            if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
                break addr.trim().parse().unwrap();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            addr,
            storage,
            certs,
        }
    }

    /// Where the server commits `name` for the client with this certificate: under the
    /// client name it carries.
    pub fn committed_path(&self, client_cert_der: &[u8], name: &str) -> PathBuf {
        let client = ferry_certs::ClientIdentity::from_certificate(client_cert_der)
            .unwrap()
            .name;
        self.storage.join(client).join("files").join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry-server` from the target directory this test was built in (`cargo
/// test --workspace` builds it); built here with cargo if it is missing.
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let binary = profile_dir.join("ferry-server");
    if !binary.exists() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "ferry-server", "--bin", "ferry-server"]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            build.arg("--target-dir").arg(target);
        }
        let status = build.status().expect("run cargo build -p ferry-server");
        assert!(status.success(), "cargo build -p ferry-server failed");
    }
    assert!(binary.exists(), "no ferry-server at {}", binary.display());
    binary
}
