//! The real `ferry-server` binary: first-run certificates, the readiness line, mutual TLS
//! refusals, CRL reloads, signals and option precedence.

mod server_support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use ferry_certs::{Ca, CertDir};
use ferry_core::{ErrorCode, Failure, FileDigest};
use ferry_testkit::data::pseudo_random;
use ferry_testkit::pki::{client_tls, local_tls, raw_tls};
use server_support::{is_refused, Error, TestClient};

use server_support::binary::{start, BIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_bootstraps_certificates_and_serves_uploads() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    // The bootstrap lines say where the client's certificate and key are, and how to set up
    // the client.
    assert_eq!(server.stdout.len(), 4, "{:?}", server.stdout);
    let created = &server.stdout[0];
    let certs = server.certs.display().to_string();
    assert!(created.starts_with(&format!("created certificates in {certs}")));
    assert!(
        created.contains(&format!("{certs}/clients/local.crt")),
        "{created}"
    );
    assert!(
        created.contains(&format!("{certs}/clients/local.key")),
        "{created}"
    );
    assert!(created.contains(&format!("{certs}/ca.crt")), "{created}");
    assert_eq!(
        server.stdout[2],
        format!(
            "  ferry login {certs}/clients/local.bundle.pem --server {}",
            server.addr
        )
    );
    for file in [
        "ca.crt",
        "server.crt",
        "server.key",
        "crl.pem",
        "clients/local.key",
    ] {
        assert!(server.certs.join(file).exists(), "{file}");
    }
    assert_ne!(server.addr.port(), 0);

    let mut client = TestClient::connect(server.addr, local_tls(&server.certs))
        .await
        .unwrap();
    let data = pseudo_random(300_000, 1);
    let uploaded = client.upload("hello.bin", &data, false).await.unwrap();
    assert_eq!(uploaded.digest, FileDigest::of(&data, 65536));
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "hello.bin");
    assert_eq!(listed[0].size, 300_000);
    assert_eq!(listed[0].digest, uploaded.digest);
    // The committed file is plain bytes under STORAGE/<client name>/files/.
    let identities: Vec<_> = std::fs::read_dir(&server.storage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(identities, [server.storage.join("local")]);
    assert_eq!(
        std::fs::read(identities[0].join("files/hello.bin")).unwrap(),
        data
    );
    drop(client);

    // A second run keeps the certificates and prints only the readiness line.
    let ca = std::fs::read(server.certs.join("ca.crt")).unwrap();
    let (status, log) = {
        server.signal("TERM");
        server.wait(Duration::from_secs(10))
    };
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("transfer"), "one line per transfer:\n{log}");
    assert!(
        log.contains("op=\"upload\"") || log.contains("op=upload"),
        "{log}"
    );
    assert!(
        log.contains("result=verified") || log.contains("result=\"verified\""),
        "{log}"
    );
    let again = start(root.path(), &[]);
    assert_eq!(again.stdout.len(), 1, "{:?}", again.stdout);
    assert_eq!(std::fs::read(again.certs.join("ca.crt")).unwrap(), ca);
    let mut client = TestClient::connect(again.addr, local_tls(&again.certs))
        .await
        .unwrap();
    assert_eq!(client.list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_certificate_are_refused_in_the_handshake() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    let ca_pem = std::fs::read_to_string(server.certs.join("ca.crt")).unwrap();

    // No client certificate.
    assert!(is_refused(server.addr, raw_tls(&ca_pem, None)).await);

    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    ferry_certs::init(&CertDir::new(other.path()), &Default::default()).unwrap();
    let foreign = Ca::load(other.path())
        .unwrap()
        .issue_client("intruder", 1)
        .unwrap();
    let tls = raw_tls(&ca_pem, Some((&foreign.cert_pem, &foreign.key_pem)));
    assert!(is_refused(server.addr, tls).await);

    // An expired certificate of the right CA.
    let day = Duration::from_secs(86_400);
    let expired = Ca::load(&server.certs)
        .unwrap()
        .issue_client_with_validity(
            "expired",
            SystemTime::now() - 10 * day,
            SystemTime::now() - day,
        )
        .unwrap();
    let tls = raw_tls(&ca_pem, Some((&expired.cert_pem, &expired.key_pem)));
    assert!(is_refused(server.addr, tls).await);

    // The server is fine, and valid clients are served.
    assert!(!is_refused(server.addr, local_tls(&server.certs)).await);
    let (_, log) = {
        server.signal("INT");
        server.wait(Duration::from_secs(10))
    };
    assert!(log.contains("TLS handshake refused"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crl_is_reloaded_on_sighup_and_when_the_file_changes() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &[]);
    let dir = CertDir::new(&server.certs);
    let phone = client_tls(&server.certs, "lost-phone");
    let laptop = client_tls(&server.certs, "stolen-laptop");
    assert!(!is_refused(server.addr, phone.clone()).await);
    assert!(!is_refused(server.addr, laptop.clone()).await);
    // An open connection of the phone.
    let mut open = TestClient::connect(server.addr, phone.clone())
        .await
        .unwrap();

    // SIGHUP.
    dir.revoke("lost-phone").unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_refused(server.addr, phone.clone()).await {
        assert!(Instant::now() < deadline, "still accepted after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The open connection of the revoked certificate is ended too, told why.
    let ended = tokio::time::timeout(Duration::from_secs(5), open.wait_closed())
        .await
        .expect("the revoked certificate's connection is closed");
    assert!(
        matches!(
            &ended,
            Error::Closed(Failure::Peer(ErrorCode::FORBIDDEN), text) if text.contains("revoked")
        ),
        "{ended:?}"
    );

    // A change of the file, without a signal.
    dir.revoke("stolen-laptop").unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !is_refused(server.addr, laptop.clone()).await {
        assert!(
            Instant::now() < deadline,
            "still accepted after the CRL changed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Others are still served, and the process survived the signal.
    assert!(!is_refused(server.addr, local_tls(&server.certs)).await);
    server.signal("TERM");
    let (status, log) = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{log}");
    assert!(log.contains("CRL") && log.contains("SIGHUP"), "{log}");
    assert!(
        log.contains("the certificate of lost-phone (serial "),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_exits_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path(), &["--shutdown-grace-secs", "1"]);
    let data = pseudo_random(40 * 65536, 2);
    let mut client = TestClient::connect(server.addr, local_tls(&server.certs))
        .await
        .unwrap();
    let _ = client
        .upload_until("interrupted", &data, false, Some(10))
        .await;
    let addr = server.addr;
    let started = Instant::now();
    server.signal("TERM");
    let (status, log) = tokio::task::spawn_blocking(move || server.wait(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.contains("interrupted"),
        "the transfer is logged:\n{log}"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The partial upload survives for a resume.
    let identity = std::fs::read_dir(root.path().join("storage"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_dir(identity.join("partial")).unwrap().count(),
        2
    );
    let again = start(root.path(), &[]);
    let mut client = TestClient::connect(again.addr, local_tls(&again.certs))
        .await
        .unwrap();
    let uploaded = client.upload("interrupted", &data, false).await.unwrap();
    assert!(uploaded.held >= 1, "{uploaded:?}");
}

fn print_config(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut command = Command::new(BIN);
    command.args(args).arg("--print-config");
    for key in [
        "FERRY_LISTEN",
        "FERRY_DATA_DIR",
        "FERRY_STORAGE",
        "FERRY_CERTS",
        "FERRY_CONFIG",
        "FERRY_QUOTA",
        "FERRY_IDLE_TIMEOUT_SECS",
    ] {
        command.env_remove(key);
    }
    command.envs(envs.iter().copied());
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn options_come_from_flags_then_environment_then_file_then_defaults() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("ferry.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:7000\"\nstorage = \"/from/file\"\ncerts = \"/file/certs\"\nquota = \"2GiB\"\nidle_timeout_secs = 33\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let defaults = print_config(&[], &[("FERRY_DATA_DIR", "/srv/ferry")]);
    assert!(
        defaults.contains("listen = \"127.0.0.1:9000\""),
        "{defaults}"
    );
    assert!(
        defaults.contains("storage = \"/srv/ferry/storage\""),
        "{defaults}"
    );
    assert!(
        defaults.contains("certs = \"/srv/ferry/certs\""),
        "{defaults}"
    );
    assert!(defaults.contains("quota = 10737418240"), "{defaults}");
    assert!(
        defaults.contains("max_file_size = 4294967296"),
        "{defaults}"
    );
    let printed = print_config(
        &["--config", file, "--listen", "127.0.0.1:1"],
        &[
            ("FERRY_LISTEN", "127.0.0.1:2"),
            ("FERRY_STORAGE", "/from/env"),
        ],
    );
    assert!(
        printed.contains("listen = \"127.0.0.1:1\""),
        "flag: {printed}"
    );
    assert!(
        printed.contains("storage = \"/from/env\""),
        "env: {printed}"
    );
    assert!(
        printed.contains("certs = \"/file/certs\""),
        "file: {printed}"
    );
    assert!(printed.contains("quota = 2147483648"), "file: {printed}");
    assert!(
        printed.contains("idle_timeout_secs = 33"),
        "file: {printed}"
    );
    assert!(
        printed.contains("max_connections = 512"),
        "default: {printed}"
    );
    // The configuration file named by the environment.
    let printed = print_config(&[], &[("FERRY_CONFIG", file), ("FERRY_QUOTA", "1M")]);
    assert!(
        printed.contains("quota = 1048576"),
        "env over file: {printed}"
    );
    assert!(printed.contains("storage = \"/from/file\""), "{printed}");
}

#[test]
fn bad_options_are_reported_clearly() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("bad.toml");
    std::fs::write(&file, "qouta = 5\n").unwrap();
    for (args, expected) in [
        (vec!["--config", file.to_str().unwrap()], "qouta"),
        (vec!["--chunk-size", "4"], "chunk_size"),
        (vec!["--quota", "lots"], "lots"),
    ] {
        let output = Command::new(BIN)
            .args(&args)
            .env_remove("FERRY_CONFIG")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // An address in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let output = Command::new(BIN)
        .args(["--no-web", "--listen", &addr, "--storage"])
        .arg(root.path().join("s"))
        .arg("--certs")
        .arg(root.path().join("c"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    // A server that cannot listen creates nothing: no CA, no storage.
    assert!(!root.path().join("c").exists());
    assert!(!root.path().join("s").exists());
}
