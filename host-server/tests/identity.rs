//! The real `ferry-server` binary and client names: files stay with a renewed client,
//! storage of the earlier key-named layout is migrated, and the data directory is created
//! only once the server listens.

mod server_support;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_certs::{CertDir, DataDir, InitOptions, NewClient, Renewal};
use ferry_testkit::data::pseudo_random;
use ferry_testkit::pki::{client_tls, local_tls};
use server_support::binary::{command, spawn, start};
use server_support::{is_refused, TestClient};

async fn names(
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<ferry_certs::rustls::ClientConfig>,
) -> Vec<String> {
    let mut client = TestClient::connect(addr, tls).await.unwrap();
    let mut names: Vec<String> = client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_client_keeps_its_files_and_its_old_certificate_can_be_revoked() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    let dir = CertDir::new(&server.certs);
    dir.new_client("phone", &NewClient::default()).unwrap();
    let old_serial = dir
        .load_index()
        .unwrap()
        .clients_named("phone")
        .next()
        .unwrap()
        .serial
        .clone();
    let old_tls = client_tls(&server.certs, "phone");
    let data = pseudo_random(100_000, 7);
    let mut client = TestClient::connect(server.addr, old_tls.clone())
        .await
        .unwrap();
    client.upload("notes.bin", &data, false).await.unwrap();
    drop(client);

    // `ferry-certs renew phone --new-key`: a new key, the same name.
    let report = dir
        .renew(
            "phone",
            &Renewal {
                new_key: true,
                ..Renewal::default()
            },
        )
        .unwrap();
    assert_eq!(report.still_valid, std::slice::from_ref(&old_serial));
    let new_tls = client_tls(&server.certs, "phone");
    assert_ne!(
        report.issued.fingerprint,
        dir.load_index()
            .unwrap()
            .clients_named("phone")
            .next()
            .unwrap()
            .fingerprint
    );
    assert_eq!(names(server.addr, new_tls.clone()).await, ["notes.bin"]);
    // The old certificate stays valid until it is revoked...
    assert!(!is_refused(server.addr, old_tls.clone()).await);

    // ... with `ferry-certs revoke --serial OLD`, which leaves the new one alone.
    let revoked = dir.revoke_serial(&old_serial).unwrap();
    assert_eq!(revoked.newly_revoked, [old_serial]);
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(8);
    while !is_refused(server.addr, old_tls.clone()).await {
        assert!(
            Instant::now() < deadline,
            "the old certificate is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = TestClient::connect(server.addr, new_tls).await.unwrap();
    let (downloaded, _) = client.download("notes.bin").await.unwrap();
    assert_eq!(downloaded, data);
    assert_eq!(
        std::fs::read(server.storage.join("phone/files/notes.bin")).unwrap(),
        data
    );
}

/// Writes `files/NAME` with `content` under `STORAGE/KEY`.
fn old_file(storage: &Path, key: &str, name: &str, content: &[u8]) {
    let files = storage.join(key).join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join(name), content).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_named_storage_directories_move_under_the_client_name() {
    let root = tempfile::tempdir().unwrap();
    let (storage, certs) = (root.path().join("storage"), root.path().join("certs"));
    let dir = CertDir::new(&certs);
    ferry_certs::init(&dir, &InitOptions::default()).unwrap();
    let phone = dir.new_client("phone", &NewClient::default()).unwrap();
    let local_fp = dir
        .load_index()
        .unwrap()
        .clients_named("local")
        .next()
        .unwrap()
        .fingerprint
        .clone();
    // The earlier layout: STORAGE/<key fingerprint>/files/...
    old_file(&storage, &phone.fingerprint, "a.txt", b"phone's file");
    // `local` already has a directory under its name: files move over one by one, and a
    // clash keeps both.
    old_file(&storage, &local_fp, "same.txt", b"old same");
    old_file(&storage, &local_fp, "c.txt", b"old c");
    old_file(&storage, "local", "same.txt", b"new same");
    // A key no certificate has.
    let stranger = "ab".repeat(32);
    old_file(&storage, &stranger, "x.txt", b"whose?");

    let server = start(root.path(), &[]);
    assert_eq!(
        names(server.addr, client_tls(&certs, "phone")).await,
        ["a.txt"]
    );
    assert_eq!(
        names(server.addr, local_tls(&certs)).await,
        ["c.txt", "same.txt"]
    );
    let mut client = TestClient::connect(server.addr, local_tls(&certs))
        .await
        .unwrap();
    assert_eq!(client.download("same.txt").await.unwrap().0, b"new same");
    drop(client);
    let log = server.stop();

    assert!(!storage.join(&phone.fingerprint).exists());
    assert_eq!(
        std::fs::read(storage.join("phone/files/a.txt")).unwrap(),
        b"phone's file"
    );
    // Nothing is lost: the clashing old file stays where it was.
    let kept = storage.join(&local_fp).join("files/same.txt");
    assert_eq!(std::fs::read(&kept).unwrap(), b"old same");
    assert!(!storage.join(&local_fp).join("files/c.txt").exists());
    assert!(storage.join(&stranger).join("files/x.txt").exists());
    for expected in [
        format!(
            "storage migration: moved {} to {} (client phone)",
            storage.join(&phone.fingerprint).display(),
            storage.join("phone").display()
        ),
        format!("storage migration: kept {} where it is", kept.display()),
        format!(
            "named by a key that no certificate in the CA's index has, left in place: {stranger}"
        ),
    ] {
        assert!(log.contains(&expected), "{expected}\n{log}");
    }

    // Running it again changes nothing and loses nothing.
    let again = start(root.path(), &[]);
    assert_eq!(
        names(again.addr, client_tls(&certs, "phone")).await,
        ["a.txt"]
    );
    assert!(kept.exists());
}

#[test]
fn the_default_data_directory_is_created_only_by_a_listening_server() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path().join("data"));

    // The port is taken: nothing is created, no CA.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = command(data.root(), &busy.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!data.root().exists(), "{stderr}");
    // So is a taken port of the web page (asked for with --web) or of the admin listener.
    let busy_addr = busy.local_addr().unwrap().to_string();
    for extra in [
        ["--web", busy_addr.as_str()],
        ["--admin", busy_addr.as_str()],
    ] {
        let mut taken = command(data.root(), "127.0.0.1:0");
        if extra[0] == "--web" {
            taken = std::process::Command::new(env!("CARGO_BIN_EXE_ferry-server"));
            taken
                .args(["--listen", "127.0.0.1:0"])
                .env("FERRY_DATA_DIR", data.root())
                .env_remove("FERRY_NO_WEB");
        }
        let output = taken.args(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.contains("cannot listen on"), "{extra:?}: {stderr}");
        assert!(!data.root().exists(), "{extra:?}: {stderr}");
    }

    // No flags: certificates and storage land in FERRY_DATA_DIR, and the first run prints
    // the command that sets up the client.
    let server = spawn(
        command(data.root(), "127.0.0.1:0"),
        data.storage(),
        data.certs().root().into(),
    );
    assert!(data.certs().ca_cert().is_file());
    assert!(data.local_bundle().is_file());
    assert!(data.storage().is_dir());
    let mut entries: Vec<_> = std::fs::read_dir(data.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["certs", "storage"]);
    let login = format!(
        "  ferry login {} --server {}",
        data.local_bundle().display(),
        server.addr
    );
    assert!(server.stdout.contains(&login), "{:?}", server.stdout);
    drop(server);

    // Later runs print no login line: the CA exists.
    let again = spawn(
        command(data.root(), "127.0.0.1:0"),
        data.storage(),
        data.certs().root().into(),
    );
    assert_eq!(again.stdout.len(), 1, "{:?}", again.stdout);
}
