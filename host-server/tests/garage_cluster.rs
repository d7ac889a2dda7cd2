//! The opt-in cluster run (not in CI: Garage is built apart, `cargo install garage
//! --locked`, ~20 min): three Garage nodes, three `ferry-server` instances and HAProxy on
//! this machine. 64 clients (identities of their own) upload 4 to 16 MiB each through the
//! balancer; when a quarter of the bytes are acknowledged one Garage node is SIGKILLed, at
//! half one Ferry instance. Every upload reported verified must download back
//! byte-identical; the others are rerun until they complete. Prints the figures.
//!
//! ```text
//! cargo test -p ferry-server --release --test garage_cluster -- --ignored --nocapture
//! ```
//!
//! `FERRY_GARAGE_CLIENTS` and `FERRY_GARAGE_MAX_MIB` shrink the run (defaults 64 and 16).
//! The balancer runs dist/haproxy.cfg (TLS passthrough, PROXY v2, mutual-TLS health
//! checks) with a third server line; a second HAProxy balances the three Garage nodes' S3
//! ports for the instances (their one S3 endpoint).
//!
//! Flow: Garage::start_cluster(3) → bucket and key → PostgreSQL → instance 1 makes the
//! certificates, 2 and 3 share them (the S3 balancer first) → the Ferry balancer → clients → kills → reruns → downloads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_testkit::cluster::{free_port, Garage, HaProxy, Postgres};
use ferry_testkit::data::write_pseudo_random;
use ferry_testkit::pki::Pki;
use ferry_tokio::client::{Client, ClientOptions};

mod server_support;
use server_support::binary::{self, Running};

const MIB: u64 = 1 << 20;
/// Give up rerunning an upload after this long.
const RERUN_LIMIT: Duration = Duration::from_secs(600);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client saw.
struct Outcome {
    name: String,
    path: PathBuf,
    size: u64,
    /// Its first `upload_file` call ended verified.
    first_verified: bool,
    /// `upload_file` calls after the first.
    reruns: u32,
    /// Reconnections inside the verified call (the library's own retries).
    reconnects: u32,
    verified: bool,
    last_error: Option<String>,
}

async fn upload_until_done(
    options: ClientOptions,
    path: PathBuf,
    name: String,
    size: u64,
    done: Arc<AtomicU64>,
) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        name: name.clone(),
        path: path.clone(),
        size,
        first_verified: false,
        reruns: 0,
        reconnects: 0,
        verified: false,
        last_error: None,
    };
    loop {
        let mut client = Client::new(options.clone());
        let progress = &done;
        let result = client
            .upload_file(&path, &name, &mut |p| {
                progress.store(p.done_bytes, Ordering::Relaxed)
            })
            .await;
        client.close().await;
        match result {
            Ok(report) => {
                outcome.first_verified = outcome.reruns == 0;
                outcome.reconnects = report.attempts.saturating_sub(1);
                outcome.verified = true;
                return outcome;
            }
            Err(e) => {
                outcome.last_error = Some(e.with_causes());
                if started.elapsed() > RERUN_LIMIT {
                    return outcome;
                }
                outcome.reruns += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// dist/haproxy.cfg with a third server line; a plain TCP configuration when the file is
/// missing.
fn ferry_balancer_config() -> String {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/haproxy.cfg");
    let mut config = std::fs::read_to_string(&dist).unwrap_or_else(|_| {
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10m\n  timeout server 10m\n\
         frontend ferry\n  bind \"${FERRY_FRONT}\"\n  default_backend ferry\n\
         backend ferry\n  balance leastconn\n  server ferry1 \"${FERRY_1}\" check inter 1s\n\
         \x20 server ferry2 \"${FERRY_2}\" check inter 1s\n"
            .to_string()
    });
    // The backend is the file's last section.
    config.push_str("    server ferry3 \"${FERRY_3}\"\n");
    config
}

/// A TCP balancer over the Garage nodes' S3 ports (the instances' one S3 endpoint).
fn garage_balancer_config(front: u16, garage: &Garage) -> String {
    let mut config = format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 5m\n    timeout server 5m\n\
         \x20   retries 2\n    option redispatch 1\n\
         frontend s3\n    bind 127.0.0.1:{front}\n    default_backend garage\n\
         backend garage\n    balance roundrobin\n"
    );
    for (index, node) in garage.nodes().iter().enumerate() {
        config.push_str(&format!(
            "    server garage{index} 127.0.0.1:{} check inter 1s fall 2 rise 2\n",
            node.s3_port
        ));
    }
    config
}

#[test]
#[ignore = "opt-in: needs garage (cargo install garage --locked); see the module docs"]
fn garage_cluster_under_node_and_instance_kills() {
    let clients = env_number("FERRY_GARAGE_CLIENTS", 64) as usize;
    let max_mib = env_number("FERRY_GARAGE_MAX_MIB", 16).max(4);
    let setup_started = Instant::now();
    let mut garage = Garage::start_cluster(3).unwrap_or_else(|e| panic!("garage: {e}"));
    garage.create_bucket("ferry").unwrap();
    let postgres = Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
    let metadata = postgres.create_database("ferry").unwrap();
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs");
    let s3_front = free_port().unwrap();
    let mut s3_balancer = HaProxy::start(&garage_balancer_config(s3_front, &garage))
        .unwrap_or_else(|e| panic!("haproxy (S3): {e}"));
    s3_balancer
        .wait_listening(format!("127.0.0.1:{s3_front}").parse().unwrap())
        .unwrap();

    let start_instance = |index: usize| -> Running {
        let own = root.path().join(format!("instance{index}"));
        std::fs::create_dir_all(&own).unwrap();
        let mut command = binary::command(&own.join("data"), "127.0.0.1:0");
        command.env("FERRY_LOG", "warn");
        command
            .arg("--certs")
            .arg(&certs)
            .arg("--spool")
            .arg(own.join("spool"))
            .args(["--store", "s3://ferry/files", "--metadata", &metadata])
            .args(["--s3-endpoint", &format!("http://127.0.0.1:{s3_front}")])
            .args(["--s3-region", garage.region()])
            .args(["--s3-access-key-id", garage.access_key()])
            .args(["--s3-secret-access-key", garage.secret_key()])
            .args(["--proxy-protocol", "--proxy-from", "127.0.0.1/32"]);
        binary::spawn(command, own.join("storage"), certs.clone())
    };

    let front = free_port().unwrap();
    let haproxy_dir = root.path().join("haproxy");
    std::fs::create_dir_all(&haproxy_dir).unwrap();
    let first = start_instance(1);
    let pki = Pki::open(&certs);
    std::fs::copy(pki.ca(), haproxy_dir.join("ca.crt")).unwrap();
    std::fs::copy(
        pki.bundle("haproxy-check"),
        haproxy_dir.join("haproxy-check.pem"),
    )
    .unwrap();
    let mut instances = vec![first, start_instance(2), start_instance(3)];
    let env = vec![
        ("FERRY_FRONT", format!("127.0.0.1:{front}")),
        ("FERRY_1", instances[0].addr.to_string()),
        ("FERRY_2", instances[1].addr.to_string()),
        ("FERRY_3", instances[2].addr.to_string()),
        ("FERRY_CERTS", haproxy_dir.display().to_string()),
        (
            "FERRY_STATS",
            haproxy_dir.join("stats.sock").display().to_string(),
        ),
    ];
    let mut haproxy = HaProxy::start_with_env(&ferry_balancer_config(), &env)
        .unwrap_or_else(|e| panic!("haproxy: {e}"));
    haproxy
        .wait_listening(format!("127.0.0.1:{front}").parse().unwrap())
        .unwrap();
    // The health checks mark the instances up after `rise` good checks.
    std::thread::sleep(Duration::from_secs(3));

    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut jobs = Vec::new();
    for i in 0..clients {
        let size = (4 + (i as u64 * 7) % (max_mib - 3)) * MIB + i as u64 * 4099;
        let path = data.join(format!("f{i:02}"));
        write_pseudo_random(&path, size, 1000 + i as u64).unwrap();
        let mut options = pki.client_options(
            &format!("c{i:02}"),
            format!("127.0.0.1:{front}").parse().unwrap(),
        );
        options.server = format!("127.0.0.1:{front}");
        jobs.push((options, path, format!("file-{i:02}"), size));
    }
    let total: u64 = jobs.iter().map(|job| job.3).sum();
    eprintln!(
        "setup: {:.1} s; {clients} clients, {:.0} MiB in all",
        setup_started.elapsed().as_secs_f64(),
        total as f64 / MIB as f64
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let progress: Vec<Arc<AtomicU64>> = (0..clients).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let started = Instant::now();
    let mut garage_killed_at = None;
    let mut ferry_killed_at = None;
    let outcomes: Vec<Outcome> = runtime.block_on(async {
        let tasks: Vec<_> = jobs
            .into_iter()
            .zip(&progress)
            .map(|((options, path, name, size), done)| {
                tokio::spawn(upload_until_done(options, path, name, size, done.clone()))
            })
            .collect();
        while !tasks.iter().all(|task| task.is_finished()) {
            let done: u64 = progress.iter().map(|d| d.load(Ordering::Relaxed)).sum();
            if garage_killed_at.is_none() && done * 4 >= total {
                garage.kill_node(2);
                garage_killed_at = Some(started.elapsed());
                eprintln!(
                    "{:.1} s: SIGKILL garage node 2",
                    started.elapsed().as_secs_f64()
                );
            }
            if ferry_killed_at.is_none() && done * 2 >= total {
                instances[2].child.kill().unwrap();
                ferry_killed_at = Some(started.elapsed());
                eprintln!(
                    "{:.1} s: SIGKILL ferry-server 3",
                    started.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    });
    let elapsed = started.elapsed();

    // Every verified upload downloads back byte-identical (through the balancer, which
    // now reaches instances 1 and 2 and Garage nodes 0 and 1).
    let check_started = Instant::now();
    let downloads = root.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let mut mismatched = Vec::new();
    runtime.block_on(async {
        for outcome in outcomes.iter().filter(|o| o.verified) {
            let client_name = format!("c{}", &outcome.name[5..]);
            let options =
                pki.client_options(&client_name, format!("127.0.0.1:{front}").parse().unwrap());
            let dest = downloads.join(&outcome.name);
            let mut client = Client::new(options);
            let result = client
                .download_file(&outcome.name, &dest, &mut |_| {})
                .await;
            client.close().await;
            let same = result.is_ok()
                && std::fs::read(&dest).unwrap() == std::fs::read(&outcome.path).unwrap();
            if !same {
                mismatched.push((outcome.name.clone(), result.err().map(|e| e.with_causes())));
            }
            let _ = std::fs::remove_file(&dest);
        }
    });

    let verified = outcomes.iter().filter(|o| o.verified).count();
    let first = outcomes.iter().filter(|o| o.first_verified).count();
    let reruns: u32 = outcomes.iter().map(|o| o.reruns).sum();
    let reconnects: u32 = outcomes.iter().map(|o| o.reconnects).sum();
    let bytes: u64 = outcomes.iter().filter(|o| o.verified).map(|o| o.size).sum();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| clients | {clients} |");
    println!(
        "| bytes verified | {:.0} MiB of {:.0} MiB |",
        bytes as f64 / MIB as f64,
        total as f64 / MIB as f64
    );
    println!("| wall time | {:.1} s |", elapsed.as_secs_f64());
    println!(
        "| throughput | {:.1} MiB/s |",
        bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| Garage node 2 killed at | {:.1} s |",
        garage_killed_at.unwrap_or_default().as_secs_f64()
    );
    println!(
        "| ferry-server 3 killed at | {:.1} s |",
        ferry_killed_at.unwrap_or_default().as_secs_f64()
    );
    println!("| verified on the first call | {first} |");
    println!("| verified after reruns | {} |", verified - first);
    println!("| reruns (upload calls again) | {reruns} |");
    println!("| library reconnects in verified calls | {reconnects} |");
    println!("| never verified | {} |", clients - verified);
    println!(
        "| downloaded back and compared | {:.1} s, {} mismatched |",
        check_started.elapsed().as_secs_f64(),
        mismatched.len()
    );
    for outcome in outcomes.iter().filter(|o| !o.verified) {
        eprintln!(
            "{}: {}",
            outcome.name,
            outcome.last_error.as_deref().unwrap_or("?")
        );
    }
    assert!(
        mismatched.is_empty(),
        "verified but not identical: {mismatched:?}"
    );
    assert_eq!(verified, clients, "every upload completes after reruns");
    assert!(
        garage_killed_at.is_some() && ferry_killed_at.is_some(),
        "both kills happened"
    );
    drop(haproxy);
    drop(instances);
    drop(s3_balancer);
}
