//! Directory trees in one command: `ferry upload -r` against `scp -r` and `rsync -a`
//! (1000 and 10,000 files of 4 KiB in nested folders, and 1000 files of mixed sizes from
//! 1 KiB to 64 MiB), then `ferry sync` of the unchanged tree against `rsync -a` of it.

use std::fs;
use std::path::{Path, PathBuf};

use super::{issue_identities, Bench, Identity};
use crate::config::SMALL_FILE;
use crate::data::{list_dirs, same_tree_at, write_tree, TreeFile};
use crate::digests::json_lines;
use crate::procs::sync_disks;
use crate::services::{FerryServer, Sshd};

/// One measured tree.
pub struct TreeCase {
    /// The table's label and the samples' `op`.
    pub label: &'static str,
    /// The tree's directory name (and so the prefix Ferry stores it under).
    pub dir: &'static str,
    pub files: Vec<TreeFile>,
    /// Whether a sync of the unchanged tree is measured after the uploads.
    pub sync: Option<&'static str>,
}

/// `count` files of 4 KiB, ten folders of ten folders each.
pub fn small_tree(count: usize) -> Vec<TreeFile> {
    (0..count)
        .map(|i| TreeFile {
            rel: PathBuf::from(format!("d{}/s{}/f{i:05}.bin", i % 10, (i / 10) % 10)),
            size: SMALL_FILE as u64,
        })
        .collect()
}

/// 1000 files from 1 KiB to 64 MiB, about 210 MiB: many small files and a few large ones,
/// as in a photo library or a build output.
pub fn mixed_tree() -> Vec<TreeFile> {
    // (size, files of that size), largest first; 1 KiB to 32 KiB take the rest of the 1000.
    let large: [(u64, usize); 11] = [
        (64 << 20, 1),
        (32 << 20, 1),
        (16 << 20, 2),
        (8 << 20, 3),
        (4 << 20, 4),
        (2 << 20, 6),
        (1 << 20, 8),
        (512 << 10, 12),
        (256 << 10, 16),
        (128 << 10, 24),
        (64 << 10, 32),
    ];
    let mut sizes: Vec<u64> = large
        .iter()
        .flat_map(|&(size, n)| std::iter::repeat_n(size, n))
        .collect();
    let small = [32 << 10, 16 << 10, 8 << 10, 4 << 10, 2 << 10, 1 << 10];
    let mut i = 0;
    while sizes.len() < 1000 {
        sizes.push(small[i % small.len()]);
        i += 1;
    }
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, size)| TreeFile {
            rel: PathBuf::from(format!("m{}/f{i:04}.bin", i % 16)),
            // Not all on a power of two: a last chunk shorter than the others.
            size: size - (i as u64 % 7) * 13,
        })
        .collect()
}

impl TreeCase {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

impl Bench {
    pub fn trees(&mut self, ferry: &FerryServer, sshd: Option<&Sshd>) {
        let cases = if self.config.quick {
            vec![TreeCase {
                label: "1000 × 4 KiB",
                dir: "t1k",
                files: small_tree(1000),
                sync: Some("sync 1000 unchanged"),
            }]
        } else {
            vec![
                TreeCase {
                    label: "1000 × 4 KiB",
                    dir: "t1k",
                    files: small_tree(1000),
                    sync: None,
                },
                TreeCase {
                    label: "10000 × 4 KiB",
                    dir: "t10k",
                    files: small_tree(10_000),
                    sync: Some("sync 10000 unchanged"),
                },
                TreeCase {
                    label: "mixed 1000, 1 KiB-64 MiB",
                    dir: "mixed",
                    files: mixed_tree(),
                    sync: None,
                },
            ]
        };
        for (n, case) in cases.iter().enumerate() {
            self.tree_case(n, case, ferry, sshd);
        }
    }

    fn tree_case(&mut self, n: usize, case: &TreeCase, ferry: &FerryServer, sshd: Option<&Sshd>) {
        let source = self.work.join("src").join(case.dir);
        write_tree(&source, &case.files, 5000 + 100_000 * n as u64);
        sync_disks();
        let bytes = case.bytes();
        let identities = issue_identities(
            &self.certs,
            &(0..self.config.runs)
                .map(|r| format!("tree{n}-r{r}"))
                .collect::<Vec<_>>(),
        );
        let mut tools: Vec<&'static str> = vec![];
        if self.config.tool("ferry") {
            tools.push("ferry");
        }
        if sshd.is_some() {
            tools.extend(["scp", "rsync"].into_iter().filter(|t| self.config.tool(t)));
        }
        // Copies are removed only after the last run: on ext4 without a journal (as on the
        // benchmark machine) creating inodes right after thousands were deleted costs up to
        // 10× more, which would penalise whichever tool runs after a removal.
        let mut copies = Vec::new();
        let mut last_ferry: Option<(&Identity, PathBuf)> = None;
        let mut last_rsync: Option<PathBuf> = None;
        for (run, identity) in identities.iter().enumerate() {
            if self.over_budget() {
                self.notes.push(format!(
                    "{}: stopped before run {} (budget)",
                    case.label,
                    run + 1
                ));
                break;
            }
            let mut order = tools.clone();
            order.rotate_left(run % tools.len().max(1));
            for tool in order {
                match tool {
                    "ferry" => {
                        let before = list_dirs(&ferry.storage);
                        let mut cmd = self.ferry(ferry.addr, identity);
                        cmd.arg("upload").arg("-r").arg(&source);
                        let (result, cpu, rss) =
                            self.measure(&mut cmd, ferry.service.pid(), false, "tree-ferry", bytes);
                        let home = list_dirs(&ferry.storage)
                            .into_iter()
                            .find(|d| !before.contains(d));
                        let verified = match &home {
                            Some(home) => same_tree_at(
                                &source,
                                &case.files,
                                &home.join("files").join(case.dir),
                            ),
                            None => Err("no new identity directory".into()),
                        };
                        if let Some(home) = home {
                            last_ferry = Some((identity, home));
                        }
                        let sample = (&result, (cpu, rss), verified);
                        self.record_tree("ferry", case.label, bytes, run, sample);
                    }
                    "scp" => {
                        let sshd = sshd.unwrap();
                        let remote = sshd.remote.join(format!("tree{n}-scp-r{run}"));
                        let mut cmd = sshd.scp();
                        cmd.arg("-r").arg(&source).arg(sshd.target(&remote));
                        let (result, cpu, rss) =
                            self.measure(&mut cmd, sshd.service.pid(), true, "tree-scp", bytes);
                        let verified = same_tree_at(&source, &case.files, &remote);
                        copies.push(remote);
                        self.record_tree(
                            "scp",
                            case.label,
                            bytes,
                            run,
                            (&result, (cpu, rss), verified),
                        );
                    }
                    _ => {
                        let sshd = sshd.unwrap();
                        let remote = sshd.remote.join(format!("tree{n}-rsync-r{run}"));
                        let mut cmd = rsync_tree(sshd, &source, &remote);
                        let (result, cpu, rss) =
                            self.measure(&mut cmd, sshd.service.pid(), true, "tree-rsync", bytes);
                        let verified = same_tree_at(&source, &case.files, &remote);
                        copies.push(remote.clone());
                        last_rsync = Some(remote);
                        self.record_tree(
                            "rsync",
                            case.label,
                            bytes,
                            run,
                            (&result, (cpu, rss), verified),
                        );
                    }
                }
            }
        }
        if let Some(label) = case.sync {
            self.unchanged_syncs(label, case, &source, ferry, sshd, last_ferry, last_rsync);
        }
        for copy in copies {
            let _ = fs::remove_dir_all(copy);
        }
    }

    /// `ferry sync` and `rsync -a` of the tree each last copied, unchanged: what it costs to
    /// find there is nothing to send.
    #[allow(clippy::too_many_arguments)]
    fn unchanged_syncs(
        &mut self,
        label: &'static str,
        case: &TreeCase,
        source: &Path,
        ferry: &FerryServer,
        sshd: Option<&Sshd>,
        last_ferry: Option<(&Identity, PathBuf)>,
        last_rsync: Option<PathBuf>,
    ) {
        let bytes = case.bytes();
        for run in 0..self.config.runs {
            if let Some((identity, home)) = &last_ferry {
                let mut cmd = self.ferry(ferry.addr, identity);
                cmd.arg("sync").arg(source);
                let (result, cpu, rss) =
                    self.measure(&mut cmd, ferry.service.pid(), false, "sync-ferry", bytes);
                let stored = home.join("files").join(case.dir);
                let verified = same_tree_at(source, &case.files, &stored)
                    .and_then(|()| nothing_sent(&result.stdout, case.files.len()));
                self.record_tree("ferry", label, bytes, run, (&result, (cpu, rss), verified));
            }
            if let (Some(remote), Some(sshd)) = (&last_rsync, sshd) {
                let mut cmd = rsync_tree(sshd, source, remote);
                let (result, cpu, rss) =
                    self.measure(&mut cmd, sshd.service.pid(), true, "sync-rsync", bytes);
                let verified = same_tree_at(source, &case.files, remote);
                self.record_tree("rsync", label, bytes, run, (&result, (cpu, rss), verified));
            }
        }
    }

    fn record_tree(
        &mut self,
        tool: &'static str,
        label: &'static str,
        bytes: u64,
        run: usize,
        (result, server, verified): (&crate::procs::ProcRun, (f64, u64), Result<(), String>),
    ) {
        self.record("trees", tool, label, bytes, run, result, server, verified);
    }
}

/// `rsync -a SOURCE/ REMOTE/` over the benchmark's sshd.
fn rsync_tree(sshd: &Sshd, source: &Path, remote: &Path) -> std::process::Command {
    let mut cmd = sshd.rsync();
    cmd.arg(format!("{}/", source.display()))
        .arg(format!("{}/", sshd.target(remote)));
    cmd
}

/// Checks `ferry sync --json`'s summary line: an unchanged tree of `count` files moves no
/// data and leaves every file unchanged.
fn nothing_sent(stdout: &str, count: usize) -> Result<(), String> {
    let summary = json_lines(stdout)
        .pop()
        .ok_or("no JSON summary from ferry sync")?;
    let moved = (summary["files"].as_u64(), summary["chunks_sent"].as_u64());
    let unchanged = summary["unchanged"].as_u64();
    if moved == (Some(0), Some(0)) && unchanged == Some(count as u64) {
        Ok(())
    } else {
        Err(format!(
            "ferry sync of an unchanged tree of {count} files: {summary}"
        ))
    }
}
