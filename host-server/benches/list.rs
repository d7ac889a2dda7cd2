//! Listing many files: the time of a whole listing (what `ferry list` asks for, page after
//! page) through the release `ferry-server`, for a client holding 60,000 one-byte files.
//!
//! ```text
//! cargo bench -p ferry-server --bench list
//! FERRY_BENCH_FILES=100000 cargo bench -p ferry-server --bench list
//! ```
//!
//! The files are made in the storage layout directly; the first listing records their
//! metadata (as it would after files were put there by hand), the following ones are the
//! steady state. Prints the time of each listing and the server's peak RSS. Without
//! `--bench` on its command line (as under `cargo test --all-targets`) it does nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use ferry_testkit::pki::Pki;
use ferry_tokio::client::Client;

const SERVER: &str = env!("CARGO_BIN_EXE_ferry-server");

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("list: a benchmark; run it with `cargo bench -p ferry-server --bench list`");
        return;
    }
    let files: usize = std::env::var("FERRY_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let root = tempfile::tempdir().unwrap();
    let (storage, certs) = (root.path().join("storage"), root.path().join("certs"));
    let dir = storage.join("local").join("files");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i:06}")), b"x").unwrap();
    }
    let mut server = Command::new(SERVER)
        .args(["--no-web", "--listen", "127.0.0.1:0", "--storage"])
        .arg(&storage)
        .arg("--certs")
        .arg(&certs)
        .env("FERRY_DATA_DIR", root.path().join("data"))
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferry-server");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("a readiness line").unwrap();
        if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
            break addr.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let options = Pki::open(&certs).client_options("local", addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("| listing of {files} files | seconds | entries |");
    println!("|---|---|---|");
    for run in 0..4 {
        let started = Instant::now();
        let listed = runtime.block_on(async {
            let mut client = Client::connect(options.clone()).await.unwrap();
            client.list().await.unwrap()
        });
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(listed.len(), files);
        let label = if run == 0 {
            "first (records metadata)"
        } else {
            "again"
        };
        println!("| {label} | {secs:.3} | {} |", listed.len());
    }
    if let Some(kib) = peak_rss_kib(server.id()) {
        println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    let _ = server.kill();
    let _ = server.wait();
}
