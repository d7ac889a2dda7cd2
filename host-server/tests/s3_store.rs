//! The S3 store through the `Store` trait, against real servers: s3s-fs (objects are files
//! under its root, so the tests look at the bucket directly) and PostgreSQL, both started on
//! ephemeral ports by `ferry_testkit::cluster`. Each test has its own bucket and database;
//! "two instances" are two `S3Store`s on the same bucket and database, each with its own
//! pool, lock connection and spool directory.

mod server_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use ferry_core::{chunk_digest, FileDigest, Layout};
use ferry_server::pg::Database;
use ferry_server::storage::{
    FileMeta, ListItem, Precondition, S3Config, S3Store, StorageError, Store, StoreLimits, Upload,
};
use ferry_testkit::cluster::{Postgres, S3Server};
use ferry_testkit::server::InProcess;
use server_support::Clients;

const MIB: u64 = 1 << 20;
/// S3's smallest part: the tests' part size, so that multipart files stay small.
const PART: u64 = 5 * MIB;
const CHUNK: u32 = 64 << 10;
const CLIENT: &str = "alice";

/// One bucket and one database, shared by the stores a test opens.
struct Env {
    postgres: Arc<Postgres>,
    s3: Arc<S3Server>,
    bucket: String,
    database: String,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

/// Limits of one store.
#[derive(Clone, Copy)]
struct Limits {
    quota: u64,
    max_files: u64,
    web_quota: u64,
    busy_wait: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            quota: u64::MAX,
            max_files: u64::MAX,
            web_quota: u64::MAX,
            busy_wait: Duration::from_millis(500),
        }
    }
}

fn env(test: &str) -> Env {
    env_on(test, S3Server::shared().expect("s3s-fs"))
}

/// On an S3 server of its own: for a test that looks at all of the server's files.
fn env_on(test: &str, s3: Arc<S3Server>) -> Env {
    let postgres = Postgres::shared().expect("PostgreSQL");
    let url = postgres.unique_database(test).unwrap();
    let database = url.rsplit('/').next().unwrap().to_string();
    let bucket = database.replace('_', "-");
    s3.create_bucket(&bucket).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Env {
        postgres,
        s3,
        bucket,
        database,
        runtime,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Env {
    /// A new instance on the bucket and database ("instance" names its spool).
    fn store(&self, instance: &str, limits: Limits) -> S3Store {
        self.store_sending(instance, limits, 1)
    }

    /// As [`Env::store`], with `parts_in_flight` parts of an upload sent at once.
    fn store_sending(&self, instance: &str, limits: Limits, parts_in_flight: usize) -> S3Store {
        let config = S3Config {
            bucket: self.bucket.clone(),
            prefix: "ferry/".into(),
            endpoint: Some(self.s3.endpoint()),
            region: Some(self.s3.region().into()),
            access_key_id: Some(self.s3.access_key().into()),
            secret_access_key: Some(self.s3.secret_key().into()),
            virtual_hosted: false,
            part_size: PART,
            parts_in_flight,
            spool: self.dir.path().join(instance),
            limits: StoreLimits {
                quota: limits.quota,
                max_files: limits.max_files,
                web_quota: limits.web_quota,
                max_file_size: 1 << 40,
                partial_expiry: Duration::from_secs(3600),
                busy_wait: limits.busy_wait,
            },
        };
        let url = self.postgres.database_url(&self.database);
        self.runtime.block_on(async {
            let db = Database::connect(&url, None).await.unwrap();
            S3Store::open(config, db).await.unwrap()
        })
    }

    fn spool(&self, instance: &str) -> PathBuf {
        self.dir.path().join(instance)
    }

    /// The objects of a client in the bucket (s3s-fs keeps each as a file).
    fn objects(&self, client: &str) -> Vec<PathBuf> {
        let dir = self
            .s3
            .root()
            .join(&self.bucket)
            .join("ferry")
            .join(client)
            .join("objects");
        files_in(&dir)
    }

    fn sql(&self, query: &str) -> String {
        self.postgres
            .psql(&self.database, query)
            .unwrap()
            .trim()
            .to_string()
    }
}

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for path in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
    {
        if path.is_dir() {
            found.extend(files_below(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn data(size: u64, seed: u64) -> Vec<u8> {
    ferry_testkit::data::pseudo_random(size as usize, seed)
}

fn layout(data: &[u8]) -> Layout {
    Layout {
        size: data.len() as u64,
        chunk_size: CHUNK,
    }
}

/// Sends the chunks `chunks` of `data` that the upload does not hold, checkpointing when it
/// asks, as the session does.
fn send(upload: &mut dyn Upload, data: &[u8], chunks: std::ops::Range<u64>) {
    let layout = upload.layout();
    let held: BTreeSet<u64> = upload.held_chunks().map(|(index, _)| index).collect();
    for index in chunks.filter(|index| !held.contains(index)) {
        let offset = layout.offset(index);
        let chunk = &data[offset as usize..offset as usize + layout.len(index)];
        upload
            .store(index, offset, &chunk_digest(chunk), chunk)
            .unwrap();
        if upload.wants_checkpoint() {
            upload.checkpoint().unwrap();
        }
    }
}

/// Uploads as a client does: resumes from the held chunks, or starts afresh when one differs
/// from the data (the core's `SourceChanged`, which the client answers with a fresh upload).
fn upload(
    store: &dyn Store,
    client: &str,
    name: &str,
    data: &[u8],
) -> Result<FileMeta, StorageError> {
    let size = data.len() as u64;
    let mut upload = store.begin_upload(client, name, size, CHUNK, false)?;
    let changed = upload.held_chunks().any(|(index, digest)| {
        let offset = layout(data).offset(index) as usize;
        digest != chunk_digest(&data[offset..offset + layout(data).len(index)])
    });
    if changed {
        drop(upload);
        upload = store.begin_upload(client, name, size, CHUNK, true)?;
    }
    if !upload.is_already_stored() {
        send(upload.as_mut(), data, 0..layout(data).chunks());
    }
    upload.commit(&FileDigest::of(data, CHUNK), Precondition::None)
}

/// Reads a committed file as a download does: fetch when asked, then read.
fn read(store: &dyn Store, client: &str, name: &str) -> Vec<u8> {
    let mut file = store.open(client, name, CHUNK).unwrap();
    read_file(file.as_mut())
}

fn read_file(file: &mut dyn ferry_server::storage::StoredFile) -> Vec<u8> {
    let size = file.meta().size;
    let mut out = vec![0u8; size as usize];
    let mut offset = 0u64;
    while offset < size {
        let len = (size - offset).min(u64::from(CHUNK)) as usize;
        if file.needs_fetch(offset, len) {
            file.fetch(offset, len).unwrap();
        }
        file.read_exact_at(&mut out[offset as usize..offset as usize + len], offset)
            .unwrap();
        offset += len as u64;
    }
    out
}

#[test]
fn round_trips_around_the_part_size() {
    let env = env("s3_round_trip");
    let store = env.store("a", Limits::default());
    let sizes = [
        0,
        1,
        PART - 1,
        PART,
        PART + 1,
        2 * PART + 3 * u64::from(CHUNK) + 7,
        100 * MIB,
    ];
    let mut total = 0;
    for (seed, size) in sizes.into_iter().enumerate() {
        let name = format!("size-{size}");
        let bytes = data(size, seed as u64);
        let meta = upload(&store, CLIENT, &name, &bytes).unwrap();
        assert_eq!(meta.size, size);
        assert_eq!(meta.digest, FileDigest::of(&bytes, CHUNK).to_string());
        assert!(read(&store, CLIENT, &name) == bytes, "{name} reads back");
        total += size;
    }
    // One object per file, byte-identical in the bucket; nothing left in the spool or as
    // partial uploads; usage is the files' bytes.
    let objects = env.objects(CLIENT);
    assert_eq!(objects.len(), sizes.len());
    let mut stored: Vec<u64> = objects
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    stored.sort();
    assert_eq!(stored, sizes);
    assert!(files_in(&env.spool("a")).is_empty());
    assert_eq!(env.sql("SELECT count(*) FROM ferry_partials"), "0");
    assert_eq!(env.sql("SELECT count(*) FROM ferry_parts"), "0");
    assert_eq!(store.usage(CLIENT).unwrap(), total);
    // An identical file completes without data.
    let bytes = data(PART + 1, 4);
    let again = store
        .begin_upload(
            CLIENT,
            &format!("size-{}", PART + 1),
            PART + 1,
            CHUNK,
            false,
        )
        .unwrap();
    assert!(again.is_already_stored());
    assert_eq!(again.held_chunks().count() as u64, layout(&bytes).chunks());
}

#[test]
fn parts_sent_while_the_next_is_received_all_arrive_and_record_themselves() {
    let env = env("s3_in_flight");
    let per_part = PART / u64::from(CHUNK);
    let bytes = data(4 * PART + 1, 11);
    {
        let store = env.store_sending("a", Limits::default(), 3);
        let meta = upload(&store, CLIENT, "whole", &bytes).unwrap();
        assert_eq!(meta.digest, FileDigest::of(&bytes, CHUNK).to_string());
        assert!(read(&store, CLIENT, "whole") == bytes);
        // Three parts received, then the connection ends: the session's last checkpoint
        // leaves up to two parts on their way, which record themselves after the upload
        // is gone; another instance then holds all three.
        let other = data(4 * PART + 1, 12);
        let mut cut = store
            .begin_upload(CLIENT, "cut", other.len() as u64, CHUNK, false)
            .unwrap();
        send(cut.as_mut(), &other, 0..3 * per_part);
        cut.checkpoint().unwrap();
        drop(cut);
    }
    let second = env.store("b", Limits::default());
    let other = data(4 * PART + 1, 12);
    let mut held = 0;
    for _ in 0..200 {
        let resumed = second
            .begin_upload(CLIENT, "cut", other.len() as u64, CHUNK, false)
            .unwrap();
        held = resumed.held_chunks().count() as u64;
        if held == 3 * per_part {
            break;
        }
        drop(resumed);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(held, 3 * per_part, "the parts on their way were recorded");
    let meta = upload(&second, CLIENT, "cut", &other).unwrap();
    assert_eq!(meta.digest, FileDigest::of(&other, CHUNK).to_string());
    assert!(read(&second, CLIENT, "cut") == other);
}

#[test]
fn an_upload_cut_on_one_instance_resumes_on_another_from_the_last_part() {
    let env = env("s3_resume");
    let bytes = data(2 * PART + 100_000, 7);
    let chunks = layout(&bytes).chunks();
    let per_part = PART / u64::from(CHUNK);
    {
        let first = env.store("a", Limits::default());
        let mut upload = first
            .begin_upload(CLIENT, "big", bytes.len() as u64, CHUNK, false)
            .unwrap();
        // The first part and half of the second: only the first is recorded.
        send(upload.as_mut(), &bytes, 0..per_part + per_part / 2);
        assert_eq!(env.sql("SELECT count(*) FROM ferry_parts"), "1");
        assert!(!files_in(&env.spool("a")).is_empty());
        // Instance A dies: nothing of it runs again (the upload is never dropped), and
        // PostgreSQL sees its connections close, which releases its lock on the name.
        std::mem::forget(upload);
        let closed = env.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        );
        assert_ne!(closed, "0");
    }
    let second = env.store("b", Limits::default());
    let mut upload = second
        .begin_upload(CLIENT, "big", bytes.len() as u64, CHUNK, false)
        .unwrap();
    let held: Vec<u64> = upload.held_chunks().map(|(index, _)| index).collect();
    assert_eq!(
        held,
        (0..per_part).collect::<Vec<_>>(),
        "held = the recorded part"
    );
    for (index, digest) in upload.held_chunks() {
        let offset = layout(&bytes).offset(index) as usize;
        assert_eq!(
            digest,
            chunk_digest(&bytes[offset..offset + CHUNK as usize])
        );
    }
    send(upload.as_mut(), &bytes, 0..chunks);
    upload
        .commit(&FileDigest::of(&bytes, CHUNK), Precondition::None)
        .unwrap();
    drop(upload);
    assert!(read(&second, CLIENT, "big") == bytes);
    assert_eq!(env.objects(CLIENT).len(), 1);
    assert!(std::fs::read(&env.objects(CLIENT)[0]).unwrap() == bytes);
    assert_eq!(second.usage(CLIENT).unwrap(), bytes.len() as u64);
    // A fresh start drops what a partial upload held.
    let mut upload = second
        .begin_upload(CLIENT, "other", bytes.len() as u64, CHUNK, false)
        .unwrap();
    send(upload.as_mut(), &bytes, 0..per_part + 1);
    assert!(!files_in(&env.spool("b")).is_empty());
    drop(upload);
    assert!(
        files_in(&env.spool("b")).is_empty(),
        "chunks of parts not sent are not kept"
    );
    let upload = second
        .begin_upload(CLIENT, "other", bytes.len() as u64, CHUNK, true)
        .unwrap();
    assert_eq!(upload.held_chunks().count(), 0);
}

#[test]
fn one_upload_per_name_across_instances() {
    let env = env("s3_race");
    let limits = Limits {
        busy_wait: Duration::from_millis(300),
        ..Limits::default()
    };
    let (a, b) = (env.store("a", limits), env.store("b", limits));
    // While A holds the name, B is refused after its wait.
    let held = a.begin_upload(CLIENT, "same", 10, CHUNK, false).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        b.begin_upload(CLIENT, "same", 10, CHUNK, false),
        Err(StorageError::Busy)
    ));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Another name is not held.
    drop(b.begin_upload(CLIENT, "another", 10, CHUNK, false).unwrap());
    drop(held);
    // Released: B gets its turn (the unlock runs as a task: within the wait).
    drop(b.begin_upload(CLIENT, "same", 10, CHUNK, false).unwrap());

    // Both instances upload different versions of one name at once, many times: each
    // upload commits or is refused as busy, and the name always holds exactly one whole
    // version, the last one committed.
    let (a, b) = (Arc::new(a), Arc::new(b));
    for round in 0..4u64 {
        let versions = [data(PART + 1, 100 + round), data(PART + 1, 200 + round)];
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .zip(versions.clone())
            .map(|(store, bytes)| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = upload(store.as_ref(), CLIENT, "raced", &bytes);
                    (result, SystemTime::now())
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let mut committed = Vec::new();
        for (i, (result, at)) in results.iter().enumerate() {
            match result {
                Ok(_) => committed.push((*at, i)),
                Err(StorageError::Busy) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(!committed.is_empty(), "round {round}: one upload commits");
        let stored = read(a.as_ref(), CLIENT, "raced");
        let winner = committed.iter().max().unwrap().1;
        assert!(
            stored == versions[winner],
            "round {round}: the last commit wins whole"
        );
        let meta = b.open(CLIENT, "raced", CHUNK).unwrap().meta().clone();
        assert_eq!(meta.digest, FileDigest::of(&stored, CHUNK).to_string());
    }
    // The file, and the two partial uploads of 10 bytes left at the start.
    assert_eq!(a.usage(CLIENT).unwrap(), PART + 1 + 20);
}

#[test]
fn quota_holds_across_instances() {
    let env = env("s3_quota");
    let limits = Limits {
        quota: 3 * MIB,
        max_files: 10,
        ..Limits::default()
    };
    let stores = [
        Arc::new(env.store("a", limits)),
        Arc::new(env.store("b", limits)),
    ];
    // Eight reservations of 1 MiB at once on two instances: exactly three fit.
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                store.begin_upload(CLIENT, &format!("f{i}"), MIB, CHUNK, false)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut uploads = Vec::new();
    for result in results {
        match result {
            Ok(upload) => uploads.push(upload),
            Err(StorageError::QuotaExceeded {
                used,
                requested,
                quota,
            }) => assert_eq!((used, requested, quota), (3 * MIB, MIB, 3 * MIB)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(uploads.len(), 3);
    assert_eq!(stores[1].usage(CLIENT).unwrap(), 3 * MIB);
    // An aborted upload gives its reservation back, on every instance.
    uploads.pop().unwrap().abort().unwrap();
    assert_eq!(stores[0].usage(CLIENT).unwrap(), 2 * MIB);
    drop(uploads);
    let bytes = data(MIB, 1);
    upload(stores[1].as_ref(), CLIENT, "fits", &bytes).unwrap();
    // A replaced file does not count against its replacement.
    upload(stores[0].as_ref(), CLIENT, "fits", &data(MIB, 2)).unwrap();
    assert_eq!(stores[0].usage(CLIENT).unwrap(), 3 * MIB);

    // The file limit counts files and partial uploads.
    let files = Limits {
        max_files: 2,
        ..Limits::default()
    };
    let (a, b) = (env.store("c", files), env.store("d", files));
    upload(&a, "bob", "one", b"1").unwrap();
    let _partial = b.begin_upload("bob", "two", 1, CHUNK, false).unwrap();
    assert!(matches!(
        a.begin_upload("bob", "three", 1, CHUNK, false),
        Err(StorageError::FileLimit { files: 2, max: 2 })
    ));

    // The web identities share one quota across instances.
    let web = Limits {
        web_quota: MIB,
        ..Limits::default()
    };
    let (a, b) = (env.store("e", web), env.store("f", web));
    upload(&a, "web-1", "x", &data(MIB / 2, 3)).unwrap();
    match b.begin_upload("web-2", "y", MIB / 2 + 1, CHUNK, false) {
        Err(StorageError::WebQuotaExceeded { used, quota, .. }) => {
            assert_eq!((used, quota), (MIB / 2, MIB))
        }
        other => panic!("{other:?}"),
    }
    drop(b.begin_upload("web-2", "y", MIB / 2, CHUNK, false).unwrap());
}

#[test]
fn expiry_aborts_abandoned_uploads_and_deletes_replaced_objects() {
    let env = env_on("s3_expiry", Arc::new(S3Server::start().expect("s3s-fs")));
    let a = env.store("a", Limits::default());
    let bytes = data(2 * PART, 9);
    let mut abandoned = a
        .begin_upload(CLIENT, "abandoned", bytes.len() as u64, CHUNK, false)
        .unwrap();
    send(abandoned.as_mut(), &bytes, 0..PART / u64::from(CHUNK));
    // While the upload runs, expiry leaves it alone, even long after.
    let later = SystemTime::now() + Duration::from_secs(7200);
    let b = env.store("b", Limits::default());
    assert_eq!(b.expire_partials(later).unwrap(), 0);
    drop(abandoned);
    // s3s-fs keeps a multipart upload's state and parts in files named `.upload…`.
    let multipart = || {
        files_below(env.s3.root())
            .into_iter()
            .filter(|path| path.to_string_lossy().contains(".upload"))
            .count()
    };
    assert!(multipart() > 0);
    // Not yet expired: kept.
    assert_eq!(b.expire_partials(SystemTime::now()).unwrap(), 0);
    assert_eq!(b.usage(CLIENT).unwrap(), bytes.len() as u64);
    std::thread::sleep(Duration::from_millis(200)); // the unlock runs as a task
    assert_eq!(b.expire_partials(later).unwrap(), 1);
    assert_eq!(b.usage(CLIENT).unwrap(), 0);
    assert_eq!(env.sql("SELECT count(*) FROM ferry_partials"), "0");
    assert_eq!(env.sql("SELECT count(*) FROM ferry_parts"), "0");
    assert_eq!(env.sql("SELECT count(*) FROM ferry_garbage"), "0");
    assert_eq!(multipart(), 0, "the multipart upload is aborted");
    // The multipart upload is aborted: a new upload of the name starts from nothing.
    let upload = a
        .begin_upload(CLIENT, "abandoned", bytes.len() as u64, CHUNK, false)
        .unwrap();
    assert_eq!(upload.held_chunks().count(), 0);
    upload.abort().unwrap();
    assert_eq!(b.usage(CLIENT).unwrap(), 0);

    // A replaced file's object stays for running downloads, then goes.
    let (old, new) = (data(100_000, 1), data(200_000, 2));
    upload_ok(&a, "doc", &old);
    let mut reading = b.open(CLIENT, "doc", CHUNK).unwrap();
    upload_ok(&b, "doc", &new);
    assert_eq!(env.objects(CLIENT).len(), 2);
    assert!(
        read_file(reading.as_mut()) == old,
        "the open version stays readable"
    );
    assert!(read(&a, CLIENT, "doc") == new);
    b.expire_partials(SystemTime::now()).unwrap();
    assert_eq!(env.objects(CLIENT).len(), 2, "within the grace period");
    b.expire_partials(later).unwrap();
    let objects = env.objects(CLIENT);
    assert_eq!(objects.len(), 1);
    assert!(std::fs::read(&objects[0]).unwrap() == new);
    // A deleted file's object goes the same way.
    a.delete(CLIENT, "doc").unwrap();
    a.expire_partials(later).unwrap();
    assert!(env.objects(CLIENT).is_empty());
    assert_eq!(a.usage(CLIENT).unwrap(), 0);
}

fn upload_ok(store: &S3Store, name: &str, bytes: &[u8]) {
    upload(store, CLIENT, name, bytes).unwrap();
}

#[test]
fn list_in_byte_order_delete_and_folders() {
    let env = env("s3_list");
    let a = env.store("a", Limits::default());
    let b = env.store("b", Limits::default());
    let names = ["b", "a/x", "a/y", "Z", "é", "a-", "c/d/e"];
    for (i, name) in names.iter().enumerate() {
        upload_ok(if i % 2 == 0 { &a } else { &b }, name, name.as_bytes());
    }
    let listed = |store: &S3Store, prefix: &str, after: &str, limit: usize| -> Vec<String> {
        store
            .list(CLIENT, prefix, after, limit, CHUNK)
            .unwrap()
            .into_iter()
            .map(|meta| meta.name)
            .collect()
    };
    assert_eq!(
        listed(&a, "", "", 100),
        ["Z", "a-", "a/x", "a/y", "b", "c/d/e", "é"]
    );
    assert_eq!(listed(&b, "", "a-", 2), ["a/x", "a/y"]);
    assert_eq!(listed(&b, "a/", "", 100), ["a/x", "a/y"]);
    assert_eq!(listed(&b, "a/", "a/x", 100), ["a/y"]);
    let tree: Vec<ListItem> = a.list_tree(CLIENT, "", "", 100, false, CHUNK).unwrap();
    let shown: Vec<String> = tree
        .iter()
        .map(|item| match item {
            ListItem::File(meta) => meta.name.clone(),
            ListItem::Folder(folder) => folder.clone(),
        })
        .collect();
    assert_eq!(shown, ["Z", "a-", "a/", "b", "c/", "é"]);
    // Names that collide with the tree are refused.
    assert!(matches!(
        a.begin_upload(CLIENT, "b/c", 1, CHUNK, false),
        Err(StorageError::NameConflict { .. })
    ));
    assert!(matches!(
        a.begin_upload(CLIENT, "c/d", 1, CHUNK, false),
        Err(StorageError::NameConflict { .. })
    ));
    // Delete, on either instance.
    let before = a.usage(CLIENT).unwrap();
    b.delete(CLIENT, "a/x").unwrap();
    assert!(matches!(
        a.delete(CLIENT, "a/x"),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        a.open(CLIENT, "a/x", CHUNK),
        Err(StorageError::NotFound)
    ));
    assert_eq!(a.usage(CLIENT).unwrap(), before - 3);
    assert_eq!(listed(&a, "a", "", 100), ["a-", "a/y"]);
    // Another identity sees none of it.
    assert!(
        listed(&a, "", "", 100).len() == 6 && a.list("bob", "", "", 10, CHUNK).unwrap().is_empty()
    );
}

/// Two servers (the library's `Server`, as the binary runs it) with `--store s3://…
/// --metadata postgres://…` on one bucket and database, and a protocol client over mutual
/// TLS: an upload cut on the first server resumes on the second from its last stored part,
/// and either server serves the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_bucket_and_resume_each_others_uploads() {
    let (postgres, s3) = tokio::task::spawn_blocking(|| {
        (
            Postgres::shared().expect("PostgreSQL"),
            S3Server::shared().expect("s3s-fs"),
        )
    })
    .await
    .unwrap();
    let url = postgres.unique_database("s3_servers").unwrap();
    let bucket = url.rsplit('/').next().unwrap().replace('_', "-");
    s3.create_bucket(&bucket).unwrap();
    let s3_options = |options: &mut ferry_server::ServerOptions| {
        options.store = format!("s3://{bucket}/ferry");
        options.metadata = Some(url.clone());
        options.s3_endpoint = Some(s3.endpoint());
        options.s3_region = Some(s3.region().into());
        options.s3_access_key_id = Some(s3.access_key().into());
        options.s3_secret_access_key = Some(s3.secret_key().into());
        options.s3_part_size = PART;
    };
    let root = tempfile::tempdir().unwrap();
    let mut first = InProcess::start(&root.path().join("a"), s3_options).await;
    let certs = first.certs.clone();
    let second = InProcess::start(&root.path().join("b"), |options| {
        s3_options(options);
        options.certs = certs;
    })
    .await;
    let bytes = data(2 * PART + 12_345, 11);
    let per_part = PART / u64::from(CHUNK);
    {
        let mut client = first.local().await;
        let cut = client
            .upload_until("big", &bytes, false, Some(per_part + per_part / 2))
            .await;
        assert!(cut.is_err());
    }
    first.stop().await;
    let mut client = second.local().await;
    let uploaded = client.upload("big", &bytes, false).await.unwrap();
    assert_eq!(uploaded.digest, FileDigest::of(&bytes, CHUNK));
    assert_eq!(uploaded.held, per_part, "resumed from the one stored part");
    let (back, _) = client.download("big").await.unwrap();
    assert!(back == bytes);
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    // The first server, started again, serves it too.
    let again = InProcess::start(&root.path().join("a"), |options| {
        s3_options(options);
        options.certs = second.certs.clone();
    })
    .await;
    let (back, _) = again.local().await.download("big").await.unwrap();
    assert!(back == bytes);
}

/// `/readyz` in s3 mode: the store probe sees the database and the bucket, and fails soon
/// when the S3 server is gone.
#[test]
fn the_probe_sees_the_s3_server_go() {
    let own = S3Server::start().expect("s3s-fs");
    let env = env_on("s3_probe", Arc::new(own));
    let store = env.store("a", Limits::default());
    let found = store.probe().unwrap().unwrap();
    assert!(found.contains("reachable"), "{found}");
    let mut s3 = env.s3;
    Arc::get_mut(&mut s3).unwrap().kill();
    let started = std::time::Instant::now();
    assert!(matches!(store.probe(), Err(StorageError::Remote { .. })));
    assert!(started.elapsed() < Duration::from_secs(20));
}
