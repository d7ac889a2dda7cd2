//! The server in this process (library API) against a protocol client over mutual TLS:
//! transfers, resume, isolation, names, quotas, limits, timeouts and shutdown.

mod server_support;

use std::time::{Duration, Instant};

use ferry_core::{ErrorCode, Failure, FileDigest, TransferError};
use ferry_testkit::data::pseudo_random;
use ferry_testkit::server::InProcess;
use server_support::{Clients, Error, TestClient, CHUNK};

fn digest(data: &[u8]) -> ferry_core::Digest {
    FileDigest::of(data, CHUNK as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_of_edge_sizes_are_stored_verified_and_listed() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let mut client = server.local().await;
    let sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5];
    for (i, size) in sizes.into_iter().enumerate() {
        let data = pseudo_random(size, i as u64);
        let name = format!("size-{size}");
        let uploaded = client.upload(&name, &data, false).await.unwrap();
        assert_eq!(uploaded.digest, digest(&data), "size {size}");
        let stored = server.identity_dir("local").join("files").join(&name);
        assert_eq!(std::fs::read(stored).unwrap(), data, "size {size}");
        let (back, back_digest) = client.download(&name).await.unwrap();
        assert_eq!(back, data, "size {size}");
        assert_eq!(back_digest, uploaded.digest);
    }
    let listed = client.list().await.unwrap();
    let names: Vec<_> = listed.iter().map(|l| l.name.as_str()).collect();
    // Sorted by name (bytes).
    assert_eq!(
        names,
        [
            "size-0",
            "size-1",
            "size-196613",
            "size-65535",
            "size-65536",
            "size-65537"
        ]
    );
    let entry = listed.iter().find(|l| l.name == "size-65537").unwrap();
    assert_eq!(entry.size, CHUNK as u64 + 1);
    assert_eq!(entry.chunk_size, CHUNK as u32);
    assert_eq!(entry.digest, digest(&pseudo_random(CHUNK + 1, 4)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(entry.modified <= now && entry.modified + 60 > now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_with_the_missing_chunks_only() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let data = pseudo_random(40 * CHUNK + 100, 9);
    let mut client = server.local().await;
    let stopped = client.upload_until("big", &data, false, Some(20)).await;
    assert!(stopped.is_err());
    drop(client); // the link breaks
    let partial = server.identity_dir("local").join("partial");
    let mut client = server.local().await;
    let uploaded = client.upload("big", &data, false).await.unwrap();
    assert!(
        uploaded.held > 0,
        "the server kept what it stored: {uploaded:?}"
    );
    assert_eq!(uploaded.held + uploaded.sent, 41, "{uploaded:?}");
    assert_eq!(uploaded.digest, digest(&data));
    let stored = server.identity_dir("local").join("files/big");
    assert_eq!(std::fs::read(stored).unwrap(), data);
    assert_eq!(std::fs::read_dir(partial).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_an_identical_file_sends_no_data_and_a_changed_one_starts_over() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let mut client = server.local().await;
    let data = pseudo_random(5 * CHUNK + 7, 10);
    client.upload("same", &data, false).await.unwrap();
    let again = client.upload("same", &data, false).await.unwrap();
    assert_eq!(again.held, 6);
    assert_eq!(again.sent, 0, "no chunk was sent again");
    // Same size, other bytes: the held chunks do not match, the client starts over.
    let other = pseudo_random(5 * CHUNK + 7, 11);
    match client.upload("same", &other, false).await {
        Err(Error::Failed(Failure::Transfer(TransferError::SourceChanged), _)) => {}
        other => panic!("expected SourceChanged, got {other:?}"),
    }
    let fresh = client.upload("same", &other, true).await.unwrap();
    assert_eq!((fresh.held, fresh.sent), (0, 6));
    let (back, _) = client.download("same").await.unwrap();
    assert_eq!(back, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upload_of_the_same_name_is_busy() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let data = pseudo_random(30 * CHUNK, 12);
    let mut first = server.local().await;
    let _ = first.upload_until("busy", &data, false, Some(3)).await;
    // `first` stays connected with its upload running.
    let mut second = server.local().await;
    let started = Instant::now();
    let error = second.upload("busy", &data, false).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::BUSY), "{error:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited first"
    );
    // Other names go ahead at the same time, on the same identity.
    second.upload("other", b"fine", false).await.unwrap();
    // Once the first connection is gone, the name is free and the upload resumes.
    drop(first);
    let uploaded = second.upload("busy", &data, false).await.unwrap();
    assert_eq!(uploaded.digest, digest(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_size_limits_are_refused_up_front() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |o| {
        o.quota = 100_000;
        o.max_file_size = 50_000;
    })
    .await;
    let mut client = server.local().await;
    let error = client
        .upload("huge", &pseudo_random(50_001, 1), false)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::TOO_LARGE), "{error:?}");
    client
        .upload("a", &pseudo_random(40_000, 2), false)
        .await
        .unwrap();
    client
        .upload("b", &pseudo_random(40_000, 3), false)
        .await
        .unwrap();
    let error = client
        .upload("c", &pseudo_random(40_000, 4), false)
        .await
        .unwrap_err();
    match &error {
        Error::Refused(ErrorCode::QUOTA_EXCEEDED, text) => {
            assert!(text.contains("78.1 KiB used"), "{text}");
            assert!(text.contains("97.7 KiB quota"), "{text}");
        }
        other => panic!("expected QUOTA_EXCEEDED, got {other:?}"),
    }
    let identity = server.identity_dir("local");
    assert!(!identity.join("files/c").exists());
    assert_eq!(
        std::fs::read_dir(identity.join("partial")).unwrap().count(),
        0
    );
    // Replacing a file counts its new size, not both versions.
    client
        .upload("a", &pseudo_random(50_000, 5), true)
        .await
        .unwrap();
    // Another identity has a quota of its own.
    let mut bob = server.client("bob").await;
    bob.upload("c", &pseudo_random(40_000, 4), false)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_refused_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let mut client = server.local().await;
    for (name, reason) in [
        ("../escape", "'.' and '..'"),
        ("a/../../escape", "'.' and '..'"),
        ("/etc/passwd", "empty path component"),
        ("a//b", "empty path component"),
        ("dir/", "empty path component"),
        ("a\\b", "path separator"),
        ("..", "'.' and '..'"),
        (".", "'.' and '..'"),
        ("nul\0byte", "control character"),
        ("line\nbreak", "control character"),
        ("CON", "reserved device name"),
        ("lpt1.txt", "reserved device name"),
        (" padded", "white space"),
        ("-rf", "option"),
        ("dot.", "ends with '.'"),
        ("a\u{FF0F}b", "looks like a path separator"),
        ("x:stream", "Windows"),
    ] {
        match client.upload(name, b"data", false).await {
            Err(Error::Refused(ErrorCode::INVALID_NAME, text)) => {
                assert!(text.contains(reason), "{name:?}: {text}")
            }
            other => panic!("{name:?} was not refused: {other:?}"),
        }
        let error = client.download(name).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::INVALID_NAME), "{name:?}");
        let error = client.delete(name).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::INVALID_NAME), "{name:?}");
    }
    assert!(client.list().await.unwrap().is_empty());
    assert!(!root.path().join("escape").exists());
    assert!(!root.path().join("storage/escape").exists());
    // A name is stored in NFC: both spellings name one file.
    client
        .upload("cafe\u{301}.txt", b"coffee", false)
        .await
        .unwrap();
    let (back, _) = client.download("caf\u{e9}.txt").await.unwrap();
    assert_eq!(back, b"coffee");
    let listed = client.list().await.unwrap();
    assert_eq!(listed[0].name, "caf\u{e9}.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_see_only_their_own_files() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let secret = pseudo_random(5000, 7);
    alice.upload("secret.txt", &secret, false).await.unwrap();
    assert!(bob.list().await.unwrap().is_empty());
    let error = bob.download("secret.txt").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NOT_FOUND));
    let error = bob.delete("secret.txt").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NOT_FOUND));
    bob.upload("secret.txt", b"bob's", false).await.unwrap();
    let (back, _) = alice.download("secret.txt").await.unwrap();
    assert_eq!(back, secret);
    let (back, _) = bob.download("secret.txt").await.unwrap();
    assert_eq!(back, b"bob's");
    assert_ne!(server.identity_dir("alice"), server.identity_dir("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_and_delete() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let mut client = server.local().await;
    for i in 0..30 {
        client
            .upload(&format!("f{i:02}"), &[i as u8; 10], false)
            .await
            .unwrap();
    }
    let (all, pages) = client.list_paged(7).await.unwrap();
    assert_eq!(all.len(), 30);
    assert!(pages >= 5, "{pages} pages");
    let names: Vec<_> = all.iter().map(|l| l.name.clone()).collect();
    let expected: Vec<_> = (0..30).map(|i| format!("f{i:02}")).collect();
    assert_eq!(names, expected);
    client.delete("f07").await.unwrap();
    let error = client.delete("f07").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NOT_FOUND));
    let error = client.download("f07").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NOT_FOUND));
    assert_eq!(client.list().await.unwrap().len(), 29);
    // Metadata goes with the file (an extended attribute, or a `meta/` file without them).
    let home = server.identity_dir("local");
    assert!(!home.join("files").join("f07").exists());
    let key = ferry_server::storage::name_key("f07");
    assert!(!home.join("meta").join(format!("{key}.json")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_keeps_reading_the_version_it_opened() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let old = pseudo_random(20 * CHUNK, 20);
    let new = pseudo_random(12 * CHUNK, 21);
    let mut writer = server.local().await;
    writer.upload("doc", &old, false).await.unwrap();
    // A download of the old version is running...
    let mut reader = server.local().await;
    let stopped = reader.download_resuming("doc", None, Some(3)).await;
    assert!(stopped.is_err());
    // ...while the file is replaced.
    writer.upload("doc", &new, false).await.unwrap();
    assert_eq!(
        std::fs::read(server.identity_dir("local").join("files/doc")).unwrap(),
        new
    );
    // The running download completes with the version it opened, verified.
    let (back, back_digest, _) = reader.download_continue(None).await.unwrap();
    assert_eq!(back, old);
    assert_eq!(back_digest, digest(&old));
    // A new download gets the new version.
    let (back, _) = reader.download("doc").await.unwrap();
    assert_eq!(back, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_resumes_from_the_held_chunks() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let data = pseudo_random(10 * CHUNK + 3, 22);
    let mut client = server.local().await;
    client.upload("d", &data, false).await.unwrap();
    let held: Vec<u64> = (0..4).collect();
    let (back, back_digest, held_at_start) = client
        .download_resuming("d", Some((data.len() as u64, &data, &held)), None)
        .await
        .unwrap();
    assert_eq!(held_at_start, 4);
    assert_eq!(back, data);
    assert_eq!(back_digest, digest(&data));
    // A partial copy of another size: the core refuses it, the connection goes on.
    let error = client
        .download_resuming("d", Some((5, &data[..5], &[0])), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Refused(ErrorCode::SOURCE_CHANGED, _)),
        "{error:?}"
    );
    client.list().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotten_stored_data_fails_the_download() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let data = pseudo_random(6 * CHUNK, 23);
    let mut client = server.local().await;
    client.upload("rot", &data, false).await.unwrap();
    let path = server.identity_dir("local").join("files/rot");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4 * CHUNK + 1] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let error = client.download("rot").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::STORAGE), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_per_identity_and_in_total() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |o| {
        o.max_connections_per_identity = 2;
        o.max_connections = 3;
    })
    .await;
    let mut one = server.local().await;
    let mut two = server.local().await;
    one.list().await.unwrap();
    two.list().await.unwrap();
    // A third connection of the same identity is answered BUSY as soon as it is
    // authenticated, then closed.
    match TestClient::connect(server.addr, server.pki().client_tls("local")).await {
        Err(Error::Closed(Failure::Peer(ErrorCode::BUSY), text)) => {
            assert!(text.contains("too many connections"), "{text}")
        }
        other => panic!("expected BUSY, got {:?}", other.map(|_| ())),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another identity takes the third (and last) session.
    let mut bob = server.client("bob").await;
    bob.list().await.unwrap();
    // A fourth session is answered BUSY too: the pool of sessions is full.
    match TestClient::connect(server.addr, server.pki().client_tls("carol")).await {
        Err(Error::Closed(Failure::Peer(ErrorCode::BUSY), text)) => {
            assert!(text.contains("full"), "{text}")
        }
        other => panic!("expected BUSY, got {:?}", other.map(|_| ())),
    }
    // Connections that close free their slots.
    drop(one);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = server.local().await;
    again.list().await.unwrap();
    two.list().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_handshake_timeouts_close_connections() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |o| {
        o.idle_timeout_secs = 1;
        o.handshake_timeout_secs = 1;
    })
    .await;
    let mut client = server.local().await;
    let started = Instant::now();
    let error = client.wait_closed().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "{waited:?} {error:?}"
    );
    // A TCP connection that never starts TLS is closed after the handshake timeout.
    use tokio::io::AsyncReadExt;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_checkpoints_a_running_upload_that_resumes_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let mut server = InProcess::start(root.path(), |o| o.shutdown_grace_secs = 1).await;
    let data = pseudo_random(24 * CHUNK, 30);
    let mut client = server.local().await;
    let _ = client
        .upload_until("resume-me", &data, false, Some(12))
        .await;
    // An idle connection too: it closes at once.
    let mut idle = server.local().await;
    idle.list().await.unwrap();
    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    assert!(matches!(
        idle.wait_closed().await,
        Error::Io(_) | Error::Closed(..)
    ));
    // A new server on the same directories: the upload resumes.
    let server = InProcess::start(root.path(), |_| {}).await;
    let mut client = server.local().await;
    let uploaded = client.upload("resume-me", &data, false).await.unwrap();
    assert!(uploaded.held > 0, "{uploaded:?}");
    assert_eq!(uploaded.held + uploaded.sent, 24);
    assert_eq!(uploaded.digest, digest(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_transfers_of_one_client_run_at_once() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let mut client = server.local().await;
        tasks.push(tokio::spawn(async move {
            let data = pseudo_random(8 * CHUNK + i as usize, 40 + i);
            let name = format!("parallel-{i}");
            let uploaded = client.upload(&name, &data, false).await.unwrap();
            let (back, _) = client.download(&name).await.unwrap();
            assert_eq!(back, data);
            uploaded.digest
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut client: TestClient = server.local().await;
    assert_eq!(client.list().await.unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_tls_fragments_and_small_chunks_for_devices() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |o| {
        o.max_fragment_size = Some(1024);
        o.chunk_size = 4096;
    })
    .await;
    let mut client = server.local().await;
    assert_eq!(client.conn.negotiated().map(|(chunk, _)| chunk), Some(4096));
    let data = pseudo_random(10 * 4096 + 1, 50);
    let uploaded = client.upload("device.bin", &data, false).await.unwrap();
    assert_eq!(uploaded.digest, FileDigest::of(&data, 4096));
    let (back, _) = client.download("device.bin").await.unwrap();
    assert_eq!(back, data);
    let listed = client.list().await.unwrap();
    assert_eq!(listed[0].chunk_size, 4096);
}
