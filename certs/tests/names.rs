//! Client names are issued once: the web page's path (`Ca::issue_client` then
//! `CertDir::record_client`) can never take a name the command line gave, nor a revoked
//! one, and concurrent issuers never both get one name.

use ferry_certs::{init, CertDir, CertError, ClientIdentity, InitOptions, NameStatus, NewClient};

fn fresh() -> (tempfile::TempDir, CertDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    init(&dir, &InitOptions::default()).unwrap();
    (tmp, dir)
}

#[test]
fn the_web_path_cannot_claim_a_command_line_clients_name() {
    let (_tmp, dir) = fresh();
    dir.new_client("phone", &NewClient::default()).unwrap();
    let ca = dir.load_ca().unwrap();
    // What the web page does for a session, with a name that is taken.
    let claimed = ca.issue_client("phone", 1).unwrap();
    let err = dir.record_client(&claimed).unwrap_err();
    assert!(matches!(err, CertError::NameTaken { .. }), "{err}");
    assert_eq!(dir.load_index().unwrap().clients_named("phone").count(), 1);
    // `local`, which the server's first run issues, is taken too.
    let err = dir
        .record_client(&ca.issue_client("local", 1).unwrap())
        .unwrap_err();
    assert!(matches!(err, CertError::NameTaken { .. }), "{err}");

    // A revoked name is not handed out again either.
    dir.revoke("phone").unwrap();
    let err = dir
        .record_client(&ca.issue_client("phone", 1).unwrap())
        .unwrap_err();
    assert!(matches!(err, CertError::NameRevoked { .. }), "{err}");
    let err = dir.new_client("phone", &NewClient::default()).unwrap_err();
    assert!(err.to_string().contains("--reuse-revoked-name"), "{err}");
    assert_eq!(
        dir.load_index().unwrap().name_status("phone"),
        NameStatus::Revoked
    );

    // A free name is recorded, once.
    let web = ca.issue_client("web-0123456789ab", 1).unwrap();
    dir.record_client(&web).unwrap();
    assert!(dir.record_client(&web).is_err());
    assert_eq!(
        ClientIdentity::from_certificate(&web.cert_der)
            .unwrap()
            .name,
        "web-0123456789ab"
    );
}

#[test]
fn concurrent_issuers_never_share_a_name() {
    let (_tmp, dir) = fresh();
    let recorded: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.clone();
                scope.spawn(move || {
                    if i % 2 == 0 {
                        let ca = dir.load_ca().unwrap();
                        let issued = ca.issue_client("web-contested", 1).unwrap();
                        dir.record_client(&issued).is_ok()
                    } else {
                        dir.new_client("web-contested", &NewClient::default())
                            .is_ok()
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(recorded.iter().filter(|ok| **ok).count(), 1, "{recorded:?}");
    let index = dir.load_index().unwrap();
    assert_eq!(index.clients_named("web-contested").count(), 1);
    // Nothing else was lost from the index while they raced.
    assert_eq!(index.clients_named("local").count(), 1);
}

#[test]
fn a_certificate_without_a_client_name_has_no_identity() {
    let (_tmp, dir) = fresh();
    // The server certificate's common name ("Ferry server") is not a client name.
    let pem = std::fs::read(dir.server_cert()).unwrap();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    let err = ClientIdentity::from_certificate(&der).unwrap_err();
    assert!(
        err.to_string()
            .contains("the certificate's common name is not a client name"),
        "{err}"
    );
}

use rustls_pki_types::pem::PemObject;
