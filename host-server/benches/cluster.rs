//! Ferry on S3 (s3s-fs) and PostgreSQL, measured with the release server:
//!
//! - (a) one upload of 1 GiB through Ferry against object_store's own multipart PUT of the
//!   same file to the same s3s-fs, same part size (target: Ferry ≥ 0.8×);
//! - (b) 16 concurrent clients through HAProxy to 1, then 2 instances: aggregate throughput
//!   and each instance's CPU seconds per GiB from /proc (target: 2 ≥ 1.6× 1 where CPU
//!   allows; on 2 cores the projection to N cores);
//! - (c) one instance's peak RSS during 256 concurrent uploads (target ≤ 64 MiB).
//!
//! ```text
//! cargo bench -p ferry-server --bench cluster
//! ```
//!
//! `FERRY_BENCH_MIB` sets the bytes of each part (default 1024 MiB). Needs postgres,
//! s3s-fs and haproxy (`bash .ci/test-deps`). The clients are the ferry client library in
//! this process, so they share the machine's cores with the servers: the figures are for
//! this machine, printed as a markdown table, never asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_testkit::cluster::{free_port, HaProxy, Postgres, S3Server};
use ferry_testkit::data::write_pseudo_random;
use ferry_testkit::pki::Pki;
use ferry_tokio::client::{Client, ClientOptions};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStoreExt, WriteMultipart};

const MIB: u64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;
/// Ferry's default S3 part size, used by both sides of (a).
const PART: u64 = 8 * MIB;

/// The stores and the shared certificates every instance uses.
struct Stores {
    _postgres: Postgres,
    s3: S3Server,
    metadata: String,
    root: tempfile::TempDir,
    started: usize,
}

/// A release `ferry-server` process, killed on drop.
struct Instance {
    child: Child,
    addr: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stores {
    fn start() -> Stores {
        let postgres = Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
        let metadata = postgres.create_database("bench").unwrap();
        let s3 = S3Server::start().unwrap_or_else(|e| panic!("s3s-fs: {e}"));
        s3.create_bucket("bench").unwrap();
        s3.create_bucket("raw").unwrap();
        Stores {
            _postgres: postgres,
            s3,
            metadata,
            root: tempfile::tempdir().unwrap(),
            started: 0,
        }
    }

    fn certs(&self) -> PathBuf {
        self.root.path().join("certs")
    }

    /// Starts an instance on the bucket `bench`, waiting for its readiness line.
    fn instance(&mut self) -> Instance {
        use std::io::BufRead;
        let own = self.root.path().join(format!("instance{}", self.started));
        self.started += 1;
        std::fs::create_dir_all(&own).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
            .args(["--no-web", "--listen", "127.0.0.1:0"])
            .arg("--certs")
            .arg(self.certs())
            .arg("--spool")
            .arg(own.join("spool"))
            .args(["--store", "s3://bench/files", "--metadata", &self.metadata])
            .args([
                "--s3-endpoint",
                &self.s3.endpoint(),
                "--s3-region",
                self.s3.region(),
            ])
            .args(["--s3-access-key-id", self.s3.access_key()])
            .args(["--s3-secret-access-key", self.s3.secret_key()])
            .args(["--s3-part-size", &PART.to_string()])
            .args([
                "--max-handshakes",
                "512",
                "--max-handshakes-per-source",
                "512",
            ])
            .args(["--max-connections", "1024"])
            .env("FERRY_DATA_DIR", own.join("data"))
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ferry-server starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("ferry-server listens").unwrap();
            if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
                break addr.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Instance { child, addr }
    }

    fn client(&self, name: &str, server: &str) -> ClientOptions {
        Pki::open(&self.certs()).client_options(name, server.parse().unwrap())
    }
}

/// CPU seconds (user + system) of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = procfs::process::Process::new(pid as i32)
        .unwrap()
        .stat()
        .unwrap();
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

/// Resident set size of `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = procfs::process::Process::new(pid as i32)
        .unwrap()
        .status()
        .unwrap();
    status.vmrss.unwrap_or(0) * 1024
}

/// Uploads `path` as `name` for each (options, name) at once; the wall time.
async fn upload_all(jobs: Vec<(ClientOptions, PathBuf, String)>) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|(options, path, name)| {
            tokio::spawn(async move {
                let mut client = Client::new(options);
                let report = client.upload_file(&path, &name, &mut |_| {}).await;
                client.close().await;
                report.unwrap_or_else(|e| panic!("upload {name}: {}", e.with_causes()))
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// (a) Ferry vs object_store, one file of `size` bytes.
fn single_upload(stores: &mut Stores, runtime: &tokio::runtime::Runtime, size: u64) -> Vec<String> {
    let instance = stores.instance();
    let file = stores.root.path().join("single");
    write_pseudo_random(&file, size, 1).unwrap();
    let options = stores.client("single", &instance.addr);
    let ferry = runtime.block_on(upload_all(vec![(options, file.clone(), "single".into())]));

    let store = AmazonS3Builder::new()
        .with_endpoint(stores.s3.endpoint())
        .with_allow_http(true)
        .with_region(stores.s3.region())
        .with_bucket_name("raw")
        .with_access_key_id(stores.s3.access_key())
        .with_secret_access_key(stores.s3.secret_key())
        .build()
        .unwrap();
    let raw = runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let started = Instant::now();
        let upload = store.put_multipart(&"single".into()).await.unwrap();
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART as usize);
        let mut source = tokio::fs::File::open(&file).await.unwrap();
        let mut buf = vec![0u8; MIB as usize];
        loop {
            let n = source.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await.unwrap();
            writer.write(&buf[..n]);
        }
        writer.finish().await.unwrap();
        started.elapsed()
    });
    std::fs::remove_file(&file).unwrap();
    let rate = |d: Duration| size as f64 / MIB as f64 / d.as_secs_f64();
    vec![
        format!(
            "| (a) 1 upload, Ferry on s3s-fs | {:.1} s | {:.0} MiB/s |",
            ferry.as_secs_f64(),
            rate(ferry)
        ),
        format!(
            "| (a) object_store multipart PUT, same s3s-fs, 8 MiB parts | {:.1} s | {:.0} MiB/s |",
            raw.as_secs_f64(),
            rate(raw)
        ),
        format!(
            "| (a) Ferry / object_store (target ≥ 0.8) | | {:.2}× |",
            rate(ferry) / rate(raw)
        ),
    ]
}

/// (b) 16 clients through HAProxy to the first `count` of `instances`.
fn balanced(
    stores: &Stores,
    runtime: &tokio::runtime::Runtime,
    instances: &[Instance],
    files: &[PathBuf],
    each: u64,
) -> (f64, Vec<String>) {
    let front = free_port().unwrap();
    let mut config = format!(
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 10m\n    timeout server 10m\n\
         frontend ferry\n    bind 127.0.0.1:{front}\n    default_backend ferry\n\
         backend ferry\n    balance leastconn\n"
    );
    for (index, instance) in instances.iter().enumerate() {
        config.push_str(&format!("    server ferry{index} {}\n", instance.addr));
    }
    let mut haproxy = HaProxy::start(&config).unwrap();
    let front_addr = format!("127.0.0.1:{front}");
    haproxy.wait_listening(front_addr.parse().unwrap()).unwrap();
    let round = instances.len();
    let jobs = files
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let options = stores.client(&format!("b{i:02}"), &front_addr);
            (options, path.clone(), format!("balanced-{round}-{i:02}"))
        })
        .collect();
    let before: Vec<f64> = instances
        .iter()
        .map(|i| cpu_seconds(i.child.id()))
        .collect();
    // Where else the cores go: the clients (this process), s3s-fs, HAProxy.
    let others = [
        ("clients (this process)", std::process::id()),
        ("s3s-fs", stores.s3.pid()),
        ("HAProxy", haproxy.pid()),
    ];
    let others_before: Vec<f64> = others.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let wall = runtime.block_on(upload_all(jobs));
    let others_cpu: Vec<f64> = others
        .iter()
        .zip(&others_before)
        .map(|((_, pid), before)| cpu_seconds(*pid) - before)
        .collect();
    let total = each as f64 * files.len() as f64;
    let rate = total / MIB as f64 / wall.as_secs_f64();
    let mut rows = vec![format!(
        "| (b) 16 clients via HAProxy → {round} instance(s) | {:.1} s | {rate:.0} MiB/s |",
        wall.as_secs_f64()
    )];
    let mut cpu_total = 0.0;
    for (index, instance) in instances.iter().enumerate() {
        let cpu = cpu_seconds(instance.child.id()) - before[index];
        cpu_total += cpu;
        rows.push(format!(
            "| (b) {round} instance(s): instance {} CPU | {cpu:.1} s | {:.1} CPU s/GiB of all bytes |",
            index + 1,
            cpu / (total / GIB)
        ));
    }
    let others_text: Vec<String> = others
        .iter()
        .zip(&others_cpu)
        .map(|((label, _), cpu)| format!("{label} {cpu:.1} s"))
        .collect();
    rows.push(format!(
        "| (b) {round} instance(s): CPU of Ferry and the others, of the cores' time | {:.1} s of {:.1} core-s | others: {} |",
        others_cpu.iter().sum::<f64>() + cpu_total,
        wall.as_secs_f64() * std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        others_text.join(", ")
    ));
    let per_gib = cpu_total / (total / GIB);
    rows.push(format!(
        "| (b) {round} instance(s): Ferry CPU per GiB, projection | {per_gib:.1} CPU s/GiB | ≈ {:.0} MiB/s per core of Ferry alone |",
        1024.0 / per_gib
    ));
    drop(haproxy);
    (rate, rows)
}

/// (c) Peak RSS of one instance during 256 concurrent uploads of `each` bytes.
fn rss_at_256(stores: &mut Stores, runtime: &tokio::runtime::Runtime, each: u64) -> Vec<String> {
    let instance = stores.instance();
    let dir = stores.root.path().join("rss");
    std::fs::create_dir_all(&dir).unwrap();
    let jobs: Vec<_> = (0..256)
        .map(|i| {
            let path = dir.join(format!("r{i:03}"));
            write_pseudo_random(&path, each, 300 + i).unwrap();
            let options = stores.client(&format!("r{i:03}"), &instance.addr);
            (options, path, format!("rss-{i:03}"))
        })
        .collect();
    let idle = rss(instance.child.id());
    let peak = Arc::new(AtomicU64::new(idle));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pid) = (peak.clone(), stop.clone(), instance.child.id());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let wall = runtime.block_on(upload_all(jobs));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    vec![format!(
        "| (c) 256 concurrent uploads of {} MiB, 1 instance: peak RSS (target ≤ 64 MiB) | {:.1} s | {:.1} MiB (idle {:.1} MiB) |",
        each / MIB,
        wall.as_secs_f64(),
        peak.load(Ordering::Relaxed) as f64 / MIB as f64,
        idle as f64 / MIB as f64
    )]
}

fn main() {
    // `cargo bench` passes --bench; a filter is not supported.
    let total = std::env::var("FERRY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1024)
        * MIB;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut stores = Stores::start();
    let mut rows = vec![
        "| measure | time | result |".to_string(),
        "|---|---|---|".to_string(),
    ];
    eprintln!("(a) one upload of {} MiB", total / MIB);
    rows.extend(single_upload(&mut stores, &runtime, total));

    eprintln!("(b) 16 clients through HAProxy, 1 then 2 instances");
    let each = (total / 16 / (64 * 1024)).max(1) * 64 * 1024;
    let dir = stores.root.path().join("balanced");
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = (0..16)
        .map(|i| {
            let path = dir.join(format!("b{i:02}"));
            write_pseudo_random(&path, each, 100 + i).unwrap();
            path
        })
        .collect();
    let instances = vec![stores.instance(), stores.instance()];
    let (one, rows_one) = balanced(&stores, &runtime, &instances[..1], &files, each);
    let (two, rows_two) = balanced(&stores, &runtime, &instances, &files, each);
    rows.extend(rows_one);
    rows.extend(rows_two);
    rows.push(format!(
        "| (b) 2 instances / 1 instance (target ≥ 1.6 where CPU allows) | | {:.2}× |",
        two / one
    ));
    drop(instances);
    remove_all(&files);

    eprintln!("(c) 256 concurrent uploads to one instance");
    rows.extend(rss_at_256(&mut stores, &runtime, (total / 256).max(MIB)));
    println!(
        "\nFerry cluster benchmark ({} cores, load {})\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for row in rows {
        println!("{row}");
    }
}

fn remove_all(files: &[PathBuf]) {
    for file in files {
        let _ = std::fs::remove_file(Path::new(file));
    }
}
