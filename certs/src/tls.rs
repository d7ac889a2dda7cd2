//! rustls configurations for Ferry's mutual TLS: a server that accepts only clients chaining to
//! the CA and absent from the CRL (reloadable at run time), and a client that trusts only the
//! CA.
//!
//! Both sides use TLS 1.3 only and the aws-lc-rs crypto provider, passed explicitly so that no
//! process-wide default provider needs to be installed.

use crate::error::{CertError, Result};
use crate::x509::{self, now, CertInfo};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls::{SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Protocol versions Ferry speaks: TLS 1.3 only (all Ferry peers, including embedded-tls
/// devices, speak it).
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The crypto provider used by every configuration built here: aws-lc-rs, rustls' default.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The files a Ferry server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsPaths {
    /// The CA certificate clients must chain to (`ca.crt`).
    pub ca_cert: PathBuf,
    /// The server certificate (`server.crt`).
    pub server_cert: PathBuf,
    /// The server private key (`server.key`).
    pub server_key: PathBuf,
    /// The CRL (`crl.pem`); `None` disables revocation checks.
    pub crl: Option<PathBuf>,
}

/// Reads the CA certificate for use as the only trust anchor; it must be a CA and valid now.
fn read_ca(ca_path: &Path) -> Result<CertificateDer<'static>> {
    let der = x509::read_certs(ca_path)?.remove(0);
    check_ca_der(&der, ca_path)?;
    Ok(der)
}

fn check_ca_der(der: &[u8], ca_path: &Path) -> Result<()> {
    let info = CertInfo::parse_file(der, ca_path)?;
    if !info.is_ca {
        return Err(CertError::NotCa {
            path: ca_path.to_path_buf(),
        });
    }
    info.check_valid_at(now(), ca_path)
}

fn roots_of(ca: &[CertificateDer<'static>], ca_path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for der in ca {
        roots.add(der.clone()).map_err(|cause| CertError::Tls {
            path: ca_path.to_path_buf(),
            cause,
        })?;
    }
    Ok(roots)
}

/// Checks that `key` belongs to the certificate `cert` (both DER) and that the certificate is
/// valid now; paths name the files in errors.
fn check_pair(
    cert: &CertificateDer<'_>,
    key: &PrivateKeyDer<'_>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<()> {
    let info = CertInfo::parse_file(cert, cert_path)?;
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| CertError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if let Some(spki) = signing_key.public_key() {
        if spki.as_ref() != info.spki.as_slice() {
            return Err(CertError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
        }
    }
    info.check_valid_at(now(), cert_path)
}

/// Reads a certificate (chain) and its key, checking that they match and that the
/// certificate is valid now.
fn read_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = x509::read_certs(cert_path)?;
    let key = x509::read_key(key_path)?;
    check_pair(&chain[0], &key, cert_path, key_path)?;
    Ok((chain, key))
}

/// Checks that the key file belongs to the certificate file and that the certificate is
/// valid now.
pub fn check_key_matches(cert_path: &Path, key_path: &Path) -> Result<()> {
    read_pair(cert_path, key_path).map(|_| ())
}

/// Reads the CRLs of a PEM file (at least one) and checks that each is signed by the CA.
pub(crate) fn read_crls(
    path: &Path,
    ca: &crate::Ca,
) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    read_crls_for(path, ca.cert_der(), ca.cert_path())
}

fn read_crls_for(
    path: &Path,
    ca_der: &[u8],
    ca_path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let text = crate::fsutil::read_text(path)?;
    crls_signed_by(text.as_bytes(), path, ca_der, ca_path)
}

/// The CRLs of PEM `text` (from `path`, for messages), each checked to be signed by the CA.
fn crls_signed_by(
    text: &[u8],
    path: &Path,
    ca_der: &[u8],
    ca_path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls = CertificateRevocationListDer::pem_slice_iter(text)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(CertError::Pem {
            path: path.to_path_buf(),
            reason: "no X509 CRL block found".into(),
        });
    }
    let (_, ca) =
        x509_parser::parse_x509_certificate(ca_der).map_err(|e| CertError::BadCertificate {
            path: ca_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    for der in &crls {
        let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| CertError::BadCrl {
            path: path.to_path_buf(),
            reason: format!("cannot parse: {e}"),
        })?;
        if crl.issuer().as_raw() != ca.subject().as_raw()
            || crl.verify_signature(ca.public_key()).is_err()
        {
            return Err(CertError::BadCrl {
                path: path.to_path_buf(),
                reason: format!("not signed by the CA {}", ca_path.display()),
            });
        }
    }
    Ok(crls)
}

/// Which of two CRLs of one CA is newer: the higher CRL number (ferry-certs counts up with
/// each revocation), then the later thisUpdate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrlVersion {
    /// The CRL number extension (0 when absent).
    pub number: u64,
    /// thisUpdate, seconds since the Unix epoch.
    pub this_update: i64,
}

impl fmt::Display for CrlVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CRL number {}", self.number)
    }
}

impl CrlVersion {
    /// The version of the first CRL in PEM `text` (from `origin`, for messages). Does not
    /// check the signature: [`ReloadableClientVerifier::load_crl_pem`] does.
    pub fn of_pem(text: &[u8], origin: &Path) -> Result<CrlVersion> {
        let bad = |reason: String| CertError::BadCrl {
            path: origin.to_path_buf(),
            reason,
        };
        let der = CertificateRevocationListDer::pem_slice_iter(text)
            .next()
            .ok_or_else(|| bad("no X509 CRL block found".into()))?
            .map_err(|e| bad(e.to_string()))?;
        let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| bad(e.to_string()))?;
        Ok(CrlVersion {
            number: crl
                .crl_number()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            this_update: crl.last_update().timestamp(),
        })
    }
}

/// Number of revoked certificates listed in the CRLs.
fn revoked_count(crls: &[CertificateRevocationListDer<'_>]) -> usize {
    crls.iter()
        .filter_map(|der| x509_parser::parse_x509_crl(der).ok())
        .map(|(_, crl)| crl.iter_revoked_certificates().count())
        .sum()
}

/// A client certificate verifier whose CRL can be replaced while the server runs.
///
/// It accepts only clients presenting a certificate that chains to the CA and is not listed
/// in the CRL, exactly like rustls' [`WebPkiClientVerifier`] (which it wraps);
/// [`ReloadableClientVerifier::reload_crl`] re-reads the CRL file and swaps in a new inner
/// verifier. Connections that are already established are not affected; every handshake
/// after the swap uses the new CRL.
pub struct ReloadableClientVerifier {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    root_hints: Vec<DistinguishedName>,
    ca_der: CertificateDer<'static>,
    ca_path: PathBuf,
    crl_path: Option<PathBuf>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl fmt::Debug for ReloadableClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableClientVerifier")
            .field("ca_path", &self.ca_path)
            .field("crl_path", &self.crl_path)
            .finish_non_exhaustive()
    }
}

impl ReloadableClientVerifier {
    /// Builds a verifier trusting only the CA certificate at `ca_cert`, with the CRL at `crl`
    /// (if any) loaded. The CRL must be signed by that CA.
    pub fn new(ca_cert: &Path, crl: Option<&Path>) -> Result<Arc<ReloadableClientVerifier>> {
        let ca_der = read_ca(ca_cert)?;
        let roots = Arc::new(roots_of(std::slice::from_ref(&ca_der), ca_cert)?);
        let provider = crypto_provider();
        let crls = match crl {
            Some(p) => read_crls_for(p, &ca_der, ca_cert)?,
            None => Vec::new(),
        };
        let inner = build_verifier(&roots, &provider, crls, crl.unwrap_or(ca_cert))?;
        Ok(Arc::new(ReloadableClientVerifier {
            root_hints: roots.subjects(),
            provider,
            roots,
            ca_der,
            ca_path: ca_cert.to_path_buf(),
            crl_path: crl.map(Path::to_path_buf),
            current: RwLock::new(inner),
        }))
    }

    /// Re-reads the CRL file and, if it is valid and signed by the CA, uses it for every
    /// following handshake. Returns the number of revoked certificates it lists.
    ///
    /// On error the previous CRL stays in force. Without a CRL path this does nothing and
    /// returns 0.
    pub fn reload_crl(&self) -> Result<usize> {
        let Some(path) = &self.crl_path else {
            return Ok(0);
        };
        let crls = read_crls_for(path, &self.ca_der, &self.ca_path)?;
        let count = revoked_count(&crls);
        let inner = build_verifier(&self.roots, &self.provider, crls, path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = inner;
        tracing::info!(
            "{}: CRL reloaded ({count} revoked certificates)",
            path.display()
        );
        Ok(count)
    }

    /// Uses the CRL(s) in PEM `text` (from `origin`, a name for messages: another instance
    /// of a cluster, say) for every following handshake, if they are valid and signed by the
    /// CA. Returns the number of revoked certificates they list. On error the previous CRL
    /// stays in force.
    pub fn load_crl_pem(&self, text: &[u8], origin: &Path) -> Result<usize> {
        let crls = crls_signed_by(text, origin, &self.ca_der, &self.ca_path)?;
        let count = revoked_count(&crls);
        let inner = build_verifier(&self.roots, &self.provider, crls, origin)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = inner;
        Ok(count)
    }

    /// The CA certificate this verifier trusts (DER).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The CRL file this verifier reloads, if any.
    pub fn crl_path(&self) -> Option<&Path> {
        self.crl_path.as_deref()
    }

    /// The CA certificate file this verifier trusts.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn build_verifier(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    path: &Path,
) -> Result<Arc<dyn ClientCertVerifier>> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|cause| CertError::Verifier {
            path: path.to_path_buf(),
            cause,
        })
}

impl ClientCertVerifier for ReloadableClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// Builds the server configuration from files: TLS 1.3, the server certificate and key, and
/// mandatory client certificates verified against the CA and the CRL.
///
/// Use [`ReloadableClientVerifier::new`] plus [`server_config_with_verifier`] instead when the
/// CRL must be reloadable without restarting.
pub fn server_config(paths: &ServerTlsPaths) -> Result<ServerConfig> {
    let verifier = ReloadableClientVerifier::new(&paths.ca_cert, paths.crl.as_deref())?;
    server_config_with_verifier(&paths.server_cert, &paths.server_key, verifier)
}

/// Builds the server configuration with a given (reloadable) client verifier: keep a clone of
/// the `Arc` and call [`ReloadableClientVerifier::reload_crl`] (on SIGHUP, on file change) to
/// apply a new CRL to later handshakes.
pub fn server_config_with_verifier(
    server_cert: &Path,
    server_key: &Path,
    verifier: Arc<ReloadableClientVerifier>,
) -> Result<ServerConfig> {
    let (chain, key) = read_pair(server_cert, server_key)?;
    ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|cause| CertError::Tls {
            path: server_cert.to_path_buf(),
            cause,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|cause| CertError::Tls {
            path: server_cert.to_path_buf(),
            cause,
        })
}

/// Builds a client configuration from files: TLS 1.3, trusting only the CA certificate, and
/// presenting the client certificate and key.
pub fn client_config(
    ca_cert: &Path,
    client_cert: &Path,
    client_key: &Path,
) -> Result<ClientConfig> {
    let ca = read_ca(ca_cert)?;
    let (chain, key) = read_pair(client_cert, client_key)?;
    build_client(&[ca], ca_cert, chain, key, client_cert)
}

/// Builds a client configuration from a bundle file (`clients/NAME.bundle.pem`: client
/// certificate, its key, then the CA certificate).
pub fn client_config_from_bundle(bundle: &Path) -> Result<ClientConfig> {
    let text = crate::fsutil::read_text(bundle)?;
    client_config_from_pem_text(&text, &text, &text, bundle, bundle, bundle)
}

/// Builds a client configuration from PEM text held in memory (for instance an
/// [`crate::IssuedClient`]: `client_config_from_pem(&c.ca_pem, &c.cert_pem, &c.key_pem)`).
pub fn client_config_from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<ClientConfig> {
    client_config_from_pem_text(
        ca_pem,
        cert_pem,
        key_pem,
        Path::new("<CA certificate PEM>"),
        Path::new("<client certificate PEM>"),
        Path::new("<client key PEM>"),
    )
}

fn client_config_from_pem_text(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    ca_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<ClientConfig> {
    let bundle = ca_path == cert_path;
    let mut certs = x509::certs_from_pem(cert_pem, cert_path)?;
    let cas = if bundle {
        // A bundle holds the client certificate first, then the CA certificate(s).
        if certs.len() < 2 {
            return Err(CertError::Pem {
                path: ca_path.to_path_buf(),
                reason: "a bundle must hold the client certificate, its key and the CA certificate"
                    .into(),
            });
        }
        certs.split_off(1)
    } else {
        x509::certs_from_pem(ca_pem, ca_path)?
    };
    for ca in &cas {
        check_ca_der(ca, ca_path)?;
    }
    let key = x509::key_from_pem(key_pem, key_path)?;
    check_pair(&certs[0], &key, cert_path, key_path)?;
    build_client(&cas, ca_path, certs, key, cert_path)
}

fn build_client(
    cas: &[CertificateDer<'static>],
    ca_path: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
) -> Result<ClientConfig> {
    let roots = roots_of(cas, ca_path)?;
    ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|cause| CertError::Tls {
            path: cert_path.to_path_buf(),
            cause,
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|cause| CertError::Tls {
            path: cert_path.to_path_buf(),
            cause,
        })
}
