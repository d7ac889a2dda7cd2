//! HAProxy in front of two `ferry-server` instances with `--proxy-protocol`, configured by
//! `dist/haproxy.cfg` itself (its addresses and paths come from the environment): TLS
//! passes through, health checks with a client certificate of their own mark the instances
//! up, an upload through the balancer is logged with the client's own address, a direct
//! connection without a PROXY header is refused, and once an instance is killed HAProxy
//! marks it down and the next upload (with `ferry`'s client library) lands on the other.
//!
//! Needs `haproxy` (Debian's package); the test fails, not skips, without it.

mod server_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::cluster::free_port;
use ferry_testkit::data::{pseudo_random, write_file};
use ferry_testkit::pki::Pki;
use ferry_tokio::client::Client;
use server_support::binary::start;
use server_support::TestClient;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/haproxy.cfg");
/// How long HAProxy gets to mark an instance up or down (checks every second, 2 to change).
const STATE_CHANGE: Duration = Duration::from_secs(20);

/// A running `haproxy -db` (foreground), killed by pid when dropped.
struct Haproxy {
    child: Child,
    front: SocketAddr,
    stats: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// Starts HAProxy on a free port; on another one should that port be taken meanwhile.
    fn start(dir: &Path, instances: [SocketAddr; 2]) -> Haproxy {
        for _ in 0..5 {
            // HAProxy cannot bind port 0 and report it: a port free now.
            let front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
                .parse()
                .unwrap();
            let stats = dir.join("stats.sock");
            let _ = std::fs::remove_file(&stats);
            let child = Command::new("haproxy")
                .args(["-db", "-f", CONFIG])
                .env("FERRY_FRONT", front.to_string())
                .env("FERRY_1", instances[0].to_string())
                .env("FERRY_2", instances[1].to_string())
                .env("FERRY_CERTS", dir)
                .env("FERRY_STATS", &stats)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("haproxy (Debian package haproxy) starts");
            let mut haproxy = Haproxy {
                child,
                front,
                stats,
            };
            let started = Instant::now();
            while started.elapsed() < STATE_CHANGE {
                if haproxy.ask("show info").is_some() {
                    return haproxy;
                }
                if haproxy.child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("haproxy did not start (haproxy -c -f {CONFIG} says why)");
    }

    /// The runtime API's answer to `command`.
    fn ask(&self, command: &str) -> Option<String> {
        let mut socket = UnixStream::connect(&self.stats).ok()?;
        socket.write_all(format!("{command}\n").as_bytes()).ok()?;
        let mut answer = String::new();
        socket.read_to_string(&mut answer).ok()?;
        Some(answer)
    }

    /// The status column of `show stat` for server `name` of backend `ferry` ("UP",
    /// "DOWN", "UP 1/2"…).
    fn status(&self, name: &str) -> Option<String> {
        let stat = self.ask("show stat")?;
        let header = stat.lines().next()?.trim_start_matches("# ");
        let column = header.split(',').position(|c| c == "status")?;
        stat.lines()
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"ferry") && fields.get(1) == Some(&name))
            .and_then(|fields| fields.get(column).map(|s| s.to_string()))
    }

    fn wait_status(&self, name: &str, wanted: &str) {
        let started = Instant::now();
        loop {
            let status = self.status(name);
            if status.as_deref() == Some(wanted) {
                return;
            }
            assert!(
                started.elapsed() < STATE_CHANGE,
                "{name} is {status:?}, not {wanted}, after {STATE_CHANGE:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Uploads `data` as `name` through `addr`; returns the client's own address.
async fn upload(addr: SocketAddr, pki: &Pki, name: &str, data: &[u8]) -> SocketAddr {
    let mut client = TestClient::connect(addr, pki.client_tls("alice"))
        .await
        .expect("connects through HAProxy");
    let local = client.link.stream_mut().get_ref().0.local_addr().unwrap();
    client.upload(name, data, false).await.expect("uploads");
    local
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_passes_clients_through_with_their_address_and_fails_over() {
    let root = tempfile::tempdir().unwrap();
    let (a_root, b_root, balancer) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("haproxy"),
    );
    let proxy = ["--proxy-protocol"];
    // A bootstraps the CA; B gets a copy of the certificate directory (same CA, its own
    // storage), as two instances of one installation would.
    let a = start(&a_root, &proxy);
    let pki = Pki::open(&a.certs);
    pki.client("alice");
    let check = pki.client("haproxy-check");
    std::fs::create_dir_all(&balancer).unwrap();
    std::fs::copy(&check.bundle, balancer.join("haproxy-check.pem")).unwrap();
    std::fs::copy(pki.ca(), balancer.join("ca.crt")).unwrap();
    copy_dir(&a.certs, &b_root.join("certs"));
    let b = start(&b_root, &proxy);

    let haproxy = Haproxy::start(&balancer, [a.addr, b.addr]);
    // Both pass the mutual-TLS health check (with its LOCAL PROXY header).
    haproxy.wait_status("ferry1", "UP");
    haproxy.wait_status("ferry2", "UP");

    let first = pseudo_random(200_000, 1);
    let client = upload(haproxy.front, &pki, "first.bin", &first).await;

    // Without a header, straight to an instance: refused before TLS.
    assert!(
        TestClient::connect(a.addr, pki.client_tls("alice"))
            .await
            .is_err(),
        "a direct connection without a PROXY header was served"
    );

    // One instance killed: HAProxy marks it down and the next upload goes to the other.
    let stored_on_a = a.storage.join("alice/files/first.bin").exists();
    let (survivor, killed) = if stored_on_a { (b, a) } else { (a, b) };
    let killed_name = if stored_on_a { "ferry1" } else { "ferry2" };
    killed.signal("KILL");
    let (_, killed_log) = killed.wait(Duration::from_secs(10));
    haproxy.wait_status(killed_name, "DOWN");
    // This one with the client library of `ferry`.
    let second = pseudo_random(300_000, 2);
    let local = write_file(root.path(), "second.bin", &second);
    let mut ferry = Client::new(pki.client_options("alice", haproxy.front));
    let report = ferry.upload_file(&local, "second.bin", &mut |_| {}).await;
    ferry.close().await;
    report.expect("the ferry client uploads through HAProxy");
    assert_eq!(
        std::fs::read(survivor.storage.join("alice/files/second.bin")).unwrap(),
        second
    );

    let survivor_log = survivor.stop();
    let logs = format!("{killed_log}\n{survivor_log}");
    // The client's own address and port, not HAProxy's connection to the instance.
    assert!(
        killed_log.contains(&format!("peer={client}")) && killed_log.contains("first.bin"),
        "the upload's log line lacks the client's address {client}:\n{logs}"
    );
    let a_log = if stored_on_a {
        &killed_log
    } else {
        &survivor_log
    };
    assert!(
        a_log.contains("refused, no valid PROXY v2 header"),
        "the direct connection's refusal is not logged:\n{logs}"
    );
    // Health checks every second on both instances are not logged at info level.
    for line in logs.lines() {
        assert!(
            !line.contains("TLS handshake") && !line.contains("haproxy-check"),
            "a health check is logged: {line}"
        );
    }
}
