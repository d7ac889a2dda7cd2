//! The S3 store's tables in PostgreSQL and the transactions that change them together: the
//! file index, usage (quota), partial uploads and their parts, and objects to delete later.
//!
//! Every change of usage happens in the transaction that causes it, after the usage row of
//! the identity (then the shared row of the web identities) is locked `FOR UPDATE`: that
//! order is the same everywhere, and it makes quota checks hold across instances.

use std::time::SystemTime;

use deadpool_postgres::GenericClient;
use ferry_core::{Digest, Layout};
use tokio_postgres::Row;

use super::plan::ancestors;
use crate::pg::db_err;
use crate::storage::local::WEB_IDENTITY_PREFIX;
use crate::storage::{FileMeta, Precondition, StorageError};

/// Tables and indexes (idempotent). Names are `COLLATE "C"`: listing order and cursors are
/// byte order, as the local store's.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS ferry_files (
    client text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    chunk_size integer NOT NULL,
    digest bytea NOT NULL,
    chunk_digests bytea NOT NULL,
    modified bigint NOT NULL,
    mode integer,
    object_key text NOT NULL,
    PRIMARY KEY (client, name)
);
CREATE TABLE IF NOT EXISTS ferry_usage (
    client text COLLATE "C" PRIMARY KEY,
    bytes bigint NOT NULL DEFAULT 0,
    files bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ferry_partials (
    client text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    chunk_size integer NOT NULL,
    object_key text NOT NULL,
    upload_id text,
    reserved bigint NOT NULL,
    touched timestamptz NOT NULL,
    PRIMARY KEY (client, name)
);
CREATE INDEX IF NOT EXISTS ferry_partials_touched ON ferry_partials (touched);
CREATE TABLE IF NOT EXISTS ferry_parts (
    client text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    part_number integer NOT NULL,
    content_id text NOT NULL,
    chunk_digests bytea NOT NULL,
    PRIMARY KEY (client, name, part_number),
    FOREIGN KEY (client, name) REFERENCES ferry_partials (client, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS ferry_garbage (
    object_key text PRIMARY KEY,
    upload_id text,
    delete_after timestamptz NOT NULL
);
"#;

/// The usage row shared by every `web-*` identity (client names start with a letter or a
/// digit, so it is no identity's).
const WEB_ROW: &str = "*web";

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Limits a reservation is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) quota: u64,
    pub(super) max_files: u64,
    pub(super) web_quota: u64,
}

/// A partial upload as recorded.
#[derive(Debug, Clone)]
pub(super) struct PartialRow {
    pub(super) layout: Layout,
    pub(super) object_key: String,
    pub(super) upload_id: Option<String>,
}

/// A part recorded after S3 acknowledged it.
#[derive(Debug, Clone)]
pub(super) struct PartRow {
    pub(super) number: u64,
    pub(super) content_id: String,
    pub(super) chunk_digests: Vec<Digest>,
}

/// A committed file's row.
#[derive(Debug, Clone)]
pub(super) struct FileRow {
    pub(super) meta: FileMeta,
    pub(super) object_key: String,
}

const FILE_COLUMNS: &str = "name, size, chunk_size, digest, modified, mode, object_key";

/// `FILE_COLUMNS` of a row.
fn file_row(row: &Row) -> Result<FileRow, StorageError> {
    let digest: Vec<u8> = row.get(3);
    let digest = Digest::try_from(digest.as_slice())
        .map_err(|_| StorageError::Inconsistent("a file digest is not 32 bytes".into()))?;
    let object_key: String = row.get(6);
    Ok(FileRow {
        meta: FileMeta {
            name: row.get(0),
            size: to_u64(row.get(1)),
            chunk_size: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
            digest: digest.to_string(),
            modified: to_u64(row.get(4)),
            mode: row
                .get::<_, Option<i32>>(5)
                .and_then(|m| u32::try_from(m).ok()),
            inode: version_number(&object_key),
        },
        object_key,
    })
}

/// What stands for the inode of a local file: a number of the object (one per version).
pub(super) fn version_number(object_key: &str) -> u64 {
    let hex = object_key.rsplit('/').next().unwrap_or_default();
    u64::from_str_radix(hex.get(..16).unwrap_or(hex), 16).unwrap_or(0)
}

/// Concatenated 32-byte chunk digests.
pub(super) fn digests_bytes<'a>(digests: impl IntoIterator<Item = &'a Digest>) -> Vec<u8> {
    digests
        .into_iter()
        .flat_map(|d| d.as_bytes().iter().copied())
        .collect()
}

fn digests_of(bytes: &[u8]) -> Vec<Digest> {
    bytes
        .chunks_exact(32)
        .filter_map(|d| Digest::try_from(d).ok())
        .collect()
}

/// The committed file of a name.
pub(super) async fn file(
    db: &impl GenericClient,
    client: &str,
    name: &str,
) -> Result<Option<FileRow>, StorageError> {
    let sql = format!("SELECT {FILE_COLUMNS} FROM ferry_files WHERE client = $1 AND name = $2");
    let row = db
        .query_opt(&sql, &[&client, &name])
        .await
        .map_err(db_err(format!("reading the index entry of {name:?}")))?;
    row.as_ref().map(file_row).transpose()
}

/// The chunk digests of a committed file of this layout, if there is one.
pub(super) async fn committed_chunks(
    db: &impl GenericClient,
    client: &str,
    name: &str,
    layout: Layout,
) -> Result<Option<Vec<Digest>>, StorageError> {
    let row = db
        .query_opt(
            "SELECT chunk_digests FROM ferry_files
             WHERE client = $1 AND name = $2 AND size = $3 AND chunk_size = $4",
            &[
                &client,
                &name,
                &to_i64(layout.size),
                &i32::try_from(layout.chunk_size).unwrap_or(i32::MAX),
            ],
        )
        .await
        .map_err(db_err(format!("reading the index entry of {name:?}")))?;
    Ok(row
        .map(|row| digests_of(row.get::<_, &[u8]>(0)))
        .filter(|chunks| chunks.len() as u64 == layout.chunks()))
}

/// A page of committed files: names starting with `prefix`, after `start_after`.
pub(super) async fn list(
    db: &impl GenericClient,
    client: &str,
    prefix: &str,
    start_after: &str,
    limit: usize,
) -> Result<Vec<FileMeta>, StorageError> {
    // The upper bound lets the scan of the primary key stop at the end of the prefix.
    let end = format!("{prefix}{}", char::MAX);
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM ferry_files
         WHERE client = $1 AND name > $2 AND name >= $3 AND ($3 = '' OR name < $4)
           AND starts_with(name, $3)
         ORDER BY name LIMIT $5"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = db
        .query(&sql, &[&client, &start_after, &prefix, &end, &limit])
        .await
        .map_err(db_err(format!("listing the files of {client}")))?;
    rows.iter()
        .map(|row| file_row(row).map(|file| file.meta))
        .collect()
}

/// Refuses a name whose folder is a file, or that is a folder.
pub(super) async fn check_conflict(
    db: &impl GenericClient,
    client: &str,
    name: &str,
) -> Result<(), StorageError> {
    let folders = ancestors(name);
    let below = format!("{name}/");
    let row = db
        .query_opt(
            "SELECT name FROM ferry_files
             WHERE client = $1 AND (name = ANY($2) OR starts_with(name, $3)) LIMIT 1",
            &[&client, &folders, &below],
        )
        .await
        .map_err(db_err(format!("checking the folders of {name:?}")))?;
    let Some(row) = row else { return Ok(()) };
    let found: String = row.get(0);
    let reason = if found.starts_with(&below) {
        "it is a folder".to_string()
    } else {
        format!("its folder {found:?} is a file")
    };
    Err(StorageError::NameConflict {
        name: name.to_string(),
        reason,
    })
}

/// Locks the usage row of `client` (creating it) and returns (bytes, files).
async fn lock_usage(db: &impl GenericClient, client: &str) -> Result<(u64, u64), StorageError> {
    db.execute(
        "INSERT INTO ferry_usage (client) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&client],
    )
    .await
    .map_err(db_err(format!("creating the usage of {client}")))?;
    let row = db
        .query_one(
            "SELECT bytes, files FROM ferry_usage WHERE client = $1 FOR UPDATE",
            &[&client],
        )
        .await
        .map_err(db_err(format!("reading the usage of {client}")))?;
    Ok((to_u64(row.get(0)), to_u64(row.get(1))))
}

/// Locks what a change of `client`'s usage updates, in the one order used everywhere.
/// Returns the identity's (bytes, files) and, for a web identity, the web page's bytes.
async fn lock_usages(
    db: &impl GenericClient,
    client: &str,
) -> Result<((u64, u64), Option<u64>), StorageError> {
    let own = lock_usage(db, client).await?;
    let web = if client.starts_with(WEB_IDENTITY_PREFIX) {
        Some(lock_usage(db, WEB_ROW).await?.0)
    } else {
        None
    };
    Ok((own, web))
}

/// Adds to the usage rows locked by [`lock_usages`].
async fn charge(
    db: &impl GenericClient,
    client: &str,
    bytes: i64,
    files: i64,
) -> Result<(), StorageError> {
    let update = "UPDATE ferry_usage SET bytes = GREATEST(bytes + $2, 0),
                  files = GREATEST(files + $3, 0) WHERE client = $1";
    let context = || format!("charging the usage of {client}");
    db.execute(update, &[&client, &bytes, &files])
        .await
        .map_err(db_err(context()))?;
    if client.starts_with(WEB_IDENTITY_PREFIX) {
        db.execute(update, &[&WEB_ROW, &bytes, &0i64])
            .await
            .map_err(db_err(context()))?;
    }
    Ok(())
}

/// Checks the limits and records a new partial upload, its size reserved. The file it would
/// replace is not counted (as in the local store).
pub(super) async fn reserve(
    db: &mut deadpool_postgres::Object,
    client: &str,
    name: &str,
    partial: &PartialRow,
    limits: Limits,
    now: SystemTime,
) -> Result<(), StorageError> {
    let context = || format!("recording the upload of {name:?}");
    let tx = db.transaction().await.map_err(db_err(context()))?;
    let db = &tx;
    let ((bytes, files), web) = lock_usages(db, client).await?;
    let replaced = file(db, client, name).await?.map(|f| f.meta.size);
    let size = partial.layout.size;
    let used_bytes = bytes.saturating_sub(replaced.unwrap_or(0));
    let used_files = files.saturating_sub(u64::from(replaced.is_some()));
    if used_bytes.saturating_add(size) > limits.quota {
        return Err(StorageError::QuotaExceeded {
            used: used_bytes,
            requested: size,
            quota: limits.quota,
        });
    }
    if used_files >= limits.max_files {
        return Err(StorageError::FileLimit {
            files: used_files,
            max: limits.max_files,
        });
    }
    if let Some(web) = web {
        let used = web.saturating_sub(replaced.unwrap_or(0));
        if used.saturating_add(size) > limits.web_quota {
            return Err(StorageError::WebQuotaExceeded {
                used,
                requested: size,
                quota: limits.web_quota,
            });
        }
    }
    charge(db, client, to_i64(size), 1).await?;
    db.execute(
        "INSERT INTO ferry_partials
         (client, name, size, chunk_size, object_key, upload_id, reserved, touched)
         VALUES ($1, $2, $3, $4, $5, $6, $3, $7)",
        &[
            &client,
            &name,
            &to_i64(size),
            &i32::try_from(partial.layout.chunk_size).unwrap_or(i32::MAX),
            &partial.object_key,
            &partial.upload_id,
            &now,
        ],
    )
    .await
    .map_err(db_err(context()))?;
    tx.commit().await.map_err(db_err(context()))
}

/// The partial upload of a name and its recorded parts.
pub(super) async fn partial(
    db: &impl GenericClient,
    client: &str,
    name: &str,
) -> Result<Option<(PartialRow, Vec<PartRow>)>, StorageError> {
    let context = || format!("reading the partial upload of {name:?}");
    let Some(row) = db
        .query_opt(
            "SELECT size, chunk_size, object_key, upload_id FROM ferry_partials
             WHERE client = $1 AND name = $2",
            &[&client, &name],
        )
        .await
        .map_err(db_err(context()))?
    else {
        return Ok(None);
    };
    let partial = PartialRow {
        layout: Layout {
            size: to_u64(row.get(0)),
            chunk_size: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
        },
        object_key: row.get(2),
        upload_id: row.get(3),
    };
    let parts = db
        .query(
            "SELECT part_number, content_id, chunk_digests FROM ferry_parts
             WHERE client = $1 AND name = $2 ORDER BY part_number",
            &[&client, &name],
        )
        .await
        .map_err(db_err(context()))?
        .iter()
        .map(|row| PartRow {
            number: u64::try_from(row.get::<_, i32>(0)).unwrap_or(u64::MAX),
            content_id: row.get(1),
            chunk_digests: digests_of(row.get::<_, &[u8]>(2)),
        })
        .collect();
    Ok(Some((partial, parts)))
}

/// Sets the multipart upload id of a partial upload.
pub(super) async fn set_upload_id(
    db: &impl GenericClient,
    client: &str,
    name: &str,
    object_key: &str,
    upload_id: &str,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE ferry_partials SET upload_id = $4
         WHERE client = $1 AND name = $2 AND object_key = $3",
        &[&client, &name, &object_key, &upload_id],
    )
    .await
    .map_err(db_err(format!("recording the upload of {name:?}")))?;
    Ok(())
}

/// The committed row of `name`, locked until the end of the transaction `tx`.
async fn file_for_update(
    tx: &tokio_postgres::Transaction<'_>,
    client: &str,
    name: &str,
) -> Result<Option<FileRow>, StorageError> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM ferry_files WHERE client = $1 AND name = $2 FOR UPDATE"
    );
    tx.query_opt(&sql, &[&client, &name])
        .await
        .map_err(db_err(format!("committing {name:?}")))?
        .as_ref()
        .map(file_row)
        .transpose()
}

/// Records a part S3 acknowledged and touches the partial upload.
pub(super) async fn record_part(
    db: &mut deadpool_postgres::Object,
    client: &str,
    name: &str,
    object_key: &str,
    part: &PartRow,
    now: SystemTime,
) -> Result<(), StorageError> {
    let context = || format!("recording part {} of {name:?}", part.number);
    let tx = db.transaction().await.map_err(db_err(context()))?;
    let touched = tx
        .execute(
            "UPDATE ferry_partials SET touched = $4
             WHERE client = $1 AND name = $2 AND object_key = $3",
            &[&client, &name, &object_key, &now],
        )
        .await
        .map_err(db_err(context()))?;
    if touched == 0 {
        return Err(StorageError::Inconsistent(format!(
            "the partial upload of {name:?} is gone"
        )));
    }
    let number = i32::try_from(part.number).unwrap_or(i32::MAX);
    tx.execute(
        "INSERT INTO ferry_parts (client, name, part_number, content_id, chunk_digests)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (client, name, part_number)
         DO UPDATE SET content_id = $4, chunk_digests = $5",
        &[
            &client,
            &name,
            &number,
            &part.content_id,
            &digests_bytes(&part.chunk_digests),
        ],
    )
    .await
    .map_err(db_err(context()))?;
    tx.commit().await.map_err(db_err(context()))
}

/// Removes a partial upload (the one of `object_key`, or any if `None`), releases its
/// reservation and queues its object to be aborted and deleted after `delete_after`.
/// Returns whether there was one.
pub(super) async fn drop_partial(
    db: &mut deadpool_postgres::Object,
    client: &str,
    name: &str,
    object_key: Option<&str>,
    delete_after: SystemTime,
) -> Result<bool, StorageError> {
    let context = || format!("dropping the partial upload of {name:?}");
    let tx = db.transaction().await.map_err(db_err(context()))?;
    lock_usages(&tx, client).await?;
    let row = tx
        .query_opt(
            "DELETE FROM ferry_partials
             WHERE client = $1 AND name = $2 AND ($3::text IS NULL OR object_key = $3)
             RETURNING reserved, object_key, upload_id",
            &[&client, &name, &object_key],
        )
        .await
        .map_err(db_err(context()))?;
    let Some(row) = row else {
        return Ok(false);
    };
    let reserved: i64 = row.get(0);
    let (key, upload_id): (String, Option<String>) = (row.get(1), row.get(2));
    charge(&tx, client, -reserved, -1).await?;
    queue_garbage(&tx, &key, upload_id.as_deref(), delete_after).await?;
    tx.commit().await.map_err(db_err(context()))?;
    Ok(true)
}

/// Queues an object (and its multipart upload) for deletion after `delete_after`.
pub(super) async fn queue_garbage(
    db: &impl GenericClient,
    object_key: &str,
    upload_id: Option<&str>,
    delete_after: SystemTime,
) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO ferry_garbage (object_key, upload_id, delete_after) VALUES ($1, $2, $3)
         ON CONFLICT (object_key) DO UPDATE SET
           upload_id = COALESCE(EXCLUDED.upload_id, ferry_garbage.upload_id),
           delete_after = LEAST(EXCLUDED.delete_after, ferry_garbage.delete_after)",
        &[&object_key, &upload_id, &delete_after],
    )
    .await
    .map_err(db_err(format!("queueing {object_key} for deletion")))?;
    Ok(())
}

/// What a commit publishes.
#[derive(Debug)]
pub(super) struct Publish<'a> {
    pub(super) client: &'a str,
    pub(super) meta: &'a FileMeta,
    pub(super) digest: &'a Digest,
    pub(super) chunk_digests: Vec<u8>,
    pub(super) object_key: &'a str,
    pub(super) condition: Precondition,
    /// When the replaced object may be deleted (downloads of it may still run).
    pub(super) old_delete_after: SystemTime,
}

/// Whether `condition` holds for the file a name holds.
fn holds(condition: Precondition, current: Option<&FileRow>) -> bool {
    match condition {
        Precondition::None => true,
        Precondition::Absent => current.is_none(),
        Precondition::Digest(expected) => {
            current.is_some_and(|file| file.meta.digest_bytes() == expected)
        }
    }
}

/// The commit of an uploaded object, in one transaction: checks the precondition and the
/// folders, points the name at the new object, removes the partial upload, moves its
/// reservation to the committed file (releasing a replaced file's) and queues the replaced
/// object for deletion.
pub(super) async fn publish(
    db: &mut deadpool_postgres::Object,
    publish: Publish<'_>,
) -> Result<(), StorageError> {
    let Publish { client, meta, .. } = publish;
    let name = meta.name.as_str();
    let context = || format!("committing {name:?}");
    let tx = db.transaction().await.map_err(db_err(context()))?;
    lock_usages(&tx, client).await?;
    let current = file_for_update(&tx, client, name).await?;
    if !holds(publish.condition, current.as_ref()) {
        return Err(StorageError::PreconditionFailed);
    }
    check_conflict(&tx, client, name).await?;
    let reserved: Option<i64> = tx
        .query_opt(
            "DELETE FROM ferry_partials WHERE client = $1 AND name = $2 AND object_key = $3
             RETURNING reserved",
            &[&client, &name, &publish.object_key],
        )
        .await
        .map_err(db_err(context()))?
        .map(|row| row.get(0));
    let old_size = current.as_ref().map_or(0, |file| to_i64(file.meta.size));
    let bytes = to_i64(meta.size) - reserved.unwrap_or(0) - old_size;
    let files = i64::from(reserved.is_none()) - i64::from(current.is_some());
    charge(&tx, client, bytes, files).await?;
    tx.execute(
        "INSERT INTO ferry_files
         (client, name, size, chunk_size, digest, chunk_digests, modified, mode, object_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (client, name) DO UPDATE SET size = $3, chunk_size = $4, digest = $5,
           chunk_digests = $6, modified = $7, mode = $8, object_key = $9",
        &[
            &client,
            &name,
            &to_i64(meta.size),
            &i32::try_from(meta.chunk_size).unwrap_or(i32::MAX),
            &publish.digest.as_bytes().as_slice(),
            &publish.chunk_digests,
            &to_i64(meta.modified),
            &meta.mode.and_then(|m| i32::try_from(m).ok()),
            &publish.object_key,
        ],
    )
    .await
    .map_err(db_err(context()))?;
    if let Some(old) = current.filter(|old| old.object_key != publish.object_key) {
        queue_garbage(&tx, &old.object_key, None, publish.old_delete_after).await?;
    }
    tx.commit().await.map_err(db_err(context()))
}

/// Records new attributes of a file already stored with identical content, if `condition`
/// holds. Returns the file's metadata.
pub(super) async fn touch_file(
    db: &mut deadpool_postgres::Object,
    client: &str,
    name: &str,
    modified: Option<u64>,
    mode: Option<u32>,
    condition: Precondition,
) -> Result<FileMeta, StorageError> {
    let context = || format!("committing {name:?}");
    let tx = db.transaction().await.map_err(db_err(context()))?;
    let current = file_for_update(&tx, client, name).await?;
    if !holds(condition, current.as_ref()) {
        return Err(StorageError::PreconditionFailed);
    }
    let Some(mut file) = current else {
        return Err(StorageError::NotFound);
    };
    file.meta.modified = modified.unwrap_or(file.meta.modified);
    file.meta.mode = mode.or(file.meta.mode);
    tx.execute(
        "UPDATE ferry_files SET modified = $3, mode = $4 WHERE client = $1 AND name = $2",
        &[
            &client,
            &name,
            &to_i64(file.meta.modified),
            &file.meta.mode.and_then(|m| i32::try_from(m).ok()),
        ],
    )
    .await
    .map_err(db_err(context()))?;
    tx.commit().await.map_err(db_err(context()))?;
    Ok(file.meta)
}

/// Deletes a committed file: its usage released, its object queued for deletion.
pub(super) async fn delete(
    db: &mut deadpool_postgres::Object,
    client: &str,
    name: &str,
    delete_after: SystemTime,
) -> Result<(), StorageError> {
    let context = || format!("deleting {name:?}");
    let tx = db.transaction().await.map_err(db_err(context()))?;
    lock_usages(&tx, client).await?;
    let row = tx
        .query_opt(
            "DELETE FROM ferry_files WHERE client = $1 AND name = $2 RETURNING size, object_key",
            &[&client, &name],
        )
        .await
        .map_err(db_err(context()))?;
    let Some(row) = row else {
        return Err(StorageError::NotFound);
    };
    let (size, key): (i64, String) = (row.get(0), row.get(1));
    charge(&tx, client, -size, -1).await?;
    queue_garbage(&tx, &key, None, delete_after).await?;
    tx.commit().await.map_err(db_err(context()))
}

/// Bytes charged to an identity.
pub(super) async fn usage(db: &impl GenericClient, client: &str) -> Result<u64, StorageError> {
    let row = db
        .query_opt(
            "SELECT bytes FROM ferry_usage WHERE client = $1",
            &[&client],
        )
        .await
        .map_err(db_err(format!("reading the usage of {client}")))?;
    Ok(row.map_or(0, |row| to_u64(row.get(0))))
}

/// Partial uploads untouched since `before`: (client, name, object key).
pub(super) async fn stale_partials(
    db: &impl GenericClient,
    before: SystemTime,
) -> Result<Vec<(String, String, String)>, StorageError> {
    let rows = db
        .query(
            "SELECT client, name, object_key FROM ferry_partials WHERE touched < $1 LIMIT 1000",
            &[&before],
        )
        .await
        .map_err(db_err("listing abandoned partial uploads"))?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// Objects due for deletion at `now`: (object key, multipart upload id).
pub(super) async fn due_garbage(
    db: &impl GenericClient,
    now: SystemTime,
) -> Result<Vec<(String, Option<String>)>, StorageError> {
    let rows = db
        .query(
            "SELECT object_key, upload_id FROM ferry_garbage WHERE delete_after <= $1 LIMIT 1000",
            &[&now],
        )
        .await
        .map_err(db_err("listing objects to delete"))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Forgets an object once it is deleted.
pub(super) async fn forget_garbage(
    db: &impl GenericClient,
    object_key: &str,
) -> Result<(), StorageError> {
    db.execute(
        "DELETE FROM ferry_garbage WHERE object_key = $1",
        &[&object_key],
    )
    .await
    .map_err(db_err(format!("forgetting the deleted {object_key}")))?;
    Ok(())
}
