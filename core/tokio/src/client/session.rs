//! The client: one mutual-TLS connection to a Ferry server, reconnected when it breaks,
//! and the operations that run over it.

use std::io;
use std::path::Path;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use ferry_core::{buffer_len, ErrorCode, Event, Failure, Framing, TransferError};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::client::capacity::{capacity_refusal, given_up, CapacityBackoff};
use crate::client::compare::CompareSink;
use crate::client::download::{DownloadOp, FileSink};
use crate::client::error::ClientError;
use crate::client::op::{
    begin_request, check_name, own, Conn, Ev, Fill, Interrupt, OpKind, Operation, ProgressFn,
};
use crate::client::options::{ClientOptions, FIRST_BACKOFF, MAX_BACKOFF};
use crate::client::relay::{ChunkLedger, ProbeOp, RelayOp, RelayOutcome};
use crate::client::report::{FileEntry, RoundTripReport, TransferReport};
use crate::client::upload::{Source, UploadOp};
use crate::link::Link;

/// Bytes read from the TLS stream per read call: a quarter of the window of 64 KiB chunks,
/// so that a downloading client acknowledges four chunks at a time (one connection per
/// client, so the memory does not add up as on the server).
const CLIENT_READ_BUF: usize = 256 * 1024;
/// Entries asked for per listing request.
pub const LIST_PAGE: u16 = 1000;

type Stream = TlsStream<TcpStream>;

/// A connected protocol session.
pub(crate) struct Live {
    /// On the heap: a connection is several KiB, and the futures that hold it nest.
    conn: Box<Conn>,
    link: Link<Stream>,
}

/// A Ferry client: holds the options and a live connection, reconnecting (with
/// exponential backoff) and resuming when the connection breaks.
///
/// Operations run one at a time (`&mut self`). Each returns a report once the server
/// and this client have both verified the whole-file digest.
pub struct Client {
    options: ClientOptions,
    pub(crate) live: Option<Live>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .field("connected", &self.live.is_some())
            .finish()
    }
}

/// What to do after an attempt failed.
enum Decision {
    /// Give up with this error.
    Fail(ClientError),
    /// Start over with nothing held (once).
    Restart,
    /// Reconnect and try again; if out of retries, fail with this error.
    Reconnect(ClientError),
}

fn is_refusal(code: ErrorCode) -> bool {
    [
        ErrorCode::NOT_FOUND,
        ErrorCode::INVALID_NAME,
        ErrorCode::QUOTA_EXCEEDED,
        ErrorCode::TOO_LARGE,
        ErrorCode::FORBIDDEN,
        ErrorCode::STORAGE,
    ]
    .contains(&code)
}

/// Maps a failure reported by the connection to a decision.
fn classify(kind: OpKind, name: &str, server: &str, failure: Failure, text: String) -> Decision {
    let interrupted = |reason: String| ClientError::Interrupted {
        server: server.to_string(),
        attempts: 0,
        reason,
    };
    match failure {
        Failure::Transfer(TransferError::SourceChanged)
        | Failure::Peer(ErrorCode::SOURCE_CHANGED) => Decision::Restart,
        Failure::Transfer(TransferError::DigestMismatch)
        | Failure::Peer(ErrorCode::DIGEST_MISMATCH) => Decision::Fail(ClientError::verification(
            name,
            "the whole-file digests of the two ends differ",
        )),
        Failure::Transfer(TransferError::StoredDataCorrupt) => Decision::Fail(
            ClientError::verification(name, "the stored data does not match its digest"),
        ),
        Failure::Peer(ErrorCode::STORAGE) if kind == OpKind::Download => {
            Decision::Fail(ClientError::verification(
                name,
                format!("the server's stored copy is corrupt or unreadable ({text})"),
            ))
        }
        Failure::Peer(code) if is_refusal(code) => Decision::Fail(ClientError::refused(code, text)),
        Failure::Peer(
            code @ (ErrorCode::BUSY
            | ErrorCode::TIMEOUT
            | ErrorCode::CANCELLED
            | ErrorCode::INTERNAL
            | ErrorCode::RETRIES_EXHAUSTED),
        ) => Decision::Reconnect(if code == ErrorCode::BUSY {
            ClientError::refused(code, text)
        } else {
            interrupted(format!("the server reported: {}", code.name()))
        }),
        Failure::Transfer(
            error @ (TransferError::RetriesExhausted { .. }
            | TransferError::FinishUnanswered
            | TransferError::TooManyBadChunks),
        ) => Decision::Reconnect(interrupted(error.to_string())),
        Failure::Unanswered => {
            Decision::Reconnect(interrupted("the server stopped answering".into()))
        }
        Failure::IdleTimeout => Decision::Reconnect(interrupted("the server went silent".into())),
        Failure::Peer(code @ (ErrorCode::PROTOCOL | ErrorCode::UNSUPPORTED_VERSION)) => {
            Decision::Fail(ClientError::Protocol(format!(
                "the server reported: {}{}",
                code.name(),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(" ({text})")
                }
            )))
        }
        Failure::UnsupportedVersion { theirs } => Decision::Fail(ClientError::Protocol(format!(
            "the server speaks protocol version {theirs}"
        ))),
        Failure::Peer(code) => Decision::Fail(ClientError::refused(code, text)),
        other => Decision::Fail(ClientError::Protocol(other.to_string())),
    }
}

/// The rustls error inside an I/O error from a TLS stream, if that is what it is.
fn tls_error(error: &io::Error) -> Option<rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
}

/// Runs one attempt of `op` over a connected session.
async fn attempt<O: Operation>(
    live: &mut Live,
    op: &mut O,
    scratch: &mut Vec<u8>,
) -> Result<O::Output, Interrupt> {
    op.begin(&mut live.conn)?;
    loop {
        // Input already read first: one acknowledgement then covers all of its chunks.
        if !live.link.can_defer_flush() {
            live.link
                .flush_inspect(&mut live.conn, |index| op.chunk_sent(index))
                .await
                .map_err(Interrupt::Link)?;
        }
        match op.fill(&mut live.conn).await? {
            Fill::Queued => {
                live.link
                    .flush(&mut live.conn)
                    .await
                    .map_err(Interrupt::Link)?;
                continue;
            }
            Fill::Done(output) => return Ok(output),
            Fill::Nothing => {}
        }
        let now = live.link.now();
        let event = match live.conn.poll_event(now) {
            Some(event) => own(event, scratch)?,
            None => {
                live.link
                    .receive(&mut live.conn)
                    .await
                    .map_err(Interrupt::Link)?;
                continue;
            }
        };
        if let Some(output) = op.on_event(event, &mut live.conn, scratch, now).await? {
            // Send what the last action queued; the result stands either way.
            let _ = live.link.flush(&mut live.conn).await;
            return Ok(output);
        }
    }
}

impl Client {
    /// Connects to `options.server` (TCP, mutual TLS, protocol hello). Fails at once if
    /// the server cannot be reached; a server refusing for capacity (`BUSY`, or the
    /// connection closed during the TLS handshake) is tried again a bounded number of times
    /// (see [`CAPACITY_ATTEMPTS`](crate::client::CAPACITY_ATTEMPTS)); later operations
    /// reconnect on their own.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let mut client = Client::new(options);
        client.live = Some(client.open_patiently().await?);
        Ok(client)
    }

    /// [`open`](Self::open), waiting out refusals for capacity with backoff and full
    /// jitter, never sooner than the server's retry-after; one warning per wait.
    pub(crate) async fn open_patiently(&self) -> Result<Live, ClientError> {
        let mut backoff = CapacityBackoff::new();
        loop {
            let error = match self.open().await {
                Ok(live) => return Ok(live),
                Err(error) => error,
            };
            let Some(retry_after) = capacity_refusal(&error) else {
                return Err(error);
            };
            let Some(wait) = backoff.next_wait(retry_after) else {
                return Err(given_up(error, &self.options.server, &backoff));
            };
            tracing::warn!(
                attempt = backoff.attempts(),
                "{}; trying again in {:.1} s",
                error.with_causes(),
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// A client that connects on its first operation (and then reconnects as
    /// [`connect`](Self::connect)'s does). Nothing is checked until then.
    pub fn new(options: ClientOptions) -> Client {
        Client {
            options,
            live: None,
            scratch: Vec::new(),
        }
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.live.is_some()
    }

    /// The options this client uses.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The chunk size and window negotiated on the current connection, if connected.
    pub fn negotiated(&self) -> Option<(u32, u16)> {
        self.live.as_ref().and_then(|live| live.conn.negotiated())
    }

    /// Closes the connection politely (TLS close_notify). The client reconnects if used again.
    pub async fn close(&mut self) {
        if let Some(mut live) = self.live.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), live.link.stream_mut().shutdown())
                .await;
        }
    }

    /// Opens a connection: TCP, TLS handshake, protocol hello, within `connect_timeout`.
    pub(crate) async fn open(&self) -> Result<Live, ClientError> {
        // Errors name the address with its port, also where `--server` left it out.
        let (address, server_name) = self.options.endpoint()?;
        let server = address.clone();
        let connect_error = |cause: io::Error| ClientError::Connect {
            server: server.clone(),
            cause,
        };
        let timed_out = || {
            connect_error(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer within {:.1} s",
                    self.options.connect_timeout.as_secs_f64()
                ),
            ))
        };
        let tls_or_io = |error: io::Error| match tls_error(&error) {
            Some(cause) => ClientError::Tls {
                server: server.clone(),
                cause,
            },
            None => connect_error(error),
        };
        let deadline = tokio::time::Instant::now() + self.options.connect_timeout;
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(&address))
            .await
            .map_err(|_| timed_out())?
            .map_err(connect_error)?;
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(self.options.tls.clone());
        let tls = tokio::time::timeout_at(deadline, connector.connect(server_name, tcp))
            .await
            .map_err(|_| timed_out())?
            .map_err(tls_or_io)?;
        let mut link = Link::with_read_buffer(tls, CLIENT_READ_BUF);
        let config = self.options.protocol_config();
        debug_assert_eq!(config.framing, Framing::LengthPrefixed);
        let len = buffer_len(config.max_chunk as usize);
        let mut conn = Conn::client(config, vec![0; len], vec![0; len], link.now())
            .map(Box::new)
            .map_err(|e| ClientError::Protocol(format!("cannot set up the connection: {e}")))?;
        let hello = async {
            loop {
                link.flush(&mut conn).await.map_err(tls_or_io)?;
                match conn.poll_event(link.now()) {
                    Some(Event::Connected { chunk_size, window }) => {
                        tracing::debug!(%server, chunk_size, window, "connected");
                        return Ok(());
                    }
                    Some(Event::Closed { failure, text }) => {
                        return Err(match failure {
                            Failure::Peer(code)
                                if code != ErrorCode::PROTOCOL
                                    && code != ErrorCode::UNSUPPORTED_VERSION =>
                            {
                                ClientError::refused(code, text)
                            }
                            Failure::Unanswered | Failure::IdleTimeout => timed_out(),
                            other => {
                                ClientError::Protocol(format!("the hello failed: {other} {text}"))
                            }
                        });
                    }
                    Some(_) => {}
                    None => link.receive(&mut conn).await.map_err(tls_or_io)?,
                }
            }
        };
        tokio::time::timeout_at(deadline, hello)
            .await
            .map_err(|_| timed_out())??;
        Ok(Live { conn, link })
    }

    /// Whether a failure to (re)connect is worth another try.
    fn reconnectable(error: &ClientError) -> bool {
        match error {
            ClientError::Connect { .. } | ClientError::Interrupted { .. } => true,
            ClientError::Refused { code, .. } => [
                ErrorCode::BUSY,
                ErrorCode::TIMEOUT,
                ErrorCode::INTERNAL,
                ErrorCode::CANCELLED,
            ]
            .contains(code),
            _ => false,
        }
    }

    /// Runs `op` to its end: attempts over (re)connected sessions, backing off between
    /// reconnections, starting over once if the source changed.
    pub(crate) async fn run<O: Operation>(&mut self, op: &mut O) -> Result<O::Output, ClientError> {
        let result = self.run_attempts(op).await;
        if let Err(error) = &result {
            op.failed(error);
        }
        result
    }

    async fn run_attempts<O: Operation>(&mut self, op: &mut O) -> Result<O::Output, ClientError> {
        // 100 ms doubling to 2 s, with up to 100 ms of jitter so that clients cut off together
        // do not come back together; a fresh schedule after every attempt that made progress.
        let schedule = || {
            ExponentialBuilder::default()
                .with_min_delay(FIRST_BACKOFF)
                .with_max_delay(MAX_BACKOFF)
                .with_factor(2.0)
                .with_jitter()
                .with_max_times(self.options.retries as usize)
                .build()
        };
        let mut backoff = schedule();
        let mut attempts = 0u32;
        let mut restarted = false;
        let mut stale_seen = false;
        loop {
            attempts += 1;
            let marker = op.progress_marker();
            // A connection kept from an earlier operation may have been closed by the
            // server while idle: its failure does not count as a retry (once).
            let reused = self.live.is_some();
            let outcome = match self.live.as_mut() {
                Some(live) => attempt(live, op, &mut self.scratch).await,
                None => match self.open().await {
                    Ok(live) => {
                        let live = self.live.insert(live);
                        attempt(live, op, &mut self.scratch).await
                    }
                    Err(error) if Self::reconnectable(&error) => Err(Interrupt::Final(error)),
                    Err(error) => return Err(error),
                },
            };
            let interrupt = match outcome {
                Ok(output) => return Ok(output),
                Err(interrupt) => interrupt,
            };
            let decision = match interrupt {
                Interrupt::Final(error) if Self::reconnectable(&error) => {
                    self.live = None;
                    Decision::Reconnect(error)
                }
                Interrupt::Final(error) => {
                    // The session may be mid-transfer: start the next operation on a new one.
                    self.live = None;
                    Decision::Fail(error)
                }
                Interrupt::Link(error) => {
                    self.live = None;
                    let reason = match tls_error(&error) {
                        Some(tls) => format!("TLS: {tls}"),
                        None => error.to_string(),
                    };
                    Decision::Reconnect(ClientError::Interrupted {
                        server: self.options.server.clone(),
                        attempts,
                        reason,
                    })
                }
                Interrupt::Closed(failure, text) => {
                    self.live = None;
                    classify(op.kind(), op.name(), &self.options.server, failure, text)
                }
                Interrupt::Failed(failure, text) => {
                    let decision =
                        classify(op.kind(), op.name(), &self.options.server, failure, text);
                    if matches!(decision, Decision::Reconnect(_)) {
                        self.live = None;
                    }
                    decision
                }
            };
            match decision {
                Decision::Fail(error) => return Err(error),
                Decision::Restart => {
                    if restarted {
                        return Err(ClientError::verification(
                            op.name(),
                            "the source changed again while it was being sent",
                        ));
                    }
                    restarted = true;
                    tracing::info!(name = op.name(), "the source changed: starting over");
                    op.restart()?;
                }
                Decision::Reconnect(error) => {
                    let error = match error {
                        ClientError::Interrupted { server, reason, .. } => {
                            ClientError::Interrupted {
                                server,
                                attempts,
                                reason,
                            }
                        }
                        other => other,
                    };
                    if !op.can_retry() {
                        return Err(match error {
                            ClientError::Interrupted { server, reason, .. } => {
                                ClientError::Interrupted {
                                    server,
                                    attempts,
                                    reason: format!(
                                        "{reason}; a streamed upload cannot resume once its data is consumed"
                                    ),
                                }
                            }
                            other => other,
                        });
                    }
                    let progressed = op.progress_marker() != marker;
                    if reused && !progressed && !stale_seen {
                        stale_seen = true;
                        tracing::debug!(
                            name = op.name(),
                            "{}; reconnecting at once",
                            error.with_causes()
                        );
                        continue;
                    }
                    if progressed {
                        backoff = schedule();
                    }
                    let Some(delay) = backoff.next() else {
                        return Err(error);
                    };
                    tracing::warn!(
                        name = op.name(),
                        attempt = attempts,
                        "{}; reconnecting in {} ms",
                        error.with_causes(),
                        delay.as_millis()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Uploads the file at `path` as `name`, resuming from what the server holds and
    /// reading exactly the chunks asked for. A file the server already holds with the same
    /// content completes without sending data.
    pub async fn upload_file(
        &mut self,
        path: &Path,
        name: &str,
        progress: ProgressFn<'_>,
    ) -> Result<TransferReport, ClientError> {
        let name = &check_name(name)?;
        let source = Source::<tokio::io::Empty>::open_file(path)?;
        let mut op = UploadOp::new(name, source, progress);
        self.run(&mut op).await
    }

    /// Uploads a file already open (for instance an unnamed temporary file) as `name`, as
    /// [`upload_file`](Self::upload_file) does; `label` names it in messages.
    pub async fn upload_open_file(
        &mut self,
        file: std::fs::File,
        label: &Path,
        name: &str,
        progress: ProgressFn<'_>,
    ) -> Result<TransferReport, ClientError> {
        let name = &check_name(name)?;
        let source = Source::<tokio::io::Empty>::opened_file(file, label)?;
        let mut op = UploadOp::new(name, source, progress);
        self.run(&mut op).await
    }

    /// Uploads `size` bytes read from `reader` as `name` (for data that is not in a file,
    /// such as a browser upload). Only the chunks in flight are kept in memory (window ×
    /// chunk size). Whatever the server held of `name` is dropped first; a connection that
    /// breaks after data was consumed cannot resume and fails with
    /// [`ClientError::Interrupted`].
    pub async fn upload_stream<R: AsyncRead + Unpin>(
        &mut self,
        name: &str,
        size: u64,
        reader: R,
        progress: ProgressFn<'_>,
    ) -> Result<TransferReport, ClientError> {
        let name = &check_name(name)?;
        let source = Source::stream(reader, size);
        let mut op = UploadOp::new(name, source, progress);
        self.run(&mut op).await
    }

    /// The bytes the server holds, from the start of the file, of an unfinished upload of
    /// `name` with `size` bytes (what a relayed upload can resume from), and the chunk size.
    /// Sends no data; the connection is closed afterwards (the server keeps what it held).
    /// An empty file holds nothing: `(0, 0)` without asking.
    pub async fn upload_held(&mut self, name: &str, size: u64) -> Result<(u64, u32), ClientError> {
        let name = &check_name(name)?;
        if size == 0 {
            return Ok((0, 0));
        }
        let mut op = ProbeOp {
            name: name.to_string(),
            size,
        };
        let result = self.run(&mut op).await;
        self.close().await;
        result
    }

    /// Carries one piece of a relayed upload of `name` (`size` bytes) to the server: `reader`
    /// holds the file's bytes from `offset` on, which must be where the server's held data
    /// ends (else [`RelayOutcome::OffsetMismatch`], nothing read). Chunks before `offset`
    /// are provided by the digests in `ledger`; each chunk read is recorded there. `offset`
    /// 0 drops whatever the server held. A reader that ends before the file does fails with
    /// [`ClientError::Io`] (an unexpected end of file); the server keeps what it received.
    pub async fn upload_relay<R: AsyncRead + Unpin>(
        &mut self,
        name: &str,
        size: u64,
        offset: u64,
        reader: R,
        ledger: &mut dyn ChunkLedger,
        progress: ProgressFn<'_>,
    ) -> Result<RelayOutcome, ClientError> {
        let name = &check_name(name)?;
        let mut op = RelayOp::new(name, size, offset, reader, ledger, progress);
        let result = self.run(&mut op).await;
        if matches!(result, Ok(RelayOutcome::OffsetMismatch { .. })) {
            // The transfer the server started is left to it: end this connection.
            self.close().await;
        }
        result
    }

    /// Downloads `name` to the file `dest` through a partial file beside it
    /// (`.NAME.ferry-part` and `.NAME.ferry-held`), resuming from an earlier partial
    /// download; `dest` is written (renamed into place) only once the file is verified.
    pub async fn download_file(
        &mut self,
        name: &str,
        dest: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<TransferReport, ClientError> {
        let name = &check_name(name)?;
        let mut op = DownloadOp::new(name, FileSink::new(dest)?, progress);
        self.run(&mut op).await
    }

    /// Lists every file of this client's identity, in name order (all pages).
    pub async fn list(&mut self) -> Result<Vec<FileEntry>, ClientError> {
        let mut op = ListOp {
            cursor: String::new(),
            entries: Vec::new(),
        };
        self.run(&mut op).await
    }

    /// Deletes `name` on the server.
    pub async fn delete(&mut self, name: &str) -> Result<(), ClientError> {
        let name = &check_name(name)?;
        let mut op = DeleteOp {
            name: name.to_string(),
        };
        self.run(&mut op).await
    }

    /// The seed's two-way transfer: uploads `path` as `name`, downloads it back and compares
    /// every verified chunk with the same range of the file as it arrives (nothing is
    /// written), and reports both digests and the plain SHA-256. The server keeps the file.
    /// A difference is reported with `identical: false`, not as an error.
    pub async fn roundtrip(
        &mut self,
        path: &Path,
        name: &str,
        progress: ProgressFn<'_>,
    ) -> Result<RoundTripReport, ClientError> {
        let upload = self.upload_file(path, name, progress).await?;
        let mut op = DownloadOp::new(name, CompareSink::open(path)?, progress);
        let download = self.run(&mut op).await?;
        op.into_sink().report(&upload, &download)
    }
}

/// Lists all pages.
struct ListOp {
    cursor: String,
    entries: Vec<FileEntry>,
}

impl Operation for ListOp {
    type Output = Vec<FileEntry>;

    fn kind(&self) -> OpKind {
        OpKind::List
    }

    fn name(&self) -> &str {
        ""
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        begin_request(conn.list(&self.cursor, LIST_PAGE), &self.cursor)
    }

    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        _scratch: &[u8],
        _now: u64,
    ) -> Result<Option<Self::Output>, Interrupt> {
        let Ev::ListPage { entries, more } = event else {
            return Ok(None);
        };
        if let Some(last) = entries.last() {
            if last.name <= self.cursor && !self.cursor.is_empty() {
                return Err(ClientError::Protocol("the listing went backwards".into()).into());
            }
            self.cursor = last.name.clone();
        } else if more {
            return Err(
                ClientError::Protocol("an empty list page with more to come".into()).into(),
            );
        }
        self.entries.extend(entries);
        if more {
            begin_request(conn.list(&self.cursor, LIST_PAGE), &self.cursor)?;
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.entries)))
    }

    fn progress_marker(&self) -> u64 {
        self.entries.len() as u64
    }
}

/// Deletes one file.
struct DeleteOp {
    name: String,
}

impl Operation for DeleteOp {
    type Output = ();

    fn kind(&self) -> OpKind {
        OpKind::Delete
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt> {
        begin_request(conn.delete(&self.name), &self.name)
    }

    async fn on_event(
        &mut self,
        event: Ev,
        _conn: &mut Conn,
        _scratch: &[u8],
        _now: u64,
    ) -> Result<Option<()>, Interrupt> {
        Ok(matches!(event, Ev::Deleted).then_some(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(kind: OpKind, failure: Failure) -> Decision {
        classify(kind, "f", "s", failure, "why".into())
    }

    /// The web page runs operations in spawned tasks: their futures must be `Send`.
    #[allow(dead_code, clippy::manual_async_fn)]
    fn operations_are_send(client: &mut Client, path: &Path) {
        fn send<T: Send>(_: T) {}
        send(client.upload_file(path, "n", &mut |_| {}));
        send(client.upload_stream("n", 1, tokio::io::empty(), &mut |_| {}));
        send(client.download_file("n", path, &mut |_| {}));
        send(client.list());
        send(client.delete("n"));
        send(client.roundtrip(path, "n", &mut |_| {}));
        send(Client::connect(
            ClientOptions::new("h", client.options.tls.clone()).unwrap(),
        ));
    }

    #[test]
    fn refusals_are_final_and_map_to_exit_code_4() {
        for code in [
            ErrorCode::NOT_FOUND,
            ErrorCode::INVALID_NAME,
            ErrorCode::QUOTA_EXCEEDED,
            ErrorCode::TOO_LARGE,
            ErrorCode::FORBIDDEN,
        ] {
            match decide(OpKind::Upload, Failure::Peer(code)) {
                Decision::Fail(error) => {
                    assert_eq!(error.exit_code(), 4);
                    assert_eq!(error.refusal_code(), Some(code));
                }
                _ => panic!("{code:?} is not final"),
            }
        }
    }

    #[test]
    fn broken_links_and_busy_servers_are_retried() {
        for failure in [
            Failure::Unanswered,
            Failure::IdleTimeout,
            Failure::Peer(ErrorCode::BUSY),
            Failure::Peer(ErrorCode::TIMEOUT),
            Failure::Transfer(TransferError::RetriesExhausted { index: 3 }),
            Failure::Transfer(TransferError::FinishUnanswered),
        ] {
            assert!(
                matches!(decide(OpKind::Upload, failure), Decision::Reconnect(_)),
                "{failure:?}"
            );
        }
        match decide(OpKind::Upload, Failure::Peer(ErrorCode::BUSY)) {
            Decision::Reconnect(error) => assert_eq!(error.exit_code(), 4),
            _ => unreachable!(),
        }
    }

    #[test]
    fn changed_sources_restart_and_bad_digests_fail_verification() {
        assert!(matches!(
            decide(
                OpKind::Upload,
                Failure::Transfer(TransferError::SourceChanged)
            ),
            Decision::Restart
        ));
        assert!(matches!(
            decide(OpKind::Download, Failure::Peer(ErrorCode::SOURCE_CHANGED)),
            Decision::Restart
        ));
        for (kind, failure) in [
            (
                OpKind::Upload,
                Failure::Transfer(TransferError::DigestMismatch),
            ),
            (OpKind::Download, Failure::Peer(ErrorCode::DIGEST_MISMATCH)),
            (OpKind::Download, Failure::Peer(ErrorCode::STORAGE)),
        ] {
            match decide(kind, failure) {
                Decision::Fail(error) => assert_eq!(error.exit_code(), 5, "{failure:?}"),
                _ => panic!("{failure:?}"),
            }
        }
        // On an upload, a storage failure is the server refusing (disk full).
        match decide(OpKind::Upload, Failure::Peer(ErrorCode::STORAGE)) {
            Decision::Fail(error) => assert_eq!(error.exit_code(), 4),
            _ => panic!(),
        }
        match decide(OpKind::List, Failure::Peer(ErrorCode::PROTOCOL)) {
            Decision::Fail(error) => assert_eq!(error.exit_code(), 1),
            _ => panic!(),
        }
    }

    #[test]
    fn names_are_checked_before_they_are_sent() {
        assert!(check_name("a").is_ok());
        assert!(check_name(&"x".repeat(255)).is_ok());
        // 100 × "e" + U+0301 is 300 bytes; its NFC form, 100 × "é", is 200.
        let nfd = "e\u{301}".repeat(100);
        assert_eq!(nfd.len(), 300);
        assert_eq!(check_name(&nfd).unwrap(), "\u{e9}".repeat(100));
        assert!(check_name(&"e\u{301}".repeat(513)).is_err());
        assert!(check_name(&"x".repeat(1024)).is_ok());
        assert_eq!(check_name("a/b/c.txt").unwrap(), "a/b/c.txt");
        assert_eq!(
            check_name("d\u{e9}j\u{e0}/e\u{301}").unwrap(),
            "d\u{e9}j\u{e0}/\u{e9}"
        );
        for bad in [
            String::new(),
            "x".repeat(1025),
            "/etc/passwd".into(),
            "a//b".into(),
            "a/".into(),
            "./a".into(),
            "a/../../x".into(),
            "..".into(),
        ] {
            let error = check_name(&bad).unwrap_err();
            assert_eq!(error.refusal_code(), Some(ErrorCode::INVALID_NAME));
            assert_eq!(error.exit_code(), 4);
        }
    }
}
