//! Limits per identity beyond bytes of files: journals and partials in the quota, the file
//! limit, the web identities' shared quota, listing by index, and a full disk.

use std::os::unix::fs::MetadataExt;

use super::*;

/// Bytes the files under `dir` take on disk (allocated blocks: partials are sparse).
fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
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

#[test]
fn an_abandoned_upload_in_small_chunks_stays_within_the_quota() {
    const QUOTA: u64 = 1 << 20;
    let (tmp, storage) = storage_with(|config| {
        config.limits.quota = QUOTA;
        config.limits.max_file_size = 16 << 20;
    });
    // The quota's worth of data in 16-byte chunks would need 2.5 times more for its records.
    let error = storage
        .begin_upload(CLIENT, "whole", QUOTA, CHUNK, false)
        .unwrap_err();
    assert!(
        matches!(error, StorageError::QuotaExceeded { requested, .. } if requested == reserved(QUOTA, CHUNK)),
        "{error}"
    );
    // The largest upload that fits, abandoned one chunk short of its end.
    let size = (QUOTA - 32) * 16 / 56 / 16 * 16;
    assert!(reserved(size, CHUNK) <= QUOTA);
    let payload = data(size as usize, 9);
    let mut upload = storage
        .begin_upload(CLIENT, "abandoned", size, CHUNK, false)
        .unwrap();
    let chunks = upload.layout().chunks();
    store(upload.as_mut(), &payload, 0..chunks - 1);
    // Chunks sent again (a lost acknowledgement) add no records.
    store(upload.as_mut(), &payload, 0..10);
    upload.checkpoint().unwrap();
    drop(upload);
    let client_dir = tmp.path().join("storage").join(CLIENT);
    let used = disk_use(&client_dir);
    assert!(used <= QUOTA + 4096, "{used} bytes on disk");
    assert!(storage.usage(CLIENT).unwrap() <= QUOTA);
    // Nothing more fits beside it.
    assert!(matches!(
        storage.begin_upload(CLIENT, "more", 100, CHUNK, false),
        Err(StorageError::QuotaExceeded { .. })
    ));
    // It resumes with every chunk it held.
    let upload = storage
        .begin_upload(CLIENT, "abandoned", size, CHUNK, false)
        .unwrap();
    assert_eq!(upload.held_chunks().count() as u64, chunks - 1);
}

#[test]
fn the_file_limit_counts_files_and_partials() {
    let (_tmp, storage) = storage_with(|config| config.limits.max_files = 3);
    upload_all(&storage, CLIENT, "a", &data(10, 1));
    upload_all(&storage, CLIENT, "b", &data(10, 2));
    let partial = storage.begin_upload(CLIENT, "c", 40, CHUNK, false).unwrap();
    let error = storage
        .begin_upload(CLIENT, "d", 10, CHUNK, false)
        .unwrap_err();
    assert!(
        matches!(error, StorageError::FileLimit { files: 3, max: 3 }),
        "{error}"
    );
    assert_eq!(error.code(), ErrorCode::QUOTA_EXCEEDED);
    assert!(error.to_string().contains("file limit"), "{error}");
    // Replacing a file adds none; an abandoned partial still counts.
    let replacing = storage.begin_upload(CLIENT, "a", 10, CHUNK, true).unwrap();
    replacing.abort().unwrap();
    drop(partial);
    assert!(storage.begin_upload(CLIENT, "d", 10, CHUNK, false).is_err());
    // Another identity has its own limit; a delete makes room.
    drop(
        storage
            .begin_upload(CLIENT2, "d", 10, CHUNK, false)
            .unwrap(),
    );
    storage.delete(CLIENT, "b").unwrap();
    drop(storage.begin_upload(CLIENT, "d", 10, CHUNK, false).unwrap());
}

#[test]
fn web_identities_share_the_web_quota() {
    let (_tmp, storage) = storage_with(|config| {
        config.limits.quota = 800;
        config.limits.web_quota = 1000;
    });
    let (web1, web2) = ("web-0123456789ab", "web-ba9876543210");
    let one_chunk = 1000;
    let mut upload = storage
        .begin_upload(web1, "x", 600, one_chunk, false)
        .unwrap();
    let payload = data(600, 4);
    upload
        .store(0, 0, &chunk_digest(&payload), &payload)
        .unwrap();
    upload
        .commit(&FileDigest::of(&payload, one_chunk), Precondition::None)
        .unwrap();
    // 600 (web1) + 500 > 1000, though web2's own quota has room.
    let error = storage
        .begin_upload(web2, "y", 500, one_chunk, false)
        .unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::WebQuotaExceeded {
                used: 600,
                requested: 500,
                quota: 1000
            }
        ),
        "{error}"
    );
    assert_eq!(error.code(), ErrorCode::QUOTA_EXCEEDED);
    // A partial of web2 counts for web1 too.
    let _y = storage
        .begin_upload(web2, "y", 400, one_chunk, false)
        .unwrap();
    assert!(matches!(
        storage.begin_upload(web1, "z", 1, one_chunk, false),
        Err(StorageError::WebQuotaExceeded { used: 1000, .. })
    ));
    // Other identities are not web identities.
    drop(
        storage
            .begin_upload(CLIENT, "z", 800, one_chunk, false)
            .unwrap(),
    );
}

/// Whether `name` of `client` has recorded metadata (attribute or `meta/`).
fn has_meta(storage: &LocalStore, client: &str, name: &str) -> bool {
    let file = File::open(storage.file_path(client, name).unwrap()).unwrap();
    let mut buf = [0u8; META_MAX];
    rustix::fs::fgetxattr(&file, META_XATTR, &mut buf[..]).is_ok()
        || storage
            .dirs(client)
            .unwrap()
            .meta_path(&name_key(name))
            .exists()
}

#[test]
fn a_page_reads_the_metadata_of_its_entries_only() {
    let (_tmp, storage) = storage(10_000);
    // Files put there by hand have no metadata until they are read.
    let names: Vec<String> = (0..50).map(|i| format!("f{i:02}")).collect();
    fs::create_dir_all(storage.dirs(CLIENT).unwrap().files).unwrap();
    for name in &names {
        fs::write(storage.file_path(CLIENT, name).unwrap(), b"x").unwrap();
    }
    upload_all(&storage, CLIENT, "first", &data(5, 1));
    let page = storage.list(CLIENT, "", "f09", 10, CHUNK).unwrap();
    let listed: Vec<&str> = page.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(listed, names[10..20]);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            has_meta(&storage, CLIENT, name),
            (10..20).contains(&i),
            "{name}"
        );
    }
}

#[test]
fn the_name_index_follows_commits_deletes_and_hand_edits() {
    let (_tmp, storage) = storage(10_000);
    let names = |storage: &LocalStore| {
        let list = storage.list(CLIENT, "", "", 100, CHUNK).unwrap();
        list.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };
    assert!(!storage.index.is_indexed(CLIENT));
    // The walk that counts the usage for the first upload builds the index too.
    upload_all(&storage, CLIENT, "b", &data(5, 1));
    assert!(storage.index.is_indexed(CLIENT));
    assert_eq!(names(&storage), ["b"]);
    upload_all(&storage, CLIENT, "a", &data(5, 2));
    upload_all(&storage, CLIENT, "c", &data(5, 3));
    storage.delete(CLIENT, "b").unwrap();
    assert_eq!(names(&storage), ["a", "c"]);
    // A file put there by hand shows once the expiry pass has dropped the index.
    fs::write(storage.file_path(CLIENT, "d").unwrap(), b"x").unwrap();
    assert_eq!(names(&storage), ["a", "c"]);
    storage.expire_partials(SystemTime::now()).unwrap();
    assert!(!storage.index.is_indexed(CLIENT));
    assert_eq!(names(&storage), ["a", "c", "d"]);
    // A file removed by hand is skipped.
    fs::remove_file(storage.file_path(CLIENT, "a").unwrap()).unwrap();
    assert_eq!(names(&storage), ["c", "d"]);
}

#[test]
fn a_full_disk_is_named_as_such() {
    for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded] {
        let error = crate::storage::error::io_err("writing x")(io::Error::from(kind));
        assert!(error.is_disk_full());
        assert_eq!(error.code(), ErrorCode::STORAGE);
        assert_eq!(error.client_text(), "server disk full");
        assert!(error.to_string().starts_with("server disk full: writing x"));
    }
    let other = crate::storage::error::io_err("writing x")(io::Error::from(
        io::ErrorKind::PermissionDenied,
    ));
    assert!(!other.is_disk_full());
}
