//! The real `ferry-server` binary as a child process: started, its readiness line read,
//! signalled, waited for with its log.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferry-server");

pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// Lines printed before the readiness line, and the readiness line.
    pub stdout: Vec<String>,
    pub storage: PathBuf,
    pub certs: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// `ferry-server --no-web --listen LISTEN` logging at info, with no `FERRY_*` option from
/// the test's environment and its data directory, should it use the default one, in `data`
/// (never the user's).
pub fn command(data: &Path, listen: &str) -> Command {
    let mut command = Command::new(BIN);
    command.args(["--no-web", "--listen", listen]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FERRY_") {
            command.env_remove(key);
        }
    }
    command
        .env("FERRY_LOG", "info")
        .env("FERRY_DATA_DIR", data)
        .env("XDG_DATA_HOME", data.join("xdg"));
    command
}

/// Starts the server with storage and certificates in `root/storage` and `root/certs`.
pub fn start(root: &Path, extra: &[&str]) -> Running {
    let (storage, certs) = (root.join("storage"), root.join("certs"));
    let mut command = command(&root.join("data"), "127.0.0.1:0");
    command
        .arg("--storage")
        .arg(&storage)
        .arg("--certs")
        .arg(&certs)
        .args(extra);
    spawn(command, storage, certs)
}

/// Spawns `command` and waits for its readiness line; `storage` and `certs` are where it
/// keeps them.
pub fn spawn(mut command: Command, storage: PathBuf, certs: PathBuf) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry-server");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = Vec::new();
    let addr = loop {
        let Some(line) = lines.next() else {
            let _ = child.wait();
            panic!(
                "ferry-server exited before it listened:\n{}",
                stderr.join().unwrap()
            );
        };
        let line = line.unwrap();
        stdout.push(line.clone());
        if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
            break addr.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Running {
        child,
        addr,
        stdout,
        storage,
        certs,
        stderr: Some(stderr),
    }
}

impl Running {
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its status and its log.
    pub fn wait(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.stderr.take().unwrap().join().unwrap();
                return (status, log);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("ferry-server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM) and returns its log.
    pub fn stop(self) -> String {
        self.signal("TERM");
        let (status, log) = self.wait(Duration::from_secs(15));
        assert!(status.success(), "{status:?}\n{log}");
        log
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
