//! Why the device pins the server's key, and that the pin is computed the way
//! the documentation says: a stolen device certificate whose common name is
//! the server's DNS name passes embedded-tls's own checks (it chains to the
//! CA; no extended key usage check), and only the pin refuses it.
mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::{dial, read_cert, signing_key, Monotonic, PowerLoss, WallClock};
use ferry_certs::rustls::pki_types::pem::PemObject;
use ferry_certs::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ferry_certs::rustls::{ServerConfig, ServerConnection, StreamOwned};
use ferry_certs::{init, Ca, CertDir, InitOptions, IssuedClient, PROTOCOL_VERSIONS};
use ferry_firmware_client::embedded_tls::blocking::{
    Aes128GcmSha256, Certificate, CryptoProvider, TlsConfig, TlsConnection, TlsContext, TlsError,
    TlsVerifier,
};
use ferry_firmware_client::embedded_tls::pki::CertVerifier;
use ferry_firmware_client::{
    device_config, spki_sha256, Error, FirmwareClient, Identity, ServerPin, SmallBuffers,
};
use rand_core::OsRng;

/// A TLS server on 127.0.0.1 presenting `chain`/`key`, requiring no client
/// certificate; it completes one handshake and then waits for the peer to close.
fn tls_server(chain: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> SocketAddr {
    let config = ServerConfig::builder_with_provider(ferry_certs::crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![chain], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let connection = ServerConnection::new(config.clone()).unwrap();
            let mut tls = StreamOwned::new(connection, stream);
            std::thread::spawn(move || {
                let _ = tls.conn.complete_io(&mut tls.sock);
                let mut buf = [0u8; 256];
                while let Ok(n) = std::io::Read::read(&mut tls, &mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

struct Pki {
    _root: tempfile::TempDir,
    dir: CertDir,
    ca: Ca,
}

fn pki() -> Pki {
    let root = tempfile::tempdir().unwrap();
    let dir = CertDir::new(root.path().join("certs"));
    init(&dir, &InitOptions::default()).unwrap();
    let ca = dir.load_ca().unwrap();
    Pki {
        _root: root,
        dir,
        ca,
    }
}

/// embedded-tls with its `rustpki` verifier and nothing more.
struct Unpinned {
    verifier: CertVerifier<'static, Aes128GcmSha256, WallClock, 1536>,
}

impl CryptoProvider for Unpinned {
    type CipherSuite = Aes128GcmSha256;
    type Signature = ferry_firmware_client::p256::ecdsa::DerSignature;
    fn rng(&mut self) -> impl ferry_firmware_client::CryptoRngCore {
        OsRng
    }
    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }
}

fn handshake_without_pin(addr: SocketAddr, ca_der: &'static [u8]) -> Result<(), TlsError> {
    let mut read = vec![0u8; 17 * 1024];
    let mut write = vec![0u8; 17 * 1024];
    let mut tls = TlsConnection::<_, Aes128GcmSha256>::new(dial(addr), &mut read, &mut write);
    let config = TlsConfig::new().with_server_name("localhost");
    let provider = Unpinned {
        verifier: CertVerifier::new(Certificate::X509(ca_der)),
    };
    tls.open(TlsContext::new(&config, provider))
}

fn device_identity<'a>(device: &'a IssuedClient, ca_der: &'a [u8], pin: ServerPin) -> Identity<'a> {
    Identity {
        certificate: &device.cert_der,
        key: signing_key(&device.key_der()),
        ca: ca_der,
        server_name: "localhost",
        server_pin: pin,
    }
}

fn connect(identity: Identity<'_>, addr: SocketAddr) -> Result<(), Error<PowerLoss>> {
    let mut buffers = SmallBuffers::new();
    let mut client: FirmwareClient<'_, OsRng, Monotonic, WallClock> = FirmwareClient::new(
        buffers.buffers(),
        identity,
        device_config(),
        OsRng,
        Monotonic(Instant::now()),
    );
    client.connect(dial(addr), |_| Ok(()))
}

#[test]
fn a_stolen_device_certificate_passes_embedded_tls_but_not_the_pin() {
    let pki = pki();
    let ca_der: &'static [u8] = read_cert(&pki.dir.ca_cert()).leak();
    // The attacker's "server": a device certificate from the same CA, whose
    // common name is the server's DNS name, and that device's key.
    let stolen = pki.ca.issue_client("localhost", 30).unwrap();
    let addr = tls_server(stolen.cert_der.clone(), stolen.key_der());

    // embedded-tls alone accepts it: it chains to the CA and its CN matches.
    handshake_without_pin(addr, ca_der).expect("rustpki alone accepts the stolen certificate");

    // The device client pins the real server's key and refuses it.
    let server_pin = spki_sha256(&read_cert(&pki.dir.server_cert())).unwrap();
    let device = pki.ca.issue_client("device-1", 30).unwrap();
    let identity = device_identity(&device, ca_der, server_pin);
    let result = connect(identity, addr);
    assert!(matches!(result, Err(Error::ServerPin)), "{result:?}");
}

#[test]
fn the_pinned_key_under_another_name_is_refused() {
    let pki = pki();
    let ca_der: &'static [u8] = read_cert(&pki.dir.ca_cert()).leak();
    let server_der = read_cert(&pki.dir.server_cert());
    let server_key = PrivateKeyDer::from_pem_file(pki.dir.server_key()).unwrap();
    let addr = tls_server(CertificateDer::from(server_der.clone()), server_key);
    let device = pki.ca.issue_client("device-1", 30).unwrap();
    let mut identity = device_identity(&device, ca_der, spki_sha256(&server_der).unwrap());
    identity.server_name = "other.example";
    let result = connect(identity, addr);
    assert!(
        matches!(result, Err(Error::Tls(TlsError::InvalidCertificate))),
        "{result:?}"
    );
}

#[test]
fn the_pin_is_the_sha256_of_the_subject_public_key_info() {
    let pki = pki();
    // Against x509-parser (ferry-certs' fingerprints).
    let device = pki.ca.issue_client("device-1", 30).unwrap();
    assert_eq!(
        hex::encode(spki_sha256(&device.cert_der).unwrap().0),
        device.fingerprint
    );
    let server_der = read_cert(&pki.dir.server_cert());
    let pin = spki_sha256(&server_der).unwrap();
    // (A server certificate has no client identity: its fingerprint is in the index.)
    let server_entry = pki
        .dir
        .list()
        .unwrap()
        .into_iter()
        .find(|e| e.kind == ferry_certs::CertKind::Server)
        .unwrap();
    assert_eq!(hex::encode(pin.0), server_entry.fingerprint);
    assert_eq!(ServerPin::from_hex(&hex::encode(pin.0)), Some(pin));
    // Against the command in the documentation, where openssl is installed.
    if let Some(from_openssl) = openssl_pin(&pki.dir.server_cert()) {
        assert_eq!(from_openssl, hex::encode(pin.0));
    }
}

fn openssl_pin(cert: &Path) -> Option<String> {
    let command = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
        cert.display()
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let hex = text.split_whitespace().next()?;
    (hex.len() == 64).then(|| hex.to_string())
}
