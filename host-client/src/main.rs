//! `ferry`: upload, download, list and delete files on a Ferry server over mutual TLS.
//!
//! ```text
//! ferry upload FILE... [--name NAME]      upload files (resumes; an identical file sends no data)
//! ferry download NAME... [-o PATH]        download into PATH (a file, or a directory)
//! ferry upload -r DIR... [-L]            upload trees (paths relative to each DIR's parent)
//! ferry download -r PREFIX... [-o DIR]    download every file below PREFIX into DIR
//! ferry list [PREFIX] [-r]                list one level (folders end in /), or every file below
//! ferry delete NAME...                    delete files
//! ferry delete -r PREFIX... [--dry-run]   delete every file below PREFIX
//! ferry sync LOCAL_DIR [PREFIX]           make the server's PREFIX equal LOCAL_DIR
//! ferry sync --down PREFIX LOCAL_DIR      make LOCAL_DIR equal the server's PREFIX
//! ferry roundtrip FILE [--name NAME]      upload, download back, compare, report both digests
//! ferry login BUNDLE [--server ADDR]      keep an identity bundle and write the config file
//! ferry config                            show the server and identity used, and their origin
//! ferry completions bash|zsh|fish|...     print a shell completion script
//! ferry man                               print the man page (roff)
//! ```
//!
//! Common options (before or after the subcommand): `--server HOST[:PORT]` (`FERRY_SERVER`,
//! port 9000 if none), `--identity FILE` (`FERRY_IDENTITY`: one PEM bundle), `--certs DIR`
//! (`FERRY_CERTS`, with `--client NAME`), `--ca`/`--cert`/`--key` (`FERRY_CA`, `FERRY_CERT`,
//! `FERRY_KEY`), `--config FILE` (`FERRY_CONFIG`). Without them the config file
//! (`$XDG_CONFIG_HOME/ferry/config.toml`) decides, then the data directory's
//! `certs/clients/local.bundle.pem`, then `./certs`. `--retries N` (`FERRY_RETRIES`, default 10), `--json`
//! (one JSON object per operation on stdout; `list` prints an array), `--quiet`,
//! `-j`/`--parallel N` (`FERRY_PARALLEL`, default 4: connections used at once for several
//! files; results still print in command-line order).
//! Logs go to stderr, filtered by `FERRY_LOG` or `RUST_LOG` (default `warn`), as text
//! lines or, with `--log-format json` (`FERRY_LOG_FORMAT`), one JSON object per line.
//!
//! Exit codes: 0 success; 1 other error; 2 usage; 3 could not connect, TLS refused or
//! connection lost for good; 4 refused by the server (not found, invalid name, quota,
//! too large, busy, forbidden); 5 verification failed (digest mismatch, corrupted data);
//! 6 local file error. With several files, the first failure's code.

mod cli;
mod config;
mod fetch;
mod hints;
mod identity;
mod output;
mod plan;
mod progress;
mod remote;
mod setup;
mod sync;
mod tree;
mod tree_report;
mod trees;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};
use ferry_client::{
    exit, Client, ClientError, ClientOptions, Progress, ProgressFn, RoundTripReport, TransferReport,
};

use crate::cli::{Cli, Command};
use crate::identity::Settings;
use crate::output::{report, Output};
use crate::plan::{plan, Dest, Failure, NoClobber, Source, Step};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(code) = print_docs(&cli.command) {
        return code;
    }
    let default_filter = if cli.quiet { "error" } else { "warn" };
    ferry_tokio::logging::init_with(default_filter, cli.log_format);
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
    let code = runtime.block_on(run(cli, matches));
    ExitCode::from(code as u8)
}

/// `ferry completions SHELL` and `ferry man`: printed without a runtime or a server.
fn print_docs(command: &Command) -> Option<ExitCode> {
    let mut stdout = std::io::stdout();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "ferry", &mut stdout);
            Some(ExitCode::SUCCESS)
        }
        Command::Man => Some(
            match clap_mangen::Man::new(Cli::command()).render(&mut stdout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    ExitCode::from(exit::OTHER as u8)
                }
            },
        ),
        _ => None,
    }
}

async fn run(cli: Cli, matches: ArgMatches) -> i32 {
    let mut out = Output::new(&cli);
    if let Command::Login { bundle } = &cli.command {
        return match setup::login(&cli, &matches, bundle) {
            Ok(()) => exit::SUCCESS,
            Err(e) => out.error("login", None, &e),
        };
    }
    let settings = match Settings::resolve(&cli, &matches) {
        Ok(settings) => settings,
        Err(e) => return out.error("config", None, &e),
    };
    if let Command::Config = cli.command {
        return setup::show(&cli, &settings);
    }
    out.ca_file = settings
        .identity
        .as_ref()
        .ok()
        .map(|found| found.value.ca_file().to_path_buf());
    let options = match settings.client_options() {
        Ok(mut options) => {
            options.retries = cli.retries;
            options
        }
        Err(e) => return out.error("connect", None, &e),
    };
    if trees::is_tree_command(&cli.command) {
        return trees::run(&cli, &out, options).await;
    }
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
    let connections = (cli.parallel as usize).clamp(1, plan.len().max(1));
    let mut clients = match connect_all(options, connections).await {
        Ok(clients) => clients,
        Err(e) => return out.error("connect", None, &e.into()),
    };
    let plan = match &cli.command {
        Command::Upload {
            no_clobber: true, ..
        } => match refuse_taken(&mut clients[0], plan).await {
            Ok(plan) => plan,
            Err(e) => return out.error("list", None, &e.into()),
        },
        _ => plan,
    };
    match <[Client; 1]>::try_from(clients) {
        Ok([client]) => run_in_turn(client, &out, plan).await,
        Err(clients) => run_at_once(clients, &out, plan).await,
    }
}

/// Uploads of names the server already has, refused (`--no-clobber`).
async fn refuse_taken(client: &mut Client, plan: Vec<Step>) -> Result<Vec<Step>, ClientError> {
    let held: std::collections::HashSet<String> =
        client.list().await?.into_iter().map(|e| e.name).collect();
    Ok(plan
        .into_iter()
        .map(|step| match step {
            Step::Upload { name, .. } if held.contains(&name) => {
                let error = NoClobber::on_server(&name);
                Step::Refused("upload", name, error)
            }
            other => other,
        })
        .collect())
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

/// What a step came to, reported in the order of the command line.
enum Outcome {
    Uploaded(TransferReport, PathBuf),
    Downloaded(TransferReport, PathBuf),
    Deleted(String),
    RoundTrip(Box<RoundTripReport>, PathBuf),
    Failed(&'static str, Option<String>, anyhow::Error),
}

async fn execute(client: &mut Client, step: Step, progress: ProgressFn<'_>) -> Outcome {
    let failed = |op, name: &str, e: ClientError| Outcome::Failed(op, Some(name.into()), e.into());
    match step {
        Step::Upload { source, name } => {
            let shown = source.shown();
            let result = match source {
                Source::File(path) => client.upload_file(&path, &name, progress).await,
                Source::Spooled(file) => {
                    client.upload_open_file(file, &shown, &name, progress).await
                }
            };
            match result {
                Ok(report) => Outcome::Uploaded(report, shown),
                Err(e) => failed("upload", &name, e),
            }
        }
        Step::Download {
            name,
            dest: Dest::File(dest),
        } => match client.download_file(&name, &dest, progress).await {
            Ok(report) => Outcome::Downloaded(report, dest),
            Err(e) => failed("download", &name, e),
        },
        Step::Download {
            name,
            dest: Dest::Stdout,
        } => match download_to_stdout(client, &name, progress).await {
            Ok(report) => Outcome::Downloaded(report, Dest::Stdout.shown()),
            Err(e) => Outcome::Failed("download", Some(name), e),
        },
        Step::Refused(op, name, error) => Outcome::Failed(op, Some(name), error),
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

/// Downloads `name` into a temporary directory, then, verified, copies it to standard output.
async fn download_to_stdout(
    client: &mut Client,
    name: &str,
    progress: ProgressFn<'_>,
) -> anyhow::Result<TransferReport> {
    let spool = tempfile::tempdir().map_err(|e| ClientError::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let file = spool.path().join("download");
    let report = client.download_file(name, &file, progress).await?;
    let copy = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let copied = std::io::copy(&mut std::fs::File::open(&file)?, &mut stdout)?;
        stdout.flush()?;
        Ok(copied)
    });
    copy.await?.map_err(|e| ClientError::Io {
        path: "<standard output>".into(),
        source: e,
    })?;
    Ok(report)
}
