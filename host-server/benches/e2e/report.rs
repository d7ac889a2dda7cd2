//! The report: markdown tables for stdout and everything (with every raw sample) as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::thread;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use procfs::{CpuInfo, Current, LoadAverage};
use serde_json::{json, Value};

use crate::config::{size_label, Config, SSH_CIPHER};
use crate::runs::{Bench, Sample};
use crate::summary::{summarize, summarize_concurrency, Summary};

/// The 1, 5 and 15 minute load averages, as /proc/loadavg writes them.
pub fn loadavg() -> String {
    LoadAverage::current()
        .map(|l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu = CpuInfo::current()
        .ok()
        .and_then(|info| info.model_name(0).map(str::to_string))
        .unwrap_or_default();
    let version = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default()
    };
    json!({
        "cpu": cpu,
        "cores": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": version(Command::new("uname").arg("-r")),
        "nginx": version(Command::new("/usr/sbin/nginx").arg("-v")),
        "openssh": version(Command::new("ssh").arg("-V")),
        "curl": version(Command::new("curl").arg("--version")),
        "rsync": version(Command::new("rsync").arg("--version")),
    })
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn tool_label(tool: &str) -> &str {
    match tool {
        "ferry" => "ferry",
        "nginx" => "curl→nginx (mTLS)",
        "scp" => "scp",
        "sftp" => "sftp",
        "rsync" => "rsync (ssh)",
        other => other,
    }
}

fn ratio_cell(value: f64, target: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let mark = if value >= target { "met" } else { "NOT met" };
    format!("{value:.2}× (target ≥ {target}×: {mark})")
}

fn failed_suffix(failed: usize) -> String {
    if failed > 0 {
        format!(" ({failed} FAILED)")
    } else {
        String::new()
    }
}

/// A table column: its header, and whether its cells are right-aligned (numbers).
type Column = (&'static str, bool);

/// A markdown table, one line per row, ending with a newline. comfy-table's markdown preset
/// pads the cells; the `--:` of right-aligned columns, which it does not write, is added to
/// its header separator.
fn markdown_table(columns: &[Column], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_style(ASCII_MARKDOWN)
        .set_header(columns.iter().map(|(name, _)| *name).collect::<Vec<_>>())
        .add_rows(rows);
    for (column, (_, right)) in table.column_iter_mut().zip(columns) {
        if *right {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut text = String::new();
    for (i, line) in table.lines().enumerate() {
        if i == 1 {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .zip(columns)
                .map(|(dashes, &(_, right))| {
                    if right {
                        format!("{}:", &dashes[1..])
                    } else {
                        dashes.to_string()
                    }
                })
                .collect();
            let _ = writeln!(text, "|{}|", cells.join("|"));
        } else {
            let _ = writeln!(text, "{line}");
        }
    }
    text
}

/// The single transfers' table and the ratios' table; the ratios go to `ratios` as JSON.
fn single_section(md: &mut String, config: &Config, single: &[Summary], ratios: &mut Vec<Value>) {
    let _ = writeln!(
        md,
        "## Single transfers\n\nMB/s = 10^6 bytes/s over the client process's life (start-up and TLS/SSH \
         handshake included). CPU in seconds (user+system); RSS in MiB (client: wait4 peak; \
         server: peak of the server's processes, summed). Round trip of the others: upload + download.\n"
    );
    let rows = single
        .iter()
        .map(|s| {
            vec![
                size_label(s.bytes),
                s.op.clone(),
                tool_label(&s.tool).to_string(),
                format!("{:.1}", s.mb_s),
                format!("{:.2}", s.wall),
                format!("{:.2}", s.client_cpu),
                format!("{:.2}", s.server_cpu),
                mib(s.client_rss_kb),
                mib(s.server_rss_kb),
                format!(
                    "{}{}{}",
                    s.runs,
                    failed_suffix(s.failed),
                    if s.derived { " (up+down)" } else { "" }
                ),
            ]
        })
        .collect();
    md.push_str(&markdown_table(
        &[
            ("size", false),
            ("op", false),
            ("tool", false),
            ("MB/s", true),
            ("time s", true),
            ("client CPU s", true),
            ("server CPU s", true),
            ("client peak RSS", true),
            ("server peak RSS", true),
            ("runs", true),
        ],
        rows,
    ));
    let _ = writeln!(md, "\n### Ratios (Ferry MB/s ÷ other MB/s)\n");
    let mut rows = Vec::new();
    for &size in &config.sizes {
        for op in ["upload", "download", "roundtrip"] {
            let find = |tool: &str| {
                single
                    .iter()
                    .find(|s| s.tool == tool && s.op == op && s.bytes == size)
                    .map(|s| s.mb_s)
                    .unwrap_or(f64::NAN)
            };
            let ferry = find("ferry");
            let (vs_nginx, vs_sftp, vs_scp) = (
                ferry / find("nginx"),
                ferry / find("sftp"),
                ferry / find("scp"),
            );
            let targets = op != "roundtrip";
            let against_target = |value: f64, target: f64| {
                if targets {
                    ratio_cell(value, target)
                } else {
                    format!("{value:.2}×")
                }
            };
            rows.push(vec![
                size_label(size),
                op.to_string(),
                against_target(vs_nginx, 1.0),
                against_target(vs_sftp, 2.5),
                if vs_scp.is_finite() {
                    format!("{vs_scp:.2}×")
                } else {
                    "–".into()
                },
            ]);
            ratios.push(json!({
                "bytes": size,
                "op": op,
                "ferry_over_nginx": vs_nginx.is_finite().then_some(vs_nginx),
                "ferry_over_sftp": vs_sftp.is_finite().then_some(vs_sftp),
                "ferry_over_scp": vs_scp.is_finite().then_some(vs_scp),
                "targets": if targets { json!({"nginx": 1.0, "sftp": 2.5}) } else { Value::Null },
            }));
        }
    }
    md.push_str(&markdown_table(
        &[
            ("size", false),
            ("op", false),
            ("Ferry/nginx", false),
            ("Ferry/sftp", false),
            ("Ferry/scp", false),
        ],
        rows,
    ));
}

/// The concurrency table (medians over the runs); returns its JSON.
fn concurrency_section(md: &mut String, results: &[Value]) -> Vec<Value> {
    let scenarios = summarize_concurrency(results);
    let aggregate_of = |clients: u64, size: u64, tool: &str| {
        scenarios
            .iter()
            .find(|c| c.clients == clients && c.bytes_each == size && c.tool == tool)
            .map_or(f64::NAN, |c| c.aggregate_mb_s)
    };
    let _ = writeln!(
        md,
        "\n## Concurrent clients (each its own certificate, one upload each)\n\n\
         Aggregate = all bytes ÷ (first start → last exit). Per-transfer time = one client process's life.\n"
    );
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for c in &scenarios {
        let ratio = if c.tool == "ferry" {
            aggregate_of(c.clients, c.bytes_each, "ferry")
                / aggregate_of(c.clients, c.bytes_each, "nginx")
        } else {
            f64::NAN
        };
        let target = if c.clients == 16 { Some(1.0) } else { None };
        let ratio_text = match (ratio.is_finite(), target) {
            (false, _) => String::new(),
            (true, Some(t)) => ratio_cell(ratio, t),
            (true, None) => format!("{ratio:.2}×"),
        };
        let rss_text = if c.tool == "ferry" && c.clients >= 256 {
            let mark = if c.server_rss_kb <= 64 * 1024 {
                "met"
            } else {
                "NOT met"
            };
            format!("{} (target ≤ 64: {mark})", mib(c.server_rss_kb))
        } else {
            mib(c.server_rss_kb)
        };
        rows.push(vec![
            c.clients.to_string(),
            size_label(c.bytes_each),
            tool_label(&c.tool).to_string(),
            format!("{:.1}", c.aggregate_mb_s),
            format!("{:.3}", c.p50),
            format!("{:.3}", c.p99),
            format!("{:.2}", c.server_cpu),
            rss_text,
            if c.verified {
                format!("all {} × {}", c.clients, c.runs)
            } else {
                format!("{} FAILED", c.failed)
            },
            ratio_text,
        ]);
        summary.push(c.to_json(ratio));
    }
    md.push_str(&markdown_table(
        &[
            ("clients", true),
            ("each", true),
            ("tool", false),
            ("aggregate MB/s", true),
            ("p50 s", true),
            ("p99 s", true),
            ("server CPU s", true),
            ("server peak RSS MiB", true),
            ("verified", false),
            ("Ferry/nginx", false),
        ],
        rows,
    ));
    summary
}

/// What Ferry is to beat in a tree case: (tool, speed-up) pairs from issue 14's targets.
fn tree_targets(label: &str) -> &'static [(&'static str, f64)] {
    if label.starts_with("sync") {
        &[("rsync", 5.0)]
    } else if label.starts_with("mixed") {
        &[("rsync", 1.0)]
    } else {
        &[("scp", 10.0), ("rsync", 5.0)]
    }
}

/// The number of files a tree case's label names ("10000 × 4 KiB", "sync 1000 unchanged").
fn files_in(label: &str) -> f64 {
    label
        .split(|c: char| !c.is_ascii_digit())
        .find(|part| !part.is_empty())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One table per tree case with Ferry's speed-ups against the targets; returns the JSON.
fn trees_section(md: &mut String, trees: &[Summary], ratios: &mut Vec<Value>) -> Vec<Value> {
    let mut labels: Vec<&str> = Vec::new();
    for s in trees {
        if !labels.contains(&s.op.as_str()) {
            labels.push(&s.op);
        }
    }
    for label in labels {
        let case: Vec<&Summary> = trees.iter().filter(|s| s.op == label).collect();
        let wall_of = |tool: &str| case.iter().find(|s| s.tool == tool).map(|s| s.wall);
        let _ = writeln!(md, "\n## Tree: {label} in one command\n");
        let rows = case
            .iter()
            .map(|s| {
                vec![
                    tool_label(&s.tool).to_string(),
                    format!("{:.2}", s.wall),
                    format!("{:.0}", files_in(label) / s.wall),
                    format!("{:.1}", s.mb_s),
                    format!("{:.2}", s.client_cpu),
                    format!("{:.2}", s.server_cpu),
                    mib(s.server_rss_kb),
                    format!("{}{}", s.runs, failed_suffix(s.failed)),
                ]
            })
            .collect();
        md.push_str(&markdown_table(
            &[
                ("tool", false),
                ("time s", true),
                ("files/s", true),
                ("MB/s", true),
                ("client CPU s", true),
                ("server CPU s", true),
                ("server peak RSS MiB", true),
                ("runs", true),
            ],
            rows,
        ));
        let Some(ferry) = wall_of("ferry") else {
            continue;
        };
        let mut cells = Vec::new();
        for &(tool, target) in tree_targets(label) {
            let speedup = wall_of(tool).map(|w| w / ferry).unwrap_or(f64::NAN);
            cells.push(format!("{} over {tool}", ratio_cell(speedup, target)));
            ratios.push(json!({
                "tree": label,
                "over": tool,
                "ferry_speedup": speedup.is_finite().then_some(speedup),
                "target": target,
            }));
        }
        let _ = writeln!(md, "\nFerry speed-up: {}.", cells.join(", "));
    }
    trees.iter().map(Summary::to_json).collect()
}

/// The markdown for stdout and the JSON for the output file.
pub fn report(bench: &Bench, loads: &BTreeMap<String, String>, elapsed: f64) -> (String, Value) {
    let config = &bench.config;
    let mut md = String::new();
    let machine = machine();
    let _ = writeln!(
        md,
        "\n# Ferry end-to-end benchmark\n\n{} cores ({}), kernel {}; {} run(s) per measurement, median shown; \
         load average (1/5/15 min) {}; {elapsed:.0} s.\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        config.runs,
        loads
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let single = summarize(&bench.samples, "single");
    let mut ratios = Vec::new();
    if !single.is_empty() {
        single_section(&mut md, config, &single, &mut ratios);
    }
    let concurrency = if bench.concurrency.is_empty() {
        Vec::new()
    } else {
        concurrency_section(&mut md, &bench.concurrency)
    };
    let trees = summarize(&bench.samples, "trees");
    let trees_json = trees_section(&mut md, &trees, &mut ratios);
    let _ = writeln!(
        md,
        "\nFerry makes every upload durable before it reports it verified (the server fsyncs the \
         data with its metadata, then its directory) and the client fsyncs a download before renaming it \
         into place; nginx, scp, sftp and rsync report success with the data in the page cache. \
         TLS: TLS 1.3 on both, client certificate required; ssh: {SSH_CIPHER}."
    );
    if !bench.notes.is_empty() {
        let _ = writeln!(md, "\nNotes:");
        for note in &bench.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    let json = json!({
        "benchmark": "ferry-e2e",
        "quick": config.quick,
        "runs": config.runs,
        "elapsed_s": elapsed,
        "load_average": loads,
        "machine": machine,
        "single": single.iter().map(Summary::to_json).collect::<Vec<_>>(),
        "ratios": ratios,
        "concurrency": concurrency,
        "trees": trees_json,
        "notes": bench.notes,
        "samples": bench.samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
        "concurrency_runs": bench.concurrency,
    });
    (md, json)
}
