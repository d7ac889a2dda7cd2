//! Who is on the other end of a verified connection.

use crate::error::{CertError, Result};
use crate::x509::CertInfo;
use rustls_pki_types::CertificateDer;
use std::fmt;

/// The identity of a client, derived from its (already verified) certificate.
///
/// `fingerprint` is the SHA-256 of the certificate's DER `SubjectPublicKeyInfo`, as 64
/// lower-case hex digits: it depends on the key only, so it stays the same when a certificate
/// is re-issued for the same key, and it is what servers should key per-client state on.
/// `label` is the certificate's common name (the client name given at issue time), for logs
/// and user interfaces; it is not guaranteed unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIdentity {
    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo (64 characters).
    pub fingerprint: String,
    /// The certificate's common name; if it has none, the first 16 hex digits of the
    /// fingerprint.
    pub label: String,
}

impl ClientIdentity {
    /// Derives the identity from a DER certificate (the end-entity certificate a TLS peer
    /// presented, e.g. `conn.peer_certificates()[0]`).
    ///
    /// This does not verify the certificate: call it on certificates the TLS handshake has
    /// already verified.
    pub fn from_certificate(der: &[u8]) -> Result<ClientIdentity> {
        let info = CertInfo::parse(der).map_err(|reason| CertError::PeerCertificate { reason })?;
        let fingerprint = info.fingerprint();
        let label = match info.common_name {
            Some(cn) if !cn.is_empty() => cn,
            _ => fingerprint[..16].to_string(),
        };
        Ok(ClientIdentity { fingerprint, label })
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

    /// The first 16 hex digits of the fingerprint, enough to tell clients apart in a table.
    pub fn short_fingerprint(&self) -> &str {
        &self.fingerprint[..16.min(self.fingerprint.len())]
    }
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.label, self.short_fingerprint())
    }
}
