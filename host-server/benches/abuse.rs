//! Load and abuse: every attack of issue 13 against the release `ferry-server` (and its web
//! page) while honest clients keep working, one table row per attack.
//!
//! ```text
//! cargo bench -p ferry-server --bench abuse
//! FERRY_ABUSE_SECS=20            seconds per attack (default 20)
//! FERRY_ABUSE_ONLY=1,7a,crash    only the attacks whose names start so
//! FERRY_ABUSE_SERVER_ARGS="..."  extra flags for every server started
//! ```
//!
//! Each attack starts a fresh server on 127.0.0.1 ephemeral ports in a temporary directory
//! (a new CA, server and client certificates from the ferry-certs library) and prints, as
//! it ends, one JSON line (`abuse-row {...}`); the table and each attack's checks follow at
//! the end. Targets: every honest operation succeeds within 2 s, server peak RSS (VmHWM)
//! <= 128 MiB, the attacker's disk use (du) <= its quota, log lines <= 50 per second of
//! attack (at least 200). The full-disk attack mounts a tmpfs (root only; skipped with the reason otherwise).

#[path = "abuse/mod.rs"]
mod harness;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would run this too: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let cfg = harness::Config::new(false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    eprintln!(
        "abuse: {} s per attack against {}",
        cfg.secs.as_secs_f64(),
        harness::server::BIN
    );
    let rows = runtime.block_on(harness::run_all(&cfg, &mut |row| {
        println!("abuse-row {}", row.json());
    }));
    println!("\n{}", harness::report::render(&rows));
}
