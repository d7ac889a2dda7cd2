//! The `ferry` binary finding its identity (login, config file, flags), its messages for the
//! likely mistakes, its overwrite refusals and standard input/output transfers, against the
//! real server. Every run gets its own HOME and XDG directories: the user's are never read.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ferry_testkit::data::{pseudo_random, write_file};
use ferry_testkit::pki::Pki;
use ferry_testkit::server::InProcess;

const LOCAL: &str = "local";

/// The real server, served by a runtime of its own while the test runs `ferry` processes.
struct Setup {
    server: InProcess,
    _runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn start() -> Setup {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(InProcess::start_temp(|_| {}));
        Setup {
            server,
            _runtime: runtime,
        }
    }

    fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    fn bundle(&self) -> PathBuf {
        self.server.pki().bundle(LOCAL)
    }
}

/// A user with nothing set up: empty HOME, config and data directories, an empty working
/// directory, and no FERRY_* variables.
struct User {
    home: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn ferry(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("FERRY_") || key.starts_with("XDG_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.config_dir())
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Ran {
        ran(self.ferry().args(args).output().expect("run ferry"))
    }
}

struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn ran(output: Output) -> Ran {
    Ran {
        code: output.status.code().expect("exited"),
        stdout: output.stdout,
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

impl Ran {
    fn out(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap()
    }

    /// The one error line, checked to say nothing twice.
    fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected: {:?}", self.stderr);
        let parts: Vec<&str> = lines[0].split(": ").collect();
        for (i, part) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(part),
                "{part:?} said twice: {}",
                lines[0]
            );
        }
        lines[0]
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn login_then_list_works_from_any_directory_with_only_the_config() {
    let setup = Setup::start();
    let user = User::new();
    let bundle = setup.bundle();
    let login = user.run(&["login", path(&bundle), "--server", &setup.addr()]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    let kept = user.config_dir().join("ferry/identity.bundle.pem");
    let config = user.config_dir().join("ferry/config.toml");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        std::fs::read(&bundle).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&setup.addr()), "{text}");

    // Elsewhere, nothing but the config file.
    let elsewhere = User {
        home: tempfile::tempdir().unwrap(),
        cwd: tempfile::tempdir().unwrap(),
    };
    let mut list = elsewhere.ferry();
    list.env("FERRY_CONFIG", &config).arg("list");
    let listed = ran(list.output().unwrap());
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.out().ends_with("0 file(s), 0 bytes\n"),
        "{}",
        listed.out()
    );

    write_file(user.cwd.path(), "a.txt", b"hello");
    let uploaded = user.run(&["upload", "a.txt"]);
    assert_eq!(uploaded.code, 0, "{}", uploaded.stderr);
    let listed = user.run(&["list"]);
    assert!(listed.out().contains("a.txt"), "{}", listed.out());

    let shown = user.run(&["config"]);
    let out = shown.out();
    assert!(
        out.contains(&format!("(from config file {})", config.display())),
        "{out}"
    );
    assert!(out.contains(path(&kept)), "{out}");
    let json = user.run(&["config", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["server"], setup.addr());
    assert_eq!(value["identity"], path(&kept));
    // A flag still beats the config file, and says so.
    let shown = user.run(&["config", "--server", "nas.lan"]);
    assert!(
        shown.out().contains("nas.lan  (from --server)"),
        "{}",
        shown.out()
    );
}

#[test]
fn login_refuses_a_bundle_whose_key_is_not_its_certificates() {
    let setup = Setup::start();
    let user = User::new();
    let pki = setup.server.pki();
    let mut mixed = std::fs::read_to_string(pki.cert(LOCAL)).unwrap();
    mixed += &std::fs::read_to_string(pki.key("other")).unwrap();
    mixed += &std::fs::read_to_string(pki.ca()).unwrap();
    let bundle = write_file(user.cwd.path(), "mixed.pem", mixed.as_bytes());
    let login = user.run(&["login", path(&bundle), "--server", &setup.addr()]);
    assert_eq!(login.code, 1, "{}", login.stderr);
    assert!(login.error_line().contains("not a usable client bundle"));
    assert!(!user.config_dir().join("ferry/config.toml").exists());
}

#[test]
fn no_identity_says_where_it_looked_and_how_to_get_one() {
    let user = User::new();
    let ran = user.run(&["list"]);
    assert_eq!(ran.code, 6, "{}", ran.stderr);
    let line = ran.error_line();
    assert!(
        line.starts_with("ferry: connect: no client identity found"),
        "{line}"
    );
    for place in [
        user.config_dir().join("ferry/config.toml"),
        user.home
            .path()
            .join("data/ferry/certs/clients/local.bundle.pem"),
        PathBuf::from("certs/ca.crt"),
    ] {
        assert!(line.contains(path(&place)), "{place:?} missing: {line}");
    }
    assert!(
        line.contains("`ferry login BUNDLE --server ADDR`"),
        "{line}"
    );
    assert!(line.contains("`ferry-certs client NAME`"), "{line}");
}

#[test]
fn the_data_directory_bundle_is_found() {
    let setup = Setup::start();
    let user = User::new();
    let data_bundle = user
        .home
        .path()
        .join("data/ferry/certs/clients/local.bundle.pem");
    std::fs::create_dir_all(data_bundle.parent().unwrap()).unwrap();
    std::fs::copy(setup.bundle(), &data_bundle).unwrap();
    let listed = user.run(&["list", "--server", &setup.addr()]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let missing = user.run(&["list", "--identity", "nope.pem"]);
    assert_eq!(missing.code, 6);
    assert_eq!(
        missing.error_line(),
        "ferry: connect: identity from --identity: client credentials: nope.pem: file not found"
    );
}

#[test]
fn connection_refused_says_it_once_with_a_hint() {
    let setup = Setup::start();
    let user = User::new();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let ran = user.run(&[
        "list",
        "--server",
        &addr,
        "--identity",
        path(&setup.bundle()),
    ]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert_eq!(
        ran.error_line(),
        format!(
            "ferry: connect: cannot connect to {addr}: Connection refused (os error 111); \
             is ferry-server running on {addr}? (Ferry's default port is 9000)"
        )
    );
}

#[test]
fn a_server_of_another_ca_is_named() {
    let setup = Setup::start();
    let user = User::new();
    let other = Pki::fresh();
    let bundle = other.bundle(LOCAL);
    let ran = user.run(&[
        "list",
        "--server",
        &setup.addr(),
        "--identity",
        path(&bundle),
    ]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    let line = ran.error_line();
    assert!(
        line.ends_with(&format!(
            "; the server's certificate is not from the CA in {}",
            bundle.display()
        )),
        "{line}"
    );
    assert!(line.contains("invalid peer certificate"), "{line}");
}

#[test]
fn a_client_of_another_ca_is_told_the_server_refused_it() {
    let setup = Setup::start();
    let user = User::new();
    let other = Pki::fresh();
    // Another CA's client that trusts this server's CA.
    let mut pem = std::fs::read_to_string(other.cert(LOCAL)).unwrap();
    pem += &std::fs::read_to_string(other.key(LOCAL)).unwrap();
    pem += &std::fs::read_to_string(setup.server.pki().ca()).unwrap();
    let bundle = write_file(user.cwd.path(), "stranger.pem", pem.as_bytes());
    let ran = user.run(&[
        "list",
        "--server",
        &setup.addr(),
        "--identity",
        path(&bundle),
    ]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    let line = ran.error_line();
    assert!(
        line.ends_with(
            "; the server refused this client's certificate: issued by another CA, or revoked"
        ),
        "{line}"
    );
}

/// A listener that answers every connection as a web server answers a TLS hello.
fn http_listener(addr: &str) -> String {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let bound = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream): Result<TcpStream, _> = stream else {
                continue;
            };
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    bound
}

#[test]
fn the_web_port_is_recognised() {
    let setup = Setup::start();
    let user = User::new();
    let web = http_listener("127.0.0.1:0");
    let ran = user.run(&[
        "list",
        "--server",
        &web,
        "--identity",
        path(&setup.bundle()),
    ]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(
        ran.error_line().ends_with(
            "; not a Ferry server: this looks like the web page (HTTP); Ferry listens on 9000"
        ),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_server_without_a_port_means_port_9000() {
    let setup = Setup::start();
    let user = User::new();
    // A loopback address of its own, so that no other server's port 9000 is in the way.
    http_listener("127.0.0.77:9000");
    let ran = user.run(&[
        "list",
        "--server",
        "127.0.0.77",
        "--identity",
        path(&setup.bundle()),
    ]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(
        ran.error_line().contains("TLS with 127.0.0.77:9000 failed"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("web page (HTTP)"), "{}", ran.stderr);
}

/// `ferry` as the server's `local` client.
fn ferry_at(user: &User, setup: &Setup, args: &[&str]) -> Ran {
    let mut command = user.ferry();
    command
        .args([
            "--server",
            &setup.addr(),
            "--identity",
            path(&setup.bundle()),
        ])
        .args(args);
    ran(command.output().unwrap())
}

#[test]
fn two_sources_for_one_name_are_refused_before_anything_is_sent() {
    let setup = Setup::start();
    let user = User::new();
    let dir = user.cwd.path();
    std::fs::create_dir_all(dir.join("d1")).unwrap();
    std::fs::create_dir_all(dir.join("d2")).unwrap();
    write_file(&dir.join("d1"), "same.txt", b"one");
    write_file(&dir.join("d2"), "same.txt", b"two");
    let ran = ferry_at(&user, &setup, &["upload", "d1/same.txt", "d2/same.txt"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("d1/same.txt and d2/same.txt would both be stored as \"same.txt\""),
        "{}",
        ran.stderr
    );
    let listed = ferry_at(&user, &setup, &["list"]);
    assert!(
        listed.out().ends_with("0 file(s), 0 bytes\n"),
        "{}",
        listed.out()
    );

    let ran = ferry_at(&user, &setup, &["download", "a/x", "b/x"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("\"a/x\" and \"b/x\" would both be written to ./x"),
        "{}",
        ran.stderr
    );
}

#[test]
fn no_clobber_refuses_both_ways() {
    let setup = Setup::start();
    let user = User::new();
    let dir = user.cwd.path();
    write_file(dir, "n.txt", b"first");
    assert_eq!(ferry_at(&user, &setup, &["upload", "n.txt"]).code, 0);
    write_file(dir, "n.txt", b"second");
    write_file(dir, "new.txt", b"new");
    let ran = ferry_at(
        &user,
        &setup,
        &["upload", "--no-clobber", "n.txt", "new.txt"],
    );
    assert_eq!(ran.code, 4, "{}", ran.stderr);
    assert!(
        ran.stderr.contains(
            "ferry: upload n.txt: \"n.txt\" on the server already exists; not replaced (--no-clobber)"
        ),
        "{}",
        ran.stderr
    );
    assert!(ran.out().contains("uploaded new.txt"), "{}", ran.out());
    let stored = std::fs::read(setup.server.stored(LOCAL, "n.txt")).unwrap();
    assert_eq!(stored, b"first");

    let ran = ferry_at(&user, &setup, &["download", "--no-clobber", "n.txt"]);
    assert_eq!(ran.code, 6, "{}", ran.stderr);
    assert_eq!(
        ran.error_line(),
        "ferry: download n.txt: ./n.txt already exists; not replaced (--no-clobber)"
    );
    assert_eq!(std::fs::read(dir.join("n.txt")).unwrap(), b"second");
    // Without it, the download replaces the file.
    assert_eq!(ferry_at(&user, &setup, &["download", "n.txt"]).code, 0);
    assert_eq!(std::fs::read(dir.join("n.txt")).unwrap(), b"first");
}

#[test]
fn a_missing_output_directory_is_reported_as_typed() {
    let setup = Setup::start();
    let user = User::new();
    for (typed, said) in [
        ("/nonexistent/dir/", "/nonexistent/dir/: no such directory"),
        (
            "/nonexistent/dir/f",
            "/nonexistent/dir/f: no such directory /nonexistent/dir",
        ),
    ] {
        let ran = ferry_at(&user, &setup, &["download", "n", "-o", typed]);
        assert_eq!(ran.code, 6, "{}", ran.stderr);
        assert_eq!(ran.error_line(), format!("ferry: download n: {said}"));
    }
}

#[test]
fn standard_input_and_output_carry_files_byte_for_byte() {
    let setup = Setup::start();
    let user = User::new();
    let data = pseudo_random(3 * 1024 * 1024 + 17, 12);
    let mut upload = user.ferry();
    upload
        .args([
            "--server",
            &setup.addr(),
            "--identity",
            path(&setup.bundle()),
        ])
        .args(["upload", "-", "--name", "piped.bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = upload.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let fed = data.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&fed));
    let uploaded = ran(child.wait_with_output().unwrap());
    feeder.join().unwrap().unwrap();
    assert_eq!(uploaded.code, 0, "{}", uploaded.stderr);
    assert!(
        uploaded.out().starts_with("uploaded piped.bin"),
        "{}",
        uploaded.out()
    );
    assert_eq!(
        std::fs::read(setup.server.stored(LOCAL, "piped.bin")).unwrap(),
        data
    );

    let downloaded = ferry_at(&user, &setup, &["download", "piped.bin", "-o", "-"]);
    assert_eq!(downloaded.code, 0, "{}", downloaded.stderr);
    assert!(downloaded.stdout == data, "stdout differs from the upload");
    assert!(
        downloaded.stderr.starts_with("downloaded piped.bin -> -"),
        "{}",
        downloaded.stderr
    );
    assert_eq!(std::fs::read_dir(user.cwd.path()).unwrap().count(), 0);

    // A rotten stored copy: nothing on stdout, exit 5.
    setup.server.rot(LOCAL, "piped.bin", 1000);
    let rotten = ferry_at(&user, &setup, &["download", "piped.bin", "-o", "-"]);
    assert_eq!(rotten.code, 5, "{}", rotten.stderr);
    assert!(rotten.stdout.is_empty());

    let unnamed = ferry_at(&user, &setup, &["upload", "-"]);
    assert_eq!(unnamed.code, 2);
    assert!(
        unnamed.stderr.contains("needs --name"),
        "{}",
        unnamed.stderr
    );
}
