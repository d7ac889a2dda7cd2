//! Limits per client beyond bytes, against the real server: journals in the quota, the file
//! limit, the web identities' shared quota, the smallest chunk size, listing many files in
//! bounded pages, over-long raw names, and a full disk (on a small tmpfs).

mod server_support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_core::framing::encode_frame;
use ferry_core::wire::MAX_NAME_LEN;
use ferry_core::{ErrorCode, Frame, Framing};
use ferry_testkit::data::pseudo_random;
use ferry_testkit::pki::client_tls;
use ferry_testkit::server::InProcess;
use server_support::binary;
use server_support::{tls_connect, Clients, Error, TestClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes the files under `dir` take on disk (allocated blocks: partial files are sparse).
fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let md = entry.metadata().unwrap();
        total += if md.is_dir() {
            disk_use(&entry.path())
        } else {
            md.blocks() * 512
        };
    }
    total
}

fn refused_with(error: &Error, code: ErrorCode, words: &str) {
    match error {
        Error::Refused(got, text) if *got == code && text.contains(words) => {}
        other => panic!("expected {} with {words:?}, got {other:?}", code.name()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_in_16_byte_chunks_stays_within_the_quota() {
    const QUOTA: u64 = 4 << 20;
    let server = InProcess::start_temp(|o| {
        o.quota = QUOTA;
        o.chunk_size = 16;
        o.min_chunk_size = 16;
    })
    .await;
    let mut client = server.local().await;
    // 4 MiB in 16-byte chunks takes 10 MiB of held-chunk records besides its data.
    let error = client
        .upload("whole", &pseudo_random(QUOTA as usize, 1), false)
        .await
        .unwrap_err();
    refused_with(&error, ErrorCode::QUOTA_EXCEEDED, "quota");
    // 1 MiB fits (1 MiB + 2.5 MiB of records): sent in part, then abandoned.
    let data = pseudo_random(1 << 20, 2);
    let stopped = client
        .upload_until("abandoned", &data, false, Some(30_000))
        .await;
    assert!(stopped.is_err());
    drop(client);
    let mut client = server.local().await;
    // The server is done with the abandoned upload once it refuses another beside it.
    let error = client.upload("second", &data, false).await.unwrap_err();
    refused_with(&error, ErrorCode::QUOTA_EXCEEDED, "quota");
    let used = disk_use(&server.identity_dir("local"));
    eprintln!("disk use of the abandoned 1 MiB upload in 16-byte chunks: {used} bytes");
    assert!(used <= QUOTA + 16 + 4096 * 4, "{used} bytes on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_limit_refuses_the_next_file() {
    let server = InProcess::start_temp(|o| o.max_files = 3).await;
    let mut client = server.local().await;
    for i in 0..3 {
        let name = format!("file-{i}");
        client.upload(&name, b"x", false).await.unwrap();
    }
    let error = client.upload("file-3", b"x", false).await.unwrap_err();
    refused_with(&error, ErrorCode::QUOTA_EXCEEDED, "file limit");
    // Replacing one is no new file; another client has its own limit.
    client.upload_retrying("file-0", b"y").await.unwrap();
    let mut bob = server.client("bob").await;
    bob.upload("file-3", b"x", false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identities_share_the_web_quota() {
    let server = InProcess::start_temp(|o| {
        o.quota = 80_000;
        o.web_quota = 100_000;
    })
    .await;
    let mut web1 = server.client("web-0123456789ab").await;
    let mut web2 = server.client("web-ba9876543210").await;
    web1.upload("a", &pseudo_random(60_000, 1), false)
        .await
        .unwrap();
    let error = web2
        .upload("b", &pseudo_random(50_000, 2), false)
        .await
        .unwrap_err();
    refused_with(&error, ErrorCode::QUOTA_EXCEEDED, "web quota");
    web2.upload("b", &pseudo_random(40_000, 3), false)
        .await
        .unwrap();
    // A client of its own certificate is no web identity.
    let mut bob = server.client("bob").await;
    bob.upload("c", &pseudo_random(60_000, 4), false)
        .await
        .unwrap();
}

/// A raw protocol connection: frames written and read by hand, to send what the core's
/// client refuses to.
struct Raw<S> {
    stream: S,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Raw<S> {
    async fn send(&mut self, frame: Frame<'_>) {
        let mut buf = vec![0u8; 2048];
        let len = encode_frame(&frame, Framing::LengthPrefixed, &mut buf).unwrap();
        self.stream.write_all(&buf[..len]).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next frame's body.
    async fn receive(&mut self) -> Vec<u8> {
        let mut len = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut len));
        read.await.expect("an answer within 10 s").unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        body
    }

    async fn hello(&mut self, max_chunk: u32) -> Vec<u8> {
        self.send(Frame::Hello {
            magic: ferry_core::wire::MAGIC,
            version: ferry_core::wire::PROTOCOL_VERSION,
            max_chunk,
            max_window: 4,
        })
        .await;
        self.receive().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_raw_name_is_refused_and_the_connection_goes_on() {
    let server = InProcess::start_temp(|_| {}).await;
    let tls = server.pki().client_tls("local");
    let mut raw = Raw {
        stream: tls_connect(server.addr, tls).await.unwrap(),
    };
    let body = raw.hello(4096).await;
    assert!(matches!(Frame::decode(&body), Ok(Frame::HelloAck { .. })));
    let long = "n".repeat(MAX_NAME_LEN + 45);
    let requests = [
        Frame::OpenUpload {
            seq: 1,
            name: &long,
            size: 1,
            fresh: false,
        },
        Frame::OpenDownload {
            seq: 2,
            name: &long,
            size: 0,
            held: ferry_core::Held::default(),
        },
        Frame::Delete {
            seq: 3,
            name: &long,
        },
        Frame::List {
            seq: 4,
            start_after: &long,
            limit: 10,
        },
    ];
    for request in requests {
        let seq = match request {
            Frame::OpenUpload { seq, .. }
            | Frame::OpenDownload { seq, .. }
            | Frame::Delete { seq, .. }
            | Frame::List { seq, .. } => seq,
            _ => unreachable!(),
        };
        raw.send(request).await;
        let body = raw.receive().await;
        match Frame::decode(&body) {
            Ok(Frame::Error {
                seq: answered,
                code,
                text,
            }) => {
                assert_eq!((answered, code), (seq, ErrorCode::INVALID_NAME), "{text}");
                assert!(text.contains("1024 bytes"), "{text}");
            }
            other => panic!("expected INVALID_NAME for seq {seq}, got {other:?}"),
        }
    }
    // The same connection still answers.
    raw.send(Frame::List {
        seq: 5,
        start_after: "",
        limit: 10,
    })
    .await;
    let body = raw.receive().await;
    assert!(
        matches!(Frame::decode(&body), Ok(Frame::ListPage { seq: 5, .. })),
        "{:?}",
        Frame::decode(&body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_below_the_smallest_chunk_is_refused_with_the_reason() {
    let server = InProcess::start_temp(|o| o.min_chunk_size = 4096).await;
    let tls = server.pki().client_tls("local");
    let mut raw = Raw {
        stream: tls_connect(server.addr, tls).await.unwrap(),
    };
    let body = raw.hello(1024).await;
    match Frame::decode(&body) {
        Ok(Frame::Error {
            seq: 0,
            code: ErrorCode::PROTOCOL,
            text,
        }) => assert!(text.contains("at least 4096"), "{text}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The firmware client's 1 KiB chunks are taken by default.
    let server = InProcess::start_temp(|_| {}).await;
    let tls = server.pki().client_tls("local");
    let mut raw = Raw {
        stream: tls_connect(server.addr, tls).await.unwrap(),
    };
    let body = raw.hello(1024).await;
    assert!(
        matches!(
            Frame::decode(&body),
            Ok(Frame::HelloAck {
                chunk_size: 1024,
                ..
            })
        ),
        "{:?}",
        Frame::decode(&body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_thousand_files_list_completely_in_bounded_pages() {
    const FILES: usize = 60_000;
    let root = tempfile::tempdir().unwrap();
    // On a tmpfs where one can be mounted: 60,000 inodes come and go in seconds there,
    // minutes on a busy disk.
    let storage = root.path().join("storage");
    let _tmpfs = Tmpfs::mount(&storage, "size=512m")
        .map_err(|why| eprintln!("no tmpfs ({why}): the files go to the disk"))
        .ok();
    let server = InProcess::start(root.path(), |_| {}).await;
    // Made in the storage layout directly (their metadata is recorded as they are listed).
    let files = server.identity_dir("local").join("files");
    std::fs::create_dir_all(&files).unwrap();
    let names: Vec<String> = (0..FILES).map(|i| format!("f{i:05}")).collect();
    for name in &names {
        std::fs::write(files.join(name), b"x").unwrap();
    }
    let mut client = server.local().await;
    // However many the client asks for, a page holds at most 1000.
    let (listed, pages) = client.list_paged(u16::MAX).await.unwrap();
    let listed: Vec<String> = listed.into_iter().map(|l| l.name).collect();
    assert_eq!(listed.len(), FILES);
    assert!(listed == names, "the listing is complete and in order");
    assert!(pages >= FILES / 1000, "{pages} pages");
    drop(client);
    drop(server);
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_frees_the_failed_upload_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let _tmpfs = match Tmpfs::mount(&root.path().join("storage"), "size=64m") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let server = binary::start(root.path(), &[]);
    let tls = client_tls(&server.certs, "local");
    let mut client = TestClient::connect(server.addr, tls).await.unwrap();
    let error = client
        .upload("big", &pseudo_random(100 << 20, 1), false)
        .await
        .unwrap_err();
    refused_with(&error, ErrorCode::STORAGE, "server disk full");
    let partial = server.storage.join("local").join("partial");
    let left: Vec<_> = std::fs::read_dir(&partial).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // Another client's 5 MB upload then succeeds.
    let tls = client_tls(&server.certs, "bob");
    let mut bob = TestClient::connect(server.addr, tls).await.unwrap();
    bob.upload("five", &pseudo_random(5_000_000, 2), false)
        .await
        .unwrap();
    let log = server.stop();
    assert!(
        log.lines()
            .any(|line| line.contains("server disk full") && line.contains("local")),
        "{log}"
    );
}
