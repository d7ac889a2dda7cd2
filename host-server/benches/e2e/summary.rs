//! Statistics: medians over the runs, and percentiles of per-transfer times.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::runs::Sample;

/// Median of a few values (one per run), the middle two averaged when their number is even.
/// Not an HDR histogram: that would round each value to its bucket and cannot average two.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Per-transfer times in an HDR histogram of microseconds with 3 significant digits: its
/// percentiles are nearest-rank, each within 0.1 % of a recorded time (the middle of its bucket).
pub struct Durations(Histogram<u64>);

impl Durations {
    pub fn new(seconds: impl IntoIterator<Item = f64>) -> Durations {
        let mut histogram = Histogram::new(3).expect("3 significant digits are supported");
        for s in seconds {
            // `record`, not `saturating_record`: that clamps to the current bounds instead of
            // growing them.
            histogram
                .record((s * 1e6).round() as u64)
                .expect("the histogram grows to any time in microseconds");
        }
        Durations(histogram)
    }

    /// The `p`th percentile in seconds (NaN without values).
    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let micros = self
            .0
            .median_equivalent(self.0.value_at_quantile(p / 100.0));
        micros as f64 / 1e6
    }
}

/// Medians of the verified samples of one (tool, op, size).
#[derive(Debug, Clone)]
pub struct Summary {
    pub tool: String,
    pub op: String,
    pub bytes: u64,
    pub runs: usize,
    pub failed: usize,
    pub wall: f64,
    pub mb_s: f64,
    pub client_cpu: f64,
    pub server_cpu: f64,
    pub client_rss_kb: u64,
    pub server_rss_kb: u64,
    pub derived: bool,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        json!({
            "tool": self.tool,
            "op": self.op,
            "bytes": self.bytes,
            "runs": self.runs,
            "failed": self.failed,
            "median_wall_s": self.wall,
            "mb_per_s": self.mb_s,
            "client_cpu_s": self.client_cpu,
            "server_cpu_s": self.server_cpu,
            "client_peak_rss_kib": self.client_rss_kb,
            "server_peak_rss_kib": self.server_rss_kb,
            "derived_from_upload_and_download": self.derived,
        })
    }
}

pub fn summarize(samples: &[Sample], section: &str) -> Vec<Summary> {
    let mut groups: BTreeMap<(u64, String, String), Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.section == section) {
        groups
            .entry((s.bytes, s.tool.to_string(), s.op.to_string()))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for ((bytes, tool, op), group) in groups {
        let ok: Vec<&&Sample> = group.iter().filter(|s| s.ok).collect();
        let pick =
            |f: &dyn Fn(&Sample) -> f64| median(&mut ok.iter().map(|s| f(s)).collect::<Vec<_>>());
        let wall = pick(&|s| s.wall);
        out.push(Summary {
            tool,
            op,
            bytes,
            runs: ok.len(),
            failed: group.len() - ok.len(),
            wall,
            mb_s: bytes as f64 / 1e6 / wall,
            client_cpu: pick(&|s| s.client_cpu),
            server_cpu: pick(&|s| s.server_cpu),
            client_rss_kb: ok.iter().map(|s| s.client_rss_kb).max().unwrap_or(0),
            server_rss_kb: ok.iter().map(|s| s.server_rss_kb).max().unwrap_or(0),
            derived: false,
        });
    }
    // Round trip of the other tools: upload then download (sum of the medians).
    let mut derived = Vec::new();
    for up in out.iter().filter(|s| s.op == "upload" && s.tool != "ferry") {
        if let Some(down) = out
            .iter()
            .find(|s| s.op == "download" && s.tool == up.tool && s.bytes == up.bytes)
        {
            let wall = up.wall + down.wall;
            derived.push(Summary {
                tool: up.tool.clone(),
                op: "roundtrip".into(),
                bytes: up.bytes,
                runs: up.runs.min(down.runs),
                failed: up.failed + down.failed,
                wall,
                mb_s: up.bytes as f64 / 1e6 / wall,
                client_cpu: up.client_cpu + down.client_cpu,
                server_cpu: up.server_cpu + down.server_cpu,
                client_rss_kb: up.client_rss_kb.max(down.client_rss_kb),
                server_rss_kb: up.server_rss_kb.max(down.server_rss_kb),
                derived: true,
            });
        }
    }
    out.extend(derived);
    let tool_rank = |t: &str| {
        ["ferry", "nginx", "sftp", "scp", "rsync"]
            .iter()
            .position(|x| *x == t)
    };
    let op_rank = |o: &str| {
        ["upload", "download", "roundtrip"]
            .iter()
            .position(|x| *x == o)
    };
    out.sort_by_key(|s| (s.bytes, op_rank(&s.op), tool_rank(&s.tool)));
    out
}

/// Medians over the runs of one concurrency scenario: (clients, bytes each, tool).
#[derive(Debug, Clone)]
pub struct ConcurrencySummary {
    pub tool: String,
    pub clients: u64,
    pub bytes_each: u64,
    pub runs: usize,
    pub aggregate_mb_s: f64,
    pub p50: f64,
    pub p99: f64,
    pub server_cpu: f64,
    pub client_cpu: f64,
    /// The largest over the runs.
    pub server_rss_kb: u64,
    pub verified: bool,
    /// Failed transfers, summed over the runs.
    pub failed: u64,
}

impl ConcurrencySummary {
    pub fn to_json(&self, ferry_over_nginx: f64) -> Value {
        json!({
            "tool": self.tool,
            "clients": self.clients,
            "bytes_each": self.bytes_each,
            "runs": self.runs,
            "aggregate_mb_per_s": self.aggregate_mb_s,
            "p50_s": self.p50,
            "p99_s": self.p99,
            "server_cpu_s": self.server_cpu,
            "client_cpu_s": self.client_cpu,
            "server_peak_rss_kib": self.server_rss_kb,
            "verified": self.verified,
            "ferry_over_nginx": ferry_over_nginx.is_finite().then_some(ferry_over_nginx),
        })
    }
}

/// Groups the per-run concurrency results (see `Bench::concurrency`) by scenario, in the order
/// (clients, bytes each, tool).
pub fn summarize_concurrency(results: &[Value]) -> Vec<ConcurrencySummary> {
    let mut groups: BTreeMap<(u64, u64, String), Vec<&Value>> = BTreeMap::new();
    for c in results {
        groups
            .entry((
                c["clients"].as_u64().unwrap_or(0),
                c["bytes_each"].as_u64().unwrap_or(0),
                c["tool"].as_str().unwrap_or("").to_string(),
            ))
            .or_default()
            .push(c);
    }
    groups
        .into_iter()
        .map(|((clients, bytes_each, tool), group)| {
            let med = |key: &str| {
                median(
                    &mut group
                        .iter()
                        .map(|c| c[key].as_f64().unwrap_or(f64::NAN))
                        .collect::<Vec<_>>(),
                )
            };
            ConcurrencySummary {
                clients,
                bytes_each,
                runs: group.len(),
                aggregate_mb_s: med("aggregate_mb_per_s"),
                p50: med("p50_s"),
                p99: med("p99_s"),
                server_cpu: med("server_cpu_s"),
                client_cpu: med("client_cpu_s"),
                server_rss_kb: group
                    .iter()
                    .map(|c| c["server_peak_rss_kib"].as_u64().unwrap_or(0))
                    .max()
                    .unwrap_or(0),
                verified: group.iter().all(|c| c["verified"] == json!(true)),
                failed: group
                    .iter()
                    .map(|c| c["failed"].as_u64().unwrap_or(0))
                    .sum(),
                tool,
            }
        })
        .collect()
}
