//! `ferry`: upload, download, list and delete files on a Ferry server over mutual TLS.
//!
//! ```text
//! ferry upload FILE... [--name NAME]      upload files (resumes; an identical file sends no data)
//! ferry download NAME... [-o PATH]        download into PATH (a file, or a directory)
//! ferry list                              list your files
//! ferry delete NAME...                    delete files
//! ferry roundtrip FILE [--name NAME]      upload, download back, compare, report both digests
//! ```
//!
//! Common options (before or after the subcommand): `--server HOST:PORT` (`FERRY_SERVER`,
//! default `127.0.0.1:9000`), `--ca` (`FERRY_CA`, default `certs/ca.crt`), `--cert`
//! (`FERRY_CERT`, default `certs/clients/local.crt`), `--key` (`FERRY_KEY`, default
//! `certs/clients/local.key`), `--retries N` (`FERRY_RETRIES`, default 10), `--json`
//! (one JSON object per operation on stdout; `list` prints an array), `--quiet`,
//! `-j`/`--parallel N` (`FERRY_PARALLEL`, default 4: connections used at once for several
//! files; results still print in command-line order).
//! Logs go to stderr, filtered by `FERRY_LOG` or `RUST_LOG` (default `warn`).
//!
//! Exit codes: 0 success; 1 other error; 2 usage; 3 could not connect, TLS refused or
//! connection lost for good; 4 refused by the server (not found, invalid name, quota,
//! too large, busy, forbidden); 5 verification failed (digest mismatch, corrupted data);
//! 6 local file error. With several files, the first failure's code.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ferry_client::{
    exit, Client, ClientError, ClientOptions, FileEntry, Phase, Progress, ProgressFn,
    RoundTripReport, TransferReport, DEFAULT_SERVER,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

const LONG_ABOUT: &str = "\
Ferry's command-line client: moves files to and from a Ferry server over mutual TLS.

Every file is sent in chunks that each carry a SHA-256 and is verified as a whole by both \
ends. A dropped connection is retried with backoff and the transfer continues from the \
chunks the other side already holds. Downloads go to a partial file (.NAME.ferry-part \
beside the destination) that is renamed into place only after verification.

Exit codes:
  0  success
  1  other error (protocol violation, internal error)
  2  usage error (bad arguments)
  3  could not connect, TLS refused, or the connection was lost for good
  4  refused by the server: not found, invalid name, quota exceeded, too large, busy, forbidden
  5  verification failed: digest mismatch, corrupted data, a source that kept changing
  6  local file error (including unreadable certificate or key files)
With several files, ferry goes on after a failure and exits with the first failure's code.";

/// Connections `ferry` opens for several files unless told otherwise: enough to overlap
/// one file's round trips and commit with the others' (1000 small files: 0.25 s on one
/// connection, 0.11 s on four, on the benchmark machine).
const DEFAULT_PARALLEL: u32 = 4;
const MAX_PARALLEL: u32 = 32;

/// Ferry's command-line client.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move files to and from a Ferry server over mutual TLS",
    long_about = LONG_ABOUT,
    args_override_self = true
)]
struct Cli {
    /// Server address, HOST:PORT ([ADDRESS]:PORT for IPv6); HOST is the TLS server name
    #[arg(long, global = true, env = "FERRY_SERVER", default_value = DEFAULT_SERVER, value_parser = parse_server)]
    server: String,
    /// CA certificate the server must chain to
    #[arg(long, global = true, env = "FERRY_CA", default_value = "certs/ca.crt")]
    ca: PathBuf,
    /// Client certificate
    #[arg(
        long,
        global = true,
        env = "FERRY_CERT",
        default_value = "certs/clients/local.crt"
    )]
    cert: PathBuf,
    /// Client private key
    #[arg(
        long,
        global = true,
        env = "FERRY_KEY",
        default_value = "certs/clients/local.key"
    )]
    key: PathBuf,
    /// Print machine-readable JSON on stdout: one object per operation (`list`: an array)
    #[arg(long, global = true)]
    json: bool,
    /// Reconnections per operation after a broken link (backoff 100 ms doubling to 2 s)
    #[arg(long, global = true, env = "FERRY_RETRIES", default_value_t = ferry_client::DEFAULT_RETRIES)]
    retries: u32,
    /// No progress bars and no result lines (errors are still printed)
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Connections used at once when several files are named (results still print in
    /// command-line order)
    #[arg(long, short = 'j', global = true, env = "FERRY_PARALLEL", default_value_t = DEFAULT_PARALLEL,
          value_parser = clap::value_parser!(u32).range(1..=MAX_PARALLEL as i64))]
    parallel: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload files (an interrupted upload resumes; an identical file sends no data)
    Upload {
        /// Files to upload
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Name on the server (one file only; default: the file's name)
        #[arg(long)]
        name: Option<String>,
    },
    /// Download files (through a partial file, renamed into place once verified)
    Download {
        /// Names on the server
        #[arg(required = true)]
        names: Vec<String>,
        /// Destination: a file or an existing directory for one name, a directory for
        /// several (default: the current directory)
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// List your files on the server
    List,
    /// Delete files on the server
    Delete {
        /// Names on the server
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Upload a file, download it back, compare chunk by chunk and whole, report both digests
    Roundtrip {
        /// The file
        file: PathBuf,
        /// Name on the server (default: the file's name)
        #[arg(long)]
        name: Option<String>,
    },
}

fn parse_server(value: &str) -> Result<String, String> {
    ferry_client::split_server(value)
        .map(|_| value.trim().to_string())
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    // Connections at once hash and encrypt on threads of their own. (A multi-thread
    // runtime with one worker moved a 1 GiB download 40% slower than a current-thread one.)
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = threads.min(cli.parallel as usize);
    let mut builder = if workers > 1 {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry: cannot start: {e}");
            return ExitCode::from(exit::OTHER as u8);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(code as u8)
}

fn init_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FERRY_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(if quiet { "error" } else { "warn" }));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// How results are shown.
struct Output {
    json: bool,
    quiet: bool,
    bars: bool,
}

impl Output {
    fn new(cli: &Cli) -> Self {
        Self {
            json: cli.json,
            quiet: cli.quiet,
            bars: !cli.json && !cli.quiet && std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, text: &str) {
        if !self.quiet && !self.json {
            println!("{text}");
        }
    }

    fn json(&self, value: &Value) {
        if self.json {
            println!("{value}");
        }
    }

    /// Reports a failed operation; returns its exit code.
    fn error(&self, op: &str, name: Option<&str>, error: &anyhow::Error) -> i32 {
        let code = exit_code_of(error);
        let what = match name {
            Some(name) => format!("{op} {name}"),
            None => op.to_string(),
        };
        eprintln!("ferry: {what}: {error:#}");
        if self.json {
            let kind = error
                .downcast_ref::<ClientError>()
                .map(ClientError::kind)
                .unwrap_or("other");
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
    fn overall_bar(&self, files: usize) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = byte_bar(0);
        bar.set_message(format!("0/{files} files"));
        bar
    }

    fn progress(&self) -> Bars {
        Bars {
            enabled: self.bars,
            bar: None,
            phase: None,
        }
    }
}

/// The exit code of an error from this program.
fn exit_code_of(error: &anyhow::Error) -> i32 {
    match error.downcast_ref::<ClientError>() {
        Some(error) => error.exit_code(),
        None => exit::OTHER,
    }
}

/// A progress bar per phase of an operation, on a terminal only.
struct Bars {
    enabled: bool,
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
}

impl Bars {
    fn update(&mut self, progress: Progress) {
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

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.phase = None;
    }
}

/// A progress bar of bytes on stderr, its message on the left.
fn byte_bar(total_bytes: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn mb_per_s(report: &TransferReport) -> String {
    format!("{:.1} MB/s", report.bytes_per_second() / 1e6)
}

async fn run(cli: Cli) -> i32 {
    let out = Output::new(&cli);
    // Check what can be checked locally before connecting.
    let plan = match plan(&cli) {
        Ok(plan) => plan,
        Err(Failure::Usage(message)) => {
            Cli::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
        Err(Failure::Op(op, name, error)) => return out.error(op, name.as_deref(), &error),
    };
    let options = match ClientOptions::from_files(&cli.server, &cli.ca, &cli.cert, &cli.key) {
        Ok(mut options) => {
            options.retries = cli.retries;
            options
        }
        Err(e) => return out.error("connect", None, &e.into()),
    };
    let connections = (cli.parallel as usize).clamp(1, plan.len().max(1));
    let clients = match connect_all(options, connections).await {
        Ok(clients) => clients,
        Err(e) => return out.error("connect", None, &e.into()),
    };
    match <[Client; 1]>::try_from(clients) {
        Ok([client]) => run_in_turn(client, &out, plan).await,
        Err(clients) => run_at_once(clients, &out, plan).await,
    }
}

/// Opens `count` connections at once.
async fn connect_all(options: ClientOptions, count: usize) -> Result<Vec<Client>, ClientError> {
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..count {
        let options = options.clone();
        connecting.spawn(Client::connect(options));
    }
    let mut clients = Vec::with_capacity(count);
    while let Some(joined) = connecting.join_next().await {
        let client = joined.map_err(|e| ClientError::Protocol(format!("connecting: {e}")))??;
        clients.push(client);
    }
    Ok(clients)
}

/// Keeps the first failure's exit code; whether to go on.
fn note_code(first_failure: &mut i32, code: i32) -> bool {
    if code != exit::SUCCESS && *first_failure == exit::SUCCESS {
        *first_failure = code;
    }
    code != exit::CONNECT
}

/// One step after another on one connection, a progress bar per phase.
async fn run_in_turn(mut client: Client, out: &Output, plan: Vec<Step>) -> i32 {
    let mut first_failure = exit::SUCCESS;
    for step in plan {
        let mut bars = out.progress();
        let outcome = execute(&mut client, step, &mut |p| bars.update(p)).await;
        bars.finish();
        if !note_code(&mut first_failure, report(out, outcome)) {
            break;
        }
    }
    client.close().await;
    first_failure
}

/// Steps spread over several connections, each running on its own task; results are
/// printed in the order of the command line under one progress bar for all of them.
async fn run_at_once(mut idle: Vec<Client>, out: &Output, plan: Vec<Step>) -> i32 {
    let total = plan.len();
    let bar = out.overall_bar(total);
    let mut steps = plan.into_iter().enumerate();
    let mut running = tokio::task::JoinSet::new();
    let mut finished = std::collections::BTreeMap::new();
    let (mut next_to_report, mut first_failure, mut go_on) = (0, exit::SUCCESS, true);
    loop {
        if go_on {
            while let Some(mut client) = idle.pop() {
                let Some((index, step)) = steps.next() else {
                    idle.push(client);
                    break;
                };
                let bar = bar.clone();
                running.spawn(async move {
                    let (mut sized, mut counted) = (false, 0u64);
                    let mut progress = |p: Progress| {
                        if !sized {
                            bar.inc_length(p.total_bytes);
                            sized = true;
                        }
                        bar.inc(p.done_bytes.saturating_sub(counted));
                        counted = counted.max(p.done_bytes);
                    };
                    let outcome = execute(&mut client, step, &mut progress).await;
                    (index, client, outcome)
                });
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok((index, client, outcome)) => {
                idle.push(client);
                finished.insert(index, outcome);
            }
            Err(e) => {
                let error = anyhow::anyhow!("a transfer task failed: {e}");
                note_code(&mut first_failure, out.error("transfer", None, &error));
                go_on = false;
            }
        }
        while let Some(outcome) = finished.remove(&next_to_report) {
            next_to_report += 1;
            bar.set_message(format!("{next_to_report}/{total} files"));
            let code = bar.suspend(|| report(out, outcome));
            go_on &= note_code(&mut first_failure, code);
        }
    }
    bar.finish_and_clear();
    for client in &mut idle {
        client.close().await;
    }
    first_failure
}

/// One operation of the command line, with its local paths resolved.
enum Step {
    Upload { path: PathBuf, name: String },
    Download { name: String, dest: PathBuf },
    List,
    Delete { name: String },
    RoundTrip { path: PathBuf, name: String },
}

enum Failure {
    Usage(String),
    Op(&'static str, Option<String>, anyhow::Error),
}

/// The server name of a local file: its file name.
fn name_of(path: &Path) -> Result<String, Failure> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{}: cannot name it on the server (not a UTF-8 file name); use --name",
                path.display()
            ))
        })
}

/// A local file name for a server name: its last `/`-separated part, if usable.
fn local_name(name: &str) -> Option<&str> {
    let last = name.rsplit(['/', '\\']).next()?;
    (!last.is_empty() && last != "." && last != "..").then_some(last)
}

fn plan(cli: &Cli) -> Result<Vec<Step>, Failure> {
    Ok(match &cli.command {
        Command::Upload { files, name } => {
            if name.is_some() && files.len() > 1 {
                return Err(Failure::Usage("--name needs exactly one FILE".into()));
            }
            let mut steps = Vec::new();
            for path in files {
                let name = match name {
                    Some(name) => name.clone(),
                    None => name_of(path)?,
                };
                steps.push(Step::Upload {
                    path: path.clone(),
                    name,
                });
            }
            steps
        }
        Command::Download { names, output } => {
            let dir_given = output.as_deref().filter(|p| p.is_dir());
            if names.len() > 1 && output.is_some() && dir_given.is_none() {
                return Err(Failure::Usage(format!(
                    "-o {}: with several names, -o must be an existing directory",
                    output.as_deref().unwrap_or(Path::new("")).display()
                )));
            }
            let mut steps = Vec::new();
            for name in names {
                let dest = match (output, dir_given) {
                    (Some(file), None) => file.clone(),
                    (_, dir) => {
                        let local = local_name(name).ok_or_else(|| {
                            Failure::Op(
                                "download",
                                Some(name.clone()),
                                ClientError::InvalidName {
                                    name: name.clone(),
                                    reason: "no usable local file name; give one with -o".into(),
                                }
                                .into(),
                            )
                        })?;
                        dir.unwrap_or(Path::new(".")).join(local)
                    }
                };
                steps.push(Step::Download {
                    name: name.clone(),
                    dest,
                });
            }
            steps
        }
        Command::List => vec![Step::List],
        Command::Delete { names } => names
            .iter()
            .map(|name| Step::Delete { name: name.clone() })
            .collect(),
        Command::Roundtrip { file, name } => vec![Step::RoundTrip {
            path: file.clone(),
            name: match name {
                Some(name) => name.clone(),
                None => name_of(file)?,
            },
        }],
    })
}

/// What a step came to, reported in the order of the command line.
enum Outcome {
    Uploaded(TransferReport, PathBuf),
    Downloaded(TransferReport, PathBuf),
    Listed(Vec<FileEntry>),
    Deleted(String),
    RoundTrip(Box<RoundTripReport>, PathBuf),
    Failed(&'static str, Option<String>, anyhow::Error),
}

async fn execute(client: &mut Client, step: Step, progress: ProgressFn<'_>) -> Outcome {
    let failed = |op, name: &str, e: ClientError| Outcome::Failed(op, Some(name.into()), e.into());
    match step {
        Step::Upload { path, name } => match client.upload_file(&path, &name, progress).await {
            Ok(report) => Outcome::Uploaded(report, path),
            Err(e) => failed("upload", &name, e),
        },
        Step::Download { name, dest } => match client.download_file(&name, &dest, progress).await {
            Ok(report) => Outcome::Downloaded(report, dest),
            Err(e) => failed("download", &name, e),
        },
        Step::List => match client.list().await {
            Ok(entries) => Outcome::Listed(entries),
            Err(e) => Outcome::Failed("list", None, e.into()),
        },
        Step::Delete { name } => match client.delete(&name).await {
            Ok(()) => Outcome::Deleted(name),
            Err(e) => failed("delete", &name, e),
        },
        Step::RoundTrip { path, name } => match client.roundtrip(&path, &name, progress).await {
            Ok(report) => Outcome::RoundTrip(Box::new(report), path),
            Err(e) => failed("roundtrip", &name, e),
        },
    }
}

/// Prints what a step came to; returns its exit code.
fn report(out: &Output, outcome: Outcome) -> i32 {
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
        Outcome::Listed(entries) => {
            if out.json {
                println!("{}", serde_json::to_string(&entries).unwrap_or_default());
            } else if !out.quiet {
                print!("{}", list_table(&entries));
            }
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

fn transfer_json(op: &str, report: &TransferReport, path: &Path) -> Value {
    let mut value = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    value["op"] = json!(op);
    value["ok"] = json!(true);
    value["verified"] = json!(true);
    value["path"] = json!(path.display().to_string());
    value
}

fn print_roundtrip(out: &Output, report: &RoundTripReport, path: &Path) {
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
fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn list_table(entries: &[FileEntry]) -> String {
    let width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut table = format!(
        "{:<width$}  {:>14}  {:<19}  DIGEST\n",
        "NAME", "SIZE", "MODIFIED (UTC)"
    );
    for entry in entries {
        table.push_str(&format!(
            "{:<width$}  {:>14}  {:<19}  {}\n",
            entry.name,
            entry.size,
            utc(entry.modified),
            &entry.digest[..entry.digest.len().min(16)],
        ));
    }
    table.push_str(&format!(
        "{} file(s), {} bytes\n",
        entries.len(),
        entries.iter().map(|e| e.size).sum::<u64>()
    ));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_files_ferry_certs_init_writes() {
        let cli = parse(&["list"]).unwrap();
        // The environment may set these; only check when it does not.
        if std::env::var_os("FERRY_SERVER").is_none() {
            assert_eq!(cli.server, "127.0.0.1:9000");
        }
        if std::env::var_os("FERRY_CA").is_none() {
            assert_eq!(cli.ca, Path::new("certs/ca.crt"));
        }
        if std::env::var_os("FERRY_CERT").is_none() {
            assert_eq!(cli.cert, Path::new("certs/clients/local.crt"));
        }
        if std::env::var_os("FERRY_KEY").is_none() {
            assert_eq!(cli.key, Path::new("certs/clients/local.key"));
        }
        assert!(!cli.json && !cli.quiet);
        assert!(matches!(cli.command, Command::List));
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let before = parse(&["--server", "h:1", "--json", "--retries", "3", "list"]).unwrap();
        let after = parse(&["list", "--server", "h:1", "--json", "--retries", "3"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.server, "h:1");
            assert!(cli.json);
            assert_eq!(cli.retries, 3);
        }
        let cli = parse(&[
            "upload", "a", "--name", "b", "--ca", "x", "--cert", "y", "--key", "z", "-q",
        ])
        .unwrap();
        assert_eq!(
            (cli.ca, cli.cert, cli.key),
            ("x".into(), "y".into(), "z".into())
        );
        assert!(cli.quiet);
        match cli.command {
            Command::Upload { files, name } => {
                assert_eq!(files, [PathBuf::from("a")]);
                assert_eq!(name.as_deref(), Some("b"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn usage_errors_exit_with_2() {
        for args in [
            &["upload"][..],
            &["download"],
            &["frobnicate"],
            &["list", "--server", "no port:"],
            &["list", "--retries", "-1"],
            &["roundtrip"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn plans_resolve_names_and_destinations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let cli = parse(&["upload", "/x/a.txt", "b.bin"]).unwrap();
        let names: Vec<String> = plan(&cli)
            .ok()
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Step::Upload { name, .. } => name,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["a.txt", "b.bin"]);
        assert!(matches!(
            plan(&parse(&["upload", "a", "b", "--name", "c"]).unwrap()),
            Err(Failure::Usage(_))
        ));
        // One name: -o is a file, or an existing directory.
        let dest = |args: &[&str]| -> Vec<PathBuf> {
            match plan(&parse(args).unwrap()) {
                Ok(steps) => steps
                    .into_iter()
                    .map(|s| match s {
                        Step::Download { dest, .. } => dest,
                        _ => unreachable!(),
                    })
                    .collect(),
                Err(_) => panic!("{args:?} refused"),
            }
        };
        assert_eq!(
            dest(&["download", "n", "-o", "/t/f"]),
            [PathBuf::from("/t/f")]
        );
        assert_eq!(dest(&["download", "n", "-o", d]), [dir.path().join("n")]);
        assert_eq!(dest(&["download", "dir/n"]), [PathBuf::from("./n")]);
        assert_eq!(
            dest(&["download", "a", "b", "-o", d]),
            [dir.path().join("a"), dir.path().join("b")]
        );
        assert!(matches!(
            plan(&parse(&["download", "a", "b", "-o", "/no/such/dir"]).unwrap()),
            Err(Failure::Usage(_))
        ));
        match plan(&parse(&["download", ".."]).unwrap()) {
            Err(Failure::Op(_, _, error)) => assert_eq!(exit_code_of(&error), 4),
            _ => panic!("'..' accepted as a local name"),
        }
    }

    #[test]
    fn local_names_are_the_last_part() {
        assert_eq!(local_name("a"), Some("a"));
        assert_eq!(local_name("x/y/z.txt"), Some("z.txt"));
        assert_eq!(local_name("x\\y"), Some("y"));
        for bad in ["", ".", "..", "a/", "a/.."] {
            assert_eq!(local_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn the_list_table_has_a_row_per_file() {
        let entries = vec![FileEntry {
            name: "report.pdf".into(),
            size: 12,
            modified: 0,
            digest: "0123456789abcdef0123".into(),
            chunk_size: 65536,
        }];
        let table = list_table(&entries);
        assert!(table.contains("report.pdf"));
        assert!(table.contains("0123456789abcdef"));
        assert!(!table.contains("0123456789abcdef0"));
        assert!(table.ends_with("1 file(s), 12 bytes\n"));
    }

    #[test]
    fn help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for line in [
            "3  could not connect",
            "4  refused",
            "5  verification",
            "6  local file",
        ] {
            assert!(help.contains(line), "{line:?} missing");
        }
    }
}
