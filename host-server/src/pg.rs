//! The PostgreSQL database that several `ferry-server` instances share (`--metadata
//! postgres://…`): one pool of connections per instance, and each part of the server that
//! keeps state there (the object store's index, the CRL, …) creates its own tables through
//! [`Database::migrate`].
//!
//! The storage seam is synchronous and runs on tokio's blocking pool, so its callers wait
//! for queries with [`Database::block_on`]; async callers use [`Database::pool`] directly.

use std::future::Future;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::NoTls;

use crate::config::redact_url;
use crate::storage::StorageError;

/// Connections one instance keeps at most.
const POOL_SIZE: usize = 16;

/// The shared database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    runtime: Handle,
    url: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects (one connection is opened to check the URL and the server). Must run inside
    /// a tokio runtime, whose handle later [`Database::block_on`] calls use.
    pub async fn connect(url: &str) -> Result<Database, StorageError> {
        let shown = redact_url(url);
        let config: tokio_postgres::Config = url.parse().map_err(|e| StorageError::Remote {
            context: format!("--metadata {shown}"),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StorageError::Remote {
                context: format!("--metadata {shown}"),
                reason: e.to_string(),
            })?;
        let database = Database {
            pool,
            runtime: Handle::current(),
            url: url.to_string(),
        };
        drop(database.client().await?);
        Ok(database)
    }

    /// The pool, for async callers.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        self.pool.get().await.map_err(|e| StorageError::Remote {
            context: format!("connecting to {}", redact_url(&self.url)),
            reason: e.to_string(),
        })
    }

    /// Runs `future` to completion from a thread outside the runtime (tokio's blocking pool,
    /// where the storage seam runs). Panics if called on a runtime worker thread.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Creates `part`'s tables and indexes with `ddl` (idempotent statements: `CREATE … IF
    /// NOT EXISTS`), in one transaction under a lock, so that instances starting together do
    /// not race.
    pub async fn migrate(&self, part: &str, ddl: &str) -> Result<(), StorageError> {
        let mut client = self.client().await?;
        let failed = |e: tokio_postgres::Error| StorageError::Remote {
            context: format!("creating the {part} tables"),
            reason: e.to_string(),
        };
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('ferry-schema'))",
            &[],
        )
        .await
        .map_err(failed)?;
        tx.batch_execute(ddl).await.map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
}

/// A database error as a [`StorageError::Remote`] saying what was being done.
pub fn db_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> StorageError {
    let context = context.into();
    move |e| StorageError::Remote {
        context,
        reason: match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        },
    }
}
