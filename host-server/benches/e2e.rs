//! End-to-end benchmark: Ferry beside the tools people use today, on the same machine, in
//! the same run.
//!
//! ```text
//! cargo bench -p ferry-server --bench e2e                      # full run (5-6 min on 2 cores)
//! FERRY_BENCH_QUICK=1 cargo bench -p ferry-server --bench e2e  # smoke check (under a minute)
//! ```
//!
//! What it does, all on 127.0.0.1 inside a temporary directory that is removed at the end:
//!
//! - installs what is missing from Debian's packages (`nginx`, `openssh-server`, `curl`,
//!   `rsync`) when it runs as root with `apt-get`;
//! - starts `ferry-server --no-web` (throwaway CA, server and client certificates), nginx (TLS 1.3 only,
//!   `ssl_verify_client on` with the same CA and server certificate, `dav_methods PUT`,
//!   `sendfile on`) and sshd on a high port (throwaway host and user keys, cipher
//!   `aes128-gcm@openssh.com`), and stops each of them by its process id;
//! - single transfers of 64 MiB and 1 GiB files, tools alternating within each run, median of
//!   the runs: `ferry upload`, `ferry download`, `ferry roundtrip`; `curl` PUT and GET against
//!   nginx with a client certificate; `scp` and `sftp` up and down. For each: MB/s
//!   (10^6 bytes/s), CPU seconds and peak RSS of the client (`wait4` rusage, children
//!   included) and of the server (`/proc` utime+stime deltas of the server's process tree,
//!   peak RSS from `VmHWM`, reset through `clear_refs` before each measurement and sampled
//!   every 20 ms for processes that come and go, as sshd's);
//! - concurrency: 1, 16 and 256 `ferry upload` / `curl` processes at once, each with its own
//!   client certificate, each moving 1 MiB or 16 MiB: aggregate MB/s, p50 and p99 of the
//!   per-transfer time, server CPU and peak RSS (a fresh `ferry-server` per scenario);
//! - many small files: 1000 files of 4 KiB in one `ferry upload` (its default 4 connections),
//!   against `scp -r` and `rsync -a` over ssh;
//! - verifies every transfer, outside the timed part: Ferry's exit code and whole-file digest
//!   (against the digest computed here) and the bytes stored; every other tool's copy is
//!   compared byte for byte with the source.
//!
//! Output: markdown tables on stdout, progress on stderr, everything (including every raw
//! sample) as JSON in `$CARGO_TARGET_DIR/ferry-bench/e2e.json` or `FERRY_BENCH_OUT`.
//!
//! Knobs (environment): `FERRY_BENCH_QUICK=1` (64 MiB only, 1 and 16 clients, 1 run),
//! `FERRY_BENCH_RUNS=N` (default 5), `FERRY_BENCH_SIZES=64M,1G`, `FERRY_BENCH_CLIENTS=1,16,256`,
//! `FERRY_BENCH_ONLY=single,concurrency,small`, `FERRY_BENCH_TOOLS=ferry,nginx,scp,sftp,rsync`,
//! `FERRY_BENCH_BUDGET_SECS` (default 1500: no new run starts after it), `FERRY_BENCH_DIR`
//! (where the temporary directory goes), `FERRY_BENCH_KEEP=1` (keep it), `FERRY_BENCH_OUT`.
//!
//! The benchmark needs the release `ferry` binary beside `ferry-server`; it builds it with
//! `cargo build --release -p ferry-client --bin ferry` into the same target directory when it
//! is missing. Without `--bench` on its command line (as under `cargo test --all-targets`)
//! it does nothing.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferry_certs::Ca;
use ferry_core::digest::{chunk_digest, FileDigest};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;
const SMALL_FILE: usize = 4096;
const SSH_CIPHER: &str = "aes128-gcm@openssh.com";

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

struct Config {
    quick: bool,
    runs: usize,
    sizes: Vec<u64>,
    clients: Vec<usize>,
    client_sizes: Vec<u64>,
    small_files: usize,
    budget: Duration,
    out: PathBuf,
    work_root: PathBuf,
    keep: bool,
    sections: Vec<String>,
    tools: Vec<String>,
}

fn env_list(name: &str) -> Option<Vec<String>> {
    let value = std::env::var(name).ok()?;
    let items: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    (!items.is_empty()).then_some(items)
}

fn parse_size(text: &str) -> u64 {
    let text = text.trim().to_ascii_uppercase();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text.as_str(), ""),
    };
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("bad size {text:?}"));
    match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => n,
        "K" => n << 10,
        "M" => n << 20,
        "G" => n << 30,
        other => panic!("bad size unit {other:?} in {text:?}"),
    }
}

fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes >> 20)
    } else if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

impl Config {
    fn from_env(target_dir: &Path) -> Config {
        let flag = |name: &str| {
            std::env::var(name)
                .map(|v| !v.is_empty() && v != "0")
                .unwrap_or(false)
        };
        let quick = flag("FERRY_BENCH_QUICK");
        let runs = std::env::var("FERRY_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 1 } else { 5 });
        let sizes = env_list("FERRY_BENCH_SIZES")
            .map(|v| v.iter().map(|s| parse_size(s)).collect())
            .unwrap_or_else(|| {
                if quick {
                    vec![64 * MIB]
                } else {
                    vec![64 * MIB, 1 << 30]
                }
            });
        let clients = env_list("FERRY_BENCH_CLIENTS")
            .map(|v| {
                v.iter()
                    .map(|s| s.parse().expect("FERRY_BENCH_CLIENTS"))
                    .collect()
            })
            .unwrap_or_else(|| if quick { vec![1, 16] } else { vec![1, 16, 256] });
        let budget = std::env::var("FERRY_BENCH_BUDGET_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1500));
        let out = std::env::var_os("FERRY_BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir.join("ferry-bench").join("e2e.json"));
        let work_root = std::env::var_os("FERRY_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Config {
            quick,
            runs: runs.max(1),
            sizes,
            clients,
            client_sizes: vec![MIB, 16 * MIB],
            small_files: 1000,
            budget,
            out,
            work_root,
            keep: flag("FERRY_BENCH_KEEP"),
            sections: env_list("FERRY_BENCH_ONLY")
                .unwrap_or_else(|| all(&["single", "concurrency", "small"])),
            tools: env_list("FERRY_BENCH_TOOLS")
                .unwrap_or_else(|| all(&["ferry", "nginx", "scp", "sftp", "rsync"])),
        }
    }

    fn section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s == name)
    }

    fn tool(&self, name: &str) -> bool {
        self.tools.iter().any(|s| s == name)
    }
}

// ---------------------------------------------------------------------------------------
// Processes: measured clients, servers, /proc
// ---------------------------------------------------------------------------------------

/// One measured client process.
#[derive(Debug, Clone, Default)]
struct ProcRun {
    wall: f64,
    user: f64,
    sys: f64,
    maxrss_kb: u64,
    /// Exit code, or 128 + signal.
    exit: i32,
    timed_out: bool,
    stdout: String,
    stderr: String,
    /// Seconds since the benchmark's epoch at spawn and at exit (for aggregate rates).
    started: f64,
    ended: f64,
}

impl ProcRun {
    fn ok(&self) -> bool {
        self.exit == 0 && !self.timed_out
    }

    fn cpu(&self) -> f64 {
        self.user + self.sys
    }

    fn failure(&self, what: &str) -> String {
        let tail: String = self
            .stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        if self.timed_out {
            format!("{what}: timed out after {:.0} s", self.wall)
        } else {
            format!("{what}: exit {}: {tail}", self.exit)
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn timeval(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

/// Runs `cmd` to its end (killed with its process group after `timeout`), with stdout and
/// stderr in files under `logs`; wall time, CPU and peak RSS from `wait4`.
fn run_measured(cmd: &mut Command, logs: &Path, tag: &str, timeout: Duration) -> ProcRun {
    let out_path = logs.join(format!("{tag}.out"));
    let err_path = logs.join(format!("{tag}.err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create a log file"))
        .stderr(File::create(&err_path).expect("create a log file"))
        .process_group(0);
    let started = Instant::now();
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return ProcRun {
                exit: 127,
                stderr: format!("cannot start {:?}: {e}", cmd.get_program()),
                ..ProcRun::default()
            }
        }
    };
    let pid = child.id() as i32;
    // The child is reaped by wait4 below, not by `Child`.
    drop(child);
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        let timed_out = timed_out.clone();
        thread::spawn(move || {
            let (lock, cv) = &*done;
            let deadline = started + timeout;
            let mut finished = lock.lock().unwrap();
            while !*finished {
                let now = Instant::now();
                if now >= deadline {
                    timed_out.store(true, Ordering::SeqCst);
                    // SAFETY: plain syscalls. The child is not reaped before `finished` is
                    // set, so `pid` (and its group) still name it, at worst as a zombie.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                        libc::kill(pid, libc::SIGKILL);
                    }
                    break;
                }
                finished = cv.wait_timeout(finished, deadline - now).unwrap().0;
            }
        })
    };
    // Wait for the exit without reaping, so that the watchdog can never signal a reused pid.
    loop {
        // SAFETY: siginfo_t is plain data; waitid writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        assert!(
            error.kind() == ErrorKind::Interrupted,
            "waitid({pid}): {error}"
        );
    }
    let ended = Instant::now();
    {
        let (lock, cv) = &*done;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    watchdog.join().unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 writes it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointers; `pid` is our exited, not yet reaped child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let exit = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    ProcRun {
        wall: (ended - started).as_secs_f64(),
        user: timeval(usage.ru_utime),
        sys: timeval(usage.ru_stime),
        maxrss_kb: usage.ru_maxrss as u64,
        exit,
        timed_out: timed_out.load(Ordering::SeqCst),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        started: (started - epoch()).as_secs_f64(),
        ended: (ended - epoch()).as_secs_f64(),
    }
}

/// Runs a helper command (not measured); panics on failure.
fn run_plain(cmd: &mut Command) -> String {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn sync_disks() {
    let _ = Command::new("sync").status();
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Fields of /proc/PID/stat after the command name: (ppid, utime+stime+cutime+cstime).
fn proc_stat(pid: i32) -> Option<(i32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let mut ticks = 0u64;
    for i in 11..=14 {
        ticks += fields.get(i)?.parse::<u64>().ok()?;
    }
    Some((ppid, ticks))
}

/// `pid` and all its descendants (scanning /proc: this kernel has no `children` files).
fn process_tree(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = proc_stat(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for &(pid, ppid) in &parent_of {
            if ppid == parent && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        i += 1;
    }
    tree
}

fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU and peak memory of a server's process tree over one measurement.
struct Meter {
    root: i32,
    dynamic: bool,
    persistent: usize,
    start_ticks: u64,
    peaks: Arc<Mutex<HashMap<i32, u64>>>,
    stop: Arc<AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
}

fn sample_peaks(pids: &[i32], peaks: &Mutex<HashMap<i32, u64>>) {
    let mut peaks = peaks.lock().unwrap();
    for &pid in pids {
        if let Some(kb) = status_kb(pid, "VmHWM") {
            let peak = peaks.entry(pid).or_default();
            *peak = (*peak).max(kb);
        }
    }
}

impl Meter {
    /// `dynamic`: the server forks per connection (sshd), so its tree is re-read while
    /// sampling and the measurement waits for the connection processes to end.
    fn start(root: i32, dynamic: bool) -> Meter {
        let pids = process_tree(root);
        for &pid in &pids {
            // Resets VmHWM to the current RSS.
            let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
        let start_ticks = pids.iter().filter_map(|&p| proc_stat(p)).map(|s| s.1).sum();
        let peaks = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let peaks = peaks.clone();
            let stop = stop.clone();
            let fixed = pids.clone();
            thread::spawn(move || loop {
                let pids = if dynamic {
                    process_tree(root)
                } else {
                    fixed.clone()
                };
                sample_peaks(&pids, &peaks);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            })
        };
        Meter {
            root,
            dynamic,
            persistent: pids.len(),
            start_ticks,
            peaks,
            stop,
            sampler: Some(sampler),
        }
    }

    /// (server CPU seconds, peak RSS in KiB summed over the tree's processes).
    fn finish(mut self) -> (f64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(sampler) = self.sampler.take() {
            sampler.join().unwrap();
        }
        let mut pids = process_tree(self.root);
        sample_peaks(&pids, &self.peaks);
        if self.dynamic {
            // Let the per-connection processes end and be reaped (their CPU time then
            // shows in the root's cutime/cstime).
            let until = Instant::now() + Duration::from_secs(5);
            while pids.len() > self.persistent && Instant::now() < until {
                thread::sleep(Duration::from_millis(10));
                pids = process_tree(self.root);
            }
        }
        let end_ticks: u64 = pids.iter().filter_map(|&p| proc_stat(p)).map(|s| s.1).sum();
        let cpu = end_ticks.saturating_sub(self.start_ticks) as f64 / clk_tck();
        let peak = self.peaks.lock().unwrap().values().sum();
        (cpu, peak)
    }
}

/// A server we started; stopped by its process id when dropped.
struct Service {
    name: String,
    child: Child,
}

impl Service {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let pid = self.pid();
        let tree = process_tree(pid);
        // SAFETY: plain syscall on our own, not yet reaped child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= until => {
                    eprintln!(
                        "e2e: {} ({pid}) did not stop on SIGTERM: SIGKILL",
                        self.name
                    );
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
            }
        }
        // Processes it started (nginx workers) must not outlive it.
        for other in tree.into_iter().skip(1) {
            if proc_stat(other).is_some_and(|(ppid, _)| ppid == pid || ppid == 1) {
                // SAFETY: plain syscall; a worker of the server we just stopped.
                unsafe {
                    libc::kill(other, libc::SIGKILL);
                }
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_for_port(port: u16, service: &mut Service, log: &Path) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = service.child.try_wait() {
            panic!(
                "{} exited ({status}) before it listened:\n{}",
                service.name,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not listen on port {port}", service.name);
}

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

fn have(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Installs the Debian packages of the tools that are missing (as root, with apt-get).
fn ensure_tools(config: &Config) {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    if config.tool("nginx") {
        wanted.extend([("/usr/sbin/nginx", "nginx"), ("curl", "curl")]);
    }
    if config.tool("scp") || config.tool("sftp") || config.tool("rsync") {
        wanted.extend([
            ("/usr/sbin/sshd", "openssh-server"),
            ("/usr/lib/openssh/sftp-server", "openssh-sftp-server"),
            ("ssh", "openssh-client"),
            ("scp", "openssh-client"),
            ("sftp", "openssh-client"),
            ("ssh-keygen", "openssh-client"),
        ]);
    }
    if config.tool("rsync") {
        wanted.push(("rsync", "rsync"));
    }
    let mut missing: Vec<&str> = wanted
        .iter()
        .filter(|(program, _)| !have(program))
        .map(|(_, package)| *package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root && have("apt-get"),
        "missing tools: install the Debian packages {missing:?} (or run as root with apt-get)"
    );
    eprintln!("e2e: installing {missing:?} with apt-get");
    run_plain(Command::new("apt-get").args(["update", "-qq"]));
    run_plain(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
}

/// `ferry` and `ferry-server` from the same target directory and profile.
struct Binaries {
    server: PathBuf,
    client: PathBuf,
}

fn binaries() -> Binaries {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_ferry-server"));
    let client = server.with_file_name("ferry");
    if !client.exists() {
        let profile_dir = server.parent().expect("a target profile directory");
        let target_dir = profile_dir.parent().expect("a target directory");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("e2e: building {}", client.display());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "ferry-client", "--bin", "ferry"])
            .env("CARGO_TARGET_DIR", target_dir);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo");
        assert!(status.success(), "cargo build of ferry failed");
    }
    assert!(client.exists(), "{} is missing", client.display());
    Binaries { server, client }
}

// ---------------------------------------------------------------------------------------
// Data and verification
// ---------------------------------------------------------------------------------------

/// A file of `size` pseudo-random bytes (xorshift64*; incompressible, reproducible).
fn write_random(path: &Path, size: u64, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> Result<(), String> {
    let open = |p: &Path| File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (la, lb) = (
        fa.metadata().map(|m| m.len()).unwrap_or(0),
        fb.metadata().map(|m| m.len()).unwrap_or(1),
    );
    if la != lb {
        return Err(format!(
            "{}: {lb} bytes, expected {la} like {}",
            b.display(),
            a.display()
        ));
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(|e| e.to_string())?;
        let m = read_full(&mut fb, &mut bb).map_err(|e| e.to_string())?;
        if n != m || ba[..n] != bb[..m] {
            return Err(format!(
                "{} differs from {} near offset {offset}",
                b.display(),
                a.display()
            ));
        }
        if n == 0 {
            return Ok(());
        }
        offset += n as u64;
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Ferry's whole-file digest of a file (see `ferry_core::digest`), hex.
fn ferry_digest(path: &Path, chunk_size: u32) -> String {
    let size = fs::metadata(path).unwrap().len();
    let mut digest = FileDigest::new(chunk_size, size);
    let mut file = File::open(path).unwrap();
    let mut chunk = vec![0u8; chunk_size as usize];
    loop {
        let n = read_full(&mut file, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        digest.push(&chunk_digest(&chunk[..n]));
        if n < chunk.len() {
            break;
        }
    }
    ferry_tokio::client::hex(&digest.finish())
}

/// Expected digests, computed once per (file, chunk size).
#[derive(Default)]
struct Digests(Mutex<HashMap<(PathBuf, u32), String>>);

impl Digests {
    fn get(&self, path: &Path, chunk_size: u32) -> String {
        let key = (path.to_path_buf(), chunk_size);
        if let Some(hex) = self.0.lock().unwrap().get(&key) {
            return hex.clone();
        }
        let hex = ferry_digest(path, chunk_size);
        self.0.lock().unwrap().insert(key, hex.clone());
        hex
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line.trim()).ok())
        .collect()
}

/// Checks one `ferry --json` transfer report against the source file.
fn check_ferry_report(report: &Value, source: &Path, digests: &Digests) -> Result<(), String> {
    if report["ok"] != json!(true) {
        return Err(format!("not ok: {report}"));
    }
    let chunk = report["chunk_size"]
        .as_u64()
        .ok_or_else(|| format!("no chunk_size in {report}"))? as u32;
    let expected = digests.get(source, chunk);
    if report["digest"].as_str() != Some(expected.as_str()) {
        return Err(format!(
            "digest {} != expected {expected}",
            report["digest"]
        ));
    }
    Ok(())
}

/// Where Ferry stored `name` for some identity: STORAGE/<fingerprint>/files/<name>.
fn ferry_stored(storage: &Path, name: &str) -> Option<PathBuf> {
    fs::read_dir(storage)
        .ok()?
        .flatten()
        .map(|e| e.path().join("files").join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------

struct FerryServer {
    service: Service,
    addr: SocketAddr,
    storage: PathBuf,
}

fn start_ferry(bin: &Path, storage: &Path, certs: &Path, log: &Path) -> FerryServer {
    let child = Command::new(bin)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--storage")
        .arg(storage)
        .arg("--certs")
        .arg(certs)
        // The file server alone: no web page beside it.
        .arg("--no-web")
        .env("FERRY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .expect("start ferry-server");
    let mut service = Service {
        name: "ferry-server".into(),
        child,
    };
    let stdout = service.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
                    break addr.trim().parse().expect("an address");
                }
            }
            _ => panic!(
                "ferry-server exited before it listened:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ),
        }
    };
    thread::spawn(move || for _ in lines {});
    FerryServer {
        service,
        addr,
        storage: storage.to_path_buf(),
    }
}

struct Nginx {
    service: Service,
    port: u16,
    root: PathBuf,
}

fn start_nginx(dir: &Path, certs: &Path) -> Nginx {
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::create_dir_all(dir.join("body")).unwrap();
    fs::create_dir_all(dir.join("logs")).unwrap();
    let port = free_port();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 2;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certs}/server.crt;
        ssl_certificate_key {certs}/server.key;
        ssl_protocols TLSv1.3;
        ssl_client_certificate {certs}/ca.crt;
        ssl_verify_client on;
        client_max_body_size 0;
        location / {{
            root {dir}/www;
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
"#,
        dir = dir.display(),
        certs = certs.display(),
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).unwrap();
    let log = dir.join("error.log");
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("start nginx");
    let mut service = Service {
        name: "nginx".into(),
        child,
    };
    wait_for_port(port, &mut service, &dir.join("stderr.log"));
    // Both workers up before any measurement.
    let until = Instant::now() + Duration::from_secs(10);
    while process_tree(service.pid()).len() < 3 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        service,
        port,
        root: dir.join("www"),
    }
}

struct Sshd {
    service: Service,
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    user: String,
    remote: PathBuf,
}

fn start_sshd(dir: &Path) -> Sshd {
    fs::create_dir_all(dir).unwrap();
    let remote = dir.join("remote");
    fs::create_dir_all(&remote).unwrap();
    let host_key = dir.join("host_ed25519");
    let key = dir.join("user_ed25519");
    for path in [&host_key, &key] {
        run_plain(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-e2e", "-f"])
                .arg(path),
        );
    }
    fs::copy(dir.join("user_ed25519.pub"), dir.join("authorized_keys")).unwrap();
    let port = free_port();
    let host_pub = fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
    let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let known_hosts = dir.join("known_hosts");
    fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
    )
    .unwrap();
    let user = run_plain(Command::new("id").arg("-un")).trim().to_string();
    let sftp_server = if Path::new("/usr/lib/openssh/sftp-server").exists() {
        "/usr/lib/openssh/sftp-server"
    } else {
        "internal-sftp"
    };
    let conf = format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
MaxStartups 64:30:128
Ciphers {SSH_CIPHER}
Subsystem sftp {sftp_server}
",
        host_key = host_key.display(),
        dir = dir.display(),
    );
    let conf_path = dir.join("sshd_config");
    fs::write(&conf_path, conf).unwrap();
    // sshd's privilege separation directory.
    let _ = fs::create_dir_all("/run/sshd");
    let log = dir.join("sshd.log");
    let child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("start sshd");
    let mut service = Service {
        name: "sshd".into(),
        child,
    };
    wait_for_port(port, &mut service, &log);
    Sshd {
        service,
        port,
        key,
        known_hosts,
        user,
        remote,
    }
}

impl Sshd {
    /// Options for ssh, scp and sftp (`-F /dev/null`: no user configuration).
    fn options(&self) -> Vec<String> {
        let mut options = vec!["-F".to_string(), "/dev/null".to_string()];
        options.push("-i".into());
        options.push(self.key.display().to_string());
        options.push("-c".into());
        options.push(SSH_CIPHER.into());
        for option in [
            "IdentitiesOnly=yes".to_string(),
            "BatchMode=yes".to_string(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "Compression=no".to_string(),
            "LogLevel=ERROR".to_string(),
        ] {
            options.push("-o".into());
            options.push(option);
        }
        options
    }

    fn target(&self, path: &Path) -> String {
        format!("{}@127.0.0.1:{}", self.user, path.display())
    }

    fn scp(&self) -> Command {
        let mut cmd = Command::new("scp");
        cmd.arg("-q")
            .arg("-P")
            .arg(self.port.to_string())
            .args(self.options());
        cmd
    }

    fn sftp(&self, batch: &Path) -> Command {
        let mut cmd = Command::new("sftp");
        cmd.arg("-q")
            .arg("-P")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(batch)
            .args(self.options())
            .arg(format!("{}@127.0.0.1", self.user));
        cmd
    }

    fn rsync(&self) -> Command {
        let mut ssh = format!("ssh -p {}", self.port);
        for option in self.options() {
            ssh.push(' ');
            ssh.push_str(&option);
        }
        let mut cmd = Command::new("rsync");
        cmd.arg("-a").arg("-e").arg(ssh);
        cmd
    }
}

// ---------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------

/// A client identity's files.
#[derive(Clone)]
struct Identity {
    cert: PathBuf,
    key: PathBuf,
}

fn issue_identities(certs: &Path, names: &[String]) -> Vec<Identity> {
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
struct Sample {
    section: &'static str,
    tool: &'static str,
    op: &'static str,
    bytes: u64,
    run: usize,
    wall: f64,
    client_cpu: f64,
    client_rss_kb: u64,
    server_cpu: f64,
    server_rss_kb: u64,
    ok: bool,
    error: Option<String>,
}

impl Sample {
    fn to_json(&self) -> Value {
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

struct Bench {
    config: Config,
    bins: Binaries,
    work: PathBuf,
    logs: PathBuf,
    certs: PathBuf,
    ca: PathBuf,
    local: Identity,
    digests: Digests,
    started: Instant,
    samples: Vec<Sample>,
    concurrency: Vec<Value>,
    notes: Vec<String>,
    seq: usize,
}

fn timeout_for(bytes: u64) -> Duration {
    // At least 5 MB/s, and a minute for start-up and small files.
    Duration::from_secs(60 + bytes / 5_000_000)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Bench {
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

    // --- single transfers ---------------------------------------------------------------

    fn single(&mut self, ferry: &FerryServer, nginx: Option<&Nginx>, sshd: Option<&Sshd>) {
        let sources: Vec<(u64, PathBuf)> = self
            .config
            .sizes
            .clone()
            .into_iter()
            .map(|size| {
                let path = self.work.join("src").join(format!("single-{size}.bin"));
                write_random(&path, size, size);
                (size, path)
            })
            .collect();
        sync_disks();
        let tools: Vec<&'static str> = ["ferry", "nginx", "scp", "sftp"]
            .into_iter()
            .filter(|t| self.config.tool(t))
            .filter(|t| match *t {
                "nginx" => nginx.is_some(),
                "scp" | "sftp" => sshd.is_some(),
                _ => true,
            })
            .collect();
        for run in 0..self.config.runs {
            if self.over_budget() {
                self.notes.push(format!(
                    "single transfers: stopped before run {} (budget)",
                    run + 1
                ));
                break;
            }
            for (size, source) in &sources {
                // Alternate the order of the tools from run to run.
                let mut order = tools.clone();
                order.rotate_left(run % tools.len().max(1));
                for op in ["upload", "download"] {
                    for tool in &order {
                        match *tool {
                            "ferry" => self.ferry_single(ferry, op, *size, source, run),
                            "nginx" => self.nginx_single(nginx.unwrap(), op, *size, source, run),
                            "scp" => self.scp_single(sshd.unwrap(), op, *size, source, run),
                            "sftp" => self.sftp_single(sshd.unwrap(), op, *size, source, run),
                            _ => unreachable!(),
                        }
                    }
                }
                if tools.contains(&"ferry") {
                    self.ferry_single(ferry, "roundtrip", *size, source, run);
                }
                self.cleanup_single(ferry, nginx, sshd, *size, run);
            }
        }
    }

    fn name(tool: &str, size: u64, run: usize) -> String {
        format!("{tool}-{size}-r{run}.bin")
    }

    fn ferry_single(
        &mut self,
        server: &FerryServer,
        op: &'static str,
        size: u64,
        source: &Path,
        run: usize,
    ) {
        let name = Self::name(if op == "roundtrip" { "rt" } else { "ferry" }, size, run);
        let dest = self.work.join("dl").join(&name);
        let mut cmd = self.ferry(server.addr, &self.local);
        match op {
            "upload" | "roundtrip" => {
                cmd.arg(op).arg(source).arg("--name").arg(&name);
            }
            _ => {
                cmd.arg("download").arg(&name).arg("-o").arg(&dest);
            }
        }
        let (result, cpu, rss) = self.measure(&mut cmd, server.service.pid(), false, op, size);
        let verified = (|| {
            let reports = json_lines(&result.stdout);
            let report = reports.first().ok_or("no JSON report")?;
            match op {
                "roundtrip" => {
                    if report["identical"] != json!(true) {
                        return Err(format!("not identical: {report}"));
                    }
                    let mut upload = report["upload"].clone();
                    upload["ok"] = json!(true);
                    upload["digest"] = report["uploaded_digest"].clone();
                    check_ferry_report(&upload, source, &self.digests)?;
                    let mut download = report["download"].clone();
                    download["ok"] = json!(true);
                    download["digest"] = report["downloaded_digest"].clone();
                    check_ferry_report(&download, source, &self.digests)?;
                }
                _ => check_ferry_report(report, source, &self.digests)?,
            }
            match op {
                "download" => {
                    let checked = same_bytes(source, &dest);
                    let _ = fs::remove_file(&dest);
                    checked
                }
                _ => {
                    let stored = ferry_stored(&server.storage, &name)
                        .ok_or_else(|| format!("{name} not in the storage"))?;
                    same_bytes(source, &stored)
                }
            }
        })();
        self.record(
            "single",
            "ferry",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    fn nginx_single(
        &mut self,
        nginx: &Nginx,
        op: &'static str,
        size: u64,
        source: &Path,
        run: usize,
    ) {
        let name = Self::name("nginx", size, run);
        let url = format!("https://127.0.0.1:{}/{name}", nginx.port);
        let stored = nginx.root.join(&name);
        let dest = self.work.join("dl").join(&name);
        let mut cmd = self.curl(&self.local);
        if op == "upload" {
            cmd.arg("-T")
                .arg(source)
                .arg("-o")
                .arg("/dev/null")
                .arg(&url);
        } else {
            cmd.arg("-o").arg(&dest).arg(&url);
        }
        let (result, cpu, rss) = self.measure(&mut cmd, nginx.service.pid(), false, op, size);
        let verified = if op == "upload" {
            same_bytes(source, &stored)
        } else {
            let checked = same_bytes(source, &dest);
            let _ = fs::remove_file(&dest);
            checked
        };
        self.record(
            "single",
            "nginx",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    fn scp_single(&mut self, sshd: &Sshd, op: &'static str, size: u64, source: &Path, run: usize) {
        let name = Self::name("scp", size, run);
        let remote = sshd.remote.join(&name);
        let dest = self.work.join("dl").join(&name);
        let mut cmd = sshd.scp();
        if op == "upload" {
            cmd.arg(source).arg(sshd.target(&remote));
        } else {
            cmd.arg(sshd.target(&remote)).arg(&dest);
        }
        let (result, cpu, rss) = self.measure(&mut cmd, sshd.service.pid(), true, op, size);
        let verified = if op == "upload" {
            same_bytes(source, &remote)
        } else {
            let checked = same_bytes(source, &dest);
            let _ = fs::remove_file(&dest);
            checked
        };
        self.record(
            "single",
            "scp",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    fn sftp_single(&mut self, sshd: &Sshd, op: &'static str, size: u64, source: &Path, run: usize) {
        let name = Self::name("sftp", size, run);
        let remote = sshd.remote.join(&name);
        let dest = self.work.join("dl").join(&name);
        let batch = self.work.join("tmp").join(format!("sftp-{op}.batch"));
        let line = if op == "upload" {
            format!("put {} {}\n", source.display(), remote.display())
        } else {
            format!("get {} {}\n", remote.display(), dest.display())
        };
        fs::write(&batch, line).unwrap();
        let mut cmd = sshd.sftp(&batch);
        let (result, cpu, rss) = self.measure(&mut cmd, sshd.service.pid(), true, op, size);
        let verified = if op == "upload" {
            same_bytes(source, &remote)
        } else {
            let checked = same_bytes(source, &dest);
            let _ = fs::remove_file(&dest);
            checked
        };
        self.record(
            "single",
            "sftp",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    /// Frees the disk between runs (not timed).
    fn cleanup_single(
        &mut self,
        ferry: &FerryServer,
        nginx: Option<&Nginx>,
        sshd: Option<&Sshd>,
        size: u64,
        run: usize,
    ) {
        let names: Vec<String> = ["ferry", "rt"]
            .iter()
            .map(|t| Self::name(t, size, run))
            .filter(|n| ferry_stored(&ferry.storage, n).is_some())
            .collect();
        if !names.is_empty() {
            let mut cmd = self.ferry(ferry.addr, &self.local);
            cmd.arg("delete").args(&names);
            let tag = self.tag("delete");
            let result = run_measured(&mut cmd, &self.logs, &tag, Duration::from_secs(60));
            if !result.ok() {
                self.notes.push(result.failure("ferry delete"));
            }
        }
        if let Some(nginx) = nginx {
            let _ = fs::remove_file(nginx.root.join(Self::name("nginx", size, run)));
        }
        if let Some(sshd) = sshd {
            for tool in ["scp", "sftp"] {
                let _ = fs::remove_file(sshd.remote.join(Self::name(tool, size, run)));
            }
        }
    }

    // --- concurrency --------------------------------------------------------------------

    fn concurrency(&mut self, nginx: Option<&Nginx>, identities: &[Identity]) {
        let sources: Vec<(u64, PathBuf)> = self
            .config
            .client_sizes
            .clone()
            .into_iter()
            .map(|size| {
                let path = self.work.join("src").join(format!("conc-{size}.bin"));
                write_random(&path, size, size + 7);
                (size, path)
            })
            .collect();
        sync_disks();
        let mut tools = Vec::new();
        if self.config.tool("ferry") {
            tools.push("ferry");
        }
        if self.config.tool("nginx") && nginx.is_some() {
            tools.push("nginx");
        }
        'runs: for run in 0..self.config.runs {
            for &clients in &self.config.clients.clone() {
                for (size, source) in &sources {
                    if self.over_budget() {
                        self.notes
                            .push(format!("concurrency: stopped in run {} (budget)", run + 1));
                        break 'runs;
                    }
                    let mut order = tools.clone();
                    order.rotate_left(run % tools.len().max(1));
                    for tool in order {
                        let result = match tool {
                            "ferry" => {
                                self.ferry_concurrent(clients, *size, source, run, identities)
                            }
                            _ => self.nginx_concurrent(
                                nginx.unwrap(),
                                clients,
                                *size,
                                source,
                                run,
                                identities,
                            ),
                        };
                        eprintln!(
                            "e2e: run {} {:>5} {:>3} clients x {:>6}: {:>8.1} MB/s  p50 {:.3} s  p99 {:.3} s  server {:.1} MiB  {}",
                            run + 1,
                            tool,
                            clients,
                            size_label(*size),
                            result["aggregate_mb_per_s"].as_f64().unwrap_or(0.0),
                            result["p50_s"].as_f64().unwrap_or(0.0),
                            result["p99_s"].as_f64().unwrap_or(0.0),
                            result["server_peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                            if result["verified"] == json!(true) {
                                "all verified".to_string()
                            } else {
                                format!("FAILED: {}", result["errors"])
                            }
                        );
                        self.concurrency.push(result);
                    }
                }
            }
        }
    }

    /// Runs `commands` at once (each in its own thread), measures the server around them.
    fn run_at_once(
        &mut self,
        commands: Vec<Command>,
        server_pid: i32,
        bytes: u64,
        what: &str,
    ) -> (Vec<ProcRun>, f64, u64) {
        sync_disks();
        let n = commands.len();
        let barrier = Arc::new(Barrier::new(n));
        let meter = Meter::start(server_pid, false);
        let handles: Vec<_> = commands
            .into_iter()
            .enumerate()
            .map(|(i, mut cmd)| {
                let barrier = barrier.clone();
                let logs = self.logs.clone();
                let tag = format!("{:05}-{what}-{i:03}", self.seq + 1);
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        barrier.wait();
                        run_measured(&mut cmd, &logs, &tag, timeout_for(bytes * n as u64))
                    })
                    .expect("a thread")
            })
            .collect();
        let runs: Vec<ProcRun> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let (cpu, rss) = meter.finish();
        self.seq += 1;
        (runs, cpu, rss)
    }

    fn concurrency_result(
        tool: &str,
        clients: usize,
        size: u64,
        run: usize,
        runs: &[ProcRun],
        server: (f64, u64),
        errors: Vec<String>,
    ) -> Value {
        let first = runs.iter().map(|r| r.started).fold(f64::INFINITY, f64::min);
        let last = runs.iter().map(|r| r.ended).fold(0.0, f64::max);
        let span = (last - first).max(1e-9);
        let mut times: Vec<f64> = runs.iter().map(|r| r.wall).collect();
        times.sort_by(f64::total_cmp);
        json!({
            "tool": tool,
            "clients": clients,
            "bytes_each": size,
            "run": run,
            "span_s": span,
            "aggregate_mb_per_s": (clients as u64 * size) as f64 / 1e6 / span,
            "p50_s": percentile(&times, 50.0),
            "p99_s": percentile(&times, 99.0),
            "max_s": times.last().copied().unwrap_or(0.0),
            "client_cpu_s": runs.iter().map(ProcRun::cpu).sum::<f64>(),
            "server_cpu_s": server.0,
            "server_peak_rss_kib": server.1,
            "verified": errors.is_empty(),
            "failed": errors.len(),
            "errors": errors.iter().take(5).collect::<Vec<_>>(),
        })
    }

    fn ferry_concurrent(
        &mut self,
        clients: usize,
        size: u64,
        source: &Path,
        run: usize,
        identities: &[Identity],
    ) -> Value {
        // A fresh server per scenario: its peak RSS is this scenario's.
        let storage = self.work.join(format!("ferry-conc-{clients}-{size}-{run}"));
        let log = self
            .logs
            .join(format!("ferry-server-conc-{clients}-{size}-{run}.log"));
        let server = start_ferry(&self.bins.server, &storage, &self.certs, &log);
        let name = |i: usize| format!("c{i:03}-{size}-r{run}.bin");
        let commands: Vec<Command> = (0..clients)
            .map(|i| {
                let mut cmd = self.ferry(server.addr, &identities[i]);
                cmd.arg("upload").arg(source).arg("--name").arg(name(i));
                cmd
            })
            .collect();
        let (runs, cpu, rss) = self.run_at_once(commands, server.service.pid(), size, "ferry-conc");
        let mut errors = Vec::new();
        for (i, result) in runs.iter().enumerate() {
            let checked = if !result.ok() {
                Err(result.failure("ferry upload"))
            } else {
                json_lines(&result.stdout)
                    .first()
                    .ok_or_else(|| "no JSON report".to_string())
                    .and_then(|r| check_ferry_report(r, source, &self.digests))
                    .and_then(|()| {
                        ferry_stored(&storage, &name(i))
                            .ok_or_else(|| format!("{} not stored", name(i)))
                    })
                    .and_then(|stored| same_bytes(source, &stored))
            };
            if let Err(e) = checked {
                errors.push(format!("client {i}: {e}"));
            }
        }
        drop(server);
        let _ = fs::remove_dir_all(&storage);
        Self::concurrency_result("ferry", clients, size, run, &runs, (cpu, rss), errors)
    }

    fn nginx_concurrent(
        &mut self,
        nginx: &Nginx,
        clients: usize,
        size: u64,
        source: &Path,
        run: usize,
        identities: &[Identity],
    ) -> Value {
        let name = |i: usize| format!("c{i:03}-{size}-r{run}.bin");
        let commands: Vec<Command> = (0..clients)
            .map(|i| {
                let mut cmd = self.curl(&identities[i]);
                cmd.arg("-T")
                    .arg(source)
                    .arg("-o")
                    .arg("/dev/null")
                    .arg(format!("https://127.0.0.1:{}/{}", nginx.port, name(i)));
                cmd
            })
            .collect();
        let (runs, cpu, rss) = self.run_at_once(commands, nginx.service.pid(), size, "nginx-conc");
        let mut errors = Vec::new();
        for (i, result) in runs.iter().enumerate() {
            let stored = nginx.root.join(name(i));
            let checked = if result.ok() {
                same_bytes(source, &stored)
            } else {
                Err(result.failure("curl PUT"))
            };
            if let Err(e) = checked {
                errors.push(format!("client {i}: {e}"));
            }
            let _ = fs::remove_file(stored);
        }
        Self::concurrency_result("nginx", clients, size, run, &runs, (cpu, rss), errors)
    }

    // --- many small files ---------------------------------------------------------------

    fn small(&mut self, ferry: &FerryServer, sshd: Option<&Sshd>) {
        let count = self.config.small_files;
        let dir = self.work.join("src").join("small");
        fs::create_dir_all(&dir).unwrap();
        let files: Vec<PathBuf> = (0..count)
            .map(|i| {
                let path = dir.join(format!("f{i:04}.bin"));
                write_random(&path, SMALL_FILE as u64, 1000 + i as u64);
                path
            })
            .collect();
        sync_disks();
        let bytes = (count * SMALL_FILE) as u64;
        let identities = issue_identities(
            &self.certs,
            &(0..self.config.runs)
                .map(|r| format!("small-r{r}"))
                .collect::<Vec<_>>(),
        );
        let mut tools: Vec<&'static str> = vec![];
        if self.config.tool("ferry") {
            tools.push("ferry");
        }
        if sshd.is_some() {
            if self.config.tool("scp") {
                tools.push("scp");
            }
            if self.config.tool("rsync") {
                tools.push("rsync");
            }
        }
        // Copies are removed only after the last run: on ext4 without a journal (as on the
        // benchmark machine) creating inodes right after 1000 were deleted costs up to
        // 10× more, which would penalise whichever tool runs after a removal.
        let mut copies = Vec::new();
        for (run, identity) in identities.iter().enumerate() {
            if self.over_budget() {
                self.notes.push(format!(
                    "small files: stopped before run {} (budget)",
                    run + 1
                ));
                break;
            }
            let mut order = tools.clone();
            order.rotate_left(run % tools.len().max(1));
            for tool in order {
                match tool {
                    "ferry" => {
                        // A fresh identity per run: an empty namespace, nothing to skip.
                        let before: Vec<PathBuf> = list_dirs(&ferry.storage);
                        let mut cmd = self.ferry(ferry.addr, identity);
                        cmd.arg("upload").args(&files);
                        let (result, cpu, rss) = self.measure(
                            &mut cmd,
                            ferry.service.pid(),
                            false,
                            "small-ferry",
                            bytes,
                        );
                        let verified = (|| {
                            let reports = json_lines(&result.stdout);
                            if reports.len() != count {
                                return Err(format!("{} reports for {count} files", reports.len()));
                            }
                            let home = list_dirs(&ferry.storage)
                                .into_iter()
                                .find(|d| !before.contains(d))
                                .ok_or("no new identity directory")?;
                            for (file, report) in files.iter().zip(&reports) {
                                check_ferry_report(report, file, &self.digests)?;
                                let name = file.file_name().unwrap();
                                same_bytes(file, &home.join("files").join(name))?;
                            }
                            Ok(())
                        })();
                        self.record(
                            "small",
                            "ferry",
                            "upload",
                            bytes,
                            run,
                            &result,
                            (cpu, rss),
                            verified,
                        );
                    }
                    "scp" => {
                        let sshd = sshd.unwrap();
                        let remote = sshd.remote.join(format!("small-scp-r{run}"));
                        let mut cmd = sshd.scp();
                        cmd.arg("-r").arg(&dir).arg(sshd.target(&remote));
                        let (result, cpu, rss) =
                            self.measure(&mut cmd, sshd.service.pid(), true, "small-scp", bytes);
                        let verified = same_tree(&files, &remote);
                        copies.push(remote);
                        self.record(
                            "small",
                            "scp",
                            "upload",
                            bytes,
                            run,
                            &result,
                            (cpu, rss),
                            verified,
                        );
                    }
                    _ => {
                        let sshd = sshd.unwrap();
                        let remote = sshd.remote.join(format!("small-rsync-r{run}"));
                        let mut cmd = sshd.rsync();
                        cmd.arg(format!("{}/", dir.display()))
                            .arg(format!("{}/", sshd.target(&remote)));
                        let (result, cpu, rss) =
                            self.measure(&mut cmd, sshd.service.pid(), true, "small-rsync", bytes);
                        let verified = same_tree(&files, &remote);
                        copies.push(remote);
                        self.record(
                            "small",
                            "rsync",
                            "upload",
                            bytes,
                            run,
                            &result,
                            (cpu, rss),
                            verified,
                        );
                    }
                }
            }
        }
        for copy in copies {
            let _ = fs::remove_dir_all(copy);
        }
    }
}

fn list_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn same_tree(files: &[PathBuf], remote: &Path) -> Result<(), String> {
    let copies = fs::read_dir(remote)
        .map_err(|e| format!("{}: {e}", remote.display()))?
        .count();
    if copies != files.len() {
        return Err(format!(
            "{copies} files in {}, expected {}",
            remote.display(),
            files.len()
        ));
    }
    for file in files {
        same_bytes(file, &remote.join(file.file_name().unwrap()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Statistics and report
// ---------------------------------------------------------------------------------------

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Medians of the verified samples of one (tool, op, size).
#[derive(Debug, Clone)]
struct Summary {
    tool: String,
    op: String,
    bytes: u64,
    runs: usize,
    failed: usize,
    wall: f64,
    mb_s: f64,
    client_cpu: f64,
    server_cpu: f64,
    client_rss_kb: u64,
    server_rss_kb: u64,
    derived: bool,
}

impl Summary {
    fn to_json(&self) -> Value {
        json!({
            "tool": self.tool,
            "op": self.op,
            "bytes": self.bytes,
            "runs": self.runs,
            "failed": self.failed,
            "median_wall_s": self.wall,
            "mb_per_s": self.mb_s,
            "client_cpu_s": self.client_cpu,
            "server_cpu_s": self.server_cpu,
            "client_peak_rss_kib": self.client_rss_kb,
            "server_peak_rss_kib": self.server_rss_kb,
            "derived_from_upload_and_download": self.derived,
        })
    }
}

fn summarize(samples: &[Sample], section: &str) -> Vec<Summary> {
    let mut groups: BTreeMap<(u64, String, String), Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.section == section) {
        groups
            .entry((s.bytes, s.tool.to_string(), s.op.to_string()))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for ((bytes, tool, op), group) in groups {
        let ok: Vec<&&Sample> = group.iter().filter(|s| s.ok).collect();
        let pick =
            |f: &dyn Fn(&Sample) -> f64| median(&mut ok.iter().map(|s| f(s)).collect::<Vec<_>>());
        let wall = pick(&|s| s.wall);
        out.push(Summary {
            tool,
            op,
            bytes,
            runs: ok.len(),
            failed: group.len() - ok.len(),
            wall,
            mb_s: bytes as f64 / 1e6 / wall,
            client_cpu: pick(&|s| s.client_cpu),
            server_cpu: pick(&|s| s.server_cpu),
            client_rss_kb: ok.iter().map(|s| s.client_rss_kb).max().unwrap_or(0),
            server_rss_kb: ok.iter().map(|s| s.server_rss_kb).max().unwrap_or(0),
            derived: false,
        });
    }
    // Round trip of the other tools: upload then download (sum of the medians).
    let mut derived = Vec::new();
    for up in out.iter().filter(|s| s.op == "upload" && s.tool != "ferry") {
        if let Some(down) = out
            .iter()
            .find(|s| s.op == "download" && s.tool == up.tool && s.bytes == up.bytes)
        {
            let wall = up.wall + down.wall;
            derived.push(Summary {
                tool: up.tool.clone(),
                op: "roundtrip".into(),
                bytes: up.bytes,
                runs: up.runs.min(down.runs),
                failed: up.failed + down.failed,
                wall,
                mb_s: up.bytes as f64 / 1e6 / wall,
                client_cpu: up.client_cpu + down.client_cpu,
                server_cpu: up.server_cpu + down.server_cpu,
                client_rss_kb: up.client_rss_kb.max(down.client_rss_kb),
                server_rss_kb: up.server_rss_kb.max(down.server_rss_kb),
                derived: true,
            });
        }
    }
    out.extend(derived);
    let tool_rank = |t: &str| {
        ["ferry", "nginx", "sftp", "scp", "rsync"]
            .iter()
            .position(|x| *x == t)
    };
    let op_rank = |o: &str| {
        ["upload", "download", "roundtrip"]
            .iter()
            .position(|x| *x == o)
    };
    out.sort_by_key(|s| (s.bytes, op_rank(&s.op), tool_rank(&s.tool)));
    out
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn tool_label(tool: &str) -> &str {
    match tool {
        "ferry" => "ferry",
        "nginx" => "curl→nginx (mTLS)",
        "scp" => "scp",
        "sftp" => "sftp",
        "rsync" => "rsync (ssh)",
        other => other,
    }
}

fn ratio_cell(value: f64, target: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let mark = if value >= target { "met" } else { "NOT met" };
    format!("{value:.2}× (target ≥ {target}×: {mark})")
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("e2e: a benchmark; run it with `cargo bench -p ferry-server --bench e2e`");
        return;
    }
    epoch();
    let bins = binaries();
    let target_dir = bins
        .server
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let config = Config::from_env(&target_dir);
    ensure_tools(&config);
    fs::create_dir_all(&config.work_root).unwrap();
    let tempdir = tempfile::Builder::new()
        .prefix("ferry-e2e-")
        .tempdir_in(&config.work_root)
        .expect("a temporary directory");
    let work = tempdir.path().to_path_buf();
    for sub in ["src", "dl", "tmp", "logs"] {
        fs::create_dir_all(work.join(sub)).unwrap();
    }
    let load_start = loadavg();
    eprintln!(
        "e2e: work directory {}, load average {load_start}, {} run(s){}",
        work.display(),
        config.runs,
        if config.quick { " (quick)" } else { "" }
    );

    // Ferry first: it bootstraps the throwaway CA and server certificate the others use.
    let certs = work.join("certs");
    let ferry = start_ferry(
        &bins.server,
        &work.join("storage"),
        &certs,
        &work.join("logs").join("ferry-server.log"),
    );
    let ca = certs.join("ca.crt");
    let local = Identity {
        cert: certs.join("clients").join("local.crt"),
        key: certs.join("clients").join("local.key"),
    };
    let nginx = config
        .tool("nginx")
        .then(|| start_nginx(&work.join("nginx"), &certs));
    let sshd = (config.tool("scp") || config.tool("sftp") || config.tool("rsync"))
        .then(|| start_sshd(&work.join("sshd")));
    let max_clients = config.clients.iter().copied().max().unwrap_or(0);
    let identities = if config.section("concurrency") {
        issue_identities(
            &certs,
            &(0..max_clients)
                .map(|i| format!("c{i:03}"))
                .collect::<Vec<_>>(),
        )
    } else {
        Vec::new()
    };
    let mut bench = Bench {
        logs: work.join("logs"),
        work: work.clone(),
        certs: certs.clone(),
        ca,
        local,
        digests: Digests::default(),
        started: Instant::now(),
        samples: Vec::new(),
        concurrency: Vec::new(),
        notes: Vec::new(),
        seq: 0,
        config,
        bins,
    };

    let mut loads = BTreeMap::new();
    loads.insert("start".to_string(), load_start);
    if bench.config.section("single") {
        bench.single(&ferry, nginx.as_ref(), sshd.as_ref());
        loads.insert("after_single".into(), loadavg());
    }
    if bench.config.section("concurrency") {
        bench.concurrency(nginx.as_ref(), &identities);
        loads.insert("after_concurrency".into(), loadavg());
    }
    if bench.config.section("small") {
        bench.small(&ferry, sshd.as_ref());
        loads.insert("after_small".into(), loadavg());
    }
    let elapsed = bench.started.elapsed().as_secs_f64();
    drop(sshd);
    drop(nginx);
    drop(ferry);

    let report = report(&bench, &loads, elapsed);
    print!("{}", report.0);
    let out = &bench.config.out;
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(out, serde_json::to_string_pretty(&report.1).unwrap()).unwrap();
    eprintln!("e2e: JSON written to {}", out.display());
    if bench.config.keep {
        let kept = tempdir.keep();
        eprintln!("e2e: kept {}", kept.display());
    }
    let failures = bench.samples.iter().filter(|s| !s.ok).count()
        + bench
            .concurrency
            .iter()
            .filter(|c| c["verified"] != json!(true))
            .count();
    if failures > 0 {
        eprintln!("e2e: {failures} measurement(s) failed verification");
        std::process::exit(1);
    }
}

fn machine() -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let version = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default()
    };
    json!({
        "cpu": cpu,
        "cores": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": version(Command::new("uname").arg("-r")),
        "nginx": version(Command::new("/usr/sbin/nginx").arg("-v")),
        "openssh": version(Command::new("ssh").arg("-V")),
        "curl": version(Command::new("curl").arg("--version")),
        "rsync": version(Command::new("rsync").arg("--version")),
    })
}

fn report(bench: &Bench, loads: &BTreeMap<String, String>, elapsed: f64) -> (String, Value) {
    let config = &bench.config;
    let mut md = String::new();
    let machine = machine();
    let _ = writeln!(
        md,
        "\n# Ferry end-to-end benchmark\n\n{} cores ({}), kernel {}; {} run(s) per measurement, median shown; \
         load average (1/5/15 min) {}; {elapsed:.0} s.\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        config.runs,
        loads
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let single = summarize(&bench.samples, "single");
    let mut ratios = Vec::new();
    if !single.is_empty() {
        let _ = writeln!(
            md,
            "## Single transfers\n\nMB/s = 10^6 bytes/s over the client process's life (start-up and TLS/SSH \
             handshake included). CPU in seconds (user+system); RSS in MiB (client: wait4 peak; \
             server: peak of the server's processes, summed). Round trip of the others: upload + download.\n"
        );
        let _ = writeln!(
            md,
            "| size | op | tool | MB/s | time s | client CPU s | server CPU s | client peak RSS | server peak RSS | runs |"
        );
        let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|");
        for s in &single {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {} | {}{}{} |",
                size_label(s.bytes),
                s.op,
                tool_label(&s.tool),
                s.mb_s,
                s.wall,
                s.client_cpu,
                s.server_cpu,
                mib(s.client_rss_kb),
                mib(s.server_rss_kb),
                s.runs,
                if s.failed > 0 {
                    format!(" ({} FAILED)", s.failed)
                } else {
                    String::new()
                },
                if s.derived { " (up+down)" } else { "" },
            );
        }
        let _ = writeln!(
            md,
            "\n### Ratios (Ferry MB/s ÷ other MB/s)\n\n| size | op | Ferry/nginx | Ferry/sftp | Ferry/scp |\n|---|---|---|---|---|"
        );
        let sizes: Vec<u64> = config.sizes.clone();
        for size in sizes {
            for op in ["upload", "download", "roundtrip"] {
                let find = |tool: &str| {
                    single
                        .iter()
                        .find(|s| s.tool == tool && s.op == op && s.bytes == size)
                        .map(|s| s.mb_s)
                        .unwrap_or(f64::NAN)
                };
                let ferry = find("ferry");
                let (vs_nginx, vs_sftp, vs_scp) = (
                    ferry / find("nginx"),
                    ferry / find("sftp"),
                    ferry / find("scp"),
                );
                let targets = op != "roundtrip";
                let _ = writeln!(
                    md,
                    "| {} | {op} | {} | {} | {} |",
                    size_label(size),
                    if targets {
                        ratio_cell(vs_nginx, 1.0)
                    } else {
                        format!("{vs_nginx:.2}×")
                    },
                    if targets {
                        ratio_cell(vs_sftp, 2.5)
                    } else {
                        format!("{vs_sftp:.2}×")
                    },
                    if vs_scp.is_finite() {
                        format!("{vs_scp:.2}×")
                    } else {
                        "–".into()
                    },
                );
                ratios.push(json!({
                    "bytes": size,
                    "op": op,
                    "ferry_over_nginx": vs_nginx.is_finite().then_some(vs_nginx),
                    "ferry_over_sftp": vs_sftp.is_finite().then_some(vs_sftp),
                    "ferry_over_scp": vs_scp.is_finite().then_some(vs_scp),
                    "targets": if targets { json!({"nginx": 1.0, "sftp": 2.5}) } else { Value::Null },
                }));
            }
        }
    }

    // Concurrency: medians over the runs.
    let mut conc_summary = Vec::new();
    if !bench.concurrency.is_empty() {
        let mut groups: BTreeMap<(u64, u64, String), Vec<&Value>> = BTreeMap::new();
        for c in &bench.concurrency {
            groups
                .entry((
                    c["clients"].as_u64().unwrap_or(0),
                    c["bytes_each"].as_u64().unwrap_or(0),
                    c["tool"].as_str().unwrap_or("").to_string(),
                ))
                .or_default()
                .push(c);
        }
        let _ = writeln!(
            md,
            "\n## Concurrent clients (each its own certificate, one upload each)\n\n\
             Aggregate = all bytes ÷ (first start → last exit). Per-transfer time = one client process's life.\n\n\
             | clients | each | tool | aggregate MB/s | p50 s | p99 s | server CPU s | server peak RSS MiB | verified | Ferry/nginx |\n\
             |--:|--:|---|--:|--:|--:|--:|--:|---|---|"
        );
        let aggregate_of = |clients: u64, size: u64, tool: &str| -> f64 {
            groups
                .get(&(clients, size, tool.to_string()))
                .map(|g| {
                    median(
                        &mut g
                            .iter()
                            .map(|c| c["aggregate_mb_per_s"].as_f64().unwrap_or(0.0))
                            .collect::<Vec<_>>(),
                    )
                })
                .unwrap_or(f64::NAN)
        };
        for ((clients, size, tool), group) in &groups {
            let med = |key: &str| {
                median(
                    &mut group
                        .iter()
                        .map(|c| c[key].as_f64().unwrap_or(f64::NAN))
                        .collect::<Vec<_>>(),
                )
            };
            let peak = group
                .iter()
                .map(|c| c["server_peak_rss_kib"].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0);
            let verified = group.iter().all(|c| c["verified"] == json!(true));
            let failed: u64 = group
                .iter()
                .map(|c| c["failed"].as_u64().unwrap_or(0))
                .sum();
            let ratio = if tool == "ferry" {
                aggregate_of(*clients, *size, "ferry") / aggregate_of(*clients, *size, "nginx")
            } else {
                f64::NAN
            };
            let target = if *clients == 16 { Some(1.0) } else { None };
            let ratio_text = match (ratio.is_finite(), target) {
                (false, _) => String::new(),
                (true, Some(t)) => ratio_cell(ratio, t),
                (true, None) => format!("{ratio:.2}×"),
            };
            let rss_text = if tool == "ferry" && *clients >= 256 {
                let mark = if peak <= 64 * 1024 { "met" } else { "NOT met" };
                format!("{} (target ≤ 64: {mark})", mib(peak))
            } else {
                mib(peak)
            };
            let _ = writeln!(
                md,
                "| {clients} | {} | {} | {:.1} | {:.3} | {:.3} | {:.2} | {} | {} | {} |",
                size_label(*size),
                tool_label(tool),
                med("aggregate_mb_per_s"),
                med("p50_s"),
                med("p99_s"),
                med("server_cpu_s"),
                rss_text,
                if verified {
                    format!("all {} × {}", clients, group.len())
                } else {
                    format!("{failed} FAILED")
                },
                ratio_text,
            );
            conc_summary.push(json!({
                "tool": tool,
                "clients": clients,
                "bytes_each": size,
                "runs": group.len(),
                "aggregate_mb_per_s": med("aggregate_mb_per_s"),
                "p50_s": med("p50_s"),
                "p99_s": med("p99_s"),
                "server_cpu_s": med("server_cpu_s"),
                "client_cpu_s": med("client_cpu_s"),
                "server_peak_rss_kib": peak,
                "verified": verified,
                "ferry_over_nginx": ratio.is_finite().then_some(ratio),
            }));
        }
    }

    let small = summarize(&bench.samples, "small");
    let mut small_json = Vec::new();
    if !small.is_empty() {
        let scp = small.iter().find(|s| s.tool == "scp").map(|s| s.wall);
        let rsync = small.iter().find(|s| s.tool == "rsync").map(|s| s.wall);
        let ferry_wall = small.iter().find(|s| s.tool == "ferry").map(|s| s.wall);
        let _ = writeln!(
            md,
            "\n## Many small files: {} files of 4 KiB in one command\n\n\
             | tool | time s | files/s | client CPU s | server CPU s | server peak RSS MiB | runs |\n|---|--:|--:|--:|--:|--:|--:|",
            config.small_files
        );
        for s in &small {
            let _ = writeln!(
                md,
                "| {} | {:.2} | {:.0} | {:.2} | {:.2} | {} | {}{} |",
                tool_label(&s.tool),
                s.wall,
                config.small_files as f64 / s.wall,
                s.client_cpu,
                s.server_cpu,
                mib(s.server_rss_kb),
                s.runs,
                if s.failed > 0 {
                    format!(" ({} FAILED)", s.failed)
                } else {
                    String::new()
                },
            );
            small_json.push(s.to_json());
        }
        if let Some(f) = ferry_wall {
            let vs_scp = scp.map(|w| w / f).unwrap_or(f64::NAN);
            let vs_rsync = rsync.map(|w| w / f).unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "\nFerry speed-up: {} over scp -r, {:.2}× over rsync.",
                ratio_cell(vs_scp, 20.0),
                vs_rsync
            );
            ratios.push(json!({
                "small_files": config.small_files,
                "ferry_speedup_over_scp": vs_scp.is_finite().then_some(vs_scp),
                "ferry_speedup_over_rsync": vs_rsync.is_finite().then_some(vs_rsync),
                "target_over_scp": 20.0,
            }));
        }
    }
    let _ = writeln!(
        md,
        "\nFerry makes every upload durable before it reports it verified (the server fsyncs the \
         data with its metadata, then its directory) and the client fsyncs a download before renaming it \
         into place; nginx, scp, sftp and rsync report success with the data in the page cache. \
         TLS: TLS 1.3 on both, client certificate required; ssh: {SSH_CIPHER}."
    );
    if !bench.notes.is_empty() {
        let _ = writeln!(md, "\nNotes:");
        for note in &bench.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    let json = json!({
        "benchmark": "ferry-e2e",
        "quick": config.quick,
        "runs": config.runs,
        "elapsed_s": elapsed,
        "load_average": loads,
        "machine": machine,
        "single": single.iter().map(Summary::to_json).collect::<Vec<_>>(),
        "ratios": ratios,
        "concurrency": conc_summary,
        "small_files": small_json,
        "notes": bench.notes,
        "samples": bench.samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
        "concurrency_runs": bench.concurrency,
    });
    (md, json)
}
