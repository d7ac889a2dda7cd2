//! Sessions shared by the pages of several Ferry servers through their PostgreSQL database
//! (`ferry-server --metadata`), so that a browser keeps its identity whichever instance the
//! balancer sends it to.
//!
//! The table is a log of changes: each save or end of a session writes its row (the record,
//! or a tombstone) with a new sequence number. Every page applies the rows past the last
//! number it saw to its own sessions and state directory ([`crate::store`]), once a second,
//! so a session made on one instance is known to the others within about a second, and one
//! ended anywhere ends everywhere. Tombstones are kept for a day, then dropped.

use deadpool_postgres::Pool;

use crate::store::Record;

/// The table, its sequence, and the index the poll reads.
const SCHEMA: &str = "
CREATE SEQUENCE IF NOT EXISTS ferry_web_sessions_seq;
CREATE TABLE IF NOT EXISTS ferry_web_sessions (
    key text PRIMARY KEY,
    record jsonb,
    seq bigint NOT NULL,
    changed timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ferry_web_sessions_by_seq ON ferry_web_sessions (seq);
";

/// Rows past this many sequence numbers before the last one seen are read again: numbers
/// are taken when a write starts, so one that commits late can fall behind a later one.
const SEQ_OVERLAP: i64 = 256;

/// One change of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// The session's key (hex of the SHA-256 of its secret).
    pub key: String,
    /// The record, or `None` once the session ended.
    pub record: Option<Record>,
    /// Its sequence number.
    pub seq: i64,
}

/// Why the shared sessions could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    /// No connection from the pool.
    #[error("database: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The query failed.
    #[error("database: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// A record did not decode.
    #[error("a shared session record does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The shared log of sessions.
#[derive(Clone)]
pub struct SharedSessions {
    pool: Pool,
}

impl std::fmt::Debug for SharedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSessions").finish_non_exhaustive()
    }
}

impl SharedSessions {
    /// Uses `pool`, creating the table if needed (under the same advisory lock as the
    /// server's own tables, so that instances starting together do not race).
    pub async fn open(
        pool: Pool,
    ) -> Result<SharedSessions, Box<dyn std::error::Error + Send + Sync>> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('ferry-schema'))",
            &[],
        )
        .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        Ok(SharedSessions { pool })
    }

    /// Writes the record of `key`, or its tombstone (`None`).
    pub(crate) async fn publish(
        &self,
        key: &str,
        record: Option<&Record>,
    ) -> Result<(), SharedError> {
        let json = record.map(serde_json::to_value).transpose()?;
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO ferry_web_sessions (key, record, seq) \
                 VALUES ($1, $2, nextval('ferry_web_sessions_seq')) \
                 ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, \
                 seq = EXCLUDED.seq, changed = now()",
                &[&key, &json],
            )
            .await?;
        Ok(())
    }

    /// The changes with a sequence number past `seen - SEQ_OVERLAP`, in order, and drops
    /// tombstones older than a day.
    pub(crate) async fn changes_since(&self, seen: i64) -> Result<Vec<Change>, SharedError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM ferry_web_sessions WHERE record IS NULL \
                 AND changed < now() - interval '1 day'",
                &[],
            )
            .await?;
        let rows = client
            .query(
                "SELECT key, record, seq FROM ferry_web_sessions WHERE seq > $1 ORDER BY seq",
                &[&seen.saturating_sub(SEQ_OVERLAP)],
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                let record: Option<serde_json::Value> = row.get(1);
                Ok(Change {
                    key: row.get(0),
                    record: record.map(serde_json::from_value).transpose()?,
                    seq: row.get(2),
                })
            })
            .collect()
    }
}
