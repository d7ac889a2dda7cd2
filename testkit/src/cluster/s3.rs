//! `s3s-fs`: a single-node S3 server that keeps objects as files under its root. A bucket
//! is a directory directly under the root, so [`S3Server::create_bucket`] makes one.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::process::{find_binary, free_port, wait_listening, Daemon};

/// Attempts at a free port before giving up.
const PORT_ATTEMPTS: u32 = 5;
/// The access key every test server accepts.
const ACCESS_KEY: &str = "ferry-test-access";
/// Its secret key.
const SECRET_KEY: &str = "ferry-test-secret-key";

/// A running s3s-fs, killed and its directory removed on drop.
pub struct S3Server {
    daemon: Daemon,
    port: u16,
    root: PathBuf,
    // Last: dropped after the daemon stopped.
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts s3s-fs on a new temporary directory.
    pub fn start() -> io::Result<S3Server> {
        let binary = find_binary("s3s-fs", &[])?;
        let dir = tempfile::Builder::new().prefix("ferry-s3-").tempdir()?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root)?;
        let log = dir.path().join("s3s-fs.log");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut command = Command::new(&binary);
            command
                .arg(&root)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]);
            let mut daemon =
                Daemon::spawn("s3s-fs", command, &log, "TERM", Duration::from_secs(2))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_listening(&mut daemon, addr, Duration::from_secs(20)) {
                Ok(()) => {
                    return Ok(S3Server {
                        daemon,
                        port,
                        root,
                        _dir: dir,
                    })
                }
                Err(e) => last_error = Some(e), // most likely the port was taken meanwhile
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("s3s-fs did not start")))
    }

    /// One server shared by the callers that hold it at the same time: started by the
    /// first, stopped when the last drops it. Give each test a bucket of its own.
    pub fn shared() -> io::Result<Arc<S3Server>> {
        static SHARED: Mutex<Weak<S3Server>> = Mutex::new(Weak::new());
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(running) = shared.upgrade() {
            return Ok(running);
        }
        let started = Arc::new(S3Server::start()?);
        *shared = Arc::downgrade(&started);
        Ok(started)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The access key id it accepts.
    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    /// The secret key it accepts.
    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    /// A region name for clients that need one (s3s-fs ignores it).
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// The directory holding the buckets.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates bucket `name` (a directory under the root).
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        let valid = name.len() >= 3
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bucket name {name:?}: 3 to 63 of a-z, 0-9 and -"),
            ));
        }
        std::fs::create_dir(self.root.join(name))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// SIGKILL now (the directory stays until drop).
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// The server log's tail.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }
}
