//! Helpers of the server's own integration tests: a minimal protocol client (a
//! `ferry_core::Connection` driven by `ferry_tokio::link::Link` over tokio-rustls) that
//! can stop halfway, for the real server of the test kit. Test data, certificates and the
//! in-process server come from `ferry-testkit`.
#![allow(dead_code)]

pub mod binary;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_certs::rustls::pki_types::ServerName;
use ferry_certs::rustls::ClientConfig;
use ferry_core::{Config, Connection, Digest, ErrorCode, Event, Failure, Layout};
use ferry_testkit::server::InProcess;
use ferry_tokio::link::Link;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub const CHUNK: usize = 64 * 1024;

pub type Conn = Connection<Vec<u8>, 16>;

/// How an operation failed.
#[derive(Debug)]
pub enum Error {
    /// The server answered with an error.
    Refused(ErrorCode, String),
    /// The operation failed otherwise.
    Failed(Failure, String),
    /// The connection closed.
    Closed(Failure, String),
    /// The stream failed (a refused handshake shows up here).
    Io(io::Error),
}

impl Error {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused(code, _) => Some(*code),
            _ => None,
        }
    }
}

/// An event copied out of the connection.
#[derive(Debug)]
enum Owned {
    Other,
    Started {
        layout: Layout,
        held: u64,
    },
    NeedChunk {
        index: u64,
        offset: u64,
        len: usize,
    },
    StoreChunk {
        index: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Commit,
    Verified {
        digest: Digest,
    },
    ListPage {
        entries: Vec<Listed>,
        more: bool,
    },
    Deleted,
    Failed(Failure, String),
    Closed(Failure, String),
}

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub modified: u64,
    pub chunk_size: u32,
    pub digest: Digest,
}

fn own(event: Event<'_>) -> Owned {
    match event {
        Event::TransferStarted {
            layout,
            held_chunks,
        } => Owned::Started {
            layout,
            held: held_chunks,
        },
        Event::NeedChunk { index, offset, len } => Owned::NeedChunk { index, offset, len },
        Event::StoreChunk {
            index,
            offset,
            data,
            ..
        } => Owned::StoreChunk {
            index,
            offset,
            data: data.to_vec(),
        },
        Event::Commit { .. } => Owned::Commit,
        Event::Verified { digest, .. } => Owned::Verified { digest },
        Event::ListPage { entries, more } => Owned::ListPage {
            entries: entries
                .map(|e| {
                    let e = e.expect("a decodable entry");
                    Listed {
                        name: e.name.to_string(),
                        size: e.size,
                        modified: e.modified,
                        chunk_size: e.chunk_size,
                        digest: e.digest,
                    }
                })
                .collect(),
            more,
        },
        Event::Deleted => Owned::Deleted,
        Event::Failed { failure, text } => Owned::Failed(failure, text.to_string()),
        Event::Closed { failure, text } => Owned::Closed(failure, text.to_string()),
        _ => Owned::Other,
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    pub digest: Digest,
    /// Chunks the server held when the transfer started.
    pub held: u64,
    /// Chunks sent in this attempt (first sends).
    pub sent: u64,
}

/// A protocol client over mutual TLS.
pub struct TestClient {
    pub link: Link<TlsStream<TcpStream>>,
    pub conn: Conn,
    download_buf: Vec<u8>,
    download_held: u64,
}

pub async fn tls_connect(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

impl TestClient {
    /// Connects and completes the protocol handshake.
    pub async fn connect(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<TestClient, Error> {
        let stream = tls_connect(addr, tls).await.map_err(Error::Io)?;
        TestClient::over(stream).await
    }

    /// Completes the protocol handshake over a TLS stream set up by the caller (after a
    /// PROXY protocol header, say).
    pub async fn over(stream: TlsStream<TcpStream>) -> Result<TestClient, Error> {
        let link = Link::new(stream);
        let config = Config {
            idle_timeout: 30_000,
            ..Config::stream()
        };
        let len = ferry_core::buffer_len(config.max_chunk as usize);
        let conn = Conn::client(config, vec![0; len], vec![0; len], link.now()).unwrap();
        let mut client = TestClient {
            link,
            conn,
            download_buf: Vec::new(),
            download_held: 0,
        };
        while client.conn.negotiated().is_none() {
            match client.next_event().await? {
                Owned::Closed(failure, text) => return Err(Error::Closed(failure, text)),
                _ => continue,
            }
        }
        Ok(client)
    }

    async fn next_event(&mut self) -> Result<Owned, Error> {
        loop {
            self.link.flush(&mut self.conn).await.map_err(Error::Io)?;
            let now = self.link.now();
            if let Some(event) = self.conn.poll_event(now) {
                return Ok(own(event));
            }
            self.link.receive(&mut self.conn).await.map_err(Error::Io)?;
        }
    }

    fn fail(failure: Failure, text: String) -> Error {
        match failure {
            Failure::Peer(code) => Error::Refused(code, text),
            other => Error::Failed(other, text),
        }
    }

    /// Uploads `data` as `name`.
    pub async fn upload(
        &mut self,
        name: &str,
        data: &[u8],
        fresh: bool,
    ) -> Result<Uploaded, Error> {
        self.upload_until(name, data, fresh, None).await
    }

    /// Uploads, retrying with `fresh` if the server's held chunks came from another file.
    pub async fn upload_retrying(&mut self, name: &str, data: &[u8]) -> Result<Uploaded, Error> {
        match self.upload(name, data, false).await {
            Err(Error::Failed(Failure::Transfer(ferry_core::TransferError::SourceChanged), _)) => {
                self.upload(name, data, true).await
            }
            other => other,
        }
    }

    /// Uploads, and returns `Ok(None)` right after providing `stop_after` chunks (the
    /// caller then drops the connection).
    pub async fn upload_until(
        &mut self,
        name: &str,
        data: &[u8],
        fresh: bool,
        stop_after: Option<u64>,
    ) -> Result<Uploaded, Error> {
        self.conn
            .upload(name, data.len() as u64, fresh)
            .map_err(|e| Error::Failed(Failure::Protocol, format!("{e:?}")))?;
        let mut held = 0;
        let mut provided = 0;
        loop {
            match self.next_event().await? {
                Owned::Started { held: h, .. } => held = h,
                Owned::NeedChunk { index, offset, len } => {
                    let chunk = &data[offset as usize..offset as usize + len];
                    let now = self.link.now();
                    self.conn.provide_chunk(index, chunk, now).unwrap();
                    provided += 1;
                    if stop_after.is_some_and(|n| provided >= n) {
                        self.link.flush(&mut self.conn).await.map_err(Error::Io)?;
                        return Err(Error::Failed(Failure::Unanswered, "stopped".into()));
                    }
                }
                Owned::Verified { digest } => {
                    // The sender asks for every chunk: held ones only to hash them.
                    return Ok(Uploaded {
                        digest,
                        held,
                        sent: provided - held,
                    });
                }
                Owned::Failed(failure, text) => return Err(Self::fail(failure, text)),
                Owned::Closed(failure, text) => return Err(Error::Closed(failure, text)),
                _ => {}
            }
        }
    }

    /// Downloads `name`; with `partial`, resumes from (size, data, held chunk indices).
    /// With `stop_after`, returns an error after storing that many chunks, leaving the
    /// transfer running: [`download_continue`](Self::download_continue) goes on with it.
    pub async fn download_resuming(
        &mut self,
        name: &str,
        partial: Option<(u64, &[u8], &[u64])>,
        stop_after: Option<usize>,
    ) -> Result<(Vec<u8>, Digest, u64), Error> {
        self.download_buf.clear();
        self.download_held = 0;
        match partial {
            Some((size, data, held)) => {
                let (chunk, _) = self.conn.negotiated().unwrap();
                let layout = Layout {
                    size,
                    chunk_size: chunk,
                };
                let mut chunks = held.iter().map(|index| {
                    let offset = layout.offset(*index) as usize;
                    let digest =
                        ferry_core::chunk_digest(&data[offset..offset + layout.len(*index)]);
                    (*index, digest)
                });
                self.download_buf = data.to_vec();
                self.conn
                    .download(name, Some((size, &mut chunks)))
                    .map_err(|e| Error::Failed(Failure::Protocol, format!("{e:?}")))?;
            }
            None => self
                .conn
                .download(name, None)
                .map_err(|e| Error::Failed(Failure::Protocol, format!("{e:?}")))?,
        }
        self.download_continue(stop_after).await
    }

    /// Goes on with a download stopped by `stop_after`.
    pub async fn download_continue(
        &mut self,
        stop_after: Option<usize>,
    ) -> Result<(Vec<u8>, Digest, u64), Error> {
        let mut stored = 0;
        loop {
            match self.next_event().await? {
                Owned::Started { layout, held } => {
                    self.download_held = held;
                    self.download_buf.resize(layout.size as usize, 0);
                }
                Owned::StoreChunk {
                    index,
                    offset,
                    data,
                } => {
                    let at = offset as usize;
                    self.download_buf[at..at + data.len()].copy_from_slice(&data);
                    self.conn.chunk_stored(index).unwrap();
                    stored += 1;
                    if stop_after.is_some_and(|n| stored >= n) {
                        self.link.flush(&mut self.conn).await.map_err(Error::Io)?;
                        return Err(Error::Failed(Failure::Unanswered, "stopped".into()));
                    }
                }
                Owned::Commit => self.conn.commit_done().unwrap(),
                Owned::Verified { digest } => {
                    let data = std::mem::take(&mut self.download_buf);
                    return Ok((data, digest, self.download_held));
                }
                Owned::Failed(failure, text) => return Err(Self::fail(failure, text)),
                Owned::Closed(failure, text) => return Err(Error::Closed(failure, text)),
                _ => {}
            }
        }
    }

    pub async fn download(&mut self, name: &str) -> Result<(Vec<u8>, Digest), Error> {
        self.download_resuming(name, None, None)
            .await
            .map(|(data, digest, _)| (data, digest))
    }

    /// Lists everything, page by page of `limit`.
    pub async fn list_paged(&mut self, limit: u16) -> Result<(Vec<Listed>, usize), Error> {
        let mut all: Vec<Listed> = Vec::new();
        let mut pages = 0;
        loop {
            let after = all.last().map(|l| l.name.clone()).unwrap_or_default();
            self.conn
                .list(&after, limit)
                .map_err(|e| Error::Failed(Failure::Protocol, format!("{e:?}")))?;
            loop {
                match self.next_event().await? {
                    Owned::ListPage { entries, more } => {
                        pages += 1;
                        let count = entries.len();
                        all.extend(entries);
                        // `more`: the page did not hold all entries asked for; a full
                        // page may be followed by more as well.
                        if count == 0 || (!more && count < usize::from(limit)) {
                            return Ok((all, pages));
                        }
                        break;
                    }
                    Owned::Failed(failure, text) => return Err(Self::fail(failure, text)),
                    Owned::Closed(failure, text) => return Err(Error::Closed(failure, text)),
                    _ => {}
                }
            }
        }
    }

    pub async fn list(&mut self) -> Result<Vec<Listed>, Error> {
        self.list_paged(100).await.map(|(all, _)| all)
    }

    pub async fn delete(&mut self, name: &str) -> Result<(), Error> {
        self.conn
            .delete(name)
            .map_err(|e| Error::Failed(Failure::Protocol, format!("{e:?}")))?;
        loop {
            match self.next_event().await? {
                Owned::Deleted => return Ok(()),
                Owned::Failed(failure, text) => return Err(Self::fail(failure, text)),
                Owned::Closed(failure, text) => return Err(Error::Closed(failure, text)),
                _ => {}
            }
        }
    }

    /// Waits until the connection ends (the server closed it).
    pub async fn wait_closed(&mut self) -> Error {
        loop {
            match self.next_event().await {
                Ok(Owned::Closed(failure, text)) => return Error::Closed(failure, text),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }
}

/// Whether a client with `tls` is refused: the handshake fails, or (TLS 1.3 reports a
/// refused client certificate after the client's side completed) the first exchange does.
pub async fn is_refused(addr: SocketAddr, tls: Arc<ClientConfig>) -> bool {
    match tokio::time::timeout(Duration::from_secs(10), async {
        match TestClient::connect(addr, tls).await {
            Ok(mut client) => client.list().await.is_err(),
            Err(_) => true,
        }
    })
    .await
    {
        Ok(refused) => refused,
        Err(_) => panic!("neither accepted nor refused within 10 s"),
    }
}

/// Protocol clients of a test-kit server.
pub trait Clients {
    /// A connected client with the server's `local` certificate.
    async fn local(&self) -> TestClient;
    /// A connected client `name` (its certificate issued if it has none yet).
    async fn client(&self, name: &str) -> TestClient;
}

impl Clients for InProcess {
    async fn local(&self) -> TestClient {
        self.client(ferry_certs::LOCAL_CLIENT).await
    }

    async fn client(&self, name: &str) -> TestClient {
        TestClient::connect(self.addr, self.pki().client_tls(name))
            .await
            .unwrap()
    }
}
