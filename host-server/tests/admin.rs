//! The admin listener of the real server (in process): `/metrics` counts exactly the
//! transfers made, `/readyz` turns 503 when the storage cannot be written (for root too),
//! `/healthz` answers, and a public address needs `--admin-public`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_certs::rustls::pki_types::ServerName;
use ferry_server::admin::AdminError;
use ferry_server::{AdminServer, Server, ServerOptions};
use ferry_testkit::data::{pseudo_random, write_file};
use ferry_testkit::pki::{raw_tls, Pki};
use ferry_tokio::client::{Client, ClientError, Progress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

const CHUNK: usize = 64 * 1024;

/// A server and its admin listener on ephemeral loopback ports.
struct Running {
    addr: SocketAddr,
    admin: SocketAddr,
    storage: PathBuf,
    certs: PathBuf,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn start(storage: PathBuf, certs: PathBuf) -> Running {
    let options = ServerOptions {
        listen: "127.0.0.1:0".into(),
        storage: storage.clone(),
        certs: certs.clone(),
        ..ServerOptions::default()
    };
    let server = Server::bind(options).await.expect("the server binds");
    let admin = AdminServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        false,
        server.metrics().clone(),
        server.health().clone(),
    )
    .await
    .expect("the admin listener binds");
    let (addr, admin_addr) = (server.local_addr(), admin.local_addr());
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.changed().await;
    };
    tokio::spawn(admin.serve(until_stopped(stopped.clone())));
    tokio::spawn(async move {
        server
            .serve(until_stopped(stopped))
            .await
            .expect("the server serves")
    });
    Running {
        addr,
        admin: admin_addr,
        storage,
        certs,
        stop,
    }
}

/// GET `path` over HTTP/1.1: status and body.
async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(admin).await.expect("connect to admin");
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// The value of the sample `key` (name and labels as exposed), if present.
fn sample(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
}

/// Scrapes until `done` holds (the server counts a transfer's end just after the client
/// sees it) or 10 s passed; returns the last scrape.
async fn scrape_until(admin: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = get(admin, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn no_progress() -> impl FnMut(Progress) + Send {
    |_| {}
}

#[tokio::test]
async fn metrics_count_exactly_the_transfers_made() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(temp.path().join("storage"), temp.path().join("certs")).await;
    let (status, before) = get(server.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(sample(&before, "ferry_received_bytes_total"), Some(0.0));

    let pki = Pki::open(&server.certs);
    let mut alice = Client::connect(pki.client_options("alice", server.addr))
        .await
        .expect("alice connects");
    let big = pseudo_random(3 * CHUNK + 1234, 7);
    let small = pseudo_random(5000, 8);
    let big_path = write_file(temp.path(), "big.bin", &big);
    let small_path = write_file(temp.path(), "small.bin", &small);
    alice
        .upload_file(&big_path, "big.bin", &mut no_progress())
        .await
        .unwrap();
    alice
        .upload_file(&small_path, "small.bin", &mut no_progress())
        .await
        .unwrap();
    let copy = temp.path().join("copy.bin");
    alice
        .download_file("big.bin", &copy, &mut no_progress())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), big);
    let missing = alice
        .download_file("missing", &temp.path().join("m"), &mut no_progress())
        .await;
    assert!(
        matches!(missing, Err(ClientError::Refused { .. })),
        "{missing:?}"
    );
    alice.close().await;

    // A client of another CA (of the same default name) that trusts this server: its
    // certificate is refused, its signature is not the CA's.
    let other = Pki::fresh();
    let stranger = other.client("mallory");
    let tls = raw_tls(
        &std::fs::read_to_string(pki.ca()).unwrap(),
        Some((
            &std::fs::read_to_string(&stranger.cert).unwrap(),
            &std::fs::read_to_string(&stranger.key).unwrap(),
        )),
    );
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    // TLS 1.3: the client may finish before the server refuses; reading shows the refusal.
    if let Ok(mut stream) = TlsConnector::from(Arc::clone(&tls))
        .connect(name, tcp)
        .await
    {
        let mut byte = [0u8; 1];
        assert!(
            !matches!(stream.read(&mut byte).await, Ok(n) if n > 0),
            "the server talked to a client of another CA"
        );
    }

    let expected = [
        ("ferry_transfers_started_total{kind=\"upload\"}", 2.0),
        ("ferry_transfers_started_total{kind=\"download\"}", 1.0),
        (
            "ferry_transfers_finished_total{kind=\"upload\",result=\"verified\"}",
            2.0,
        ),
        (
            "ferry_transfers_finished_total{kind=\"download\",result=\"verified\"}",
            1.0,
        ),
        (
            "ferry_received_bytes_total",
            (big.len() + small.len()) as f64,
        ),
        ("ferry_sent_bytes_total", big.len() as f64),
        (
            "ferry_requests_refused_total{op=\"download\",code=\"not_found\"}",
            1.0,
        ),
        (
            "ferry_tls_handshakes_failed_total{reason=\"bad_signature\"}",
            1.0,
        ),
        ("ferry_commit_duration_seconds_count", 2.0),
        (
            "ferry_transfer_duration_seconds_count{kind=\"upload\"}",
            2.0,
        ),
        ("ferry_chunks_refused_total", 0.0),
        ("ferry_chunks_resent_total", 0.0),
        ("ferry_revoked_certificates_refused_total", 0.0),
        ("ferry_connections_open", 0.0),
        ("ferry_partial_uploads", 0.0),
    ];
    let text = scrape_until(server.admin, |text| {
        expected
            .iter()
            .all(|(key, value)| sample(text, key) == Some(*value))
    })
    .await;
    for (key, value) in expected {
        assert_eq!(sample(&text, key), Some(value), "{key} in:\n{text}");
    }
    // Nothing else failed: no failed transfer, no other handshake failure.
    assert!(!text.contains("result=\"failed\""), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("ferry_tls_handshakes_failed_total"))
            .count(),
        1,
        "{text}"
    );
    let used = sample(&text, "ferry_storage_used_bytes").unwrap();
    assert!(used >= (big.len() + small.len()) as f64, "{text}");
    println!("/metrics after the run:\n{text}");
}

/// Mounts a tmpfs at `dir` and can remount it read-only; unmounts on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

async fn readyz(admin: SocketAddr) -> (u16, String) {
    get(admin, "/readyz").await
}

#[tokio::test]
async fn readyz_fails_when_the_storage_cannot_be_written() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(temp.path().join("storage"), temp.path().join("certs")).await;
    let (status, body) = readyz(server.admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ready\n"), "{body}");
    for line in ["listening: ok", "storage: ok", "ca: ok", "crl: ok"] {
        assert!(body.contains(line), "{line} missing: {body}");
    }
    assert_eq!(get(server.admin, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(server.admin, "/nothing").await.0, 404);

    // Permission bits do not stop root: replace the storage directory by a file instead.
    let moved = temp.path().join("storage.moved");
    std::fs::rename(&server.storage, &moved).unwrap();
    std::fs::write(&server.storage, b"not a directory").unwrap();
    let (status, body) = readyz(server.admin).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(body.contains("storage: FAILED: cannot write to"), "{body}");
    assert!(body.contains("listening: ok"), "{body}");
    std::fs::remove_file(&server.storage).unwrap();
    std::fs::rename(&moved, &server.storage).unwrap();
    assert_eq!(readyz(server.admin).await.0, 200);
}

#[tokio::test]
async fn readyz_fails_on_a_read_only_mount() {
    let temp = tempfile::tempdir().unwrap();
    let mount_point = temp.path().join("ro");
    let tmpfs = match Tmpfs::mount(&mount_point) {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            // Not every machine lets a test mount (no root, no CAP_SYS_ADMIN); the test
            // above covers an unwritable storage directory without mounting.
            eprintln!("SKIPPED: cannot mount a tmpfs here: {why}");
            return;
        }
    };
    let server = start(mount_point.join("storage"), temp.path().join("certs")).await;
    assert_eq!(readyz(server.admin).await.0, 200);
    tmpfs.remount("ro");
    let (status, body) = readyz(server.admin).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Read-only file system"), "{body}");
    tmpfs.remount("rw");
    assert_eq!(readyz(server.admin).await.0, 200);
    drop(server);
    // Let the server's tasks let go of the mount before it is unmounted.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_public_admin_address_needs_admin_public() {
    let temp = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        listen: "127.0.0.1:0".into(),
        storage: temp.path().join("storage"),
        certs: temp.path().join("certs"),
        ..ServerOptions::default()
    };
    let server = Server::bind(options).await.unwrap();
    let bind = |public| {
        AdminServer::bind(
            "0.0.0.0:0".parse().unwrap(),
            public,
            server.metrics().clone(),
            server.health().clone(),
        )
    };
    let refused = bind(false).await.unwrap_err();
    assert!(matches!(refused, AdminError::NotLoopback(_)), "{refused}");
    assert!(refused.to_string().contains("--admin-public"), "{refused}");
    assert!(bind(true).await.is_ok());
}
