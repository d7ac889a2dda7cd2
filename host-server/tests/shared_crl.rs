//! The CA and CRL shared through PostgreSQL: two servers with separate certificate
//! directories (copies of one CA's public files and the server certificate; only the first
//! holds the CA key) on one database. A client revoked with the ferry-certs library in the
//! first's directory is refused by the second within seconds, and its live session there
//! ends; a server of another CA refuses to start on that database.
//!
//! The servers run as the options of a cluster say: `--store s3://` on one s3s-fs bucket
//! (each server its own spool), `--metadata` on one PostgreSQL database.

mod server_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_certs::{CertDir, CrlVersion, InitOptions};
use ferry_server::{Server, ServerError, ServerOptions};
use ferry_testkit::cluster::{Postgres, S3Server};
use ferry_testkit::pki::Pki;
use server_support::{is_refused, Error, TestClient};
use tokio::sync::oneshot;

/// Far above the 2 s CRL poll of both servers.
const PROPAGATION: Duration = Duration::from_secs(30);

/// A server of this process, stopped when dropped.
struct Running {
    addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Where the servers keep their files and state.
struct Shared {
    _postgres: Arc<Postgres>,
    s3: Arc<S3Server>,
    bucket: String,
    metadata: String,
}

impl Shared {
    async fn start() -> Shared {
        tokio::task::spawn_blocking(|| {
            let postgres = Postgres::shared().expect("PostgreSQL starts");
            let s3 = S3Server::shared().expect("s3s-fs starts");
            let bucket = format!("ferry-crl-{}", fastrand::u32(..));
            s3.create_bucket(&bucket).unwrap();
            let metadata = postgres.unique_database("crl").unwrap();
            Shared {
                _postgres: postgres,
                s3,
                bucket,
                metadata,
            }
        })
        .await
        .unwrap()
    }

    /// A server with certificates in `root/certs` and its spool in `root/spool`.
    async fn bind(&self, root: &Path) -> Result<Server, ServerError> {
        let options = ServerOptions {
            listen: "127.0.0.1:0".into(),
            store: format!("s3://{}/files", self.bucket),
            metadata: Some(self.metadata.clone()),
            s3_endpoint: Some(self.s3.endpoint()),
            s3_region: Some(self.s3.region().into()),
            s3_access_key_id: Some(self.s3.access_key().into()),
            s3_secret_access_key: Some(self.s3.secret_key().into()),
            spool: root.join("spool"),
            ..ServerOptions::in_data_dir(ferry_certs::DataDir::new(root))
        };
        Server::bind(options).await
    }
}

fn serve(server: Server) -> Running {
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve(async move {
                let _ = stopped.await;
            })
            .await
            .expect("ferry-server serves");
    });
    Running { addr, _stop: stop }
}

/// What an instance without the CA key gets: the CA certificate, the server's certificate
/// and key, and the CRL as it was when copied.
fn copy_public(from: &CertDir, to: &CertDir) {
    std::fs::create_dir_all(to.root()).unwrap();
    for (a, b) in [
        (from.ca_cert(), to.ca_cert()),
        (from.server_cert(), to.server_cert()),
        (from.server_key(), to.server_key()),
        (from.crl(), to.crl()),
    ] {
        std::fs::copy(a, b).unwrap();
    }
}

fn crl_version(dir: &CertDir) -> CrlVersion {
    CrlVersion::of_pem(&std::fs::read(dir.crl()).unwrap(), &dir.crl()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_in_one_certificate_directory_reaches_the_other_instance() {
    let shared = Shared::start().await;
    let root = tempfile::tempdir().unwrap();
    let (first_root, second_root) = (root.path().join("first"), root.path().join("second"));
    let first_certs = CertDir::new(first_root.join("certs"));
    ferry_certs::init(&first_certs, &InitOptions::default()).unwrap();
    let pki = Pki::open(first_certs.root());
    let (alice, bob) = (pki.client_tls("alice"), pki.client_tls("bob"));
    let second_certs = CertDir::new(second_root.join("certs"));
    copy_public(&first_certs, &second_certs);
    assert!(!second_certs.ca_key().exists());

    let first = serve(
        shared
            .bind(&first_root)
            .await
            .expect("the first server starts"),
    );
    let second = serve(
        shared
            .bind(&second_root)
            .await
            .expect("the second server starts"),
    );
    let mut live = TestClient::connect(second.addr, alice.clone())
        .await
        .expect("alice connects to the second server");
    live.list().await.unwrap();
    assert!(!is_refused(first.addr, alice.clone()).await);

    // Revoked where the CA key is: the first server publishes its new crl.pem, the second
    // loads it from the database.
    let before = crl_version(&second_certs);
    first_certs.revoke("alice").unwrap();
    let started = Instant::now();
    while !is_refused(second.addr, alice.clone()).await {
        assert!(
            started.elapsed() < PROPAGATION,
            "the second server still accepts alice after {PROPAGATION:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "the second server refused alice {:?} after the revocation",
        started.elapsed()
    );
    // Her live session there ends as a local revocation ends it.
    let closed = tokio::time::timeout(PROPAGATION, live.wait_closed())
        .await
        .expect("alice's live session on the second server ends");
    assert!(
        matches!(&closed, Error::Closed(_, text) if text.contains("revoked")),
        "{closed:?}"
    );
    assert!(is_refused(first.addr, alice.clone()).await);
    assert!(!is_refused(second.addr, bob.clone()).await);
    // The second's own directory was not touched: it learned the CRL from the database.
    assert_eq!(crl_version(&second_certs), before);

    // A third server starting with the second's older crl.pem loads the newer one at once.
    let third_root = root.path().join("third");
    copy_public(&second_certs, &CertDir::new(third_root.join("certs")));
    let third = serve(
        shared
            .bind(&third_root)
            .await
            .expect("the third server starts"),
    );
    let started = Instant::now();
    while !is_refused(third.addr, alice.clone()).await {
        assert!(
            started.elapsed() < PROPAGATION,
            "the third server accepts alice"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!is_refused(third.addr, bob).await);

    // Another CA on the same database: refused at start, with the way out in the message.
    let other_root = root.path().join("other");
    let refused = shared.bind(&other_root).await.unwrap_err();
    let text = refused.to_string();
    assert!(
        matches!(refused, ServerError::SharedCa(_)) && text.contains("another CA"),
        "{text}"
    );
    assert!(text.contains("Copy the certificate directory"), "{text}");
}
