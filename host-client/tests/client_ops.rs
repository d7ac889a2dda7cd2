//! The client library against a server over real mutual TLS on 127.0.0.1: every
//! operation, edge sizes, resume after a dropped connection, refusals, rotten data.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{data, hex, write_file, TestServer, CHUNK};
use ferry_client::{Client, ClientError, ErrorCode, Phase, Progress};
use ferry_core::digest::plain_sha256;
use ferry_core::FileDigest;

const SIZES: [usize; 6] = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * 1024 * 1024];

fn file_digest(bytes: &[u8]) -> String {
    hex(&FileDigest::of(bytes, CHUNK as u32))
}

fn chunks(len: usize) -> u64 {
    len.div_ceil(CHUNK) as u64
}

fn no_partials(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".ferry-"))
        .collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
}

#[tokio::test]
async fn every_operation_at_edge_sizes() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut client = server.client().await;
    for (i, &size) in SIZES.iter().enumerate() {
        let bytes = data(size, i as u64);
        let name = format!("file-{size}");
        let path = write_file(dir.path(), &name, &bytes);
        let mut seen: Vec<Progress> = Vec::new();
        let up = client
            .upload_file(&path, &name, &mut |p| seen.push(p))
            .await
            .unwrap();
        assert_eq!(up.name, name);
        assert_eq!(up.size, size as u64);
        assert_eq!(up.digest, file_digest(&bytes));
        assert_eq!(up.chunk_size, CHUNK as u32);
        assert_eq!(up.chunks, chunks(size));
        assert_eq!(
            (up.held_at_start, up.chunks_sent, up.last_attempt_sent),
            (0, chunks(size), chunks(size))
        );
        assert_eq!(up.attempts, 1);
        let last = seen.last().expect("progress reported");
        assert_eq!(
            (last.done_bytes, last.total_bytes),
            (size as u64, size as u64)
        );
        assert!(seen.iter().all(|p| p.phase == Phase::Upload));
        assert_eq!(server.store().files[&name].data, bytes);

        let dest = dir.path().join(format!("back-{size}"));
        let down = client
            .download_file(&name, &dest, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        assert_eq!(down.digest, up.digest);
        assert_eq!(
            (down.held_at_start, down.chunks_sent, down.last_attempt_sent),
            (0, chunks(size), chunks(size))
        );

        let round = client.roundtrip(&path, &name, &mut |_| {}).await.unwrap();
        assert!(round.identical, "{round:?}");
        assert_eq!(round.uploaded_digest, up.digest);
        assert_eq!(round.downloaded_digest, up.digest);
        assert_eq!(round.sha256, hex(&plain_sha256(&bytes)));
        assert_eq!(round.downloaded_sha256.as_ref(), Some(&round.sha256));
        assert_eq!(round.chunks_compared, chunks(size));
        // The server already held this file: the round trip's upload sent nothing.
        assert_eq!(round.upload.held_at_start, chunks(size));
        assert_eq!(round.upload.chunks_sent, 0);
    }
    no_partials(dir.path());

    let listed = client.list().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
    let mut expected: Vec<String> = SIZES.iter().map(|s| format!("file-{s}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    for entry in &listed {
        let stored = &server.store().files[&entry.name];
        assert_eq!(entry.size, stored.data.len() as u64);
        assert_eq!(entry.digest, hex(&stored.digest));
        assert_eq!(entry.chunk_size, CHUNK as u32);
        assert_eq!(entry.modified, 1_700_000_000);
    }

    for size in SIZES {
        client.delete(&format!("file-{size}")).await.unwrap();
    }
    assert!(client.list().await.unwrap().is_empty());
    client.close().await;
}

#[tokio::test]
async fn an_identical_upload_completes_without_data() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(5 * CHUNK + 7, 1);
    let path = write_file(dir.path(), "same", &bytes);
    let mut client = server.client().await;
    let first = client
        .upload_file(&path, "same", &mut |_| {})
        .await
        .unwrap();
    let stored_before: u64 = server.store().stored_per_connection.iter().sum();
    let second = client
        .upload_file(&path, "same", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(second.digest, first.digest);
    assert_eq!((second.held_at_start, second.chunks_sent), (6, 0));
    let stored_after: u64 = server.store().stored_per_connection.iter().sum();
    assert_eq!(stored_after, stored_before, "no chunk moved");
}

#[tokio::test]
async fn a_dropped_upload_resumes_with_only_the_missing_chunks() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(3 * 1024 * 1024, 7);
    let path = write_file(dir.path(), "big", &bytes);
    let mut client = server.client().await;
    server.store().drop_upload_after = Some(10);
    let report = client.upload_file(&path, "big", &mut |_| {}).await.unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(report.chunks, 48);
    assert_eq!(report.held_at_start, 10);
    assert_eq!(
        report.last_attempt_sent,
        report.chunks - report.held_at_start
    );
    assert!(report.chunks_sent >= report.chunks, "{report:?}");
    assert_eq!(report.digest, file_digest(&bytes));
    let store = server.store();
    assert_eq!(store.files["big"].data, bytes);
    assert_eq!(store.stored_per_connection, [10, 38]);
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_without_using_a_retry() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f", &data(100, 3));
    let mut options = server.options();
    options.retries = 0;
    let mut client = Client::connect(options).await.unwrap();
    client.upload_file(&path, "f", &mut |_| {}).await.unwrap();
    server.kick();
    let report = client.upload_file(&path, "g", &mut |_| {}).await.unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(client.list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_lazy_client_connects_on_first_use() {
    let server = TestServer::start();
    let mut client = Client::new(server.options());
    assert!(!client.is_connected());
    assert!(client.list().await.unwrap().is_empty());
    assert!(client.is_connected());
    assert_eq!(client.negotiated(), Some((CHUNK as u32, 16)));
}

#[tokio::test]
async fn a_dropped_download_resumes_from_the_partial_file() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(3 * 1024 * 1024 + 5, 8);
    let path = write_file(dir.path(), "src", &bytes);
    let mut client = server.client().await;
    client.upload_file(&path, "big", &mut |_| {}).await.unwrap();
    server.store().drop_download_after = Some(12);
    let dest = dir.path().join("out.bin");
    let report = client
        .download_file("big", &dest, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(report.chunks, 49);
    assert_eq!(report.held_at_start, 12, "{report:?}");
    assert_eq!(
        report.last_attempt_sent,
        report.chunks - report.held_at_start
    );
    assert_eq!(report.chunks_sent, report.chunks);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    no_partials(dir.path());
}

#[tokio::test]
async fn an_interrupted_download_resumes_in_a_later_call() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(2 * 1024 * 1024, 9);
    let path = write_file(dir.path(), "src", &bytes);
    let mut options = server.options();
    options.retries = 0;
    let mut client = Client::connect(options).await.unwrap();
    client.upload_file(&path, "f", &mut |_| {}).await.unwrap();
    server.store().drop_download_after = Some(20);
    let dest = dir.path().join("f");
    let error = client
        .download_file("f", &dest, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Interrupted { .. }), "{error}");
    assert_eq!(error.exit_code(), 3);
    assert!(!dest.exists(), "nothing unverified at the destination");
    assert!(dir.path().join(".f.ferry-part").exists());
    assert!(dir.path().join(".f.ferry-held").exists());

    // A new client (as a new `ferry download` would be) picks the partial file up.
    let mut client = server.client().await;
    let report = client.download_file("f", &dest, &mut |_| {}).await.unwrap();
    assert_eq!(report.attempts, 1);
    assert_eq!(report.held_at_start, 20);
    assert_eq!(report.chunks_sent, 12);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    no_partials(dir.path());
}

#[tokio::test]
async fn a_source_changed_between_attempts_starts_over() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let old = data(20 * CHUNK, 10);
    let path = write_file(dir.path(), "doc", &old);
    let mut options = server.options();
    options.retries = 0;
    let mut client = Client::connect(options).await.unwrap();
    server.store().drop_upload_after = Some(5);
    let error = client
        .upload_file(&path, "doc", &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 3, "{error}");
    // Same size, other content: the server's five held chunks no longer match.
    let new = data(20 * CHUNK, 11);
    std::fs::write(&path, &new).unwrap();
    let mut client = server.client().await;
    let report = client.upload_file(&path, "doc", &mut |_| {}).await.unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(report.held_at_start, 0);
    assert_eq!(report.last_attempt_sent, 20);
    assert_eq!(report.digest, file_digest(&new));
    let store = server.store();
    assert_eq!(store.files["doc"].data, new);
    let fresh: Vec<bool> = store.upload_requests.iter().map(|r| r.2).collect();
    assert_eq!(fresh, [false, false, true]);
}

#[tokio::test]
async fn refusals_are_final_and_leave_nothing_behind() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "a", b"hello");
    let mut client = server.client().await;

    let error = client
        .upload_file(&path, "bad/name", &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        error.refusal_code(),
        Some(ErrorCode::INVALID_NAME),
        "{error}"
    );
    assert_eq!(error.exit_code(), 4);

    let error = client
        .upload_file(&path, "", &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.refusal_code(), Some(ErrorCode::INVALID_NAME));
    let long = "n".repeat(256);
    let error = client
        .upload_file(&path, &long, &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.refusal_code(), Some(ErrorCode::INVALID_NAME));

    let dest = dir.path().join("missing");
    let error = client
        .download_file("missing", &dest, &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.refusal_code(), Some(ErrorCode::NOT_FOUND), "{error}");
    assert_eq!(error.exit_code(), 4);
    assert!(!dest.exists());

    let error = client.delete("missing").await.unwrap_err();
    assert_eq!(error.refusal_code(), Some(ErrorCode::NOT_FOUND));

    // The connection is still good after refusals.
    let report = client.upload_file(&path, "a", &mut |_| {}).await.unwrap();
    assert_eq!(report.attempts, 1);
    no_partials(dir.path());

    let error = client
        .upload_file(&dir.path().join("nope"), "x", &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Io { .. }));
    assert_eq!(error.exit_code(), 6);
    let error = client
        .upload_file(dir.path(), "x", &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 6, "a directory is not a file: {error}");
}

#[tokio::test]
async fn rotten_data_on_the_server_is_never_written_to_the_destination() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(3 * CHUNK, 12);
    let path = write_file(dir.path(), "src", &bytes);
    let mut client = server.client().await;
    client.upload_file(&path, "r", &mut |_| {}).await.unwrap();
    server.store().rot("r");
    let dest = dir.path().join("r");
    let error = client
        .download_file("r", &dest, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Verification { .. }), "{error}");
    assert_eq!(error.exit_code(), 5);
    assert!(!dest.exists());
    no_partials(dir.path());
    // A second try fails the same way: nothing was kept to build on.
    let error = client
        .download_file("r", &dest, &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 5);
    assert!(!dest.exists());
    no_partials(dir.path());
}

#[tokio::test]
async fn listing_pages_through_many_files() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let count = 300;
    for i in 0..count {
        let name = format!("{i:03}-{}", "x".repeat(200));
        client
            .upload_stream(&name, 0, tokio::io::empty(), &mut |_| {})
            .await
            .unwrap();
    }
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), count);
    assert!(listed.windows(2).all(|w| w[0].name < w[1].name));
    assert!(listed[0].name.starts_with("000-"));
    assert!(
        server.store().list_requests >= 2,
        "one page held everything"
    );
}

#[tokio::test]
async fn streamed_uploads_keep_only_the_window_and_cannot_resume() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let bytes = data(3 * 1024 * 1024 + 3, 13);
    let done = Arc::new(Mutex::new(0u64));
    let seen = done.clone();
    let report = client
        .upload_stream(
            "streamed",
            bytes.len() as u64,
            std::io::Cursor::new(bytes.clone()),
            &mut move |p| *seen.lock().unwrap() = p.done_bytes,
        )
        .await
        .unwrap();
    assert_eq!(report.digest, file_digest(&bytes));
    assert_eq!(*done.lock().unwrap(), bytes.len() as u64);
    assert_eq!(server.store().files["streamed"].data, bytes);
    let (_, _, fresh) = server.store().upload_requests.last().cloned().unwrap();
    assert!(fresh, "a stream never builds on held chunks");

    // Shorter or longer than declared: a local error.
    let error = client
        .upload_stream("short", 10, std::io::Cursor::new(vec![1u8; 9]), &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 6, "{error}");
    let error = client
        .upload_stream("long", 10, std::io::Cursor::new(vec![1u8; 11]), &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 6, "{error}");
    let error = client
        .upload_stream("long0", 0, std::io::Cursor::new(vec![1u8; 1]), &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 6, "{error}");

    // A dropped connection after data was consumed: an error, not a silent resume.
    server.store().drop_upload_after = Some(5);
    let error = client
        .upload_stream(
            "dropped",
            bytes.len() as u64,
            std::io::Cursor::new(bytes.clone()),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Interrupted { .. }), "{error}");
    // The client reconnects for the next operation.
    client
        .upload_stream("after", 3, std::io::Cursor::new(vec![1, 2, 3]), &mut |_| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn connection_failures_map_to_exit_code_3() {
    let server = TestServer::start();
    // Nothing listens on a port that was just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = server.options();
    options.server = format!("127.0.0.1:{port}");
    let error = Client::connect(options).await.unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert_eq!(error.exit_code(), 3);

    // A client that trusts another CA refuses the server's certificate.
    let other = tempfile::tempdir().unwrap();
    let other_dir = ferry_certs::CertDir::new(other.path());
    ferry_certs::init(&other_dir, &ferry_certs::InitOptions::default()).unwrap();
    let options = ferry_client::ClientOptions::from_files(
        &server.addr.to_string(),
        &other_dir.ca_cert(),
        &server.cert(),
        &server.key(),
    );
    // The pair still matches; only the CA differs.
    let error = Client::connect(options.unwrap()).await.unwrap_err();
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    assert_eq!(error.exit_code(), 3);

    // The server refuses a client certificate from another CA.
    let options = ferry_client::ClientOptions::from_files(
        &server.addr.to_string(),
        &server.ca(),
        &other_dir.root().join("clients/local.crt"),
        &other_dir.root().join("clients/local.key"),
    )
    .unwrap();
    let error = Client::connect(options).await.unwrap_err();
    assert_eq!(error.exit_code(), 3, "{error}");
}
