//! `ferry completions SHELL` and `ferry man` generate without a server, and `--log-format`
//! is a global option.

use std::process::{Command, Output};

use ferry_testkit::server::InProcess;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("FERRY_LOG_FORMAT")
        // no server anywhere: generating must not connect
        .env("FERRY_SERVER", "127.0.0.1:1")
        .output()
        .expect("run ferry")
}

#[test]
fn completions_generate_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = ferry(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        for word in ["upload", "download", "roundtrip", "log-format"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    let bad = ferry(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_page_generates() {
    let output = ferry(&["man"]);
    assert!(output.status.success(), "{output:?}");
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.contains(".TH ferry 1"), "{page}");
    assert!(page.contains("roundtrip"), "{page}");
}

#[test]
fn log_format_json_writes_json_lines() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(InProcess::start_temp(|_| {}));
    let pki = server.pki();
    let paths = pki.client("local");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["list", "--log-format", "json", "--server"])
        .arg(server.addr.to_string())
        .arg("--ca")
        .arg(pki.ca())
        .arg("--cert")
        .arg(&paths.cert)
        .arg("--key")
        .arg(&paths.key)
        .env("FERRY_LOG", "ferry_tokio=debug")
        .env_remove("FERRY_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let connected = lines
        .iter()
        .find(|line| line["message"] == "connected")
        .unwrap_or_else(|| panic!("no `connected` line: {stderr}"));
    assert_eq!(connected["level"], "DEBUG");
    assert_eq!(connected["chunk_size"], 65536);
    assert!(connected["timestamp"].is_string(), "{connected}");
    assert_eq!(
        ferry(&["list", "--log-format", "xml"]).status.code(),
        Some(2),
        "an unknown format is a usage error"
    );
}
