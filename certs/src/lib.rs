//! `ferry-certs`: the certificate authority behind Ferry's mutual TLS.
//!
//! Every Ferry connection is mutual TLS under the operator's own CA. This crate creates and
//! manages that CA and the certificates it issues, and builds the rustls configurations the
//! server, the host client and the web page use. The `ferry-certs` binary is a thin command
//! line over it (`init`, `server`, `client NAME`, `renew NAME`, `revoke NAME`, `list`).
//!
//! A client's identity is its name, the certificate's common name, which only the CA sets
//! ([`ClientIdentity`]). The index makes a name unique: it is issued once, renewed after
//! that, and never issued again once revoked unless the operator asks.
//!
//! # Data flow
//!
//! ```text
//!  ferry-certs init ──► DIR/ca.crt ca.key            (ECDSA P-256 CA, CA:true, keyCertSign+cRLSign)
//!                       DIR/server.crt server.key    (serverAuth; SANs localhost, 127.0.0.1, ::1, --san)
//!                       DIR/clients/local.crt .key .bundle.pem   (clientAuth)
//!                       DIR/crl.pem                  (signed, CRL number 1, empty)
//!                       DIR/index.json               (every serial issued, revocations, CRL number)
//!                       DIR/index.lock               (flock: index changes, across processes)
//!  ferry-certs client NAME ─► DIR/clients/NAME.*  + index entry (a name is issued once)
//!  ferry-certs renew NAME  ─► new NAME.crt + NAME.bundle.pem (same key unless --new-key)
//!  ferry-certs revoke NAME ─► index: revoked_at, CRL number + 1 ─► DIR/crl.pem (re-signed)
//!  ferry-certs revoke --serial HEX ─► the same, for one certificate
//!
//!  server:  server_config(&dir.server_tls_paths())  ─► rustls::ServerConfig
//!           (or ReloadableClientVerifier::new + server_config_with_verifier, then
//!            verifier.reload_crl() on SIGHUP / when crl.pem changes)
//!           after the handshake: ClientIdentity::from_peer_certificates(conn.peer_certificates())
//!  client:  client_config(ca.crt, NAME.crt, NAME.key) or client_config_from_bundle(NAME.bundle.pem)
//!  web:     Ca::load(dir)?.issue_client(name, days) ─► IssuedClient (PEM in memory),
//!           CertDir::record_client(&issued) to make it listable and revocable
//!           (refused if the name is taken: the certificate is then dropped)
//! ```
//!
//! Private keys are written atomically with mode 0600 and never overwritten unless asked
//! (`force`). Every error ([`CertError`]) names the file and the problem. The aws-lc-rs crypto
//! provider is passed explicitly to rustls, so no process-wide default is needed.
//!
//! # Example
//!
//! ```no_run
//! use ferry_certs::{init, CertDir, ClientIdentity, InitOptions};
//! # fn main() -> Result<(), ferry_certs::CertError> {
//! let dir = CertDir::new("certs");
//! init(&dir, &InitOptions::default())?;
//! let verifier = ferry_certs::ReloadableClientVerifier::new(&dir.ca_cert(), Some(&dir.crl()))?;
//! let server = ferry_certs::server_config_with_verifier(
//!     &dir.server_cert(),
//!     &dir.server_key(),
//!     verifier.clone(),
//! )?;
//! let issued = dir.load_ca()?.issue_client("browser-1", 30)?;
//! dir.record_client(&issued)?;
//! // ... later, after `ferry-certs revoke browser-1`:
//! verifier.reload_crl()?;
//! # let _ = (server, ClientIdentity::from_certificate(&issued.cert_der)?);
//! # Ok(()) }
//! ```

mod ca;
mod data_dir;
mod dir;
mod error;
mod fsutil;
mod identity;
mod index;
mod names;
mod renew;
mod tls;
mod x509;

pub use ca::{
    Ca, CertKind, IssuedCert, IssuedClient, RevokedSerial, BACKDATE, DEFAULT_CA_DAYS,
    DEFAULT_CA_NAME, DEFAULT_CLIENT_DAYS, DEFAULT_SERVER_DAYS, DEFAULT_SERVER_SANS, MAX_DAYS,
    SERVER_COMMON_NAME,
};
pub use data_dir::{
    DataDir, APP_DIR, CERTS_SUBDIR, DATA_DIR_ENV, FALLBACK_DATA_DIR, STORAGE_SUBDIR,
};
pub use dir::{
    init, CertDir, ClientPaths, InitOptions, InitReport, NewClient, RevokeReport, CA_CERT, CA_KEY,
    CLIENTS_DIR, CRL_FILE, INDEX_FILE, LOCAL_CLIENT, SERVER_CERT, SERVER_KEY,
};
pub use error::{CertError, Result};
pub use identity::ClientIdentity;
pub use index::{Index, IndexEntry, IndexLock, NameStatus, INDEX_LOCK_FILE, INDEX_VERSION};
pub use names::{validate_client_name, MAX_NAME_LEN};
pub use renew::{RenewReport, Renewal};
pub use tls::{
    check_key_matches, client_config, client_config_from_bundle, client_config_from_pem,
    crypto_provider, server_config, server_config_with_verifier, CrlVersion,
    ReloadableClientVerifier, ServerTlsPaths, PROTOCOL_VERSIONS,
};
pub use x509::{certificate_serial, spki_fingerprint};

/// Re-exported so callers use the same rustls as this crate.
pub use rustls;
