//! Certificates for tests, made with the ferry-certs library: a certificate directory (CA,
//! server certificate, named clients), the paths of its files, and rustls client
//! configurations to connect with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_certs::rustls::pki_types::pem::PemObject;
use ferry_certs::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ferry_certs::rustls::{self, ClientConfig};
use ferry_certs::{CertDir, ClientIdentity, ClientPaths, InitOptions};
use ferry_tokio::client::ClientOptions;

/// Days a client certificate issued by [`Pki::client`] is valid.
const CLIENT_DAYS: u32 = 30;

/// A certificate directory: its own temporary one ([`Pki::fresh`]) or one that exists
/// ([`Pki::open`], e.g. what a server created on its first start).
pub struct Pki {
    dir: CertDir,
    _temp: Option<tempfile::TempDir>,
}

impl Pki {
    /// A new CA, server certificate and `local` client in a temporary directory, removed on
    /// drop.
    pub fn fresh() -> Pki {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let dir = CertDir::new(temp.path());
        ferry_certs::init(&dir, &InitOptions::default()).expect("ferry_certs::init");
        Pki {
            dir,
            _temp: Some(temp),
        }
    }

    /// The certificate directory at `root` (not removed on drop).
    pub fn open(root: &Path) -> Pki {
        Pki {
            dir: CertDir::new(root),
            _temp: None,
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        self.dir.root()
    }

    /// The library's view of the directory.
    pub fn dir(&self) -> &CertDir {
        &self.dir
    }

    /// `ca.crt`.
    pub fn ca(&self) -> PathBuf {
        self.dir.ca_cert()
    }

    /// The certificate, key and bundle of client `name`, issued first if it has none yet.
    pub fn client(&self, name: &str) -> ClientPaths {
        let paths = self.dir.client_paths(name).expect("a valid client name");
        if !paths.cert.exists() {
            self.dir
                .issue_client(name, CLIENT_DAYS, false)
                .unwrap_or_else(|e| panic!("issuing client {name:?}: {e}"));
        }
        paths
    }

    /// `clients/NAME.crt` (issued if missing).
    pub fn cert(&self, name: &str) -> PathBuf {
        self.client(name).cert
    }

    /// `clients/NAME.key` (issued if missing).
    pub fn key(&self, name: &str) -> PathBuf {
        self.client(name).key
    }

    /// `clients/NAME.bundle.pem` (issued if missing).
    pub fn bundle(&self, name: &str) -> PathBuf {
        self.client(name).bundle
    }

    /// The identity a server derives from client `name`'s certificate (its fingerprint
    /// names the client's storage directory).
    pub fn identity(&self, name: &str) -> ClientIdentity {
        let pem = std::fs::read(self.cert(name)).expect("the client certificate");
        let der = CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
        ClientIdentity::from_certificate(&der).expect("a client certificate")
    }

    /// A rustls configuration for client `name` (issued if missing).
    pub fn client_tls(&self, name: &str) -> Arc<ClientConfig> {
        client_tls(self.root(), name)
    }

    /// Client options of the ferry client library for client `name` against `server`, with
    /// a short connect timeout.
    pub fn client_options(&self, name: &str, server: SocketAddr) -> ClientOptions {
        let paths = self.client(name);
        let mut options =
            ClientOptions::from_files(&server.to_string(), &self.ca(), &paths.cert, &paths.key)
                .expect("client options from the certificate directory");
        options.connect_timeout = Duration::from_secs(5);
        options
    }
}

/// A client configuration for the `local` client of the certificate directory `certs`.
pub fn local_tls(certs: &Path) -> Arc<ClientConfig> {
    client_tls(certs, ferry_certs::LOCAL_CLIENT)
}

/// A client configuration for client `name` of `certs` (issued if it does not exist yet).
pub fn client_tls(certs: &Path, name: &str) -> Arc<ClientConfig> {
    let pki = Pki::open(certs);
    let paths = pki.client(name);
    Arc::new(
        ferry_certs::client_config(&pki.ca(), &paths.cert, &paths.key)
            .expect("a client configuration"),
    )
}

/// A client configuration built directly with rustls (for certificates the library refuses
/// to load, or none at all).
pub fn raw_tls(ca_pem: &str, cert: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("a PEM CA")).expect("a usable CA");
    }
    let builder = ClientConfig::builder_with_provider(ferry_certs::crypto_provider())
        .with_protocol_versions(ferry_certs::PROTOCOL_VERSIONS)
        .expect("the protocol versions")
        .with_root_certificates(roots);
    Arc::new(match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("a PEM certificate")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a PEM key"),
            )
            .expect("a certificate and its key"),
        None => builder.with_no_client_auth(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_directory_issues_named_clients_once() {
        let pki = Pki::fresh();
        assert!(pki.ca().exists());
        assert!(pki.dir().server_cert().exists());
        let alice = pki.client("alice");
        assert!(alice.cert.exists() && alice.key.exists() && alice.bundle.exists());
        let first = std::fs::read(&alice.cert).unwrap();
        assert_eq!(pki.client("alice"), alice);
        assert_eq!(
            std::fs::read(&alice.cert).unwrap(),
            first,
            "not issued again"
        );
        let (a, b) = (pki.identity("alice"), pki.identity("bob"));
        assert_eq!(a.fingerprint.len(), 64);
        assert_ne!(a.fingerprint, b.fingerprint);
        let root = pki.root().to_path_buf();
        drop(pki);
        assert!(!root.exists(), "the temporary directory goes with it");
    }
}
