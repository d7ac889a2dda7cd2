//! The file routes: listing, downloads, deletes and multipart uploads, each moved through
//! the ferry-tokio client under the session's identity.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use ferry_tokio::client::Client;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio_util::io::{ReaderStream, StreamReader};
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::StatusCode;
use warp::multipart::{FormData, Part};
use warp::reply::Response;
use warp::Reply;

use ferry_tokio::client::Progress;

use crate::http::{attachment, json_error, json_ok, retry_after};
use crate::human_size;
use crate::limits::Refusals;
use crate::routes::{check_csrf, client_error, require_session, ApiError, State};
use crate::scratch::Reservation;
use crate::session::Session;

/// Buffer of a download's stream to the browser.
const DOWNLOAD_BUFFER: usize = 256 * 1024;
/// Most of a refused upload's body read (and discarded) before answering.
const DRAIN_LIMIT: u64 = 1024 * 1024;
/// Retry-After of a download refused for want of scratch space.
const SCRATCH_FULL_RETRY: Duration = Duration::from_secs(10);
/// Longest time spent reading a refused upload's body before answering.
const DRAIN_TIME: Duration = Duration::from_secs(2);

// ----- files -----

pub(crate) async fn list(state: Arc<State>, headers: HeaderMap) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => return e.response(),
    };
    let mut client = Client::new(session.client.clone());
    let result = client.list().await;
    client.close().await;
    match result {
        Ok(entries) => json_ok(&entries),
        Err(e) => {
            tracing::warn!("{}: list failed: {e}", session.name());
            client_error(&e, StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// `?name=` of the file routes.
#[derive(Debug, Deserialize)]
pub(crate) struct NameQuery {
    pub(crate) name: String,
}

pub(crate) async fn delete(
    state: Arc<State>,
    headers: HeaderMap,
    NameQuery { name }: NameQuery,
) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => return e.response(),
    };
    if let Err(e) = check_csrf(&state, &session, &headers) {
        return e.response();
    }
    let mut client = Client::new(session.client.clone());
    let result = client.delete(&name).await;
    client.close().await;
    match result {
        Ok(()) => {
            tracing::info!("{}: deleted {name:?}", session.name());
            json_ok(&serde_json::json!({ "deleted": name }))
        }
        Err(e) => client_error(&e, StatusCode::INTERNAL_SERVER_ERROR),
    }
}

pub(crate) async fn download(
    state: Arc<State>,
    headers: HeaderMap,
    NameQuery { name }: NameQuery,
) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => return e.response(),
    };
    let internal = |what: &str, e: io::Error| {
        tracing::error!("{}: download of {name:?}: {what}: {e}", session.name());
        json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot stage the download: {what}: {e}"),
        )
    };
    // A private directory: the verified file is renamed into it, opened, and the directory
    // removed before the first byte goes out, so nothing stays behind on disk.
    let dir = match tempfile::Builder::new()
        .prefix(".ferry-web-")
        .tempdir_in(&state.scratch)
    {
        Ok(dir) => dir,
        Err(e) => return internal("temporary directory", e),
    };
    if state.scratch_budget.is_full() {
        return scratch_full(&state);
    }
    let dest = dir.path().join("file");
    let mut client = Client::new(session.client.clone());
    // The file's size is reserved from the scratch budget as soon as the server names it;
    // if it does not fit, the download is dropped (its partial goes with the directory).
    let (over_tx, over_rx) = tokio::sync::oneshot::channel::<()>();
    let mut over_tx = Some(over_tx);
    let mut reservation: Option<Reservation> = None;
    let result = {
        let budget = &state.scratch_budget;
        let mut on_progress = |p: Progress| {
            if reservation.is_some() {
                return;
            }
            if let Some(over) = over_tx.take() {
                match budget.reserve(p.total_bytes) {
                    Some(r) => reservation = Some(r),
                    None => {
                        let _ = over.send(());
                    }
                }
            }
        };
        tokio::select! {
            result = client.download_file(&name, &dest, &mut on_progress) => Some(result),
            Ok(()) = over_rx => None,
        }
    };
    client.close().await;
    let report = match result {
        Some(Ok(report)) => report,
        Some(Err(e)) => return client_error(&e, StatusCode::INTERNAL_SERVER_ERROR),
        None => return scratch_full(&state),
    };
    // Staged without a progress report (an empty file, say): counted all the same.
    let reservation = reservation.unwrap_or_else(|| state.scratch_budget.charge(report.size));
    let file = match tokio::fs::File::open(&dest).await {
        Ok(file) => file,
        Err(e) => return internal("open", e),
    };
    drop(dir);
    tracing::info!(
        "{}: download of {name:?} ({} bytes) verified, sending",
        session.name(),
        report.size
    );
    let body = send_with_timeout(&state, file, reservation, name.clone(), session.name());
    let mut response = warp::reply::stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(report.size));
    if let Ok(value) = HeaderValue::from_str(&attachment(&name)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&report.digest) {
        h.insert("x-ferry-digest", value);
    }
    response
}

/// 503 with Retry-After: the scratch space is taken by other downloads.
fn scratch_full(state: &State) -> Response {
    Refusals::count(&state.limits.refusals.scratch_full);
    retry_after(
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the page is staging as many downloads as it may: try again shortly",
        ),
        SCRATCH_FULL_RETRY,
    )
}

/// The verified file's bytes for the response body. A task reads the file and hands each
/// block on; if the browser takes none for the send timeout, the task gives up, closing the
/// (already unlinked) file and giving back its scratch reservation, and the response ends
/// short.
fn send_with_timeout(
    state: &State,
    file: tokio::fs::File,
    reservation: Reservation,
    name: String,
    identity: &str,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(1);
    let timeout = state.options.send_timeout;
    let refusals = state.limits.refusals.clone();
    let identity = identity.to_string();
    tokio::spawn(async move {
        let _reservation = reservation;
        let mut blocks = ReaderStream::with_capacity(file, DOWNLOAD_BUFFER);
        while let Some(block) = blocks.next().await {
            match tokio::time::timeout(timeout, tx.send(block)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return, // the browser went away
                Err(_) => {
                    Refusals::count(&refusals.send_timeouts);
                    tracing::info!(
                        "{identity}: download of {name:?} cut: nothing read for {timeout:?}"
                    );
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let block = rx.recv().await?;
        Some((block, rx))
    })
}

// ----- uploads -----

/// Reads a small text field, at most `limit` bytes.
async fn small_field(part: Part, limit: usize) -> Result<String, ApiError> {
    let field = part.name().to_string();
    let mut data = Vec::new();
    let mut stream = part.stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed form: {e}")))?;
        if data.len() + chunk.remaining() > limit {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the form field {field:?} is longer than {limit} bytes"),
            ));
        }
        data.extend_from_slice(chunk.chunk());
    }
    String::from_utf8(data).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the form field {field:?} is not UTF-8"),
        )
    })
}

/// The last component of a file name a browser sent (some send a whole path).
fn base_name(file_name: &str) -> &str {
    file_name.rsplit(['/', '\\']).next().unwrap_or(file_name)
}

/// The part's bytes, refused as soon as they exceed `size`.
fn bounded(part: Part, size: u64) -> Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> {
    let mut seen = 0u64;
    Box::pin(part.stream().map(move |chunk| {
        let mut chunk = chunk.map_err(io::Error::other)?;
        let bytes = chunk.copy_to_bytes(chunk.remaining());
        seen += bytes.len() as u64;
        if seen > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the file is longer than its declared size of {size} bytes"),
            ));
        }
        Ok(bytes)
    }))
}

/// Reads and discards what is left of a refused form, up to [`DRAIN_LIMIT`] bytes or
/// [`DRAIN_TIME`], so that a client still sending a small body reads the answer instead of
/// a reset connection. Larger bodies are cut off (the connection closes).
async fn drain(mut form: FormData) {
    let mut left = DRAIN_LIMIT;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(part)) = form.next().await {
            let mut stream = part.stream();
            while let Some(Ok(chunk)) = stream.next().await {
                left = left.saturating_sub(chunk.remaining() as u64);
                if left == 0 {
                    return;
                }
            }
        }
    })
    .await;
}

pub(crate) async fn upload(state: Arc<State>, headers: HeaderMap, mut form: FormData) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => {
            drain(form).await;
            return e.response();
        }
    };
    if let Err(e) = check_csrf(&state, &session, &headers) {
        drain(form).await;
        return e.response();
    }
    let response = receive(&state, &session, &mut form).await;
    if response.status() != StatusCode::OK {
        drain(form).await;
    }
    response
}

/// Reads the form's fields and streams its file.
async fn receive(state: &State, session: &Session, form: &mut FormData) -> Response {
    let max = state.options.max_upload_bytes;
    let mut size: Option<u64> = None;
    let mut name: Option<String> = None;
    while let Some(part) = form.next().await {
        let part = match part {
            Ok(part) => part,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("malformed form: {e}")),
        };
        match part.name() {
            "size" => {
                let text = match small_field(part, 32).await {
                    Ok(text) => text,
                    Err(e) => return e.response(),
                };
                let Ok(value) = text.trim().parse::<u64>() else {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        format!("the size field is not a number of bytes: {text:?}"),
                    );
                };
                if value > max {
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "{value} bytes is over the upload limit of {max} bytes ({})",
                            human_size(max)
                        ),
                    );
                }
                size = Some(value);
            }
            "name" => match small_field(part, 1024).await {
                Ok(text) => name = Some(text),
                Err(e) => return e.response(),
            },
            "file" => {
                let Some(size) = size else {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "the form's size field must come before the file",
                    );
                };
                let Some(name) = name.or_else(|| part.filename().map(|f| base_name(f).to_string()))
                else {
                    return json_error(StatusCode::BAD_REQUEST, "the file has no name");
                };
                return upload_part(state, session, name, size, part).await;
            }
            other => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("unexpected form field {other:?} (expected size, then file)"),
                )
            }
        }
    }
    json_error(StatusCode::BAD_REQUEST, "the form has no file")
}

/// Streams one file part through the ferry-tokio client to the server.
async fn upload_part(
    state: &State,
    session: &Session,
    name: String,
    size: u64,
    part: Part,
) -> Response {
    let reader = StreamReader::new(bounded(part, size));
    let mut client = Client::new(session.client.clone());
    let result = client.upload_stream(&name, size, reader, &mut |_| {}).await;
    client.close().await;
    match result {
        Ok(report) => {
            state.sessions.mark_stored(session);
            tracing::info!(
                "{}: uploaded {name:?}, {} bytes, verified, digest {}",
                session.name(),
                report.size,
                report.digest
            );
            json_ok(&serde_json::json!({
                "name": report.name,
                "size": report.size,
                "digest": report.digest,
                "verified": true,
                "chunk_size": report.chunk_size,
                "chunks": report.chunks,
                "duration_ms": report.duration.as_secs_f64() * 1e3,
            }))
        }
        Err(e) => {
            tracing::warn!("{}: upload of {name:?} failed: {e}", session.name());
            client_error(&e, StatusCode::BAD_REQUEST)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_drop_directories() {
        assert_eq!(base_name("a.txt"), "a.txt");
        assert_eq!(base_name("C:\\Users\\me\\a.txt"), "a.txt");
        assert_eq!(base_name("/tmp/x/a.txt"), "a.txt");
    }
}
