//! Measured child processes (wall time, and CPU and peak RSS that GNU time reads from `wait4`), helper commands,
//! and the CPU and peak memory of a server's process tree read from /proc.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use procfs::process::{ClearRefs, Process};
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

/// One measured client process.
#[derive(Debug, Clone, Default)]
pub struct ProcRun {
    pub wall: f64,
    pub user: f64,
    pub sys: f64,
    pub maxrss_kb: u64,
    /// Exit code, or 128 + signal.
    pub exit: i32,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// Seconds since the benchmark's epoch at spawn and at exit (for aggregate rates).
    pub started: f64,
    pub ended: f64,
}

impl ProcRun {
    pub fn ok(&self) -> bool {
        self.exit == 0 && !self.timed_out
    }

    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }

    pub fn failure(&self, what: &str) -> String {
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

/// The benchmark's time origin (set by the first call).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn pid_of(raw: i32) -> Pid {
    Pid::from_raw(raw).expect("a positive process id")
}

/// Waits for `pid` to exit without reaping it, so that nothing can signal a reused pid.
fn wait_exit_unreaped(pid: i32) {
    loop {
        let exited_unreaped = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        match rustix::process::waitid(WaitId::Pid(pid_of(pid)), exited_unreaped) {
            Ok(_) => return,
            Err(Errno::INTR) => {}
            Err(e) => panic!("waitid({pid}): {e}"),
        }
    }
}

/// GNU time, which runs each measured command and writes its rusage (from `wait4`, the one
/// call that gives the rusage of one given child) to a file: std and rustix offer no `wait4`,
/// and this keeps the benchmark free of `unsafe`.
const GNU_TIME: &str = "/usr/bin/time";

/// `cmd` run under GNU time, which writes "user-s system-s peak-RSS-KiB" to `rusage`.
fn under_gnu_time(cmd: &Command, rusage: &Path) -> Command {
    let mut timed = Command::new(GNU_TIME);
    timed
        .args(["--quiet", "--format", "%U %S %M", "--output"])
        .arg(rusage)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    timed
}

/// Reaps the exited child `pid`: its exit code, or 128 + signal.
fn reap(pid: i32) -> i32 {
    loop {
        match rustix::process::waitid(WaitId::Pid(pid_of(pid)), WaitIdOptions::EXITED) {
            Ok(Some(status)) => {
                return match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => code,
                    (None, Some(signal)) => 128 + signal,
                    (None, None) => 255,
                }
            }
            Ok(None) => panic!("waitid({pid}): no status"),
            Err(Errno::INTR) => {}
            Err(e) => panic!("waitid({pid}): {e}"),
        }
    }
}

/// (user s, system s, peak RSS KiB) as GNU time wrote them; zeros if it could not (the
/// command was killed with its process group).
fn read_rusage(path: &Path) -> (f64, f64, u64) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut fields = text.lines().last().unwrap_or("").split_whitespace();
    let mut next = || fields.next().unwrap_or("0");
    let user = next().parse().unwrap_or(0.0);
    let sys = next().parse().unwrap_or(0.0);
    let maxrss = next().parse().unwrap_or(0);
    (user, sys, maxrss)
}

/// Runs `cmd` to its end (killed with its process group after `timeout`), with stdout and
/// stderr in files under `logs`; wall time, and CPU and peak RSS from GNU time.
pub fn run_measured(cmd: &mut Command, logs: &Path, tag: &str, timeout: Duration) -> ProcRun {
    let out_path = logs.join(format!("{tag}.out"));
    let err_path = logs.join(format!("{tag}.err"));
    let rusage_path = logs.join(format!("{tag}.rusage"));
    let mut cmd = under_gnu_time(cmd, &rusage_path);
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
    // The child is reaped by `reap` below, not by `Child`.
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
                    // The child is not reaped before `finished` is set, so `pid` (and its
                    // group) still name it, at worst as a zombie.
                    let _ = rustix::process::kill_process_group(pid_of(pid), Signal::KILL);
                    let _ = rustix::process::kill_process(pid_of(pid), Signal::KILL);
                    break;
                }
                finished = cv.wait_timeout(finished, deadline - now).unwrap().0;
            }
        })
    };
    wait_exit_unreaped(pid);
    let ended = Instant::now();
    {
        let (lock, cv) = &*done;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    watchdog.join().unwrap();
    let exit = reap(pid);
    let (user, sys, maxrss_kb) = read_rusage(&rusage_path);
    ProcRun {
        wall: (ended - started).as_secs_f64(),
        user,
        sys,
        maxrss_kb,
        exit,
        timed_out: timed_out.load(Ordering::SeqCst),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        started: (started - epoch()).as_secs_f64(),
        ended: (ended - epoch()).as_secs_f64(),
    }
}

/// Runs a helper command (not measured); panics on failure.
pub fn run_plain(cmd: &mut Command) -> String {
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

pub fn sync_disks() {
    let _ = Command::new("sync").status();
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: i32, signal: Signal) {
    let _ = rustix::process::kill_process(pid_of(pid), signal);
}

/// The parent of `pid`, while it exists.
pub fn parent_of(pid: i32) -> Option<i32> {
    Process::new(pid)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.ppid)
}

/// CPU ticks of `pid` and of its reaped children (utime + stime + cutime + cstime).
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = Process::new(pid).and_then(|p| p.stat()).ok()?;
    Some(stat.utime + stat.stime + (stat.cutime + stat.cstime).max(0) as u64)
}

/// `root` and all its descendants (scanning /proc: this kernel has no `children` files).
pub fn process_tree(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = procfs::process::all_processes()
        .map(|all| {
            all.flatten()
                .filter_map(|p| p.stat().ok().map(|s| (s.pid, s.ppid)))
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for &(pid, ppid) in &parents {
            if ppid == parent && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        i += 1;
    }
    tree
}

fn sample_peaks(pids: &[i32], peaks: &Mutex<HashMap<i32, u64>>) {
    let mut peaks = peaks.lock().unwrap();
    for &pid in pids {
        let vmhwm = Process::new(pid).and_then(|p| p.status()).ok();
        if let Some(kb) = vmhwm.and_then(|s| s.vmhwm) {
            let peak = peaks.entry(pid).or_default();
            *peak = (*peak).max(kb);
        }
    }
}

/// CPU and peak memory of a server's process tree over one measurement.
pub struct Meter {
    root: i32,
    dynamic: bool,
    persistent: usize,
    start_ticks: u64,
    peaks: Arc<Mutex<HashMap<i32, u64>>>,
    stop: Arc<AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
}

impl Meter {
    /// `dynamic`: the server forks per connection (sshd), so its tree is re-read while
    /// sampling and the measurement waits for the connection processes to end.
    pub fn start(root: i32, dynamic: bool) -> Meter {
        let pids = process_tree(root);
        for &pid in &pids {
            // Resets VmHWM to the current RSS.
            let _ = Process::new(pid).and_then(|p| p.clear_refs(ClearRefs::PeakRSS));
        }
        let start_ticks = pids.iter().filter_map(|&p| cpu_ticks(p)).sum();
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
    pub fn finish(mut self) -> (f64, u64) {
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
        let end_ticks: u64 = pids.iter().filter_map(|&p| cpu_ticks(p)).sum();
        let cpu =
            end_ticks.saturating_sub(self.start_ticks) as f64 / procfs::ticks_per_second() as f64;
        let peak = self.peaks.lock().unwrap().values().sum();
        (cpu, peak)
    }
}
