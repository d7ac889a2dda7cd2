//! The PostgreSQL database that several `ferry-server` instances share (`--metadata
//! postgres://…`): one pool of connections per instance, and each part of the server that
//! keeps state there (the object store's index, the CRL, …) creates its own tables through
//! [`Database::migrate`].
//!
//! TLS: a URL with `sslmode=require` (or `prefer`, the driver's default when the URL says
//! nothing, which here means plain TCP unless the URL asks) is verified against the CA file
//! given (`--metadata-ca`), else the system's roots, with rustls.
//!
//! The storage seam is synchronous and runs on tokio's blocking pool, so its callers wait
//! for queries with [`Database::block_on`]; async callers use [`Database::pool`] directly.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

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
    /// Connects (one connection is opened to check the URL and the server), over TLS when
    /// the URL's `sslmode` is `require` (verified against `ca_file`, else the system's
    /// roots). Must run inside a tokio runtime, whose handle later [`Database::block_on`]
    /// calls use.
    pub async fn connect(url: &str, ca_file: Option<&Path>) -> Result<Database, StorageError> {
        let shown = redact_url(url);
        let invalid = |reason: String| StorageError::Remote {
            context: format!("--metadata {shown}"),
            reason,
        };
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| invalid(format!("not a PostgreSQL URL: {e}")))?;
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Require {
            let tls = tls_config(ca_file).map_err(invalid)?;
            Manager::from_config(config, MakeRustlsConnect::new(tls), recycling)
        } else {
            if ca_file.is_some() {
                return Err(invalid(
                    "--metadata-ca is given but the URL does not ask for TLS: add ?sslmode=require"
                        .into(),
                ));
            }
            Manager::from_config(config, NoTls, recycling)
        };
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
            reason: with_causes(&e),
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

/// The rustls client configuration of database connections: the CA certificates in
/// `ca_file`, else the system's roots.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read --metadata-ca {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate to verify the database with (give --metadata-ca)".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An error and its causes, `: `-separated (the pool's own message alone does not say why
/// a connection failed).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
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
