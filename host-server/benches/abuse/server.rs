//! The real `ferry-server` binary under attack: started in a scenario's directory on
//! 127.0.0.1 ephemeral ports, its log lines counted, its peak memory and descriptors read
//! from /proc, killed and restarted on the same port.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use procfs::process::Process;

/// The server binary of this build (release under `cargo bench`, debug under `cargo test`).
pub const BIN: &str = env!("CARGO_BIN_EXE_ferry-server");

/// Extra flags for every server the harness starts (whitespace-separated), for flags that
/// other branches add (`--max-handshakes`, `--max-files`, ...).
pub const EXTRA_ARGS_ENV: &str = "FERRY_ABUSE_SERVER_ARGS";

/// How a scenario's server is started.
#[derive(Debug, Clone, Default)]
pub struct ServerSpec {
    /// Serve the web page on an ephemeral port.
    pub web: bool,
    /// Flags beyond `--listen`, `--storage`, `--certs` and the web flags.
    pub args: Vec<String>,
    /// Storage directory instead of `ROOT/storage` (a tmpfs for the full-disk attack).
    pub storage: Option<PathBuf>,
}

/// Counters shared with the threads that read the server's output.
#[derive(Default)]
struct Output {
    lines: AtomicU64,
    /// The last lines, for reports of a failed start.
    tail: Mutex<Vec<String>>,
}

impl Output {
    fn push(&self, line: String) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        if std::env::var_os("FERRY_ABUSE_ECHO").is_some() {
            eprintln!("SERVER: {line}");
        }
        let mut tail = self.tail.lock().unwrap();
        if tail.len() >= 20 {
            tail.remove(0);
        }
        tail.push(line);
    }
}

/// A running server (restartable on the same port).
pub struct Server {
    child: Option<Child>,
    spec: ServerSpec,
    pub root: PathBuf,
    pub certs: PathBuf,
    pub storage: PathBuf,
    /// Where the web page stages downloads (the server's `TMPDIR`).
    pub scratch: PathBuf,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` of the web page, if served.
    pub web: Option<String>,
    output: Arc<Output>,
    peak_rss_kib: Arc<AtomicU64>,
    peak_fds: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
}

impl Server {
    /// Starts a server in `root` with the certificate directory `root/certs` (which must
    /// exist: see [`super::Setup`]); panics if it does not start.
    pub fn start(root: &Path, spec: ServerSpec) -> Server {
        Server::try_start(root, spec).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts a server, or says why it did not start.
    pub fn try_start(root: &Path, spec: ServerSpec) -> Result<Server, String> {
        let storage = spec.storage.clone().unwrap_or_else(|| root.join("storage"));
        let scratch = root.join("tmp");
        std::fs::create_dir_all(&scratch).expect("the scratch directory");
        let mut server = Server {
            child: None,
            spec,
            root: root.to_path_buf(),
            certs: root.join("certs"),
            storage,
            scratch,
            addr: "127.0.0.1:0".parse().unwrap(),
            web: None,
            output: Arc::default(),
            peak_rss_kib: Arc::default(),
            peak_fds: Arc::default(),
            sampling: Arc::new(AtomicBool::new(false)),
        };
        server.spawn()?;
        Ok(server)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FERRY_") {
                command.env_remove(key);
            }
        }
        let web_port = self
            .web
            .as_deref()
            .and_then(|url| url.rsplit(':').next())
            .unwrap_or("0");
        command
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--storage")
            .arg(&self.storage)
            .arg("--certs")
            .arg(&self.certs)
            .env("FERRY_DATA_DIR", self.root.join("data"))
            .env("XDG_DATA_HOME", self.root.join("xdg"))
            .env("TMPDIR", &self.scratch)
            .args(&self.spec.args);
        if self.spec.web {
            command.arg("--web").arg(format!("127.0.0.1:{web_port}"));
        } else {
            command.arg("--no-web");
        }
        if let Ok(extra) = std::env::var(EXTRA_ARGS_ENV) {
            command.args(extra.split_whitespace());
        }
        command
    }

    fn spawn(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut child = loop {
            let mut child = self
                .command()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {BIN}: {e}"))?;
            match self.read_readiness(&mut child) {
                Ok(()) => break child,
                // A restart's fixed port can be briefly busy after a kill.
                Err(_) if self.addr.port() != 0 && started.elapsed() < Duration::from_secs(10) => {
                    let _ = child.wait();
                    thread::sleep(Duration::from_millis(100));
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("ferry-server did not start: {why}"));
                }
            }
        };
        let stderr = child.stderr.take().expect("the server's stderr");
        let output = self.output.clone();
        thread::spawn(move || count_lines(stderr, &output));
        self.sampling.store(true, Ordering::Relaxed);
        self.sample_in_background(child.id());
        self.child = Some(child);
        Ok(())
    }

    /// Reads stdout up to the readiness lines, then counts the rest.
    fn read_readiness(&mut self, child: &mut Child) -> Result<(), String> {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let Some(Ok(line)) = lines.next() else {
                let mut text = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut text);
                }
                return Err(format!("exited before it listened: {text}"));
            };
            self.output.push(line.clone());
            if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
                self.addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
                if !self.spec.web {
                    break;
                }
            } else if let Some(url) = line.strip_prefix("ferry-web listening on ") {
                self.web = Some(url.trim_end_matches('/').to_string());
                break;
            }
        }
        let output = self.output.clone();
        thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                output.push(line);
            }
        });
        Ok(())
    }

    fn sample_in_background(&self, pid: u32) {
        let (rss, fds, on) = (
            self.peak_rss_kib.clone(),
            self.peak_fds.clone(),
            self.sampling.clone(),
        );
        thread::spawn(move || {
            let Ok(process) = Process::new(pid as i32) else {
                return;
            };
            while on.load(Ordering::Relaxed) {
                let Ok(status) = process.status() else {
                    return;
                };
                rss.fetch_max(status.vmhwm.unwrap_or(0), Ordering::Relaxed);
                if let Ok(count) = process.fd_count() {
                    fds.fetch_max(count as u64, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (e.g. `HUP`).
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// SIGKILL, then waits for the process.
    pub fn kill(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(mut child) = self.child.take() {
            self.read_final_peak(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports; panics if it does not start.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|why| panic!("{why}"));
    }

    fn read_final_peak(&self, pid: u32) {
        if let Ok(status) = Process::new(pid as i32).and_then(|p| p.status()) {
            self.peak_rss_kib
                .fetch_max(status.vmhwm.unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Peak resident memory (VmHWM) of every process of this server so far, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        if let Some(child) = &self.child {
            self.read_final_peak(child.id());
        }
        self.peak_rss_kib.load(Ordering::Relaxed)
    }

    /// The most descriptors seen open at once.
    pub fn peak_fds(&self) -> u64 {
        self.peak_fds.load(Ordering::Relaxed)
    }

    /// Lines the server wrote on stdout and stderr so far.
    pub fn log_lines(&self) -> u64 {
        self.output.lines.load(Ordering::Relaxed)
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.read_final_peak(child.id());
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn count_lines(stream: impl Read, output: &Output) {
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        output.push(line);
    }
}
