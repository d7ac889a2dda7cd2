//! One logging set-up for the Ferry binaries: lines on stderr, filtered by `FERRY_LOG`
//! (then `RUST_LOG`, then the binary's default), coloured only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Starts logging with `default` (an `EnvFilter` directive such as `"info"`) unless
/// `FERRY_LOG` or `RUST_LOG` says otherwise. A second call does nothing.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env("FERRY_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}
