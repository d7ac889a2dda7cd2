//! tus 1.0 resumable uploads (core protocol, creation and termination extensions), carried
//! into the Ferry server under the session's identity.
//!
//! | method | path | what |
//! |---|---|---|
//! | `OPTIONS` | `/api/tus/`, `/api/tus/ID` | `Tus-Version`, `Tus-Extension`, `Tus-Max-Size` |
//! | `POST` | `/api/tus/` | creates an upload (`Upload-Length`, `Upload-Metadata` `filename`, and `relativePath` for a file of a folder); `201` + `Location` |
//! | `HEAD` | `/api/tus/ID` | `Upload-Offset`: what the Ferry server holds, verified, from the start |
//! | `PATCH` | `/api/tus/ID` | bytes from `Upload-Offset` on (`application/offset+octet-stream`) |
//! | `DELETE` | `/api/tus/ID` | forgets the upload |
//!
//! Nothing is buffered or written to disk but a record per upload (owner, name, size) and its
//! chunk ledger, the SHA-256 of each chunk passed on (32 bytes per chunk): a PATCH streams
//! through [`Client::upload_relay`], which hands the server's held chunks over by those
//! digests, so the whole-file digest is checked end to end however many pieces, broken
//! connections and restarts (of the page or of the server) the upload took. The offset a
//! client is told is the server's held prefix (asked on every HEAD), never more than the
//! ledger covers.
//!
//! The checksum extension is not offered: it verifies each PATCH body before any of it is
//! kept, which a relay that streams the body on as it arrives cannot do; Ferry's per-chunk
//! and whole-file digests verify the data instead.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use ferry_tokio::client::{ChunkLedger, Client, ClientError, RelayOutcome};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::io::StreamReader;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::http::json_error;
use crate::routes::{check_csrf, client_error, require_session, ApiError, State};
use crate::session::{random_hex32, Session};
use crate::store::Store;

/// The protocol version spoken.
pub(crate) const TUS_VERSION: &str = "1.0.0";
/// The extensions offered.
const TUS_EXTENSIONS: &str = "creation,termination";
/// The path uploads are created at (their URLs are below it).
pub(crate) const TUS_PATH: &str = "/api/tus/";
/// Longest `Upload-Metadata` accepted.
const MAX_METADATA: usize = 4096;
/// Extensions of the files kept beside an upload's record.
const LEDGER: &str = "ledger";

/// One upload, as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    /// Fingerprint of the identity that created it: only it may touch it.
    owner: String,
    /// The file's name on the server.
    name: String,
    /// Declared length.
    size: u64,
    /// When it was created, milliseconds since the epoch.
    created: u64,
    /// The whole-file digest, once the server verified the file.
    #[serde(default)]
    digest: Option<String>,
}

/// The uploads, their ledgers, and which are being written to now.
pub(crate) struct Uploads {
    store: Store,
    busy: Mutex<HashSet<String>>,
    expiry: Duration,
    /// PATCH body bytes received (all uploads, since the start).
    pub bytes_received: AtomicU64,
    /// Uploads verified by the server.
    pub completed: AtomicU64,
}

/// An upload being written to; released when dropped.
struct Busy<'a> {
    uploads: &'a Uploads,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.uploads
            .busy
            .lock()
            .expect("uploads lock")
            .remove(&self.id);
    }
}

/// The chunk digests of one upload: 32 bytes per chunk, at `index × 32` (all zero: unknown).
struct FileLedger {
    file: File,
}

impl FileLedger {
    fn open(uploads: &Uploads, id: &str) -> io::Result<FileLedger> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(uploads.store.path(id, LEDGER))?;
        Ok(FileLedger { file })
    }

    /// How many chunks from the first have a digest, up to `limit`.
    fn covered(&self, limit: u64) -> u64 {
        (0..limit)
            .find(|&i| self.digest(i).is_none())
            .unwrap_or(limit)
    }
}

impl ChunkLedger for FileLedger {
    fn digest(&self, index: u64) -> Option<[u8; 32]> {
        let mut buf = [0u8; 32];
        self.file
            .read_exact_at(&mut buf, index.checked_mul(32)?)
            .ok()?;
        (buf != [0u8; 32]).then_some(buf)
    }

    fn record(&mut self, index: u64, digest: [u8; 32]) -> io::Result<()> {
        let at = index
            .checked_mul(32)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk index too large"))?;
        self.file.write_all_at(&digest, at)
    }
}

impl Uploads {
    pub(crate) fn open(state_dir: &std::path::Path, expiry: Duration) -> io::Result<Uploads> {
        Ok(Uploads {
            store: Store::open(state_dir, "uploads")?,
            busy: Mutex::new(HashSet::new()),
            expiry,
            bytes_received: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        })
    }

    fn lock(&self, id: &str) -> Option<Busy<'_>> {
        let mut busy = self.busy.lock().expect("uploads lock");
        busy.insert(id.to_string()).then(|| Busy {
            uploads: self,
            id: id.to_string(),
        })
    }

    fn forget(&self, id: &str) {
        if let Err(e) = self.store.remove(id, &[LEDGER]) {
            tracing::warn!("cannot remove upload {id}: {e}");
        }
    }

    /// Forgets uploads older than the expiry (the server drops their partial data after
    /// its own partial-upload expiry); returns how many.
    pub(crate) fn expire(&self) -> usize {
        let now = crate::store::unix_now().saturating_mul(1000);
        let expiry = u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX);
        let records = self.store.all::<UploadRecord>().unwrap_or_default();
        let mut gone = 0;
        for (id, record) in records {
            if now.saturating_sub(record.created) > expiry {
                self.forget(&id);
                gone += 1;
            }
        }
        gone
    }
}

/// The headers every tus answer carries.
fn tus_response(status: StatusCode) -> Response {
    let mut response = Response::new("".into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

fn tus_error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = json_error(status, message);
    let h = response.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    response
}

fn refused(error: ApiError) -> Response {
    tus_error(error.status, error.message)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name} is not a number of bytes"),
                )
            }),
    }
}

/// The checks of every tus request but OPTIONS: session, CSRF token, protocol version.
fn check(state: &State, headers: &HeaderMap) -> Result<Arc<Session>, ApiError> {
    let session = require_session(state, headers)?;
    check_csrf(state, &session, headers)?;
    match headers.get("tus-resumable") {
        Some(v) if v.as_bytes() == TUS_VERSION.as_bytes() => Ok(session),
        _ => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("Tus-Resumable: {TUS_VERSION} is required"),
        )),
    }
}

/// The upload `id`, if it exists and belongs to `session` (another identity's upload is as
/// absent as one that never existed).
fn owned(state: &State, session: &Session, id: &str) -> Result<UploadRecord, ApiError> {
    let absent = || ApiError::new(StatusCode::NOT_FOUND, "no such upload");
    match state.uploads.store.load::<UploadRecord>(id) {
        Ok(Some(record)) if record.owner == session.fingerprint() => Ok(record),
        Ok(_) => Err(absent()),
        Err(e) => {
            tracing::warn!("upload {id}: {e}");
            Err(absent())
        }
    }
}

/// `OPTIONS`: what this endpoint supports.
pub(crate) async fn options(state: Arc<State>) -> Response {
    let mut response = tus_response(StatusCode::NO_CONTENT);
    let h = response.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    h.insert("tus-max-size", HeaderValue::from(state.known_max_upload()));
    response
}

/// The file name from `Upload-Metadata` (base64 values): `relativePath`, the file's path in
/// a folder the page uploads (`photos/2024/a.jpg`, kept whole: the Ferry server checks each
/// component), else `filename` or `name`, of which only the last component counts (some
/// browsers send a whole local path).
fn metadata_name(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    use base64::Engine;
    let Some(value) = headers.get("upload-metadata") else {
        return Ok(None);
    };
    let bad = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, format!("Upload-Metadata: {why}"));
    if value.len() > MAX_METADATA {
        return Err(bad("too long"));
    }
    let text = value.to_str().map_err(|_| bad("not ASCII"))?;
    let mut base = None;
    for pair in text.split(',') {
        let mut parts = pair.trim().splitn(2, ' ');
        let key = parts.next().unwrap_or("");
        if !matches!(key, "filename" | "name" | "relativePath") {
            continue;
        }
        let encoded = parts.next().unwrap_or("").trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| bad("the file name is not base64"))?;
        let name = String::from_utf8(bytes).map_err(|_| bad("the file name is not UTF-8"))?;
        if key == "relativePath" {
            return Ok(Some(name));
        }
        if base.is_none() {
            base = Some(name.rsplit(['/', '\\']).next().unwrap_or(&name).to_string());
        }
    }
    Ok(base)
}

/// `POST /api/tus/`: creates an upload.
pub(crate) async fn create(state: Arc<State>, headers: HeaderMap) -> Response {
    let session = match check(&state, &headers) {
        Ok(session) => session,
        Err(e) => return refused(e),
    };
    let size = match header_u64(&headers, "upload-length") {
        Ok(Some(size)) => size,
        Ok(None) => {
            return tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Length is required (deferred lengths are not supported)",
            )
        }
        Err(e) => return refused(e),
    };
    let max = state.max_upload(&session).await;
    if size > max {
        return tus_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{size} bytes is over the upload limit of {max} bytes ({})",
                crate::human_size(max)
            ),
        );
    }
    let name = match metadata_name(&headers) {
        Ok(Some(name)) if !name.is_empty() => name,
        Ok(_) => {
            return tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Metadata must carry the file name (filename)",
            )
        }
        Err(e) => return refused(e),
    };
    let id = random_hex32();
    let mut record = UploadRecord {
        owner: session.fingerprint().to_string(),
        name: name.clone(),
        size,
        created: crate::store::unix_now().saturating_mul(1000),
        digest: None,
    };
    if size == 0 {
        // tus clients send no PATCH for an empty file: store it now.
        let mut ledger = match FileLedger::open(&state.uploads, &id) {
            Ok(ledger) => ledger,
            Err(e) => return tus_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let mut client = Client::new(session.client.clone());
        let result = client
            .upload_relay(&name, 0, 0, tokio::io::empty(), &mut ledger, &mut |_| {})
            .await;
        client.close().await;
        match result {
            Ok(RelayOutcome::Verified(report)) => {
                record.digest = Some(report.digest);
                state.sessions.mark_stored(&session);
                state.uploads.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(RelayOutcome::OffsetMismatch { .. }) => {
                return tus_error(StatusCode::CONFLICT, "the server holds another upload")
            }
            Err(e) => return with_tus(client_error(&e, StatusCode::BAD_REQUEST)),
        }
    }
    if let Err(e) = state.uploads.store.save(&id, &record) {
        return tus_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot keep the upload: {e}"),
        );
    }
    tracing::info!(
        "{}: tus upload {id} created for {name:?}, {size} bytes",
        session.name()
    );
    let mut response = tus_response(StatusCode::CREATED);
    if let Ok(location) = HeaderValue::from_str(&format!("{TUS_PATH}{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn with_tus(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

/// The offset a client may resume from: the server's held prefix, within what the ledger
/// covers.
async fn offset_of(
    state: &State,
    session: &Session,
    id: &str,
    record: &UploadRecord,
) -> Result<u64, ClientError> {
    if record.digest.is_some() {
        return Ok(record.size);
    }
    let mut client = Client::new(session.client.clone());
    let (held, chunk_size) = client.upload_held(&record.name, record.size).await?;
    if held == 0 || chunk_size == 0 {
        return Ok(0);
    }
    let chunk = u64::from(chunk_size);
    let covered = match FileLedger::open(&state.uploads, id) {
        Ok(ledger) => ledger.covered(held.div_ceil(chunk)),
        Err(_) => 0,
    };
    Ok(held.min(covered * chunk))
}

/// `HEAD /api/tus/ID`: the offset to resume from.
pub(crate) async fn head(id: String, state: Arc<State>, headers: HeaderMap) -> Response {
    let session = match check(&state, &headers) {
        Ok(session) => session,
        Err(e) => return refused(e),
    };
    let record = match owned(&state, &session, &id) {
        Ok(record) => record,
        Err(e) => return refused(e),
    };
    let Some(_busy) = state.uploads.lock(&id) else {
        return tus_response(StatusCode::LOCKED);
    };
    match offset_of(&state, &session, &id, &record).await {
        Ok(offset) => {
            let mut response = tus_response(StatusCode::OK);
            let h = response.headers_mut();
            h.insert("upload-offset", HeaderValue::from(offset));
            h.insert("upload-length", HeaderValue::from(record.size));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => with_tus(client_error(&e, StatusCode::INTERNAL_SERVER_ERROR)),
    }
}

/// The PATCH body, counted, refused as soon as it goes past `limit` bytes.
fn counted_body(
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Send + 'static,
    limit: u64,
    state: Arc<State>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let mut seen = 0u64;
    body.map(move |chunk| {
        let mut chunk = chunk.map_err(io::Error::other)?;
        let bytes = chunk.copy_to_bytes(chunk.remaining());
        seen += bytes.len() as u64;
        state
            .uploads
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if seen > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "the body goes past the upload's declared length",
            ));
        }
        Ok(bytes)
    })
}

/// Whether the relay stopped because the body ended before the file did.
fn body_ended(error: &ClientError) -> bool {
    matches!(error, ClientError::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof)
}

/// Whether the relay stopped because the body went past the declared length.
fn body_too_long(error: &ClientError) -> bool {
    matches!(error, ClientError::Io { source, .. }
        if source.kind() == io::ErrorKind::FileTooLarge || source.kind() == io::ErrorKind::InvalidData)
}

/// `PATCH /api/tus/ID`: the upload's bytes from `Upload-Offset` on.
pub(crate) async fn patch(
    id: String,
    state: Arc<State>,
    headers: HeaderMap,
    body: impl Stream<Item = Result<impl Buf + Send + 'static, warp::Error>> + Send + 'static,
) -> Response {
    let session = match check(&state, &headers) {
        Ok(session) => session,
        Err(e) => return refused(e),
    };
    let record = match owned(&state, &session, &id) {
        Ok(record) => record,
        Err(e) => return refused(e),
    };
    let is_tus_body = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/offset+octet-stream");
    if !is_tus_body {
        return tus_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/offset+octet-stream",
        );
    }
    let offset = match header_u64(&headers, "upload-offset") {
        Ok(Some(offset)) => offset,
        Ok(None) => return tus_error(StatusCode::BAD_REQUEST, "Upload-Offset is required"),
        Err(e) => return refused(e),
    };
    if offset > record.size {
        return tus_error(
            StatusCode::CONFLICT,
            "Upload-Offset is past the upload's end",
        );
    }
    let left = record.size - offset;
    match header_u64(&headers, "content-length") {
        Ok(Some(len)) if len > left => {
            return tus_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body ({len} bytes) goes past the upload's length ({left} bytes left)"),
            )
        }
        Err(e) => return refused(e),
        _ => {}
    }
    let Some(_busy) = state.uploads.lock(&id) else {
        return tus_response(StatusCode::LOCKED);
    };
    if let Some(digest) = &record.digest {
        if offset != record.size {
            return tus_error(StatusCode::CONFLICT, "the upload is complete");
        }
        let mut response = tus_response(StatusCode::NO_CONTENT);
        response
            .headers_mut()
            .insert("upload-offset", HeaderValue::from(record.size));
        if let Ok(value) = HeaderValue::from_str(digest) {
            response.headers_mut().insert("x-ferry-digest", value);
        }
        return response;
    }
    if offset == 0 {
        // A piece from the start drops what the server holds: only when the upload stands
        // at 0 (what the server holds is not this upload's, or nothing).
        match offset_of(&state, &session, &id, &record).await {
            Ok(0) => {}
            Ok(now) => {
                return tus_error(
                    StatusCode::CONFLICT,
                    format!("Upload-Offset 0 is not where the upload stands ({now})"),
                )
            }
            Err(e) => return with_tus(client_error(&e, StatusCode::INTERNAL_SERVER_ERROR)),
        }
    }
    let mut ledger = match FileLedger::open(&state.uploads, &id) {
        Ok(ledger) => ledger,
        Err(e) => return tus_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let reader = StreamReader::new(Box::pin(counted_body(body, left, state.clone())));
    let mut client = Client::new(session.client.clone());
    let result = client
        .upload_relay(
            &record.name,
            record.size,
            offset,
            reader,
            &mut ledger,
            &mut |_| {},
        )
        .await;
    client.close().await;
    match result {
        Ok(RelayOutcome::Verified(report)) => {
            let done = UploadRecord {
                digest: Some(report.digest.clone()),
                ..record
            };
            if let Err(e) = state.uploads.store.save(&id, &done) {
                tracing::warn!("upload {id}: cannot record its end: {e}");
            }
            let _ = std::fs::remove_file(state.uploads.store.path(&id, LEDGER));
            state.sessions.mark_stored(&session);
            state.uploads.completed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "{}: tus upload of {:?} verified, {} bytes, digest {}, {} of {} chunks sent over {} attempt(s)",
                session.name(),
                done.name,
                report.size,
                report.digest,
                report.chunks_sent,
                report.chunks,
                report.attempts
            );
            let mut response = tus_response(StatusCode::NO_CONTENT);
            response
                .headers_mut()
                .insert("upload-offset", HeaderValue::from(done.size));
            if let Ok(value) = HeaderValue::from_str(&report.digest) {
                response.headers_mut().insert("x-ferry-digest", value);
            }
            response
        }
        Ok(RelayOutcome::OffsetMismatch { held_bytes }) => tus_error(
            StatusCode::CONFLICT,
            format!("Upload-Offset {offset} is not where the upload stands (ask with HEAD; the server holds {held_bytes} bytes)"),
        ),
        Err(e) if body_too_long(&e) => {
            tus_error(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}"))
        }
        Err(e) if body_ended(&e) => {
            // A piece of the upload (or a cut connection): say how far the server got.
            drop(_busy);
            match offset_of(&state, &session, &id, &record).await {
                Ok(now) => {
                    let mut response = tus_response(StatusCode::NO_CONTENT);
                    response
                        .headers_mut()
                        .insert("upload-offset", HeaderValue::from(now));
                    response
                }
                Err(e) => with_tus(client_error(&e, StatusCode::INTERNAL_SERVER_ERROR)),
            }
        }
        Err(e @ ClientError::Verification { .. }) => {
            // The server's partial copy does not match the ledger: start again from zero.
            tracing::warn!("{}: tus upload {id}: {e}", session.name());
            let _ = std::fs::remove_file(state.uploads.store.path(&id, LEDGER));
            tus_error(StatusCode::CONFLICT, format!("{e}; start again from offset 0"))
        }
        Err(e) => {
            tracing::warn!("{}: tus upload {id} failed: {e}", session.name());
            with_tus(client_error(&e, StatusCode::BAD_REQUEST))
        }
    }
}

/// `DELETE /api/tus/ID`: termination. The server drops the partial data with its
/// partial-upload expiry.
pub(crate) async fn delete(id: String, state: Arc<State>, headers: HeaderMap) -> Response {
    let session = match check(&state, &headers) {
        Ok(session) => session,
        Err(e) => return refused(e),
    };
    if let Err(e) = owned(&state, &session, &id) {
        return refused(e);
    }
    let Some(_busy) = state.uploads.lock(&id) else {
        return tus_response(StatusCode::LOCKED);
    };
    state.uploads.forget(&id);
    tus_response(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn metadata(pairs: &[(&str, &str)]) -> HeaderMap {
        let text: Vec<String> = pairs
            .iter()
            .map(|(key, value)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                format!("{key} {encoded}")
            })
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert("upload-metadata", text.join(",").parse().unwrap());
        headers
    }

    #[test]
    fn a_relative_path_names_a_file_of_a_folder() {
        let name = |pairs: &[(&str, &str)]| metadata_name(&metadata(pairs)).unwrap();
        assert_eq!(name(&[("filename", "a.txt")]).as_deref(), Some("a.txt"));
        assert_eq!(
            name(&[("filename", "C:\\x\\a.txt")]).as_deref(),
            Some("a.txt")
        );
        assert_eq!(
            name(&[("filename", "/tmp/x/a.txt")]).as_deref(),
            Some("a.txt")
        );
        assert_eq!(
            name(&[("filename", "a.txt"), ("relativePath", "dir/sub/a.txt")]).as_deref(),
            Some("dir/sub/a.txt")
        );
        assert_eq!(
            name(&[("relativePath", "dir/a.txt"), ("filename", "a.txt")]).as_deref(),
            Some("dir/a.txt")
        );
        // Passed on as sent: the Ferry server refuses what is not a name.
        assert_eq!(
            name(&[("relativePath", "../escape")]).as_deref(),
            Some("../escape")
        );
        assert_eq!(name(&[("filetype", "text/plain")]), None);
    }
}
