//! Who is on the other end of a verified connection.

use crate::error::{CertError, Result};
use crate::names::validate_client_name;
use crate::x509::CertInfo;
use rustls_pki_types::CertificateDer;
use std::fmt;

/// The identity of a client, derived from its (already verified) certificate.
///
/// `name` is the client name the CA issued: the certificate's subject common name, which
/// only the CA sets (it signs the whole subject). It survives renewal, with the same key or
/// a new one, and is what servers key per-client state on (storage, connection limits).
/// `fingerprint` is the SHA-256 of the certificate's DER `SubjectPublicKeyInfo`, as 64
/// lower-case hex digits: it tells one key of a name from another, for logs and for people.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIdentity {
    /// The client name (a valid [`validate_client_name`] identifier).
    pub name: String,
    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo (64 characters).
    pub fingerprint: String,
}

impl ClientIdentity {
    /// Derives the identity from a DER certificate (the end-entity certificate a TLS peer
    /// presented, e.g. `conn.peer_certificates()[0]`).
    ///
    /// A certificate whose common name is missing or not a valid client name is refused: it
    /// was not issued to a Ferry client. This does not verify the certificate: call it on
    /// certificates the TLS handshake has already verified.
    pub fn from_certificate(der: &[u8]) -> Result<ClientIdentity> {
        let info = CertInfo::parse(der).map_err(|reason| CertError::PeerCertificate { reason })?;
        let fingerprint = info.fingerprint();
        let name = match info.common_name {
            Some(cn) => cn,
            None => {
                return Err(CertError::PeerCertificate {
                    reason: format!(
                        "key {}: the certificate has no common name, so no client name",
                        &fingerprint[..16]
                    ),
                })
            }
        };
        if let Err(e) = validate_client_name(&name) {
            return Err(CertError::PeerCertificate {
                reason: format!(
                    "key {}: the certificate's common name is not a client name: {e}",
                    &fingerprint[..16]
                ),
            });
        }
        Ok(ClientIdentity { name, fingerprint })
    }

    /// Derives the identity from the peer chain rustls reports after a handshake
    /// (`ServerConnection::peer_certificates()`); fails if the peer sent no certificate.
    pub fn from_peer_certificates(chain: Option<&[CertificateDer<'_>]>) -> Result<ClientIdentity> {
        match chain.and_then(|c| c.first()) {
            Some(end_entity) => ClientIdentity::from_certificate(end_entity),
            None => Err(CertError::PeerCertificate {
                reason: "the peer presented no certificate".into(),
            }),
        }
    }

    /// The first 16 hex digits of the fingerprint, enough to tell keys apart in a table.
    pub fn short_fingerprint(&self) -> &str {
        &self.fingerprint[..16.min(self.fingerprint.len())]
    }
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.short_fingerprint())
    }
}
