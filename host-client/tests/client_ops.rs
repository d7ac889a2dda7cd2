//! The client library against the real server (in process, mutual TLS on 127.0.0.1): every
//! operation, edge sizes, resume after a broken connection, refusals, rotten data. Faults
//! come from a TCP relay between client and server that breaks connections on cue.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_client::{Client, ClientError, ClientOptions, ErrorCode, Phase, Progress};
use ferry_core::digest::plain_sha256;
use ferry_core::FileDigest;
use ferry_testkit::data::{pseudo_random, write_file};
use ferry_testkit::pki::Pki;
use ferry_testkit::proxy::{Direction, Proxy};
use ferry_testkit::server::InProcess;

const CHUNK: usize = 64 * 1024;
const SIZES: [usize; 6] = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * 1024 * 1024];
/// The client every test connects as.
const LOCAL: &str = "local";

/// The real server, and a relay in front of it.
struct Setup {
    server: InProcess,
    proxy: Proxy,
}

impl Setup {
    async fn start() -> Setup {
        let server = InProcess::start_temp(|_| {}).await;
        let proxy = Proxy::start(server.addr).await;
        Setup { server, proxy }
    }

    /// Options to connect through the relay.
    fn options(&self) -> ClientOptions {
        self.server.pki().client_options(LOCAL, self.proxy.addr)
    }

    /// Options to connect to the server itself.
    fn direct_options(&self) -> ClientOptions {
        self.server.pki().client_options(LOCAL, self.server.addr)
    }

    /// A client connected through the relay.
    async fn client(&self) -> Client {
        Client::connect(self.options()).await.unwrap()
    }

    /// Stores `bytes` as `name` over a connection of its own, bypassing the relay.
    async fn put(&self, dir: &Path, name: &str, bytes: &[u8]) {
        let path = write_file(dir, &format!("put-{name}"), bytes);
        let mut client = Client::connect(self.direct_options()).await.unwrap();
        client.upload_file(&path, name, &mut |_| {}).await.unwrap();
        client.close().await;
    }

    /// The server's stored copy of `name`, read from its disk.
    fn stored(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.server.stored(LOCAL, name)).unwrap()
    }
}

/// Bytes after which the relay breaks a connection so that `chunks` whole chunks (and the
/// TLS handshake, framing and record overhead, far less than half a chunk) got through.
fn half_past(chunks: u64) -> u64 {
    chunks * CHUNK as u64 + CHUNK as u64 / 2
}

fn file_digest(bytes: &[u8]) -> String {
    FileDigest::of(bytes, CHUNK as u32).to_string()
}

fn chunks(len: usize) -> u64 {
    len.div_ceil(CHUNK) as u64
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = setup.client().await;
    let started = unix_now();
    for (i, &size) in SIZES.iter().enumerate() {
        let bytes = pseudo_random(size, i as u64);
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
        assert_eq!(setup.stored(&name), bytes);

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
        assert_eq!(round.sha256, plain_sha256(&bytes).to_string());
        assert_eq!(round.downloaded_sha256.as_ref(), Some(&round.sha256));
        assert_eq!(round.chunks_compared, chunks(size));
        // The server already held this file: the round trip's upload sent nothing.
        assert_eq!(round.upload.held_at_start, chunks(size));
        assert_eq!(round.upload.chunks_sent, 0);
    }
    let finished = unix_now();
    no_partials(dir.path());

    let listed = client.list().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
    let mut expected: Vec<String> = SIZES.iter().map(|s| format!("file-{s}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    for entry in &listed {
        let stored = setup.stored(&entry.name);
        assert_eq!(entry.size, stored.len() as u64);
        assert_eq!(entry.digest, file_digest(&stored));
        assert_eq!(entry.chunk_size, CHUNK as u32);
        assert!(
            (started..=finished).contains(&entry.modified),
            "modified {} is not the time of the upload ({started}..={finished})",
            entry.modified
        );
    }

    for size in SIZES {
        client.delete(&format!("file-{size}")).await.unwrap();
        assert!(!setup.server.stored(LOCAL, &format!("file-{size}")).exists());
    }
    assert!(client.list().await.unwrap().is_empty());
    client.close().await;
}

#[tokio::test]
async fn an_identical_upload_completes_without_data() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(5 * CHUNK + 7, 1);
    let path = write_file(dir.path(), "same", &bytes);
    let mut client = setup.client().await;
    let first = client
        .upload_file(&path, "same", &mut |_| {})
        .await
        .unwrap();
    let after_first = setup.proxy.total().upstream;
    assert!(
        after_first > bytes.len() as u64,
        "the first upload moved the file"
    );
    let second = client
        .upload_file(&path, "same", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(second.digest, first.digest);
    assert_eq!((second.held_at_start, second.chunks_sent), (6, 0));
    let second_bytes = setup.proxy.total().upstream - after_first;
    assert!(
        second_bytes < 4096,
        "no chunk moved, yet {second_bytes} bytes went to the server"
    );
    assert_eq!(setup.stored("same"), bytes);
}

#[tokio::test]
async fn a_dropped_upload_resumes_with_only_the_missing_chunks() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(3 * 1024 * 1024, 7);
    let path = write_file(dir.path(), "big", &bytes);
    setup.proxy.cut_next(Direction::Upstream, half_past(10));
    let mut client = setup.client().await;
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
    assert_eq!(setup.stored("big"), bytes);
    // Ten chunks and a half went over the first connection, the 38 missing ones (and
    // no more) over the second.
    let traffic = setup.proxy.traffic();
    assert_eq!(traffic.len(), 2, "{traffic:?}");
    assert_eq!(traffic[0].upstream, half_past(10));
    let second = traffic[1].upstream;
    assert!(
        (38 * CHUNK as u64..39 * CHUNK as u64).contains(&second),
        "{second} bytes on the second connection"
    );
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_without_using_a_retry() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f", &pseudo_random(100, 3));
    let mut options = setup.options();
    options.retries = 0;
    let mut client = Client::connect(options).await.unwrap();
    client.upload_file(&path, "f", &mut |_| {}).await.unwrap();
    setup.proxy.kick().await;
    let report = client.upload_file(&path, "g", &mut |_| {}).await.unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(client.list().await.unwrap().len(), 2);
    assert_eq!(setup.proxy.connections(), 2);
}

#[tokio::test]
async fn a_lazy_client_connects_on_first_use() {
    let setup = Setup::start().await;
    let mut client = Client::new(setup.options());
    assert!(!client.is_connected());
    assert_eq!(setup.proxy.connections(), 0);
    assert!(client.list().await.unwrap().is_empty());
    assert!(client.is_connected());
    assert_eq!(setup.proxy.connections(), 1);
    assert_eq!(client.negotiated(), Some((CHUNK as u32, 16)));
}

#[tokio::test]
async fn a_dropped_download_resumes_from_the_partial_file() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(3 * 1024 * 1024 + 5, 8);
    setup.put(dir.path(), "big", &bytes).await;
    setup.proxy.cut_next(Direction::Downstream, half_past(12));
    let mut client = setup.client().await;
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
    // The second connection carried the 37 missing chunks (the last one 5 bytes), no more.
    let traffic = setup.proxy.traffic();
    assert_eq!(traffic.len(), 2, "{traffic:?}");
    let second = traffic[1].downstream;
    assert!(
        (36 * CHUNK as u64 + 5..37 * CHUNK as u64).contains(&second),
        "{second} bytes on the second connection"
    );
}

#[tokio::test]
async fn an_interrupted_download_resumes_in_a_later_call() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(2 * 1024 * 1024, 9);
    setup.put(dir.path(), "f", &bytes).await;
    let mut options = setup.options();
    options.retries = 0;
    setup.proxy.cut_next(Direction::Downstream, half_past(20));
    let mut client = Client::connect(options).await.unwrap();
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
    let mut client = setup.client().await;
    let report = client.download_file("f", &dest, &mut |_| {}).await.unwrap();
    assert_eq!(report.attempts, 1);
    assert_eq!(report.held_at_start, 20);
    assert_eq!(report.chunks_sent, 12);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    no_partials(dir.path());
}

#[tokio::test]
async fn a_source_changed_between_attempts_starts_over() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let old = pseudo_random(20 * CHUNK, 10);
    let path = write_file(dir.path(), "doc", &old);
    let mut options = setup.options();
    options.retries = 0;
    setup.proxy.cut_next(Direction::Upstream, half_past(5));
    let mut client = Client::connect(options).await.unwrap();
    let error = client
        .upload_file(&path, "doc", &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 3, "{error}");
    // Same size, other content: the server's five held chunks no longer match.
    let new = pseudo_random(20 * CHUNK, 11);
    std::fs::write(&path, &new).unwrap();
    let mut client = setup.client().await;
    let before = setup.proxy.total().upstream;
    let report = client.upload_file(&path, "doc", &mut |_| {}).await.unwrap();
    // The first attempt found the old chunks, the second one started fresh.
    assert_eq!(report.attempts, 2);
    assert_eq!(report.held_at_start, 0);
    assert_eq!(report.last_attempt_sent, 20);
    assert_eq!(report.digest, file_digest(&new));
    assert_eq!(setup.stored("doc"), new);
    // Every chunk went once: none was sent before the change was seen.
    let sent = setup.proxy.total().upstream - before;
    assert!(
        (20 * CHUNK as u64..21 * CHUNK as u64).contains(&sent),
        "{sent} bytes for a 20-chunk file"
    );
}

#[tokio::test]
async fn refusals_are_final_and_leave_nothing_behind() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "a", b"hello");
    let mut client = setup.client().await;

    let error = client
        .upload_file(&path, "bad/../name", &mut |_| {})
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
    assert_eq!(setup.proxy.connections(), 1);
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
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(3 * CHUNK, 12);
    let path = write_file(dir.path(), "src", &bytes);
    let mut client = setup.client().await;
    client.upload_file(&path, "r", &mut |_| {}).await.unwrap();
    setup.server.rot(LOCAL, "r", 0);
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
    let setup = Setup::start().await;
    let mut client = setup.client().await;
    let count = 300;
    let long = "x".repeat(200);
    for i in 0..count {
        let name = format!("{i:03}-{long}");
        client
            .upload_stream(&name, 0, tokio::io::empty(), &mut |_| {})
            .await
            .unwrap();
    }
    let before = setup.proxy.total().upstream;
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), count);
    assert!(listed.windows(2).all(|w| w[0].name < w[1].name));
    assert!(listed[0].name.starts_with("000-"));
    // The first request names no cursor; a second page is asked for after a 204-byte name.
    let requested = setup.proxy.total().upstream - before;
    assert!(
        requested > 204,
        "one page held everything ({requested} bytes asked)"
    );
}

#[tokio::test]
async fn streamed_uploads_keep_only_the_window_and_cannot_resume() {
    let setup = Setup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(3 * 1024 * 1024 + 3, 13);
    // The server holds every chunk already: a stream must not build on them.
    setup.put(dir.path(), "streamed", &bytes).await;
    let mut client = setup.client().await;
    let done = Arc::new(Mutex::new(0u64));
    let seen = done.clone();
    let before = setup.proxy.total().upstream;
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
    assert_eq!(setup.stored("streamed"), bytes);
    assert_eq!(
        (report.held_at_start, report.chunks_sent),
        (0, chunks(bytes.len())),
        "a stream never builds on held chunks"
    );
    assert!(setup.proxy.total().upstream - before > bytes.len() as u64);

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

    // A connection broken after data was consumed: an error, not a silent resume.
    client.close().await;
    setup.proxy.cut_next(Direction::Upstream, half_past(5));
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
    assert_eq!(setup.stored("after"), [1, 2, 3]);
}

#[tokio::test]
async fn connection_failures_map_to_exit_code_3() {
    let setup = Setup::start().await;
    let pki = setup.server.pki();
    // Nothing listens on a port that was just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = setup.options();
    options.server = format!("127.0.0.1:{port}");
    let error = Client::connect(options).await.unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert_eq!(error.exit_code(), 3);

    // A client that trusts another CA refuses the server's certificate.
    let other = Pki::fresh();
    let options = ClientOptions::from_files(
        &setup.server.addr.to_string(),
        &other.ca(),
        &pki.cert(LOCAL),
        &pki.key(LOCAL),
    );
    // The pair still matches; only the CA differs.
    let error = Client::connect(options.unwrap()).await.unwrap_err();
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    assert_eq!(error.exit_code(), 3);

    // The server refuses a client certificate from another CA.
    let options = ClientOptions::from_files(
        &setup.server.addr.to_string(),
        &pki.ca(),
        &other.cert(LOCAL),
        &other.key(LOCAL),
    )
    .unwrap();
    let error = Client::connect(options).await.unwrap_err();
    assert_eq!(error.exit_code(), 3, "{error}");
}
