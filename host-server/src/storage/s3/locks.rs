//! One upload per (client, name) across instances: a PostgreSQL session-level advisory lock
//! held on one dedicated connection per instance (not from the pool, whose connections are
//! shared by everything). If the instance dies its connection closes and PostgreSQL releases
//! its locks at once, so a resume on another instance is not refused.
//!
//! Advisory locks are re-entrant within a session, so uploads on the same instance are kept
//! apart by a local set first; every lock taken is matched by one unlock, which keeps the
//! session's count right whatever order they run in.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::ClientWrapper;
use tokio::runtime::Handle;

use super::lock;
use crate::pg::{db_err, Database};
use crate::storage::StorageError;

/// How often a waiting upload asks again.
const POLL: Duration = Duration::from_millis(50);

/// The advisory locks this instance holds.
#[derive(Debug)]
pub(super) struct NameLocks {
    db: Database,
    runtime: Handle,
    /// Lock keys taken on this instance.
    local: Mutex<HashSet<i64>>,
    /// The dedicated connection (reopened after a failure).
    connection: tokio::sync::Mutex<Option<ClientWrapper>>,
}

/// Holds one name until dropped.
#[derive(Debug)]
pub(super) struct NameLock {
    locks: Arc<NameLocks>,
    key: i64,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        lock(&self.locks.local).remove(&self.key);
        // Dropped anywhere (also on a runtime thread): the unlock runs as a task.
        let (locks, key) = (self.locks.clone(), self.key);
        self.locks.runtime.spawn(async move {
            if let Err(e) = locks.query_bool("SELECT pg_advisory_unlock($1)", key).await {
                tracing::warn!("releasing an upload lock: {e}");
            }
        });
    }
}

impl NameLocks {
    pub(super) fn new(db: Database, runtime: Handle) -> NameLocks {
        NameLocks {
            db,
            runtime,
            local: Mutex::new(HashSet::new()),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Takes `key`, waiting up to `wait` for another upload to end (on a blocking thread).
    pub(super) fn acquire(
        self: &Arc<Self>,
        key: i64,
        wait: Duration,
    ) -> Result<Option<NameLock>, StorageError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(held) = self.try_acquire(key)? {
                return Ok(Some(held));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Takes `key` if no upload on any instance holds it (on a blocking thread).
    pub(super) fn try_acquire(
        self: &Arc<Self>,
        key: i64,
    ) -> Result<Option<NameLock>, StorageError> {
        if !lock(&self.local).insert(key) {
            return Ok(None);
        }
        let taken = self
            .runtime
            .block_on(self.query_bool("SELECT pg_try_advisory_lock($1)", key));
        if !matches!(taken, Ok(true)) {
            // Not ours (or unknown): only the local mark goes.
            lock(&self.local).remove(&key);
        }
        Ok(taken?.then(|| NameLock {
            locks: self.clone(),
            key,
        }))
    }

    /// Runs a one-boolean query on the dedicated connection, reopening it if it failed.
    async fn query_bool(&self, sql: &str, key: i64) -> Result<bool, StorageError> {
        let mut connection = self.connection.lock().await;
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            if connection.is_some() {
                tracing::warn!("the upload lock connection closed: upload locks were released");
            }
            let client = self.db.client().await?;
            *connection = Some(deadpool_postgres::Object::take(client));
        }
        let Some(client) = connection.as_ref() else {
            return Err(StorageError::Inconsistent("no lock connection".into()));
        };
        match client.query_one(sql, &[&key]).await {
            Ok(row) => Ok(row.get(0)),
            Err(e) => {
                *connection = None;
                Err(db_err("upload lock")(e))
            }
        }
    }
}
