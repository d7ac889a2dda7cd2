//! The `ferry-server` binary as operators run it: `--admin` (and its refusal of a public
//! address), `--log-format json`, shell completions and the man page.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn ferry_server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry-server"));
    for var in ["FERRY_LOG", "RUST_LOG", "FERRY_LOG_FORMAT", "FERRY_ADMIN"] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str]) -> Output {
    ferry_server()
        .args(args)
        .output()
        .expect("run ferry-server")
}

fn server_args(root: &Path) -> Vec<String> {
    vec![
        "--no-web".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--storage".into(),
        root.join("storage").display().to_string(),
        "--certs".into(),
        root.join("certs").display().to_string(),
    ]
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    response
}

fn stop(child: Child) -> Output {
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}

#[test]
fn admin_listener_and_json_logs() {
    let root = tempfile::tempdir().unwrap();
    let mut child = ferry_server()
        .args(server_args(root.path()))
        .args(["--admin", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let admin: SocketAddr = loop {
        let line = lines.next().expect("ferry-server exited early").unwrap();
        if let Some(addr) = line.strip_prefix("ferry-server admin listening on http://") {
            break addr.parse().unwrap();
        }
    };
    let health = http_get(admin, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = http_get(admin, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(admin, "/metrics");
    assert!(
        metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_connections_open 0"), "{metrics}");
    let output = stop(child);
    let stderr = String::from_utf8(output.stderr).unwrap();
    let mut seen_serving = false;
    for line in stderr.lines() {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        let message = object["message"].as_str().unwrap();
        seen_serving |= message.starts_with("serving ") && object["level"] == "INFO";
    }
    assert!(seen_serving, "{stderr}");
}

#[test]
fn a_public_admin_address_is_refused_without_admin_public() {
    let root = tempfile::tempdir().unwrap();
    let mut args = server_args(root.path());
    args.extend(["--admin".into(), "0.0.0.0:0".into()]);
    let output = ferry_server().args(&args).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--admin-public"),
        "{stderr}"
    );
}

#[test]
fn completions_and_man_page_generate() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&["--completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(
            script.contains("ferry-server") && script.contains("admin-public"),
            "{shell}: {script}"
        );
    }
    assert!(!run(&["--completions", "tcsh"]).status.success());
    let output = run(&["--man"]);
    assert!(output.status.success());
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.contains(".TH ferry-server 1"), "{page}");
    assert!(page.contains("log\\-format"), "{page}");
}
