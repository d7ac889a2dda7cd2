//! The `ferry-web` binary: prints its address when ready, serves the page against a Ferry
//! server, stops cleanly on SIGTERM, and refuses a non-loopback address without a token.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_testkit::server::InProcess;
use reqwest::StatusCode;
use support::Browser;

const BIN: &str = env!("CARGO_BIN_EXE_ferry-web");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_page_and_stops_on_sigterm() {
    let mut server = InProcess::start_temp(|_| {}).await;

    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--server"])
        .arg(server.addr.to_string())
        .arg("--certs")
        .arg(&server.certs)
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("ferry-web listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let browser = Browser::open_with(base, support::http_client(), Default::default()).await;
    let (status, report) = browser.upload("from-the-binary.txt", b"hello").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(browser.list().await.len(), 1);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await
    .expect("exits after SIGTERM")
    .unwrap();
    assert!(status.success(), "{status}");
    server.stop().await;
}

#[test]
fn the_binary_refuses_a_public_address_without_a_token() {
    let dir = support::fresh_ca();
    let output = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0", "--certs"])
        .arg(dir.path())
        .env_remove("FERRY_WEB_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without an access token"), "{stderr}");
    assert!(stderr.contains("set one with --token or"), "{stderr}");
}

#[test]
fn the_binary_refuses_a_short_token_naming_its_flag() {
    let dir = support::fresh_ca();
    let output = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--token", "12345", "--certs"])
        .arg(dir.path())
        .env_remove("FERRY_WEB_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--token") && stderr.contains("5 bytes") && stderr.contains("16"),
        "{stderr}"
    );
}
