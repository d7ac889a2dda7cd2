//! Many files on one connection against the real server (in process): `upload_many` stores
//! every file with its attributes, `list_tree` streams the listing page by page, and a
//! connection cut in the middle of a batch ends with every file verified exactly once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_core::FileDigest;
use ferry_server::{Server, ServerOptions};
use ferry_testkit::data::{pseudo_random, write_file};
use ferry_testkit::pki::Pki;
use ferry_testkit::proxy::{Direction, Proxy};
use ferry_tokio::client::{Client, FileAttrs, FileEntry, ItemEvent, UploadItem};
use tokio::sync::watch;

struct Running {
    addr: SocketAddr,
    certs: PathBuf,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn start(root: &Path) -> Running {
    let options = ServerOptions {
        listen: "127.0.0.1:0".into(),
        storage: root.join("storage"),
        certs: root.join("certs"),
        ..ServerOptions::default()
    };
    let certs = options.certs.clone();
    let server = Server::bind(options).await.expect("the server binds");
    let addr = server.local_addr();
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        let until_stopped = async move {
            let _ = stopped.changed().await;
        };
        server
            .serve(until_stopped)
            .await
            .expect("the server serves")
    });
    Running { addr, certs, stop }
}

/// `count` small files of varied sizes (0 to 6000 bytes) written under `dir`, as items.
fn small_files(dir: &Path, count: usize) -> (Vec<UploadItem>, Vec<Vec<u8>>) {
    let mut items = Vec::new();
    let mut contents = Vec::new();
    for i in 0..count {
        let data = pseudo_random((i * 37) % 6001, i as u64);
        let name = format!("f{i:04}.bin");
        let path = write_file(dir, &name, &data);
        items.push(UploadItem {
            path,
            name,
            attrs: FileAttrs {
                modified: Some(1_600_000_000 + i as u64),
                mode: Some(if i % 2 == 0 { 0o644 } else { 0o600 }),
            },
        });
        contents.push(data);
    }
    (items, contents)
}

async fn listing(client: &mut Client, prefix: &str, recursive: bool) -> (Vec<FileEntry>, usize) {
    let mut entries = Vec::new();
    let mut pages = 0;
    client
        .list_tree(prefix, recursive, &mut |page| {
            pages += 1;
            entries.extend(page);
        })
        .await
        .expect("the listing");
    (entries, pages)
}

#[tokio::test]
async fn five_hundred_small_files_go_on_one_connection_with_their_attributes() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(temp.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let pki = Pki::open(&server.certs);
    let source = temp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let (items, contents) = small_files(&source, 500);

    let mut client = Client::connect(pki.client_options("alice", proxy.addr))
        .await
        .expect("alice connects");
    let mut done = vec![0u32; items.len()];
    let mut started = 0;
    let clock = std::time::Instant::now();
    let results = client
        .upload_many(&items, &mut |event| match event {
            ItemEvent::Started { .. } => started += 1,
            ItemEvent::Done { index, result } => {
                assert!(result.is_ok(), "{index}: {result:?}");
                done[index] += 1;
            }
            ItemEvent::Progress { .. } => {}
        })
        .await
        .expect("the connection holds");
    eprintln!("upload_many of 500 small files: {:?}", clock.elapsed());
    assert_eq!(proxy.connections(), 1, "one connection for the whole batch");
    assert_eq!(started, 500);
    assert!(done.iter().all(|&n| n == 1), "each file reported once");
    for (i, result) in results.iter().enumerate() {
        let report = result.as_ref().unwrap();
        assert_eq!(report.name, items[i].name);
        assert_eq!(report.size, contents[i].len() as u64);
    }

    // The listing streams in pages of at most 1000 and carries the attributes.
    let (entries, pages) = listing(&mut client, "", true).await;
    assert!(pages >= 1);
    assert_eq!(entries.len(), 500);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.name, items[i].name);
        assert_eq!(entry.size, contents[i].len() as u64);
        assert_eq!(Some(entry.modified), items[i].attrs.modified);
        assert_eq!(entry.mode, items[i].attrs.mode);
        assert!(!entry.folder);
    }

    // Every file's bytes, downloaded back and verified.
    let back = temp.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    for (i, item) in items.iter().enumerate() {
        let dest = back.join(&item.name);
        client
            .download_file(&item.name, &dest, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), contents[i], "{}", item.name);
    }
}

#[tokio::test]
async fn a_connection_cut_mid_batch_ends_with_every_file_verified_exactly_once() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(temp.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let pki = Pki::open(&server.certs);
    let source = temp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let (mut items, mut contents) = small_files(&source, 300);
    // Two files larger than a chunk (64 KiB) go through the chunked path in between.
    for (i, size) in [(150, 200_000usize), (250, 70_000)] {
        let data = pseudo_random(size, 1000 + i as u64);
        items[i].path = write_file(&source, &format!("big{i}.bin"), &data);
        contents[i] = data;
    }
    // Cut the first connection once about a third of the bytes went up (TLS included).
    proxy.cut_next(Direction::Upstream, 300_000);
    let mut client = Client::connect(pki.client_options("alice", proxy.addr))
        .await
        .expect("alice connects");
    let mut done = vec![0u32; items.len()];
    let results = client
        .upload_many(&items, &mut |event| {
            if let ItemEvent::Done { index, result } = event {
                assert!(result.is_ok(), "{index}: {result:?}");
                done[index] += 1;
            }
        })
        .await
        .expect("the client reconnects");
    assert!(proxy.connections() >= 2, "the connection was cut");
    assert!(
        done.iter().all(|&n| n == 1),
        "each file reported exactly once"
    );
    assert!(results.iter().all(Result::is_ok));
    assert!(results.iter().any(|r| r.as_ref().unwrap().attempts > 1));

    let (entries, _) = listing(&mut client, "", true).await;
    let mut names: Vec<&str> = items.iter().map(|item| item.name.as_str()).collect();
    names.sort_unstable();
    let listed: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(listed, names, "every file stored once, nothing else");
    for entry in &entries {
        let i = items
            .iter()
            .position(|item| item.name == entry.name)
            .unwrap();
        assert_eq!(entry.size, contents[i].len() as u64, "{}", entry.name);
        let digest = FileDigest::of(&contents[i], entry.chunk_size);
        assert_eq!(entry.digest, digest.to_string(), "{}", entry.name);
    }
}

/// Measures (does not assert) 1000 files of 4 KiB sent with `upload_many` against the
/// one-by-one loop of `upload_file_with`, each on a fresh identity's namespace.
/// Run with `cargo test -p ferry-server --test many_files -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn measure_a_thousand_files_of_4_kib() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(temp.path()).await;
    let pki = Pki::open(&server.certs);
    let source = temp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let items: Vec<UploadItem> = (0..1000)
        .map(|i| {
            let name = format!("m{i:04}.bin");
            let path = write_file(&source, &name, &pseudo_random(4096, i));
            UploadItem {
                path,
                name,
                attrs: FileAttrs::default(),
            }
        })
        .collect();
    for round in 0..2 {
        let mut client = Client::connect(pki.client_options("alice", server.addr))
            .await
            .unwrap();
        let clock = std::time::Instant::now();
        for item in &items {
            let name = format!("loop{round}/{}", item.name).replace('/', "-");
            client
                .upload_file_with(&item.path, &name, item.attrs, &mut |_| {})
                .await
                .unwrap();
        }
        let one_by_one = clock.elapsed();
        let renamed: Vec<UploadItem> = items
            .iter()
            .map(|item| UploadItem {
                name: format!("many{round}-{}", item.name),
                ..item.clone()
            })
            .collect();
        let clock = std::time::Instant::now();
        let results = client.upload_many(&renamed, &mut |_| {}).await.unwrap();
        let many = clock.elapsed();
        assert!(results.iter().all(Result::is_ok));
        eprintln!(
            "round {round}: 1000 x 4 KiB: one by one {:.3} s, upload_many {:.3} s ({:.1}x)",
            one_by_one.as_secs_f64(),
            many.as_secs_f64(),
            one_by_one.as_secs_f64() / many.as_secs_f64()
        );
    }
}
