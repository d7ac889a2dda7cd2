//! Many small files in one command: `ferry upload`, `scp -r` and `rsync -a`.

use std::fs;
use std::path::PathBuf;

use super::{issue_identities, Bench};
use crate::config::SMALL_FILE;
use crate::data::{list_dirs, same_bytes, same_tree, write_random};
use crate::digests::{check_ferry_report, json_lines};
use crate::procs::sync_disks;
use crate::services::{FerryServer, Sshd};

impl Bench {
    pub fn small(&mut self, ferry: &FerryServer, sshd: Option<&Sshd>) {
        let count = self.config.small_files;
        let dir = self.work.join("src").join("small");
        fs::create_dir_all(&dir).unwrap();
        let files: Vec<PathBuf> = (0..count)
            .map(|i| {
                let path = dir.join(format!("f{i:04}.bin"));
                write_random(&path, SMALL_FILE as u64, 1000 + i as u64);
                path
            })
            .collect();
        sync_disks();
        let bytes = (count * SMALL_FILE) as u64;
        let identities = issue_identities(
            &self.certs,
            &(0..self.config.runs)
                .map(|r| format!("small-r{r}"))
                .collect::<Vec<_>>(),
        );
        let mut tools: Vec<&'static str> = vec![];
        if self.config.tool("ferry") {
            tools.push("ferry");
        }
        if sshd.is_some() {
            if self.config.tool("scp") {
                tools.push("scp");
            }
            if self.config.tool("rsync") {
                tools.push("rsync");
            }
        }
        // Copies are removed only after the last run: on ext4 without a journal (as on the
        // benchmark machine) creating inodes right after 1000 were deleted costs up to
        // 10× more, which would penalise whichever tool runs after a removal.
        let mut copies = Vec::new();
        for (run, identity) in identities.iter().enumerate() {
            if self.over_budget() {
                self.notes.push(format!(
                    "small files: stopped before run {} (budget)",
                    run + 1
                ));
                break;
            }
            let mut order = tools.clone();
            order.rotate_left(run % tools.len().max(1));
            for tool in order {
                match tool {
                    "ferry" => {
                        // A fresh identity per run: an empty namespace, nothing to skip.
                        let before: Vec<PathBuf> = list_dirs(&ferry.storage);
                        let mut cmd = self.ferry(ferry.addr, identity);
                        cmd.arg("upload").args(&files);
                        let (result, cpu, rss) = self.measure(
                            &mut cmd,
                            ferry.service.pid(),
                            false,
                            "small-ferry",
                            bytes,
                        );
                        let verified = (|| {
                            let reports = json_lines(&result.stdout);
                            if reports.len() != count {
                                return Err(format!("{} reports for {count} files", reports.len()));
                            }
                            let home = list_dirs(&ferry.storage)
                                .into_iter()
                                .find(|d| !before.contains(d))
                                .ok_or("no new identity directory")?;
                            for (file, report) in files.iter().zip(&reports) {
                                check_ferry_report(report, file, &self.digests)?;
                                let name = file.file_name().unwrap();
                                same_bytes(file, &home.join("files").join(name))?;
                            }
                            Ok(())
                        })();
                        self.record(
                            "small",
                            "ferry",
                            "upload",
                            bytes,
                            run,
                            &result,
                            (cpu, rss),
                            verified,
                        );
                    }
                    "scp" => {
                        let sshd = sshd.unwrap();
                        let remote = sshd.remote.join(format!("small-scp-r{run}"));
                        let mut cmd = sshd.scp();
                        cmd.arg("-r").arg(&dir).arg(sshd.target(&remote));
                        let (result, cpu, rss) =
                            self.measure(&mut cmd, sshd.service.pid(), true, "small-scp", bytes);
                        let verified = same_tree(&files, &remote);
                        copies.push(remote);
                        self.record(
                            "small",
                            "scp",
                            "upload",
                            bytes,
                            run,
                            &result,
                            (cpu, rss),
                            verified,
                        );
                    }
                    _ => {
                        let sshd = sshd.unwrap();
                        let remote = sshd.remote.join(format!("small-rsync-r{run}"));
                        let mut cmd = sshd.rsync();
                        cmd.arg(format!("{}/", dir.display()))
                            .arg(format!("{}/", sshd.target(&remote)));
                        let (result, cpu, rss) =
                            self.measure(&mut cmd, sshd.service.pid(), true, "small-rsync", bytes);
                        let verified = same_tree(&files, &remote);
                        copies.push(remote);
                        self.record(
                            "small",
                            "rsync",
                            "upload",
                            bytes,
                            run,
                            &result,
                            (cpu, rss),
                            verified,
                        );
                    }
                }
            }
        }
        for copy in copies {
            let _ = fs::remove_dir_all(copy);
        }
    }
}
