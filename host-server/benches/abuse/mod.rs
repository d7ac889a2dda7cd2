//! The load-and-abuse harness of issue 13: each attack against a fresh `ferry-server` (and
//! its web page where the attack needs it) in a temporary directory, while honest clients
//! keep working; one [`report::Row`] per attack.
//!
//! Shared by the bench (`benches/abuse.rs`, release binaries, 20 s per attack) and the CI
//! smoke test (`tests/abuse_smoke.rs`, debug binaries, about 2 s per attack).

pub mod conn;
pub mod crash;
pub mod honest;
pub mod raw;
pub mod report;
pub mod revoke;
pub mod server;
pub mod store;
pub mod web;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_testkit::pki::Pki;
use ferry_tokio::client::ClientOptions;

use self::honest::{Honest, Tally, Workload};
use self::report::{Figures, Row, ServerFigures};
use self::server::{Server, ServerSpec};

/// Where attacks come from: another loopback address than the honest clients' 127.0.0.1, as
/// an attacker on the internet is another source than the people it locks out (the server's
/// per-source limits are meant to single it out).
pub const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A TCP connection to `addr` from [`ATTACKER_IP`].
pub async fn attacker_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ATTACKER_IP, 0))?;
    socket.connect(addr).await
}

/// Seconds per attack in the bench (`FERRY_ABUSE_SECS`, default 20).
pub const SECS_ENV: &str = "FERRY_ABUSE_SECS";
/// Attacks to run, comma-separated prefixes of their names (`FERRY_ABUSE_ONLY=1,7a,crash`).
pub const ONLY_ENV: &str = "FERRY_ABUSE_ONLY";

/// How long and how hard.
#[derive(Debug, Clone)]
pub struct Config {
    /// Duration of each attack.
    pub secs: Duration,
    /// The short CI run: smaller data sets and fewer repetitions.
    pub smoke: bool,
    /// An honest operation that takes longer fails.
    pub op_timeout: Duration,
    /// Name prefixes of the attacks to run (all when empty).
    pub only: Vec<String>,
}

impl Config {
    /// The bench's configuration (`smoke: false`: `FERRY_ABUSE_SECS`, default 20 s per
    /// attack) or the CI smoke run's (2 s per attack, a generous per-operation limit); both
    /// take `FERRY_ABUSE_ONLY`.
    pub fn new(smoke: bool) -> Config {
        let secs = std::env::var(SECS_ENV)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|_| !smoke)
            .unwrap_or(if smoke { 2.0 } else { 20.0 });
        Config {
            secs: Duration::from_secs_f64(secs),
            smoke,
            op_timeout: Duration::from_secs(if smoke { 30 } else { 10 }),
            only: only_from_env(),
        }
    }

    /// `full` in the bench, `smoke` in the smoke run.
    pub fn pick<T>(&self, full: T, smoke: T) -> T {
        if self.smoke {
            smoke
        } else {
            full
        }
    }

    fn wants(&self, attack: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|prefix| {
                attack
                    .split(' ')
                    .any(|word| word.starts_with(prefix.as_str()))
            })
    }
}

fn only_from_env() -> Vec<String> {
    std::env::var(ONLY_ENV)
        .map(|list| {
            list.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs every attack the configuration selects, handing each row to `done` as it ends.
pub async fn run_all(cfg: &Config, done: &mut dyn FnMut(&Row)) -> Vec<Row> {
    // Storage modes are judged under the usual umask, whatever the caller's.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let mut rows = Vec::new();
    let mut add = |row: Row| {
        done(&row);
        rows.push(row);
    };
    if cfg.wants(conn::IDLE_SOCKETS) {
        add(conn::idle_sockets(cfg).await);
    }
    if cfg.wants(conn::IDLE_SESSIONS) {
        add(conn::idle_sessions(cfg).await);
    }
    if cfg.wants(store::LISTING) {
        add(store::listing(cfg).await);
    }
    if cfg.wants(store::QUOTA) {
        add(store::quota(cfg).await);
    }
    if cfg.wants(revoke::REVOCATION) {
        add(revoke::revocation(cfg).await);
    }
    if cfg.wants(store::MODES) {
        add(store::modes(cfg).await);
    }
    if cfg.wants(web::SESSIONS) {
        add(web::sessions(cfg).await);
    }
    if cfg.wants(web::STALLED) {
        add(web::stalled_downloads(cfg).await);
    }
    if cfg.wants(web::SLOW) {
        add(web::slow_connections(cfg).await);
    }
    if cfg.wants(store::FULL_DISK) {
        add(store::full_disk(cfg).await);
    }
    if cfg.wants(conn::NAMES) {
        add(conn::names(cfg).await);
    }
    if cfg.wants(web::TOKEN) {
        add(web::token(cfg).await);
    }
    if cfg.wants(crash::CRASH_LOOP) {
        add(crash::crash_loop(cfg).await);
    }
    rows
}

/// Identities of the honest protocol clients.
pub const HONEST: [&str; 2] = ["honest-0", "honest-1"];

/// A scenario's directory and certificates, before its server starts.
pub struct Setup {
    pub name: &'static str,
    dir: tempfile::TempDir,
    pub pki: Pki,
}

impl Setup {
    /// A fresh directory with a CA, the server certificate and the clients `clients` (the
    /// honest ones are always issued).
    pub fn new(name: &'static str, clients: &[&str]) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("ferry-abuse-")
            .tempdir()
            .expect("a scenario directory");
        let certs = dir.path().join("certs");
        let cert_dir = ferry_certs::CertDir::new(&certs);
        ferry_certs::init(&cert_dir, &ferry_certs::InitOptions::default())
            .expect("a certificate directory");
        let pki = Pki::open(&certs);
        for client in HONEST.iter().chain(clients) {
            pki.client(client);
        }
        Setup { name, dir, pki }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server and the honest clients.
    pub fn start(self, cfg: &Config, spec: ServerSpec, workload: Honesty) -> Scenario {
        let server = Server::start(self.root(), spec);
        let honest = match workload {
            Honesty::Protocol => Some(Workload::Protocol {
                addr: server.addr,
                certs: server.certs.clone(),
            }),
            Honesty::Web { token } => Some(Workload::Web {
                url: server.web.clone().expect("the web page"),
                token,
            }),
            Honesty::None => None,
        }
        .map(|workload| Honest::start(workload, cfg.op_timeout));
        Scenario {
            cfg: cfg.clone(),
            setup: self,
            server,
            honest,
            tally: None,
            started: Instant::now(),
        }
    }
}

/// Which honest clients run during an attack.
pub enum Honesty {
    Protocol,
    Web {
        token: Option<String>,
    },
    /// None (the attack's own client is the honest one).
    None,
}

/// A running scenario: the server, the honest clients, the clock.
pub struct Scenario {
    pub cfg: Config,
    pub setup: Setup,
    pub server: Server,
    honest: Option<Honest>,
    tally: Option<Tally>,
    started: Instant,
}

impl Scenario {
    /// Stops the honest clients now (their figures go into the row).
    pub fn stop_honest(&mut self) {
        if let Some(honest) = self.honest.take() {
            self.tally = Some(honest.finish());
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Client library options for `client` (a short connect timeout, the default retries).
    pub fn options(&self, client: &str) -> ClientOptions {
        self.setup.pki.client_options(client, self.addr())
    }

    /// The rustls configuration of `client`.
    pub fn tls(&self, client: &str) -> Arc<rustls::ClientConfig> {
        self.setup.pki.client_tls(client)
    }

    /// The storage directory of `client`.
    pub fn identity_dir(&self, client: &str) -> PathBuf {
        self.server.storage.join(client)
    }

    /// When the attack must stop.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.started + self.cfg.secs)
    }

    /// Waits for the end of the attack's time.
    pub async fn wait_out(&self) {
        tokio::time::sleep_until(self.deadline()).await;
    }

    /// Stops the honest clients and the server; the row.
    pub fn finish(mut self, figures: Figures) -> Row {
        let elapsed = self.started.elapsed();
        self.stop_honest();
        let tally = self.tally.take().unwrap_or_default();
        self.finish_with(elapsed, tally, figures)
    }

    /// As [`finish`](Self::finish), with the honest operations counted by the attack itself.
    pub fn finish_with(mut self, elapsed: Duration, tally: Tally, figures: Figures) -> Row {
        let server = ServerFigures {
            rss_kib: self.server.peak_rss_kib(),
            fds: self.server.peak_fds(),
            log_lines: self.server.log_lines() - figures.log_baseline,
        };
        // SIGKILL: what a graceful stop would wait for is no part of the figures.
        self.server.kill();
        Row::new(self.setup.name, elapsed, tally, server, figures)
    }
}

/// Bytes `path` takes on disk (allocated blocks, as `du`), 0 if it does not exist.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                total += disk_usage(&entry.path());
            }
        }
    }
    total
}
