//! What to measure, from the environment (`FERRY_BENCH_*`), and how sizes are written.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MIB: u64 = 1 << 20;
/// Size of each file in the trees of small files.
pub const SMALL_FILE: usize = 4096;
/// The one cipher sshd offers, so that scp, sftp and rsync all use it.
pub const SSH_CIPHER: &str = "aes128-gcm@openssh.com";

pub struct Config {
    pub quick: bool,
    pub runs: usize,
    pub sizes: Vec<u64>,
    pub clients: Vec<usize>,
    pub client_sizes: Vec<u64>,
    pub budget: Duration,
    pub out: PathBuf,
    pub work_root: PathBuf,
    pub keep: bool,
    pub sections: Vec<String>,
    pub tools: Vec<String>,
}

fn env_list(name: &str) -> Option<Vec<String>> {
    let value = std::env::var(name).ok()?;
    let items: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    (!items.is_empty()).then_some(items)
}

fn parse_size(text: &str) -> u64 {
    let text = text.trim().to_ascii_uppercase();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text.as_str(), ""),
    };
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("bad size {text:?}"));
    match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => n,
        "K" => n << 10,
        "M" => n << 20,
        "G" => n << 30,
        other => panic!("bad size unit {other:?} in {text:?}"),
    }
}

pub fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes >> 20)
    } else if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

impl Config {
    pub fn from_env(target_dir: &Path) -> Config {
        let flag = |name: &str| {
            std::env::var(name)
                .map(|v| !v.is_empty() && v != "0")
                .unwrap_or(false)
        };
        let quick = flag("FERRY_BENCH_QUICK");
        let runs = std::env::var("FERRY_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 1 } else { 5 });
        let sizes = env_list("FERRY_BENCH_SIZES")
            .map(|v| v.iter().map(|s| parse_size(s)).collect())
            .unwrap_or_else(|| {
                if quick {
                    vec![64 * MIB]
                } else {
                    vec![64 * MIB, 1 << 30]
                }
            });
        let clients = env_list("FERRY_BENCH_CLIENTS")
            .map(|v| {
                v.iter()
                    .map(|s| s.parse().expect("FERRY_BENCH_CLIENTS"))
                    .collect()
            })
            .unwrap_or_else(|| if quick { vec![1, 16] } else { vec![1, 16, 256] });
        let budget = std::env::var("FERRY_BENCH_BUDGET_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1500));
        let out = std::env::var_os("FERRY_BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir.join("ferry-bench").join("e2e.json"));
        let work_root = std::env::var_os("FERRY_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Config {
            quick,
            runs: runs.max(1),
            sizes,
            clients,
            client_sizes: vec![MIB, 16 * MIB],
            budget,
            out,
            work_root,
            keep: flag("FERRY_BENCH_KEEP"),
            sections: env_list("FERRY_BENCH_ONLY")
                .unwrap_or_else(|| all(&["single", "concurrency", "trees"])),
            tools: env_list("FERRY_BENCH_TOOLS")
                .unwrap_or_else(|| all(&["ferry", "nginx", "scp", "sftp", "rsync"])),
        }
    }

    pub fn section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s == name)
    }

    pub fn tool(&self, name: &str) -> bool {
        self.tools.iter().any(|s| s == name)
    }

    /// Whether any tool that goes through sshd is measured.
    pub fn wants_sshd(&self) -> bool {
        self.tool("scp") || self.tool("sftp") || self.tool("rsync")
    }
}
