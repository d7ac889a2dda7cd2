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
//! - runs `install-tools.sh` (beside this file; it can also be run by hand): it installs what
//!   is missing from Debian's packages (`nginx`, `openssh-server`, `curl`, `rsync`) when it
//!   runs as root with `apt-get`, and builds the `ferry` client with
//!   `cargo build --release -p ferry-client --bin ferry` into this build's target directory;
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
//! - directory trees in one command, `ferry upload -r` against `scp -r` and `rsync -a` over
//!   ssh: 1000 and 10,000 files of 4 KiB in nested folders, and 1000 files of mixed sizes
//!   (1 KiB to 64 MiB, about 210 MiB); then `ferry sync` of the unchanged 10,000-file tree
//!   against `rsync -a` of it (quick: the 1000-file tree and its sync only);
//! - verifies every transfer, outside the timed part: Ferry's exit code and whole-file digest
//!   (against the digest computed here) and the bytes stored; every other tool's copy is
//!   compared byte for byte with the source.
//!
//! Output: markdown tables on stdout, progress on stderr, everything (including every raw
//! sample) as JSON in `$CARGO_TARGET_DIR/ferry-bench/e2e.json` (`target/ferry-bench/e2e.json`
//! by default) or `FERRY_BENCH_OUT`. The exit status is 1 when a transfer failed verification.
//!
//! Knobs (environment): `FERRY_BENCH_QUICK=1` (64 MiB only, 1 and 16 clients, 1 run),
//! `FERRY_BENCH_RUNS=N` (default 5), `FERRY_BENCH_SIZES=64M,1G`, `FERRY_BENCH_CLIENTS=1,16,256`,
//! `FERRY_BENCH_ONLY=single,concurrency,trees`, `FERRY_BENCH_TOOLS=ferry,nginx,scp,sftp,rsync`,
//! `FERRY_BENCH_BUDGET_SECS` (default 1500: no new run starts after it), `FERRY_BENCH_DIR`
//! (where the temporary directory goes), `FERRY_BENCH_KEEP=1` (keep it), `FERRY_BENCH_OUT`.
//!
//! Modules: `config` (the knobs), `tools` (binaries, `install-tools.sh`), `services` (the
//! servers), `procs` (measured processes, /proc), `data` and `digests` (test files and their
//! verification), `runs` (the measured cases), `summary` (statistics), `report` (tables, JSON).
//! Without `--bench` on its command line (as under `cargo test --all-targets`) it does nothing.

mod config;
mod data;
mod digests;
mod procs;
mod report;
mod runs;
mod services;
mod summary;
mod tools;

use std::collections::BTreeMap;
use std::fs;

use config::Config;
use runs::{issue_identities, Bench};
use services::{start_ferry, start_nginx, start_sshd};
use tools::Binaries;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("e2e: a benchmark; run it with `cargo bench -p ferry-server --bench e2e`");
        return;
    }
    procs::epoch();
    let bins = Binaries::locate();
    let config = Config::from_env(&bins.target_dir);
    tools::install(&config, &bins);
    fs::create_dir_all(&config.work_root).unwrap();
    let tempdir = tempfile::Builder::new()
        .prefix("ferry-e2e-")
        .tempdir_in(&config.work_root)
        .expect("a temporary directory");
    let work = tempdir.path().to_path_buf();
    for sub in ["src", "dl", "tmp", "logs"] {
        fs::create_dir_all(work.join(sub)).unwrap();
    }
    let load_start = report::loadavg();
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
    let nginx = config
        .tool("nginx")
        .then(|| start_nginx(&work.join("nginx"), &certs));
    let sshd = config.wants_sshd().then(|| start_sshd(&work.join("sshd")));
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
    let mut bench = Bench::new(config, bins, &work, &certs);

    let mut loads = BTreeMap::new();
    loads.insert("start".to_string(), load_start);
    if bench.config.section("single") {
        bench.single(&ferry, nginx.as_ref(), sshd.as_ref());
        loads.insert("after_single".into(), report::loadavg());
    }
    if bench.config.section("concurrency") {
        bench.concurrency(nginx.as_ref(), &identities);
        loads.insert("after_concurrency".into(), report::loadavg());
    }
    if bench.config.section("trees") {
        bench.trees(&ferry, sshd.as_ref());
        loads.insert("after_trees".into(), report::loadavg());
    }
    let elapsed = bench.started.elapsed().as_secs_f64();
    drop(sshd);
    drop(nginx);
    drop(ferry);

    let (markdown, json) = report::report(&bench, &loads, elapsed);
    print!("{markdown}");
    let out = &bench.config.out;
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    eprintln!("e2e: JSON written to {}", out.display());
    if bench.config.keep {
        let kept = tempdir.keep();
        eprintln!("e2e: kept {}", kept.display());
    }
    let failures = bench.failures();
    if failures > 0 {
        eprintln!("e2e: {failures} measurement(s) failed verification");
        std::process::exit(1);
    }
}
