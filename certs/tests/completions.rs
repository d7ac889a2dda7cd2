//! `ferry-certs completions SHELL` and `ferry-certs man` generate.

use std::process::{Command, Output};

fn ferry_certs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry-certs"))
        .args(args)
        .output()
        .expect("run ferry-certs")
}

#[test]
fn completions_and_man_page_generate() {
    for shell in ["bash", "zsh", "fish"] {
        let output = ferry_certs(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        for word in ["ferry-certs", "revoke", "client"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    let output = ferry_certs(&["man"]);
    assert!(output.status.success(), "{output:?}");
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.contains(".TH ferry-certs 1"), "{page}");
    assert!(page.contains("revoke"), "{page}");
}
