//! The `ferry` binary against the real server (in process, reached through a counting TCP
//! relay): JSON output, human output, exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_core::digest::plain_sha256;
use ferry_core::FileDigest;
use ferry_testkit::data::{pseudo_random, write_file};
use ferry_testkit::proxy::Proxy;
use ferry_testkit::server::InProcess;
use serde_json::Value;

mod support;
use support::{json_lines, run};

const CHUNK: usize = 64 * 1024;
/// The client `ferry` connects as.
const LOCAL: &str = "local";

/// The real server and a relay in front of it, served by a runtime of their own while the
/// test runs `ferry` processes.
struct Setup {
    server: InProcess,
    proxy: Proxy,
    _runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn start() -> Setup {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(InProcess::start_temp(|_| {}));
        let proxy = runtime.block_on(Proxy::start(server.addr));
        Setup {
            server,
            proxy,
            _runtime: runtime,
        }
    }

    /// Where `ferry` connects: the relay.
    fn addr(&self) -> String {
        self.proxy.addr.to_string()
    }

    fn ca(&self) -> PathBuf {
        self.server.pki().ca()
    }

    fn cert(&self) -> PathBuf {
        self.server.pki().cert(LOCAL)
    }

    fn key(&self) -> PathBuf {
        self.server.pki().key(LOCAL)
    }

    /// The server's stored copy of `name`, read from its disk.
    fn stored(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.server.stored(LOCAL, name)).unwrap()
    }
}

/// `ferry` with no FERRY_* variables from the environment and no config file.
fn ferry() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .env("XDG_CONFIG_HOME", "/nonexistent/ferry-test-config")
        .env("FERRY_DATA_DIR", "/nonexistent/ferry-test-data");
    for var in [
        "FERRY_SERVER",
        "FERRY_IDENTITY",
        "FERRY_CERTS",
        "FERRY_CONFIG",
        "FERRY_CA",
        "FERRY_CERT",
        "FERRY_KEY",
        "FERRY_RETRIES",
        "FERRY_PARALLEL",
        "FERRY_LOG",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// `ferry` pointed at `server` with flags.
fn ferry_at(server: &Setup) -> Command {
    let mut command = ferry();
    command
        .arg("--server")
        .arg(server.addr())
        .arg("--ca")
        .arg(server.ca())
        .arg("--cert")
        .arg(server.cert())
        .arg("--key")
        .arg(server.key());
    command
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as the list table shows times (computed with `time`, not
/// with the client's own code).
fn utc(seconds: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(seconds as i64).unwrap();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn digest_hex(bytes: &[u8]) -> String {
    FileDigest::of(bytes, CHUNK as u32).to_string()
}

#[test]
fn json_results_for_every_operation() {
    let server = Setup::start();
    let dir = tempfile::tempdir().unwrap();
    let a = pseudo_random(CHUNK + 1, 1);
    let b = pseudo_random(10, 2);
    let path_a = write_file(dir.path(), "a.bin", &a);
    let path_b = write_file(dir.path(), "b.txt", &b);

    let (code, stdout, stderr) = run(ferry_at(&server)
        .args(["upload", "--json"])
        .arg(&path_a)
        .arg(&path_b));
    assert_eq!(code, 0, "{stderr}");
    let results = json_lines(&stdout);
    assert_eq!(results.len(), 2, "one object per file: {stdout}");
    assert_eq!(results[0]["op"], "upload");
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[0]["name"], "a.bin");
    assert_eq!(results[0]["size"], a.len() as u64);
    assert_eq!(results[0]["digest"], digest_hex(&a));
    assert_eq!(results[0]["chunks"], 2);
    assert_eq!(results[0]["chunks_sent"], 2);
    assert_eq!(results[0]["held_at_start"], 0);
    assert_eq!(results[0]["attempts"], 1);
    assert_eq!(results[0]["verified"], true);
    assert!(results[0]["duration_ms"].is_number());
    assert_eq!(results[1]["name"], "b.txt");

    // Global options after the subcommand, and `--name`.
    let (code, stdout, _) = run(ferry_at(&server)
        .arg("upload")
        .arg(&path_b)
        .args(["--name", "renamed", "--json"]));
    assert_eq!(code, 0);
    assert_eq!(json_lines(&stdout)[0]["name"], "renamed");

    let (code, stdout, _) = run(ferry_at(&server).args(["--json", "list"]));
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(stdout.trim()).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.bin", "b.txt", "renamed"]);
    assert_eq!(list[0]["size"], a.len() as u64);
    assert_eq!(list[0]["digest"], digest_hex(&a));

    // Several names into a directory.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (code, stdout, stderr) = run(ferry_at(&server)
        .args(["download", "a.bin", "b.txt", "--json", "-o"])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let results = json_lines(&stdout);
    assert_eq!(results[0]["op"], "download");
    assert_eq!(results[0]["digest"], digest_hex(&a));
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b);

    // One name to a file path.
    let file = dir.path().join("copy.bin");
    let (code, _, _) = run(ferry_at(&server)
        .args(["download", "a.bin", "-o"])
        .arg(&file));
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(&file).unwrap(), a);

    let (code, stdout, stderr) = run(ferry_at(&server).args(["roundtrip", "--json"]).arg(&path_a));
    assert_eq!(code, 0, "{stderr}");
    let round = &json_lines(&stdout)[0];
    assert_eq!(round["op"], "roundtrip");
    assert_eq!(round["identical"], true);
    assert_eq!(round["uploaded_digest"], digest_hex(&a));
    assert_eq!(round["downloaded_digest"], digest_hex(&a));
    assert_eq!(round["sha256"], plain_sha256(&a).to_string());
    assert_eq!(round["upload"]["chunks_sent"], 0, "already held");

    let (code, stdout, _) = run(ferry_at(&server).args(["delete", "renamed", "--json"]));
    assert_eq!(code, 0);
    assert_eq!(json_lines(&stdout)[0]["op"], "delete");
    assert!(!server.server.stored(LOCAL, "renamed").exists());
    assert_eq!(server.stored("a.bin"), a);
}

#[test]
fn human_output_and_environment_variables() {
    let server = Setup::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(3 * CHUNK, 3);
    let path = write_file(dir.path(), "report.pdf", &bytes);
    let started = unix_now();
    let with_env = |command: &mut Command| {
        command
            .env("FERRY_SERVER", server.addr())
            .env("FERRY_CA", server.ca())
            .env("FERRY_CERT", server.cert())
            .env("FERRY_KEY", server.key());
    };
    let mut command = ferry();
    with_env(&mut command);
    let (code, stdout, stderr) = run(command.arg("upload").arg(&path));
    assert_eq!(code, 0, "{stderr}");
    let expected = format!(
        "uploaded report.pdf  {} bytes  digest {}  verified  (",
        bytes.len(),
        digest_hex(&bytes)
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.contains("held 0, sent 3 chunks)"), "{stdout}");
    assert!(stderr.is_empty(), "no progress bars on a pipe: {stderr:?}");

    let mut command = ferry();
    with_env(&mut command);
    let (code, stdout, _) = run(command.args(["list", "--json"]));
    assert_eq!(code, 0);
    let modified = serde_json::from_str::<Value>(stdout.trim()).unwrap()[0]["modified"]
        .as_u64()
        .expect("a modification time");
    assert!(
        (started..=unix_now()).contains(&modified),
        "{modified} is not the time of the upload"
    );

    let mut command = ferry();
    with_env(&mut command);
    let (code, stdout, _) = run(command.arg("list"));
    assert_eq!(code, 0);
    assert!(stdout.contains("report.pdf"), "{stdout}");
    assert!(stdout.contains(&digest_hex(&bytes)[..16]));
    assert!(stdout.contains(&utc(modified)), "{stdout}");

    let mut command = ferry();
    with_env(&mut command);
    let (code, stdout, _) = run(command.arg("roundtrip").arg(&path));
    assert_eq!(code, 0);
    assert!(stdout.contains("identical"), "{stdout}");
    assert!(
        stdout.contains(&plain_sha256(&bytes).to_string()),
        "{stdout}"
    );

    let mut command = ferry();
    with_env(&mut command);
    let (code, stdout, _) = run(command.args(["--quiet", "delete", "report.pdf"]));
    assert_eq!(code, 0);
    assert!(stdout.is_empty());
}

#[test]
fn several_files_move_over_several_connections_and_report_in_order() {
    let server = Setup::start();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| {
            (
                format!("f{i:02}.bin"),
                pseudo_random(100 + i * (CHUNK / 3), i as u64),
            )
        })
        .collect();
    let mut upload = ferry_at(&server);
    upload.args(["upload", "--json", "-j", "5"]);
    for (name, bytes) in &files {
        upload.arg(write_file(dir.path(), name, bytes));
    }
    // One missing file in the middle: reported in its place, the others still go.
    upload.arg(dir.path().join("missing.bin"));
    upload.arg(write_file(dir.path(), "last.bin", b"last"));
    let (code, stdout, stderr) = run(&mut upload);
    assert_eq!(code, 6, "{stderr}");
    let reports = json_lines(&stdout);
    assert_eq!(reports.len(), files.len() + 2);
    for ((name, bytes), report) in files.iter().zip(&reports) {
        assert_eq!(report["name"], name.as_str());
        assert_eq!(report["digest"], digest_hex(bytes).as_str());
        assert_eq!(&server.stored(name), bytes);
    }
    assert_eq!(reports[files.len()]["ok"], false);
    assert_eq!(reports[files.len() + 1]["name"], "last.bin");

    let out = tempfile::tempdir().unwrap();
    let mut download = ferry_at(&server);
    download
        .args(["download", "--parallel", "3", "-o"])
        .arg(out.path());
    download.args(files.iter().map(|(name, _)| name));
    let (code, stdout, stderr) = run(&mut download);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.proxy.connections(), 5 + 3, "one connection per -j");
    let lines: Vec<&str> = stdout.lines().collect();
    for ((name, bytes), line) in files.iter().zip(&lines) {
        assert!(line.starts_with(&format!("downloaded {name} ")), "{line}");
        assert_eq!(&std::fs::read(out.path().join(name)).unwrap(), bytes);
    }
    let (code, _, stderr) = run(ferry_at(&server).args(["list", "-j", "0"]));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn exit_codes() {
    let server = Setup::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f", b"data");

    // 4: refused by the server.
    let (code, stdout, stderr) = run(ferry_at(&server).args(["download", "missing", "--json"]));
    assert_eq!(code, 4, "{stderr}");
    let error = &json_lines(&stdout)[0];
    assert_eq!(error["ok"], false);
    assert_eq!(error["kind"], "refused");
    assert_eq!(error["code"], "not found");
    assert_eq!(error["exit_code"], 4);
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(!dir.path().join("missing").exists());
    let (code, _, _) = run(ferry_at(&server)
        .arg("upload")
        .arg(&path)
        .args(["--name", "bad/../name"]));
    assert_eq!(code, 4);
    let (code, _, _) = run(ferry_at(&server).args(["delete", "missing"]));
    assert_eq!(code, 4);

    // 5: the server's copy rotted.
    let (code, _, _) = run(ferry_at(&server).arg("upload").arg(&path));
    assert_eq!(code, 0);
    server.server.rot(LOCAL, "f", 0);
    let dest = dir.path().join("rotten");
    let (code, _, stderr) = run(ferry_at(&server).args(["download", "f", "-o"]).arg(&dest));
    assert_eq!(code, 5, "{stderr}");
    assert!(!dest.exists());

    // 6: local file errors.
    let (code, _, stderr) = run(ferry_at(&server)
        .arg("upload")
        .arg(dir.path().join("no-such-file")));
    assert_eq!(code, 6, "{stderr}");
    let (code, _, stderr) = run(ferry_at(&server)
        .arg("--cert")
        .arg(dir.path().join("none.crt"))
        .arg("list"));
    assert_eq!(code, 6, "{stderr}");
    let (code, _, _) = run(ferry_at(&server)
        .args(["download", "f", "-o"])
        .arg(dir.path().join("no/such/dir/file")));
    assert_ne!(code, 0);

    // With several files, ferry goes on and reports the first failure's code.
    let good = write_file(dir.path(), "good", b"ok");
    let (code, stdout, _) = run(ferry_at(&server)
        .args(["upload", "--json"])
        .arg(dir.path().join("absent"))
        .arg(&good));
    assert_eq!(code, 6);
    let results = json_lines(&stdout);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["ok"], false);
    assert_eq!(results[1]["ok"], true);

    // 3: nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stdout, _) = run(ferry_at(&server)
        .args(["list", "--json", "--server"])
        .arg(format!("127.0.0.1:{port}")));
    assert_eq!(code, 3);
    assert_eq!(json_lines(&stdout)[0]["kind"], "connect");

    // 2: usage.
    for args in [
        &[][..],
        &["upload"],
        &["frobnicate"],
        &["list", "--server", "host:notaport"],
    ] {
        let (code, _, _) = run(ferry_at(&server).args(args));
        assert_eq!(code, 2, "{args:?}");
    }
    let (code, _, _) = run(ferry_at(&server)
        .arg("upload")
        .arg(&path)
        .arg(&good)
        .args(["--name", "x"]));
    assert_eq!(code, 2);
    let (code, _, _) = run(ferry_at(&server)
        .args(["download", "a", "b", "-o"])
        .arg(dir.path().join("not-a-dir")));
    assert_eq!(code, 2);

    // 0: help documents the codes.
    let (code, stdout, _) = run(ferry().arg("--help"));
    assert_eq!(code, 0);
    for text in ["Exit codes", "3  could not connect", "6  local file error"] {
        assert!(stdout.contains(text), "{text:?} not in --help");
    }
}

#[test]
fn defaults_are_relative_to_the_working_directory() {
    // `ferry-certs init` writes certs/ca.crt and certs/clients/local.*: run from the
    // directory holding `certs`, no credential flags are needed.
    let server = Setup::start();
    let work = tempfile::tempdir().unwrap();
    copy_dir(&server.server.certs, &work.path().join("certs"));
    let (code, stdout, stderr) = run(ferry()
        .current_dir(work.path())
        .args(["list", "--json", "--server"])
        .arg(server.addr()));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "[]");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_decomposed_name_counts_in_its_nfc_form() {
    let server = Setup::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f", b"accents");
    // 100 × "e" + U+0301: 300 bytes in NFD, 200 in NFC (100 × "é").
    let nfd = "e\u{301}".repeat(100);
    let nfc = "\u{e9}".repeat(100);
    assert_eq!((nfd.len(), nfc.len()), (300, 200));
    let (code, _, stderr) = run(ferry_at(&server)
        .arg("upload")
        .arg(&path)
        .args(["--name", &nfd]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.stored(&nfc), b"accents");
    // Downloads name it either way.
    let dest = dir.path().join("back");
    let (code, _, stderr) = run(ferry_at(&server).args(["download", &nfd, "-o"]).arg(&dest));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"accents");
    // Longer than 255 bytes in NFC too: refused (a path's part is at most 255 bytes).
    let (code, _, stderr) = run(ferry_at(&server)
        .arg("upload")
        .arg(&path)
        .args(["--name", &"e\u{301}".repeat(128)]));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("255"), "{stderr}");
}
