//! `haproxy` in the foreground (`-db`) with a configuration given as text; the caller puts
//! the ports in the text ([`super::free_port`]) and waits on its frontend with
//! [`HaProxy::wait_listening`].

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{find_binary, run, wait_listening, Daemon};

/// A running haproxy, stopped on drop.
pub struct HaProxy {
    daemon: Daemon,
    config: PathBuf,
    // Last: dropped after the daemon stopped.
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Checks `config` (`haproxy -c`) and starts haproxy with it.
    pub fn start(config: &str) -> io::Result<HaProxy> {
        Self::start_with_env(config, &[])
    }

    /// As [`HaProxy::start`], with environment variables for `"${NAME}"` in the
    /// configuration (dist/haproxy.cfg takes its addresses and paths from there).
    pub fn start_with_env(config: &str, env: &[(&str, String)]) -> io::Result<HaProxy> {
        let binary = find_binary("haproxy", &[PathBuf::from("/usr/sbin")])?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-haproxy-")
            .tempdir()?;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let with_env = |command: &mut Command| {
            for (name, value) in env {
                command.env(name, value);
            }
        };
        let mut check = Command::new(&binary);
        check.arg("-c").arg("-f").arg(&path);
        with_env(&mut check);
        run("haproxy -c (configuration check)", &mut check)?;
        let mut command = Command::new(&binary);
        command.arg("-db").arg("-f").arg(&path);
        with_env(&mut command);
        let log = dir.path().join("haproxy.log");
        // SIGUSR1: soft stop (lets connections finish), SIGKILL after the grace period.
        let daemon = Daemon::spawn("haproxy", command, &log, "USR1", Duration::from_secs(2))?;
        Ok(HaProxy {
            daemon,
            config: path,
            _dir: dir,
        })
    }

    /// Waits until `addr` (one of its frontends) accepts connections.
    pub fn wait_listening(&mut self, addr: SocketAddr) -> io::Result<()> {
        wait_listening(&mut self.daemon, addr, Duration::from_secs(10))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Where its configuration is.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Its log's tail (haproxy logs to stderr with `-db` when the configuration says
    /// `log stderr ...`).
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }
}
