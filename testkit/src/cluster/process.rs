//! A child process with its output in a log file, stopped by pid; free ports; finding
//! binaries.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How the test dependencies get installed (named in "not found" errors).
const INSTALL_HINT: &str =
    "install the test dependencies with `bash .ci/test-deps` (README: `bash .ci/test`)";

/// Bytes of a log shown in an error.
const LOG_TAIL: u64 = 4000;

/// A running child process: output to `log`, stopped on drop (the stop signal, then
/// SIGKILL after a grace period). A watchdog (`sh`) stops it the same way when this process
/// dies without dropping it (killed, aborted, or the value kept in a static).
pub struct Daemon {
    name: String,
    child: Child,
    watchdog: Option<Child>,
    log: PathBuf,
    stop_signal: &'static str,
    grace: Duration,
    stopped: bool,
}

impl Daemon {
    /// Spawns `command` with stdout and stderr appended to `log`. `stop_signal` (a `kill`
    /// signal name such as `INT` or `TERM`) asks it to stop; SIGKILL follows after `grace`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        stop_signal: &'static str,
        grace: Duration,
    ) -> io::Result<Daemon> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawning {name}: {e}")))?;
        let watchdog = watchdog(child.id(), stop_signal, grace);
        Ok(Daemon {
            name: name.to_string(),
            child,
            watchdog,
            log: log.to_path_buf(),
            stop_signal,
            grace,
            stopped: false,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last few kilobytes of its log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Its exit status when it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends signal `name` (`TERM`, `INT`, `STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, name: &str) -> io::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -{name} {} failed",
                self.pid()
            )))
        }
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// The stop signal, up to the grace period to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        if self.exited().is_none() && self.signal(self.stop_signal).is_ok() {
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    self.stopped = true;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// An error about this process that quotes its log.
    pub fn error(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{} (pid {}): {what}; log {}:\n{}",
            self.name,
            self.pid(),
            self.log.display(),
            self.log_tail()
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// Polls every second whether this process still runs; once it does not, stops `pid`
/// (`stop_signal`, then SIGKILL after `grace`). Ends by itself when `pid` exits. None when
/// `sh` cannot start (the daemon then only stops on drop).
fn watchdog(pid: u32, stop_signal: &str, grace: Duration) -> Option<Child> {
    const SCRIPT: &str = r#"
        while kill -0 "$1" 2>/dev/null; do
            if ! kill -0 "$2" 2>/dev/null; then
                kill -"$3" "$1" 2>/dev/null
                sleep "$4"
                kill -KILL "$1" 2>/dev/null
                exit 0
            fi
            sleep 1
        done"#;
    Command::new("sh")
        .args(["-c", SCRIPT, "ferry-watchdog"])
        .arg(pid.to_string())
        .arg(std::process::id().to_string())
        .arg(stop_signal)
        .arg(grace.as_secs().max(1).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// The last few kilobytes of the file at `path` (empty when unreadable).
pub(crate) fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read(path) else {
        return String::new();
    };
    let start = text.len().saturating_sub(LOG_TAIL as usize);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// A port on 127.0.0.1 free at the time of the call (the caller retries on a collision).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections, up to `limit`; fails early when `daemon`
/// exits.
pub fn wait_listening(daemon: &mut Daemon, addr: SocketAddr, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = daemon.exited() {
            return Err(daemon.error(&format!("exited ({status}) before listening on {addr}")));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(daemon.error(&format!("not listening on {addr} after {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The binary `name`: the first of `dirs` holding it, else `~/.cargo/bin`, else `PATH`.
pub(crate) fn find_binary(name: &str, dirs: &[PathBuf]) -> io::Result<PathBuf> {
    let home_cargo = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo| cargo.join("bin"));
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let candidates = dirs.iter().cloned().chain(home_cargo).chain(path_dirs);
    for dir in candidates {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("`{name}` not found (in {dirs:?}, ~/.cargo/bin or PATH): {INSTALL_HINT}"),
    ))
}

/// Runs `command` to completion; its stdout, or an error with its stderr.
pub(crate) fn run(what: &str, command: &mut Command) -> io::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{what}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}
