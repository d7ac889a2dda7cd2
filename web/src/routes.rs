//! The page's routes: access gate, sessions, CSRF checks and the handlers that move files
//! through the ferry-tokio client.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | the page (creates the session and its certificate on a first visit) |
//! | `GET /app.js`, `/style.css`, `/favicon.svg` | the page's files |
//! | `GET /api/session` | `{identity, fingerprint, server, max_upload}` |
//! | `GET /api/files` | the session's files: `[{name, size, modified, digest, chunk_size}]` |
//! | `POST /api/upload` | multipart `size` then `file` (optional `name` before `file`); CSRF |
//! | `GET /api/file?name=N` | downloads a file (verified before the first byte is sent) |
//! | `DELETE /api/file?name=N` | deletes a file; CSRF |
//! | `GET /identity/{bundle,cert,key,ca}.pem` | the session's credentials |

use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use ferry_tokio::client::{Client, ClientError, ErrorCode};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio_util::io::{ReaderStream, StreamReader};
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::StatusCode;
use warp::multipart::{FormData, Part};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::assets;
use crate::http::{attachment, cookie, json_error, json_ok, secure_headers, set_cookie};
use crate::session::{sha256, Session, SessionError, Sessions};
use crate::{human_size, WebOptions, SESSION_COOKIE};

/// Name of the cookie that proves the access token was given.
pub(crate) const ACCESS_COOKIE: &str = "ferry_access";
/// The header that carries the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Room for the multipart framing around the file (boundaries, part headers, small fields).
const FORM_OVERHEAD: u64 = 64 * 1024;
/// Buffer of a download's stream to the browser.
const DOWNLOAD_BUFFER: usize = 256 * 1024;
/// Most of a refused upload's body read (and discarded) before answering.
const DRAIN_LIMIT: u64 = 1024 * 1024;
/// Longest time spent reading a refused upload's body before answering.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How often idle sessions are swept.
const SWEEP: Duration = Duration::from_secs(60);

/// Everything the handlers share.
pub(crate) struct State {
    options: WebOptions,
    sessions: Sessions,
    https: bool,
    /// SHA-256 of the access token, if one is required.
    token_hash: Option<[u8; 32]>,
    scratch: PathBuf,
}

impl State {
    pub(crate) fn new(options: WebOptions, ca: ferry_certs::Ca, https: bool) -> State {
        let sessions = Sessions::new(
            ca,
            options.certs_dir.clone(),
            options.server.clone(),
            options.cert_days,
            options.max_sessions,
            options.session_idle,
        );
        let token_hash = options
            .access_token
            .as_deref()
            .map(|t| access_hash(t.as_bytes()));
        let scratch = options
            .scratch_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        State {
            options,
            sessions,
            https,
            token_hash,
            scratch,
        }
    }

    pub(crate) fn server(&self) -> &str {
        &self.options.server
    }

    fn cookie(&self, name: &str, value: &str) -> String {
        set_cookie(name, value, self.options.session_idle.as_secs(), self.https)
    }
}

/// The value stored in the access cookie: a hash of the token, never the token itself.
fn access_hash(token: &[u8]) -> [u8; 32] {
    let mut input = b"ferry-web access token\0".to_vec();
    input.extend_from_slice(token);
    sha256(&input)
}

/// Sweeps idle sessions until aborted.
pub(crate) async fn expire_sessions(state: Arc<State>) {
    loop {
        tokio::time::sleep(SWEEP).await;
        let gone = state.sessions.expire();
        if gone > 0 {
            tracing::info!("forgot {gone} idle session(s)");
        }
    }
}

/// A request stopped before the routes: answered by [`recover`].
#[derive(Debug)]
enum Intercept {
    /// 401 with the token form (a page) or a JSON error (the API).
    NeedToken { wrong: bool, api: bool },
    /// A valid `?token=`: set the access cookie and go to `/`.
    Admit { set_cookie: String },
    /// A cross-site navigation to the page: its SameSite=Strict cookies were withheld, so
    /// answer with a page that reloads itself from this origin (which sends them).
    Bounce,
    /// A JSON (or plain) error.
    Error(StatusCode, String),
}

impl warp::reject::Reject for Intercept {}

/// The host part of a `Host` header value (`[v6]:port`, `name:port`, `name`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Without an access token the page answers only to `localhost` and IP addresses, so a DNS
/// rebinding page cannot talk to it under its own name.
fn host_allowed(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true; // HTTP/1.0 without Host: it can only be a direct client
    };
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Whether the browser says the request comes from another site (`Sec-Fetch-Site`).
fn is_cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
}

/// The answer to a cross-site navigation that arrived without the page's cookies: a page that
/// reloads itself, now as a same-origin navigation that carries them (a link from another
/// site must not cost the user their session).
fn bounce() -> Response {
    let mut response = warp::reply::html(assets::BOUNCE_HTML).into_response();
    response
        .headers_mut()
        .insert("refresh", HeaderValue::from_static("0; url=/"));
    response
}

/// Path prefixes that answer with JSON.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/identity/")
}

fn check_gate(
    state: &State,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<(), Intercept> {
    let Some(expected) = state.token_hash else {
        if host_allowed(headers) {
            return Ok(());
        }
        return Err(Intercept::Error(
            StatusCode::MISDIRECTED_REQUEST,
            "without an access token this page answers only to localhost and IP addresses".into(),
        ));
    };
    // The page's own style and icon carry nothing secret and dress the token form.
    if path == "/style.css" || path == "/favicon.svg" {
        return Ok(());
    }
    if path == "/" {
        if let Some((_, given)) = query.iter().find(|(k, _)| k == "token") {
            let hash = access_hash(given.as_bytes());
            if bool::from(hash[..].ct_eq(&expected[..])) {
                return Err(Intercept::Admit {
                    set_cookie: state.cookie(ACCESS_COOKIE, &hex::encode(hash)),
                });
            }
            return Err(Intercept::NeedToken {
                wrong: true,
                api: false,
            });
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| access_hash(t.trim().as_bytes()));
    let from_cookie = cookie(headers, ACCESS_COOKIE);
    let admitted = bearer.is_some_and(|h| bool::from(h[..].ct_eq(&expected[..])))
        || from_cookie
            .is_some_and(|c| bool::from(c.as_bytes().ct_eq(hex::encode(expected).as_bytes())));
    if admitted {
        Ok(())
    } else if path == "/" && is_cross_site(headers) {
        Err(Intercept::Bounce)
    } else {
        Err(Intercept::NeedToken {
            wrong: bearer.is_some(),
            api: is_api(path),
        })
    }
}

fn with_state(
    state: Arc<State>,
) -> impl Filter<Extract = (Arc<State>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Access token and host checks, before any route.
fn gate(state: Arc<State>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let query = warp::query::<Vec<(String, String)>>()
        .or(warp::any().map(Vec::new))
        .unify();
    with_state(state)
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and_then(
            |state: Arc<State>,
             path: warp::path::FullPath,
             query: Vec<(String, String)>,
             headers: HeaderMap| async move {
                check_gate(&state, path.as_str(), &query, &headers).map_err(warp::reject::custom)
            },
        )
        .untuple_one()
}

/// Every route, behind the gate, with errors turned into responses and the security headers
/// added.
pub(crate) fn routes(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let st = with_state(state.clone());
    let headers = warp::header::headers_cloned();
    let form_limit = state.options.max_upload_bytes.saturating_add(FORM_OVERHEAD);

    // Each route matches its path before its method, so that an unknown path is a 404
    // rather than a 405 from another route's method filter.
    let index = warp::path::end()
        .and(warp::get())
        .and(st.clone())
        .and(headers)
        .then(index);
    let statics = warp::path::param::<String>()
        .and(warp::path::end())
        .and(warp::get())
        .and_then(|file: String| async move {
            let (body, kind) = match file.as_str() {
                "app.js" => (assets::APP_JS, "text/javascript; charset=utf-8"),
                "style.css" => (assets::STYLE_CSS, "text/css; charset=utf-8"),
                "favicon.svg" => (assets::FAVICON_SVG, "image/svg+xml"),
                _ => return Err(warp::reject::not_found()),
            };
            let mut response = Response::new(body.into());
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok::<_, Rejection>(response)
        });
    let session_info = warp::path!("api" / "session")
        .and(warp::get())
        .and(st.clone())
        .and(headers)
        .then(session_info);
    let files = warp::path!("api" / "files")
        .and(warp::get())
        .and(st.clone())
        .and(headers)
        .then(list);
    let upload = warp::path!("api" / "upload")
        .and(warp::post())
        .and(st.clone())
        .and(headers)
        .and(warp::multipart::form().max_length(form_limit))
        .then(upload);
    let download = warp::path!("api" / "file")
        .and(warp::get())
        .and(st.clone())
        .and(headers)
        .and(warp::query::<NameQuery>())
        .then(download);
    let delete = warp::path!("api" / "file")
        .and(warp::delete())
        .and(st.clone())
        .and(headers)
        .and(warp::query::<NameQuery>())
        .then(delete);
    let identity = warp::path!("identity" / String)
        .and(warp::get())
        .and(st)
        .and(headers)
        .then(identity_file);

    gate(state)
        .and(
            index
                .or(statics)
                .unify()
                .or(session_info)
                .unify()
                .or(files)
                .unify()
                .or(upload)
                .unify()
                .or(download)
                .unify()
                .or(delete)
                .unify()
                .or(identity)
                .unify(),
        )
        .recover(recover)
        .unify()
        .map(secure_headers)
}

/// Turns a rejection into a response.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(intercept) = rejection.find::<Intercept>() {
        return Ok(match intercept {
            Intercept::NeedToken { wrong, api: true } => json_error(
                StatusCode::UNAUTHORIZED,
                if *wrong {
                    "the access token is not valid"
                } else {
                    "an access token is required: open /?token=TOKEN once, or send Authorization: Bearer TOKEN"
                },
            ),
            Intercept::NeedToken { wrong, api: false } => {
                let mut response = warp::reply::html(assets::token_page(*wrong)).into_response();
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response
            }
            Intercept::Admit { set_cookie } => {
                let mut response = Response::new("".into());
                *response.status_mut() = StatusCode::SEE_OTHER;
                let h = response.headers_mut();
                h.insert(header::LOCATION, HeaderValue::from_static("/"));
                if let Ok(value) = HeaderValue::from_str(set_cookie) {
                    h.insert(header::SET_COOKIE, value);
                }
                response
            }
            Intercept::Bounce => bounce(),
            Intercept::Error(status, message) => json_error(*status, message.clone()),
        });
    }
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_string())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_string(),
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request is larger than the upload limit".to_string(),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "uploads need a Content-Length".to_string(),
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type".to_string(),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(json_error(status, message))
}

/// The session named by the request's cookie.
fn session_of(state: &State, headers: &HeaderMap) -> Option<Arc<Session>> {
    cookie(headers, SESSION_COOKIE).and_then(|secret| state.sessions.get(&secret))
}

/// An error answered as JSON `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn response(self) -> Response {
        json_error(self.status, self.message)
    }
}

/// The request's session, or a 401 telling the browser to reload the page.
fn require_session(state: &State, headers: &HeaderMap) -> Result<Arc<Session>, ApiError> {
    session_of(state, headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no session (it expired or the page restarted): reload the page",
        )
    })
}

/// The CSRF checks of a state-changing request: the session's token in `X-CSRF-Token`, and
/// no sign of another site (`Sec-Fetch-Site`, `Origin`).
fn check_csrf(state: &State, session: &Session, headers: &HeaderMap) -> Result<(), ApiError> {
    let forbidden = |why: &str| Err(ApiError::new(StatusCode::FORBIDDEN, why));
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return forbidden("refused: the request came from another site");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let scheme = if state.https { "https" } else { "http" };
        if origin.as_bytes() != format!("{scheme}://{host}").as_bytes() {
            return forbidden("refused: the request came from another origin");
        }
    }
    match headers.get(CSRF_HEADER) {
        Some(token) if bool::from(token.as_bytes().ct_eq(session.csrf.as_bytes())) => Ok(()),
        Some(_) => forbidden("refused: wrong CSRF token (reload the page)"),
        None => forbidden("refused: missing CSRF token (X-CSRF-Token)"),
    }
}

/// The status and message for a failed the ferry-tokio client operation. `local` is the status of a
/// local I/O error (the browser's stream for an upload, the staging area for a download).
fn client_error(error: &ClientError, local: StatusCode) -> Response {
    let status = match error {
        ClientError::Refused { code, .. } => match *code {
            ErrorCode::NOT_FOUND => StatusCode::NOT_FOUND,
            ErrorCode::INVALID_NAME => StatusCode::BAD_REQUEST,
            ErrorCode::QUOTA_EXCEEDED => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BUSY => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::FORBIDDEN => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        },
        ClientError::InvalidName { .. } => StatusCode::BAD_REQUEST,
        ClientError::Io { .. } => local,
        ClientError::Connect { .. }
        | ClientError::Tls { .. }
        | ClientError::Interrupted { .. }
        | ClientError::Verification { .. }
        | ClientError::Protocol(_) => StatusCode::BAD_GATEWAY,
        ClientError::Address { .. } | ClientError::Credentials(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let message = match error {
        // The stream's path is a placeholder: say what happened to the upload instead.
        ClientError::Io { source, .. } if local == StatusCode::BAD_REQUEST => {
            format!("the upload was cut short or malformed: {source}")
        }
        ClientError::Connect { .. } | ClientError::Tls { .. } | ClientError::Interrupted { .. } => {
            format!("the Ferry server cannot be reached: {error}")
        }
        other => other.to_string(),
    };
    json_error(status, message)
}

// ----- the page -----

async fn index(state: Arc<State>, headers: HeaderMap) -> Response {
    let (session, new_cookie) = match session_of(&state, &headers) {
        Some(session) => (session, None),
        None if is_cross_site(&headers) => return bounce(),
        None => match state.sessions.create().await {
            Ok((secret, session)) => {
                let cookie = state.cookie(SESSION_COOKIE, &secret);
                (session, Some(cookie))
            }
            Err(e @ SessionError::Full(_)) => {
                return json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Err(e) => {
                tracing::error!("{e}");
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
        },
    };
    let max_upload = state.options.max_upload_bytes.to_string();
    let page = assets::render(
        assets::INDEX_HTML,
        &[
            ("csrf", &session.csrf),
            ("max_upload", &max_upload),
            (
                "max_upload_human",
                &human_size(state.options.max_upload_bytes),
            ),
            ("server", &state.options.server),
            ("identity", &session.name),
            ("fingerprint", session.fingerprint()),
        ],
    );
    let mut response = warp::reply::html(page).into_response();
    if let Some(cookie) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn session_info(state: Arc<State>, headers: HeaderMap) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => return e.response(),
    };
    json_ok(&serde_json::json!({
        "identity": session.name,
        "fingerprint": session.fingerprint(),
        "server": state.options.server,
        "max_upload": state.options.max_upload_bytes,
    }))
}

async fn identity_file(file: String, state: Arc<State>, headers: HeaderMap) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => return e.response(),
    };
    let issued = &session.issued;
    let (body, name) = match file.as_str() {
        "bundle.pem" => (issued.bundle_pem(), format!("{}.bundle.pem", session.name)),
        "cert.pem" => (issued.cert_pem.clone(), format!("{}.crt.pem", session.name)),
        "key.pem" => (issued.key_pem.clone(), format!("{}.key.pem", session.name)),
        "ca.pem" => (issued.ca_pem.clone(), "ferry-ca.pem".to_string()),
        _ => return json_error(StatusCode::NOT_FOUND, "not found"),
    };
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    if let Ok(value) = HeaderValue::from_str(&attachment(&name)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

// ----- files -----

async fn list(state: Arc<State>, headers: HeaderMap) -> Response {
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
            tracing::warn!("{}: list failed: {e}", session.name);
            client_error(&e, StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// `?name=` of the file routes.
#[derive(Debug, Deserialize)]
struct NameQuery {
    name: String,
}

async fn delete(state: Arc<State>, headers: HeaderMap, NameQuery { name }: NameQuery) -> Response {
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
            tracing::info!("{}: deleted {name:?}", session.name);
            json_ok(&serde_json::json!({ "deleted": name }))
        }
        Err(e) => client_error(&e, StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn download(
    state: Arc<State>,
    headers: HeaderMap,
    NameQuery { name }: NameQuery,
) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => return e.response(),
    };
    let internal = |what: &str, e: io::Error| {
        tracing::error!("{}: download of {name:?}: {what}: {e}", session.name);
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
    let dest = dir.path().join("file");
    let mut client = Client::new(session.client.clone());
    let result = client.download_file(&name, &dest, &mut |_| {}).await;
    client.close().await;
    let report = match result {
        Ok(report) => report,
        Err(e) => return client_error(&e, StatusCode::INTERNAL_SERVER_ERROR),
    };
    let file = match tokio::fs::File::open(&dest).await {
        Ok(file) => file,
        Err(e) => return internal("open", e),
    };
    drop(dir);
    tracing::info!(
        "{}: download of {name:?} ({} bytes) verified, sending",
        session.name,
        report.size
    );
    let body = ReaderStream::with_capacity(file, DOWNLOAD_BUFFER);
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

async fn upload(state: Arc<State>, headers: HeaderMap, mut form: FormData) -> Response {
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
                return upload_part(session, name, size, part).await;
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
async fn upload_part(session: &Session, name: String, size: u64, part: Part) -> Response {
    let reader = StreamReader::new(bounded(part, size));
    let mut client = Client::new(session.client.clone());
    let result = client.upload_stream(&name, size, reader, &mut |_| {}).await;
    client.close().await;
    match result {
        Ok(report) => {
            tracing::info!(
                "{}: uploaded {name:?}, {} bytes, verified, digest {}",
                session.name,
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
            tracing::warn!("{}: upload of {name:?} failed: {e}", session.name);
            client_error(&e, StatusCode::BAD_REQUEST)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_split_from_ports() {
        assert_eq!(host_name("localhost:5000"), "localhost");
        assert_eq!(host_name("[::1]:5000"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        let allowed = |host: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static(host));
            host_allowed(&headers)
        };
        assert!(allowed("127.0.0.1:5000"));
        assert!(allowed("[::1]:5000"));
        assert!(allowed("LOCALHOST"));
        assert!(!allowed("evil.example:5000"));
        assert!(!allowed("localhost.evil.example"));
    }

    #[test]
    fn base_names_drop_directories() {
        assert_eq!(base_name("a.txt"), "a.txt");
        assert_eq!(base_name("C:\\Users\\me\\a.txt"), "a.txt");
        assert_eq!(base_name("/tmp/x/a.txt"), "a.txt");
    }
}
