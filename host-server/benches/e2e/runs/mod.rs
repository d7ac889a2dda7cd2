//! The measured cases: single transfers, concurrent clients and directory trees, each
//! verified outside its timed part. [`Bench`] holds what they share and what they measured.

mod concurrency;
mod single;
mod tree;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_certs::Ca;
use serde_json::{json, Value};

use crate::config::{size_label, Config};
use crate::digests::Digests;
use crate::procs::{run_measured, sync_disks, Meter, ProcRun};
use crate::tools::Binaries;

/// A client identity's files.
#[derive(Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn issue_identities(certs: &Path, names: &[String]) -> Vec<Identity> {
    let ca = Ca::load(certs).expect("load the CA");
    let dir = certs.join("bench");
    fs::create_dir_all(&dir).unwrap();
    names
        .iter()
        .map(|name| {
            let issued = ca
                .issue_client(name, 2)
                .expect("issue a client certificate");
            let cert = dir.join(format!("{name}.crt"));
            let key = dir.join(format!("{name}.key"));
            fs::write(&cert, issued.cert_pem).unwrap();
            fs::write(&key, issued.key_pem).unwrap();
            Identity { cert, key }
        })
        .collect()
}

/// One measured operation.
#[derive(Debug, Clone)]
pub struct Sample {
    pub section: &'static str,
    pub tool: &'static str,
    pub op: &'static str,
    pub bytes: u64,
    pub run: usize,
    pub wall: f64,
    pub client_cpu: f64,
    pub client_rss_kb: u64,
    pub server_cpu: f64,
    pub server_rss_kb: u64,
    pub ok: bool,
    pub error: Option<String>,
}

impl Sample {
    pub fn to_json(&self) -> Value {
        json!({
            "section": self.section,
            "tool": self.tool,
            "op": self.op,
            "bytes": self.bytes,
            "run": self.run,
            "wall_s": self.wall,
            "mb_per_s": self.bytes as f64 / 1e6 / self.wall.max(1e-9),
            "client_cpu_s": self.client_cpu,
            "client_peak_rss_kib": self.client_rss_kb,
            "server_cpu_s": self.server_cpu,
            "server_peak_rss_kib": self.server_rss_kb,
            "ok": self.ok,
            "error": self.error,
        })
    }
}

/// What the cases share (binaries, work directory, certificates) and what they measured.
pub struct Bench {
    pub config: Config,
    bins: Binaries,
    work: PathBuf,
    logs: PathBuf,
    certs: PathBuf,
    ca: PathBuf,
    /// The client identity of the single transfers.
    local: Identity,
    digests: Digests,
    pub started: Instant,
    pub samples: Vec<Sample>,
    /// One JSON object per concurrency scenario and run.
    pub concurrency: Vec<Value>,
    pub notes: Vec<String>,
    /// Numbers the log files in the order of the measurements.
    seq: usize,
}

fn timeout_for(bytes: u64) -> Duration {
    // At least 5 MB/s, and a minute for start-up and small files.
    Duration::from_secs(60 + bytes / 5_000_000)
}

impl Bench {
    /// `work` holds src/, dl/, tmp/ and logs/; `certs` is ferry-server's certificate directory.
    pub fn new(config: Config, bins: Binaries, work: &Path, certs: &Path) -> Bench {
        Bench {
            logs: work.join("logs"),
            work: work.to_path_buf(),
            certs: certs.to_path_buf(),
            ca: certs.join("ca.crt"),
            local: Identity {
                cert: certs.join("clients").join("local.crt"),
                key: certs.join("clients").join("local.key"),
            },
            digests: Digests::default(),
            started: Instant::now(),
            samples: Vec::new(),
            concurrency: Vec::new(),
            notes: Vec::new(),
            seq: 0,
            config,
            bins,
        }
    }

    /// How many measurements failed their verification.
    pub fn failures(&self) -> usize {
        self.samples.iter().filter(|s| !s.ok).count()
            + self
                .concurrency
                .iter()
                .filter(|c| c["verified"] != json!(true))
                .count()
    }

    fn over_budget(&self) -> bool {
        self.started.elapsed() > self.config.budget
    }

    fn tag(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{:05}-{what}", self.seq)
    }

    fn ferry(&self, addr: SocketAddr, identity: &Identity) -> Command {
        let mut cmd = Command::new(&self.bins.client);
        cmd.arg("--server")
            .arg(addr.to_string())
            .arg("--ca")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&identity.cert)
            .arg("--key")
            .arg(&identity.key)
            .arg("--json")
            .arg("--quiet")
            .env("TMPDIR", self.work.join("tmp"))
            .env("FERRY_LOG", "error");
        cmd
    }

    fn curl(&self, identity: &Identity) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["--http1.1", "-sS", "-f", "--cacert"])
            .arg(&self.ca)
            .arg("--cert")
            .arg(&identity.cert)
            .arg("--key")
            .arg(&identity.key);
        cmd
    }

    /// Runs one client command against a server, with the server's meter around it.
    fn measure(
        &mut self,
        cmd: &mut Command,
        server_pid: i32,
        dynamic: bool,
        what: &str,
        bytes: u64,
    ) -> (ProcRun, f64, u64) {
        sync_disks();
        let tag = self.tag(what);
        let meter = Meter::start(server_pid, dynamic);
        let run = run_measured(cmd, &self.logs, &tag, timeout_for(bytes));
        let (server_cpu, server_rss) = meter.finish();
        (run, server_cpu, server_rss)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        section: &'static str,
        tool: &'static str,
        op: &'static str,
        bytes: u64,
        run_index: usize,
        run: &ProcRun,
        server: (f64, u64),
        verified: Result<(), String>,
    ) {
        let verified = if run.ok() {
            verified
        } else {
            Err(run.failure(&format!("{tool} {op}")))
        };
        let sample = Sample {
            section,
            tool,
            op,
            bytes,
            run: run_index,
            wall: run.wall,
            client_cpu: run.cpu(),
            client_rss_kb: run.maxrss_kb,
            server_cpu: server.0,
            server_rss_kb: server.1,
            ok: verified.is_ok(),
            error: verified.err(),
        };
        eprintln!(
            "e2e: run {} {:>5} {:<9} {:>8}: {:>7.2} s {:>8.1} MB/s  client cpu {:.2} s  server cpu {:.2} s  {}",
            run_index + 1,
            tool,
            op,
            size_label(bytes),
            sample.wall,
            bytes as f64 / 1e6 / sample.wall.max(1e-9),
            sample.client_cpu,
            sample.server_cpu,
            match &sample.error {
                None => "verified".to_string(),
                Some(e) => format!("FAILED: {e}"),
            }
        );
        self.samples.push(sample);
    }
}
