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
