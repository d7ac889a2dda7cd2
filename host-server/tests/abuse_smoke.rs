//! A short run of the load-and-abuse harness (`benches/abuse`) against the debug binaries:
//! every attack for about 2 s, asserting what does not depend on timing (every honest
//! operation succeeded, within a generous limit; the attacker's disk within its quota; the log
//! bounded; the attacks' own checks, such as nothing partial visible after the crash loop).
//! Timings are printed, never asserted.

#[path = "../benches/abuse/mod.rs"]
mod harness;

/// Attacks whose findings are fixed on other branches (admission and revocation: 1, 2, 5;
/// storage limits: 4, 8, 9; the web page: 7a, 7b, 10): their misses are printed, not
/// enforced. This list empties when those fixes are merged. (3's miss, its RSS, is a timing
/// figure, never enforced.)
const PENDING: &[&str] = &[
    "1 idle-sockets",
    "2 idle-sessions",
    "4 quota",
    "5 revocation",
    "7a web-sessions",
    "7b web-stalled-downloads",
    "8 full-disk",
    "9 names",
    "10 web-token",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_leaves_honest_clients_working() {
    let cfg = harness::Config::new(true);
    let rows = harness::run_all(&cfg, &mut |row| println!("abuse-row {}", row.json())).await;
    println!("{}", harness::report::render(&rows));
    let mut enforced = Vec::new();
    for row in &rows {
        let pending = PENDING.contains(&row.attack);
        for check in row.missed().filter(|check| !check.timing) {
            let line = format!("{}: {}: {}", row.attack, check.name, check.detail);
            if pending {
                println!("pending (not enforced): {line}");
            } else {
                enforced.push(line);
            }
        }
    }
    assert!(enforced.is_empty(), "missed:\n{}", enforced.join("\n"));
}
