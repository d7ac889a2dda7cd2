//! How results are shown: lines for people, JSON objects for programs, the list table.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use ferry_client::{exit, ClientError, RoundTripReport, TransferReport};
use indicatif::ProgressBar;
use serde_json::{json, Value};

use crate::cli::{Cli, Command};
use crate::hints;
use crate::identity::NoIdentity;
use crate::plan::{NoClobber, STDIO};
use crate::progress::{byte_bar, Bars};
use crate::Outcome;

/// How results are shown.
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    pub(crate) bars: bool,
    /// Standard output carries a downloaded file: result lines go to standard error.
    pub(crate) data_on_stdout: bool,
    /// The file holding the CA this client trusts, named in hints.
    pub(crate) ca_file: Option<PathBuf>,
}

impl Output {
    pub(crate) fn new(cli: &Cli) -> Self {
        let data_on_stdout = matches!(
            &cli.command,
            Command::Download { output: Some(path), .. } if path.as_os_str() == STDIO
        );
        Self {
            json: cli.json,
            quiet: cli.quiet,
            bars: !cli.json && !cli.quiet && std::io::stderr().is_terminal(),
            data_on_stdout,
            ca_file: None,
        }
    }

    pub(crate) fn line(&self, text: &str) {
        match (self.quiet || self.json, self.data_on_stdout) {
            (true, _) => {}
            (false, true) => eprintln!("{text}"),
            (false, false) => println!("{text}"),
        }
    }

    pub(crate) fn json(&self, value: &Value) {
        if self.json {
            println!("{value}");
        }
    }

    /// Reports a failed operation; returns its exit code.
    pub(crate) fn error(&self, op: &str, name: Option<&str>, error: &anyhow::Error) -> i32 {
        let code = exit_code_of(error);
        let what = match name {
            Some(name) => format!("{op} {name}"),
            None => op.to_string(),
        };
        let hint = hints::hint(error, self.ca_file.as_deref());
        match &hint {
            Some(hint) => eprintln!("ferry: {what}: {error:#}; {hint}"),
            None => eprintln!("ferry: {what}: {error:#}"),
        }
        if self.json {
            let kind = match (error.downcast_ref::<ClientError>(), error.is::<NoClobber>()) {
                (Some(error), _) => error.kind(),
                (None, true) => "no_clobber",
                (None, false) => "other",
            };
            let mut value = json!({
                "op": op,
                "ok": false,
                "error": format!("{error:#}"),
                "kind": kind,
                "exit_code": code,
            });
            if let Some(name) = name {
                value["name"] = json!(name);
            }
            if let Some(hint) = hint {
                value["hint"] = json!(hint);
            }
            if let Some(code) = error
                .downcast_ref::<ClientError>()
                .and_then(ClientError::refusal_code)
            {
                value["code"] = json!(code.name());
            }
            println!("{value}");
        }
        code
    }

    /// One bar for several transfers at once (hidden unless on a terminal).
    pub(crate) fn overall_bar(&self, files: usize) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = byte_bar(0);
        bar.set_message(format!("0/{files} files"));
        bar
    }

    pub(crate) fn progress(&self) -> Bars {
        Bars::new(self.bars)
    }
}

/// The exit code of an error from this program.
pub(crate) fn exit_code_of(error: &anyhow::Error) -> i32 {
    match (
        error.downcast_ref::<ClientError>(),
        error.downcast_ref::<NoClobber>(),
    ) {
        (Some(error), _) => error.exit_code(),
        (None, Some(refusal)) => refusal.exit_code,
        (None, None) if error.is::<NoIdentity>() => exit::LOCAL_FILE,
        (None, None) => exit::OTHER,
    }
}

pub(crate) fn mb_per_s(report: &TransferReport) -> String {
    format!("{:.1} MB/s", report.bytes_per_second() / 1e6)
}

/// Prints what a step came to; returns its exit code.
pub(crate) fn report(out: &Output, outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Uploaded(report, path) => {
            out.line(&format!(
                "uploaded {}  {} bytes  digest {}  verified  ({}, held {}, sent {} chunks)",
                report.name,
                report.size,
                report.digest,
                mb_per_s(&report),
                report.held_at_start,
                report.chunks_sent
            ));
            out.json(&transfer_json("upload", &report, &path));
            exit::SUCCESS
        }
        Outcome::Downloaded(report, dest) => {
            out.line(&format!(
                "downloaded {} -> {}  {} bytes  digest {}  verified  ({}, held {}, received {} chunks)",
                report.name,
                dest.display(),
                report.size,
                report.digest,
                mb_per_s(&report),
                report.held_at_start,
                report.chunks_sent
            ));
            out.json(&transfer_json("download", &report, &dest));
            exit::SUCCESS
        }
        Outcome::Deleted(name) => {
            out.line(&format!("deleted {name}"));
            out.json(&json!({"op": "delete", "ok": true, "name": name}));
            exit::SUCCESS
        }
        Outcome::RoundTrip(report, path) => {
            print_roundtrip(out, &report, &path);
            if report.identical {
                exit::SUCCESS
            } else {
                let error = anyhow::Error::from(ClientError::Verification {
                    name: report.upload.name.clone(),
                    reason: "the downloaded copy differs from the file".into(),
                });
                eprintln!("ferry: roundtrip {}: {error:#}", report.upload.name);
                exit::VERIFICATION
            }
        }
        Outcome::Failed(op, name, error) => out.error(op, name.as_deref(), &error),
    }
}

pub(crate) fn transfer_json(op: &str, report: &TransferReport, path: &Path) -> Value {
    let mut value = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    value["op"] = json!(op);
    value["ok"] = json!(true);
    value["verified"] = json!(true);
    value["path"] = json!(path.display().to_string());
    value
}

pub(crate) fn print_roundtrip(out: &Output, report: &RoundTripReport, path: &Path) {
    out.line(&format!(
        "roundtrip {}  {} bytes  {}",
        report.upload.name,
        report.upload.size,
        if report.identical {
            "identical"
        } else {
            "DIFFERENT"
        }
    ));
    out.line(&format!(
        "  uploaded    digest {}  ({}, held {}, sent {} chunks)",
        report.uploaded_digest,
        mb_per_s(&report.upload),
        report.upload.held_at_start,
        report.upload.chunks_sent
    ));
    out.line(&format!(
        "  downloaded  digest {}  ({}, received {} chunks)",
        report.downloaded_digest,
        mb_per_s(&report.download),
        report.download.chunks_sent
    ));
    out.line(&format!("  sha256      {}", report.sha256));
    let mut value = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    value["op"] = json!("roundtrip");
    value["ok"] = json!(report.identical);
    value["name"] = json!(report.upload.name);
    value["path"] = json!(path.display().to_string());
    out.json(&value);
}

/// `seconds since the epoch` as `YYYY-MM-DD HH:MM:SS` (UTC).
pub(crate) fn utc(seconds: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{seconds} s after 1970"))
}

/// The `ferry list` table: columns two spaces apart, sizes right-aligned, names aligned by
/// their display width (wide characters count twice), then a total line.
#[cfg(test)]
pub(crate) fn list_table(entries: &[crate::remote::Entry]) -> String {
    let mut out = list_rows(entries, true);
    out.push_str(&format!(
        "{} file(s), {} bytes\n",
        entries.len(),
        entries.iter().map(|e| e.size).sum::<u64>()
    ));
    out
}

/// Rows of the `ferry list` table for one page of a listing (with the header line if
/// `header`); a folder's name ends in `/` and has no size, time or digest.
pub(crate) fn list_rows(entries: &[crate::remote::Entry], header: bool) -> String {
    use comfy_table::{presets, CellAlignment, Table};
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    if header {
        table.set_header(["NAME", "SIZE", "MODIFIED (UTC)", "DIGEST"]);
    }
    for entry in entries {
        match entry.folder {
            true => table.add_row([
                entry.name.clone(),
                String::new(),
                String::new(),
                String::new(),
            ]),
            false => table.add_row([
                entry.name.clone(),
                entry.size.to_string(),
                utc(entry.modified),
                entry.digest[..entry.digest.len().min(16)].to_string(),
            ]),
        };
    }
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if index < 3 { 2 } else { 0 }));
        if index == 1 {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
        .lines()
        .map(|line| line.trim_end().to_string() + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Entry;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn the_list_table_has_a_row_per_file() {
        let entries = vec![Entry {
            name: "report.pdf".into(),
            size: 12,
            modified: 0,
            digest: "0123456789abcdef0123".into(),
            chunk_size: 65536,
            mode: None,
            folder: false,
        }];
        let table = list_table(&entries);
        assert!(table.contains("report.pdf"));
        assert!(table.contains("0123456789abcdef"));
        assert!(!table.contains("0123456789abcdef0"));
        assert!(table.ends_with("1 file(s), 12 bytes\n"));
    }

    #[test]
    fn wide_names_keep_the_columns_aligned() {
        let entry = |name: &str, size| Entry {
            name: name.into(),
            size,
            modified: 0,
            digest: "00".into(),
            chunk_size: 65536,
            mode: None,
            folder: false,
        };
        let table = list_table(&[entry("写真.jpg", 5), entry("notes.txt", 12345)]);
        let lines: Vec<&str> = table.lines().collect();
        // "写真.jpg" is 8 columns wide on a terminal, "notes.txt" 9: the size column ends
        // at the same display column on every row.
        let size_end = |line: &str, size: &str| {
            let at = line.find(size).unwrap() + size.len();
            unicode_width(&line[..at])
        };
        assert_eq!(size_end(lines[1], " 5"), size_end(lines[2], "12345"));
        assert_eq!(size_end(lines[0], "SIZE"), size_end(lines[2], "12345"));
    }

    /// Display columns of `text`: CJK ideographs take two.
    fn unicode_width(text: &str) -> usize {
        text.chars()
            .map(|c| {
                if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                    2
                } else {
                    1
                }
            })
            .sum()
    }
}
