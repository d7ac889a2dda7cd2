//! The certificate authority: loading it, and issuing server and client certificates and CRLs
//! in memory.

use crate::error::{CertError, Result};
use crate::identity::ClientIdentity;
use crate::names::{parse_san, validate_ca_name, validate_client_name, San};
use crate::x509::{self, now, rfc3339, CertInfo};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use time::{Duration, OffsetDateTime};

/// Default common name of a new CA.
pub const DEFAULT_CA_NAME: &str = "Ferry CA";
/// Default CA validity, in days (about ten years).
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default server certificate validity, in days.
pub const DEFAULT_SERVER_DAYS: u32 = 825;
/// Default client certificate validity, in days.
pub const DEFAULT_CLIENT_DAYS: u32 = 365;
/// Subject alternative names every server certificate carries.
pub const DEFAULT_SERVER_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Common name of the server certificate.
pub const SERVER_COMMON_NAME: &str = "Ferry server";
/// How far `notBefore` (and a CRL's `thisUpdate`) is set in the past, to tolerate peers whose
/// clock is slightly behind.
pub const BACKDATE: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Longest validity accepted for any certificate, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// The self-signed certificate authority.
    Ca,
    /// The server certificate (extended key usage serverAuth).
    Server,
    /// A client certificate (extended key usage clientAuth).
    Client,
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertKind::Ca => "ca",
            CertKind::Server => "server",
            CertKind::Client => "client",
        })
    }
}

/// A freshly issued certificate and its private key, in memory.
///
/// Nothing is written to disk: [`crate::CertDir::issue_client`] does that (and records the
/// certificate in the index); the web page can hand these PEM strings straight to a browser.
#[derive(Clone)]
pub struct IssuedCert {
    /// The client name (its common name), or `server` for the server certificate.
    pub name: String,
    /// Server or client.
    pub kind: CertKind,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The private key (ECDSA P-256, PKCS#8), PEM. Secret.
    pub key_pem: String,
    /// The issuing CA's certificate, PEM.
    pub ca_pem: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Start of validity (backdated by [`BACKDATE`]).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo (same as
    /// [`ClientIdentity::fingerprint`]).
    pub fingerprint: String,
}

/// A client certificate issued in memory (see [`IssuedCert`]).
pub type IssuedClient = IssuedCert;

impl IssuedCert {
    /// Certificate, private key and CA certificate concatenated (PEM): everything a device
    /// needs, in one file.
    pub fn bundle_pem(&self) -> String {
        let mut s = String::new();
        for part in [&self.cert_pem, &self.key_pem, &self.ca_pem] {
            s.push_str(part);
            if !part.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }

    /// The private key as DER, for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        // The key was produced by this crate, so it is valid PEM.
        x509::key_from_pem(&self.key_pem, Path::new("issued key")).expect("issued key is valid PEM")
    }

    /// The identity a server derives when this certificate connects.
    pub fn identity(&self) -> ClientIdentity {
        ClientIdentity {
            fingerprint: self.fingerprint.clone(),
            name: self.name.clone(),
        }
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("serial", &self.serial)
            .field("fingerprint", &self.fingerprint)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[secret]")
            .finish_non_exhaustive()
    }
}

/// A revoked serial number for [`Ca::sign_crl`].
#[derive(Debug, Clone)]
pub struct RevokedSerial {
    /// Serial number bytes (as in the certificate).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub revoked_at: SystemTime,
}

/// The certificate authority: its certificate and signing key.
///
/// Load it with [`Ca::load`]; it issues client and server certificates and CRLs in memory.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    info: CertInfo,
    issuer: Issuer<'static, KeyPair>,
    cert_path: PathBuf,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_path", &self.cert_path)
            .field("common_name", &self.info.common_name)
            .field("serial", &self.info.serial)
            .field("not_after", &rfc3339(self.info.not_after))
            .finish_non_exhaustive()
    }
}

/// A certificate to issue.
pub(crate) struct IssueRequest<'a> {
    pub kind: CertKind,
    pub name: &'a str,
    pub sans: Vec<San>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: Vec<u8>,
    /// The key to certify (a renewal that keeps its key); `None` generates a new one.
    pub key: Option<KeyPair>,
}

/// A random positive 16-byte serial number (first byte 0x01..=0x7f so that its DER encoding
/// is exactly these 16 bytes).
pub(crate) fn random_serial() -> Vec<u8> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut buf = [0u8; 16];
    provider
        .secure_random
        .fill(&mut buf)
        .expect("the system random number generator failed");
    buf[0] = (buf[0] & 0x7f).max(1);
    buf.to_vec()
}

/// Validity from now (minus [`BACKDATE`]) for `days` days.
pub(crate) fn validity_days(days: u32) -> Result<(OffsetDateTime, OffsetDateTime)> {
    if days == 0 || days > MAX_DAYS {
        return Err(CertError::InvalidValidity {
            reason: format!("{days} days: must be between 1 and {MAX_DAYS}"),
        });
    }
    let now = now();
    Ok((
        now - Duration::try_from(BACKDATE).unwrap_or(Duration::minutes(5)),
        now + Duration::days(i64::from(days)),
    ))
}

fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::generate("ECDSA P-256 key", e))
}

/// Reads an ECDSA P-256 private key (PEM) to certify again, as a renewal that keeps the key
/// does.
pub(crate) fn load_key(path: &Path) -> Result<KeyPair> {
    let pem = crate::fsutil::read_text(path)?;
    let der = x509::key_from_pem(&pem, path)?;
    let key = KeyPair::try_from(&der).map_err(|e| CertError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !key.is_compatible(&PKCS_ECDSA_P256_SHA256) {
        return Err(CertError::BadKey {
            path: path.to_path_buf(),
            reason: "not an ECDSA P-256 key".into(),
        });
    }
    Ok(key)
}

fn to_system(t: OffsetDateTime) -> SystemTime {
    SystemTime::from(t)
}

impl Ca {
    /// Loads `ca.crt` and `ca.key` from a certificate directory.
    ///
    /// Fails, naming the file, if either is missing or broken, if the key does not match the
    /// certificate, if the certificate is not a CA or has expired.
    pub fn load(dir: impl AsRef<Path>) -> Result<Ca> {
        let dir = dir.as_ref();
        Ca::load_files(&dir.join(crate::CA_CERT), &dir.join(crate::CA_KEY))
    }

    /// Loads a CA from explicit certificate and key paths (see [`Ca::load`]).
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<Ca> {
        let cert_pem = crate::fsutil::read_text(cert_path)?;
        let key_pem = crate::fsutil::read_text(key_path)?;
        let certs = x509::certs_from_pem(&cert_pem, cert_path)?;
        let cert_der = certs.into_iter().next().expect("at least one certificate");
        let info = CertInfo::parse_file(&cert_der, cert_path)?;
        if !info.is_ca {
            return Err(CertError::NotCa {
                path: cert_path.to_path_buf(),
            });
        }
        info.check_valid_at(now(), cert_path)?;
        let key_der = x509::key_from_pem(&key_pem, key_path)?;
        let key = KeyPair::try_from(&key_der).map_err(|e| CertError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if key.public_key_raw() != info.public_key.as_slice() {
            return Err(CertError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CertError::BadCertificate {
                path: cert_path.to_path_buf(),
                reason: format!("cannot use it as an issuer: {e}"),
            })?;
        Ok(Ca {
            cert_pem: x509_pem(&cert_der),
            cert_der,
            info,
            issuer,
            cert_path: cert_path.to_path_buf(),
        })
    }

    /// Generates a new self-signed CA (ECDSA P-256, basicConstraints CA:true pathlen 0, key
    /// usage keyCertSign + cRLSign). Returns the CA and its private key PEM; `cert_path` is
    /// where the certificate will be written (used in later error messages).
    pub(crate) fn generate(name: &str, days: u32, cert_path: &Path) -> Result<(Ca, String)> {
        validate_ca_name(name)?;
        let (not_before, not_after) = validity_days(days)?;
        let key = new_key()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        let cert = params
            .self_signed(&key)
            .map_err(|e| CertError::generate("CA certificate", e))?;
        let key_pem = key.serialize_pem();
        let cert_der = cert.der().clone();
        let info = CertInfo::parse_file(&cert_der, cert_path)?;
        let issuer = Issuer::new(params, key);
        Ok((
            Ca {
                cert_pem: cert.pem(),
                cert_der,
                info,
                issuer,
                cert_path: cert_path.to_path_buf(),
            },
            key_pem,
        ))
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA's common name.
    pub fn common_name(&self) -> &str {
        self.info.common_name.as_deref().unwrap_or("")
    }

    /// The CA certificate's serial number, hex.
    pub fn serial(&self) -> &str {
        &self.info.serial
    }

    /// Hex SHA-256 of the CA's SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        self.info.fingerprint()
    }

    /// End of the CA's validity.
    pub fn not_after(&self) -> SystemTime {
        to_system(self.info.not_after)
    }

    /// Where the CA certificate was loaded from (or will be written to).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Issues a client certificate for `name`, valid for `days` days, in memory.
    ///
    /// `name` must be a safe identifier (see [`crate::validate_client_name`]); it becomes the
    /// common name. The certificate has extended key usage clientAuth, a new ECDSA P-256 key
    /// and a random 16-byte serial. Nothing is written or recorded: see
    /// [`crate::CertDir::issue_client`] for that.
    pub fn issue_client(&self, name: &str, days: u32) -> Result<IssuedClient> {
        let (not_before, not_after) = validity_days(days)?;
        self.issue(IssueRequest {
            kind: CertKind::Client,
            name,
            sans: Vec::new(),
            not_before,
            not_after,
            serial: random_serial(),
            key: None,
        })
    }

    /// Issues a client certificate with an explicit validity period, in memory.
    ///
    /// Mostly for tests (a certificate that has already expired) and for callers that want
    /// short-lived certificates. `not_after` must be after `not_before`.
    pub fn issue_client_with_validity(
        &self,
        name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedClient> {
        self.issue(IssueRequest {
            kind: CertKind::Client,
            name,
            sans: Vec::new(),
            not_before: OffsetDateTime::from(not_before),
            not_after: OffsetDateTime::from(not_after),
            serial: random_serial(),
            key: None,
        })
    }

    /// Issues a server certificate in memory, with extended key usage serverAuth and the given
    /// subject alternative names (DNS names or IP addresses; [`DEFAULT_SERVER_SANS`] are always
    /// included).
    pub fn issue_server(&self, extra_sans: &[String], days: u32) -> Result<IssuedCert> {
        let (not_before, not_after) = validity_days(days)?;
        self.issue(IssueRequest {
            kind: CertKind::Server,
            name: SERVER_COMMON_NAME,
            sans: server_sans(extra_sans)?,
            not_before,
            not_after,
            serial: random_serial(),
            key: None,
        })
    }

    /// Issues a certificate as requested. The end of validity is capped at the CA's own.
    pub(crate) fn issue(&self, req: IssueRequest<'_>) -> Result<IssuedCert> {
        if req.kind == CertKind::Client {
            validate_client_name(req.name)?;
        }
        if req.kind == CertKind::Ca {
            return Err(CertError::InvalidValidity {
                reason: "a CA cannot be issued by another CA here".into(),
            });
        }
        let mut not_after = req.not_after;
        if not_after > self.info.not_after {
            tracing::warn!(
                "{}: capping the certificate's validity at the CA's end of validity {}",
                req.name,
                rfc3339(self.info.not_after)
            );
            not_after = self.info.not_after;
        }
        if not_after <= req.not_before {
            return Err(CertError::InvalidValidity {
                reason: format!(
                    "end {} is not after start {}",
                    rfc3339(not_after),
                    rfc3339(req.not_before)
                ),
            });
        }
        let key = match req.key {
            Some(key) => key,
            None => new_key()?,
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match req.kind {
            CertKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
            _ => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.subject_alt_names = req
            .sans
            .iter()
            .map(|san| match san {
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                San::Dns(d) => d
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| CertError::InvalidSan { san: d.clone() }),
            })
            .collect::<Result<_>>()?;
        params.not_before = req.not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&req.serial));
        params.use_authority_key_identifier_extension = true;
        let what = format!("{} certificate {:?}", req.kind, req.name);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CertError::generate(what.clone(), e))?;
        let info =
            CertInfo::parse(cert.der()).map_err(|reason| CertError::Internal { what, reason })?;
        Ok(IssuedCert {
            name: req.name.to_string(),
            kind: req.kind,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
            serial: info.serial.clone(),
            not_before: to_system(info.not_before),
            not_after: to_system(info.not_after),
            fingerprint: info.fingerprint(),
        })
    }

    /// Signs a CRL (PEM) with the given CRL number listing the given revoked serials.
    ///
    /// `thisUpdate` is now minus [`BACKDATE`]; `nextUpdate` is the end of the CA's validity
    /// (Ferry re-signs the CRL at every revocation and its server does not enforce
    /// `nextUpdate`, so a far date avoids a CRL that "expires" under other tools).
    pub fn sign_crl(&self, crl_number: u64, revoked: &[RevokedSerial]) -> Result<String> {
        let this_update = now() - Duration::try_from(BACKDATE).unwrap_or(Duration::minutes(5));
        let next_update = self.info.not_after.max(this_update + Duration::days(1));
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&minimal_be(crl_number)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: OffsetDateTime::from(r.revoked_at),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(|e| CertError::generate(format!("CRL number {crl_number}"), e))?;
        crl.pem()
            .map_err(|e| CertError::generate(format!("CRL number {crl_number}"), e))
    }

    /// Whether `cert_der` was signed by this CA.
    pub fn issued(&self, cert_der: &[u8]) -> bool {
        x509::issued_by(cert_der, &self.cert_der)
    }

    pub(crate) fn info(&self) -> &CertInfo {
        &self.info
    }
}

/// Big-endian bytes of `n` without leading zero bytes (at least one byte).
fn minimal_be(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes[start..].to_vec()
}

/// The default SANs followed by `extra` (validated, duplicates removed).
pub(crate) fn server_sans(extra: &[String]) -> Result<Vec<San>> {
    let mut sans: Vec<San> = Vec::new();
    for s in DEFAULT_SERVER_SANS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        let san = parse_san(s)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// PEM text of a DER certificate, with LF line endings like rcgen's `Certificate::pem`.
pub(crate) fn x509_pem(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca() -> Ca {
        Ca::generate("Test CA", 30, Path::new("mem/ca.crt"))
            .unwrap()
            .0
    }

    #[test]
    fn load_reports_expired_and_non_ca_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = now() - Duration::days(10);
        params.not_after = now() - Duration::days(1);
        let cert = params.self_signed(&key).unwrap();
        let (crt, k) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let err = Ca::load(dir.path()).unwrap_err();
        assert!(matches!(err, CertError::Expired { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: certificate expired at", crt.display())),
            "{err}"
        );

        params.is_ca = IsCa::ExplicitNoCa;
        params.not_after = now() + Duration::days(1);
        std::fs::write(&crt, params.self_signed(&key).unwrap().pem()).unwrap();
        let err = Ca::load(dir.path()).unwrap_err();
        assert!(matches!(err, CertError::NotCa { .. }), "{err}");

        std::fs::write(&k, "not a key").unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        std::fs::write(&crt, params.self_signed(&key).unwrap().pem()).unwrap();
        let err = Ca::load(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: broken PEM", k.display())),
            "{err}"
        );
    }

    #[test]
    fn minimal_be_strips_zeros() {
        assert_eq!(minimal_be(0), vec![0]);
        assert_eq!(minimal_be(1), vec![1]);
        assert_eq!(minimal_be(0x1234), vec![0x12, 0x34]);
        assert_eq!(minimal_be(0x80), vec![0x80]);
    }

    #[test]
    fn pem_matches_rcgen() {
        let ca = test_ca();
        // cert_pem came from rcgen; our encoder must agree on the same DER.
        assert_eq!(x509_pem(ca.cert_der()), ca.cert_pem());
        for len in 0..5 {
            let der: Vec<u8> = (0..len).collect();
            let pem = x509_pem(&der);
            let back = x509::certs_from_pem(&pem, Path::new("t")).map(|v| v[0].to_vec());
            if len == 0 {
                assert!(back.is_err() || back.unwrap().is_empty());
            } else {
                assert_eq!(back.unwrap(), der);
            }
        }
    }

    #[test]
    fn serial_is_positive_16_bytes() {
        for _ in 0..64 {
            let s = random_serial();
            assert_eq!(s.len(), 16);
            assert!(s[0] >= 1 && s[0] <= 0x7f);
        }
    }

    #[test]
    fn issues_client_with_expected_fields() {
        let ca = test_ca();
        assert_eq!(ca.common_name(), "Test CA");
        let c = ca.issue_client("phone", 10).unwrap();
        assert_eq!(c.kind, CertKind::Client);
        assert_eq!(c.serial.len(), 32);
        assert!(ca.issued(&c.cert_der));
        let info = CertInfo::parse(&c.cert_der).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("phone"));
        assert!(!info.is_ca);
        let identity = ClientIdentity::from_certificate(&c.cert_der).unwrap();
        assert_eq!(identity, c.identity());
        assert_eq!(identity.fingerprint.len(), 64);
        let (_, cert) = x509_parser::parse_x509_certificate(&c.cert_der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        // backdated by five minutes
        let skew = SystemTime::now().duration_since(c.not_before).unwrap();
        assert!(skew >= std::time::Duration::from_secs(299), "{skew:?}");
        let bundle = c.bundle_pem();
        assert!(bundle.starts_with(&c.cert_pem));
        assert!(bundle.contains(&c.key_pem));
        assert!(bundle.ends_with(ca.cert_pem()));
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn refuses_bad_names_and_validity() {
        let ca = test_ca();
        assert!(matches!(
            ca.issue_client("../x", 1),
            Err(CertError::InvalidName { .. })
        ));
        assert!(matches!(
            ca.issue_client("x", 0),
            Err(CertError::InvalidValidity { .. })
        ));
        let t = SystemTime::now();
        assert!(matches!(
            ca.issue_client_with_validity("x", t, t),
            Err(CertError::InvalidValidity { .. })
        ));
    }

    #[test]
    fn validity_is_capped_at_the_ca() {
        let ca = test_ca();
        let c = ca.issue_client("long", 1000).unwrap();
        assert_eq!(c.not_after, ca.not_after());
    }

    #[test]
    fn server_has_default_and_extra_sans() {
        let ca = test_ca();
        let s = ca
            .issue_server(&["ferry.lan".into(), "localhost".into()], 10)
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&s.cert_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.iter().any(|n| n.contains("ferry.lan")));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(matches!(
            ca.issue_server(&["bad name".into()], 10),
            Err(CertError::InvalidSan { .. })
        ));
    }

    #[test]
    fn crl_lists_revoked_serials() {
        let ca = test_ca();
        let c = ca.issue_client("gone", 10).unwrap();
        let pem = ca
            .sign_crl(
                7,
                &[RevokedSerial {
                    serial: hex::decode(&c.serial).unwrap(),
                    revoked_at: SystemTime::now(),
                }],
            )
            .unwrap();
        let der =
            rustls_pki_types::CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        assert_eq!(crl.crl_number().unwrap().to_string(), "7");
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, vec![c.serial.clone()]);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        crl.verify_signature(ca_cert.public_key()).unwrap();
    }

    use rustls_pki_types::pem::PemObject;
}
