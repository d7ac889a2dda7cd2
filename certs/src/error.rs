//! The library's error type: every variant names the file (or the input) and the problem.

use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = CertError> = std::result::Result<T, E>;

/// Everything that can go wrong while creating, loading or using Ferry certificates.
///
/// Each variant that concerns a file carries its path, and the `Display` text starts with it,
/// so the message alone tells the operator which file to look at and what is wrong with it.
/// A cause (an I/O or TLS error) is part of that text and not chained again as a `source`,
/// so `{:#}` prints it once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file that must exist does not.
    #[error("{}: file not found", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },

    /// Reading, writing or renaming a file failed.
    #[error("{}: cannot {action}: {cause}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done ("read", "write", "create directory", ...).
        action: &'static str,
        /// The underlying error.
        cause: std::io::Error,
    },

    /// A file is not valid PEM or lacks the expected PEM block.
    #[error("{}: broken PEM: {reason}", path.display())]
    Pem {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A certificate could not be parsed or does not have the expected content.
    #[error("{}: invalid certificate: {reason}", path.display())]
    BadCertificate {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A private key could not be parsed or is of an unsupported type.
    #[error("{}: invalid private key: {reason}", path.display())]
    BadKey {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A private key does not belong to the certificate it is paired with.
    #[error("{}: private key does not match the certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },

    /// A certificate's validity period is over.
    #[error("{}: certificate expired at {not_after}", path.display())]
    Expired {
        /// The file concerned.
        path: PathBuf,
        /// The certificate's notAfter, RFC 3339.
        not_after: String,
    },

    /// A certificate's validity period has not started yet.
    #[error("{}: certificate is not valid before {not_before}", path.display())]
    NotYetValid {
        /// The file concerned.
        path: PathBuf,
        /// The certificate's notBefore, RFC 3339.
        not_before: String,
    },

    /// A certificate used as the CA is not a CA certificate.
    #[error("{}: not a CA certificate (basicConstraints CA:true is missing)", path.display())]
    NotCa {
        /// The file concerned.
        path: PathBuf,
    },

    /// A certificate was not issued by the CA it is checked against.
    #[error("{}: not issued by the CA {}", path.display(), ca.display())]
    WrongIssuer {
        /// The certificate (or CRL) file.
        path: PathBuf,
        /// The CA certificate file.
        ca: PathBuf,
    },

    /// Refusing to overwrite an existing file.
    #[error("{}: already exists; refusing to overwrite it (use --force to replace it)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// Only some files of a set exist (for example a certificate without its key).
    #[error("{}: missing while {} exists; refusing to guess (use --force to recreate both)", missing.display(), present.display())]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// A client name is not a safe identifier.
    #[error("invalid client name {name:?}: {reason} (allowed: a letter or digit, then up to 63 letters, digits, '.', '_' or '-')")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A subject alternative name is neither a DNS name nor an IP address.
    #[error("invalid subject alternative name {san:?}: expected a DNS name or an IP address")]
    InvalidSan {
        /// The refused name.
        san: String,
    },

    /// A validity request makes no sense (zero days, end before start, ...).
    #[error("invalid validity: {reason}")]
    InvalidValidity {
        /// What is wrong.
        reason: String,
    },

    /// A CA name is empty or too long.
    #[error("invalid CA name {name:?}: {reason}")]
    InvalidCaName {
        /// The refused name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// `revoke` was asked for a client that the index does not know.
    #[error("{}: no client named {name:?} has been issued", path.display())]
    UnknownClient {
        /// The index file.
        path: PathBuf,
        /// The requested name.
        name: String,
    },

    /// A new client was asked for under a name the CA has already issued.
    #[error("client name {name:?} is already issued (hint: `ferry-certs renew {name}` gives it a new certificate and keeps its files)")]
    NameTaken {
        /// The requested name.
        name: String,
    },

    /// A new client was asked for under a name whose certificates were all revoked.
    #[error("client name {name:?} was revoked; a revoked name is not issued again unless you say so (--reuse-revoked-name): whoever gets it also gets the files stored under it")]
    NameRevoked {
        /// The requested name.
        name: String,
    },

    /// A renewal that keeps its key found no key.
    #[error("{}: no private key to renew with (hint: `ferry-certs renew {name} --new-key`)", path.display())]
    NoKeyToRenew {
        /// The missing key file.
        path: PathBuf,
        /// The client name.
        name: String,
    },

    /// `revoke --serial` was asked for a serial that the index does not know.
    #[error("{}: no certificate with serial {serial} has been issued", path.display())]
    UnknownSerial {
        /// The index file.
        path: PathBuf,
        /// The requested serial (hex).
        serial: String,
    },

    /// The index of issued certificates is unreadable or inconsistent.
    #[error("{}: broken index: {reason}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A certificate revocation list is unreadable or not signed by the CA.
    #[error("{}: invalid CRL: {reason}", path.display())]
    BadCrl {
        /// The CRL file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// rcgen refused to generate a key, certificate or CRL.
    #[error("{what}: generation failed: {cause}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The underlying error.
        cause: rcgen::Error,
    },

    /// A generated certificate could not be read back (should not happen).
    #[error("{what}: generated certificate is unreadable: {reason}")]
    Internal {
        /// What was generated.
        what: String,
        /// What is wrong.
        reason: String,
    },

    /// rustls refused a configuration.
    #[error("{}: TLS configuration failed: {cause}", path.display())]
    Tls {
        /// The file whose content was refused (certificate or key).
        path: PathBuf,
        /// The underlying error.
        cause: rustls::Error,
    },

    /// The client certificate verifier could not be built from the CA and CRL.
    #[error("{}: cannot build the client certificate verifier: {cause}", path.display())]
    Verifier {
        /// The CA (or CRL) file concerned.
        path: PathBuf,
        /// The underlying error.
        cause: rustls::server::VerifierBuilderError,
    },

    /// A certificate received from a peer could not be parsed.
    #[error("peer certificate: {reason}")]
    PeerCertificate {
        /// What is wrong.
        reason: String,
    },
}

impl CertError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound && action == "read" {
            CertError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            CertError::Io {
                path: path.to_path_buf(),
                action,
                cause: source,
            }
        }
    }

    pub(crate) fn generate(what: impl Into<String>, source: rcgen::Error) -> Self {
        CertError::Generate {
            what: what.into(),
            cause: source,
        }
    }
}
