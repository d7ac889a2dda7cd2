//! Runs the real `ferry-certs` binary and checks its output with the `openssl` command line.
//!
//! openssl is required: if it is missing these tests fail (CI installs it).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferry-certs");

fn ferry(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("FERRY_CERTS")
        .env_remove("FERRY_CERTS_DIR")
        .env_remove("FERRY_DATA_DIR")
        .output()
        .expect("run ferry-certs")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ferry-certs failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "ferry-certs should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs openssl in `dir`; panics (never skips) if openssl cannot be run.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}): it is required by these tests; install it (apt-get install openssl)")
        })
}

fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "openssl {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

const KEYS: [&str; 4] = [
    "ca.key",
    "server.key",
    "clients/local.key",
    "clients/local.bundle.pem",
];
const ALL: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "clients/local.crt",
    "clients/local.key",
    "clients/local.bundle.pem",
    "crl.pem",
];

#[test]
fn init_produces_certificates_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let out = ok(&ferry(
        &dir,
        &["init", "--san", "ferry.example", "--san", "10.1.2.3"],
    ));
    for f in ALL {
        assert!(dir.join(f).is_file(), "{f} missing");
        assert!(
            out.contains(&format!("created  {}", dir.join(f).display())),
            "{out}"
        );
    }

    openssl_ok(&dir, &["verify", "-CAfile", "ca.crt", "server.crt"]);
    openssl_ok(&dir, &["verify", "-CAfile", "ca.crt", "clients/local.crt"]);
    openssl_ok(
        &dir,
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.crt",
            "server.crt",
        ],
    );
    openssl_ok(
        &dir,
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.crt",
            "clients/local.crt",
        ],
    );
    // The wrong purposes are refused, so the EKUs are really there.
    assert!(!openssl(
        &dir,
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.crt",
            "server.crt"
        ]
    )
    .status
    .success());
    assert!(!openssl(
        &dir,
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.crt",
            "clients/local.crt"
        ]
    )
    .status
    .success());
    // The CRL is signed by the CA (openssl prints "verify OK") and has number 1.
    let crl = openssl_ok(
        &dir,
        &["crl", "-in", "crl.pem", "-CAfile", "ca.crt", "-noout"],
    );
    assert!(crl.contains("verify OK"), "{crl}");
    let crl_text = openssl_ok(&dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(
        crl_text.contains("X509v3 CRL Number: \n                1\n"),
        "{crl_text}"
    );
    assert!(crl_text.contains("No Revoked Certificates"), "{crl_text}");
    // With the CRL checked, both still verify.
    openssl_ok(
        &dir,
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca.crt",
            "server.crt",
            "clients/local.crt",
        ],
    );

    // Extensions and key type.
    let ca = openssl_ok(&dir, &["x509", "-in", "ca.crt", "-noout", "-text"]);
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("Certificate Sign, CRL Sign"), "{ca}");
    assert!(ca.contains("prime256v1") || ca.contains("P-256"), "{ca}");
    assert!(ca.contains("CN = Ferry CA"), "{ca}");
    let server = openssl_ok(&dir, &["x509", "-in", "server.crt", "-noout", "-text"]);
    for want in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "DNS:ferry.example",
        "IP Address:10.1.2.3",
        "TLS Web Server Authentication",
        "prime256v1",
    ] {
        assert!(server.contains(want), "server.crt lacks {want}:\n{server}");
    }
    let client = openssl_ok(
        &dir,
        &["x509", "-in", "clients/local.crt", "-noout", "-text"],
    );
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(client.contains("CN = local"), "{client}");
    // The keys are the certificates' keys.
    for (crt, key) in [
        ("ca.crt", "ca.key"),
        ("server.crt", "server.key"),
        ("clients/local.crt", "clients/local.key"),
    ] {
        let a = openssl_ok(&dir, &["x509", "-in", crt, "-noout", "-pubkey"]);
        let b = openssl_ok(&dir, &["pkey", "-in", key, "-pubout"]);
        assert_eq!(a, b, "{key} does not match {crt}");
    }
    // The bundle: client certificate, key, CA certificate, in that order.
    let bundle = std::fs::read_to_string(dir.join("clients/local.bundle.pem")).unwrap();
    let local_crt = std::fs::read_to_string(dir.join("clients/local.crt")).unwrap();
    let local_key = std::fs::read_to_string(dir.join("clients/local.key")).unwrap();
    let ca_crt = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    assert_eq!(bundle, format!("{local_crt}{local_key}{ca_crt}"));
    openssl_ok(
        &dir,
        &["verify", "-CAfile", "ca.crt", "clients/local.bundle.pem"],
    );

    #[cfg(unix)]
    {
        for f in KEYS {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        for f in ["ca.crt", "server.crt", "clients/local.crt", "crl.pem"] {
            assert_eq!(mode(&dir.join(f)), 0o644, "{f}");
        }
    }

    // A second init overwrites nothing and says what exists.
    let before: Vec<Vec<u8>> = ALL
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let out = ok(&ferry(&dir, &["init"]));
    for f in ALL {
        assert!(
            out.contains(&format!("exists   {} (kept)", dir.join(f).display())),
            "{f} not reported:\n{out}"
        );
    }
    assert!(out.contains("already initialised"), "{out}");
    assert!(!out.contains("created"), "{out}");
    let after: Vec<Vec<u8>> = ALL
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    assert_eq!(before, after, "a second init changed files");

    // --force replaces the CA.
    ok(&ferry(&dir, &["init", "--force", "--ca-name", "Other CA"]));
    assert_ne!(std::fs::read(dir.join("ca.key")).unwrap(), before[1]);
    let ca = openssl_ok(&dir, &["x509", "-in", "ca.crt", "-noout", "-subject"]);
    assert!(ca.contains("Other CA"), "{ca}");
    openssl_ok(
        &dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "server.crt",
            "clients/local.crt",
        ],
    );
    #[cfg(unix)]
    for f in KEYS {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f} after --force");
    }
}

#[test]
fn client_revoke_and_list() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    ok(&ferry(&dir, &["init"]));

    let out = ok(&ferry(&dir, &["client", "phone-1", "--days", "30"]));
    assert!(out.contains("phone-1.bundle.pem"), "{out}");
    for f in [
        "clients/phone-1.crt",
        "clients/phone-1.key",
        "clients/phone-1.bundle.pem",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join("clients/phone-1.key")), 0o600);
        assert_eq!(mode(&dir.join("clients/phone-1.bundle.pem")), 0o600);
    }
    openssl_ok(
        &dir,
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.crt",
            "clients/phone-1.crt",
        ],
    );
    let enddate = openssl_ok(
        &dir,
        &["x509", "-in", "clients/phone-1.crt", "-noout", "-enddate"],
    );
    let serial = openssl_ok(
        &dir,
        &["x509", "-in", "clients/phone-1.crt", "-noout", "-serial"],
    );
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    assert_eq!(serial.len(), 32, "{serial}");
    assert!(!enddate.is_empty());

    // A name is issued once: a second `client` is refused, pointing at `renew`.
    let key = std::fs::read(dir.join("clients/phone-1.key")).unwrap();
    let err = fails(&ferry(&dir, &["client", "phone-1"]));
    assert!(
        err.contains("client name \"phone-1\" is already issued")
            && err.contains("`ferry-certs renew phone-1`"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("clients/phone-1.key")).unwrap(), key);
    // Files of a name the index does not hold are not overwritten without --force.
    std::fs::copy(
        dir.join("clients/phone-1.key"),
        dir.join("clients/stray.key"),
    )
    .unwrap();
    let err = fails(&ferry(&dir, &["client", "stray"]));
    assert!(err.contains("stray.key: already exists"), "{err}");

    // Unsafe names are refused with a clear message.
    for bad in ["../evil", ".hidden", "a/b", "a b", ""] {
        let err = fails(&ferry(&dir, &["client", bad]));
        assert!(err.contains("invalid client name"), "{bad}: {err}");
    }
    assert!(!tmp.path().join("evil.key").exists());

    // list shows the serial, a fingerprint prefix, RFC 3339 expiry and "no".
    let list = ok(&ferry(&dir, &["list"]));
    let line = list
        .lines()
        .find(|l| l.contains("phone-1"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains(&serial), "{line}");
    assert!(line.trim_end().ends_with("no"), "{line}");
    assert!(list.lines().any(|l| l.starts_with("ca ")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("server ")), "{list}");
    assert!(list.lines().any(|l| l.contains(" local ")), "{list}");

    // Revoke: new CRL with a higher number listing the serial, signed by the CA.
    let out = ok(&ferry(&dir, &["revoke", "phone-1"]));
    assert!(out.contains(&serial), "{out}");
    let crl = openssl_ok(
        &dir,
        &[
            "crl", "-in", "crl.pem", "-CAfile", "ca.crt", "-noout", "-text",
        ],
    );
    assert!(crl.contains("verify OK"), "{crl}");
    assert!(
        crl.contains("X509v3 CRL Number: \n                2\n"),
        "{crl}"
    );
    assert!(crl.contains(&serial.to_ascii_uppercase()), "{crl}");
    let refused = openssl(
        &dir,
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca.crt",
            "clients/phone-1.crt",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("certificate revoked")
            || String::from_utf8_lossy(&refused.stderr).contains("certificate revoked")
    );
    openssl_ok(
        &dir,
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca.crt",
            "clients/local.crt",
        ],
    );
    let list = ok(&ferry(&dir, &["list"]));
    let line = list.lines().find(|l| l.contains("phone-1")).unwrap();
    assert!(line.trim_end().ends_with("yes"), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ferry(&dir, &["list", "--json"]))).unwrap();
    let entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "phone-1")
        .unwrap();
    assert_eq!(entry["serial"], serial.as_str());
    assert_eq!(entry["fingerprint"].as_str().unwrap().len(), 64);
    assert!(entry["revoked_at"].is_string());

    // Revoking again re-signs with a still higher number; unknown names are an error.
    ok(&ferry(&dir, &["revoke", "phone-1"]));
    let crl = openssl_ok(&dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(
        crl.contains("X509v3 CRL Number: \n                3\n"),
        "{crl}"
    );
    let err = fails(&ferry(&dir, &["revoke", "nobody"]));
    assert!(
        err.contains("index.json: no client named \"nobody\""),
        "{err}"
    );

    // The server command refuses to replace the key without --force, then replaces it.
    let err = fails(&ferry(&dir, &["server", "--san", "nas.lan"]));
    assert!(err.contains("already exists"), "{err}");
    ok(&ferry(&dir, &["server", "--san", "nas.lan", "--force"]));
    let server = openssl_ok(
        &dir,
        &[
            "x509",
            "-in",
            "server.crt",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(server.contains("DNS:nas.lan"), "{server}");
    openssl_ok(
        &dir,
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.crt",
            "server.crt",
        ],
    );
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("server.key")), 0o600);

    // Serials in the index are unique.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let serials: Vec<&str> = index["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["serial"].as_str().unwrap())
        .collect();
    let mut unique = serials.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(serials.len(), unique.len());
    assert_eq!(serials.len(), 5); // ca, server, local, phone-1, new server
}

#[test]
fn env_dir_and_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("from-env");
    let out = Command::new(BIN)
        .arg("init")
        .env("FERRY_CERTS_DIR", &dir)
        .output()
        .unwrap();
    ok(&out);
    assert!(dir.join("ca.crt").is_file());

    // Missing CA.
    let empty = tmp.path().join("empty");
    let err = fails(&ferry(&empty, &["client", "x"]));
    assert!(
        err.contains(&format!(
            "{}: file not found",
            empty.join("ca.crt").display()
        )),
        "{err}"
    );
    assert!(err.contains("ferry-certs init"), "{err}");

    // Broken PEM.
    std::fs::copy(dir.join("ca.crt"), tmp.path().join("ca.crt.good")).unwrap();
    std::fs::write(
        dir.join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = fails(&ferry(&dir, &["client", "x"]));
    assert!(err.contains("ca.crt: broken PEM"), "{err}");

    // A key that does not match its certificate.
    std::fs::copy(tmp.path().join("ca.crt.good"), dir.join("ca.crt")).unwrap();
    std::fs::copy(dir.join("server.key"), dir.join("ca.key")).unwrap();
    let err = fails(&ferry(&dir, &["client", "x"]));
    assert!(
        err.contains("ca.key: private key does not match the certificate"),
        "{err}"
    );
    // init checks existing files too, and refuses rather than overwrite.
    let err = fails(&ferry(&dir, &["init"]));
    assert!(err.contains("ca.key: private key does not match"), "{err}");

    // A CA certificate without its key.
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let err = fails(&ferry(&dir, &["init"]));
    assert!(err.contains("ca.key: missing while"), "{err}");
    assert!(!dir.join("ca.key").exists());
}

/// The certificate's serial (lower-case hex) and public key (PEM), read by openssl.
fn serial_and_key(dir: &Path, cert: &str) -> (String, String) {
    let serial = openssl_ok(dir, &["x509", "-in", cert, "-noout", "-serial"]);
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    (
        serial,
        openssl_ok(dir, &["x509", "-in", cert, "-noout", "-pubkey"]),
    )
}

/// Whether openssl accepts `cert` against the CA and the current CRL.
fn verifies_with_crl(dir: &Path, cert: &str) -> bool {
    openssl(
        dir,
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca.crt",
            cert,
        ],
    )
    .status
    .success()
}

#[test]
fn renew_revoke_one_serial_and_revoked_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    ok(&ferry(&dir, &["init"]));
    ok(&ferry(&dir, &["client", "phone"]));
    let crt = "clients/phone.crt";
    let (first, first_key) = serial_and_key(&dir, crt);
    let key_file = std::fs::read(dir.join("clients/phone.key")).unwrap();

    // renew: same key, new certificate and bundle; the old one stays valid.
    let out = ok(&ferry(&dir, &["renew", "phone", "--days", "10"]));
    let (second, second_key) = serial_and_key(&dir, crt);
    assert_ne!(second, first);
    assert_eq!(second_key, first_key, "renew keeps the key");
    assert_eq!(
        std::fs::read(dir.join("clients/phone.key")).unwrap(),
        key_file
    );
    assert!(
        out.contains(&format!(
            "note: earlier certificate {first} of phone stays valid"
        )),
        "{out}"
    );
    let bundle = std::fs::read_to_string(dir.join("clients/phone.bundle.pem")).unwrap();
    assert!(bundle.starts_with(&std::fs::read_to_string(dir.join(crt)).unwrap()));

    // renew --new-key: a new key too.
    ok(&ferry(&dir, &["renew", "phone", "--new-key"]));
    let (third, third_key) = serial_and_key(&dir, crt);
    assert_ne!(third_key, first_key);
    assert_ne!(
        std::fs::read(dir.join("clients/phone.key")).unwrap(),
        key_file
    );
    openssl_ok(&dir, &["x509", "-in", crt, "-noout", "-checkend", "0"]);

    // revoke --serial: exactly that certificate.
    let out = ok(&ferry(
        &dir,
        &["revoke", "--serial", &first.to_ascii_uppercase()],
    ));
    assert!(
        out.contains(&format!("revoked  phone serial {first}")),
        "{out}"
    );
    let crl = openssl_ok(&dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(crl.contains(&first.to_ascii_uppercase()), "{crl}");
    assert!(!crl.contains(&second.to_ascii_uppercase()), "{crl}");
    assert!(verifies_with_crl(&dir, crt));
    let err = fails(&ferry(&dir, &["revoke", "--serial", "0123abcd"]));
    assert!(err.contains("no certificate with serial 0123abcd"), "{err}");

    // renew --revoke-old: the other earlier certificate goes too.
    let out = ok(&ferry(&dir, &["renew", "phone", "--revoke-old"]));
    assert!(
        out.contains(&format!("revoked  phone serial {second}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("revoked  phone serial {third}")),
        "{out}"
    );
    assert!(verifies_with_crl(&dir, crt));

    // A revoked name is not issued again, by `client`, `client --force` or `renew`,
    // unless the operator says so.
    ok(&ferry(&dir, &["revoke", "phone"]));
    assert!(!verifies_with_crl(&dir, crt));
    for args in [
        &["client", "phone"][..],
        &["client", "phone", "--force"],
        &["renew", "phone"],
    ] {
        let err = fails(&ferry(&dir, args));
        assert!(
            err.contains("client name \"phone\" was revoked")
                && err.contains("--reuse-revoked-name"),
            "{args:?}: {err}"
        );
    }
    let err = fails(&ferry(&dir, &["renew", "nobody"]));
    assert!(err.contains("no client named \"nobody\""), "{err}");
    ok(&ferry(
        &dir,
        &["client", "phone", "--force", "--reuse-revoked-name"],
    ));
    assert!(verifies_with_crl(&dir, crt));

    // `client --force` is `renew --new-key`: a new key, the name kept.
    let (before, before_key) = serial_and_key(&dir, crt);
    ok(&ferry(&dir, &["client", "phone", "--force"]));
    let (after, after_key) = serial_and_key(&dir, crt);
    assert_ne!(after, before);
    assert_ne!(after_key, before_key);
}

#[test]
fn one_name_for_the_certificate_directory_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str], envs: &[(&str, &Path)]| {
        let mut command = Command::new(BIN);
        command.args(args);
        for key in ["FERRY_CERTS", "FERRY_CERTS_DIR", "FERRY_DATA_DIR"] {
            command.env_remove(key);
        }
        command.env("XDG_DATA_HOME", tmp.path().join("xdg"));
        for (key, value) in envs {
            command.env(key, value);
        }
        command.output().unwrap()
    };
    // --certs, FERRY_CERTS, and the older --dir / FERRY_CERTS_DIR name one directory.
    let dir = tmp.path().join("certs");
    ok(&run(&["--certs", dir.to_str().unwrap(), "init"], &[]));
    assert!(dir.join("ca.crt").is_file());
    assert!(ok(&run(&["list"], &[("FERRY_CERTS", &dir)])).contains(" local "));
    assert!(ok(&run(&["list"], &[("FERRY_CERTS_DIR", &dir)])).contains(" local "));
    let elsewhere = tmp.path().join("elsewhere");
    let out = ok(&run(
        &["list", "--dir", elsewhere.to_str().unwrap()],
        &[("FERRY_CERTS", &dir)],
    ));
    assert!(
        out.contains("elsewhere/index.json: no certificates recorded"),
        "flag over env: {out}"
    );
    // FERRY_CERTS wins over the older name.
    assert!(ok(&run(
        &["list"],
        &[("FERRY_CERTS", &dir), ("FERRY_CERTS_DIR", &elsewhere)]
    ))
    .contains(" local "));

    // No flag and no variable: DATA/certs, as ferry-server.
    let data = tmp.path().join("data");
    ok(&run(&["init"], &[("FERRY_DATA_DIR", &data)]));
    assert!(data.join("certs/ca.crt").is_file());
    assert!(data.join("certs/clients/local.bundle.pem").is_file());
}
