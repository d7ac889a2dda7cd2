//! The CA and the CRL shared by the instances of one database (`--metadata`), so that any
//! instance behind a balancer trusts the same clients and a revocation made in the
//! certificate directory of one instance reaches all of them within seconds.
//!
//! ```text
//! Server::bind ─▶ check_ca: migrate; ferry_ca empty ⇒ publish our ca.crt;
//!                 another CA there ⇒ refuse to start (ServerError::OtherCa)
//! watch_crl, every CRL_POLL and on SIGHUP:
//!   local crl.pem changed (or first poll) ─▶ SharedCrl::publish: stored only when newer
//!     (CRL number, then thisUpdate) than the row, in one conditional upsert
//!   SharedCrl::newer_than(loaded) ─▶ the row, when newer than what the verifier holds
//!     ─▶ ReloadableClientVerifier::load_crl_pem (signature checked against our CA)
//!     ─▶ the revocations channel: live sessions of revoked certificates end
//! ```
//! Only instances whose certificate directory holds the CA key write new CRLs
//! (`ferry-certs revoke`); the others learn them from the database, never from their own
//! older `crl.pem`, which therefore need not be copied around.

use std::path::PathBuf;

use ferry_certs::rustls::pki_types::pem::PemObject;
use ferry_certs::rustls::pki_types::CertificateDer;
use ferry_certs::CrlVersion;

use crate::pg::{db_err, Database};
use crate::storage::StorageError;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS ferry_ca (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pem text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ferry_crl (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pem text NOT NULL,
    crl_number bigint NOT NULL,
    this_update bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
";

/// Why the shared CA could not be agreed on.
#[derive(Debug, thiserror::Error)]
pub enum SharedCaError {
    /// The database could not be used.
    #[error(transparent)]
    Database(#[from] StorageError),
    /// Another instance published another CA.
    #[error(
        "the database of --metadata holds another CA than {ours}: every instance sharing a \
         database (and a balancer) must trust one CA. Copy the certificate directory of the \
         first instance (ca.crt, server.crt, server.key, crl.pem; ca.key only where clients \
         are issued and revoked) to this instance's --certs, or use another database"
    )]
    OtherCa {
        /// Our CA certificate file.
        ours: PathBuf,
    },
    /// The CA in the database does not parse.
    #[error("the CA in the database of --metadata is not a PEM certificate: {0}")]
    BadCa(String),
}

/// Creates the tables, publishes our CA if the database has none, refuses another one.
pub async fn check_ca(
    database: &Database,
    ours_pem: &str,
    ours_path: PathBuf,
) -> Result<(), SharedCaError> {
    database.migrate("CA and CRL", DDL).await?;
    let client = database.client().await?;
    let published = client
        .execute(
            "INSERT INTO ferry_ca (pem) VALUES ($1) ON CONFLICT (singleton) DO NOTHING",
            &[&ours_pem],
        )
        .await
        .map_err(db_err("publishing the CA"))?;
    let row = client
        .query_one("SELECT pem FROM ferry_ca", &[])
        .await
        .map_err(db_err("reading the shared CA"))?;
    let theirs: String = row.get(0);
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| SharedCaError::BadCa(e.to_string()))
    };
    if der(&theirs)? != der(ours_pem)? {
        return Err(SharedCaError::OtherCa { ours: ours_path });
    }
    if published == 1 {
        tracing::info!(
            "published the CA {} to the shared database",
            ours_path.display()
        );
    }
    Ok(())
}

/// The shared CRL row.
#[derive(Debug, Clone)]
pub struct SharedCrl {
    database: Database,
}

impl SharedCrl {
    /// The CRL of `database` (whose tables [`check_ca`] created).
    pub fn new(database: Database) -> SharedCrl {
        SharedCrl { database }
    }

    /// Stores `pem` (of `version`) unless the database holds a CRL as new or newer. Returns
    /// whether it was stored.
    pub async fn publish(&self, pem: &str, version: CrlVersion) -> Result<bool, StorageError> {
        let client = self.database.client().await?;
        let stored = client
            .execute(
                "INSERT INTO ferry_crl (pem, crl_number, this_update) VALUES ($1, $2, $3)
                 ON CONFLICT (singleton) DO UPDATE
                 SET pem = EXCLUDED.pem, crl_number = EXCLUDED.crl_number,
                     this_update = EXCLUDED.this_update, updated_at = now()
                 WHERE (ferry_crl.crl_number, ferry_crl.this_update)
                     < (EXCLUDED.crl_number, EXCLUDED.this_update)",
                &[&pem, &number(version), &version.this_update],
            )
            .await
            .map_err(db_err("publishing the CRL"))?;
        Ok(stored == 1)
    }

    /// The database's CRL, if it has one newer than `loaded`.
    pub async fn newer_than(
        &self,
        loaded: Option<CrlVersion>,
    ) -> Result<Option<(String, CrlVersion)>, StorageError> {
        let (after, this_update) = loaded.map_or((-1, i64::MIN), |v| (number(v), v.this_update));
        let client = self.database.client().await?;
        let row = client
            .query_opt(
                "SELECT pem, crl_number, this_update FROM ferry_crl
                 WHERE (crl_number, this_update) > ($1, $2)",
                &[&after, &this_update],
            )
            .await
            .map_err(db_err("reading the shared CRL"))?;
        Ok(row.map(|row| {
            let number: i64 = row.get(1);
            (
                row.get(0),
                CrlVersion {
                    number: u64::try_from(number).unwrap_or(0),
                    this_update: row.get(2),
                },
            )
        }))
    }
}

/// The CRL number as PostgreSQL's bigint (ferry-certs counts from 1; no CRL reaches 2^63).
fn number(version: CrlVersion) -> i64 {
    i64::try_from(version.number).unwrap_or(i64::MAX)
}
