//! `put_batch`: many small files made durable together, each with its own outcome.

use super::*;
use crate::storage::{ListItem, PutItem};

const BIG_CHUNK: u32 = 4096;

fn item(name: &str, data: Vec<u8>) -> PutItem {
    PutItem {
        name: name.to_string(),
        digest: FileDigest::of(&data, BIG_CHUNK),
        data,
        chunk_size: BIG_CHUNK,
        attrs: FileAttrs::default(),
    }
}

fn partial_entries(storage: &LocalStore) -> usize {
    fs::read_dir(storage.dirs(CLIENT).unwrap().partial)
        .unwrap()
        .count()
}

#[test]
fn a_batch_of_200_files_commits_all_and_survives_a_reopen() {
    let (_tmp, storage) = storage_with(|config| config.limits.quota = 1 << 20);
    let items: Vec<PutItem> = (0..200)
        .map(|i| {
            let name = match i % 3 {
                0 => format!("top-{i:03}"),
                1 => format!("d{}/f-{i:03}", i % 7),
                _ => format!("d{}/e/g-{i:03}", i % 5),
            };
            let mut item = item(&name, data(i % 50, i as u8));
            item.attrs = FileAttrs {
                modified: Some(1_700_000_000 + i as u64),
                mode: Some(0o640),
            };
            item
        })
        .collect();
    let expected = items.clone();
    let results = storage.put_batch(CLIENT, items);
    assert_eq!(results.len(), 200);
    for (result, item) in results.iter().zip(&expected) {
        let meta = result.as_ref().unwrap();
        assert_eq!(meta.name, item.name);
        assert_eq!(meta.digest_bytes(), item.digest);
        assert_eq!(meta.modified, item.attrs.modified.unwrap());
    }
    assert_eq!(partial_entries(&storage), 0, "no temporary file left");
    let total: u64 = expected.iter().map(|item| item.data.len() as u64).sum();
    assert_eq!(storage.usage(CLIENT).unwrap(), total);
    // A new store over the same directory (a restart) finds each file with its metadata.
    let again = LocalStore::open(storage.config.clone()).unwrap();
    assert_eq!(again.usage(CLIENT).unwrap(), total);
    for item in &expected {
        let stored = again.open(CLIENT, &item.name, BIG_CHUNK).unwrap();
        let meta = stored.meta().clone();
        assert_eq!(meta.digest_bytes(), item.digest, "{}", item.name);
        assert_eq!(meta.mode, Some(0o640));
        let mut buf = vec![0; item.data.len()];
        stored.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, item.data);
    }
    let listed = again
        .list_tree(CLIENT, "", "", 1000, true, BIG_CHUNK)
        .unwrap();
    assert_eq!(listed.len(), 200);
    let top = again
        .list_tree(CLIENT, "", "", 1000, false, BIG_CHUNK)
        .unwrap();
    let folders = top
        .iter()
        .filter(|item| matches!(item, ListItem::Folder(_)))
        .count();
    assert_eq!(folders, 7, "d0/ to d6/");
}

#[test]
fn a_quota_refusal_in_the_middle_leaves_the_others_committed() {
    let (_tmp, storage) = storage_with(|config| {
        config.limits.quota = 1200;
        config.limits.max_file_size = 4096;
    });
    let mut items: Vec<PutItem> = (0..50)
        .map(|i| item(&format!("small/{i:02}"), data(10, i)))
        .collect();
    items.insert(25, item("big", data(1000, 9)));
    let results = storage.put_batch(CLIENT, items);
    for (i, result) in results.iter().enumerate() {
        if i == 25 {
            let error = result.as_ref().unwrap_err();
            assert!(
                matches!(
                    error,
                    StorageError::QuotaExceeded {
                        used: 250,
                        requested: 1000,
                        ..
                    }
                ),
                "{error}"
            );
        } else {
            assert!(result.is_ok(), "{i}: {result:?}");
        }
    }
    assert_eq!(storage.usage(CLIENT).unwrap(), 500);
    assert!(matches!(
        storage.open(CLIENT, "big", BIG_CHUNK),
        Err(StorageError::NotFound)
    ));
    assert_eq!(partial_entries(&storage), 0);
}

#[test]
fn a_name_that_is_a_folder_fails_only_that_item() {
    let (_tmp, storage) = storage(1 << 20);
    upload_all(&storage, CLIENT, "dir/inside", &data(5, 1));
    let results = storage.put_batch(
        CLIENT,
        vec![
            item("one", data(3, 1)),
            item("dir", data(3, 2)),
            item("dir/inside/deeper", data(3, 3)),
            item("two", data(3, 4)),
            item("one", data(3, 5)),
        ],
    );
    assert!(results[0].is_ok());
    for i in [1, 2] {
        let error = results[i].as_ref().unwrap_err();
        assert_eq!(error.code(), ErrorCode::INVALID_NAME, "{error}");
    }
    assert!(results[3].is_ok());
    // The same name twice in one batch: the second is busy.
    assert!(matches!(results[4], Err(StorageError::Busy)));
    let names: Vec<String> = storage
        .list(CLIENT, "", "", 10, CHUNK)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["dir/inside", "one", "two"]);
    assert_eq!(partial_entries(&storage), 0);
}

#[test]
fn an_identical_file_is_not_written_again_but_gets_its_attributes() {
    let (_tmp, storage) = storage(1 << 20);
    let mut first = item("a/b", data(30, 1));
    first.attrs.modified = Some(100);
    let meta = storage
        .put_batch(CLIENT, vec![first.clone()])
        .remove(0)
        .unwrap();
    let mut again = first.clone();
    again.attrs.modified = Some(200);
    let second = storage.put_batch(CLIENT, vec![again]).remove(0).unwrap();
    assert_eq!(second.inode, meta.inode, "not rewritten");
    assert_eq!(second.modified, 200);
    let reopened = LocalStore::open(storage.config.clone()).unwrap();
    let stored = reopened.open(CLIENT, "a/b", BIG_CHUNK).unwrap();
    assert_eq!(stored.meta().modified, 200);
    assert_eq!(reopened.usage(CLIENT).unwrap(), 30);
}

#[test]
fn the_file_limit_holds_within_a_batch() {
    let (_tmp, storage) = storage_with(|config| config.limits.max_files = 3);
    upload_all(&storage, CLIENT, "kept", &data(5, 1));
    let items: Vec<PutItem> = (0..4).map(|i| item(&format!("n{i}"), data(4, i))).collect();
    let results = storage.put_batch(CLIENT, items);
    let refused: Vec<usize> = (0..4).filter(|i| results[*i].is_err()).collect();
    assert_eq!(refused, [2, 3]);
    assert!(matches!(
        results[2],
        Err(StorageError::FileLimit { files: 3, max: 3 })
    ));
    // A file replaced in a batch does not count twice.
    let results = storage.put_batch(CLIENT, vec![item("kept", data(6, 2))]);
    assert!(results[0].is_ok(), "{results:?}");
}
