//! Single transfers: one client moves one file, tools alternating within each run.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::Bench;
use crate::data::{ferry_stored, same_bytes, verify_copy, write_random};
use crate::digests::{check_ferry_report, json_lines};
use crate::procs::{run_measured, sync_disks};
use crate::services::{FerryServer, Nginx, Sshd};

impl Bench {
    pub fn single(&mut self, ferry: &FerryServer, nginx: Option<&Nginx>, sshd: Option<&Sshd>) {
        let sources: Vec<(u64, PathBuf)> = self
            .config
            .sizes
            .clone()
            .into_iter()
            .map(|size| {
                let path = self.work.join("src").join(format!("single-{size}.bin"));
                write_random(&path, size, size);
                (size, path)
            })
            .collect();
        sync_disks();
        let tools: Vec<&'static str> = ["ferry", "nginx", "scp", "sftp"]
            .into_iter()
            .filter(|t| self.config.tool(t))
            .filter(|t| match *t {
                "nginx" => nginx.is_some(),
                "scp" | "sftp" => sshd.is_some(),
                _ => true,
            })
            .collect();
        for run in 0..self.config.runs {
            if self.over_budget() {
                self.notes.push(format!(
                    "single transfers: stopped before run {} (budget)",
                    run + 1
                ));
                break;
            }
            for (size, source) in &sources {
                // Alternate the order of the tools from run to run.
                let mut order = tools.clone();
                order.rotate_left(run % tools.len().max(1));
                for op in ["upload", "download"] {
                    for tool in &order {
                        match *tool {
                            "ferry" => self.ferry_single(ferry, op, *size, source, run),
                            "nginx" => self.nginx_single(nginx.unwrap(), op, *size, source, run),
                            "scp" => self.scp_single(sshd.unwrap(), op, *size, source, run),
                            "sftp" => self.sftp_single(sshd.unwrap(), op, *size, source, run),
                            _ => unreachable!(),
                        }
                    }
                }
                if tools.contains(&"ferry") {
                    self.ferry_single(ferry, "roundtrip", *size, source, run);
                }
                self.cleanup_single(ferry, nginx, sshd, *size, run);
            }
        }
    }

    fn name(tool: &str, size: u64, run: usize) -> String {
        format!("{tool}-{size}-r{run}.bin")
    }

    fn ferry_single(
        &mut self,
        server: &FerryServer,
        op: &'static str,
        size: u64,
        source: &Path,
        run: usize,
    ) {
        let name = Self::name(if op == "roundtrip" { "rt" } else { "ferry" }, size, run);
        let dest = self.work.join("dl").join(&name);
        let mut cmd = self.ferry(server.addr, &self.local);
        match op {
            "upload" | "roundtrip" => {
                cmd.arg(op).arg(source).arg("--name").arg(&name);
            }
            _ => {
                cmd.arg("download").arg(&name).arg("-o").arg(&dest);
            }
        }
        let (result, cpu, rss) = self.measure(&mut cmd, server.service.pid(), false, op, size);
        let verified = (|| {
            let reports = json_lines(&result.stdout);
            let report = reports.first().ok_or("no JSON report")?;
            match op {
                "roundtrip" => {
                    if report["identical"] != json!(true) {
                        return Err(format!("not identical: {report}"));
                    }
                    let mut upload = report["upload"].clone();
                    upload["ok"] = json!(true);
                    upload["digest"] = report["uploaded_digest"].clone();
                    check_ferry_report(&upload, source, &self.digests)?;
                    let mut download = report["download"].clone();
                    download["ok"] = json!(true);
                    download["digest"] = report["downloaded_digest"].clone();
                    check_ferry_report(&download, source, &self.digests)?;
                }
                _ => check_ferry_report(report, source, &self.digests)?,
            }
            match op {
                "download" => {
                    let checked = same_bytes(source, &dest);
                    let _ = fs::remove_file(&dest);
                    checked
                }
                _ => {
                    let stored = ferry_stored(&server.storage, &name)
                        .ok_or_else(|| format!("{name} not in the storage"))?;
                    same_bytes(source, &stored)
                }
            }
        })();
        self.record(
            "single",
            "ferry",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    fn nginx_single(
        &mut self,
        nginx: &Nginx,
        op: &'static str,
        size: u64,
        source: &Path,
        run: usize,
    ) {
        let name = Self::name("nginx", size, run);
        let url = format!("https://127.0.0.1:{}/{name}", nginx.port);
        let stored = nginx.root.join(&name);
        let dest = self.work.join("dl").join(&name);
        let mut cmd = self.curl(&self.local);
        if op == "upload" {
            cmd.arg("-T")
                .arg(source)
                .arg("-o")
                .arg("/dev/null")
                .arg(&url);
        } else {
            cmd.arg("-o").arg(&dest).arg(&url);
        }
        let (result, cpu, rss) = self.measure(&mut cmd, nginx.service.pid(), false, op, size);
        let verified = verify_copy(op, source, &stored, &dest);
        self.record(
            "single",
            "nginx",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    fn scp_single(&mut self, sshd: &Sshd, op: &'static str, size: u64, source: &Path, run: usize) {
        let name = Self::name("scp", size, run);
        let remote = sshd.remote.join(&name);
        let dest = self.work.join("dl").join(&name);
        let mut cmd = sshd.scp();
        if op == "upload" {
            cmd.arg(source).arg(sshd.target(&remote));
        } else {
            cmd.arg(sshd.target(&remote)).arg(&dest);
        }
        let (result, cpu, rss) = self.measure(&mut cmd, sshd.service.pid(), true, op, size);
        let verified = verify_copy(op, source, &remote, &dest);
        self.record(
            "single",
            "scp",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    fn sftp_single(&mut self, sshd: &Sshd, op: &'static str, size: u64, source: &Path, run: usize) {
        let name = Self::name("sftp", size, run);
        let remote = sshd.remote.join(&name);
        let dest = self.work.join("dl").join(&name);
        let batch = self.work.join("tmp").join(format!("sftp-{op}.batch"));
        let line = if op == "upload" {
            format!("put {} {}\n", source.display(), remote.display())
        } else {
            format!("get {} {}\n", remote.display(), dest.display())
        };
        fs::write(&batch, line).unwrap();
        let mut cmd = sshd.sftp(&batch);
        let (result, cpu, rss) = self.measure(&mut cmd, sshd.service.pid(), true, op, size);
        let verified = verify_copy(op, source, &remote, &dest);
        self.record(
            "single",
            "sftp",
            op,
            size,
            run,
            &result,
            (cpu, rss),
            verified,
        );
    }

    /// Frees the disk between runs (not timed).
    fn cleanup_single(
        &mut self,
        ferry: &FerryServer,
        nginx: Option<&Nginx>,
        sshd: Option<&Sshd>,
        size: u64,
        run: usize,
    ) {
        let names: Vec<String> = ["ferry", "rt"]
            .iter()
            .map(|t| Self::name(t, size, run))
            .filter(|n| ferry_stored(&ferry.storage, n).is_some())
            .collect();
        if !names.is_empty() {
            let mut cmd = self.ferry(ferry.addr, &self.local);
            cmd.arg("delete").args(&names);
            let tag = self.tag("delete");
            let result = run_measured(&mut cmd, &self.logs, &tag, Duration::from_secs(60));
            if !result.ok() {
                self.notes.push(result.failure("ferry delete"));
            }
        }
        if let Some(nginx) = nginx {
            let _ = fs::remove_file(nginx.root.join(Self::name("nginx", size, run)));
        }
        if let Some(sshd) = sshd {
            for tool in ["scp", "sftp"] {
                let _ = fs::remove_file(sshd.remote.join(Self::name(tool, size, run)));
            }
        }
    }
}
