//! The S3 store (`--store s3://BUCKET/PREFIX --metadata postgres://…`): the bytes of every
//! file in an S3 bucket through `object_store`, everything else in PostgreSQL, so that
//! several instances serve the same bucket and database at once.
//!
//! ```text
//! BUCKET/PREFIX<client>/objects/<128-bit hex>   one object per committed version (or upload)
//! ferry_files     (client, name) → size, chunk size, digest, chunk digests, object key
//! ferry_usage     client → bytes and files charged (committed + reserved); "*web" for web-*
//! ferry_partials  (client, name) → layout, object key, multipart upload id, last touched
//! ferry_parts     (client, name, part) → S3 part id and the SHA-256 of each chunk in it
//! ferry_garbage   object key (+ upload id) → delete (abort) after
//! SPOOL/<hex>.<part>                           chunks of parts being filled, this instance only
//! ```
//!
//! **Uploads.** [`Store::begin_upload`] takes the name's advisory lock (see `locks`: one
//! upload per name across instances, released at once if an instance dies), then resumes
//! the recorded partial upload of the same layout (its recorded parts are held), or offers
//! every chunk of an identical committed file, or reserves the size in `ferry_usage` (one
//! transaction, quota checked under the row lock) and records a new partial, with a
//! multipart upload if the file is larger than one part. Data flows as `upload` describes:
//! spool file → part → S3 → `ferry_parts`. The commit completes the object, then one
//! transaction checks the precondition, points the name at the new object, moves the
//! reservation to the file and queues the replaced object for deletion: the file is
//! verified only once S3 holds the whole object and that transaction is durable.
//!
//! **Reads** go to the object the name pointed at when opened (see `file`); a replaced or
//! deleted object stays for a grace period so that running downloads finish.
//!
//! **Expiry** ([`Store::expire_partials`], on any instance): partial uploads untouched for
//! `partial_expiry` and not running are dropped (their multipart upload aborted), queued
//! objects are deleted, and stale spool files removed.
//!
//! Modules: `plan` (keys and part arithmetic), `locks` (advisory locks), `meta` (tables and
//! transactions), `upload`, `file`.

mod file;
mod locks;
mod meta;
mod plan;
mod upload;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::{FileAttrs, Layout};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use self::file::S3File;
use self::locks::NameLocks;
use self::meta::{Limits, PartialRow};
use self::plan::{name_lock_key, new_object_key, PartPlan};
use self::upload::{remove_stale_spool, S3Upload, UploadState, REPLACED_GRACE};
use super::error::{io_err, remote_err};
use super::{FileMeta, StorageError, Store, StoreLimits, StoredFile, Upload};
use crate::pg::Database;

/// How long the readiness probe waits for the object store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Parts' worth of bytes one instance holds in memory at once to send them (parts, and
/// whole files of one part or less).
const PART_BUFFERS: u64 = 4;
/// The unit the send budget is counted in.
const BUDGET_UNIT: u64 = 1 << 20;

/// Where the objects are and the limits, from the server's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Key prefix: empty, or ending in `/`.
    pub prefix: String,
    /// Endpoint URL (`http://…` allows plain HTTP); `None`: AWS, or `AWS_ENDPOINT`.
    pub endpoint: Option<String>,
    /// Region; `None`: `AWS_REGION` or the default.
    pub region: Option<String>,
    /// Access key id; `None`: from the environment.
    pub access_key_id: Option<String>,
    /// Secret key; `None`: from the environment.
    pub secret_access_key: Option<String>,
    /// Virtual-hosted-style requests (else path-style).
    pub virtual_hosted: bool,
    /// Upload part size (S3: 5 MiB to 5 GiB).
    pub part_size: u64,
    /// Parts of one upload on their way to S3 while the next is received (1: none; a cut
    /// then sends at most this many parts again).
    pub parts_in_flight: usize,
    /// Local directory where parts are assembled.
    pub spool: PathBuf,
    /// The limits (the quota counts committed files plus reserved uploads).
    pub limits: StoreLimits,
}

/// What uploads and open files share with the store.
#[derive(Debug)]
pub(crate) struct Shared {
    config: S3Config,
    s3: AmazonS3,
    db: Database,
    runtime: Handle,
    locks: Arc<NameLocks>,
    /// Bounds the bytes held in memory to be sent, in [`BUDGET_UNIT`]s.
    send_budget: Semaphore,
}

/// The send budget of an instance: [`PART_BUFFERS`] parts, in [`BUDGET_UNIT`]s.
fn send_budget_units(part_size: u64) -> usize {
    usize::try_from(PART_BUFFERS * part_size.div_ceil(BUDGET_UNIT)).unwrap_or(usize::MAX >> 4)
}

impl Shared {
    /// Waits (on the blocking pool) until `len` bytes may be held in memory to be sent: at
    /// most [`PART_BUFFERS`] parts' worth per instance, however many uploads run.
    fn send_permit(&self, len: u64) -> Result<tokio::sync::SemaphorePermit<'_>, StorageError> {
        let most = send_budget_units(self.config.part_size);
        let units = usize::try_from(len.div_ceil(BUDGET_UNIT))
            .unwrap_or(most)
            .clamp(1, most);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        self.runtime
            .block_on(self.send_budget.acquire_many(units))
            .map_err(|e| StorageError::Inconsistent(e.to_string()))
    }

    /// Runs a database operation with a pooled connection, from the blocking pool.
    fn block_on_db<T, F, Fut>(&self, operation: F) -> Result<T, StorageError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        self.runtime.block_on(async {
            let db = self.db.client().await?;
            operation(db).await
        })
    }
}

/// The S3 store (layout in the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct S3Store {
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The object store client of `config`: fields left `None` come from the `AWS_*`
/// environment.
fn s3_client(config: &S3Config) -> Result<AmazonS3, StorageError> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_virtual_hosted_style_request(config.virtual_hosted);
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &config.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    builder
        .build()
        .map_err(remote_err(format!("configuring s3://{}", config.bucket)))
}

impl S3Store {
    /// Opens the store: the S3 client, the tables (created if missing), the spool directory
    /// and the lock connection. Must run inside the tokio runtime that later calls block on.
    pub async fn open(config: S3Config, db: Database) -> Result<S3Store, StorageError> {
        let s3 = s3_client(&config)?;
        db.migrate("object store", meta::SCHEMA).await?;
        let spool = &config.spool;
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(spool)
            .map_err(io_err(format!("creating {}", spool.display())))?;
        let runtime = Handle::current();
        let locks = Arc::new(NameLocks::new(db.clone(), runtime.clone()));
        let send_budget = Semaphore::new(send_budget_units(config.part_size));
        Ok(S3Store {
            shared: Arc::new(Shared {
                config,
                s3,
                db,
                runtime,
                locks,
                send_budget,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.shared.config
    }

    /// Checks that the database answers and the bucket can be reached (a HEAD of a key that
    /// need not exist). Blocks: call it off the async threads.
    pub fn probe_remote(&self) -> Result<String, StorageError> {
        let shared = &self.shared;
        shared.block_on_db(|db| async move {
            db.execute("SELECT 1", &[])
                .await
                .map_err(crate::pg::db_err("probing the database"))
        })?;
        let probe = Path::from(format!("{}.ferry-probe", shared.config.prefix));
        let context = format!("probing s3://{}", shared.config.bucket);
        // Without the client's retries, which would hold a readiness check for minutes.
        let head = async { tokio::time::timeout(PROBE_TIMEOUT, shared.s3.head(&probe)).await };
        match shared.runtime.block_on(head) {
            Ok(Ok(_) | Err(object_store::Error::NotFound { .. })) => Ok(format!(
                "database and s3://{}/{} reachable",
                shared.config.bucket, shared.config.prefix
            )),
            Ok(Err(e)) => Err(remote_err(context)(e)),
            Err(_) => Err(StorageError::Remote {
                context,
                reason: format!("no answer within {PROBE_TIMEOUT:?}"),
            }),
        }
    }

    fn limits(&self) -> Limits {
        let config = &self.shared.config;
        Limits {
            quota: config.limits.quota,
            max_files: config.limits.max_files,
            web_quota: config.limits.web_quota,
        }
    }

    fn drop_partial(&self, client: &str, name: &str) -> Result<(), StorageError> {
        self.shared.block_on_db(|mut db| async move {
            meta::drop_partial(&mut db, client, name, None, SystemTime::now()).await
        })?;
        Ok(())
    }

    /// A new partial upload: reserved, then its multipart upload created if it needs one.
    fn new_partial(
        &self,
        client: &str,
        name: &str,
        plan: PartPlan,
    ) -> Result<PartialRow, StorageError> {
        let shared = &self.shared;
        let mut partial = PartialRow {
            layout: plan.layout,
            object_key: new_object_key(&shared.config.prefix, client),
            upload_id: None,
        };
        let limits = self.limits();
        let row = &partial;
        shared.block_on_db(|mut db| async move {
            meta::reserve(&mut db, client, name, row, limits, SystemTime::now()).await
        })?;
        if plan.is_multipart() {
            match self.create_multipart(client, name, &partial.object_key) {
                Ok(id) => partial.upload_id = Some(id),
                Err(e) => {
                    self.drop_partial(client, name)?;
                    return Err(e);
                }
            }
        }
        Ok(partial)
    }

    fn create_multipart(
        &self,
        client: &str,
        name: &str,
        object_key: &str,
    ) -> Result<String, StorageError> {
        let shared = &self.shared;
        let path = Path::from(object_key);
        let id = shared
            .runtime
            .block_on(shared.s3.create_multipart(&path))
            .map_err(remote_err(format!("starting the upload of {path}")))?;
        let upload_id = id.as_str();
        shared.block_on_db(|db| async move {
            meta::set_upload_id(&db, client, name, object_key, upload_id).await
        })?;
        Ok(id)
    }

    /// Deletes the queued objects that are due, aborting their multipart uploads.
    fn collect_garbage(&self, now: SystemTime) -> Result<(), StorageError> {
        let shared = &self.shared;
        let due = shared.block_on_db(|db| async move { meta::due_garbage(&db, now).await })?;
        for (key, upload_id) in due {
            let path = Path::from(key.as_str());
            let removed = shared.runtime.block_on(async {
                if let Some(id) = &upload_id {
                    match shared.s3.abort_multipart(&path, id).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => tracing::debug!("aborting the upload of {path}: {e}"),
                    }
                }
                match shared.s3.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            });
            match removed {
                Ok(()) => {
                    let key = key.as_str();
                    shared.block_on_db(|db| async move { meta::forget_garbage(&db, key).await })?
                }
                Err(e) => tracing::warn!("deleting {path}: {e}"),
            }
        }
        Ok(())
    }
}

impl Store for S3Store {
    fn begin_upload(
        &self,
        client: &str,
        name: &str,
        size: u64,
        chunk_size: u32,
        fresh: bool,
    ) -> Result<Box<dyn Upload>, StorageError> {
        let shared = &self.shared;
        shared.config.limits.check_size(size)?;
        if let Err(e) = ferry_certs::validate_client_name(client) {
            return Err(StorageError::Inconsistent(format!("identity: {e}")));
        }
        // Early, before any data comes; the commit checks again in its transaction.
        shared.block_on_db(|db| async move { meta::check_conflict(&db, client, name).await })?;
        let name_lock = shared
            .locks
            .acquire(name_lock_key(client, name), shared.config.limits.busy_wait)?
            .ok_or(StorageError::Busy)?;
        let layout = Layout { size, chunk_size };
        let plan = PartPlan::new(layout, shared.config.part_size);
        let recorded = if fresh {
            None
        } else {
            shared.block_on_db(|db| async move { meta::partial(&db, client, name).await })?
        };
        let mut chunks = BTreeMap::new();
        let mut sent = BTreeMap::new();
        let mut state = UploadState::Partial;
        let partial = match recorded {
            Some((partial, parts)) if partial.layout == layout => {
                for part in parts {
                    let range = plan.chunks_of(part.number);
                    if range.clone().count() != part.chunk_digests.len() {
                        continue; // not a part of this plan (the part size changed): sent again
                    }
                    chunks.extend(range.zip(part.chunk_digests));
                    sent.insert(part.number, part.content_id);
                }
                let mut partial = partial;
                if plan.is_multipart() && partial.upload_id.is_none() {
                    // Reserved by an instance that stopped before it created the upload.
                    let id = self.create_multipart(client, name, &partial.object_key)?;
                    partial.upload_id = Some(id);
                }
                partial
            }
            recorded => {
                if fresh || recorded.is_some() {
                    self.drop_partial(client, name)?;
                }
                let identical = if fresh {
                    None
                } else {
                    shared.block_on_db(|db| async move {
                        meta::committed_chunks(&db, client, name, layout).await
                    })?
                };
                match identical {
                    Some(digests) => {
                        chunks.extend((0..).zip(digests));
                        state = UploadState::AlreadyStored;
                        PartialRow {
                            layout,
                            object_key: String::new(),
                            upload_id: None,
                        }
                    }
                    None => self.new_partial(client, name, plan)?,
                }
            }
        };
        Ok(Box::new(S3Upload {
            shared: shared.clone(),
            client: client.to_string(),
            name: name.to_string(),
            plan,
            object_key: partial.object_key,
            upload_id: partial.upload_id,
            state,
            chunks,
            parts: Mutex::new(upload::Parts {
                sent,
                ..Default::default()
            }),
            uploaded: false,
            attrs: FileAttrs::default(),
            _lock: name_lock,
        }))
    }

    fn open(
        &self,
        client: &str,
        name: &str,
        _chunk_size: u32,
    ) -> Result<Box<dyn StoredFile>, StorageError> {
        let shared = &self.shared;
        let row = shared.block_on_db(|db| async move { meta::file(&db, client, name).await })?;
        let row = row.ok_or(StorageError::NotFound)?;
        Ok(Box::new(S3File {
            shared: shared.clone(),
            meta: row.meta,
            path: Path::from(row.object_key.as_str()),
            buffer: None,
        }))
    }

    fn list(
        &self,
        client: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
        _chunk_size: u32,
    ) -> Result<Vec<FileMeta>, StorageError> {
        self.shared.block_on_db(|db| async move {
            meta::list(&db, client, prefix, start_after, limit).await
        })
    }

    fn delete(&self, client: &str, name: &str) -> Result<(), StorageError> {
        let after = SystemTime::now() + REPLACED_GRACE;
        self.shared
            .block_on_db(|mut db| async move { meta::delete(&mut db, client, name, after).await })
    }

    fn usage(&self, client: &str) -> Result<u64, StorageError> {
        self.shared
            .block_on_db(|db| async move { meta::usage(&db, client).await })
    }

    fn partial_expiry(&self) -> Duration {
        self.shared.config.limits.partial_expiry
    }

    fn probe(&self) -> Result<Option<String>, StorageError> {
        self.probe_remote().map(Some)
    }

    fn expire_partials(&self, now: SystemTime) -> Result<usize, StorageError> {
        let shared = &self.shared;
        let before = now
            .checked_sub(shared.config.limits.partial_expiry)
            .unwrap_or(UNIX_EPOCH);
        let stale =
            shared.block_on_db(|db| async move { meta::stale_partials(&db, before).await })?;
        let mut removed = 0;
        for (client, name, key) in stale {
            let Some(_running) = shared.locks.try_acquire(name_lock_key(&client, &name))? else {
                continue; // an upload is running, on some instance
            };
            let (client, name, key) = (client.as_str(), name.as_str(), key.as_str());
            let dropped = shared.block_on_db(|mut db| async move {
                meta::drop_partial(&mut db, client, name, Some(key), now).await
            })?;
            if dropped {
                tracing::info!("removed an abandoned partial upload of {client} ({name:?})");
                removed += 1;
            }
        }
        self.collect_garbage(now)?;
        let spool = &shared.config.spool;
        remove_stale_spool(spool, before)
            .map_err(io_err(format!("cleaning {}", spool.display())))?;
        Ok(removed)
    }
}
