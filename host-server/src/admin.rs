//! The admin listener (`--admin ADDR`, off by default): `GET /metrics` (Prometheus /
//! OpenMetrics text), `GET /healthz` (the process answers) and `GET /readyz` (listening,
//! storage writable, CA and CRL loaded) over plain HTTP/1.1.
//!
//! It has no authentication, so it listens on a loopback address unless `--admin-public`
//! says otherwise (then keep it behind a firewall or on a private network).

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_certs::ReloadableClientVerifier;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::storage::Store;

/// Time a client of the admin listener gets to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// What Prometheus reads: OpenMetrics text (`# EOF` included).
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The options of the admin listener (part of `ferry-server`'s command line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminArgs {
    /// Serve GET /metrics, /healthz and /readyz on this address (HOST:PORT; off by default).
    #[arg(long, env = "FERRY_ADMIN", value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Allow --admin on a non-loopback address (the admin listener has no authentication).
    #[arg(long, env = "FERRY_ADMIN_PUBLIC", requires = "admin")]
    pub admin_public: bool,
}

/// Why the admin listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address without `--admin-public`.
    #[error(
        "--admin {0} is not a loopback address: the admin listener has no authentication \
         (anyone who reaches it reads the metrics); give --admin-public to serve it there anyway"
    )]
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr} (--admin): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What `/readyz` checks, shared with the server.
#[derive(Debug)]
pub struct Health {
    listening: AtomicBool,
    storage: PathBuf,
    /// The store, whose remote services are probed too (database, object store).
    store: Arc<dyn Store>,
    verifier: Arc<ReloadableClientVerifier>,
    crl_error: Mutex<Option<String>>,
}

/// One check of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

impl Health {
    pub(crate) fn new(
        storage: PathBuf,
        store: Arc<dyn Store>,
        verifier: Arc<ReloadableClientVerifier>,
    ) -> Health {
        Health {
            listening: AtomicBool::new(false),
            storage,
            store,
            verifier,
            crl_error: Mutex::new(None),
        }
    }

    pub(crate) fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Relaxed);
    }

    /// Records the result of the last CRL reload (`None`: it succeeded).
    pub(crate) fn set_crl_error(&self, error: Option<String>) {
        *self.crl_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Runs every check (the storage check writes, fsyncs and removes a small file: call it
    /// off the async threads).
    pub fn checks(&self) -> Vec<Check> {
        let listening = self.listening.load(Ordering::Relaxed);
        let crl_error = self
            .crl_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let crl = match (self.verifier.crl_path(), crl_error) {
            (_, Some(error)) => (false, format!("the last reload failed: {error}")),
            (Some(path), None) => (true, format!("loaded from {}", path.display())),
            (None, None) => (true, "none (revoked certificates are not refused)".into()),
        };
        let storage = match self.probe_storage() {
            Ok(()) => (true, format!("{} is writable", self.storage.display())),
            Err(e) => (
                false,
                format!("cannot write to {}: {e}", self.storage.display()),
            ),
        };
        let remote = match self.store.probe() {
            Ok(None) => None,
            Ok(Some(found)) => Some((true, found)),
            Err(e) => Some((false, e.to_string())),
        };
        let mut checks = vec![
            Check {
                name: "listening",
                ok: listening,
                detail: if listening {
                    "accepting"
                } else {
                    "not accepting"
                }
                .into(),
            },
            Check {
                name: "storage",
                ok: storage.0,
                detail: storage.1,
            },
            Check {
                name: "ca",
                ok: true,
                detail: format!("loaded from {}", self.verifier.ca_path().display()),
            },
            Check {
                name: "crl",
                ok: crl.0,
                detail: crl.1,
            },
        ];
        if let Some((ok, detail)) = remote {
            checks.push(Check {
                name: "store",
                ok,
                detail,
            });
        }
        checks
    }

    /// A real write: a read-only mount, a full disk or a storage directory replaced by a
    /// file fail it, even for root, whom permission bits do not stop.
    fn probe_storage(&self) -> std::io::Result<()> {
        let mut probe = tempfile::Builder::new()
            .prefix(".ready-probe")
            .tempfile_in(&self.storage)?;
        probe.write_all(b"ferry readiness probe\n")?;
        probe.as_file().sync_all()?;
        probe.close()
    }
}

/// A bound admin listener.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl AdminServer {
    /// Binds `addr`, refusing a non-loopback address unless `public`.
    pub async fn bind(
        addr: SocketAddr,
        public: bool,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<AdminServer, AdminError> {
        let listener = AdminServer::listen(addr, public).await?;
        AdminServer::on_listener(listener, metrics, health)
    }

    /// Binds the admin socket alone (refusing a non-loopback address unless `public`), so a
    /// caller can bind every listener before it creates certificates.
    pub async fn listen(addr: SocketAddr, public: bool) -> Result<TcpListener, AdminError> {
        if !addr.ip().is_loopback() && !public {
            return Err(AdminError::NotLoopback(addr));
        }
        TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Listen { addr, source })
    }

    /// Serves the metrics and health of a server on a socket [`listen`](AdminServer::listen)
    /// bound.
    pub fn on_listener(
        listener: TcpListener,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<AdminServer, AdminError> {
        let local_addr = listener.local_addr().map_err(|source| AdminError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        Ok(AdminServer {
            listener,
            local_addr,
            state: Arc::new(State { metrics, health }),
        })
    }

    /// The bound address (the real port when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes; open admin connections are then dropped.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        let state = self.state.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |request| {
                                let state = state.clone();
                                async move { Ok::<_, std::convert::Infallible>(respond(request, &state).await) }
                            });
                            let _ = http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(HEADER_TIMEOUT)
                                .serve_connection(TokioIo::new(tcp), service)
                                .await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!("admin listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn respond(request: Request<Incoming>, state: &Arc<State>) -> Reply {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".into(),
        );
    }
    match request.uri().path() {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let health = state.health.clone();
            let Ok(checks) = tokio::task::spawn_blocking(move || health.checks()).await else {
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    "checks failed\n".into(),
                );
            };
            let ready = checks.iter().all(|check| check.ok);
            let mut body = String::from(if ready { "ready\n" } else { "not ready\n" });
            for check in &checks {
                let mark = if check.ok { "ok" } else { "FAILED" };
                body.push_str(&format!("{}: {mark}: {}\n", check.name, check.detail));
            }
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, TEXT, body)
        }
        "/metrics" => {
            let state = state.clone();
            let measured = tokio::task::spawn_blocking(move || {
                if let Err(e) = state.metrics.measure_storage(&state.health.storage) {
                    tracing::warn!("metrics: cannot measure the storage directory: {e}");
                }
                state.metrics.encode()
            })
            .await;
            match measured {
                Ok(text) => reply(StatusCode::OK, METRICS_TYPE, text),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    format!("metrics: {e}\n"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: GET /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
