//! End to end: the real `ferry-server` binary on 127.0.0.1 (ephemeral ports,
//! temporary directories, real certificates) and the `ferry-client` library.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_certs::{Ca, CertDir};
use ferry_core::ErrorCode;
use ferry_testkit::data::{pseudo_random, write_file};
use ferry_testkit::pki::Pki;
use ferry_tokio::client::{Client, ClientError, ClientOptions, Progress};
use rustls_pki_types::pem::PemObject;

const CHUNK: usize = 64 * 1024;

struct Server {
    child: Child,
    addr: SocketAddr,
    storage: PathBuf,
    certs: PathBuf,
    extra: Vec<String>,
}

impl Server {
    fn start(root: &Path, extra: &[&str]) -> Server {
        Self::start_on(
            root,
            "127.0.0.1:0",
            extra.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn start_on(root: &Path, listen: &str, extra: Vec<String>) -> Server {
        let storage = root.join("storage");
        let certs = root.join("certs");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
            .arg("--no-web")
            .arg("--listen")
            .arg(listen)
            .arg("--storage")
            .arg(&storage)
            .arg("--certs")
            .arg(&certs)
            .args(&extra)
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ferry-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("ferry-server exited before it listened")
                .unwrap();
            if let Some(addr) = line.strip_prefix("ferry-server listening on ") {
                break addr.trim().parse().unwrap();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            storage,
            certs,
            extra,
        }
    }

    fn restart(&mut self) {
        let root = self.storage.parent().unwrap().to_path_buf();
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Self::start_on(&root, &self.addr.to_string(), self.extra.clone());
    }

    fn local_options(&self) -> ClientOptions {
        Pki::open(&self.certs).client_options(ferry_certs::LOCAL_CLIENT, self.addr)
    }

    fn options_for(&self, name: &str) -> ClientOptions {
        let client = Ca::load(&self.certs)
            .unwrap()
            .issue_client(name, 1)
            .unwrap();
        ClientOptions::from_pem(
            &self.addr.to_string(),
            &client.ca_pem,
            &client.cert_pem,
            &client.key_pem,
        )
        .unwrap()
    }

    /// The storage directory of the only identity that has stored anything.
    fn only_identity_dir(&self) -> PathBuf {
        let dirs: Vec<_> = std::fs::read_dir(&self.storage)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn no_progress() -> impl FnMut(Progress) + Send {
    |_| {}
}

fn refused_code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_of_edge_sizes_and_100_mib() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let mut client = Client::connect(server.local_options()).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    for (i, size) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 100 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pseudo_random(size, i as u64);
        let name = format!("size-{size}");
        let path = write_file(files.path(), &name, &data);
        let report = client
            .roundtrip(&path, &name, &mut no_progress())
            .await
            .unwrap();
        assert!(report.identical, "size {size}");
        assert_eq!(report.uploaded_digest, report.downloaded_digest);
        assert_eq!(report.upload.size, size as u64);
        let stored = server.only_identity_dir().join("files").join(&name);
        assert_eq!(std::fs::read(stored).unwrap(), data, "size {size}");
    }
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_clients_with_distinct_identities() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let files = Arc::new(tempfile::tempdir().unwrap());
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let options = server.options_for(&format!("client-{i}"));
        let data = pseudo_random(1 << 20, 100 + i);
        let path = write_file(files.path(), &format!("c{i}.bin"), &data);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(options).await.unwrap();
            let report = client
                .roundtrip(&path, "mine.bin", &mut no_progress())
                .await
                .unwrap();
            assert!(report.identical);
            let listed = client.list().await.unwrap();
            assert_eq!(listed.len(), 1, "each identity sees only its own file");
            report.uploaded_digest
        }));
    }
    let mut digests = Vec::new();
    for task in tasks {
        digests.push(task.await.unwrap());
    }
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 20, "twenty distinct files");
    let identities = std::fs::read_dir(&server.storage).unwrap().count();
    assert_eq!(identities, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_isolated() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let files = tempfile::tempdir().unwrap();
    let mut alice = Client::connect(server.options_for("alice")).await.unwrap();
    let mut bob = Client::connect(server.options_for("bob")).await.unwrap();
    let secret = pseudo_random(5000, 7);
    let path = write_file(files.path(), "secret", &secret);
    alice
        .upload_file(&path, "secret.txt", &mut no_progress())
        .await
        .unwrap();

    assert!(
        bob.list().await.unwrap().is_empty(),
        "bob lists nothing of alice's"
    );
    let dest = files.path().join("stolen");
    assert_eq!(
        refused_code(
            bob.download_file("secret.txt", &dest, &mut no_progress())
                .await
        ),
        ErrorCode::NOT_FOUND
    );
    assert!(!dest.exists());
    assert_eq!(
        refused_code(bob.delete("secret.txt").await),
        ErrorCode::NOT_FOUND
    );
    // Bob's upload of the same name lands in his own space; alice's file is untouched.
    let other = write_file(files.path(), "other", b"bob's data");
    bob.upload_file(&other, "secret.txt", &mut no_progress())
        .await
        .unwrap();
    let dest = files.path().join("alice-copy");
    alice
        .download_file("secret.txt", &dest, &mut no_progress())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let files = tempfile::tempdir().unwrap();
    let path = write_file(files.path(), "x", b"x");
    let mut client = Client::connect(server.local_options()).await.unwrap();
    let long = "n".repeat(300);
    for name in [
        "../escape",
        "/etc/passwd",
        "a/../../escape",
        "a//b",
        "a\\b",
        "..",
        ".",
        "",
        "nul\0byte",
        "tab\there",
        "CON",
        "lpt1.txt",
        long.as_str(),
    ] {
        match client.upload_file(&path, name, &mut no_progress()).await {
            Err(ClientError::Refused { code, .. }) => {
                assert_eq!(code, ErrorCode::INVALID_NAME, "{name:?}")
            }
            // A name the client itself refuses never reaches the server: fine too.
            Err(ClientError::InvalidName { .. }) => {}
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    // Nothing escaped the identity's directory.
    assert!(!root.path().join("escape").exists());
    assert!(client.list().await.unwrap().is_empty());
}

async fn refused_at_handshake(options: ClientOptions) {
    if let Ok(mut client) = Client::connect(options).await {
        // TLS 1.3 reports a refused client certificate on the first read.
        let result = client.list().await;
        assert!(result.is_err(), "a refused client listed files: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificates_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path(), &[]);
    let addr = server.addr.to_string();

    // No client certificate.
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(server.certs.join("ca.crt")).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let no_cert = rustls::ClientConfig::builder_with_provider(ferry_certs::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let mut options = server.local_options();
    options.tls = Arc::new(no_cert);
    options.retries = 0;
    refused_at_handshake(options).await;

    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    ferry_certs::init(&CertDir::new(other.path()), &Default::default()).unwrap();
    let foreign = Ca::load(other.path())
        .unwrap()
        .issue_client("intruder", 1)
        .unwrap();
    let mut options = ClientOptions::from_pem(
        &addr,
        &std::fs::read_to_string(server.certs.join("ca.crt")).unwrap(),
        &foreign.cert_pem,
        &foreign.key_pem,
    )
    .unwrap();
    options.retries = 0;
    refused_at_handshake(options).await;

    // An expired certificate.
    let ca = Ca::load(&server.certs).unwrap();
    let day = Duration::from_secs(86_400);
    let expired = ca
        .issue_client_with_validity(
            "expired",
            SystemTime::now() - 10 * day,
            SystemTime::now() - day,
        )
        .unwrap();
    // The client library refuses to load an expired certificate, so it is sent through a
    // hand-built TLS configuration: the server must refuse it, and says why in its alert.
    let expired_tls = rustls::ClientConfig::builder_with_provider(ferry_certs::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(
            rustls_pki_types::CertificateDer::pem_slice_iter(expired.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap(),
            rustls_pki_types::PrivateKeyDer::from_pem_slice(expired.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let mut options = server.local_options();
    options.tls = Arc::new(expired_tls);
    options.retries = 0;
    let refusal = match Client::connect(options).await {
        Err(error) => error.to_string(),
        Ok(mut client) => match client.list().await {
            Err(error) => error.to_string(),
            Ok(files) => panic!("an expired certificate listed files: {files:?}"),
        },
    };
    assert!(
        refusal.contains("CertificateExpired"),
        "not the server's certificate_expired alert: {refusal}"
    );

    // A revoked certificate: accepted before the CRL names it, refused after.
    let dir = CertDir::new(&server.certs);
    dir.issue_client("lost-phone", 30, false).unwrap();
    let paths = dir.client_paths("lost-phone").unwrap();
    let mut options =
        ClientOptions::from_files(&addr, &server.certs.join("ca.crt"), &paths.cert, &paths.key)
            .unwrap();
    options.retries = 0;
    Client::connect(options.clone())
        .await
        .unwrap()
        .list()
        .await
        .expect("valid before revocation");
    dir.revoke("lost-phone").unwrap();
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let listed = match Client::connect(options.clone()).await {
            Ok(mut client) => client.list().await.is_ok(),
            Err(_) => false,
        };
        if !listed {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "a revoked certificate is still accepted after SIGHUP"
    );
    // The server itself is fine and serves valid clients.
    server.restart();
    Client::connect(server.local_options())
        .await
        .unwrap()
        .list()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_resumes_upload_sending_only_missing_chunks() {
    let root = tempfile::tempdir().unwrap();
    let server = Arc::new(std::sync::Mutex::new(Server::start(root.path(), &[])));
    let files = tempfile::tempdir().unwrap();
    let size = 64 << 20;
    let data = pseudo_random(size, 42);
    let path = write_file(files.path(), "big.bin", &data);
    let mut options = server.lock().unwrap().local_options();
    options.retries = 20;
    let mut client = Client::connect(options).await.unwrap();

    let killer = server.clone();
    let mut killed = false;
    let mut progress = move |p: Progress| {
        if !killed && p.done_bytes >= p.total_bytes * 2 / 5 {
            killed = true;
            let mut server = killer.lock().unwrap();
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            let server = killer.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                server.lock().unwrap().restart();
            });
        }
    };
    let report = client
        .upload_file(&path, "big.bin", &mut progress)
        .await
        .unwrap();
    let chunks = (size / CHUNK) as u64;
    assert_eq!(report.chunks, chunks);
    assert!(report.attempts >= 2, "{report:?}");
    assert!(
        report.held_at_start > 16,
        "the server kept what it stored: {report:?}"
    );
    // Everything held was sent once; after the restart only the rest was sent.
    // What was in flight when the server died (at most one window) is sent twice.
    assert!(
        report.chunks_sent <= chunks + 16,
        "held chunks were sent again: {report:?}"
    );
    assert_eq!(
        report.last_attempt_sent,
        chunks - report.held_at_start,
        "after the restart exactly the missing chunks were sent: {report:?}"
    );
    let stored = server
        .lock()
        .unwrap()
        .only_identity_dir()
        .join("files/big.bin");
    assert_eq!(std::fs::read(stored).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exceeded_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &["--quota", "1000000"]);
    let files = tempfile::tempdir().unwrap();
    let mut client = Client::connect(server.local_options()).await.unwrap();
    let small = write_file(files.path(), "small", &pseudo_random(600_000, 1));
    client
        .upload_file(&small, "small", &mut no_progress())
        .await
        .unwrap();
    let big = write_file(files.path(), "big", &pseudo_random(600_000, 2));
    assert_eq!(
        refused_code(client.upload_file(&big, "big", &mut no_progress()).await),
        ErrorCode::QUOTA_EXCEEDED
    );
    let listed: Vec<_> = client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(listed, vec!["small".to_string()]);
    let identity = server.only_identity_dir();
    assert!(!identity.join("files/big").exists());
    let partial_leftovers: Vec<_> = std::fs::read_dir(identity.join("partial"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(partial_leftovers.is_empty(), "{partial_leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_stored_chunk_is_detected_at_download() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path(), &[]);
    let files = tempfile::tempdir().unwrap();
    let data = pseudo_random(5 * CHUNK + 77, 3);
    let path = write_file(files.path(), "doc", &data);
    let mut client = Client::connect(server.local_options()).await.unwrap();
    client
        .upload_file(&path, "doc", &mut no_progress())
        .await
        .unwrap();
    let stored = server.only_identity_dir().join("files/doc");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[3 * CHUNK + 5] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();

    let dest = files.path().join("doc.copy");
    match client.download_file("doc", &dest, &mut no_progress()).await {
        Err(ClientError::Verification { .. }) => {}
        other => panic!("rotten data was not reported: {other:?}"),
    }
    assert!(!dest.exists(), "nothing is placed at the destination");
}
