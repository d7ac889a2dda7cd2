//! HTTPS for the page: a rustls server configuration from PEM files (no client
//! certificates; HTTP/1.1 only).

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::WebError;

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> WebError {
    WebError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Loads the certificate chain and key and builds the server configuration.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, WebError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert, e))?;
    if chain.is_empty() {
        return Err(tls_error(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(ferry_certs::crypto_provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| tls_error(cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_error(key, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
