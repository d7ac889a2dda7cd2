//! ferry-server's web page refuses a short `--web-token` at start, naming that flag, before
//! it creates anything (issue 13, item 10).

#[test]
fn a_short_web_token_is_refused_naming_the_flag() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    for (extra, expected) in [
        (vec!["--web-token", "12345"], "5 bytes"),
        (vec!["--web", "0.0.0.0:0"], "without an access token"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&extra)
            .env("FERRY_DATA_DIR", &data)
            .env_remove("FERRY_NO_WEB")
            .env_remove("FERRY_WEB")
            .env_remove("FERRY_WEB_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(stderr.contains("--web-token"), "{extra:?}: {stderr}");
        assert!(!stderr.contains("--token "), "{extra:?}: {stderr}");
        assert!(!data.exists(), "{extra:?}: created {}", data.display());
    }
}
