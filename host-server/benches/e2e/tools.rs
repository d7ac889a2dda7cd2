//! The programs the benchmark runs: `ferry` and `ferry-server` from this build, and the
//! tools it compares them with, installed (and `ferry` built) by `install-tools.sh`.

use std::path::PathBuf;
use std::process::Command;

use crate::config::Config;

const INSTALL_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/e2e/install-tools.sh");

/// `ferry` and `ferry-server` from the same target directory and profile.
pub struct Binaries {
    pub server: PathBuf,
    pub client: PathBuf,
    pub target_dir: PathBuf,
    release: bool,
}

impl Binaries {
    /// Where they are (or, for `ferry` before `install`, will be).
    pub fn locate() -> Binaries {
        let server = PathBuf::from(env!("CARGO_BIN_EXE_ferry-server"));
        let profile_dir = server.parent().expect("a target profile directory");
        Binaries {
            client: server.with_file_name("ferry"),
            target_dir: profile_dir
                .parent()
                .expect("a target directory")
                .to_path_buf(),
            release: profile_dir.file_name().is_some_and(|n| n == "release"),
            server,
        }
    }
}

/// Runs `install-tools.sh` for the tools `config` measures: it installs the missing Debian
/// packages and builds `ferry` beside `ferry-server`, in the same profile.
pub fn install(config: &Config, bins: &Binaries) {
    let mut cmd = Command::new("bash");
    cmd.arg(INSTALL_SCRIPT)
        .arg("--target-dir")
        .arg(&bins.target_dir);
    if !bins.release {
        cmd.arg("--debug");
    }
    // Ferry is what is benchmarked: its client is built whatever FERRY_BENCH_TOOLS says.
    cmd.arg("ferry")
        .args(config.tools.iter().filter(|t| *t != "ferry"));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {INSTALL_SCRIPT}: {e}"));
    assert!(status.success(), "{INSTALL_SCRIPT} failed: {status}");
    assert!(bins.client.exists(), "{} is missing", bins.client.display());
}
