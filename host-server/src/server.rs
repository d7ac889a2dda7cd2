//! The listener: certificates, TLS, connection limits, CRL reloads, partial expiry and
//! graceful shutdown.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytesize::ByteSize;
use ferry_certs::{
    init, server_config_with_verifier, CertDir, ClientIdentity, CrlVersion, InitOptions,
    ReloadableClientVerifier, LOCAL_CLIENT,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admin::Health;
use crate::admission::{
    log_turnaway, Admission, Permit, Refusal, RefusalLog, SharedRefusalLog, Turnaway,
    REFUSAL_LOG_INTERVAL,
};
use crate::cluster_crl::{check_ca, SharedCaError, SharedCrl};
use crate::config::{ConfigError, ServerOptions};
use crate::metrics::{HandshakeFailure, Metrics, RefusedReason};
use crate::pg::Database;
use crate::proxy::{self, TrustedProxies};
use crate::session::{self, Phase, Shared};
use crate::storage::{open_store, StorageError, Store};

/// How often the CRL file is checked for changes.
const CRL_POLL: Duration = Duration::from_secs(2);
/// How long an upload waits for an earlier upload of the same name to end before `BUSY`.
const BUSY_WAIT: Duration = Duration::from_secs(3);
/// How long connections get to close after the grace period before they are aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The retry-after an authenticated client refused for capacity is told, seconds.
const BUSY_RETRY_AFTER_SECS: u32 = 1;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Invalid options.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates missing, unreadable or invalid.
    #[error(transparent)]
    Certs(#[from] ferry_certs::CertError),
    /// The storage directory is unusable.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The shared database holds another CA, or cannot be used for it.
    #[error(transparent)]
    SharedCa(#[from] SharedCaError),
    /// A signal handler cannot be installed.
    #[error("cannot handle {signal}: {source}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// Certificates created on first run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The certificate directory.
    pub dir: PathBuf,
    /// The CA certificate clients trust.
    pub ca_cert: PathBuf,
    /// The `local` client certificate.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// Certificate, key and CA in one file.
    pub client_bundle: PathBuf,
}

impl Bootstrap {
    /// The command that sets up `ferry` for this server from any directory of this machine:
    /// `ferry login BUNDLE --server ADDR`, with the bundle's absolute path and an address a
    /// local client can reach (an unspecified listen address becomes the loopback one,
    /// which the server certificate carries).
    pub fn login_command(&self, server: SocketAddr) -> String {
        let bundle =
            std::path::absolute(&self.client_bundle).unwrap_or_else(|_| self.client_bundle.clone());
        let mut server = server;
        if server.ip().is_unspecified() {
            server.set_ip(match server {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let bundle = bundle.display().to_string();
        // A path with a NUL cannot be quoted, nor exist: print it as it is.
        let bundle = shlex::try_quote(&bundle).unwrap_or(bundle.as_str().into());
        format!("ferry login {bundle} --server {server}")
    }
}

impl fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "created certificates in {}: CA {}, client certificate {}, key {} (bundle {})",
            self.dir.display(),
            self.ca_cert.display(),
            self.client_cert.display(),
            self.client_key.display(),
            self.client_bundle.display()
        )
    }
}

/// A bound server, ready to [`serve`](Server::serve).
pub struct Server {
    options: ServerOptions,
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    verifier: Arc<ReloadableClientVerifier>,
    storage: Arc<dyn Store>,
    database: Option<Database>,
    bootstrap: Option<Bootstrap>,
    hangup: Signal,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Creates the certificates if the directory has no CA yet.
fn bootstrap(dir: &CertDir) -> Result<Option<Bootstrap>, ServerError> {
    if dir.ca_cert().exists() {
        return Ok(None);
    }
    init(dir, &InitOptions::default())?;
    let local = dir.client_paths(LOCAL_CLIENT)?;
    Ok(Some(Bootstrap {
        dir: dir.root().to_path_buf(),
        ca_cert: dir.ca_cert(),
        client_cert: local.cert,
        client_key: local.key,
        client_bundle: local.bundle,
    }))
}

impl Server {
    /// Prepares everything: certificates (created on first run), TLS configuration, storage,
    /// the SIGHUP handler, and the listening socket. Must run inside a tokio runtime.
    pub async fn bind(options: ServerOptions) -> Result<Server, ServerError> {
        options.validate()?;
        // Bound first: a server that cannot listen leaves no certificates or storage behind.
        let listener =
            TcpListener::bind(&options.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: options.listen.clone(),
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: options.listen.clone(),
                source,
            })?;
        let dir = CertDir::new(&options.certs);
        let bootstrap = bootstrap(&dir)?;
        let paths = dir.server_tls_paths();
        let crl = paths.crl.clone().filter(|crl| crl.exists());
        if crl.is_none() {
            tracing::warn!(
                "no CRL at {}: revoked certificates are not refused",
                dir.crl().display()
            );
        }
        let verifier = ReloadableClientVerifier::new(&paths.ca_cert, crl.as_deref())?;
        let mut tls =
            server_config_with_verifier(&paths.server_cert, &paths.server_key, verifier.clone())?;
        tls.max_fragment_size = options.max_fragment_size;
        // No session resumption: a resumed session skips the client certificate check, so a
        // revoked or expired certificate could go on connecting. Every connection performs a
        // full handshake against the current CRL.
        tls.send_tls13_tickets = 0;
        tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        // The database several instances share (--metadata), for an s3:// store.
        let database = match &options.metadata {
            Some(url) => Some(Database::connect(url, options.metadata_ca.as_deref()).await?),
            None => None,
        };
        if let Some(database) = &database {
            share_ca(database, &paths.ca_cert).await?;
        }
        let (storage, probed_dir) =
            open_store(&options, database.as_ref(), &dir.load_index()?, BUSY_WAIT).await?;
        // Installed before anyone can learn the address: SIGHUP must never kill the server.
        let hangup = signal(SignalKind::hangup()).map_err(|source| ServerError::Signal {
            signal: "SIGHUP",
            source,
        })?;
        let health = Arc::new(Health::new(probed_dir, storage.clone(), verifier.clone()));
        Ok(Server {
            options,
            listener,
            local_addr,
            acceptor,
            verifier,
            storage,
            database,
            bootstrap,
            hangup,
            metrics: Arc::new(Metrics::new()),
            health,
        })
    }

    /// The bound address (the real port when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The certificates created by [`bind`](Server::bind), if it created any.
    pub fn bootstrap(&self) -> Option<&Bootstrap> {
        self.bootstrap.as_ref()
    }

    /// The resolved options.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The store.
    pub fn storage(&self) -> &Arc<dyn Store> {
        &self.storage
    }

    /// The shared database (`--metadata`), if any.
    pub fn database(&self) -> Option<&Database> {
        self.database.as_ref()
    }

    /// The server's metrics (what the admin listener's `/metrics` serves).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What the admin listener's `/readyz` checks.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Accepts connections until `shutdown` completes, then stops accepting, gives running
    /// transfers `shutdown_grace_secs` to finish, checkpoints the rest and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            options,
            listener,
            local_addr,
            acceptor,
            verifier,
            storage,
            database,
            bootstrap: _,
            hangup,
            metrics,
            health,
        } = self;
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let (revocations_tx, revocations_rx) = watch::channel(0u64);
        let core = ferry_core::Config {
            max_chunk: options.chunk_size,
            idle_timeout: options.idle_timeout_secs.saturating_mul(1000),
            ..ferry_core::Config::stream()
        };
        let shared = Arc::new(Shared {
            storage: storage.clone(),
            core,
            min_chunk: options.min_chunk_size,
            idle: Duration::from_secs(options.idle_timeout_secs),
            max_per_identity: options.max_connections_per_identity,
            max_sessions: options.max_connections,
            identities: Mutex::new(Default::default()),
            phase: phase_rx,
            metrics: metrics.clone(),
            first_request: Duration::from_secs(options.first_request_timeout_secs),
            verifier: verifier.clone(),
            revocations: revocations_rx,
        });
        let crl_task = tokio::spawn(watch_crl(
            verifier,
            hangup,
            metrics.clone(),
            health.clone(),
            revocations_tx,
            database.map(SharedCrl::new),
        ));
        let expiry_task = tokio::spawn(expire_partials(storage.clone(), metrics.clone()));
        let admission = Admission::new(options.max_handshakes, options.max_handshakes_per_source);
        let sessions = Arc::new(Semaphore::new(options.max_connections));
        let refusals: SharedRefusalLog =
            Arc::new(Mutex::new(RefusalLog::new(REFUSAL_LOG_INTERVAL)));
        let mut summary_tick = tokio::time::interval(REFUSAL_LOG_INTERVAL);
        summary_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let proxy = match options.proxy_protocol {
            true => Some(ProxyContext {
                trusted: TrustedProxies::parse(&options.proxy_from).map_err(|reason| {
                    ConfigError::Invalid {
                        key: "proxy_from".into(),
                        reason,
                    }
                })?,
                reading: Arc::new(Semaphore::new(options.max_handshakes.max(1))),
            }),
            false => None,
        };
        let pre_auth = PreAuthContext {
            acceptor,
            timeout: Duration::from_secs(options.handshake_timeout_secs),
            refusals: refusals.clone(),
        };
        let mut tasks = JoinSet::new();
        tracing::info!(
            "serving {} on {local_addr} (quota {}, max file {}, chunks {})",
            options.storage.display(),
            ByteSize(options.quota),
            ByteSize(options.max_file_size),
            ByteSize(u64::from(options.chunk_size)),
        );
        tokio::pin!(shutdown);
        health.set_listening(true);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let Some(proxy) = &proxy else {
                            // Refused: closed at once, unread, the cheapest answer to a flood.
                            if let Some(permit) = admit(&admission, peer, &metrics, &refusals) {
                                tasks.spawn(connection(
                                    tcp,
                                    peer,
                                    permit,
                                    pre_auth.clone(),
                                    sessions.clone(),
                                    shared.clone(),
                                ));
                            }
                            continue;
                        };
                        if !proxy.trusted.trusts(peer.ip()) {
                            metrics.connection_refused(RefusedReason::proxy_untrusted);
                            log_turnaway(&refusals, peer, Turnaway::UntrustedProxy, None);
                            drop(tcp);
                            continue;
                        }
                        // Headers being read count against the handshake budget's size, so a
                        // stalled balancer cannot pile up tasks.
                        let Ok(reading) = proxy.reading.clone().try_acquire_owned() else {
                            metrics.connection_refused(Refusal::BudgetFull.reason());
                            log_turnaway(
                                &refusals,
                                peer,
                                Turnaway::Refused(Refusal::BudgetFull),
                                None,
                            );
                            drop(tcp);
                            continue;
                        };
                        tasks.spawn(proxied_connection(
                            tcp,
                            peer,
                            reading,
                            admission.clone(),
                            pre_auth.clone(),
                            sessions.clone(),
                            shared.clone(),
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined {
                        tracing::error!("a connection task failed: {e}");
                    }
                }
                _ = summary_tick.tick() => {
                    let summary = refusals
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .summary(Instant::now());
                    if let Some(summary) = summary {
                        tracing::warn!("{summary}");
                    }
                }
            }
        }
        drop(listener);
        health.set_listening(false);
        tracing::info!(
            "shutting down: no new connections, {} open; running transfers get {} s",
            tasks.len(),
            options.shutdown_grace_secs
        );
        let _ = phase_tx.send(Phase::Draining);
        let grace = Duration::from_secs(options.shutdown_grace_secs);
        if tokio::time::timeout(grace, drain(&mut tasks))
            .await
            .is_err()
        {
            tracing::info!(
                "grace period over: checkpointing and closing {} connections",
                tasks.len()
            );
            let _ = phase_tx.send(Phase::Stopping);
            if tokio::time::timeout(STOP_TIMEOUT, drain(&mut tasks))
                .await
                .is_err()
            {
                tracing::warn!("aborting {} connections", tasks.len());
                tasks.abort_all();
                drain(&mut tasks).await;
            }
        }
        crl_task.abort();
        expiry_task.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// One CA for every instance of a database: published by the first, checked by the others.
async fn share_ca(database: &Database, ca_cert: &Path) -> Result<(), ServerError> {
    let ca_pem = std::fs::read_to_string(ca_cert).map_err(|cause| ferry_certs::CertError::Io {
        path: ca_cert.to_path_buf(),
        action: "read",
        cause,
    })?;
    Ok(check_ca(database, &ca_pem, ca_cert.to_path_buf()).await?)
}

/// Binds and serves until `shutdown` completes (see [`Server`]).
pub async fn run(
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::bind(options).await?.serve(shutdown).await
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// What a connection needs before it authenticates.
#[derive(Clone)]
struct PreAuthContext {
    acceptor: TlsAcceptor,
    timeout: Duration,
    refusals: SharedRefusalLog,
}

/// What `--proxy-protocol` needs in the accept loop.
struct ProxyContext {
    trusted: TrustedProxies,
    /// Connections whose PROXY header is being read.
    reading: Arc<Semaphore>,
}

/// Lets a connection from `peer` into the handshake budget, or counts and logs the refusal.
fn admit(
    admission: &Arc<Admission>,
    peer: SocketAddr,
    metrics: &Metrics,
    refusals: &SharedRefusalLog,
) -> Option<Permit> {
    match admission.admit(peer.ip(), fastrand::f64()) {
        Ok(permit) => Some(permit),
        Err(refusal) => {
            metrics.connection_refused(refusal.reason());
            log_turnaway(refusals, peer, Turnaway::Refused(refusal), None);
            None
        }
    }
}

/// A connection from a trusted balancer: its PROXY header names the client, whose address
/// stands for the connection from then on (admission, logs, metrics).
async fn proxied_connection(
    mut tcp: TcpStream,
    balancer: SocketAddr,
    reading: OwnedSemaphorePermit,
    admission: Arc<Admission>,
    pre_auth: PreAuthContext,
    sessions: Arc<Semaphore>,
    shared: Arc<Shared>,
) {
    let started = Instant::now();
    let origin = proxy::read_header(&mut tcp, pre_auth.timeout).await;
    drop(reading);
    // One handshake timeout for the header and the TLS handshake together.
    let mut pre_auth = pre_auth;
    pre_auth.timeout = pre_auth.timeout.saturating_sub(started.elapsed());
    let peer = match origin {
        Ok(origin) => origin.address(balancer),
        Err(e) => {
            shared
                .metrics
                .connection_refused(RefusedReason::proxy_header);
            tracing::debug!(peer = %balancer, "{balancer}: {e}");
            log_turnaway(&pre_auth.refusals, balancer, Turnaway::ProxyHeader, None);
            return;
        }
    };
    // Closed unread when refused, as without a balancer; the balancer sees a reset.
    let Some(permit) = admit(&admission, peer, &shared.metrics, &pre_auth.refusals) else {
        return;
    };
    connection(tcp, peer, permit, pre_auth, sessions, shared).await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    pre_auth: PreAuthContext,
    sessions: Arc<Semaphore>,
    shared: Arc<Shared>,
) {
    let _open = shared.metrics.connection_opened();
    let _ = tcp.set_nodelay(true);
    let accepted = tokio::time::timeout(pre_auth.timeout, pre_auth.acceptor.accept(tcp)).await;
    // Out of the pre-authentication budget, whatever the outcome.
    drop(permit);
    let tls = match accepted {
        Err(_) => {
            shared.metrics.handshake_failed(HandshakeFailure::timeout);
            log_turnaway(&pre_auth.refusals, peer, Turnaway::TimedOut, None);
            return;
        }
        Ok(Err(e)) => {
            let reason = HandshakeFailure::of(&e);
            shared.metrics.handshake_failed(reason);
            // A broken handshake is what a flood looks like: counted, logged at debug level.
            if reason == HandshakeFailure::io {
                tracing::debug!(peer = %peer, reason = ?reason, "{peer}: TLS handshake failed: {e}");
            } else {
                tracing::info!(peer = %peer, reason = ?reason, "{peer}: TLS handshake refused: {e}");
            }
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    let (identity, certificate) = {
        let chain = tls.get_ref().1.peer_certificates();
        match ClientIdentity::from_peer_certificates(chain) {
            Ok(identity) => (identity, chain.map(|c| c.to_vec()).unwrap_or_default()),
            Err(e) => {
                tracing::warn!("{peer}: {e}");
                return;
            }
        }
    };
    // The per-identity limit first: one client filling its share is told so at once and
    // does not take a place in the pool of sessions.
    let Some(slot) = shared.enter(&identity.name) else {
        let limit = shared.max_per_identity;
        shared
            .metrics
            .connection_refused(RefusedReason::max_connections_per_identity);
        log_turnaway(
            &pre_auth.refusals,
            peer,
            Turnaway::IdentityFull,
            Some(&identity.name),
        );
        let text = format!("too many connections of this identity (limit {limit})");
        session::refuse_busy(tls, &text, BUSY_RETRY_AFTER_SECS).await;
        return;
    };
    let Ok(place) = sessions.clone().try_acquire_owned() else {
        shared
            .metrics
            .connection_refused(RefusedReason::max_connections);
        log_turnaway(
            &pre_auth.refusals,
            peer,
            Turnaway::SessionsFull,
            Some(&identity.name),
        );
        let text = format!("the server is full ({} sessions)", shared.max_sessions);
        session::refuse_busy(tls, &text, BUSY_RETRY_AFTER_SECS).await;
        return;
    };
    session::serve(tls, identity, certificate, peer, shared, slot).await;
    drop(place);
}

/// The file's identity for change detection: modification time, length, inode.
fn crl_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    let md = std::fs::metadata(path).ok()?;
    Some((md.modified().ok()?, md.len(), md.ino()))
}

/// Reloads the CRL on SIGHUP and when the file changes; with a shared database, also
/// publishes the local CRL when it is newer than the database's and loads the database's
/// when it is newer than the one in force (see [`crate::cluster_crl`]).
async fn watch_crl(
    verifier: Arc<ReloadableClientVerifier>,
    mut hangup: Signal,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    revocations: watch::Sender<u64>,
    shared: Option<SharedCrl>,
) {
    let path = verifier.crl_path().map(Path::to_path_buf);
    let mut last = path.as_deref().and_then(crl_stamp);
    let mut tick = tokio::time::interval(CRL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut cluster = shared.map(|shared| ClusterCrl {
        shared,
        // What bind loaded from the file; published on the first poll.
        loaded: path.as_deref().and_then(local_crl_version),
        publish_local: true,
        failing: false,
        refused: None,
    });
    loop {
        let trigger = tokio::select! {
            _ = hangup.recv() => Some("SIGHUP"),
            _ = tick.tick() => {
                let stamp = path.as_deref().and_then(crl_stamp);
                let changed = stamp != last;
                last = stamp;
                changed.then_some("a change of the CRL file")
            }
        };
        if let Some(trigger) = trigger {
            match (&path, &mut cluster) {
                (None, _) => tracing::info!("{trigger}: no CRL configured, nothing to reload"),
                (Some(path), None) => {
                    reload_local_crl(&verifier, path, trigger, &metrics, &health, &revocations)
                        .await
                }
                // The file goes to the database first; the newest of both is loaded below.
                (Some(_), Some(cluster)) => cluster.publish_local = true,
            }
        }
        if let (Some(cluster), Some(path)) = (&mut cluster, &path) {
            if cluster.publish_local {
                cluster.publish_local = false;
                cluster
                    .publish_file(path, &verifier, &metrics, &health, &revocations)
                    .await;
            }
        }
        if let Some(cluster) = &mut cluster {
            cluster
                .load_newer(&verifier, &metrics, &health, &revocations)
                .await;
        }
    }
}

/// The version of the CRL file at `path`, if it is readable.
fn local_crl_version(path: &Path) -> Option<CrlVersion> {
    let text = std::fs::read(path).ok()?;
    CrlVersion::of_pem(&text, path).ok()
}

/// Reloads the CRL file into the verifier (the single-instance case).
async fn reload_local_crl(
    verifier: &Arc<ReloadableClientVerifier>,
    path: &Path,
    trigger: &str,
    metrics: &Metrics,
    health: &Health,
    revocations: &watch::Sender<u64>,
) {
    let reloading = verifier.clone();
    let reloaded = tokio::task::spawn_blocking(move || reloading.reload_crl()).await;
    metrics.crl_reloaded(matches!(reloaded, Ok(Ok(_))));
    match reloaded {
        Ok(Ok(revoked)) => {
            health.set_crl_error(None);
            tracing::info!(
                "CRL {} reloaded after {trigger}: {revoked} revoked certificates",
                path.display()
            );
            // Every session checks its certificate against the new CRL.
            revocations.send_modify(|generation| *generation += 1);
        }
        Ok(Err(e)) => {
            health.set_crl_error(Some(e.to_string()));
            tracing::warn!(
                "CRL reload after {trigger} failed, the previous CRL stays in force: {e}"
            )
        }
        Err(e) => tracing::error!("CRL reload: {e}"),
    }
}

/// The CRL watcher's state with a shared database.
struct ClusterCrl {
    shared: SharedCrl,
    /// The version in force in the verifier.
    loaded: Option<CrlVersion>,
    /// The local file changed (or was never published).
    publish_local: bool,
    /// The database failed last time (logged once per outage).
    failing: bool,
    /// A database CRL the verifier refused (not logged again).
    refused: Option<CrlVersion>,
}

impl ClusterCrl {
    /// Publishes the local CRL file; loads it at once if the database cannot be reached
    /// (a revocation made here holds here whatever the database's state).
    async fn publish_file(
        &mut self,
        path: &Path,
        verifier: &Arc<ReloadableClientVerifier>,
        metrics: &Metrics,
        health: &Health,
        revocations: &watch::Sender<u64>,
    ) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                health.set_crl_error(Some(format!("{}: {e}", path.display())));
                tracing::warn!("CRL {}: {e}", path.display());
                return;
            }
        };
        let version = match CrlVersion::of_pem(text.as_bytes(), path) {
            Ok(version) => version,
            Err(e) => {
                health.set_crl_error(Some(e.to_string()));
                tracing::warn!("not publishing the CRL: {e}");
                return;
            }
        };
        match self.shared.publish(&text, version).await {
            Ok(true) => {
                self.note_database_ok();
                tracing::info!(
                    "published {} ({version}) to the shared database",
                    path.display()
                );
            }
            Ok(false) => self.note_database_ok(),
            Err(e) => {
                self.note_database_error(&e);
                if self.loaded.is_none_or(|loaded| version > loaded) {
                    self.load(
                        text.as_bytes(),
                        version,
                        path,
                        verifier,
                        metrics,
                        health,
                        revocations,
                    )
                    .await;
                }
            }
        }
    }

    /// Loads the database's CRL if it is newer than the one in force.
    async fn load_newer(
        &mut self,
        verifier: &Arc<ReloadableClientVerifier>,
        metrics: &Metrics,
        health: &Health,
        revocations: &watch::Sender<u64>,
    ) {
        let newer = match self.shared.newer_than(self.loaded).await {
            Ok(newer) => {
                self.note_database_ok();
                newer
            }
            Err(e) => return self.note_database_error(&e),
        };
        let Some((pem, version)) = newer else {
            return;
        };
        if self.refused == Some(version) {
            return;
        }
        let origin = Path::new("the shared database");
        self.load(
            pem.as_bytes(),
            version,
            origin,
            verifier,
            metrics,
            health,
            revocations,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn load(
        &mut self,
        pem: &[u8],
        version: CrlVersion,
        origin: &Path,
        verifier: &Arc<ReloadableClientVerifier>,
        metrics: &Metrics,
        health: &Health,
        revocations: &watch::Sender<u64>,
    ) {
        let loading = verifier.clone();
        let (pem, origin_owned) = (pem.to_vec(), origin.to_path_buf());
        let loaded =
            tokio::task::spawn_blocking(move || loading.load_crl_pem(&pem, &origin_owned)).await;
        metrics.crl_reloaded(matches!(loaded, Ok(Ok(_))));
        match loaded {
            Ok(Ok(revoked)) => {
                health.set_crl_error(None);
                self.loaded = Some(version);
                tracing::info!(
                    "CRL from {} loaded ({version}): {revoked} revoked certificates",
                    origin.display()
                );
                revocations.send_modify(|generation| *generation += 1);
            }
            Ok(Err(e)) => {
                self.refused = Some(version);
                health.set_crl_error(Some(e.to_string()));
                tracing::warn!(
                    "CRL from {} ({version}) refused, the previous CRL stays in force: {e}",
                    origin.display()
                );
            }
            Err(e) => tracing::error!("CRL load: {e}"),
        }
    }

    fn note_database_ok(&mut self) {
        if std::mem::take(&mut self.failing) {
            tracing::info!("the shared CRL is reachable again");
        }
    }

    fn note_database_error(&mut self, e: &StorageError) {
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!("the shared CRL cannot be read or written, retrying: {e}");
        }
    }
}

/// Removes abandoned partial uploads now and then.
async fn expire_partials(storage: Arc<dyn Store>, metrics: Arc<Metrics>) {
    let expiry = storage.partial_expiry();
    let every = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let storage = storage.clone();
        match tokio::task::spawn_blocking(move || storage.expire_partials(SystemTime::now())).await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => {
                metrics.partials_expired(removed);
                tracing::info!("removed {removed} abandoned partial uploads")
            }
            Ok(Err(e)) => tracing::warn!("expiring partial uploads: {e}"),
            Err(e) => tracing::error!("expiring partial uploads: {e}"),
        }
    }
}
