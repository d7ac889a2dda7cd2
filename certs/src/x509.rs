//! Reading PEM files and extracting the few certificate fields Ferry needs.

use crate::error::{CertError, Result};
use crate::fsutil::read_text;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::SystemTime;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// SHA-256 of a DER `SubjectPublicKeyInfo`, as 64 lower-case hex digits.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// The serial number of a DER certificate, as hex of its DER content bytes (as
/// `ferry-certs` lists it); the error is a human-readable reason.
pub fn certificate_serial(der: &[u8]) -> std::result::Result<String, String> {
    CertInfo::parse(der).map(|info| info.serial)
}

/// Formats a time as RFC 3339 (UTC, whole seconds).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 time.
pub(crate) fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::now())
}

/// The fields of a certificate that Ferry looks at.
#[derive(Debug, Clone)]
pub(crate) struct CertInfo {
    /// Serial number, hex of its DER content bytes.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// First common name of the subject, if any.
    pub common_name: Option<String>,
    /// DER `SubjectPublicKeyInfo`.
    pub spki: Vec<u8>,
    /// The raw public key bits inside the SPKI.
    pub public_key: Vec<u8>,
    pub is_ca: bool,
}

impl CertInfo {
    /// Parses a DER certificate; the error is a human-readable reason.
    pub fn parse(der: &[u8]) -> std::result::Result<CertInfo, String> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("cannot parse X.509: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let time = |t: x509_parser::time::ASN1Time| {
            OffsetDateTime::from_unix_timestamp(t.timestamp())
                .map_err(|e| format!("validity date out of range: {e}"))
        };
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Ok(CertInfo {
            serial: hex::encode(cert.raw_serial()),
            not_before: time(cert.validity().not_before)?,
            not_after: time(cert.validity().not_after)?,
            common_name,
            spki: cert.public_key().raw.to_vec(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            is_ca: cert.is_ca(),
        })
    }

    /// Parses a certificate read from `path`, naming the file in the error.
    pub fn parse_file(der: &[u8], path: &Path) -> Result<CertInfo> {
        CertInfo::parse(der).map_err(|reason| CertError::BadCertificate {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// SHA-256 of the public key, hex.
    pub fn fingerprint(&self) -> String {
        spki_fingerprint(&self.spki)
    }

    /// Fails with [`CertError::Expired`] or [`CertError::NotYetValid`] unless `at` is inside the
    /// validity period.
    pub fn check_valid_at(&self, at: OffsetDateTime, path: &Path) -> Result<()> {
        if at > self.not_after {
            return Err(CertError::Expired {
                path: path.to_path_buf(),
                not_after: rfc3339(self.not_after),
            });
        }
        if at < self.not_before {
            return Err(CertError::NotYetValid {
                path: path.to_path_buf(),
                not_before: rfc3339(self.not_before),
            });
        }
        Ok(())
    }
}

/// Verifies that `cert_der` carries a valid signature by the CA's public key and names the CA
/// as its issuer.
pub(crate) fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert_der),
        x509_parser::parse_x509_certificate(ca_der),
    ) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Reads every `CERTIFICATE` block of a PEM file (at least one).
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let text = read_text(path)?;
    certs_from_pem(&text, path)
}

/// Parses every `CERTIFICATE` block of PEM text (at least one); `path` names it in errors.
pub(crate) fn certs_from_pem(text: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let text = read_text(path)?;
    key_from_pem(&text, path)
}

/// Parses the first private key of PEM text; `path` names it in errors.
pub(crate) fn key_from_pem(text: &str, path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        let reason = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block found".to_string()
            }
            other => other.to_string(),
        };
        CertError::Pem {
            path: path.to_path_buf(),
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_format() {
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(rfc3339(t), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), t);
    }

    #[test]
    fn broken_pem_names_the_file() {
        let p = Path::new("x/ca.crt");
        let err = certs_from_pem("hello", p).unwrap_err();
        assert!(err.to_string().starts_with("x/ca.crt: broken PEM"), "{err}");
        let err = certs_from_pem(
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            p,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("x/ca.crt: broken PEM"), "{err}");
        let err = key_from_pem("", Path::new("k.key")).unwrap_err();
        assert!(err.to_string().contains("k.key: broken PEM"), "{err}");
    }

    #[test]
    fn garbage_der_is_a_bad_certificate() {
        let err = CertInfo::parse_file(&[0x30, 0x03, 1, 2, 3], Path::new("s.crt")).unwrap_err();
        assert!(
            err.to_string().starts_with("s.crt: invalid certificate"),
            "{err}"
        );
    }
}
