//! `ferry completions SHELL` and `ferry man` generate without a server, and `--log-format`
//! is a global option.

use std::process::{Command, Output};

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
    // A refused connection logs nothing at the default level; ask for debug lines.
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["list", "--server", "127.0.0.1:1", "--retries", "0"])
        .args(["--log-format", "json"])
        .env("FERRY_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let json: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        json.iter().all(|line| line["level"].is_string() && line["timestamp"].is_string()),
        "{stderr}"
    );
    assert!(
        matches!(ferry(&["list", "--log-format", "xml"]).status.code(), Some(2)),
        "an unknown format is a usage error"
    );
}
