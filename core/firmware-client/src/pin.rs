//! Server key pinning on top of embedded-tls's `rustpki` chain check (feature
//! `ca-chain`, on by default), or in place of it.
//!
//! embedded-tls verifies that the server's certificate chains to the one CA it
//! is given and that a DNS name matches, but it does not check the extended key
//! usage (serverAuth), the basic constraints of the certificates in the chain,
//! or IP address SANs. Every device certificate is issued by the same CA as the
//! server's, so without more, anyone holding one device's certificate and key
//! (read out of a stolen device) could present it as the server's (its common
//! name may even be the server's DNS name), or sign a new "server" certificate
//! with it. The device therefore also pins the server's key: the SHA-256 of the
//! server certificate's DER `SubjectPublicKeyInfo`, given to it at provisioning.
//! A pin on the key rather than on the whole certificate survives the renewal of
//! the server certificate as long as the key is kept.

use core::cell::Cell;

#[cfg(feature = "ca-chain")]
use embedded_tls::blocking::Certificate;
use embedded_tls::blocking::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, TlsClock, TlsError,
    TlsVerifier,
};
#[cfg(feature = "ca-chain")]
use embedded_tls::pki::CertVerifier;
use sha2::{Digest as _, Sha256};

/// The SHA-256 of a server certificate's DER `SubjectPublicKeyInfo`.
///
/// Get it from the server's certificate with
/// `openssl x509 -in certs/server.crt -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`
/// (64 hex digits; [`ServerPin::from_hex`] parses them), or with [`spki_sha256`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPin(pub [u8; 32]);

impl ServerPin {
    /// Parses 64 hex digits (either case); `None` if it is anything else.
    pub const fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            let (Some(hi), Some(lo)) = (nibble(hex[2 * i]), nibble(hex[2 * i + 1])) else {
                return None;
            };
            out[i] = hi << 4 | lo;
            i += 1;
        }
        Some(Self(out))
    }
}

const fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The pin of a DER certificate: SHA-256 of its `SubjectPublicKeyInfo`, or
/// `None` if the certificate does not parse that far.
pub fn spki_sha256(certificate_der: &[u8]) -> Option<ServerPin> {
    spki(certificate_der).map(|spki| ServerPin(Sha256::digest(spki).into()))
}

/// The DER `SubjectPublicKeyInfo` (tag and length included) inside a DER X.509
/// certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }`.
pub fn spki(certificate_der: &[u8]) -> Option<&[u8]> {
    let (tag, certificate, _) = tlv(certificate_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer, validity, subject
    for expected in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
        let (tag, _, after) = tlv(rest)?;
        if tag != expected {
            return None;
        }
        rest = after;
    }
    let (tag, _, after) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    Some(&rest[..rest.len() - after.len()])
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;

/// One DER element at the start of `input`: (tag, contents, the bytes after it).
/// Single-byte tags and definite lengths of up to four bytes, as DER has.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().try_fold(0usize, |len, &b| {
            len.checked_mul(256)?.checked_add(usize::from(b))
        })?
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// Largest server certificate message kept between the certificate and its
/// signature check (the chain as sent; Ferry's server sends one P-256
/// certificate of about 600 bytes).
pub const MAX_SERVER_CHAIN: usize = 1536;

/// `rustpki`'s chain and name check, preceded by the key pin on the end-entity
/// certificate. `Clock` gives the time for validity checks
/// ([`embedded_tls::blocking::NoClock`]: none; the pin still binds the key).
#[cfg(feature = "ca-chain")]
pub(crate) struct PinnedVerifier<'a, 'f, Clock: TlsClock> {
    inner: CertVerifier<'a, Aes128GcmSha256, Clock, MAX_SERVER_CHAIN>,
    pin: ServerPin,
    /// Set when the server's key did not match, to tell it from other failures.
    mismatch: &'f Cell<bool>,
}

#[cfg(feature = "ca-chain")]
impl<'a, 'f, Clock: TlsClock> PinnedVerifier<'a, 'f, Clock> {
    pub(crate) fn new(ca_der: &'a [u8], pin: ServerPin, mismatch: &'f Cell<bool>) -> Self {
        Self {
            inner: CertVerifier::new(Certificate::X509(ca_der)),
            pin,
            mismatch,
        }
    }
}

#[cfg(feature = "ca-chain")]
impl<Clock: TlsClock> TlsVerifier<Aes128GcmSha256> for PinnedVerifier<'_, '_, Clock> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        TlsVerifier::<Aes128GcmSha256>::set_hostname_verification(&mut self.inner, hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &Sha256,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        let pinned = match cert.entries.first() {
            Some(CertificateEntryRef::X509(der)) => spki_sha256(der) == Some(self.pin),
            _ => false,
        };
        if !pinned {
            self.mismatch.set(true);
            return Err(TlsError::InvalidCertificate);
        }
        self.inner.verify_certificate(transcript, cert)
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        TlsVerifier::<Aes128GcmSha256>::verify_signature(&mut self.inner, verify)
    }
}

/// Without the `ca-chain` feature: the server is recognised by its pinned key
/// alone. The certificate is read only for its `SubjectPublicKeyInfo`, whose
/// SHA-256 must be the pin; the key then verifies the handshake's
/// CertificateVerify signature (ECDSA P-256, SHA-256), which proves the server
/// holds it. The CA chain, the DNS name and the validity period are not
/// checked: the pin already names the one key the device accepts, and leaving
/// out embedded-tls's X.509 parser saves about 27 KiB of flash.
#[cfg(not(feature = "ca-chain"))]
pub(crate) struct PinnedVerifier<'a, 'f, Clock: TlsClock> {
    pin: ServerPin,
    mismatch: &'f Cell<bool>,
    server_key: Option<p256::ecdsa::VerifyingKey>,
    transcript: Option<Sha256>,
    _unused: core::marker::PhantomData<(&'a [u8], Clock)>,
}

#[cfg(not(feature = "ca-chain"))]
impl<'a, 'f, Clock: TlsClock> PinnedVerifier<'a, 'f, Clock> {
    pub(crate) fn new(_ca_der: &'a [u8], pin: ServerPin, mismatch: &'f Cell<bool>) -> Self {
        Self {
            pin,
            mismatch,
            server_key: None,
            transcript: None,
            _unused: core::marker::PhantomData,
        }
    }
}

/// The SEC1 point in a `SubjectPublicKeyInfo` (its BIT STRING, without the
/// unused-bits byte).
#[cfg(not(feature = "ca-chain"))]
fn subject_public_key(spki: &[u8]) -> Option<&[u8]> {
    let (tag, info, _) = tlv(spki)?;
    let (_algorithm, _, rest) = tlv(info).filter(|(tag, _, _)| *tag == SEQUENCE)?;
    let (tag_bits, bits, _) = tlv(rest)?;
    match (tag, tag_bits, bits.split_first()) {
        (SEQUENCE, BIT_STRING, Some((0, point))) => Some(point),
        _ => None,
    }
}

#[cfg(not(feature = "ca-chain"))]
const BIT_STRING: u8 = 0x03;

#[cfg(not(feature = "ca-chain"))]
impl<Clock: TlsClock> TlsVerifier<Aes128GcmSha256> for PinnedVerifier<'_, '_, Clock> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &Sha256,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        let spki = match cert.entries.first() {
            Some(CertificateEntryRef::X509(der)) => spki(der),
            _ => None,
        };
        let Some(spki) = spki.filter(|spki| Sha256::digest(spki).as_slice() == self.pin.0) else {
            self.mismatch.set(true);
            return Err(TlsError::InvalidCertificate);
        };
        let key = subject_public_key(spki)
            .and_then(|point| p256::ecdsa::VerifyingKey::from_sec1_bytes(point).ok())
            .ok_or(TlsError::InvalidCertificate)?;
        self.server_key = Some(key);
        self.transcript = Some(transcript.clone());
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        use p256::ecdsa::signature::Verifier as _;
        let (Some(key), Some(transcript)) = (self.server_key.take(), self.transcript.take()) else {
            return Err(TlsError::InvalidHandshake);
        };
        if !matches!(
            verify.signature_scheme,
            embedded_tls::SignatureScheme::EcdsaSecp256r1Sha256
        ) {
            return Err(TlsError::InvalidSignatureScheme);
        }
        // RFC 8446 4.4.3: 64 spaces, the context string, then the transcript hash.
        const CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";
        let mut message = [0x20u8; 64 + CONTEXT.len() + 32];
        message[64..64 + CONTEXT.len()].copy_from_slice(CONTEXT);
        message[64 + CONTEXT.len()..].copy_from_slice(&transcript.finalize());
        let signature = p256::ecdsa::Signature::from_der(verify.signature)
            .map_err(|_| TlsError::DecodeError)?;
        key.verify(&message, &signature)
            .map_err(|_| TlsError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_pins() {
        let pin =
            ServerPin::from_hex("00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff")
                .unwrap();
        assert_eq!(pin.0[0], 0x00);
        assert_eq!(pin.0[1], 0x11);
        assert_eq!(pin.0[15], 0xff);
        assert_eq!(pin.0[31], 0xff);
        assert_eq!(ServerPin::from_hex("00"), None);
        assert_eq!(
            ServerPin::from_hex("g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
            None
        );
    }

    #[test]
    fn malformed_certificates_have_no_key() {
        assert_eq!(spki(&[]), None);
        assert_eq!(spki(&[0x30]), None);
        assert_eq!(spki(&[0x30, 0x82, 0xff, 0xff, 0x30]), None);
        assert_eq!(spki(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(spki(&[0x30, 0x02, 0x30, 0x00]), None);
    }
}
