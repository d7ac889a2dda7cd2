//! Progress bars on stderr, shown only on a terminal.

use ferry_client::{Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar per phase of an operation, on a terminal only.
pub(crate) struct Bars {
    enabled: bool,
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
}

impl Bars {
    pub(crate) fn new(enabled: bool) -> Bars {
        Bars {
            enabled,
            bar: None,
            phase: None,
        }
    }

    pub(crate) fn update(&mut self, progress: Progress) {
        if !self.enabled {
            return;
        }
        if self.phase != Some(progress.phase) {
            self.finish();
            let bar = byte_bar(progress.total_bytes);
            let verb = match progress.phase {
                Phase::Upload => "upload",
                Phase::Download => "download",
            };
            bar.set_message(format!("{verb} {}", progress.name));
            self.bar = Some(bar);
            self.phase = Some(progress.phase);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(progress.total_bytes);
            bar.set_position(progress.done_bytes);
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.phase = None;
    }
}

/// A progress bar of bytes on stderr, its message on the left.
pub(crate) fn byte_bar(total_bytes: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// One bar for a whole tree: bytes done of all files (rate, ETA), files done, and the
/// file being moved. Several files may be under way at once (pipelined uploads).
pub(crate) struct TreeBar {
    bar: ProgressBar,
    files: usize,
    files_done: usize,
    current: String,
    /// Bytes counted so far of each file under way, by index.
    under_way: std::collections::HashMap<usize, u64>,
}

impl TreeBar {
    /// A bar for `files` files of `total_bytes` in all (hidden unless `shown`).
    pub(crate) fn new(shown: bool, files: usize, total_bytes: u64) -> TreeBar {
        let bar = match shown {
            true => ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr()),
            false => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}\n{wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let tree = TreeBar {
            bar,
            files,
            files_done: 0,
            current: String::new(),
            under_way: Default::default(),
        };
        tree.show_counts();
        tree
    }

    fn show_counts(&self) {
        self.bar
            .set_prefix(format!("{}/{} files", self.files_done, self.files));
    }

    /// File `index`, named `name`, starts.
    pub(crate) fn start(&mut self, index: usize, name: &str) {
        self.under_way.insert(index, 0);
        if self.current != name {
            self.current = name.to_string();
            self.bar.set_message(self.current.clone());
        }
    }

    /// File `index` has `done_bytes` done.
    pub(crate) fn progress(&mut self, index: usize, done_bytes: u64) {
        let counted = self.under_way.entry(index).or_insert(0);
        self.bar.inc(done_bytes.saturating_sub(*counted));
        *counted = (*counted).max(done_bytes);
    }

    /// File `index` (of `size` bytes) is done, well or not: its bytes count as done.
    pub(crate) fn done(&mut self, index: usize, size: u64) {
        let counted = self.under_way.remove(&index).unwrap_or(0);
        self.bar.inc(size.saturating_sub(counted));
        self.files_done += 1;
        self.show_counts();
    }

    /// Runs `print` with the bar out of the way.
    pub(crate) fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        self.bar.suspend(print)
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
