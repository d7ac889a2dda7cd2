//! # ferry-web
//!
//! Ferry's web upload page. A browser user uploads, lists, downloads and deletes files on a
//! Ferry server without installing anything: each browser session gets its own client
//! certificate, issued on the fly from the operator's CA, and every file operation goes to
//! the server through [`ferry_tokio::client`] over mutual TLS under that identity. A user's files are
//! therefore isolated exactly as a command-line client's are (the server confines each
//! certificate's key to its own namespace), and the user can download the certificate bundle
//! to use the same identity from the `ferry` command line.
//!
//! ## Data flow
//!
//! ```text
//!  browser ──GET /──▶ the page, nothing issued (GET /healthz: {"status":"ok"})
//!  first action: POST /api/session (X-CSRF-Token: new) ──▶ session: random 256-bit secret
//!                     in cookie `ferry_session` (HttpOnly, SameSite=Strict, Secure over
//!                     HTTPS) ──▶ Ca::issue_client ("web-<12 hex>") + CertDir::record_client
//!                     ──▶ record in STATE/sessions/<sha256(secret)>.json (0600, atomic)
//!                     ──▶ ClientOptions::from_pem; the answer carries the CSRF token
//!  or:       POST /api/identity, a kept bundle (PEM): checked against the CA and its index
//!  upload:   XHR POST /api/upload, multipart [size, file] + X-CSRF-Token
//!            ──▶ warp multipart stream (never buffered whole, never written to disk)
//!            ──▶ byte-count guard (declared size, --max-upload) ──▶ StreamReader
//!            ──▶ Client::upload_stream (only the protocol window in memory) ──TLS──▶ server
//!            ◀── {name, size, digest, verified: true} once both ends verified the digest
//!  list:     GET /api/files ──▶ Client::list
//!  download: GET /api/file?name= ──▶ Client::download_file into a private temporary
//!            directory (verified before it is renamed into place; its size reserved from
//!            the scratch budget) ──▶ unlinked, streamed to the browser from the open file
//!            (cut, and the budget given back, when the browser reads nothing for the send
//!            timeout)
//!  delete:   DELETE /api/file?name= + X-CSRF-Token ──▶ Client::delete
//!  identity: GET /identity/{bundle,cert,key,ca}.pem ──▶ the session's credentials, for the
//!            `ferry` command line (`--ca ferry-ca.pem --cert NAME.crt.pem --key NAME.key.pem`)
//! ```
//!
//! Sessions are kept on disk in the state directory ([`WebOptions::state_dir`], default
//! `web/` beside the certificate directory; directories 0700, records 0600, written
//! atomically) and cached in memory, so a browser keeps its identity across restarts of
//! `ferry-web` and of the Ferry server until its cookie expires
//! ([`WebOptions::session_idle`], counted from the session's creation). When a session ends
//! (expiry, or eviction for a newcomer) its certificate is revoked and its record removed. The keys are kept
//! rather than derived from a server-held secret: a derived key would still need the list of
//! issued names and their certificates, and the CA's index already is such a file. A person
//! can bring an identity back on another browser by loading the bundle the page offers.
//! Identities this page issued that never stored a file are revoked and forgotten after
//! [`WebOptions::prune_unused`] (one day).
//!
//! ## Security
//!
//! - CSRF: every POST and DELETE needs the session's token in `X-CSRF-Token`; a request
//!   whose `Origin` is not this page's origin, or whose `Sec-Fetch-Site` is not
//!   `same-origin`, is refused (403). The session cookie is SameSite=Strict as well; since
//!   a browser withholds it when the user follows a link from another site, such a
//!   navigation (`Sec-Fetch-Site: cross-site`) without a session is answered with a page
//!   that reloads itself from this origin, rather than with a new identity.
//! - Access: bound to a non-loopback address, [`WebServer::bind`] refuses to start without an
//!   access token. With a token, a browser opens `/?token=TOKEN` once (the page then sets the
//!   HttpOnly cookie `ferry_access` to a hash of it and redirects to `/`), and scripts send
//!   `Authorization: Bearer TOKEN`. Without a token (loopback only), requests must name the
//!   host as `localhost` or an IP address, which defeats DNS rebinding.
//! - Names are never written into HTML as markup: the script builds the DOM with
//!   `textContent`, and the few values rendered by the server are HTML-escaped. A strict
//!   Content-Security-Policy (`default-src 'self'`, no inline script or style) applies to
//!   every response; all assets are compiled into the binary and nothing is fetched from
//!   the network.
//! - Limits: [`WebOptions::max_upload_bytes`] applies to the declared size, to the request's
//!   `Content-Length` and to the bytes actually streamed; new sessions are rate-limited per
//!   source address and capped ([`WebOptions::max_sessions`], the least recently used idle
//!   one making room); staged downloads are capped ([`WebOptions::scratch_max_bytes`]);
//!   connections are capped per source and in total, and slow headers and idle connections
//!   time out ([`HEADER_TIMEOUT`]); the access token is at least [`MIN_TOKEN_LEN`] bytes and
//!   a source guessing it wrong is slowed down (429).
//! - HTTPS: given [`WebOptions::tls_cert`] and [`WebOptions::tls_key`], the page is served
//!   over TLS (rustls, HTTP/1.1).
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferry_web::WebError> {
//! let options = ferry_web::WebOptions {
//!     server: "127.0.0.1:9000".into(),
//!     ..ferry_web::WebOptions::default()
//! };
//! let web = ferry_web::WebServer::bind(options).await?;
//! println!("ferry-web listening on {}", web.url());
//! web.serve(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod assets;
mod files;
mod http;
mod limits;
mod metrics;
mod routes;
mod scratch;
mod session;
mod shared;
mod store;
mod tls;
mod tus;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::limits::{ConnectionRefusal, Refusals, Source};

pub use session::SESSION_COOKIE;
pub use shared::SharedSessions;

/// Default address of the page.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
/// Default Ferry server the page talks to.
pub const DEFAULT_SERVER: &str = "127.0.0.1:9000";
/// Default largest upload: 16 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 16 << 30;
/// Default number of sessions kept at once.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;
/// Default lifetime of a session, counted from its creation: one day. The session's
/// certificate lives no longer, and is revoked when the session ends.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Default new identities a source address may make per minute.
pub const DEFAULT_IDENTITIES_PER_MINUTE: u32 = 10;
/// Default new identities a source address may make at once.
pub const DEFAULT_IDENTITY_BURST: u32 = 20;
/// Default bytes of downloads staged at once: 2 GiB.
pub const DEFAULT_SCRATCH_MAX: u64 = 2 << 30;
/// Default time a browser may read nothing of a download before it is cut and its staged
/// file released.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest access token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;
/// Default age after which an identity this page issued and that never stored a file is
/// revoked and forgotten: one day.
pub const DEFAULT_PRUNE_UNUSED: Duration = Duration::from_secs(24 * 3600);
/// Default age after which a resumable upload that never finished is forgotten: 7 days, the
/// Ferry server's default partial-upload expiry.
pub const DEFAULT_UPLOAD_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest request head (request line and headers) read; a larger one is answered 431.
const MAX_HEAD: usize = 64 * 1024;
/// Default validity of a session's certificate, in days.
pub const DEFAULT_CERT_DAYS: u32 = 30;
/// Open HTTP connections at most; more are closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Default open HTTP connections from one source address (an IPv4 address, an IPv6 /64).
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// Time a client gets to send a request's headers, and the longest a kept-alive connection
/// stays idle (hyper runs the same timer while it waits for the next request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Refused connections are logged at most once per this period, summarised.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);
/// Time running requests get to finish after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the page is served and which Ferry server it talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOptions {
    /// Address the page listens on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The Ferry server, `HOST:PORT`; `HOST` must be a name the server certificate carries
    /// (`127.0.0.1` and `localhost` always are).
    pub server: String,
    /// Certificate directory holding the CA (`ca.crt`, `ca.key`) that issues each session's
    /// client certificate, and the index the certificates are recorded in.
    pub certs_dir: PathBuf,
    /// Access token required from every request. Mandatory when `listen` is not a loopback
    /// address.
    pub access_token: Option<String>,
    /// HTTPS certificate chain (PEM); serve HTTPS when given with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Largest file accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Sessions kept at once; when full, the least recently used session with no request
    /// running is ended (its certificate revoked) for a newcomer, who is refused (503,
    /// Retry-After) only while every session has a request running.
    pub max_sessions: usize,
    /// Lifetime of a session from its creation; its identity ends with it (the certificate
    /// revoked, its key removed).
    pub session_idle: Duration,
    /// Validity of each session's certificate, in days (never longer than `session_idle`).
    pub cert_days: u32,
    /// New identities (sessions) one source address may make per minute.
    pub identities_per_minute: u32,
    /// New identities one source address may make at once.
    pub identity_burst: u32,
    /// Bytes of downloads staged at once (a larger file is staged only alone); further
    /// downloads are refused (503, Retry-After) meanwhile.
    pub scratch_max_bytes: u64,
    /// Time a browser may read nothing of a download before it is cut and its staged file
    /// released.
    pub send_timeout: Duration,
    /// Open HTTP connections from one source address.
    pub max_connections_per_source: usize,
    /// The command-line flag that sets the access token, named in errors (`--token` for
    /// ferry-web, `--web-token` for ferry-server).
    pub token_flag: &'static str,
    /// Where downloads are staged while they are verified (default: the system's temporary
    /// directory). Each download gets a private directory there, removed as soon as the
    /// verified file is opened for sending.
    pub scratch_dir: Option<PathBuf>,
    /// Where sessions (their identities' keys included) are kept so that they outlive
    /// restarts (default: `web/` next to the certificate directory, see
    /// [`WebOptions::state_dir`]).
    pub state_dir: Option<PathBuf>,
    /// Age after which an identity this page issued and that never stored a file is revoked
    /// and its session forgotten.
    pub prune_unused: Duration,
    /// Age after which a resumable (tus) upload that never finished is forgotten; set it to
    /// the Ferry server's partial-upload expiry.
    pub upload_expiry: Duration,
}

impl WebOptions {
    /// The state directory: [`WebOptions::state_dir`], or `web` beside the certificate
    /// directory (`DATA/certs` gives `DATA/web`).
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        match self.certs_dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join("web"),
            _ => PathBuf::from("web"),
        }
    }
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            listen: DEFAULT_LISTEN,
            server: DEFAULT_SERVER.into(),
            certs_dir: ferry_certs::DataDir::default_location()
                .certs()
                .root()
                .into(),
            access_token: None,
            tls_cert: None,
            tls_key: None,
            max_upload_bytes: DEFAULT_MAX_UPLOAD,
            max_sessions: DEFAULT_MAX_SESSIONS,
            session_idle: DEFAULT_SESSION_IDLE,
            cert_days: DEFAULT_CERT_DAYS,
            identities_per_minute: DEFAULT_IDENTITIES_PER_MINUTE,
            identity_burst: DEFAULT_IDENTITY_BURST,
            scratch_max_bytes: DEFAULT_SCRATCH_MAX,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            token_flag: "--token",
            scratch_dir: None,
            state_dir: None,
            prune_unused: DEFAULT_PRUNE_UNUSED,
            upload_expiry: DEFAULT_UPLOAD_EXPIRY,
        }
    }
}

/// Why the page cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A non-loopback address without an access token.
    #[error(
        "refusing to serve the page on {listen} without an access token: it is not a loopback \
         address, so anyone who can reach it could upload; set one with {flag} or \
         FERRY_WEB_TOKEN (or listen on 127.0.0.1)"
    )]
    TokenRequired {
        /// The address asked for.
        listen: SocketAddr,
        /// The flag that sets the token.
        flag: &'static str,
    },
    /// An access token too short to resist guessing.
    #[error(
        "the access token ({flag} or FERRY_WEB_TOKEN) is {len} bytes long: use at least \
         {MIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 16`)"
    )]
    TokenTooShort {
        /// Its length in bytes.
        len: usize,
        /// The flag that sets the token.
        flag: &'static str,
    },
    /// An option has a value that cannot work.
    #[error("invalid option: {0}")]
    Invalid(String),
    /// The CA that issues session certificates cannot be used.
    #[error("certificate authority in {}: {error}", dir.display())]
    Ca {
        /// The certificate directory.
        dir: PathBuf,
        /// What is wrong.
        error: ferry_certs::CertError,
    },
    /// The HTTPS certificate or key cannot be used.
    #[error("HTTPS certificate: {}: {reason}", path.display())]
    Tls {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state directory cannot be used.
    #[error("state directory {}: {error}", dir.display())]
    State {
        /// The directory.
        dir: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
}

/// Checks the access token of `options`: required on a non-loopback address, and at least
/// [`MIN_TOKEN_LEN`] bytes long. [`WebServer::bind`] checks it too; a caller may check it
/// earlier, before it creates anything.
pub fn check_access_token(options: &WebOptions) -> Result<(), WebError> {
    match &options.access_token {
        None if !options.listen.ip().is_loopback() => Err(WebError::TokenRequired {
            listen: options.listen,
            flag: options.token_flag,
        }),
        // Bearer tokens are compared trimmed: count what is compared.
        Some(token) if token.trim().len() < MIN_TOKEN_LEN => Err(WebError::TokenTooShort {
            len: token.trim().len(),
            flag: options.token_flag,
        }),
        _ => Ok(()),
    }
}

/// The Ferry server address the page should use to reach a server bound on `local_addr`:
/// an unspecified address (`0.0.0.0`, `::`) becomes the loopback address of the same family,
/// which the server certificate always carries.
pub fn server_address_for(local_addr: SocketAddr) -> String {
    let ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local_addr.port()).to_string()
}

/// A bound page, ready to [`serve`](WebServer::serve).
pub struct WebServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    state: Arc<routes::State>,
}

impl std::fmt::Debug for WebServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebServer")
            .field("local_addr", &self.local_addr)
            .field("https", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl WebServer {
    /// Checks the options, loads the CA (and the HTTPS certificate), and binds the listening
    /// socket. Fails with [`WebError::TokenRequired`] for a non-loopback address without an
    /// access token. Must run inside a tokio runtime.
    pub async fn bind(options: WebOptions) -> Result<WebServer, WebError> {
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|error| WebError::Listen {
                    addr: options.listen,
                    error,
                })?;
        WebServer::on_listener(options, listener)
    }

    /// As [`bind`](WebServer::bind), on a socket bound already (`options.listen` is then only
    /// checked: a caller binds every listener before it creates certificates).
    pub fn on_listener(options: WebOptions, listener: TcpListener) -> Result<WebServer, WebError> {
        check_access_token(&options)?;
        ferry_tokio::client::split_server(&options.server)
            .map_err(|e| WebError::Invalid(format!("--server: {e}")))?;
        if options.max_upload_bytes == 0 {
            return Err(WebError::Invalid(
                "--max-upload must be at least 1 byte".into(),
            ));
        }
        if options.max_connections_per_source == 0 || options.scratch_max_bytes == 0 {
            return Err(WebError::Invalid(
                "the connection and scratch limits must be at least 1".into(),
            ));
        }
        if options.max_sessions == 0 {
            return Err(WebError::Invalid(
                "at least one session must be allowed".into(),
            ));
        }
        if options.cert_days == 0 || options.cert_days > ferry_certs::MAX_DAYS {
            return Err(WebError::Invalid(format!(
                "certificate validity must be 1 to {} days",
                ferry_certs::MAX_DAYS
            )));
        }
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => {
                Some(TlsAcceptor::from(Arc::new(tls::server_config(cert, key)?)))
            }
            (None, None) => None,
            _ => {
                return Err(WebError::Invalid(
                    "HTTPS needs both a certificate (--tls-cert) and a key (--tls-key)".into(),
                ))
            }
        };
        if tls.is_none() && options.access_token.is_some() && !options.listen.ip().is_loopback() {
            tracing::warn!(
                "serving plain HTTP on {}: the access token and session cookies travel unencrypted (give --tls-cert and --tls-key)",
                options.listen
            );
        }
        let ca = ferry_certs::Ca::load(&options.certs_dir).map_err(|error| WebError::Ca {
            dir: options.certs_dir.clone(),
            error,
        })?;
        let local_addr = listener.local_addr().map_err(|error| WebError::Listen {
            addr: options.listen,
            error,
        })?;
        let state_dir = options.state_dir();
        let state = Arc::new(
            routes::State::new(options, ca, tls.is_some()).map_err(|error| WebError::State {
                dir: state_dir,
                error,
            })?,
        );
        Ok(WebServer {
            listener,
            local_addr,
            tls,
            state,
        })
    }

    /// The bound address (the real port when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the page is served over HTTPS.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// The page's address, `http://ADDR/` or `https://ADDR/`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}/",
            if self.is_https() { "https" } else { "http" },
            self.local_addr
        )
    }

    /// Shares browser sessions with the pages of other Ferry servers on the same database
    /// (see [`SharedSessions`]): a session made on one is known to all within about a
    /// second.
    pub fn share_sessions(&self, shared: SharedSessions) {
        self.state.sessions.share(shared);
    }

    /// Serves the page until `shutdown` completes, then stops accepting and gives running
    /// requests a few seconds to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), WebError> {
        let WebServer {
            listener,
            local_addr,
            tls,
            state,
        } = self;
        let routes = routes::routes(state.clone());
        let graceful = GracefulShutdown::new();
        let connections = state.connections.clone();
        // One summary line per period instead of one line per refused connection.
        let mut refused_since_log = 0u64;
        let mut last_refusal_log = std::time::Instant::now();
        let expiry = tokio::spawn(routes::expire_sessions(state.clone()));
        let shared = tokio::spawn(routes::apply_shared_sessions(state.clone()));
        tracing::info!(
            "web page on {}://{local_addr} for the Ferry server {}",
            if tls.is_some() { "https" } else { "http" },
            state.server()
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let source = Source::of(peer.ip());
                    let slot = match connections.admit(source) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            Refusals::count(&state.limits.refusals.connections_refused);
                            refused_since_log += 1;
                            if last_refusal_log.elapsed() >= REFUSAL_LOG_PERIOD {
                                let why = match refusal {
                                    ConnectionRefusal::PerSource(n) => format!("{n} open from {}", peer.ip()),
                                    ConnectionRefusal::Total(n) => format!("{n} open in total"),
                                };
                                tracing::warn!("refused {refused_since_log} connection(s) in {:?}, the last one: {why}", last_refusal_log.elapsed());
                                refused_since_log = 0;
                                last_refusal_log = std::time::Instant::now();
                            }
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let inner = TowerToHyperService::new(warp::service(routes.clone()));
                    // The handlers learn the source address from a request extension.
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(source);
                        hyper::service::Service::call(&inner, request)
                    });
                    let watcher = graceful.watcher();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let mut http = hyper::server::conn::http1::Builder::new();
                        http.timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .max_header_size(MAX_HEAD)
                            .keep_alive(true);
                        let result = match tls {
                            None => watcher.watch(http.serve_connection(TokioIo::new(tcp), service)).await,
                            Some(acceptor) => {
                                let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(e)) => {
                                        tracing::debug!("{peer}: TLS handshake failed: {e}");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!("{peer}: TLS handshake timed out");
                                        return;
                                    }
                                };
                                watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!("{peer}: connection ended: {e}");
                        }
                    });
                }
            }
        }
        drop(listener);
        expiry.abort();
        shared.abort();
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::info!("shutdown: requests still running after {SHUTDOWN_GRACE:?} are cut");
        }
        tracing::info!("web page stopped");
        Ok(())
    }
}

/// Binds and serves until `shutdown` completes (see [`WebServer`]).
pub async fn serve(
    options: WebOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebError> {
    WebServer::bind(options).await?.serve(shutdown).await
}

/// A human-readable size with binary units (`1.5 GiB`, `16.0 GiB`, `512 B`).
pub fn human_size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_server_addresses_become_loopback() {
        assert_eq!(
            server_address_for("0.0.0.0:9000".parse().unwrap()),
            "127.0.0.1:9000"
        );
        assert_eq!(server_address_for("[::]:9".parse().unwrap()), "[::1]:9");
        assert_eq!(
            server_address_for("10.0.0.5:9000".parse().unwrap()),
            "10.0.0.5:9000"
        );
    }

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(16 << 30), "16.0 GiB");
    }
}
