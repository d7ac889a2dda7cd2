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
//!            directory (verified before it is renamed into place) ──▶ unlinked, streamed
//!            to the browser from the open file
//!  delete:   DELETE /api/file?name= + X-CSRF-Token ──▶ Client::delete
//!  identity: GET /identity/{bundle,cert,key,ca}.pem ──▶ the session's credentials, for the
//!            `ferry` command line (`--ca ferry-ca.pem --cert NAME.crt.pem --key NAME.key.pem`)
//! ```
//!
//! Sessions are kept on disk in the state directory ([`WebOptions::state_dir`], default
//! `web/` beside the certificate directory; directories 0700, records 0600, written
//! atomically) and cached in memory, so a browser keeps its identity across restarts of
//! `ferry-web` and of the Ferry server until its cookie expires
//! ([`WebOptions::session_idle`], counted from the session's creation). The keys are kept
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
//!   `Content-Length` and to the bytes actually streamed; sessions are capped
//!   ([`WebOptions::max_sessions`]) and expire when idle; connections are capped and slow
//!   request headers time out.
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
mod routes;
mod session;
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
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use session::SESSION_COOKIE;

/// Default address of the page.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
/// Default Ferry server the page talks to.
pub const DEFAULT_SERVER: &str = "127.0.0.1:9000";
/// Default largest upload: 16 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 16 << 30;
/// Default number of sessions kept at once.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;
/// Default idle time after which a session is forgotten: 7 days.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
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
/// Time a client gets to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Sessions kept at once; when full, idle sessions are dropped first and new visitors
    /// are refused (503) while none is idle.
    pub max_sessions: usize,
    /// Idle time after which a session (and with it its identity) is forgotten.
    pub session_idle: Duration,
    /// Validity of each session's certificate, in days.
    pub cert_days: u32,
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
         address, so anyone who can reach it could upload; set one with --token or \
         FERRY_WEB_TOKEN (or listen on 127.0.0.1)"
    )]
    TokenRequired {
        /// The address asked for.
        listen: SocketAddr,
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
        if options.access_token.is_none() && !options.listen.ip().is_loopback() {
            return Err(WebError::TokenRequired {
                listen: options.listen,
            });
        }
        if let Some(token) = &options.access_token {
            if token.trim().is_empty() {
                return Err(WebError::Invalid("the access token is empty".into()));
            }
            if token.len() < 16 {
                tracing::warn!(
                    "the access token is short ({} bytes): use at least 16 random characters",
                    token.len()
                );
            }
        }
        ferry_tokio::client::split_server(&options.server)
            .map_err(|e| WebError::Invalid(format!("--server: {e}")))?;
        if options.max_upload_bytes == 0 {
            return Err(WebError::Invalid(
                "--max-upload must be at least 1 byte".into(),
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
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let expiry = tokio::spawn(routes::expire_sessions(state.clone()));
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
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!("{peer}: refused, {MAX_CONNECTIONS} connections open");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let service = TowerToHyperService::new(warp::service(routes.clone()));
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
