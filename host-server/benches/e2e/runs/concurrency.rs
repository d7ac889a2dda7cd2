//! Concurrent clients: 1 to 256 uploads at once, each with its own client certificate.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::{json, Value};

use super::{timeout_for, Bench, Identity};
use crate::config::size_label;
use crate::data::{ferry_stored, same_bytes, write_random};
use crate::digests::{check_ferry_report, json_lines};
use crate::procs::{run_measured, sync_disks, Meter, ProcRun};
use crate::services::{start_ferry, Nginx};
use crate::summary::Durations;

impl Bench {
    pub fn concurrency(&mut self, nginx: Option<&Nginx>, identities: &[Identity]) {
        let sources: Vec<(u64, PathBuf)> = self
            .config
            .client_sizes
            .clone()
            .into_iter()
            .map(|size| {
                let path = self.work.join("src").join(format!("conc-{size}.bin"));
                write_random(&path, size, size + 7);
                (size, path)
            })
            .collect();
        sync_disks();
        let mut tools = Vec::new();
        if self.config.tool("ferry") {
            tools.push("ferry");
        }
        if self.config.tool("nginx") && nginx.is_some() {
            tools.push("nginx");
        }
        'runs: for run in 0..self.config.runs {
            for &clients in &self.config.clients.clone() {
                for (size, source) in &sources {
                    if self.over_budget() {
                        self.notes
                            .push(format!("concurrency: stopped in run {} (budget)", run + 1));
                        break 'runs;
                    }
                    let mut order = tools.clone();
                    order.rotate_left(run % tools.len().max(1));
                    for tool in order {
                        let result = match tool {
                            "ferry" => {
                                self.ferry_concurrent(clients, *size, source, run, identities)
                            }
                            _ => self.nginx_concurrent(
                                nginx.unwrap(),
                                clients,
                                *size,
                                source,
                                run,
                                identities,
                            ),
                        };
                        eprintln!(
                            "e2e: run {} {:>5} {:>3} clients x {:>6}: {:>8.1} MB/s  p50 {:.3} s  p99 {:.3} s  server {:.1} MiB  {}",
                            run + 1,
                            tool,
                            clients,
                            size_label(*size),
                            result["aggregate_mb_per_s"].as_f64().unwrap_or(0.0),
                            result["p50_s"].as_f64().unwrap_or(0.0),
                            result["p99_s"].as_f64().unwrap_or(0.0),
                            result["server_peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                            if result["verified"] == json!(true) {
                                "all verified".to_string()
                            } else {
                                format!("FAILED: {}", result["errors"])
                            }
                        );
                        self.concurrency.push(result);
                    }
                }
            }
        }
    }

    /// Runs `commands` at once (each in its own thread), measures the server around them.
    fn run_at_once(
        &mut self,
        commands: Vec<Command>,
        server_pid: i32,
        bytes: u64,
        what: &str,
    ) -> (Vec<ProcRun>, f64, u64) {
        sync_disks();
        let n = commands.len();
        let barrier = Arc::new(Barrier::new(n));
        let meter = Meter::start(server_pid, false);
        let handles: Vec<_> = commands
            .into_iter()
            .enumerate()
            .map(|(i, mut cmd)| {
                let barrier = barrier.clone();
                let logs = self.logs.clone();
                let tag = format!("{:05}-{what}-{i:03}", self.seq + 1);
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        barrier.wait();
                        run_measured(&mut cmd, &logs, &tag, timeout_for(bytes * n as u64))
                    })
                    .expect("a thread")
            })
            .collect();
        let runs: Vec<ProcRun> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let (cpu, rss) = meter.finish();
        self.seq += 1;
        (runs, cpu, rss)
    }

    fn concurrency_result(
        tool: &str,
        clients: usize,
        size: u64,
        run: usize,
        runs: &[ProcRun],
        server: (f64, u64),
        errors: Vec<String>,
    ) -> Value {
        let first = runs.iter().map(|r| r.started).fold(f64::INFINITY, f64::min);
        let last = runs.iter().map(|r| r.ended).fold(0.0, f64::max);
        let span = (last - first).max(1e-9);
        let times = Durations::new(runs.iter().map(|r| r.wall));
        json!({
            "tool": tool,
            "clients": clients,
            "bytes_each": size,
            "run": run,
            "span_s": span,
            "aggregate_mb_per_s": (clients as u64 * size) as f64 / 1e6 / span,
            "p50_s": times.percentile(50.0),
            "p99_s": times.percentile(99.0),
            "max_s": runs.iter().map(|r| r.wall).fold(0.0, f64::max),
            "client_cpu_s": runs.iter().map(ProcRun::cpu).sum::<f64>(),
            "server_cpu_s": server.0,
            "server_peak_rss_kib": server.1,
            "verified": errors.is_empty(),
            "failed": errors.len(),
            "errors": errors.iter().take(5).collect::<Vec<_>>(),
        })
    }

    fn ferry_concurrent(
        &mut self,
        clients: usize,
        size: u64,
        source: &Path,
        run: usize,
        identities: &[Identity],
    ) -> Value {
        // A fresh server per scenario: its peak RSS is this scenario's.
        let storage = self.work.join(format!("ferry-conc-{clients}-{size}-{run}"));
        let log = self
            .logs
            .join(format!("ferry-server-conc-{clients}-{size}-{run}.log"));
        let server = start_ferry(&self.bins.server, &storage, &self.certs, &log);
        let name = |i: usize| format!("c{i:03}-{size}-r{run}.bin");
        let commands: Vec<Command> = (0..clients)
            .map(|i| {
                let mut cmd = self.ferry(server.addr, &identities[i]);
                cmd.arg("upload").arg(source).arg("--name").arg(name(i));
                cmd
            })
            .collect();
        let (runs, cpu, rss) = self.run_at_once(commands, server.service.pid(), size, "ferry-conc");
        let mut errors = Vec::new();
        for (i, result) in runs.iter().enumerate() {
            let checked = if !result.ok() {
                Err(result.failure("ferry upload"))
            } else {
                json_lines(&result.stdout)
                    .first()
                    .ok_or_else(|| "no JSON report".to_string())
                    .and_then(|r| check_ferry_report(r, source, &self.digests))
                    .and_then(|()| {
                        ferry_stored(&storage, &name(i))
                            .ok_or_else(|| format!("{} not stored", name(i)))
                    })
                    .and_then(|stored| same_bytes(source, &stored))
            };
            if let Err(e) = checked {
                errors.push(format!("client {i}: {e}"));
            }
        }
        drop(server);
        let _ = fs::remove_dir_all(&storage);
        Self::concurrency_result("ferry", clients, size, run, &runs, (cpu, rss), errors)
    }

    fn nginx_concurrent(
        &mut self,
        nginx: &Nginx,
        clients: usize,
        size: u64,
        source: &Path,
        run: usize,
        identities: &[Identity],
    ) -> Value {
        let name = |i: usize| format!("c{i:03}-{size}-r{run}.bin");
        let commands: Vec<Command> = (0..clients)
            .map(|i| {
                let mut cmd = self.curl(&identities[i]);
                cmd.arg("-T")
                    .arg(source)
                    .arg("-o")
                    .arg("/dev/null")
                    .arg(format!("https://127.0.0.1:{}/{}", nginx.port, name(i)));
                cmd
            })
            .collect();
        let (runs, cpu, rss) = self.run_at_once(commands, nginx.service.pid(), size, "nginx-conc");
        let mut errors = Vec::new();
        for (i, result) in runs.iter().enumerate() {
            let stored = nginx.root.join(name(i));
            let checked = if result.ok() {
                same_bytes(source, &stored)
            } else {
                Err(result.failure("curl PUT"))
            };
            if let Err(e) = checked {
                errors.push(format!("client {i}: {e}"));
            }
            let _ = fs::remove_file(stored);
        }
        Self::concurrency_result("nginx", clients, size, run, &runs, (cpu, rss), errors)
    }
}
