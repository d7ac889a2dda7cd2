//! A PostgreSQL cluster of its own: initdb in a temporary directory, `postgres` on
//! 127.0.0.1 at a free port with its unix socket in that directory, trust authentication
//! for the superuser `postgres`, fsync on (the default). PostgreSQL refuses to run as root:
//! as root the directory is handed to the `postgres` user and both run as it (setpriv).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::process::{find_binary, free_port, run, Daemon};

/// Attempts at a free port before giving up.
const PORT_ATTEMPTS: u32 = 5;
/// How long a start may take before it counts as failed.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Connections allowed: several ferry-server instances (16 each) per test, tests in parallel.
const MAX_CONNECTIONS: u32 = 300;

/// A running PostgreSQL server, stopped (fast shutdown, then SIGKILL) and removed on drop.
pub struct Postgres {
    daemon: Daemon,
    port: u16,
    bin: PathBuf,
    databases: AtomicU32,
    // Last: dropped after the daemon stopped.
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// initdb and start a new server.
    pub fn start() -> io::Result<Postgres> {
        let bin = binary_dir()?;
        let dir = tempfile::Builder::new().prefix("ferry-pg-").tempdir()?;
        let owner = run_as()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let mut initdb = as_owner(owner, &bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run("initdb", &mut initdb)?;
        let log = dir.path().join("postgres.log");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut postgres = as_owner(owner, &bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .arg("-c")
                .arg(format!("max_connections={MAX_CONNECTIONS}"));
            let mut daemon = Daemon::spawn(
                "postgres",
                postgres,
                &log,
                "INT", // fast shutdown: does not wait for clients to leave
                Duration::from_secs(10),
            )?;
            match wait_ready(&mut daemon, &bin, port) {
                Ok(()) => {
                    return Ok(Postgres {
                        daemon,
                        port,
                        bin,
                        databases: AtomicU32::new(0),
                        _dir: dir,
                    })
                }
                Err(e) => last_error = Some(e), // most likely the port was taken meanwhile
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }

    /// One server shared by the callers that hold it at the same time: started by the
    /// first, stopped when the last drops it (the next caller starts a new one).
    pub fn shared() -> io::Result<Arc<Postgres>> {
        static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(running) = shared.upgrade() {
            return Ok(running);
        }
        let started = Arc::new(Postgres::start()?);
        *shared = Arc::downgrade(&started);
        Ok(started)
    }

    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name`.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` (lower-case letters, digits and `_`); its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("database name {name:?}: use a-z, 0-9 and _ (at most 63)"),
            ));
        }
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.database_url(name))
    }

    /// Creates a database named `prefix` plus a number unique on this server; its URL.
    pub fn unique_database(&self, prefix: &str) -> io::Result<String> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("{prefix}_{n}"))
    }

    /// Runs `sql` in `database` with psql; the rows, unaligned, `|` between fields.
    pub fn psql(&self, database: &str, sql: &str) -> io::Result<String> {
        run(
            "psql",
            Command::new(self.bin.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-d", database])
                .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql]),
        )
    }

    /// The server log's tail.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }
}

/// Waits until the server accepts queries (pg_isready), or fails when it exits.
fn wait_ready(daemon: &mut Daemon, bin: &Path, port: u16) -> io::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = daemon.exited() {
            return Err(daemon.error(&format!("exited ({status}) while starting on port {port}")));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
            ])
            .status()?;
        if ready.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(daemon.error(&format!("not ready after {START_LIMIT:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The directory of `postgres`, `initdb`, `psql`: Debian's /usr/lib/postgresql/VERSION/bin
/// (newest first), else wherever PATH has `postgres`.
fn binary_dir() -> io::Result<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    let dirs: Vec<PathBuf> = debian.into_iter().map(|(_, dir)| dir).collect();
    let postgres = find_binary("postgres", &dirs)?;
    // PATH may hold a symbolic link (/usr/local/bin/postgres): initdb lives by the target.
    let postgres = std::fs::canonicalize(&postgres).unwrap_or(postgres);
    let dir = postgres.parent().map(Path::to_path_buf).unwrap_or_default();
    find_binary("initdb", std::slice::from_ref(&dir))?;
    Ok(dir)
}

/// The `postgres` user's uid and gid when this process runs as root, else None.
fn run_as() -> io::Result<Option<(u32, u32)>> {
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> io::Result<u32> {
        run(
            "id postgres (PostgreSQL refuses to run as root; it needs a `postgres` user)",
            Command::new("id").args([flag, "postgres"]),
        )?
        .trim()
        .parse()
        .map_err(io::Error::other)
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

/// A command running `program`, as the `postgres` user when `owner` is set.
fn as_owner(owner: Option<(u32, u32)>, program: &Path) -> Command {
    match owner {
        None => Command::new(program),
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            command
        }
    }
}
