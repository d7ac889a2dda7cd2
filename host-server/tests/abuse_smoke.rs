//! A short run of the load-and-abuse harness (`benches/abuse`) against the debug binaries:
//! every attack for about 2 s, asserting what does not depend on timing (every honest
//! operation succeeded, within a generous limit; the attacker's disk within its quota; the log
//! bounded; the attacks' own checks, such as nothing partial visible after the crash loop).
//! Timings are printed, never asserted.

#[path = "../benches/abuse/mod.rs"]
mod harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_leaves_honest_clients_working() {
    let cfg = harness::Config::new(true);
    let rows = harness::run_all(&cfg, &mut |row| println!("abuse-row {}", row.json())).await;
    println!("{}", harness::report::render(&rows));
    let missed: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            row.missed()
                .filter(|check| !check.timing)
                .map(move |check| format!("{}: {}: {}", row.attack, check.name, check.detail))
        })
        .collect();
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}
