//! One client connection after the TLS handshake: drives a `ferry_core::Connection` with
//! `ferry_tokio::link::Link` and answers its events from the [`Store`], confined to the
//! client's identity.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_certs::rustls::pki_types::{CertificateDer, UnixTime};
use ferry_certs::rustls::server::danger::ClientCertVerifier;
use ferry_certs::rustls::{CertificateError, Error as TlsError};
use ferry_certs::{ClientIdentity, ReloadableClientVerifier};
use ferry_core::framing::encode_frame;
use ferry_core::wire::{ErrorCode, Frame, CONTROL_FRAME_MAX, RETRY_AFTER};
use ferry_core::{Config, Connection, Digest, Event, Failure, FileAttrs};
use ferry_tokio::event::OwnedEvent;
use ferry_tokio::link::Link;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

mod list;
mod log;

use log::TransferLog;
mod put;

use crate::metrics::{Kind, Metrics, Op};
use crate::names::validate_name;
use crate::storage::{Precondition, StorageError, Store, StoredFile, Upload};

/// The most entries of one list page, whatever the client's `limit`.
pub(crate) const LIST_PAGE_MAX: usize = 1000;

/// The server's protocol connection: heap buffers, window 16.
pub(crate) type Conn = Connection<Vec<u8>, 16>;

/// The server's life: running, draining (idle connections close, transfers finish), stopping
/// (everyone checkpoints and closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Running,
    Draining,
    Stopping,
}

/// What every connection shares.
pub(crate) struct Shared {
    pub storage: Arc<dyn Store>,
    pub core: Config,
    /// The smallest chunk size agreed to (`--min-chunk-size`).
    pub min_chunk: u32,
    pub idle: Duration,
    pub max_per_identity: usize,
    /// `--max-connections`: authenticated sessions at most.
    pub max_sessions: usize,
    pub identities: Mutex<HashMap<String, usize>>,
    pub phase: watch::Receiver<Phase>,
    pub metrics: Arc<Metrics>,
    /// Time for the first request after the handshake.
    pub first_request: Duration,
    /// The verifier whose CRL is reloaded: a session checks its certificate against it.
    pub verifier: Arc<ReloadableClientVerifier>,
    /// Bumped at every CRL reload.
    pub revocations: watch::Receiver<u64>,
}

/// Counts a connection of an identity (a client name) while it lives.
pub(crate) struct IdentitySlot {
    shared: Arc<Shared>,
    client: String,
}

impl Shared {
    /// Takes a connection slot of client `client`, or `None` if its limit is reached.
    pub fn enter(self: &Arc<Self>, client: &str) -> Option<IdentitySlot> {
        let mut counts = self.identities.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(client.to_string()).or_default();
        if *count >= self.max_per_identity {
            return None;
        }
        *count += 1;
        Some(IdentitySlot {
            shared: self.clone(),
            client: client.to_string(),
        })
    }
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut counts = self
            .shared
            .identities
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// Closes the connection with `code` and `text` on seq 0, sends that, and returns `end`.
async fn close_with<S>(
    link: &mut Link<S>,
    conn: &mut Conn,
    code: ErrorCode,
    text: &str,
    end: End,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.close_with(code, text);
    match tokio::time::timeout(Duration::from_secs(2), link.flush(conn)).await {
        Ok(Ok(())) => end,
        Ok(Err(e)) => End::Io(e),
        Err(_) => End::SendTimeout,
    }
}

enum Active {
    Upload {
        upload: Box<dyn Upload>,
        log: TransferLog,
    },
    Download {
        file: Box<dyn StoredFile>,
        log: TransferLog,
    },
}

impl Active {
    fn log_mut(&mut self) -> &mut TransferLog {
        match self {
            Active::Upload { log, .. } | Active::Download { log, .. } => log,
        }
    }
}

/// What to do next: an event copied out of the connection (so that it can be used again),
/// or the outcome of a chunk stored while its data was still borrowed from it.
enum Action {
    Event(OwnedEvent),
    Stored(u64),
    StoreFailed(StorageError),
    /// A `Put` was copied into the batch: the connection may take the next frame.
    PutTaken(u32),
    Ignore,
}

/// Why a session ended.
enum End {
    Closed(Failure, String),
    Io(io::Error),
    SendTimeout,
    Shutdown,
    /// The client's certificate is on the reloaded CRL.
    Revoked,
    /// No request within the first-request deadline.
    NoFirstRequest,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed(failure, text) => {
                write!(f, "connection closed: {}", describe(*failure, text))
            }
            End::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                write!(f, "the client disconnected")
            }
            End::Io(e) => write!(f, "connection error: {e}"),
            End::SendTimeout => write!(f, "the client stopped reading"),
            End::Shutdown => write!(f, "server shutting down"),
            End::Revoked => write!(f, "the client certificate was revoked"),
            End::NoFirstRequest => write!(f, "no request within the first-request deadline"),
        }
    }
}

fn describe(failure: Failure, text: &str) -> String {
    let what = match failure {
        Failure::Peer(code) => format!("client reported {}", code.name()),
        Failure::Local(code) => code.name().to_string(),
        Failure::Transfer(error) => error.to_string(),
        Failure::IdleTimeout => "idle timeout".into(),
        other => other.to_string(),
    };
    if text.is_empty() {
        what
    } else {
        format!("{what}: {text}")
    }
}

struct Session {
    shared: Arc<Shared>,
    identity: ClientIdentity,
    /// The client's certificate chain (end entity first), checked again at CRL reloads.
    certificate: Vec<CertificateDer<'static>>,
    peer: SocketAddr,
    /// Whether a request came (the first-request deadline no longer applies).
    requested: bool,
    active: Option<Active>,
    read_buf: Vec<u8>,
    /// `Put`s taken and not yet committed (at most the window).
    puts: Vec<put::TakenPut>,
}

/// Tells an authenticated client that the server is busy, with a retry-after, and closes:
/// an `Error` with code `BUSY` on seq 0 (see [`ferry_core::wire::RETRY_AFTER`]). The
/// client's hello is read and dropped until it closes (briefly), so that closing does not
/// reset the connection before the client has read the answer.
pub(crate) async fn refuse_busy<S>(mut stream: S, text: &str, retry_after_secs: u32)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = format!("{text}; {RETRY_AFTER}{retry_after_secs}");
    let frame = Frame::Error {
        seq: 0,
        code: ErrorCode::BUSY,
        text: &text,
    };
    let mut buf = [0u8; CONTROL_FRAME_MAX + 16];
    let Ok(len) = encode_frame(&frame, Config::stream().framing, &mut buf) else {
        return;
    };
    let answer = async {
        stream.write_all(&buf[..len]).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}

/// Serves one authenticated connection until it ends; `slot` counts it against its
/// identity's limit.
pub(crate) async fn serve<S>(
    stream: S,
    identity: ClientIdentity,
    certificate: Vec<CertificateDer<'static>>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: IdentitySlot,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut link = Link::new(stream);
    let len = ferry_core::buffer_len(shared.core.max_chunk as usize);
    // Boxed: the connection holds its names inline, which the session's future would carry.
    let mut conn = match Conn::server(shared.core, vec![0; len], vec![0; len], link.now()) {
        Ok(conn) => Box::new(conn),
        Err(e) => {
            tracing::error!("cannot create a protocol connection: {e}");
            return;
        }
    };
    conn.set_min_chunk(shared.min_chunk);
    let mut session = Session {
        shared,
        identity,
        certificate,
        peer,
        requested: false,
        active: None,
        read_buf: Vec::new(),
        puts: Vec::new(),
    };
    tracing::debug!(
        "{}: connected as {} ({})",
        session.peer,
        session.identity.name,
        session.identity.short_fingerprint()
    );
    let end = session.run(&mut link, &mut conn).await;
    session.finish(&end).await;
    session.shared.metrics.connection_stats(conn.stats());
    let _ = tokio::time::timeout(Duration::from_secs(1), link.stream_mut().shutdown()).await;
    tracing::debug!("{}: {}", session.peer, end);
    drop(slot);
}

impl Session {
    async fn run<S>(&mut self, link: &mut Link<S>, conn: &mut Conn) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut phase = self.shared.phase.clone();
        let mut revocations = self.shared.revocations.clone();
        revocations.borrow_and_update();
        let first_request = tokio::time::sleep(self.shared.first_request);
        tokio::pin!(first_request);
        loop {
            match tokio::time::timeout(self.shared.idle, link.flush(conn)).await {
                Err(_) => return End::SendTimeout,
                Ok(Err(e)) => return End::Io(e),
                Ok(Ok(())) => {}
            }
            let now = link.now();
            let action = match conn.poll_event(now) {
                Some(event) => self.on_event(event),
                None => {
                    // Puts that arrived back to back are committed together once nothing
                    // more is readable at once, or the window is full.
                    let window = conn.negotiated().map_or(1, |(_, w)| usize::from(w));
                    if !self.puts.is_empty()
                        && (!link.can_defer_flush() || self.puts.len() >= window)
                    {
                        self.commit_puts(conn).await;
                        continue;
                    }
                    let current = *phase.borrow_and_update();
                    let idle = !conn.is_busy() && self.active.is_none();
                    if current == Phase::Stopping || (current == Phase::Draining && idle) {
                        return End::Shutdown;
                    }
                    tokio::select! {
                        received = link.receive(conn) => match received {
                            Ok(()) => continue,
                            Err(e) => return End::Io(e),
                        },
                        changed = phase.changed() => match changed {
                            Ok(()) => continue,
                            Err(_) => return End::Shutdown,
                        },
                        Ok(()) = revocations.changed() => {
                            if self.is_revoked() {
                                return self.end_revoked(link, conn).await;
                            }
                            continue;
                        }
                        () = &mut first_request, if !self.requested => {
                            let secs = self.shared.first_request.as_secs();
                            let text = format!("no request within {secs} s of connecting");
                            return close_with(link, conn, ErrorCode::TIMEOUT, &text, End::NoFirstRequest).await;
                        }
                    }
                }
            };
            if let Some(end) = self.act(action, link, conn).await {
                return end;
            }
        }
    }

    /// Copies an event out of the connection; a chunk to store is written right here, while
    /// its data is borrowed from the connection, instead of being copied; a `Put` is taken
    /// into the batch.
    fn on_event(&mut self, event: Event<'_>) -> Action {
        if let Event::PutRequested {
            seq,
            name,
            attrs,
            digest,
            data,
        } = event
        {
            self.puts
                .push(put::TakenPut::new(seq, name, data, digest, attrs));
            return Action::PutTaken(seq);
        }
        if let Event::StoreChunk {
            index,
            offset,
            digest,
            data,
        } = event
        {
            return match self.active.as_mut() {
                Some(Active::Upload { upload, .. }) => {
                    match upload.store(index, offset, &digest, data) {
                        Ok(()) => {
                            self.shared.metrics.received(data.len());
                            Action::Stored(index)
                        }
                        Err(e) => Action::StoreFailed(e),
                    }
                }
                _ => Action::StoreFailed(StorageError::Inconsistent(
                    "a chunk arrived without an upload".into(),
                )),
            };
        }
        // No chunk data is copied: the scratch buffer stays empty.
        match OwnedEvent::new(event, &mut Vec::new()) {
            Ok(event) => Action::Event(event),
            Err(e) => {
                // Only a client's list page decodes its entries, and a server gets none.
                tracing::warn!("{}: an event that does not decode: {e}", self.peer);
                Action::Ignore
            }
        }
    }

    /// Whether the client's certificate is on the CRL now in force.
    fn is_revoked(&self) -> bool {
        let Some((end_entity, intermediates)) = self.certificate.split_first() else {
            return false;
        };
        matches!(
            self.shared
                .verifier
                .verify_client_cert(end_entity, intermediates, UnixTime::now()),
            Err(TlsError::InvalidCertificate(CertificateError::Revoked))
        )
    }

    /// Ends the session of a revoked certificate: a running upload is checkpointed (as at
    /// shutdown), then the client is told `FORBIDDEN` and the connection closes.
    async fn end_revoked<S>(&mut self, link: &mut Link<S>, conn: &mut Conn) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let serial = self
            .certificate
            .first()
            .and_then(|der| ferry_certs::certificate_serial(der).ok())
            .unwrap_or_default();
        tracing::warn!(
            peer = %self.peer,
            client = %self.identity.name,
            fp = %self.identity.short_fingerprint(),
            serial = %serial,
            "{}: the certificate of {} (serial {serial}) was revoked: ending its connection",
            self.peer,
            self.identity.name
        );
        if let Some(active) = self.active.take() {
            self.end_transfer(active, "failed: the client certificate was revoked")
                .await;
        }
        close_with(
            link,
            conn,
            ErrorCode::FORBIDDEN,
            "the client certificate was revoked",
            End::Revoked,
        )
        .await
    }

    /// The store's key of this client: its name.
    fn client(&self) -> String {
        self.identity.name.clone()
    }

    fn chunk_size(&self, conn: &Conn) -> u32 {
        conn.negotiated()
            .map_or(self.shared.core.max_chunk, |(chunk, _)| chunk)
    }

    /// Refuses the pending request; logs the refusal.
    fn refuse(&self, conn: &mut Conn, op: &str, name: &str, code: ErrorCode, text: &str) {
        self.shared.metrics.request_refused(Op::from_name(op), code);
        tracing::info!(
            peer = %self.peer,
            client = %self.identity.name,
            fp = %self.identity.short_fingerprint(),
            op,
            name,
            result = %format!("refused: {}: {text}", code.name()),
            "request"
        );
        if let Err(e) = conn.reject(code, text) {
            tracing::warn!("{}: cannot refuse a request: {e}", self.peer);
        }
    }

    async fn act<S>(&mut self, action: Action, link: &mut Link<S>, conn: &mut Conn) -> Option<End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let is_request = matches!(
            action,
            Action::Event(
                OwnedEvent::UploadRequested { .. }
                    | OwnedEvent::DownloadRequested { .. }
                    | OwnedEvent::ListRequested { .. }
                    | OwnedEvent::ListTreeRequested { .. }
                    | OwnedEvent::DeleteRequested { .. }
            )
        );
        if is_request {
            self.requested = true;
            // A new request ends a transfer the client gave up on (the core reports it as
            // failed too); its partial upload stays for a resume.
            if let Some(active) = self.active.take() {
                self.end_transfer(active, "failed: cancelled by a new request")
                    .await;
            }
        }
        if matches!(action, Action::PutTaken(_)) {
            self.requested = true;
        }
        match action {
            Action::Ignore => {}
            Action::PutTaken(seq) => {
                if let Err(e) = conn.accept_put(seq) {
                    tracing::warn!("{}: accept_put: {e}", self.peer);
                }
            }
            Action::Event(OwnedEvent::UploadRequested {
                name,
                size,
                fresh,
                attrs,
            }) => self.on_upload(conn, name, size, fresh, attrs).await,
            Action::Event(OwnedEvent::ListTreeRequested {
                prefix,
                start_after,
                limit,
                recursive,
            }) => {
                self.on_list_tree(conn, prefix, start_after, limit, recursive)
                    .await
            }
            Action::Event(OwnedEvent::DownloadRequested { name, .. }) => {
                self.on_download(conn, name).await
            }
            Action::Event(OwnedEvent::ListRequested { start_after, limit }) => {
                self.on_list(conn, start_after, limit).await
            }
            Action::Event(OwnedEvent::DeleteRequested { name }) => self.on_delete(conn, name).await,
            Action::Stored(index) => {
                if let Err(error) = self.checkpoint_if_wanted().await {
                    tracing::warn!(
                        "{}: storing a part for {} failed: {error}",
                        self.peer,
                        self.identity.name
                    );
                    let _ = conn.fail_transfer(error.code(), &error.client_text());
                    return None;
                }
                if let Err(e) = conn.chunk_stored(index) {
                    tracing::warn!("{}: chunk_stored: {e}", self.peer);
                }
            }
            Action::StoreFailed(error) => {
                tracing::warn!(
                    "{}: storing a chunk for {} failed: {error}",
                    self.peer,
                    self.identity.name
                );
                if error.is_disk_full() {
                    self.free_failed_upload().await;
                }
                let _ = conn.fail_transfer(error.code(), &error.client_text());
            }
            Action::Event(OwnedEvent::NeedChunk { index, offset, len }) => {
                let Some(Active::Download { file, .. }) = self.active.as_ref() else {
                    let _ = conn.fail_transfer(ErrorCode::INTERNAL, "no file open");
                    return None;
                };
                if file.needs_fetch(offset, len) {
                    if let Err(e) = self.fetch_ahead(offset, len).await {
                        tracing::error!(
                            "fetching {offset} of a file of {}: {e}",
                            self.identity.name
                        );
                        let _ = conn.fail_transfer(
                            ErrorCode::STORAGE,
                            "storage failure on the server: cannot read the file",
                        );
                        return None;
                    }
                }
                let Some(Active::Download { file, log }) = self.active.as_mut() else {
                    let _ = conn.fail_transfer(ErrorCode::INTERNAL, "no file open");
                    return None;
                };
                self.read_buf.resize(len, 0);
                let buf = &mut self.read_buf[..len];
                match file.read_exact_at(buf, offset) {
                    Ok(()) => match conn.provide_chunk(index, buf, link.now()) {
                        Ok(()) => self.shared.metrics.sent(len),
                        Err(e) => {
                            tracing::warn!("{}: provide_chunk: {e}", self.peer);
                            let _ = conn.fail_transfer(ErrorCode::INTERNAL, "internal error");
                        }
                    },
                    Err(e) => {
                        tracing::error!(
                            "reading {:?} of {} at {offset}: {e}",
                            log.name,
                            self.identity.name
                        );
                        let _ = conn.fail_transfer(
                            ErrorCode::STORAGE,
                            "storage failure on the server: cannot read the file",
                        );
                    }
                }
            }
            Action::Event(OwnedEvent::Commit { digest, .. }) => self.on_commit(conn, digest).await,
            Action::Event(OwnedEvent::TransferStarted {
                layout,
                held_chunks,
            }) => {
                if let Some(active) = self.active.as_mut() {
                    let log = active.log_mut();
                    log.size = layout.size;
                    log.chunk_size = layout.chunk_size;
                    log.held_chunks = held_chunks;
                    log.started = Instant::now();
                }
            }
            Action::Event(OwnedEvent::Verified { .. }) => {
                if let Some(active) = self.active.take() {
                    self.end_transfer(active, "verified").await;
                }
            }
            Action::Event(OwnedEvent::Failed { failure, text }) => {
                if let Some(active) = self.active.take() {
                    let result = format!("failed: {}", describe(failure, &text));
                    self.end_transfer(active, &result).await;
                }
            }
            Action::Event(OwnedEvent::Closed { failure, text }) => {
                return Some(End::Closed(failure, text))
            }
            // Client-side events, and chunks, which `on_event` stores before copying.
            Action::Event(_) => {}
        }
        None
    }

    async fn on_upload(
        &mut self,
        conn: &mut Conn,
        raw: String,
        size: u64,
        fresh: bool,
        attrs: FileAttrs,
    ) {
        let name = match validate_name(&raw) {
            Ok(name) => name,
            Err(e) => {
                return self.refuse(
                    conn,
                    "upload",
                    &raw,
                    ErrorCode::INVALID_NAME,
                    &e.to_string(),
                )
            }
        };
        let (storage, client) = (self.shared.storage.clone(), self.client());
        let chunk_size = self.chunk_size(conn);
        let task_name = name.clone();
        let begun = tokio::task::spawn_blocking(move || {
            storage.begin_upload(&client, &task_name, size, chunk_size, fresh)
        })
        .await;
        let mut upload = match begun {
            Ok(Ok(upload)) => upload,
            Ok(Err(e)) => {
                if let StorageError::Io { .. }
                | StorageError::DiskFull { .. }
                | StorageError::Inconsistent(_) = e
                {
                    tracing::error!("upload of {name:?} for {}: {e}", self.identity.name);
                }
                return self.refuse(conn, "upload", &name, e.code(), &e.client_text());
            }
            Err(e) => {
                tracing::error!("upload of {name:?}: {e}");
                return self.refuse(conn, "upload", &name, ErrorCode::INTERNAL, "internal error");
            }
        };
        upload.set_attributes(attrs);
        let held: Vec<(u64, Digest)> = upload.held_chunks().collect();
        if let Err(e) = conn.accept_upload(held) {
            tracing::warn!("{}: accept_upload: {e}", self.peer);
            return;
        }
        self.shared.metrics.transfer_started(Kind::upload);
        let log = TransferLog {
            op: "upload",
            name,
            size,
            chunk_size,
            started: Instant::now(),
            held_chunks: 0,
        };
        self.active = Some(Active::Upload { upload, log });
    }

    async fn on_download(&mut self, conn: &mut Conn, raw: String) {
        let name = match validate_name(&raw) {
            Ok(name) => name,
            Err(e) => {
                return self.refuse(
                    conn,
                    "download",
                    &raw,
                    ErrorCode::INVALID_NAME,
                    &e.to_string(),
                )
            }
        };
        let (storage, client) = (self.shared.storage.clone(), self.client());
        let chunk_size = self.chunk_size(conn);
        let task_name = name.clone();
        let opened =
            tokio::task::spawn_blocking(move || storage.open(&client, &task_name, chunk_size))
                .await;
        let stored = match opened {
            Ok(Ok(stored)) => stored,
            Ok(Err(StorageError::NotFound)) => {
                let text = format!("no such file: {name}");
                return self.refuse(conn, "download", &name, ErrorCode::NOT_FOUND, &text);
            }
            Ok(Err(e)) => {
                tracing::error!("download of {name:?} for {}: {e}", self.identity.name);
                return self.refuse(conn, "download", &name, e.code(), &e.client_text());
            }
            Err(e) => {
                tracing::error!("download of {name:?}: {e}");
                return self.refuse(
                    conn,
                    "download",
                    &name,
                    ErrorCode::INTERNAL,
                    "internal error",
                );
            }
        };
        let meta = stored.meta();
        // The stored digest is only comparable when computed with this connection's chunks.
        let expected = (meta.chunk_size == chunk_size).then(|| meta.digest_bytes());
        if let Err(e) = conn.accept_download(meta.size, expected) {
            tracing::warn!("{}: accept_download: {e}", self.peer);
            return;
        }
        if !conn.is_busy() {
            // The core refused it (the client's partial copy has another size).
            tracing::info!(
                client = %self.identity.name,
                fp = %self.identity.short_fingerprint(),
                op = "download",
                name = %name,
                result = "refused: the client's partial copy does not match",
                "request"
            );
            return;
        }
        self.shared.metrics.transfer_started(Kind::download);
        let log = TransferLog {
            op: "download",
            name,
            size: meta.size,
            chunk_size,
            started: Instant::now(),
            held_chunks: 0,
        };
        self.active = Some(Active::Download { file: stored, log });
    }

    async fn on_delete(&mut self, conn: &mut Conn, raw: String) {
        let name = match validate_name(&raw) {
            Ok(name) => name,
            Err(e) => {
                return self.refuse(
                    conn,
                    "delete",
                    &raw,
                    ErrorCode::INVALID_NAME,
                    &e.to_string(),
                )
            }
        };
        let (storage, client) = (self.shared.storage.clone(), self.client());
        let task_name = name.clone();
        let deleted =
            tokio::task::spawn_blocking(move || storage.delete(&client, &task_name)).await;
        match deleted {
            Ok(Ok(())) => {
                tracing::info!(
                peer = %self.peer,
                        client = %self.identity.name,
                        fp = %self.identity.short_fingerprint(),
                        op = "delete",
                        name = %name,
                        result = "deleted",
                        "request"
                    );
                if let Err(e) = conn.respond_delete() {
                    tracing::warn!("{}: respond_delete: {e}", self.peer);
                }
            }
            Ok(Err(StorageError::NotFound)) => {
                let text = format!("no such file: {name}");
                self.refuse(conn, "delete", &name, ErrorCode::NOT_FOUND, &text);
            }
            Ok(Err(e)) => {
                tracing::error!("delete of {name:?} for {}: {e}", self.identity.name);
                self.refuse(conn, "delete", &name, e.code(), &e.client_text());
            }
            Err(e) => {
                tracing::error!("delete of {name:?}: {e}");
                self.refuse(conn, "delete", &name, ErrorCode::INTERNAL, "internal error");
            }
        }
    }

    async fn on_commit(&mut self, conn: &mut Conn, digest: Digest) {
        let Some(Active::Upload { mut upload, log }) = self.active.take() else {
            let _ = conn.fail_transfer(ErrorCode::INTERNAL, "nothing to commit");
            return;
        };
        let started = Instant::now();
        let committed = tokio::task::spawn_blocking(move || {
            let result = upload.commit(&digest, Precondition::None);
            (upload, result)
        })
        .await;
        match committed {
            Ok((upload, Ok(_meta))) => {
                self.shared.metrics.committed(started.elapsed());
                self.active = Some(Active::Upload { upload, log });
                if let Err(e) = conn.commit_done() {
                    tracing::warn!("{}: commit_done: {e}", self.peer);
                }
            }
            Ok((upload, Err(e))) => {
                tracing::error!("committing {:?} for {}: {e}", log.name, self.identity.name);
                self.active = Some(Active::Upload { upload, log });
                if e.is_disk_full() {
                    self.free_failed_upload().await;
                }
                let _ = conn.fail_transfer(e.code(), &e.client_text());
            }
            Err(e) => {
                tracing::error!("committing {:?}: {e}", log.name);
                let _ = conn.fail_transfer(ErrorCode::INTERNAL, "internal error");
            }
        }
    }

    /// Checkpoints the running upload on the blocking pool if its store asks for it (a full
    /// part of an object store upload), before the chunk is acknowledged.
    async fn checkpoint_if_wanted(&mut self) -> Result<(), StorageError> {
        let wanted = matches!(&self.active, Some(Active::Upload { upload, .. }) if upload.wants_checkpoint());
        if !wanted {
            return Ok(());
        }
        let Some(Active::Upload { upload, log }) = self.active.take() else {
            return Ok(());
        };
        let done = tokio::task::spawn_blocking(move || {
            let result = upload.checkpoint();
            (upload, result)
        })
        .await;
        match done {
            Ok((upload, result)) => {
                self.active = Some(Active::Upload { upload, log });
                result
            }
            Err(e) => Err(StorageError::Inconsistent(format!("checkpoint task: {e}"))),
        }
    }

    /// Fetches the range of the running download on the blocking pool (an object store
    /// reads ahead), so that the chunk is then read without waiting.
    async fn fetch_ahead(&mut self, offset: u64, len: usize) -> std::io::Result<()> {
        let Some(Active::Download { mut file, log }) = self.active.take() else {
            return Ok(());
        };
        let done = tokio::task::spawn_blocking(move || {
            let result = file.fetch(offset, len);
            (file, result)
        })
        .await;
        match done {
            Ok((file, result)) => {
                self.active = Some(Active::Download { file, log });
                result
            }
            Err(e) => Err(std::io::Error::other(format!("fetch task: {e}"))),
        }
    }

    /// The disk is full: the running upload is aborted at once, which frees its partial
    /// (a resume would fail the same way, and its space is what other uploads need).
    async fn free_failed_upload(&mut self) {
        let Some(Active::Upload { upload, log }) = self.active.take() else {
            return;
        };
        let name = log.name.clone();
        let aborted = tokio::task::spawn_blocking(move || upload.abort()).await;
        match aborted {
            Ok(Ok(())) => tracing::error!(
                "server disk full: the upload of {name:?} by {} failed; its partial upload was removed",
                self.identity.name
            ),
            Ok(Err(e)) => tracing::error!(
                "server disk full: the upload of {name:?} by {} failed, and removing its partial failed too: {e}",
                self.identity.name
            ),
            Err(e) => tracing::error!("removing the partial upload of {name:?}: {e}"),
        }
        self.log_transfer(log, "failed: server disk full");
    }

    /// Logs the end of a transfer; a partial upload is flushed to disk for a later resume.
    async fn end_transfer(&self, active: Active, result: &str) {
        let log = match active {
            // A committed upload has nothing left to flush: no trip to the blocking pool.
            Active::Upload { upload, log } if upload.is_committed() => log,
            Active::Upload { upload, log } => {
                let name = log.name.clone();
                let synced = tokio::task::spawn_blocking(move || upload.checkpoint()).await;
                if let Ok(Err(e)) = synced {
                    tracing::error!("checkpointing the upload of {name:?}: {e}");
                }
                log
            }
            Active::Download { log, .. } => log,
        };
        self.log_transfer(log, result);
    }

    /// After the connection ended: a running transfer is checkpointed and logged.
    async fn finish(&mut self, end: &End) {
        if let Some(active) = self.active.take() {
            let result = format!("failed: {end}");
            self.end_transfer(active, &result).await;
        }
    }
}
