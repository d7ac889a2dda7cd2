//! Results of tree commands (upload -r, download -r, delete -r, sync): a line per file as it
//! completes, then a summary.
//!
//! `--json`: one object per file, `{"op", "action", "name", "size", "ok": true, ...}` (with
//! `digest`, `chunks_sent` and `path` where a file moved; `dry_run: true` when nothing was
//! changed), failures as every failed operation prints them (`ok: false`, `error`, `kind`,
//! `exit_code`), then `{"op", "summary": true, "ok", "files", "failed", "bytes",
//! "chunks_sent", <action>: count..., "unchanged", "skipped", "dry_run"}`.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_client::{exit, TransferReport};
use serde_json::json;

use crate::output::Output;
use crate::progress::TreeBar;

/// Counts and the first failure of a tree command; prints as it goes.
pub(crate) struct TreeReport<'a> {
    out: &'a Output,
    op: &'static str,
    pub(crate) bar: TreeBar,
    pub(crate) dry_run: bool,
    counts: BTreeMap<&'static str, u64>,
    files: u64,
    failed: u64,
    bytes: u64,
    chunks_sent: u64,
    pub(crate) unchanged: u64,
    pub(crate) skipped: u64,
    first_failure: i32,
}

/// What was done to a file, in the past tense.
fn done_word(action: &str) -> String {
    match action {
        "upload" => "uploaded".into(),
        "download" => "downloaded".into(),
        "touch" => "touched".into(),
        "delete" => "deleted".into(),
        other => other.to_string(),
    }
}

impl<'a> TreeReport<'a> {
    pub(crate) fn new(out: &'a Output, op: &'static str, bar: TreeBar) -> Self {
        TreeReport {
            out,
            op,
            bar,
            dry_run: false,
            counts: BTreeMap::new(),
            files: 0,
            failed: 0,
            bytes: 0,
            chunks_sent: 0,
            unchanged: 0,
            skipped: 0,
            first_failure: exit::SUCCESS,
        }
    }

    /// A local entry skipped (symbolic link, special file, unusable name): a warning.
    pub(crate) fn skip(&mut self, warning: &str) {
        self.skipped += 1;
        self.bar.suspend(|| eprintln!("ferry: skipped {warning}"));
    }

    /// `action` done to `name` (`size` bytes); `moved` when data was checked end to end.
    pub(crate) fn ok(
        &mut self,
        action: &'static str,
        name: &str,
        size: u64,
        moved: Option<(&TransferReport, &Path)>,
    ) {
        *self.counts.entry(action).or_default() += 1;
        self.files += 1;
        self.bytes += size;
        let mut value = json!({
            "op": self.op, "action": action, "name": name, "size": size, "ok": true,
        });
        let text = match (moved, self.dry_run) {
            (_, true) => {
                value["dry_run"] = json!(true);
                format!("would {action} {name}")
            }
            (Some((report, path)), false) => {
                self.chunks_sent += report.chunks_sent;
                value["digest"] = json!(report.digest);
                value["chunks_sent"] = json!(report.chunks_sent);
                value["verified"] = json!(true);
                value["path"] = json!(path.display().to_string());
                format!(
                    "{} {name}  {size} bytes  digest {}  verified  (sent {} of {} chunks)",
                    done_word(action),
                    report.digest,
                    report.chunks_sent,
                    report.chunks
                )
            }
            (None, false) => format!("{} {name}", done_word(action)),
        };
        self.bar.suspend(|| {
            self.out.line(&text);
            self.out.json(&value);
        });
    }

    /// `action` on `name` failed.
    pub(crate) fn failed(&mut self, action: &'static str, name: &str, error: anyhow::Error) {
        self.files += 1;
        self.failed += 1;
        let code = self
            .bar
            .suspend(|| self.out.error(action, Some(name), &error));
        if self.first_failure == exit::SUCCESS {
            self.first_failure = code;
        }
    }

    /// A failure that ends the command (the connection, a listing): reported, code kept.
    pub(crate) fn fatal(&mut self, what: &str, error: anyhow::Error) {
        let code = self.bar.suspend(|| self.out.error(what, None, &error));
        if self.first_failure == exit::SUCCESS {
            self.first_failure = code;
        }
    }

    /// Prints the summary; returns the exit code (the first failure's).
    pub(crate) fn finish(self) -> i32 {
        self.bar.finish();
        let mut value = json!({
            "op": self.op,
            "summary": true,
            "ok": self.first_failure == exit::SUCCESS,
            "files": self.files,
            "failed": self.failed,
            "bytes": self.bytes,
            "chunks_sent": self.chunks_sent,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
        });
        let mut parts = Vec::new();
        for (action, count) in &self.counts {
            value[*action] = json!(count);
            let word = match self.dry_run {
                true => format!("to {action}"),
                false => done_word(action),
            };
            parts.push(format!("{count} {word}"));
        }
        for (count, word) in [
            (self.unchanged, "unchanged"),
            (self.skipped, "skipped"),
            (self.failed, "failed"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {word}"));
            }
        }
        if parts.is_empty() {
            parts.push("nothing to do".into());
        }
        self.out.line(&format!(
            "{}: {} ({} bytes)",
            self.op,
            parts.join(", "),
            self.bytes
        ));
        self.out.json(&value);
        self.first_failure
    }
}
