//! The store `--store` names, opened with the server's limits: local files (`file://DIR`,
//! the default) or an S3 bucket with PostgreSQL (`s3://BUCKET/PREFIX` and `--metadata`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_certs::Index;

use super::{LocalStore, S3Config, S3Store, StorageConfig, StorageError, Store, StoreLimits};
use crate::config::{ServerOptions, StoreUrl};
use crate::pg::Database;

/// The opened store and the local directory the readiness probe writes to (the storage
/// directory, or the spool of an S3 store).
pub async fn open_store(
    options: &ServerOptions,
    database: Option<&Database>,
    certs: &Index,
    busy_wait: Duration,
) -> Result<(Arc<dyn Store>, PathBuf), StorageError> {
    let limits = StoreLimits {
        quota: options.quota,
        max_files: options.max_files,
        web_quota: options.web_quota,
        max_file_size: options.max_file_size,
        partial_expiry: Duration::from_secs(options.partial_expiry_secs),
        busy_wait,
    };
    let url = StoreUrl::parse(&options.store).map_err(|reason| StorageError::Remote {
        context: format!("--store {}", options.store),
        reason,
    })?;
    match (url, database) {
        (StoreUrl::S3 { bucket, prefix }, Some(database)) => {
            let config = S3Config {
                bucket,
                prefix,
                endpoint: options.s3_endpoint.clone(),
                region: options.s3_region.clone(),
                access_key_id: options.s3_access_key_id.clone(),
                secret_access_key: options.s3_secret_access_key.clone(),
                virtual_hosted: options.s3_virtual_hosted,
                part_size: options.s3_part_size,
                parts_in_flight: options.s3_parts_in_flight,
                spool: options.spool.clone(),
                limits,
            };
            let store = S3Store::open(config, database.clone()).await?;
            Ok((Arc::new(store), options.spool.clone()))
        }
        (StoreUrl::S3 { .. }, None) => Err(StorageError::Remote {
            context: format!("--store {}", options.store),
            reason: "an s3:// store needs --metadata postgres://…".into(),
        }),
        (StoreUrl::File(_), _) => {
            // The storage directory is the file:// store's directory (the options resolve both).
            let store = LocalStore::open(StorageConfig {
                root: options.storage.clone(),
                limits,
            })?;
            store.migrate_key_dirs(certs)?;
            Ok((Arc::new(store), options.storage.clone()))
        }
    }
}
