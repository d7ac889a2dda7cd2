//! Trees with the `ferry` binary against the real server: upload -r / download -r round
//! trips with layout, modes and times; hostile local trees; list; delete -r; sync both ways,
//! with --delete, and interrupted by killing the server (a process of its own: this test
//! binary run again as `serve_in_child`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use ferry_core::digest::plain_sha256;
use ferry_testkit::data::{pseudo_random, write_pseudo_random};
use ferry_testkit::server::InProcess;
use serde_json::Value;

mod support;
use support::{json_lines, run};

/// Where a server is and the identity bundle of the client `ferry` connects as.
struct Target {
    addr: String,
    identity: PathBuf,
}

/// The real server in this process, on a runtime of its own.
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

    fn target(&self) -> Target {
        Target {
            addr: self.server.addr.to_string(),
            identity: self.server.pki().bundle("local"),
        }
    }
}

/// `ferry` pointed at `target`, with no FERRY_* variables and no config file.
fn ferry(target: &Target) -> Command {
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
        .arg("--server")
        .arg(&target.addr)
        .arg("--identity")
        .arg(&target.identity);
    command
}

/// The last line of a tree command's --json output: its summary.
fn summary(stdout: &str) -> Value {
    let lines = json_lines(stdout);
    let last = lines.last().expect("a summary line").clone();
    assert_eq!(last["summary"], true, "{stdout}");
    last
}

fn mtime(path: &Path) -> u64 {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    modified.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Every regular file below `root`: relative path -> (SHA-256 of its bytes, mode, mtime).
fn snapshot(root: &Path) -> BTreeMap<String, (String, u32, u64)> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let mode = meta.permissions().mode() & 0o777;
                let digest = plain_sha256(&std::fs::read(&path).unwrap()).to_string();
                files.insert(relative, (digest, mode, mtime(&path)));
            }
        }
    }
    files
}

/// A tree with nested folders, an empty file, a file bigger than a chunk, unicode and NFD
/// names, a read-only file and an old modification time. Returns its root, `DIR/photos`.
fn sample_tree(dir: &Path) -> PathBuf {
    let root = dir.join("photos");
    std::fs::create_dir_all(root.join("2024/summer")).unwrap();
    std::fs::create_dir_all(root.join("写真")).unwrap();
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    std::fs::write(
        root.join("2024/summer/beach.jpg"),
        pseudo_random(200_000, 1),
    )
    .unwrap();
    std::fs::write(root.join("2024/empty.txt"), b"").unwrap();
    std::fs::write(root.join("写真/夏.txt"), "夏").unwrap();
    // NFD on disk ("e" and a combining acute accent): stored, and downloaded, in NFC.
    std::fs::write(root.join("Cafe\u{301}.txt"), b"coffee").unwrap();
    let readme = root.join("README");
    std::fs::write(&readme, b"read me").unwrap();
    std::fs::set_permissions(&readme, std::fs::Permissions::from_mode(0o640)).unwrap();
    set_mtime(&root.join("2024/summer/beach.jpg"), 1_000_000_000);
    let locked = root.join("2024/locked.txt");
    std::fs::write(&locked, b"locked").unwrap();
    set_mtime(&locked, 1_100_000_000);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o444)).unwrap();
    root
}

/// `snapshot` with NFD names turned to NFC, as the server names them.
fn as_stored(files: BTreeMap<String, (String, u32, u64)>) -> BTreeMap<String, (String, u32, u64)> {
    files
        .into_iter()
        .map(|(name, file)| (name.replace("e\u{301}", "\u{e9}"), file))
        .collect()
}

fn listed_names(target: &Target, args: &[&str]) -> Vec<String> {
    let (code, stdout, stderr) = run(ferry(target).args(["list", "--json"]).args(args));
    assert_eq!(code, 0, "{stderr}");
    json_lines(&stdout)
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_tree_round_trips_with_its_layout_modes_and_times() {
    let server = Setup::start();
    let target = server.target();
    let dir = tempfile::tempdir().unwrap();
    let root = sample_tree(dir.path());

    let (code, stdout, stderr) = run(ferry(&target).args(["upload", "-r", "--json"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 7, "{stdout}");
    let done = summary(&stdout);
    assert_eq!(
        (done["files"].as_u64(), done["failed"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(done["upload"], 6);

    let all = listed_names(&target, &["-r", "photos"]);
    assert_eq!(
        all,
        [
            "photos/2024/empty.txt",
            "photos/2024/locked.txt",
            "photos/2024/summer/beach.jpg",
            "photos/Caf\u{e9}.txt",
            "photos/README",
            "photos/写真/夏.txt",
        ]
    );
    // One level: folders end in '/'; empty directories were not stored.
    let (code, stdout, _) = run(ferry(&target).args(["list", "photos/"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("photos/2024/"), "{stdout}");
    assert!(stdout.contains("photos/README"), "{stdout}");
    assert!(
        !stdout.contains("empty.txt") && !stdout.contains("photos/empty"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("2 folder(s), 2 file(s), 13 bytes\n"),
        "{stdout}"
    );

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (code, stdout, stderr) = run(ferry(&target)
        .args(["download", "-r", "photos", "--json", "-o"])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(&stdout)["download"], 6);
    assert_eq!(snapshot(&out.join("photos")), as_stored(snapshot(&root)));

    // A sub-folder keeps the paths below its parent; a missing -o directory is made.
    let sub = dir.path().join("sub/new");
    let (code, _, stderr) = run(ferry(&target)
        .args(["download", "-r", "photos/2024/summer", "-o"])
        .arg(&sub));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read(sub.join("summer/beach.jpg")).unwrap(),
        pseudo_random(200_000, 1)
    );

    // Two trees of one name: refused before anything is sent.
    let other = dir.path().join("other/photos");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("README"), b"another").unwrap();
    let (code, _, stderr) = run(ferry(&target).args(["upload", "-r"]).arg(&root).arg(&other));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("photos/README"), "{stderr}");

    // A plain upload of a directory says to use -r.
    let (code, _, stderr) = run(ferry(&target).arg("upload").arg(&root));
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("use -r"), "{stderr}");
}

#[test]
fn hostile_local_trees_are_skipped_with_warnings() {
    let server = Setup::start();
    let target = server.target();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("ok.txt"), b"ok").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"secret").unwrap();
    std::os::unix::fs::symlink(&secret, root.join("out-link")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("loop")).unwrap();
    let fifo = root.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    let (code, stdout, stderr) = run(ferry(&target).args(["upload", "-r", "--json"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("fifo"), "{stderr}");
    assert!(
        stderr.contains("out-link") && stderr.contains("use -L"),
        "{stderr}"
    );
    assert_eq!(summary(&stdout)["skipped"], 3);
    assert_eq!(listed_names(&target, &["-r"]), ["tree/ok.txt"]);

    // -L follows the link (stored inside the tree's name) and detects the loop.
    let (code, _, stderr) = run(ferry(&target).args(["upload", "-r", "-L"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("loop"), "{stderr}");
    assert_eq!(
        listed_names(&target, &["-r"]),
        ["tree/ok.txt", "tree/out-link"]
    );
}

#[test]
fn delete_r_dry_run_removes_nothing_then_delete_r_removes_the_folder() {
    let server = Setup::start();
    let target = server.target();
    let dir = tempfile::tempdir().unwrap();
    let root = sample_tree(dir.path());
    let (code, _, stderr) = run(ferry(&target).args(["upload", "-r"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, _) = run(ferry(&target)
        .args(["upload", "--name", "photos-other"])
        .arg(root.join("README")));
    assert_eq!(code, 0);

    let (code, stdout, stderr) =
        run(ferry(&target).args(["delete", "-r", "--dry-run", "photos/2024"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("would delete photos/2024/summer/beach.jpg"),
        "{stdout}"
    );
    assert_eq!(listed_names(&target, &["-r"]).len(), 7);

    let (code, stdout, stderr) = run(ferry(&target).args(["delete", "-r", "photos", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(&stdout)["delete"], 6);
    assert_eq!(listed_names(&target, &["-r"]), ["photos-other"]);
    // Nothing below: refused like a missing name.
    let (code, _, stderr) = run(ferry(&target).args(["delete", "-r", "photos"]));
    assert_eq!(code, 4, "{stderr}");
    let (code, _, stderr) = run(ferry(&target)
        .args(["download", "-r", "photos", "-o"])
        .arg(dir.path()));
    assert_eq!(code, 4, "{stderr}");
}

#[test]
fn sync_sends_nothing_twice_and_delete_removes_exactly_the_extra_files() {
    let server = Setup::start();
    let target = server.target();
    let dir = tempfile::tempdir().unwrap();
    let root = sample_tree(dir.path());

    let (code, stdout, stderr) = run(ferry(&target).args(["sync", "--json"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(&stdout)["upload"], 6);

    let (code, stdout, stderr) = run(ferry(&target).args(["sync", "--json"]).arg(&root));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json_lines(&stdout).len(), 1, "only the summary: {stdout}");
    let again = summary(&stdout);
    assert_eq!(
        (again["unchanged"].as_u64(), again["chunks_sent"].as_u64()),
        (Some(6), Some(0))
    );

    // Same content, new time: no data sent, the server's time updated.
    set_mtime(&root.join("README"), 1_200_000_000);
    // Changed content: sent.
    std::fs::write(root.join("2024/empty.txt"), b"not empty").unwrap();
    // Extra files on the server, one inside and one outside the synced folder.
    let (code, _, _) = run(ferry(&target)
        .args(["upload", "--name", "photos/extra.txt"])
        .arg(root.join("README")));
    assert_eq!(code, 0);
    let (code, _, _) = run(ferry(&target)
        .args(["upload", "--name", "photosextra.txt"])
        .arg(root.join("README")));
    assert_eq!(code, 0);

    let (code, stdout, stderr) = run(ferry(&target)
        .args(["sync", "--delete", "--dry-run", "--json"])
        .arg(&root));
    assert_eq!(code, 0, "{stderr}");
    let plan = summary(&stdout);
    assert_eq!(
        (
            plan["upload"].as_u64(),
            plan["touch"].as_u64(),
            plan["delete"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(listed_names(&target, &["-r"]).len(), 8);

    let (code, stdout, stderr) = run(ferry(&target)
        .args(["sync", "--delete", "--json"])
        .arg(&root));
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    let touched = lines
        .iter()
        .find(|l| l["action"] == "touch")
        .expect("a touch");
    assert_eq!(touched["name"], "photos/README");
    let deleted: Vec<&Value> = lines.iter().filter(|l| l["action"] == "delete").collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["name"], "photos/extra.txt");
    let mut names = listed_names(&target, &["-r"]);
    assert_eq!(names.len(), 7);
    assert!(names.contains(&"photosextra.txt".to_string()));
    names.retain(|n| n != "photosextra.txt");

    let (code, stdout, _) = run(ferry(&target).args(["list", "-r", "photos", "--json"]));
    assert_eq!(code, 0);
    let readme = json_lines(&stdout)
        .into_iter()
        .find(|e| e["name"] == "photos/README")
        .unwrap();
    assert_eq!(readme["modified"], 1_200_000_000);
    let (code, stdout, _) = run(ferry(&target).args(["sync", "--json"]).arg(&root));
    assert_eq!(code, 0);
    assert_eq!(summary(&stdout)["unchanged"], 6);
}

#[test]
fn sync_down_makes_a_local_dir_equal() {
    let server = Setup::start();
    let target = server.target();
    let dir = tempfile::tempdir().unwrap();
    let root = sample_tree(dir.path());
    let (code, _, stderr) = run(ferry(&target).args(["sync"]).arg(&root).arg("album"));
    assert_eq!(code, 0, "{stderr}");

    let copy = dir.path().join("copy");
    std::fs::create_dir_all(copy.join("2024")).unwrap();
    std::fs::write(copy.join("2024/empty.txt"), b"stale").unwrap();
    std::fs::write(copy.join("extra"), b"extra").unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, copy.join("link")).unwrap();

    let (code, stdout, stderr) = run(ferry(&target)
        .args(["sync", "--down", "--delete", "--json", "album"])
        .arg(&copy));
    assert_eq!(code, 0, "{stderr}");
    let done = summary(&stdout);
    assert_eq!(
        (done["download"].as_u64(), done["delete"].as_u64()),
        (Some(6), Some(1))
    );
    // The link is left alone, and what it points to.
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    std::fs::remove_file(copy.join("link")).unwrap();
    assert_eq!(snapshot(&copy), as_stored(snapshot(&root)));

    // A PREFIX with nothing below it empties nothing.
    let (code, _, stderr) = run(ferry(&target)
        .args(["sync", "--down", "--delete", "albun"])
        .arg(&copy));
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(snapshot(&copy).len(), 6);

    let (code, stdout, _) = run(ferry(&target)
        .args(["sync", "--down", "--json", "album"])
        .arg(&copy));
    assert_eq!(code, 0);
    assert_eq!(summary(&stdout)["unchanged"], 6);
}

/// The server as a process of its own: this test binary, run again with `FERRY_TEST_ROOT`.
struct ServerProcess {
    child: Child,
    target: Target,
    root: PathBuf,
}

impl ServerProcess {
    fn start(root: &Path, listen: &str) -> ServerProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "serve_in_child", "--nocapture"])
            .env("FERRY_TEST_ROOT", root)
            .env("FERRY_TEST_LISTEN", listen)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut addr, mut identity) = (None, None);
        while addr.is_none() || identity.is_none() {
            let line = lines.next().expect("the server process ended").unwrap();
            if let Some(value) = line.strip_prefix("listening ") {
                addr = Some(value.to_string());
            }
            if let Some(value) = line.strip_prefix("identity ") {
                identity = Some(PathBuf::from(value));
            }
        }
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            target: Target {
                addr: addr.unwrap(),
                identity: identity.unwrap(),
            },
            root: root.to_path_buf(),
        }
    }

    /// SIGKILL, then a new server on the same storage and port.
    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        *self = ServerProcess::start(&self.root, &self.target.addr);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "the server process of a_sync_interrupted_by_killing_the_server_resumes"]
fn serve_in_child() {
    let (Some(root), Some(listen)) = (
        std::env::var_os("FERRY_TEST_ROOT"),
        std::env::var("FERRY_TEST_LISTEN").ok(),
    ) else {
        panic!("run by a_sync_interrupted_by_killing_the_server_resumes only");
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let server = InProcess::start(Path::new(&root), |options| options.listen = listen).await;
        println!("identity {}", server.pki().bundle("local").display());
        println!("listening {}", server.addr);
        std::future::pending::<()>().await;
    });
}

#[test]
fn a_sync_interrupted_by_killing_the_server_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server_root = dir.path().join("server");
    std::fs::create_dir(&server_root).unwrap();
    let mut server = ServerProcess::start(&server_root, "127.0.0.1:0");
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..20 {
        std::fs::write(tree.join(format!("a{i:02}.bin")), pseudo_random(10_000, i)).unwrap();
    }
    write_pseudo_random(&tree.join("z-big.bin"), 64 << 20, 99).unwrap();

    let mut sync = ferry(&server.target)
        .args(["sync", "--json", "--retries", "20"])
        .arg(&tree)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sync.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first file").unwrap();
    assert!(first.contains("\"ok\":true"), "{first}");
    server.kill_and_restart();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = sync.wait().unwrap();
    // The run either rode out the restart or stopped; a rerun finishes it.
    let (code, stdout, stderr) = run(ferry(&server.target).args(["sync", "--json"]).arg(&tree));
    assert_eq!(code, 0, "{stderr}");
    let rerun = summary(&stdout);
    let resent = rerun["upload"].as_u64().unwrap_or(0);
    assert!(
        resent < 21,
        "the rerun sent everything again: {rest:?} {status:?} {stdout}"
    );
    // The kill came before the big file was done: it finished after the restart.
    let big_done_after = rest.iter().any(|line| line.contains("z-big.bin"));
    assert!(
        big_done_after || stdout.contains("z-big.bin"),
        "{first} {rest:?}"
    );
    let (code, stdout, _) = run(ferry(&server.target).args(["sync", "--json"]).arg(&tree));
    assert_eq!(code, 0);
    assert_eq!(summary(&stdout)["unchanged"], 21);

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (code, _, stderr) = run(ferry(&server.target)
        .args(["download", "-r", "tree", "-o"])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(snapshot(&out.join("tree")), snapshot(&tree));
}
