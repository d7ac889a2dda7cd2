//! Nested names: folders on disk, conflicts between files and folders, tree listings,
//! deletes that leave no empty folders, and attributes of a file already stored.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::storage::ListItem;

fn tree_names(items: &[ListItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            ListItem::File(meta) => meta.name.clone(),
            ListItem::Folder(folder) => folder.clone(),
        })
        .collect()
}

fn commit_tree(storage: &LocalStore, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        upload_all(storage, CLIENT, name, &data(20 + i, i as u8));
    }
}

#[test]
fn nested_names_are_stored_in_private_folders_and_read_back() {
    let (tmp, storage) = storage(1 << 20);
    let payload = data(40, 7);
    let meta = upload_all(&storage, CLIENT, "photos/2024/may/a.jpg", &payload);
    assert_eq!(meta.name, "photos/2024/may/a.jpg");
    let files = tmp.path().join("storage").join(CLIENT).join("files");
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for folder in ["photos", "photos/2024", "photos/2024/may"] {
        assert!(files.join(folder).is_dir(), "{folder}");
        assert_eq!(mode(&files.join(folder)), 0o700, "{folder}");
    }
    assert_eq!(
        fs::read(files.join("photos/2024/may/a.jpg")).unwrap(),
        payload
    );
    assert_eq!(mode(&files.join("photos/2024/may/a.jpg")), 0o600);
    let stored = storage
        .open(CLIENT, "photos/2024/may/a.jpg", CHUNK)
        .unwrap();
    let mut buf = vec![0; payload.len()];
    stored.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, payload);
    assert_eq!(storage.usage(CLIENT).unwrap(), 40);
}

#[test]
fn a_file_cannot_be_a_folder_nor_a_folder_a_file() {
    let (_tmp, storage) = storage(1 << 20);
    commit_tree(&storage, &["a", "x/y"]);
    for (name, reason) in [
        ("a/b", "folder \"a\" is a file"),
        ("a/b/c", "folder \"a\" is a file"),
        ("x", "is a folder"),
    ] {
        let error = storage
            .begin_upload(CLIENT, name, 5, CHUNK, false)
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::INVALID_NAME, "{name}: {error}");
        assert!(error.client_text().contains(reason), "{name}: {error}");
    }
    // A path through a file is no file, for reads and deletes too.
    assert!(matches!(
        storage.open(CLIENT, "a/b", CHUNK),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        storage.delete(CLIENT, "a/b"),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        storage.delete(CLIENT, "x"),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn the_commit_checks_the_tree_again() {
    let (_tmp, storage) = storage(1 << 20);
    let payload = data(5, 1);
    // Begun while `p` did not exist; `p` is committed as a file meanwhile.
    let mut upload = storage
        .begin_upload(CLIENT, "p/q", payload.len() as u64, CHUNK, false)
        .unwrap();
    store(upload.as_mut(), &payload, 0..1);
    upload_all(&storage, CLIENT, "p", &data(3, 2));
    let error = upload
        .commit(&FileDigest::of(&payload, CHUNK), Precondition::None)
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::INVALID_NAME, "{error}");
    // The partial stays for a retry; the file `p` is untouched.
    assert!(!upload.is_committed());
    assert_eq!(storage.open(CLIENT, "p", CHUNK).unwrap().meta().size, 3);
}

#[test]
fn deleting_the_last_file_of_a_folder_removes_the_folder() {
    let (tmp, storage) = storage(1 << 20);
    commit_tree(&storage, &["d/e/f/one", "d/e/two", "top"]);
    let files = tmp.path().join("storage").join(CLIENT).join("files");
    storage.delete(CLIENT, "d/e/f/one").unwrap();
    assert!(!files.join("d/e/f").exists());
    assert!(files.join("d/e").is_dir());
    storage.delete(CLIENT, "d/e/two").unwrap();
    assert!(!files.join("d").exists());
    storage.delete(CLIENT, "top").unwrap();
    assert!(files.is_dir(), "files/ itself stays");
    assert_eq!(storage.usage(CLIENT).unwrap(), 0);
    // The folder may be a file now.
    upload_all(&storage, CLIENT, "d", &data(4, 1));
}

#[test]
fn tree_listings_show_one_level_with_folders_or_every_file() {
    let (_tmp, storage) = storage(1 << 20);
    commit_tree(
        &storage,
        &[
            "a.txt", "b/1", "b/2", "b/c/3", "b0", "b-x/4", "c/d/e/5", "z",
        ],
    );
    let list = |prefix: &str, after: &str, limit: usize, recursive: bool| {
        tree_names(
            &storage
                .list_tree(CLIENT, prefix, after, limit, recursive, CHUNK)
                .unwrap(),
        )
    };
    assert_eq!(
        list("", "", 100, false),
        ["a.txt", "b-x/", "b/", "b0", "c/", "z"]
    );
    assert_eq!(list("b/", "", 100, false), ["b/1", "b/2", "b/c/"]);
    assert_eq!(list("b/", "", 100, true), ["b/1", "b/2", "b/c/3"]);
    assert_eq!(list("c/", "", 100, false), ["c/d/"]);
    assert_eq!(
        list("", "", 100, true),
        ["a.txt", "b-x/4", "b/1", "b/2", "b/c/3", "b0", "c/d/e/5", "z"]
    );
    // Pages: a folder is one item, and a cursor on a folder skips it whole.
    assert_eq!(list("", "", 2, false), ["a.txt", "b-x/"]);
    assert_eq!(list("", "b-x/", 2, false), ["b/", "b0"]);
    assert_eq!(list("", "b0", 2, false), ["c/", "z"]);
    assert_eq!(list("", "z", 2, false), Vec::<String>::new());
    assert_eq!(list("b/", "b/1", 1, true), ["b/2"]);
    // Files carry their metadata.
    let items = storage
        .list_tree(CLIENT, "b/", "", 1, false, CHUNK)
        .unwrap();
    let ListItem::File(meta) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!((meta.name.as_str(), meta.size), ("b/1", 21));
    // `list` by prefix sees nested names as full paths.
    let names: Vec<String> = storage
        .list(CLIENT, "b/", "", 100, CHUNK)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["b/1", "b/2", "b/c/3"]);
}

#[test]
fn a_reopened_store_counts_and_lists_nested_files() {
    let (_tmp, storage) = storage_with(|config| config.limits.max_files = 3);
    commit_tree(&storage, &["x/1", "x/y/2", "3"]);
    let again = LocalStore::open(storage.config.clone()).unwrap();
    assert_eq!(again.usage(CLIENT).unwrap(), 20 + 21 + 22);
    // The walk that counted them built the index.
    assert!(again.index.is_indexed(CLIENT));
    let items = again.list_tree(CLIENT, "", "", 10, true, CHUNK).unwrap();
    assert_eq!(tree_names(&items), ["3", "x/1", "x/y/2"]);
    let error = again
        .begin_upload(CLIENT, "x/y/z/4", 1, CHUNK, false)
        .unwrap_err();
    assert!(
        matches!(error, StorageError::FileLimit { files: 3, .. }),
        "{error}"
    );
}

#[test]
fn an_identical_file_sent_again_records_its_new_attributes() {
    let (_tmp, storage) = storage(1 << 20);
    let payload = data(30, 5);
    let send = |attrs: FileAttrs| {
        let mut upload = storage
            .begin_upload(CLIENT, "dir/f", payload.len() as u64, CHUNK, false)
            .unwrap();
        upload.set_attributes(attrs);
        if !upload.is_already_stored() {
            let chunks = upload.layout().chunks();
            store(upload.as_mut(), &payload, 0..chunks);
        }
        let stored = upload.is_already_stored();
        let meta = upload
            .commit(&FileDigest::of(&payload, CHUNK), Precondition::None)
            .unwrap();
        (stored, meta)
    };
    let (stored, first) = send(FileAttrs {
        modified: Some(1_000),
        mode: Some(0o644),
    });
    assert!(!stored);
    assert_eq!((first.modified, first.mode), (1_000, Some(0o644)));
    let (stored, second) = send(FileAttrs {
        modified: Some(2_000),
        mode: Some(0o600),
    });
    assert!(stored, "no data sent the second time");
    assert_eq!((second.modified, second.mode), (2_000, Some(0o600)));
    assert_eq!(second.inode, first.inode);
    // Recorded, not only answered.
    let again = LocalStore::open(storage.config.clone()).unwrap();
    let meta = again.open(CLIENT, "dir/f", CHUNK).unwrap().meta().clone();
    assert_eq!((meta.modified, meta.mode), (2_000, Some(0o600)));
    // No attributes given: the recorded ones stay.
    let (_, third) = send(FileAttrs::default());
    assert_eq!((third.modified, third.mode), (2_000, Some(0o600)));
}

#[test]
fn partial_uploads_of_nested_names_resume_and_expire() {
    let (tmp, storage) = storage(10_000);
    let payload = data(40, 3);
    let mut upload = storage
        .begin_upload(CLIENT, "deep/er/name", 40, CHUNK, false)
        .unwrap();
    store(upload.as_mut(), &payload, [0]);
    drop(upload);
    // No folder is made before the commit: a partial lives in `partial/` by its key.
    let files = tmp.path().join("storage").join(CLIENT).join("files");
    assert!(!files.join("deep").exists());
    let resumed = storage
        .begin_upload(CLIENT, "deep/er/name", 40, CHUNK, false)
        .unwrap();
    assert_eq!(resumed.held_chunks().count(), 1);
    drop(resumed);
    let later = SystemTime::now() + Duration::from_secs(3601);
    assert_eq!(storage.expire_partials(later).unwrap(), 1);
    assert_eq!(storage.usage(CLIENT).unwrap(), 0);
    // A batch's temporary file left by a crash expires too.
    let partial = storage.dirs(CLIENT).unwrap().partial;
    fs::write(partial.join(".tmpcrashed"), b"x").unwrap();
    storage.expire_partials(later).unwrap();
    assert!(!partial.join(".tmpcrashed").exists());
}
