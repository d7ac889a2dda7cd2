//! The command line: subcommands, options and their environment variables.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub(crate) const LONG_ABOUT: &str = "\
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
pub(crate) const DEFAULT_PARALLEL: u32 = 4;
pub(crate) const MAX_PARALLEL: u32 = 32;

/// Ferry's command-line client.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move files to and from a Ferry server over mutual TLS",
    long_about = LONG_ABOUT,
    args_override_self = true
)]
pub(crate) struct Cli {
    /// Server address, HOST:PORT or HOST (port 9000; an IPv6 address may be in square
    /// brackets); HOST is the TLS server name [default: the config file's, else 127.0.0.1:9000]
    #[arg(long, global = true, env = "FERRY_SERVER", value_parser = parse_server)]
    pub(crate) server: Option<String>,
    /// Client identity: one PEM bundle (certificate, key, CA) as `ferry-certs` writes NAME.bundle.pem
    #[arg(long, global = true, env = "FERRY_IDENTITY", value_name = "FILE")]
    pub(crate) identity: Option<PathBuf>,
    /// A certificate directory: DIR/ca.crt and DIR/clients/CLIENT.{crt,key}
    #[arg(long, global = true, env = "FERRY_CERTS", value_name = "DIR")]
    pub(crate) certs: Option<PathBuf>,
    /// The client whose files --certs uses
    #[arg(long, global = true, default_value = "local", value_name = "NAME")]
    pub(crate) client: String,
    /// CA certificate the server must chain to (with --cert and --key; default certs/ca.crt)
    #[arg(long, global = true, env = "FERRY_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate (default certs/clients/local.crt)
    #[arg(long, global = true, env = "FERRY_CERT")]
    pub(crate) cert: Option<PathBuf>,
    /// Client private key (default certs/clients/local.key)
    #[arg(long, global = true, env = "FERRY_KEY")]
    pub(crate) key: Option<PathBuf>,
    /// The config file [default: $XDG_CONFIG_HOME/ferry/config.toml]
    #[arg(long, global = true, env = "FERRY_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout: one object per operation (`list`: an array;
    /// trees and sync: one per file, then a summary)
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Reconnections per operation after a broken link (backoff 100 ms doubling to 2 s)
    #[arg(long, global = true, env = "FERRY_RETRIES", default_value_t = ferry_client::DEFAULT_RETRIES)]
    pub(crate) retries: u32,
    /// No progress bars and no result lines (errors are still printed)
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    /// Connections used at once when several files are named (results still print in
    /// command-line order), and by `download -r` and `sync --down` (tree uploads go pipelined
    /// over one connection)
    #[arg(long, short = 'j', global = true, env = "FERRY_PARALLEL", default_value_t = DEFAULT_PARALLEL,
          value_parser = clap::value_parser!(u32).range(1..=MAX_PARALLEL as i64))]
    pub(crate) parallel: u32,
    /// Log line format on stderr
    #[arg(long, global = true, env = ferry_tokio::logging::LOG_FORMAT_ENV, value_enum,
          default_value_t = ferry_tokio::logging::LogFormat::Text)]
    pub(crate) log_format: ferry_tokio::logging::LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Upload files (an interrupted upload resumes; an identical file sends no data)
    ///
    /// With -r, each DIR is uploaded with its files' paths relative to DIR's parent
    /// (`ferry upload -r photos` stores `photos/a/b.jpg`), on one connection. Folders are
    /// implied by their files: empty directories are not stored. Symbolic links are skipped
    /// unless -L; fifos, sockets and devices are skipped with a warning.
    Upload {
        /// Files to upload (`-`: standard input, with --name); with -r, directories
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Name on the server (one file only; default: the file's name)
        #[arg(long, conflicts_with = "recursive")]
        name: Option<String>,
        /// Refuse a file whose name the server already has
        #[arg(long, conflicts_with = "recursive")]
        no_clobber: bool,
        /// Upload directories and every file below them
        #[arg(short = 'r', long)]
        recursive: bool,
        /// With -r, follow symbolic links (a link loop is detected and skipped)
        #[arg(short = 'L', long, requires = "recursive")]
        dereference: bool,
    },
    /// Download files (through a partial file, renamed into place once verified)
    Download {
        /// Names on the server
        #[arg(required = true)]
        names: Vec<String>,
        /// Destination: a file or an existing directory for one name, a directory for
        /// several (default: the current directory); `-`: standard output (one name)
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Refuse a name whose local file already exists
        #[arg(long, conflicts_with = "recursive")]
        no_clobber: bool,
        /// Download every file below the PREFIX named, keeping paths relative to PREFIX's
        /// parent (`download -r photos -o out` writes `out/photos/a/b.jpg`), with their
        /// permissions and modification times where the file system allows
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// List your files on the server: one level below PREFIX (folders end in `/`), or with
    /// -r every file below it
    ///
    /// Printed page by page as they arrive. --json without PREFIX and -r prints one array
    /// (as before); with PREFIX or -r one JSON object per line.
    List {
        /// A folder (`photos` or `photos/`); default: the top
        prefix: Option<String>,
        /// Every file below PREFIX, not one level
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Delete files on the server; with -r every file below each PREFIX (asks nothing,
    /// prints each file removed, then a count)
    Delete {
        /// Names on the server (with -r: folders)
        #[arg(required = true)]
        names: Vec<String>,
        /// Delete every file below each name
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Print what would be deleted, delete nothing
        #[arg(long, requires = "recursive")]
        dry_run: bool,
    },
    /// Make the server's tree under PREFIX equal LOCAL_DIR (or, with --down, LOCAL_DIR equal
    /// the server's PREFIX)
    ///
    /// Compares size and modification time, then (sizes equal, times not) the local file's
    /// digest with the server's: an unchanged file sends no data. New and changed files are
    /// sent (or, with --down, downloaded); --delete removes what the other side lacks.
    /// A rerun after an interruption skips what is done and resumes a cut transfer.
    /// `ferry sync LOCAL_DIR [PREFIX]` (PREFIX defaults to LOCAL_DIR's name);
    /// `ferry sync --down PREFIX LOCAL_DIR`.
    Sync {
        /// LOCAL_DIR (with --down: PREFIX)
        first: String,
        /// PREFIX (with --down: LOCAL_DIR, required)
        second: Option<String>,
        /// Download: make LOCAL_DIR equal the server's PREFIX
        #[arg(long)]
        down: bool,
        /// Also remove files the source side does not have (never outside LOCAL_DIR)
        #[arg(long)]
        delete: bool,
        /// Print the plan, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Follow symbolic links in LOCAL_DIR (uploads only)
        #[arg(short = 'L', long, conflicts_with = "down")]
        dereference: bool,
    },
    /// Upload a file, download it back, compare chunk by chunk and whole, report both digests
    Roundtrip {
        /// The file
        file: PathBuf,
        /// Name on the server (default: the file's name)
        #[arg(long)]
        name: Option<String>,
    },
    /// Keep a client bundle and write the config file: `ferry` then works from any directory
    ///
    /// Checks the bundle (it parses, its key belongs to its certificate), copies it beside the
    /// config file (mode 0600) and writes the config's `server` (with --server) and `identity`.
    Login {
        /// The bundle (certificate, key, CA), as `ferry-certs client NAME` writes it
        bundle: PathBuf,
    },
    /// Print the effective server and identity and where each comes from
    Config,
    /// Print the shell completion script of `ferry` for SHELL (no server contacted)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the man page of `ferry` in roff (no server contacted)
    Man,
}

pub(crate) fn parse_server(value: &str) -> Result<String, String> {
    ferry_client::split_server(value)
        .map(|_| value.trim().to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `ferry ARGS...` parsed as the binary parses it.
    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
    }

    /// `ferry ARGS...` parsed, with clap's matches (where each value came from).
    pub(crate) fn parse_with_matches(args: &[&str]) -> (Cli, clap::ArgMatches) {
        use clap::FromArgMatches;
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("ferry").chain(args.iter().copied()))
            .unwrap();
        (Cli::from_arg_matches(&matches).unwrap(), matches)
    }

    #[test]
    fn no_identity_or_server_is_assumed_by_the_parser() {
        let cli = parse(&["list"]).unwrap();
        // The environment may set these; only check when it does not.
        for (var, value) in [
            ("FERRY_SERVER", cli.server.is_some()),
            ("FERRY_IDENTITY", cli.identity.is_some()),
            ("FERRY_CERTS", cli.certs.is_some()),
            ("FERRY_CA", cli.ca.is_some()),
            ("FERRY_CERT", cli.cert.is_some()),
            ("FERRY_KEY", cli.key.is_some()),
        ] {
            if std::env::var_os(var).is_none() {
                assert!(!value, "{var}");
            }
        }
        assert_eq!(cli.client, "local");
        assert!(!cli.json && !cli.quiet);
        assert!(matches!(
            cli.command,
            Command::List {
                prefix: None,
                recursive: false
            }
        ));
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let before = parse(&["--server", "h:1", "--json", "--retries", "3", "list"]).unwrap();
        let after = parse(&["list", "--server", "h:1", "--json", "--retries", "3"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.server.as_deref(), Some("h:1"));
            assert!(cli.json);
            assert_eq!(cli.retries, 3);
        }
        let cli = parse(&[
            "upload", "a", "--name", "b", "--ca", "x", "--cert", "y", "--key", "z", "-q",
        ])
        .unwrap();
        assert_eq!(
            (cli.ca, cli.cert, cli.key),
            (Some("x".into()), Some("y".into()), Some("z".into()))
        );
        assert!(cli.quiet);
        match cli.command {
            Command::Upload { files, name, .. } => {
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
            &["login"],
            &["list", "--parallel", "0"],
            &["upload", "-L", "a"],
            &["upload", "-r", "a", "--name", "b"],
            &["delete", "--dry-run", "a"],
            &["sync", "--down", "-L", "p", "d"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
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
