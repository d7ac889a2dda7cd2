use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_core::wire::ErrorCode;
use ferry_core::{chunk_digest, Digest, FileDigest};
use ferry_tokio::journal;

use super::committed::{META_MAX, META_XATTR};
use super::*;
use crate::storage::Precondition;

const CLIENT: &str = "phone";
const CLIENT2: &str = "tablet";
const CHUNK: u32 = 16;

fn storage(quota: u64) -> (tempfile::TempDir, Arc<LocalStore>) {
    storage_with(|config| config.limits.quota = quota)
}

fn storage_with(tweak: impl FnOnce(&mut StorageConfig)) -> (tempfile::TempDir, Arc<LocalStore>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = StorageConfig {
        root: tmp.path().join("storage"),
        limits: StoreLimits {
            quota: 10_000,
            max_files: 1000,
            web_quota: u64::MAX,
            max_file_size: 1000,
            partial_expiry: Duration::from_secs(3600),
            busy_wait: Duration::ZERO,
        },
    };
    tweak(&mut config);
    let storage = LocalStore::open(config).unwrap();
    (tmp, Arc::new(storage))
}

/// What a new partial upload of `size` bytes in `chunk_size` chunks reserves: its data and
/// its journal's header and records.
fn reserved(size: u64, chunk_size: u32) -> u64 {
    size + quota::journal_reservation(ferry_core::Layout { size, chunk_size })
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Stores the chunks `indices` of `data`.
fn store(upload: &mut dyn Upload, data: &[u8], indices: impl IntoIterator<Item = u64>) {
    let layout = upload.layout();
    for index in indices {
        let offset = layout.offset(index);
        let chunk = &data[offset as usize..offset as usize + layout.len(index)];
        upload
            .store(index, offset, &chunk_digest(chunk), chunk)
            .unwrap();
    }
}

fn upload_all(storage: &LocalStore, client: &str, name: &str, data: &[u8]) -> FileMeta {
    let mut upload = storage
        .begin_upload(client, name, data.len() as u64, CHUNK, false)
        .unwrap();
    let chunks = upload.layout().chunks();
    store(upload.as_mut(), data, 0..chunks);
    upload
        .commit(&FileDigest::of(data, CHUNK), Precondition::None)
        .unwrap()
}

#[test]
fn upload_commit_and_read_back() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(100, 1);
    let meta = upload_all(&storage, CLIENT, "a.txt", &bytes);
    assert_eq!(meta.size, 100);
    assert_eq!(meta.digest_bytes(), FileDigest::of(&bytes, CHUNK));
    let path = storage.file_path(CLIENT, "a.txt").unwrap();
    assert_eq!(fs::read(&path).unwrap(), bytes);
    let stored = storage.open(CLIENT, "a.txt", CHUNK).unwrap();
    assert_eq!(stored.meta(), &meta);
    // No partial is left behind.
    let partial = storage.dirs(CLIENT).unwrap().partial;
    assert_eq!(fs::read_dir(partial).unwrap().count(), 0);
    assert_eq!(storage.usage(CLIENT).unwrap(), 100);
}

#[test]
fn empty_file() {
    let (_tmp, storage) = storage(10_000);
    let meta = upload_all(&storage, CLIENT, "empty", &[]);
    assert_eq!(meta.size, 0);
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "empty").unwrap()).unwrap(),
        b""
    );
}

#[test]
fn partial_records_resume_after_drop() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(100, 2); // 7 chunks of 16
    let mut upload = storage
        .begin_upload(CLIENT, "r", 100, CHUNK, false)
        .unwrap();
    assert_eq!(upload.held_chunks().count(), 0);
    store(upload.as_mut(), &bytes, [0, 1, 2, 4]);
    upload.checkpoint().unwrap();
    drop(upload); // disconnect, or a restart: only the files remain
    let mut upload = storage
        .begin_upload(CLIENT, "r", 100, CHUNK, false)
        .unwrap();
    let held: Vec<u64> = upload.held_chunks().map(|(i, _)| i).collect();
    assert_eq!(held, [0, 1, 2, 4]);
    store(upload.as_mut(), &bytes, [3, 5, 6]);
    upload
        .commit(&FileDigest::of(&bytes, CHUNK), Precondition::None)
        .unwrap();
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "r").unwrap()).unwrap(),
        bytes
    );
}

#[test]
fn a_one_chunk_upload_keeps_no_records_and_starts_over() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(16, 4); // exactly one chunk
    let dirs = storage.dirs(CLIENT).unwrap();
    let mut upload = storage
        .begin_upload(CLIENT, "one", 16, CHUNK, false)
        .unwrap();
    store(upload.as_mut(), &bytes, [0]);
    upload.checkpoint().unwrap();
    assert!(dirs.part_path(&name_key("one")).exists());
    assert!(!dirs.held_path(&name_key("one")).exists());
    drop(upload);
    let mut upload = storage
        .begin_upload(CLIENT, "one", 16, CHUNK, false)
        .unwrap();
    assert_eq!(upload.held_chunks().count(), 0);
    store(upload.as_mut(), &bytes, [0]);
    upload
        .commit(&FileDigest::of(&bytes, CHUNK), Precondition::None)
        .unwrap();
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "one").unwrap()).unwrap(),
        bytes
    );
    assert!(!dirs.part_path(&name_key("one")).exists());
}

#[test]
fn resume_reverifies_held_chunks_against_the_data() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(64, 3);
    let mut upload = storage.begin_upload(CLIENT, "t", 64, CHUNK, false).unwrap();
    store(upload.as_mut(), &bytes, [0, 1, 2]);
    drop(upload);
    let dirs = storage.dirs(CLIENT).unwrap();
    let key = name_key("t");
    // A torn write: chunk 1's data never reached the disk.
    let part = OpenOptions::new()
        .write(true)
        .open(dirs.part_path(&key))
        .unwrap();
    part.write_all_at(&[0u8; 16], 16).unwrap();
    // And a torn record at the end.
    let mut held = OpenOptions::new()
        .append(true)
        .open(dirs.held_path(&key))
        .unwrap();
    held.write_all(&[7u8; 13]).unwrap();
    let upload = storage.begin_upload(CLIENT, "t", 64, CHUNK, false).unwrap();
    let held: Vec<u64> = upload.held_chunks().map(|(i, _)| i).collect();
    assert_eq!(held, [0, 2]);
    drop(upload);
    // The records were rewritten clean.
    let len = fs::metadata(dirs.held_path(&key)).unwrap().len();
    assert_eq!(len as usize, journal::HEADER_LEN + 2 * journal::RECORD_LEN);
}

#[test]
fn a_partial_of_another_size_or_fresh_starts_over() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(64, 4);
    let mut upload = storage.begin_upload(CLIENT, "s", 64, CHUNK, false).unwrap();
    store(upload.as_mut(), &bytes, [0, 1]);
    drop(upload);
    let upload = storage.begin_upload(CLIENT, "s", 80, CHUNK, false).unwrap();
    assert_eq!(upload.held_chunks().count(), 0);
    drop(upload);
    let mut upload = storage.begin_upload(CLIENT, "s", 80, CHUNK, false).unwrap();
    store(upload.as_mut(), &data(80, 5), [0]);
    drop(upload);
    let upload = storage.begin_upload(CLIENT, "s", 80, 32, false).unwrap();
    assert_eq!(upload.held_chunks().count(), 0, "another chunk size");
    drop(upload);
    let mut upload = storage.begin_upload(CLIENT, "s", 80, CHUNK, false).unwrap();
    store(upload.as_mut(), &data(80, 5), [0]);
    drop(upload);
    let upload = storage.begin_upload(CLIENT, "s", 80, CHUNK, true).unwrap();
    assert_eq!(upload.held_chunks().count(), 0, "fresh");
}

#[test]
fn identical_committed_file_is_held_in_full() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(50, 6);
    let meta = upload_all(&storage, CLIENT, "same", &bytes);
    let mut upload = storage
        .begin_upload(CLIENT, "same", 50, CHUNK, false)
        .unwrap();
    assert!(upload.is_already_stored());
    let held: Vec<(u64, Digest)> = upload.held_chunks().collect();
    let expected: Vec<(u64, Digest)> = (0..)
        .zip(bytes.chunks(CHUNK as usize).map(chunk_digest))
        .collect();
    assert_eq!(held, expected);
    assert_eq!(
        upload
            .commit(&FileDigest::of(&bytes, CHUNK), Precondition::None)
            .unwrap(),
        meta
    );
    drop(upload);
    // With `fresh`, the data is sent again.
    let upload = storage
        .begin_upload(CLIENT, "same", 50, CHUNK, true)
        .unwrap();
    assert!(!upload.is_already_stored());
    assert_eq!(upload.held_chunks().count(), 0);
}

#[test]
fn one_upload_per_name_and_identity() {
    let (_tmp, storage) = storage(10_000);
    let first = storage.begin_upload(CLIENT, "x", 10, CHUNK, false).unwrap();
    assert!(matches!(
        storage.begin_upload(CLIENT, "x", 10, CHUNK, false),
        Err(StorageError::Busy)
    ));
    // Another name, another identity: fine.
    let _y = storage.begin_upload(CLIENT, "y", 10, CHUNK, false).unwrap();
    let _x2 = storage
        .begin_upload(CLIENT2, "x", 10, CHUNK, false)
        .unwrap();
    drop(first);
    let _again = storage.begin_upload(CLIENT, "x", 10, CHUNK, false).unwrap();
}

#[test]
fn quota_counts_files_and_partials_and_refuses_up_front() {
    // A partial of 150 bytes in 16-byte chunks reserves 150 + 32 + 10 × 40 = 582 bytes.
    assert_eq!(reserved(150, CHUNK), 582);
    let quota = 100 + reserved(150, CHUNK) + reserved(50, CHUNK);
    let (tmp, storage) = storage(quota);
    upload_all(&storage, CLIENT, "a", &data(100, 7));
    let partial = storage
        .begin_upload(CLIENT, "b", 150, CHUNK, false)
        .unwrap();
    assert_eq!(storage.usage(CLIENT).unwrap(), 682);
    // 682 used + 51 and its journal (243) > 924.
    let error = storage
        .begin_upload(CLIENT, "c", 51, CHUNK, false)
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::QuotaExceeded {
            used: 682,
            requested: 243,
            quota: 924
        }
    ));
    assert_eq!(error.code(), ErrorCode::QUOTA_EXCEEDED);
    assert!(
        error
            .to_string()
            .contains("682 B used + 243 B requested > 924 B quota"),
        "{error}"
    );
    // Nothing is left behind by a refusal.
    let dirs = storage.dirs(CLIENT).unwrap();
    assert!(!dirs.part_path(&name_key("c")).exists());
    assert!(!dirs.held_path(&name_key("c")).exists());
    let _c = storage.begin_upload(CLIENT, "c", 50, CHUNK, false).unwrap();
    drop(partial);
    // Replacing `a` does not count the old `a`: 582 (b) + 242 (c) + 100 (new a, one chunk,
    // no journal) = 924.
    let _a = storage.begin_upload(CLIENT, "a", 100, 128, true).unwrap();
    // Another identity has its own quota.
    let _other = storage
        .begin_upload(CLIENT2, "big", 924, 1024, false)
        .unwrap();
    drop(tmp);
}

#[test]
fn counted_usage_follows_commits_deletes_and_hand_edits() {
    let (_tmp, storage) = storage(1000);
    upload_all(&storage, CLIENT, "a", &data(100, 1));
    upload_all(&storage, CLIENT, "b", &data(200, 2));
    assert_eq!(storage.usage(CLIENT).unwrap(), 300);
    // Replacing counts the new size instead of the old one.
    upload_all(&storage, CLIENT, "a", &data(40, 3));
    assert_eq!(storage.usage(CLIENT).unwrap(), 240);
    storage.delete(CLIENT, "b").unwrap();
    assert_eq!(storage.usage(CLIENT).unwrap(), 40);
    // A file put there by hand is counted once the expiry pass has run.
    let path = storage.file_path(CLIENT, "by-hand").unwrap();
    fs::write(&path, [0u8; 500]).unwrap();
    assert_eq!(storage.usage(CLIENT).unwrap(), 40);
    storage.expire_partials(SystemTime::now()).unwrap();
    assert_eq!(storage.usage(CLIENT).unwrap(), 540);
    let error = storage
        .begin_upload(CLIENT, "c", 461, CHUNK, false)
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::QuotaExceeded { used: 540, .. }
    ));
}

#[test]
fn too_large_is_refused_up_front_and_data_is_bounded() {
    let (_tmp, storage) = storage(10_000);
    let error = storage
        .begin_upload(CLIENT, "big", 1001, CHUNK, false)
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::TOO_LARGE);
    let mut upload = storage
        .begin_upload(CLIENT, "small", 20, CHUNK, false)
        .unwrap();
    // Chunk 1 is 4 bytes long: 16 bytes would go past the declared size.
    let error = upload
        .store(1, 16, &chunk_digest(&[0; 16]), &[0; 16])
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::TOO_LARGE);
    assert!(upload
        .store(2, 32, &chunk_digest(&[0; 1]), &[0; 1])
        .is_err());
}

#[test]
fn commit_refuses_an_incomplete_upload() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(40, 8);
    let mut upload = storage.begin_upload(CLIENT, "i", 40, CHUNK, false).unwrap();
    store(upload.as_mut(), &bytes, [0, 1]);
    let error = upload
        .commit(&FileDigest::of(&bytes, CHUNK), Precondition::None)
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::STORAGE);
    assert!(!storage.file_path(CLIENT, "i").unwrap().exists());
    // The partial is kept and completes.
    store(upload.as_mut(), &bytes, [2]);
    upload
        .commit(&FileDigest::of(&bytes, CHUNK), Precondition::None)
        .unwrap();
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "i").unwrap()).unwrap(),
        bytes
    );
}

#[test]
fn old_version_stays_readable_while_replaced() {
    let (_tmp, storage) = storage(10_000);
    let old = data(48, 9);
    let new = data(48, 10);
    upload_all(&storage, CLIENT, "v", &old);
    let reader = storage.open(CLIENT, "v", CHUNK).unwrap();
    let mut upload = storage.begin_upload(CLIENT, "v", 48, CHUNK, true).unwrap();
    store(upload.as_mut(), &new, 0..3);
    // Not committed yet: the file is the old one.
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "v").unwrap()).unwrap(),
        old
    );
    upload
        .commit(&FileDigest::of(&new, CHUNK), Precondition::None)
        .unwrap();
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "v").unwrap()).unwrap(),
        new
    );
    // A download that opened the old version keeps reading it.
    let mut buf = vec![0; 48];
    reader.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, old);
    assert_eq!(reader.meta().digest_bytes(), FileDigest::of(&old, CHUNK));
    let current = storage.open(CLIENT, "v", CHUNK).unwrap();
    assert_eq!(current.meta().digest_bytes(), FileDigest::of(&new, CHUNK));
}

#[test]
fn stale_metadata_is_recomputed() {
    let (_tmp, storage) = storage(10_000);
    upload_all(&storage, CLIENT, "m", &data(40, 11));
    // Replaced by hand: new inode, no matching metadata.
    let path = storage.file_path(CLIENT, "m").unwrap();
    let replacement = data(33, 12);
    let temp = path.with_file_name("m.new");
    fs::write(&temp, &replacement).unwrap();
    fs::rename(&temp, &path).unwrap();
    let stored = storage.open(CLIENT, "m", CHUNK).unwrap();
    assert_eq!(stored.meta().size, 33);
    assert_eq!(
        stored.meta().digest_bytes(),
        FileDigest::of(&replacement, CHUNK)
    );
    // And it was written back.
    let again = storage.open(CLIENT, "m", CHUNK).unwrap();
    assert_eq!(again.meta(), stored.meta());
}

#[test]
fn metadata_lives_on_the_file_or_in_meta_where_attributes_are_missing() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(40, 21);
    let committed = upload_all(&storage, CLIENT, "x", &bytes);
    let dirs = storage.dirs(CLIENT).unwrap();
    let file = File::open(storage.file_path(CLIENT, "x").unwrap()).unwrap();
    let meta_file = dirs.meta_path(&name_key("x"));
    let mut buf = [0u8; META_MAX];
    match rustix::fs::fgetxattr(&file, META_XATTR, &mut buf[..]) {
        Ok(len) => {
            let meta: FileMeta = serde_json::from_slice(&buf[..len]).unwrap();
            assert_eq!(meta, committed);
            assert!(!meta_file.exists());
        }
        // A file system without user attributes (as tmpfs before Linux 6.6).
        Err(e) => {
            assert_eq!(e, rustix::io::Errno::NOTSUP);
            assert!(meta_file.exists());
        }
    }
    // Metadata in `meta/` (written where attributes were missing) is read too.
    let plain = storage.file_path(CLIENT, "y").unwrap();
    fs::write(&plain, &bytes).unwrap();
    let ino = fs::metadata(&plain).unwrap().ino();
    let recorded = FileMeta {
        name: "y".into(),
        inode: ino,
        modified: 7,
        ..committed
    };
    fs::write(
        dirs.meta_path(&name_key("y")),
        serde_json::to_vec(&recorded).unwrap(),
    )
    .unwrap();
    assert_eq!(*storage.open(CLIENT, "y", CHUNK).unwrap().meta(), recorded);
}

#[test]
fn list_is_sorted_paged_and_isolated() {
    let (_tmp, storage) = storage(10_000);
    for name in ["b", "a", "d", "c"] {
        upload_all(&storage, CLIENT, name, &data(5, 13));
    }
    upload_all(&storage, CLIENT2, "other", &data(5, 14));
    // A stray file with a name no client could store is not listed.
    for stray in ["-stray", "cafe\u{301}", "tab\there"] {
        let path = storage
            .file_path(CLIENT, "a")
            .unwrap()
            .with_file_name(stray);
        fs::write(path, b"x").unwrap();
    }
    let names = |list: Vec<FileMeta>| list.into_iter().map(|m| m.name).collect::<Vec<_>>();
    assert_eq!(
        names(storage.list(CLIENT, "", "", 100, CHUNK).unwrap()),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        names(storage.list(CLIENT, "", "a", 2, CHUNK).unwrap()),
        ["b", "c"]
    );
    assert_eq!(
        names(storage.list(CLIENT, "", "d", 2, CHUNK).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(storage.list(CLIENT2, "", "", 100, CHUNK).unwrap()),
        ["other"]
    );
    let fresh = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert!(storage.list(fresh, "", "", 100, CHUNK).unwrap().is_empty());
}

#[test]
fn delete_removes_file_and_metadata() {
    let (_tmp, storage) = storage(10_000);
    upload_all(&storage, CLIENT, "gone", &data(5, 15));
    assert!(matches!(
        storage.delete(CLIENT2, "gone"),
        Err(StorageError::NotFound)
    ));
    storage.delete(CLIENT, "gone").unwrap();
    assert!(!storage.file_path(CLIENT, "gone").unwrap().exists());
    let dirs = storage.dirs(CLIENT).unwrap();
    assert!(!dirs.meta_path(&name_key("gone")).exists());
    assert!(matches!(
        storage.delete(CLIENT, "gone"),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        storage.open(CLIENT, "gone", CHUNK),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn abandoned_partials_expire() {
    let (_tmp, storage) = storage(10_000);
    let mut old = storage
        .begin_upload(CLIENT, "old", 32, CHUNK, false)
        .unwrap();
    store(old.as_mut(), &data(32, 16), [0]);
    drop(old);
    let running = storage
        .begin_upload(CLIENT, "running", 32, CHUNK, false)
        .unwrap();
    let now = SystemTime::now();
    assert_eq!(
        storage.expire_partials(now).unwrap(),
        0,
        "nothing is old yet"
    );
    let later = now + Duration::from_secs(3601);
    assert_eq!(
        storage.expire_partials(later).unwrap(),
        1,
        "the running one is kept"
    );
    let dirs = storage.dirs(CLIENT).unwrap();
    assert!(!dirs.part_path(&name_key("old")).exists());
    assert!(!dirs.held_path(&name_key("old")).exists());
    assert!(dirs.part_path(&name_key("running")).exists());
    drop(running);
    assert_eq!(storage.expire_partials(later).unwrap(), 1);
    assert_eq!(storage.usage(CLIENT).unwrap(), 0);
}

#[test]
fn identities_must_be_client_names() {
    let (tmp, storage) = storage(10_000);
    let too_long = "a".repeat(65);
    for client in [
        "", "..", "../etc", "a/b", ".hidden", "-x", "a..b", &too_long,
    ] {
        assert!(
            storage.begin_upload(client, "a", 1, CHUNK, false).is_err(),
            "{client}"
        );
    }
    assert!(!tmp.path().join("etc").exists());
}

#[test]
fn a_held_file_of_earlier_releases_resumes() {
    let (_tmp, storage) = storage(10_000);
    let bytes = data(64, 17); // 4 chunks of 16
    let dirs = storage.dirs(CLIENT).unwrap();
    dirs.create().unwrap();
    let key = name_key("old");
    let mut part = vec![0u8; 64];
    part[..32].copy_from_slice(&bytes[..32]);
    fs::write(dirs.part_path(&key), &part).unwrap();
    // As earlier servers wrote it: magic, chunk size, a reserved zero, size, created,
    // then one record (index, SHA-256) per stored chunk.
    let mut held = b"FRYHELD1".to_vec();
    held.extend_from_slice(&CHUNK.to_le_bytes());
    held.extend_from_slice(&0u32.to_le_bytes());
    held.extend_from_slice(&64u64.to_le_bytes());
    held.extend_from_slice(&1_700_000_000u64.to_le_bytes());
    for index in [0u64, 1] {
        held.extend_from_slice(&index.to_le_bytes());
        let at = index as usize * 16;
        held.extend_from_slice(chunk_digest(&bytes[at..at + 16]).as_bytes());
    }
    fs::write(dirs.held_path(&key), &held).unwrap();
    let mut upload = storage
        .begin_upload(CLIENT, "old", 64, CHUNK, false)
        .unwrap();
    let held: Vec<u64> = upload.held_chunks().map(|(i, _)| i).collect();
    assert_eq!(held, [0, 1]);
    store(upload.as_mut(), &bytes, [2, 3]);
    upload
        .commit(&FileDigest::of(&bytes, CHUNK), Precondition::None)
        .unwrap();
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "old").unwrap()).unwrap(),
        bytes
    );
}

#[test]
fn conditional_commits_create_only_or_replace_a_known_digest() {
    let (_tmp, storage) = storage(10_000);
    let first = data(40, 18);
    let second = data(40, 19);
    let upload_with = |bytes: &[u8], condition| {
        let mut upload = storage.begin_upload(CLIENT, "c", 40, CHUNK, true).unwrap();
        store(upload.as_mut(), bytes, 0..3);
        let result = upload.commit(&FileDigest::of(bytes, CHUNK), condition);
        (upload, result)
    };
    let (_, created) = upload_with(&first, Precondition::Absent);
    assert_eq!(
        created.unwrap().digest_bytes(),
        FileDigest::of(&first, CHUNK)
    );
    let (upload, refused) = upload_with(&second, Precondition::Absent);
    assert!(matches!(refused, Err(StorageError::PreconditionFailed)));
    assert!(!upload.is_committed(), "the partial stays for a retry");
    drop(upload);
    let stale = Precondition::Digest(FileDigest::of(&second, CHUNK));
    let (_, refused) = upload_with(&second, stale);
    assert!(matches!(refused, Err(StorageError::PreconditionFailed)));
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "c").unwrap()).unwrap(),
        first
    );
    let current = Precondition::Digest(FileDigest::of(&first, CHUNK));
    let (_, replaced) = upload_with(&second, current);
    replaced.unwrap();
    assert_eq!(
        fs::read(storage.file_path(CLIENT, "c").unwrap()).unwrap(),
        second
    );
    // An identical file is committed under the same conditions.
    let mut same = storage.begin_upload(CLIENT, "c", 40, CHUNK, false).unwrap();
    assert!(same.is_already_stored());
    let digest = FileDigest::of(&second, CHUNK);
    assert!(matches!(
        same.commit(&digest, Precondition::Absent),
        Err(StorageError::PreconditionFailed)
    ));
    same.commit(&digest, Precondition::Digest(digest)).unwrap();
}

#[test]
fn an_aborted_upload_leaves_nothing() {
    let (_tmp, storage) = storage(10_000);
    let mut upload = storage
        .begin_upload(CLIENT, "gone", 64, CHUNK, false)
        .unwrap();
    store(upload.as_mut(), &data(64, 20), [0, 1]);
    assert_eq!(storage.usage(CLIENT).unwrap(), reserved(64, CHUNK));
    upload.abort().unwrap();
    let dirs = storage.dirs(CLIENT).unwrap();
    assert!(!dirs.part_path(&name_key("gone")).exists());
    assert!(!dirs.held_path(&name_key("gone")).exists());
    assert_eq!(storage.usage(CLIENT).unwrap(), 0);
    // The name is free again, and nothing is resumed.
    let upload = storage
        .begin_upload(CLIENT, "gone", 64, CHUNK, false)
        .unwrap();
    assert_eq!(upload.held_chunks().count(), 0);
}

#[test]
fn list_takes_a_prefix() {
    let (_tmp, storage) = storage(10_000);
    for name in ["logs-2", "a", "logs-1", "logz", "photo"] {
        upload_all(&storage, CLIENT, name, &data(5, 22));
    }
    let names = |prefix, after| {
        let list = storage.list(CLIENT, prefix, after, 100, CHUNK).unwrap();
        list.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };
    assert_eq!(names("logs-", ""), ["logs-1", "logs-2"]);
    assert_eq!(names("logs-", "logs-1"), ["logs-2"]);
    assert_eq!(names("log", ""), ["logs-1", "logs-2", "logz"]);
    assert!(names("x", "").is_empty());
}

#[test]
fn the_store_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, storage) = storage(1 << 20);
    let root = tmp.path().join("storage");
    // An earlier version left the root 0755: opening the store again closes it.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let storage_again = LocalStore::open(storage.config.clone()).unwrap();
    let payload = data(100, 3);
    upload_all(&storage_again, CLIENT, "a.bin", &payload);
    // A partial upload in progress (more than one chunk, so it keeps a journal).
    let mut partial = storage_again
        .begin_upload(CLIENT, "b.bin", 100, CHUNK, false)
        .unwrap();
    store(partial.as_mut(), &payload, [0]);
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let client = root.join(CLIENT);
    for dir in [
        &root,
        &client,
        &client.join("files"),
        &client.join("partial"),
    ] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&client.join("files").join("a.bin")), 0o600);
    for entry in fs::read_dir(client.join("partial")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

mod batch;
mod limits;
mod tree;
