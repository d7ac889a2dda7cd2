//! An in-test Ferry server: `ferry_core::Connection::server` driven by the client crate's
//! `Link` over tokio-rustls, with in-memory storage and injectable faults (close the
//! connection after N chunks, rot stored data). Test code only: the real server is
//! `ferry-server`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_certs::{CertDir, InitOptions};
use ferry_client::{Client, ClientOptions};
use ferry_core::{
    buffer_len, chunk_digest, Config, Connection, Digest, ErrorCode, Event, FileDigest, ListEntry,
};
use ferry_tokio::link::Link;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

pub type Conn = Connection<Vec<u8>, 16>;

pub const CHUNK: usize = 64 * 1024;

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

/// Storage and fault switches shared by every connection.
#[derive(Default)]
pub struct Store {
    pub files: BTreeMap<String, StoredFile>,
    pub partials: BTreeMap<String, Partial>,
    /// Close the next connection that stores this many upload chunks (once).
    pub drop_upload_after: Option<u64>,
    /// Close the next connection that sends this many download chunks (once).
    pub drop_download_after: Option<u64>,
    /// Chunks stored per connection, in connection order.
    pub stored_per_connection: Vec<u64>,
    /// Download chunks read (sent, or hashed when the client held them) per connection.
    pub provided_per_connection: Vec<u64>,
    /// (name, size, fresh) of every upload request.
    pub upload_requests: Vec<(String, u64, bool)>,
    pub connections: u64,
    /// Connections that ended (the server's side returned).
    pub closed: u64,
    pub list_requests: u64,
}

impl Store {
    /// Corrupts one byte of a stored file without touching its digest (rot on disk).
    pub fn rot(&mut self, name: &str) {
        let file = self.files.get_mut(name).expect("stored");
        file.data[0] ^= 0x55;
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub certs: tempfile::TempDir,
    pub store: Arc<Mutex<Store>>,
    kick: Arc<tokio::sync::Notify>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 (its own thread and runtime) with fresh certificates.
    pub fn start() -> TestServer {
        let certs = tempfile::tempdir().unwrap();
        let dir = CertDir::new(certs.path());
        ferry_certs::init(&dir, &InitOptions::default()).unwrap();
        let config = Arc::new(ferry_certs::server_config(&dir.server_tls_paths()).unwrap());
        let store = Arc::new(Mutex::new(Store::default()));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let shared = store.clone();
        let kick = Arc::new(tokio::sync::Notify::new());
        let kicks = kick.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let store = shared.clone();
                    let kick = kicks.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve(tls, store.clone(), kick).await;
                            store.lock().unwrap().closed += 1;
                        }
                    });
                }
            });
        });
        TestServer {
            addr,
            certs,
            store,
            kick,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.certs.path().join("ca.crt")
    }

    pub fn cert(&self) -> PathBuf {
        self.certs.path().join("clients/local.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.certs.path().join("clients/local.key")
    }

    pub fn options(&self) -> ClientOptions {
        let mut options = ClientOptions::from_files(
            &self.addr.to_string(),
            &self.ca(),
            &self.cert(),
            &self.key(),
        )
        .unwrap();
        options.connect_timeout = Duration::from_secs(5);
        options
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.options()).await.unwrap()
    }

    /// Drops every connection that is waiting for input (as an idle timeout would), and
    /// waits until at least one is gone.
    pub fn kick(&self) {
        let before = self.store().closed;
        for _ in 0..500 {
            self.kick.notify_waiters();
            std::thread::sleep(Duration::from_millis(10));
            if self.store().closed > before {
                return;
            }
        }
        panic!("no connection was dropped");
    }

    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap()
    }
}

/// Deterministic test data.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An event copied out of the server connection.
enum Ev {
    Upload {
        name: String,
        size: u64,
        fresh: bool,
    },
    Download {
        name: String,
    },
    List {
        start_after: String,
        limit: u16,
    },
    Delete {
        name: String,
    },
    Store {
        index: u64,
        offset: u64,
        digest: Digest,
        data: Vec<u8>,
    },
    Need {
        index: u64,
        offset: u64,
        len: usize,
    },
    Commit {
        digest: Digest,
    },
    Failed,
    Closed,
    Other,
}

fn own(event: Event<'_>) -> Ev {
    match event {
        Event::UploadRequested { name, size, fresh } => Ev::Upload {
            name: name.into(),
            size,
            fresh,
        },
        Event::DownloadRequested { name, .. } => Ev::Download { name: name.into() },
        Event::ListRequested { start_after, limit } => Ev::List {
            start_after: start_after.into(),
            limit,
        },
        Event::DeleteRequested { name } => Ev::Delete { name: name.into() },
        Event::StoreChunk {
            index,
            offset,
            digest,
            data,
        } => Ev::Store {
            index,
            offset,
            digest,
            data: data.to_vec(),
        },
        Event::NeedChunk { index, offset, len } => Ev::Need { index, offset, len },
        Event::Commit { digest, .. } => Ev::Commit { digest },
        Event::Failed { .. } => Ev::Failed,
        Event::Closed { .. } => Ev::Closed,
        _ => Ev::Other,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\', '\0']) && !name.starts_with('.')
}

/// Drains the client's bytes for a moment, then returns (the connection is dropped), so
/// that the close is a clean FIN rather than a reset that could discard data in flight.
async fn drop_connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    link: &mut Link<S>,
) {
    let mut sink = vec![0u8; 64 * 1024];
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, link.stream_mut().read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}

/// One connection: what `ferry-server` does, with memory for a disk.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    store: Arc<Mutex<Store>>,
    kick: Arc<tokio::sync::Notify>,
) {
    let mut link = Link::new(stream);
    let config = Config::stream();
    let len = buffer_len(config.max_chunk as usize);
    let mut conn = Conn::server(config, vec![0; len], vec![0; len], link.now()).unwrap();
    let slot = {
        let mut store = store.lock().unwrap();
        store.connections += 1;
        store.stored_per_connection.push(0);
        store.provided_per_connection.push(0);
        store.stored_per_connection.len() - 1
    };
    let mut current: Option<String> = None;
    loop {
        if link.flush(&mut conn).await.is_err() {
            return;
        }
        let now = link.now();
        let event = match conn.poll_event(now) {
            Some(event) => own(event),
            None => {
                tokio::select! {
                    result = link.receive(&mut conn) => if result.is_err() {
                        return;
                    },
                    _ = kick.notified() => return,
                }
                continue;
            }
        };
        let chunk_size = conn.negotiated().map(|(c, _)| c).unwrap_or(CHUNK as u32);
        let drop_now = {
            let mut store = store.lock().unwrap();
            match event {
                Ev::Upload { name, size, fresh } => {
                    store.upload_requests.push((name.clone(), size, fresh));
                    if !valid_name(&name) {
                        conn.reject(ErrorCode::INVALID_NAME, "bad name").unwrap();
                        continue;
                    }
                    if size > 64 * 1024 * 1024 {
                        conn.reject(ErrorCode::TOO_LARGE, "too large").unwrap();
                        continue;
                    }
                    let committed = store.files.get(&name).cloned();
                    let partial = store.partials.entry(name.clone()).or_default();
                    if fresh || partial.size != size || partial.data.len() as u64 != size {
                        *partial = Partial {
                            size,
                            data: vec![0; size as usize],
                            held: BTreeMap::new(),
                        };
                        // A committed file of this size is offered as held (unless `fresh`):
                        // an identical upload then completes without data.
                        if let Some(file) =
                            committed.filter(|f| !fresh && f.data.len() as u64 == size)
                        {
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
                    let held: Vec<(u64, Digest)> =
                        partial.held.iter().map(|(i, d)| (*i, *d)).collect();
                    current = Some(name);
                    conn.accept_upload(held).unwrap();
                    false
                }
                Ev::Store {
                    index,
                    offset,
                    digest,
                    data,
                } => {
                    let name = current.clone().expect("an upload");
                    let partial = store.partials.get_mut(&name).unwrap();
                    partial.data[offset as usize..offset as usize + data.len()]
                        .copy_from_slice(&data);
                    partial.held.insert(index, digest);
                    store.stored_per_connection[slot] += 1;
                    conn.chunk_stored(index).unwrap();
                    if store
                        .drop_upload_after
                        .is_some_and(|n| store.stored_per_connection[slot] >= n)
                    {
                        store.drop_upload_after = None;
                        true
                    } else {
                        false
                    }
                }
                Ev::Commit { digest } => {
                    let name = current.clone().unwrap();
                    let partial = store.partials.remove(&name).unwrap();
                    assert_eq!(FileDigest::of(&partial.data, chunk_size), digest);
                    let chunks = partial
                        .data
                        .chunks(chunk_size as usize)
                        .map(chunk_digest)
                        .collect();
                    store.files.insert(
                        name,
                        StoredFile {
                            data: partial.data,
                            digest,
                            chunks,
                        },
                    );
                    conn.commit_done().unwrap();
                    false
                }
                Ev::Download { name } => {
                    match store.files.get(&name) {
                        Some(file) => {
                            let (size, digest) = (file.data.len() as u64, file.digest);
                            current = Some(name);
                            conn.accept_download(size, Some(digest)).unwrap();
                        }
                        None if !valid_name(&name) => {
                            conn.reject(ErrorCode::INVALID_NAME, "bad name").unwrap()
                        }
                        None => conn.reject(ErrorCode::NOT_FOUND, "no such file").unwrap(),
                    }
                    false
                }
                Ev::Need { index, offset, len } => {
                    if store
                        .drop_download_after
                        .is_some_and(|n| store.provided_per_connection[slot] >= n)
                    {
                        store.drop_download_after = None;
                        true
                    } else {
                        let name = current.clone().unwrap();
                        let chunk = store.files[&name].data[offset as usize..offset as usize + len]
                            .to_vec();
                        conn.provide_chunk(index, &chunk, now).unwrap();
                        store.provided_per_connection[slot] += 1;
                        false
                    }
                }
                Ev::List { start_after, limit } => {
                    store.list_requests += 1;
                    let entries: Vec<ListEntry<'_>> = store
                        .files
                        .range::<String, _>((
                            std::ops::Bound::Excluded(&start_after),
                            std::ops::Bound::Unbounded,
                        ))
                        .take(limit as usize)
                        .map(|(name, file)| ListEntry {
                            name,
                            size: file.data.len() as u64,
                            modified: 1_700_000_000,
                            chunk_size,
                            digest: file.digest,
                        })
                        .collect();
                    conn.respond_list(entries).unwrap();
                    false
                }
                Ev::Delete { name } => {
                    if store.files.remove(&name).is_some() {
                        conn.respond_delete().unwrap();
                    } else {
                        conn.reject(ErrorCode::NOT_FOUND, "no such file").unwrap();
                    }
                    false
                }
                Ev::Failed => {
                    current = None;
                    false
                }
                Ev::Closed => return,
                Ev::Other => false,
            }
        };
        if drop_now {
            drop_connection(&mut link).await;
            return;
        }
    }
}
