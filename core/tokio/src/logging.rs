//! One logging set-up for the Ferry binaries: lines on stderr, filtered by `FERRY_LOG`
//! (then `RUST_LOG`, then the binary's default), coloured only on a terminal; or, with
//! [`LogFormat::Json`], one JSON object per line with the same fields (`timestamp`,
//! `level`, `message` and the event's fields, such as `peer`, `client`, `name`, `size`,
//! `secs`, `mb_s`, `result`) for a log collector.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The environment variable that sets the format where no flag does.
pub const LOG_FORMAT_ENV: &str = "FERRY_LOG_FORMAT";

/// Starts text logging with `default` (an `EnvFilter` directive such as `"info"`) unless
/// `FERRY_LOG` or `RUST_LOG` says otherwise. A second call does nothing.
pub fn init(default: &str) {
    init_with(default, LogFormat::Text);
}

/// Starts logging in `format` (see [`init`]). A second call does nothing.
pub fn init_with(default: &str, format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing::subscriber::set_global_default(subscriber(
        filter(default),
        format,
        ansi,
        std::io::stderr,
    ));
}

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("FERRY_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}

/// The subscriber of [`init_with`], writing to `writer`.
pub fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_target(false)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_transfer(format: LogFormat) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(EnvFilter::new("info"), format, false, move || {
            writer.clone()
        });
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("filtered out");
            tracing::info!(
                peer = %"127.0.0.1:40000",
                client = %"alice",
                op = "upload",
                name = %"report.pdf",
                size = 1_048_576u64,
                secs = %"0.250",
                mb_s = %"4.2",
                result = "verified",
                "transfer"
            );
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_line_parses_and_holds_the_fields() {
        let text = log_transfer(LogFormat::Json);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "transfer");
        assert_eq!(line["peer"], "127.0.0.1:40000");
        assert_eq!(line["client"], "alice");
        assert_eq!(line["op"], "upload");
        assert_eq!(line["name"], "report.pdf");
        assert_eq!(line["size"], 1_048_576);
        assert_eq!(line["secs"], "0.250");
        assert_eq!(line["mb_s"], "4.2");
        assert_eq!(line["result"], "verified");
        let time = line["timestamp"].as_str().unwrap();
        assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
    }

    #[test]
    fn text_line_holds_the_same_fields() {
        let text = log_transfer(LogFormat::Text);
        assert_eq!(text.lines().count(), 1, "{text}");
        for field in [
            " INFO ",
            "transfer",
            "peer=127.0.0.1:40000",
            "client=alice",
            "name=report.pdf",
            "size=1048576",
            "secs=0.250",
            "mb_s=4.2",
            "result=\"verified\"",
        ] {
            assert!(text.contains(field), "{field} missing: {text}");
        }
    }
}
