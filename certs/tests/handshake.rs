//! rustls loopback handshakes on 127.0.0.1 with the configurations built by the library.

use ferry_certs::rustls::{self, ClientConfig, ServerConfig};
use ferry_certs::{
    client_config, client_config_from_bundle, client_config_from_pem, crypto_provider, init,
    server_config, server_config_with_verifier, CertDir, CertError, ClientIdentity, CrlVersion,
    InitOptions, ReloadableClientVerifier, PROTOCOL_VERSIONS,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What each side saw.
struct Outcome {
    /// The identity the server derived, or the server's handshake error.
    server: Result<ClientIdentity, String>,
    /// What the client read ("hello"), or its error.
    client: Result<String, String>,
}

impl Outcome {
    fn accepted(&self) -> &ClientIdentity {
        let id = self
            .server
            .as_ref()
            .unwrap_or_else(|e| panic!("server refused: {e}"));
        assert_eq!(self.client.as_deref(), Ok("hello"), "client side");
        id
    }

    fn refused(&self, want: &str) {
        match &self.server {
            Ok(id) => panic!("server accepted {id}, expected refusal ({want})"),
            Err(e) => assert!(e.contains(want), "server error {e:?} lacks {want:?}"),
        }
        assert!(self.client.is_err(), "client read {:?}", self.client);
    }
}

/// One connection: the server accepts, completes the handshake, derives the client identity
/// and sends "hello"; the client connects to `server_name` and reads to the end.
fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, server_name: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = std::thread::spawn(move || -> Result<ClientIdentity, String> {
        let (mut sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = rustls::ServerConnection::new(server).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                // Send the alert rustls queued, so the client learns why.
                let _ = conn.write_tls(&mut sock);
                return Err(e.to_string());
            }
        }
        let identity = ClientIdentity::from_peer_certificates(conn.peer_certificates())
            .map_err(|e| e.to_string())?;
        conn.writer().write_all(b"hello").unwrap();
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(&mut sock).map_err(|e| e.to_string())?;
        }
        Ok(identity)
    });

    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let client_result = (|| -> Result<String, String> {
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(TIMEOUT)).unwrap();
        let conn = rustls::ClientConnection::new(client, name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let mut got = String::new();
        tls.read_to_string(&mut got).map_err(|e| e.to_string())?;
        Ok(got)
    })();
    Outcome {
        server: server_thread.join().unwrap(),
        client: client_result,
    }
}

fn setup() -> (tempfile::TempDir, CertDir) {
    setup_named(ferry_certs::DEFAULT_CA_NAME)
}

fn setup_named(ca_name: &str) -> (tempfile::TempDir, CertDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    let options = InitOptions {
        ca_name: ca_name.to_string(),
        ..InitOptions::default()
    };
    init(&dir, &options).unwrap();
    (tmp, dir)
}

fn local_client(dir: &CertDir) -> Arc<ClientConfig> {
    let local = dir.client_paths("local").unwrap();
    Arc::new(client_config(&dir.ca_cert(), &local.cert, &local.key).unwrap())
}

/// A client configuration built directly with rustls, bypassing the library's checks (to
/// present certificates the library would refuse to load, e.g. expired ones).
fn raw_client(ca_pem: &str, cert_pem: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert_pem {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn valid_client_is_accepted_and_identified() {
    let (_tmp, dir) = setup();
    let server = Arc::new(server_config(&dir.server_tls_paths()).unwrap());
    let local = dir.client_paths("local").unwrap();
    let expected =
        ClientIdentity::from_certificate(&CertificateDer::from_pem_file(&local.cert).unwrap())
            .unwrap();
    assert_eq!(expected.name, "local");
    assert_eq!(expected.fingerprint.len(), 64);

    for name in ["localhost", "127.0.0.1"] {
        let id = handshake(server.clone(), local_client(&dir), name)
            .accepted()
            .clone();
        assert_eq!(id, expected, "via {name}");
    }
    // The bundle alone is enough for a client.
    let bundled = Arc::new(client_config_from_bundle(&local.bundle).unwrap());
    assert_eq!(
        handshake(server.clone(), bundled, "localhost").accepted(),
        &expected
    );
    // A client issued in memory (as the web page does) works too.
    let ca = dir.load_ca().unwrap();
    let web = ca.issue_client("browser-7", 1).unwrap();
    let cfg = Arc::new(client_config_from_pem(&web.ca_pem, &web.cert_pem, &web.key_pem).unwrap());
    let id = handshake(server, cfg, "localhost").accepted().clone();
    assert_eq!(id, web.identity());
    assert_eq!(id.name, "browser-7");
}

#[test]
fn revoked_client_is_refused_after_crl_reload() {
    let (_tmp, dir) = setup();
    let verifier = ReloadableClientVerifier::new(&dir.ca_cert(), Some(&dir.crl())).unwrap();
    let server = Arc::new(
        server_config_with_verifier(&dir.server_cert(), &dir.server_key(), verifier.clone())
            .unwrap(),
    );
    let phone = dir.issue_client("phone", 30, false).unwrap();
    let phone_cfg = || {
        let p = dir.client_paths("phone").unwrap();
        Arc::new(client_config(&dir.ca_cert(), &p.cert, &p.key).unwrap())
    };
    assert_eq!(
        handshake(server.clone(), phone_cfg(), "localhost").accepted(),
        &phone.identity()
    );

    let report = dir.revoke("phone").unwrap();
    assert_eq!(report.newly_revoked, vec![phone.serial.clone()]);
    assert_eq!(report.crl_number, 2);
    // Not yet reloaded: the old (empty) CRL is still in force.
    handshake(server.clone(), phone_cfg(), "localhost").accepted();

    assert_eq!(verifier.reload_crl().unwrap(), 1);
    handshake(server.clone(), phone_cfg(), "localhost").refused("Revoked");
    // Other clients are unaffected.
    handshake(server.clone(), local_client(&dir), "localhost").accepted();

    // A fresh server config loading the CRL from the start refuses it too.
    let fresh = Arc::new(server_config(&dir.server_tls_paths()).unwrap());
    handshake(fresh, phone_cfg(), "localhost").refused("Revoked");
}

#[test]
fn crl_of_another_ca_is_rejected_and_old_crl_kept() {
    let (_tmp, dir) = setup();
    let (_tmp2, other) = setup();
    let verifier = ReloadableClientVerifier::new(&dir.ca_cert(), Some(&dir.crl())).unwrap();
    let phone = dir.issue_client("phone", 30, false).unwrap();
    dir.revoke("phone").unwrap();
    assert_eq!(verifier.reload_crl().unwrap(), 1);

    std::fs::copy(other.crl(), dir.crl()).unwrap();
    let err = verifier.reload_crl().unwrap_err();
    assert!(matches!(err, CertError::BadCrl { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("crl.pem: invalid CRL: not signed by the CA"),
        "{err}"
    );
    std::fs::write(dir.crl(), "garbage").unwrap();
    let err = verifier.reload_crl().unwrap_err();
    assert!(err.to_string().contains("crl.pem: broken PEM"), "{err}");

    // The previously loaded CRL still refuses the revoked client.
    let server = Arc::new(
        server_config_with_verifier(&dir.server_cert(), &dir.server_key(), verifier).unwrap(),
    );
    let cfg =
        Arc::new(client_config_from_pem(&phone.ca_pem, &phone.cert_pem, &phone.key_pem).unwrap());
    handshake(server, cfg, "localhost").refused("Revoked");
}

#[test]
fn client_of_another_ca_is_refused() {
    let (_tmp, dir) = setup();
    let server = Arc::new(server_config(&dir.server_tls_paths()).unwrap());
    // Another installation with the same default CA name (the signature check refuses it), and
    // one with a different CA name (no issuer found).
    for (other_name, want) in [
        (ferry_certs::DEFAULT_CA_NAME, "BadSignature"),
        ("Someone Else CA", "UnknownIssuer"),
    ] {
        let (_tmp2, other) = setup_named(other_name);
        let foreign = other.client_paths("local").unwrap();
        // Trusts our CA (so it accepts the server) but presents the other CA's certificate.
        let cfg = Arc::new(
            client_config_from_pem(
                &read(&dir.ca_cert()),
                &read(&foreign.cert),
                &read(&foreign.key),
            )
            .unwrap(),
        );
        handshake(server.clone(), cfg, "localhost").refused(want);
    }
}

#[test]
fn client_trusts_only_its_ca() {
    let (_tmp, dir) = setup();
    for (other_name, want) in [
        (ferry_certs::DEFAULT_CA_NAME, "BadSignature"),
        ("Someone Else CA", "UnknownIssuer"),
    ] {
        let (_tmp2, other) = setup_named(other_name);
        // The other installation's server: our client must refuse it.
        let server = Arc::new(server_config(&other.server_tls_paths()).unwrap());
        let outcome = handshake(server, local_client(&dir), "localhost");
        let err = outcome.client.unwrap_err();
        assert!(err.contains(want), "{err}");
        assert!(outcome.server.is_err());
    }
}

#[test]
fn expired_client_is_refused() {
    let (_tmp, dir) = setup();
    let server = Arc::new(server_config(&dir.server_tls_paths()).unwrap());
    let ca = dir.load_ca().unwrap();
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let old = ca
        .issue_client_with_validity("old", now - 3 * day, now - day)
        .unwrap();
    // The library refuses to build a client from it, with a clear error...
    let err = client_config_from_pem(&old.ca_pem, &old.cert_pem, &old.key_pem).unwrap_err();
    assert!(matches!(err, CertError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("certificate expired at"), "{err}");
    // ...and a client that presents it anyway is refused by the server.
    let cfg = raw_client(ca.cert_pem(), Some((&old.cert_pem, &old.key_pem)));
    handshake(server, cfg, "localhost").refused("certificate expired");
}

#[test]
fn client_without_certificate_is_refused() {
    let (_tmp, dir) = setup();
    let server = Arc::new(server_config(&dir.server_tls_paths()).unwrap());
    let cfg = raw_client(&read(&dir.ca_cert()), None);
    handshake(server, cfg, "localhost").refused("peer sent no certificates");
}

#[test]
fn identity_is_stable_for_the_same_key() {
    let (_tmp, dir) = setup();
    let server = Arc::new(server_config(&dir.server_tls_paths()).unwrap());
    let local = dir.client_paths("local").unwrap();
    let first = handshake(server.clone(), local_client(&dir), "localhost")
        .accepted()
        .clone();
    let second = handshake(server.clone(), local_client(&dir), "localhost")
        .accepted()
        .clone();
    assert_eq!(first, second);

    // Re-certify the same key under another name and serial: same fingerprint.
    let key_pem = read(&local.key);
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&read(&dir.ca_key())).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read(&dir.ca_cert()), ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "local-renewed");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let renewed = params.signed_by(&key, &issuer).unwrap();
    assert_ne!(
        renewed.der().as_ref(),
        CertificateDer::from_pem_file(&local.cert).unwrap().as_ref()
    );
    let offline = ClientIdentity::from_certificate(renewed.der()).unwrap();
    assert_eq!(offline.fingerprint, first.fingerprint);
    assert_eq!(offline.name, "local-renewed");

    let cfg =
        Arc::new(client_config_from_pem(&read(&dir.ca_cert()), &renewed.pem(), &key_pem).unwrap());
    let third = handshake(server, cfg, "localhost").accepted().clone();
    assert_eq!(third.fingerprint, first.fingerprint);
    assert_eq!(third.name, "local-renewed");

    // A different key gives a different fingerprint.
    let other = dir.issue_client("other", 1, false).unwrap();
    assert_ne!(other.identity().fingerprint, first.fingerprint);

    // `renew` keeps the name, and the key unless asked for a new one.
    let server = Arc::new(server_config(&dir.server_tls_paths()).unwrap());
    dir.renew("local", &ferry_certs::Renewal::default())
        .unwrap();
    let renewed = handshake(server.clone(), local_client(&dir), "localhost")
        .accepted()
        .clone();
    assert_eq!(renewed, first);
    let new_key = ferry_certs::Renewal {
        new_key: true,
        ..Default::default()
    };
    dir.renew("local", &new_key).unwrap();
    let rekeyed = handshake(server, local_client(&dir), "localhost")
        .accepted()
        .clone();
    assert_eq!(rekeyed.name, "local");
    assert_ne!(rekeyed.fingerprint, first.fingerprint);
}

#[test]
fn server_config_reports_bad_files() {
    let (_tmp, dir) = setup();
    let local = dir.client_paths("local").unwrap();
    // A key that does not match its certificate.
    let mut paths = dir.server_tls_paths();
    paths.server_key = local.key.clone();
    let err = server_config(&paths).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: private key does not match the certificate {}",
            local.key.display(),
            dir.server_cert().display()
        )
    );
    // Missing files.
    let mut paths = dir.server_tls_paths();
    paths.crl = Some(dir.root().join("nope.pem"));
    let err = server_config(&paths).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: file not found", dir.root().join("nope.pem").display())
    );
    // A client certificate is not a CA.
    let err = ReloadableClientVerifier::new(&local.cert, None).unwrap_err();
    assert!(matches!(err, CertError::NotCa { .. }), "{err}");
    // Broken PEM in the key.
    std::fs::write(
        dir.server_key(),
        "-----BEGIN PRIVATE KEY-----\n@@@\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = server_config(&dir.server_tls_paths()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: broken PEM", dir.server_key().display())),
        "{err}"
    );
}

#[test]
fn a_crl_from_memory_is_loaded_when_the_ca_signed_it() {
    let (_tmp, dir) = setup();
    let (_tmp2, other) = setup();
    // A verifier without a CRL file, as an instance whose CRL comes from a shared database.
    let verifier = ReloadableClientVerifier::new(&dir.ca_cert(), None).unwrap();
    let server = Arc::new(
        server_config_with_verifier(&dir.server_cert(), &dir.server_key(), verifier.clone())
            .unwrap(),
    );
    let phone = dir.issue_client("phone", 30, false).unwrap();
    let phone_cfg = || {
        Arc::new(client_config_from_pem(&phone.ca_pem, &phone.cert_pem, &phone.key_pem).unwrap())
    };
    let first = std::fs::read(dir.crl()).unwrap();
    dir.revoke("phone").unwrap();
    let revoked = std::fs::read(dir.crl()).unwrap();
    let origin = Path::new("the database");
    let (v1, v2) = (
        CrlVersion::of_pem(&first, origin).unwrap(),
        CrlVersion::of_pem(&revoked, origin).unwrap(),
    );
    assert_eq!((v1.number, v2.number), (1, 2));
    assert!(v2 > v1);
    assert!(CrlVersion::of_pem(b"garbage", origin).is_err());

    handshake(server.clone(), phone_cfg(), "localhost").accepted();
    assert_eq!(verifier.load_crl_pem(&revoked, origin).unwrap(), 1);
    handshake(server.clone(), phone_cfg(), "localhost").refused("Revoked");
    // Another CA's CRL is refused and the loaded one stays in force.
    let foreign = std::fs::read(other.crl()).unwrap();
    let err = verifier.load_crl_pem(&foreign, origin).unwrap_err();
    assert!(err.to_string().contains("not signed by the CA"), "{err}");
    handshake(server, phone_cfg(), "localhost").refused("Revoked");
}
