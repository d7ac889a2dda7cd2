//! The page's routes: access gate, sessions, CSRF checks and the page's own handlers (the
//! file routes are in [`crate::files`]).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}`, without side effects and without the access token |
//! | `GET /` | the page (no session or certificate is made here) |
//! | `GET /app.js`, `/style.css`, `/favicon.svg`, `/tus.min.js` | the page's files (tus-js-client's licence: `/tus-js-client.LICENSE.txt`) |
//! | `POST /api/session` | makes the session and its certificate (`X-CSRF-Token: new`), or returns the current one |
//! | `GET /api/session` | `{identity, fingerprint, server, max_upload}` |
//! | `POST /api/identity` | body: a certificate bundle (PEM) this CA issued; becomes this browser's session (`X-CSRF-Token: new`) |
//! | `GET /api/files` | the session's files: `[{name, size, modified, digest, chunk_size}]` |
//! | `POST /api/upload` | multipart `size` then `file` (optional `name` before `file`); CSRF |
//! | `GET /api/file?name=N` | downloads a file (verified before the first byte is sent) |
//! | `DELETE /api/file?name=N` | deletes a file; CSRF |
//! | `GET /identity/{bundle,cert,key,ca}.pem` | the session's credentials |
//! | `OPTIONS, POST /api/tus/`, `HEAD, PATCH, DELETE /api/tus/ID` | resumable uploads ([`crate::tus`]); CSRF |
//! | `GET /metrics` | the page's counters (Prometheus text) |

use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_tokio::client::{ClientError, ErrorCode};
use subtle::ConstantTimeEq;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::assets;
use crate::files;
use crate::http::{
    attachment, cookie, json_error, json_ok, retry_after, secure_headers, set_cookie,
};
use crate::limits::{Connections, Limits, Refusals, Source};
use crate::metrics;
use crate::scratch::ScratchBudget;
use crate::session::{sha256, Session, SessionConfig, SessionError, Sessions};
use crate::tus::{self, Uploads};
use crate::{human_size, WebOptions, SESSION_COOKIE};

/// Name of the cookie that proves the access token was given.
pub(crate) const ACCESS_COOKIE: &str = "ferry_access";
/// The header that carries the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Room for the multipart framing around the file (boundaries, part headers, small fields).
const FORM_OVERHEAD: u64 = 64 * 1024;
/// The `X-CSRF-Token` value of a request that makes a session (there is no token yet).
pub(crate) const NEW_SESSION_TOKEN: &str = "new";
/// The name an upload too large for any server is declared under, to learn the server's
/// limit from its refusal.
const LIMIT_PROBE: &str = ".ferry-web-limit-probe";
/// How long the server's limit is trusted before it is asked again.
const LIMIT_TTL: Duration = Duration::from_secs(600);
/// Largest certificate bundle accepted.
const MAX_BUNDLE: u64 = 64 * 1024;
/// Retry-After of a newcomer refused because every session has a request running.
const SESSIONS_FULL_RETRY: Duration = Duration::from_secs(30);
/// How often idle sessions are swept.
const SWEEP: Duration = Duration::from_secs(60);

/// Everything the handlers share.
pub(crate) struct State {
    pub(crate) options: WebOptions,
    pub(crate) sessions: Sessions,
    pub(crate) uploads: Uploads,
    /// The Ferry server's largest file, as it last said, and when.
    server_max: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
    https: bool,
    /// SHA-256 of the access token, if one is required.
    token_hash: Option<[u8; 32]>,
    pub(crate) scratch: PathBuf,
    /// Bytes of downloads staged in `scratch` now, capped.
    pub(crate) scratch_budget: Arc<ScratchBudget>,
    pub(crate) limits: Limits,
    pub(crate) connections: Arc<Connections>,
}

impl State {
    pub(crate) fn new(options: WebOptions, ca: ferry_certs::Ca, https: bool) -> io::Result<State> {
        let sessions = Sessions::new(
            ca,
            SessionConfig {
                certs_dir: options.certs_dir.clone(),
                state_dir: options.state_dir(),
                server: options.server.clone(),
                cert_days: options.cert_days,
                max: options.max_sessions,
                idle: options.session_idle,
                prune_unused: options.prune_unused,
            },
        )?;
        let uploads = Uploads::open(&options.state_dir(), options.upload_expiry)?;
        let token_hash = options
            .access_token
            .as_deref()
            .map(|t| access_hash(t.as_bytes()));
        let scratch = options
            .scratch_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        Ok(State {
            scratch_budget: ScratchBudget::new(options.scratch_max_bytes),
            limits: Limits::new(options.identities_per_minute, options.identity_burst),
            connections: Connections::new(
                crate::MAX_CONNECTIONS,
                options.max_connections_per_source,
            ),
            options,
            sessions,
            uploads,
            server_max: std::sync::Mutex::new(None),
            https,
            token_hash,
            scratch,
        })
    }

    /// The largest upload accepted: this page's limit, or the Ferry server's if lower. The
    /// server is asked (as `session`) by declaring an upload too large for any server, which
    /// it refuses before anything is created, its refusal naming its limit; the answer is
    /// kept for [`LIMIT_TTL`].
    pub(crate) async fn max_upload(&self, session: &Session) -> u64 {
        let own = self.options.max_upload_bytes;
        let cached = *self.server_max.lock().expect("limit lock");
        if let Some((max, at)) = cached {
            if at.elapsed() < LIMIT_TTL {
                return own.min(max);
            }
        }
        let mut client = ferry_tokio::client::Client::new(session.client.clone());
        let result = client.upload_held(LIMIT_PROBE, u64::MAX).await;
        let server = match result {
            Err(ClientError::Refused { code, text }) if code == ErrorCode::TOO_LARGE => {
                server_limit(&text)
            }
            Ok(_) => Some(u64::MAX),
            Err(e) => {
                tracing::debug!("cannot ask the server for its limit: {e}");
                None
            }
        };
        match server {
            Some(max) => {
                *self.server_max.lock().expect("limit lock") =
                    Some((max, std::time::Instant::now()));
                own.min(max)
            }
            None => own,
        }
    }

    /// [`State::max_upload`] without asking: the server's limit as last heard, if ever.
    pub(crate) fn known_max_upload(&self) -> u64 {
        let own = self.options.max_upload_bytes;
        match *self.server_max.lock().expect("limit lock") {
            Some((max, _)) => own.min(max),
            None => own,
        }
    }

    pub(crate) fn server(&self) -> &str {
        &self.options.server
    }

    fn cookie(&self, name: &str, value: &str) -> String {
        set_cookie(name, value, self.options.session_idle.as_secs(), self.https)
    }
}

/// The limit a Ferry server states when it refuses a file as too large
/// ("... the server accepts at most 4.0 GiB (4294967296 bytes)").
fn server_limit(text: &str) -> Option<u64> {
    let rest = &text[text.find("accepts at most")?..];
    let open = rest.find('(')?;
    let digits: String = rest[open + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The value stored in the access cookie: a hash of the token, never the token itself.
fn access_hash(token: &[u8]) -> [u8; 32] {
    let mut input = b"ferry-web access token\0".to_vec();
    input.extend_from_slice(token);
    sha256(&input)
}

/// Sweeps expired sessions and prunes unused identities until aborted.
pub(crate) async fn expire_sessions(state: Arc<State>) {
    // Often enough that a short pruning age (tests) is honoured.
    let period = SWEEP
        .min(state.options.prune_unused / 2)
        .min(state.options.session_idle / 2)
        .max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(period).await;
        state.limits.forget_quiet_sources();
        let gone = state.sessions.sweep().await;
        if gone > 0 {
            tracing::info!("forgot {gone} session(s)");
        }
        let gone = state.uploads.expire();
        if gone > 0 {
            tracing::info!("forgot {gone} unfinished upload(s)");
        }
    }
}

/// How often the sessions other servers' pages share are applied.
const SHARED_POLL: Duration = Duration::from_secs(1);

/// Applies the sessions shared through the database, until aborted.
pub(crate) async fn apply_shared_sessions(state: Arc<State>) {
    let mut tick = tokio::time::interval(SHARED_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        state.sessions.apply_shared().await;
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
    /// 429: the source guessed wrong tokens too often; try again after the duration.
    SlowDown(Duration),
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

/// Compares a token `given` from `source` with the expected hash, slowing a guessing source
/// down: once it guessed wrong too often, its tokens are refused (429) before they are read.
fn check_token(
    state: &State,
    source: Option<Source>,
    given: &[u8],
    expected: &[u8; 32],
) -> Result<bool, Intercept> {
    let source = source.unwrap_or(Source::of(std::net::Ipv4Addr::UNSPECIFIED.into()));
    state
        .limits
        .token_allowed(source)
        .map_err(Intercept::SlowDown)?;
    let hash = access_hash(given);
    if bool::from(hash[..].ct_eq(&expected[..])) {
        return Ok(true);
    }
    state
        .limits
        .wrong_token(source)
        .map_err(Intercept::SlowDown)?;
    Ok(false)
}

fn check_gate(
    state: &State,
    source: Option<Source>,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<(), Intercept> {
    // Two Host headers: which one a proxy or this page believes is ambiguous.
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(Intercept::Error(
            StatusCode::BAD_REQUEST,
            "a request must have at most one Host header".into(),
        ));
    }
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
            if check_token(state, source, given.as_bytes(), &expected)? {
                return Err(Intercept::Admit {
                    set_cookie: state.cookie(ACCESS_COOKIE, &hex::encode(expected)),
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
        .map(|t| check_token(state, source, t.trim().as_bytes(), &expected))
        .transpose()?;
    let from_cookie = cookie(headers, ACCESS_COOKIE);
    let admitted = bearer == Some(true)
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
        .and(warp::ext::optional::<Source>())
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and_then(
            |state: Arc<State>,
             source: Option<Source>,
             path: warp::path::FullPath,
             query: Vec<(String, String)>,
             headers: HeaderMap| async move {
                check_gate(&state, source, path.as_str(), &query, &headers)
                    .map_err(warp::reject::custom)
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
                "tus.min.js" => (assets::TUS_JS, "text/javascript; charset=utf-8"),
                "tus-js-client.LICENSE.txt" => (assets::TUS_LICENSE, "text/plain; charset=utf-8"),
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
    let new_session = warp::path!("api" / "session")
        .and(warp::post())
        .and(st.clone())
        .and(warp::ext::optional::<Source>())
        .and(headers)
        .then(new_session);
    let import = warp::path!("api" / "identity")
        .and(warp::post())
        .and(st.clone())
        .and(warp::ext::optional::<Source>())
        .and(headers)
        .and(warp::body::content_length_limit(MAX_BUNDLE))
        .and(warp::body::bytes())
        .then(import_identity);
    let files = warp::path!("api" / "files")
        .and(warp::get())
        .and(st.clone())
        .and(headers)
        .then(files::list);
    let upload = warp::path!("api" / "upload")
        .and(warp::post())
        .and(st.clone())
        .and(headers)
        .and(warp::multipart::form().max_length(form_limit))
        .then(files::upload);
    let download = warp::path!("api" / "file")
        .and(warp::get())
        .and(st.clone())
        .and(headers)
        .and(warp::query::<files::NameQuery>())
        .then(files::download);
    let delete = warp::path!("api" / "file")
        .and(warp::delete())
        .and(st.clone())
        .and(headers)
        .and(warp::query::<files::NameQuery>())
        .then(files::delete);
    let tus_routes = {
        let base = warp::path!("api" / "tus" / ..).and(warp::path::end());
        let one = warp::path!("api" / "tus" / String);
        let options = warp::path!("api" / "tus" / ..)
            .and(warp::options())
            .and(st.clone())
            .then(tus::options);
        let create = base
            .and(warp::post())
            .and(st.clone())
            .and(headers)
            .then(tus::create);
        let head = one
            .and(warp::head())
            .and(st.clone())
            .and(headers)
            .then(tus::head);
        let patch = one
            .and(warp::patch())
            .and(st.clone())
            .and(headers)
            .and(warp::body::stream())
            .then(tus::patch);
        let delete = one
            .and(warp::delete())
            .and(st.clone())
            .and(headers)
            .then(tus::delete);
        options
            .or(create)
            .unify()
            .or(head)
            .unify()
            .or(patch)
            .unify()
            .or(delete)
            .unify()
            .boxed()
    };
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(st.clone())
        .map(|state: Arc<State>| metrics::metrics(&state));
    let identity = warp::path!("identity" / String)
        .and(warp::get())
        .and(st)
        .and(headers)
        .then(identity_file);

    // Health checks need neither the access token nor a session, and change nothing.
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json_ok(&serde_json::json!({ "status": "ok" })));

    healthz
        .or(gate(state).and(
            index
                .or(statics)
                .unify()
                .or(session_info)
                .unify()
                .or(new_session)
                .unify()
                .or(import)
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
                .unify()
                .or(tus_routes)
                .unify()
                .or(metrics)
                .unify(),
        ))
        .unify()
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
            Intercept::SlowDown(wait) => retry_after(
                json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many wrong access tokens from this address: try again later",
                ),
                *wait,
            ),
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
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn response(self) -> Response {
        json_error(self.status, self.message)
    }
}

/// The request's session, or a 401 telling the browser to reload the page.
pub(crate) fn require_session(
    state: &State,
    headers: &HeaderMap,
) -> Result<Arc<Session>, ApiError> {
    session_of(state, headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no session (it expired or the page restarted): reload the page",
        )
    })
}

/// No sign that the request comes from another site (`Sec-Fetch-Site`, `Origin`).
fn check_same_origin(state: &State, headers: &HeaderMap) -> Result<(), ApiError> {
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
    Ok(())
}

/// The CSRF checks of a state-changing request: the session's token in `X-CSRF-Token`, and
/// no sign of another site.
pub(crate) fn check_csrf(
    state: &State,
    session: &Session,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    check_same_origin(state, headers)?;
    let forbidden = |why: &str| Err(ApiError::new(StatusCode::FORBIDDEN, why));
    match headers.get(CSRF_HEADER) {
        Some(token) if bool::from(token.as_bytes().ct_eq(session.csrf().as_bytes())) => Ok(()),
        Some(_) => forbidden("refused: wrong CSRF token (reload the page)"),
        None => forbidden("refused: missing CSRF token (X-CSRF-Token)"),
    }
}

/// The checks of a request that makes a session (no token exists yet): same origin, and
/// `X-CSRF-Token: new`, a header no cross-site form can send and no cross-site script may
/// send without a CORS preflight this page never grants.
fn check_new_session(state: &State, headers: &HeaderMap) -> Result<(), ApiError> {
    check_same_origin(state, headers)?;
    match headers.get(CSRF_HEADER) {
        Some(token) if token.as_bytes() == NEW_SESSION_TOKEN.as_bytes() => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("refused: a new session needs X-CSRF-Token: {NEW_SESSION_TOKEN}"),
        )),
    }
}

/// The status and message for a failed the ferry-tokio client operation. `local` is the status of a
/// local I/O error (the browser's stream for an upload, the staging area for a download).
pub(crate) fn client_error(error: &ClientError, local: StatusCode) -> Response {
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
        // An I/O error's text names the path; its cause (the OS reason) is chained.
        other => other.with_causes(),
    };
    json_error(status, message)
}

// ----- the page -----

async fn index(state: Arc<State>, headers: HeaderMap) -> Response {
    // No session is made here: a certificate is issued at the first action that needs one
    // (POST /api/session), so visits and health checks leave nothing in the CA's index.
    let session = session_of(&state, &headers);
    if session.is_none() && is_cross_site(&headers) {
        return bounce();
    }
    let max_upload = state.options.max_upload_bytes.to_string();
    let (csrf, identity, fingerprint) = session
        .as_ref()
        .map_or(("", "", ""), |s| (s.csrf(), s.name(), s.fingerprint()));
    let page = assets::render(
        assets::INDEX_HTML,
        &[
            ("csrf", csrf),
            ("max_upload", &max_upload),
            (
                "max_upload_human",
                &human_size(state.options.max_upload_bytes),
            ),
            ("server", &state.options.server),
            ("identity", identity),
            ("fingerprint", fingerprint),
        ],
    );
    warp::reply::html(page).into_response()
}

/// What the page learns about its session (`max_upload`: the limit that applies, the Ferry
/// server's if it is lower than this page's).
async fn session_json(state: &State, session: &Session) -> serde_json::Value {
    serde_json::json!({
        "identity": session.name(),
        "fingerprint": session.fingerprint(),
        "server": state.options.server,
        "max_upload": state.max_upload(session).await,
    })
}

async fn session_info(state: Arc<State>, headers: HeaderMap) -> Response {
    match require_session(&state, &headers) {
        Ok(session) => json_ok(&session_json(&state, &session).await),
        Err(e) => e.response(),
    }
}

/// The answer to a request that made a session: its details and CSRF token, and the cookie.
async fn session_made(
    state: &State,
    made: Result<(String, Arc<Session>), SessionError>,
) -> Response {
    let (secret, session) = match made {
        Ok(made) => made,
        Err(e @ SessionError::Full(_)) => {
            Refusals::count(&state.limits.refusals.sessions_full);
            return retry_after(
                json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                SESSIONS_FULL_RETRY,
            );
        }
        Err(e @ SessionError::Bundle(_)) => {
            return json_error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => {
            tracing::error!("{e}");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let mut body = session_json(state, &session).await;
    body["csrf"] = session.csrf().into();
    let mut response = json_ok(&body);
    if let Ok(cookie) = HeaderValue::from_str(&state.cookie(SESSION_COOKIE, &secret)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Takes a new identity from the source's bucket; `Err`: 429 with Retry-After.
fn admit_new_identity(state: &State, source: Option<Source>) -> Result<(), Duration> {
    match source {
        Some(source) => state.limits.new_identity(source),
        None => Ok(()),
    }
}

/// The answer to a source that made too many identities.
fn too_many_identities(wait: Duration) -> Response {
    retry_after(
        json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many new sessions from this address: try again later",
        ),
        wait,
    )
}

/// `POST /api/session`: the current session, or a new one with its certificate.
async fn new_session(state: Arc<State>, source: Option<Source>, headers: HeaderMap) -> Response {
    if let Err(e) = check_new_session(&state, &headers) {
        return e.response();
    }
    if let Some(session) = session_of(&state, &headers) {
        let mut body = session_json(&state, &session).await;
        body["csrf"] = session.csrf().into();
        return json_ok(&body);
    }
    if let Err(wait) = admit_new_identity(&state, source) {
        return too_many_identities(wait);
    }
    session_made(&state, state.sessions.create().await).await
}

/// `POST /api/identity`: a certificate bundle the user kept becomes this browser's session.
async fn import_identity(
    state: Arc<State>,
    source: Option<Source>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = check_new_session(&state, &headers) {
        return e.response();
    }
    if let Err(wait) = admit_new_identity(&state, source) {
        return too_many_identities(wait);
    }
    let Ok(bundle) = std::str::from_utf8(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "the bundle is not PEM text");
    };
    session_made(&state, state.sessions.import(bundle).await).await
}

async fn identity_file(file: String, state: Arc<State>, headers: HeaderMap) -> Response {
    let session = match require_session(&state, &headers) {
        Ok(session) => session,
        Err(e) => return e.response(),
    };
    let name = session.name();
    let (body, name) = match file.as_str() {
        "bundle.pem" => (session.bundle_pem(), format!("{name}.bundle.pem")),
        "cert.pem" => (session.cert_pem().to_string(), format!("{name}.crt.pem")),
        "key.pem" => (session.key_pem().to_string(), format!("{name}.key.pem")),
        "ca.pem" => (session.ca_pem().to_string(), "ferry-ca.pem".to_string()),
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
    fn the_server_limit_is_read_from_its_refusal() {
        assert_eq!(
            server_limit("file too large: 16.0 EiB (18446744073709551615 bytes), the server accepts at most 4.0 GiB (4294967296 bytes)"),
            Some(4 << 30)
        );
        assert_eq!(
            server_limit("file too large: 1 B, the server accepts at most 1 B"),
            None
        );
        assert_eq!(server_limit("no such file"), None);
    }
}
