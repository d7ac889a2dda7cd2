//! One row per attack: the figures, the targets met or missed, and a JSON line per row.

use std::time::Duration;

use comfy_table::{presets::ASCII_MARKDOWN, Table};
use serde_json::json;

use super::honest::{Tally, TARGET};

/// The unit of a row without an attack (the baseline).
pub const NO_ATTACK: &str = "-";
/// Server peak memory target.
pub const RSS_TARGET_KIB: u64 = 128 * 1024;
/// Log volume target: lines per second of attack (1,000 per 20 s)...
pub const LOG_LINES_PER_SEC: f64 = 50.0;
/// ...and at least this many, for short runs (start-up lines and the honest clients' own).
pub const LOG_LINES_MIN: u64 = 200;

/// A named check of one attack, with what was seen.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    /// Timing checks are printed, never asserted by the smoke test.
    pub timing: bool,
    pub detail: String,
}

impl Check {
    /// A check; a detail over 240 characters is cut (a refused name can be long).
    pub fn new(name: &'static str, pass: bool, detail: impl Into<String>) -> Check {
        let mut detail: String = detail.into();
        if let Some((cut, _)) = detail.char_indices().nth(240) {
            detail.truncate(cut);
            detail.push('…');
        }
        Check {
            name,
            pass,
            timing: false,
            detail,
        }
    }

    fn timing(name: &'static str, pass: bool, detail: impl Into<String>) -> Check {
        Check {
            timing: true,
            ..Check::new(name, pass, detail)
        }
    }
}

/// What an attack reports besides what the scenario measures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Attack operations done.
    pub attack_ops: u64,
    /// What one attack operation is ("conn", "list", ...).
    pub unit: &'static str,
    /// Log lines written before the attack began (set-up the attacker did not cause).
    pub log_baseline: u64,
    /// Seconds the attack operations took, when shorter than the scenario (for the rate).
    pub active_secs: Option<f64>,
    /// Bytes the attacker's storage takes on disk, and its quota.
    pub attacker_bytes: Option<u64>,
    pub quota: Option<u64>,
    /// Checks of this attack beyond the common targets.
    pub checks: Vec<Check>,
    /// Anything else worth a line.
    pub notes: Vec<String>,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub attack: &'static str,
    pub secs: f64,
    pub rate: f64,
    pub unit: &'static str,
    pub attempted: u64,
    pub ok: u64,
    pub ok_in_target: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub log_lines: u64,
    pub attacker_bytes: Option<u64>,
    pub quota: Option<u64>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

/// Measurements of the server taken by the scenario.
pub struct ServerFigures {
    pub rss_kib: u64,
    pub fds: u64,
    pub log_lines: u64,
}

impl Row {
    pub fn new(
        attack: &'static str,
        elapsed: Duration,
        tally: Tally,
        server: ServerFigures,
        figures: Figures,
    ) -> Row {
        let secs = elapsed.as_secs_f64();
        let log_bound = (LOG_LINES_PER_SEC * secs).max(LOG_LINES_MIN as f64) as u64;
        let mut checks = vec![
            Check::new(
                "honest operations succeed",
                tally.attempted > 0 && tally.ok == tally.attempted,
                format!("{} of {}", tally.ok, tally.attempted),
            ),
            Check::timing(
                "honest operations within 2 s",
                tally.attempted > 0 && tally.ok_in_target == tally.attempted,
                format!(
                    "{} of {} within {} s",
                    tally.ok_in_target,
                    tally.attempted,
                    TARGET.as_secs()
                ),
            ),
            Check::timing(
                "server RSS <= 128 MiB",
                server.rss_kib <= RSS_TARGET_KIB,
                format!("{} MiB", server.rss_kib / 1024),
            ),
            Check::new(
                "log volume bounded",
                server.log_lines <= log_bound,
                format!("{} lines (bound {log_bound})", server.log_lines),
            ),
        ];
        if let (Some(bytes), Some(quota)) = (figures.attacker_bytes, figures.quota) {
            checks.push(Check::new(
                "attacker disk <= quota",
                bytes <= quota,
                format!("{} of {}", mib(bytes), mib(quota)),
            ));
        }
        checks.extend(figures.checks);
        Row {
            attack,
            secs,
            rate: figures.attack_ops as f64 / figures.active_secs.unwrap_or(secs).max(0.001),
            unit: figures.unit,
            attempted: tally.attempted,
            ok: tally.ok,
            ok_in_target: tally.ok_in_target,
            p50_ms: tally.percentile_ms(0.5),
            p99_ms: tally.percentile_ms(0.99),
            rss_kib: server.rss_kib,
            fds: server.fds,
            log_lines: server.log_lines,
            attacker_bytes: figures.attacker_bytes,
            quota: figures.quota,
            checks,
            notes: figures.notes,
            failures: tally.failures,
        }
    }

    /// The checks that failed.
    pub fn missed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.pass)
    }

    /// The row as one JSON object (one line).
    pub fn json(&self) -> String {
        json!({
            "attack": self.attack,
            "secs": round2(self.secs),
            "attack_rate_per_s": round2(self.rate),
            "attack_unit": self.unit,
            "honest_attempted": self.attempted,
            "honest_ok": self.ok,
            "honest_ok_within_2s": self.ok_in_target,
            "honest_p50_ms": round2(self.p50_ms),
            "honest_p99_ms": round2(self.p99_ms),
            "server_peak_rss_kib": self.rss_kib,
            "server_peak_fds": self.fds,
            "log_lines": self.log_lines,
            "attacker_bytes": self.attacker_bytes,
            "attacker_quota": self.quota,
            "missed": self.missed().map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>(),
            "checks": self.checks.iter().map(|c| json!({"check": c.name, "pass": c.pass, "detail": c.detail})).collect::<Vec<_>>(),
            "notes": self.notes,
        })
        .to_string()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Bytes in MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The table of every row, then each row's checks and notes.
pub fn render(rows: &[Row]) -> String {
    let mut table = Table::new();
    table.load_style(ASCII_MARKDOWN).set_header([
        "attack",
        "attack rate",
        "honest ok/attempted (≤2 s)",
        "p50 ms",
        "p99 ms",
        "peak RSS",
        "peak fds",
        "log lines",
        "attacker disk / quota",
        "targets",
    ]);
    for row in rows {
        let disk = match (row.attacker_bytes, row.quota) {
            (Some(bytes), Some(quota)) => format!("{} / {}", mib(bytes), mib(quota)),
            (Some(bytes), None) => mib(bytes),
            _ => "-".into(),
        };
        let missed = row.missed().count();
        table.add_row([
            row.attack.to_string(),
            if row.unit == NO_ATTACK {
                "-".to_string()
            } else {
                format!("{:.1} {}/s", row.rate, row.unit)
            },
            format!("{}/{} ({})", row.ok, row.attempted, row.ok_in_target),
            format!("{:.0}", row.p50_ms),
            format!("{:.0}", row.p99_ms),
            format!("{} MiB", row.rss_kib / 1024),
            row.fds.to_string(),
            row.log_lines.to_string(),
            disk,
            if missed == 0 {
                "met".into()
            } else {
                format!("{missed} missed")
            },
        ]);
    }
    let mut text = format!(
        "{table}\n\nTargets: every honest operation succeeds within 2 s; server peak RSS <= 128 MiB; \
         attacker disk (du) <= its quota; log lines <= {LOG_LINES_PER_SEC:.0} per second of attack \
         (1,000 per 20 s; at least {LOG_LINES_MIN}).\n"
    );
    for row in rows {
        text.push_str(&format!("\n{}:\n", row.attack));
        for check in &row.checks {
            let mark = match (check.pass, check.timing) {
                (true, _) => "ok  ",
                (false, true) => "MISS (timing)",
                (false, false) => "MISS",
            };
            text.push_str(&format!("  {mark} {}: {}\n", check.name, check.detail));
        }
        for note in &row.notes {
            text.push_str(&format!("  note: {note}\n"));
        }
        for failure in &row.failures {
            text.push_str(&format!("  honest failure: {failure}\n"));
        }
    }
    text
}
