//! Two or more real `ferry-server` processes on one S3 bucket (s3s-fs) and one PostgreSQL
//! database, sharing one certificate directory, driven by the ferry client library:
//! round trips across instances, resume across instances after SIGKILL, a same-name race,
//! a quota across instances and a revocation both see.
//!
//! Needs `postgres` (initdb, psql, pg_isready) and `s3s-fs`; `bash .ci/test-deps` installs
//! them. Each test has its own bucket, database and certificates; the PostgreSQL and s3s-fs
//! servers are shared by the tests running at the same time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_certs::CertDir;
use ferry_core::ErrorCode;
use ferry_testkit::cluster::{Postgres, S3Server};
use ferry_testkit::data::{pseudo_random, write_file, write_pseudo_random};
use ferry_testkit::pki::Pki;
use ferry_tokio::client::{Client, ClientError, ClientOptions, Progress, TransferReport};

mod server_support;
use server_support::binary::{self, Running};

const CHUNK: u64 = 64 * 1024;
/// The S3 part size the instances run with (S3's smallest).
const PART: u64 = 5 << 20;
/// The client library's default window (chunks in flight).
const WINDOW: u64 = 16;
const LOCAL: &str = "local";

/// One bucket, one database, one certificate directory; instances started on demand.
struct Cluster {
    _postgres: Arc<Postgres>,
    s3: Arc<S3Server>,
    bucket: String,
    metadata: String,
    extra: Vec<String>,
    root: tempfile::TempDir,
    started: usize,
}

impl Cluster {
    /// A bucket and a database named after `test`; `extra` flags for every instance.
    fn new(test: &str, extra: &[&str]) -> Cluster {
        let postgres = Postgres::shared().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
        let s3 = S3Server::shared().unwrap_or_else(|e| panic!("s3s-fs: {e}"));
        let bucket = format!("ferry-{}", test.replace('_', "-"));
        s3.create_bucket(&bucket).unwrap();
        let metadata = postgres.unique_database(test).unwrap();
        Cluster {
            _postgres: postgres,
            s3,
            bucket,
            metadata,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            root: tempfile::tempdir().unwrap(),
            started: 0,
        }
    }

    /// The shared certificate directory (made by the first instance).
    fn certs(&self) -> PathBuf {
        self.root.path().join("certs")
    }

    /// Starts one more `ferry-server` on the shared bucket, database and certificates, with
    /// a data and spool directory of its own.
    fn start(&mut self) -> Running {
        self.start_with_certs(self.certs())
    }

    /// Starts an instance with a copy of the shared certificate directory made now: what
    /// later changes in the shared one reaches it only through the database.
    fn start_with_copied_certs(&mut self) -> Running {
        let copy = self.root.path().join(format!("certs-copy{}", self.started));
        copy_dir(&self.certs(), &copy);
        self.start_with_certs(copy)
    }

    fn start_with_certs(&mut self, certs: PathBuf) -> Running {
        let own = self.root.path().join(format!("instance{}", self.started));
        self.started += 1;
        std::fs::create_dir_all(&own).unwrap();
        let mut command = binary::command(&own.join("data"), "127.0.0.1:0");
        command
            .arg("--certs")
            .arg(&certs)
            .arg("--spool")
            .arg(own.join("spool"))
            .arg("--store")
            .arg(format!("s3://{}/files", self.bucket))
            .args(["--metadata", &self.metadata])
            .args(["--s3-endpoint", &self.s3.endpoint()])
            .args(["--s3-region", self.s3.region()])
            .args(["--s3-access-key-id", self.s3.access_key()])
            .args(["--s3-secret-access-key", self.s3.secret_key()])
            .args(["--s3-part-size", &PART.to_string()])
            .args(&self.extra);
        binary::spawn(command, own.join("storage"), certs)
    }

    /// Client options of client `name` (issued if new) against `server`.
    fn client(&self, name: &str, server: &Running) -> ClientOptions {
        Pki::open(&self.certs()).client_options(name, server.addr)
    }

    /// Bytes in the bucket's files on s3s-fs's disk (objects are plain files there).
    fn bucket_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|entry| match entry.file_type().unwrap().is_dir() {
                    true => walk(&entry.path()),
                    false => entry.metadata().unwrap().len(),
                })
                .sum()
        }
        walk(&self.s3.root().join(&self.bucket))
    }

    /// A directory for the test's local files.
    fn local(&self) -> PathBuf {
        let dir = self.root.path().join("local");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

async fn upload(
    options: ClientOptions,
    path: &Path,
    name: &str,
) -> Result<TransferReport, ClientError> {
    let mut client = Client::new(options);
    let result = client.upload_file(path, name, &mut |_| {}).await;
    client.close().await;
    result
}

/// Downloads `name` through `options` and returns its bytes.
async fn download(options: ClientOptions, name: &str, dir: &Path) -> Result<Vec<u8>, ClientError> {
    let dest = dir.join(format!("downloaded-{}", fastrand_suffix()));
    let mut client = Client::new(options);
    let result = client.download_file(name, &dest, &mut |_| {}).await;
    client.close().await;
    result?;
    let bytes = std::fs::read(&dest).unwrap();
    std::fs::remove_file(&dest).unwrap();
    Ok(bytes)
}

/// A suffix unique in this process (downloads of one test may run at once).
fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn refusal(result: &Result<TransferReport, ClientError>) -> Option<ErrorCode> {
    result.as_ref().err().and_then(ClientError::refusal_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_part_edge_sizes_round_trip_across_instances_and_list_and_delete_on_either() {
    let mut cluster = Cluster::new("round_trips", &[]);
    let (a, b) = (cluster.start(), cluster.start());
    let local = cluster.local();
    let sizes = [0, 1, PART - 1, PART, PART + 1, 100 << 20];
    for (seed, size) in sizes.into_iter().enumerate() {
        let name = format!("size-{size}");
        let path = local.join(&name);
        write_pseudo_random(&path, size, seed as u64).unwrap();
        let report = upload(cluster.client(LOCAL, &a), &path, &name)
            .await
            .unwrap();
        assert_eq!(report.size, size);
        let back = download(cluster.client(LOCAL, &b), &name, &local)
            .await
            .unwrap();
        assert!(
            back == std::fs::read(&path).unwrap(),
            "{name}: B returns what A stored"
        );
        std::fs::remove_file(&path).unwrap();
    }
    let stored = cluster.bucket_bytes();
    assert!(
        stored >= sizes.iter().sum::<u64>(),
        "the bytes are in the bucket: {stored}"
    );
    let mut client = Client::new(cluster.client(LOCAL, &b));
    let listed = client.list().await.unwrap();
    let mut expected: Vec<(String, u64)> = sizes
        .iter()
        .map(|size| (format!("size-{size}"), *size))
        .collect();
    expected.sort();
    let got: Vec<(String, u64)> = listed.iter().map(|e| (e.name.clone(), e.size)).collect();
    assert_eq!(got, expected, "B lists what A stored");
    client.close().await;

    let mut through_a = Client::new(cluster.client(LOCAL, &a));
    through_a.delete("size-1").await.unwrap();
    through_a.close().await;
    let gone = download(cluster.client(LOCAL, &b), "size-1", &local).await;
    let code = gone.as_ref().err().and_then(ClientError::refusal_code);
    assert_eq!(code, Some(ErrorCode::NOT_FOUND), "{gone:?}");
    let mut client = Client::new(cluster.client(LOCAL, &b));
    let names: Vec<String> = client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(!names.contains(&"size-1".to_string()), "{names:?}");
    assert_eq!(names.len(), sizes.len() - 1);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_sigkill_of_one_instance_resumes_on_another_sending_at_most_a_part_again()
{
    let mut cluster = Cluster::new("resume", &[]);
    let (mut a, b) = (cluster.start(), cluster.start());
    let size = 40u64 << 20;
    let path = cluster.local().join("big");
    write_pseudo_random(&path, size, 40).unwrap();

    // First attempt through A: SIGKILL A as soon as more than two parts are acknowledged.
    let a_pid = a.child.id();
    let mut first = cluster.client(LOCAL, &a);
    first.retries = 0;
    let mut done_at_kill = 0u64;
    let mut killed = false;
    let mut on_progress = |progress: Progress| {
        if !killed {
            done_at_kill = done_at_kill.max(progress.done_bytes);
        }
        if !killed && progress.done_bytes > 2 * PART + CHUNK {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &a_pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            killed = true;
        }
    };
    let mut client = Client::new(first);
    let cut = client.upload_file(&path, "big", &mut on_progress).await;
    drop(client);
    assert!(killed, "A was killed mid-upload ({cut:?})");
    assert!(
        cut.is_err(),
        "the upload through A cannot have completed: {cut:?}"
    );
    let _ = a.child.wait();

    // Second attempt through B (a lock A held may need a moment to lapse: retry BUSY).
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let result = upload(cluster.client(LOCAL, &b), &path, "big").await;
        match result {
            Ok(report) => break report,
            Err(e) if e.refusal_code() == Some(ErrorCode::BUSY) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("resuming through B: {e}"),
        }
    };
    let sent_again = report.chunks_sent * CHUNK;
    let resent = sent_again.saturating_sub(size - done_at_kill);
    eprintln!(
        "resume: A acknowledged {done_at_kill} bytes before SIGKILL; B held {} chunks, \
         {sent_again} bytes sent through B, {resent} sent again",
        report.held_at_start
    );
    assert!(
        resent <= PART + WINDOW * CHUNK,
        "sent again {resent} bytes > one part + the window ({report:?})"
    );
    let back = download(cluster.client(LOCAL, &b), "big", &cluster.local())
        .await
        .unwrap();
    assert!(
        back == std::fs::read(&path).unwrap(),
        "byte-identical after the resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_receiving_one_name_at_once_keep_exactly_one_whole_version() {
    let mut cluster = Cluster::new("same_name", &[]);
    let (a, b) = (cluster.start(), cluster.start());
    let local = cluster.local();
    let size = 3 * PART + 12_345;
    let contents = [
        pseudo_random(size as usize, 1),
        pseudo_random(size as usize, 2),
    ];
    let paths = [
        write_file(&local, "one", &contents[0]),
        write_file(&local, "two", &contents[1]),
    ];
    let (first, second) = tokio::join!(
        upload(cluster.client(LOCAL, &a), &paths[0], "race"),
        upload(cluster.client(LOCAL, &b), &paths[1], "race"),
    );
    let outcome = |r: &Result<TransferReport, ClientError>| match r {
        Ok(_) => "verified".to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!(
        "race: through A {}; through B {}",
        outcome(&first),
        outcome(&second)
    );
    for result in [&first, &second] {
        if let Err(e) = result {
            assert_eq!(
                refusal(result),
                Some(ErrorCode::BUSY),
                "a clear refusal: {e}"
            );
        }
    }
    assert!(
        first.is_ok() || second.is_ok(),
        "one of them won: {first:?} {second:?}"
    );
    for server in [&a, &b] {
        let stored = download(cluster.client(LOCAL, server), "race", &local)
            .await
            .unwrap();
        let which = contents.iter().position(|content| *content == stored);
        assert!(
            which.is_some(),
            "the stored file is one whole version, never a mix"
        );
        // The version kept is one whose upload was reported verified.
        let winner = [&first, &second][which.unwrap()];
        assert!(winner.is_ok(), "kept a version whose upload failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_holds_across_two_instances_under_concurrent_uploads() {
    let quota = 12u64 << 20;
    let mut cluster = Cluster::new("quota", &["--quota", &quota.to_string()]);
    let (a, b) = (cluster.start(), cluster.start());
    let local = cluster.local();
    let size = 5u64 << 20;
    let paths: Vec<PathBuf> = (0..4)
        .map(|i| {
            let path = local.join(format!("q{i}"));
            write_pseudo_random(&path, size, 100 + i).unwrap();
            path
        })
        .collect();
    let uploads = paths.iter().enumerate().map(|(i, path)| {
        let options = cluster.client(LOCAL, if i % 2 == 0 { &a } else { &b });
        async move { upload(options, path, &format!("q{i}")).await }
    });
    let results = futures_util::future::join_all(uploads).await;
    let mut succeeded = 0;
    for result in &results {
        match result {
            Ok(_) => succeeded += 1,
            Err(e) => assert_eq!(
                e.refusal_code(),
                Some(ErrorCode::QUOTA_EXCEEDED),
                "refused for the quota, not otherwise: {e}"
            ),
        }
    }
    eprintln!("quota: {succeeded} of 4 uploads of 5 MiB fit the 12 MiB quota");
    assert!(succeeded >= 1, "{results:?}");
    assert!(
        succeeded < 4,
        "20 MiB cannot fit a 12 MiB quota: {results:?}"
    );
    for server in [&a, &b] {
        let mut client = Client::new(cluster.client(LOCAL, server));
        let listed = client.list().await.unwrap();
        client.close().await;
        let total: u64 = listed.iter().map(|e| e.size).sum();
        assert!(total <= quota, "{total} stored > quota {quota}");
        assert_eq!(listed.len(), succeeded, "every verified upload is listed");
    }
}

/// Revokes `alice` in the shared certificate directory and waits until every instance of
/// `servers` refuses her (15 s at most), while `local` still gets in; how long it took.
async fn revoke_and_wait_refused(cluster: &Cluster, servers: &[(&str, &Running)]) -> Duration {
    for (_, server) in servers {
        let mut client = Client::new(cluster.client("alice", server));
        client
            .list()
            .await
            .expect("alice is let in before the revocation");
        client.close().await;
    }
    CertDir::new(cluster.certs()).revoke("alice").unwrap();
    let started = Instant::now();
    for (label, server) in servers {
        loop {
            let mut client = Client::new(cluster.client("alice", server));
            let result = client.list().await;
            client.close().await;
            if result.is_err() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "instance {label} still lets alice in after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let took = started.elapsed();
    // Another client still gets in: the refusal is the revocation, not a broken instance.
    for (_, server) in servers {
        let mut client = Client::new(cluster.client(LOCAL, server));
        client.list().await.expect("local is still let in");
        client.close().await;
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_both_instances_within_seconds() {
    let mut cluster = Cluster::new("revocation", &[]);
    let (a, b) = (cluster.start(), cluster.start());
    let took = revoke_and_wait_refused(&cluster, &[("A", &a), ("B", &b)]).await;
    eprintln!("revocation: refused by both after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_an_instance_with_its_own_certificate_copy_through_the_database() {
    let mut cluster = Cluster::new("revocation_copy", &[]);
    let a = cluster.start();
    let b = cluster.start_with_copied_certs();
    let took = revoke_and_wait_refused(&cluster, &[("A", &a), ("B (own copy)", &b)]).await;
    eprintln!("revocation through the database: refused by both after {took:?}");
}
