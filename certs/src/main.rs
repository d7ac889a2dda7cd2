//! `ferry-certs`: command line for Ferry's certificate authority (see the library docs).

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use ferry_certs::{
    init, CertDir, CertError, DataDir, InitOptions, NewClient, Renewal, DEFAULT_CA_DAYS,
    DEFAULT_CA_NAME, DEFAULT_CLIENT_DAYS, DEFAULT_SERVER_DAYS,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Manage the certificates of a Ferry installation: a private CA, the server certificate,
/// client certificates and the revocation list.
#[derive(Debug, Parser)]
#[command(name = "ferry-certs", version)]
struct Cli {
    /// Certificate directory [env: FERRY_CERTS, or the older FERRY_CERTS_DIR] [default:
    /// DATA/certs, where DATA is $FERRY_DATA_DIR or ~/.local/share/ferry].
    #[arg(
        long = "certs",
        visible_alias = "dir",
        global = true,
        value_name = "DIR"
    )]
    dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the CA, the server certificate, the client `local` and an empty CRL.
    ///
    /// Existing files are checked and kept; use --force to replace them all.
    Init {
        /// Common name of the CA.
        #[arg(long, default_value = DEFAULT_CA_NAME)]
        ca_name: String,
        /// Validity of the CA, in days.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        ca_days: u32,
        /// Validity of the server certificate, in days.
        #[arg(long, default_value_t = DEFAULT_SERVER_DAYS)]
        server_days: u32,
        /// Validity of the `local` client certificate, in days.
        #[arg(long, default_value_t = DEFAULT_CLIENT_DAYS)]
        client_days: u32,
        /// Extra subject alternative name for the server (DNS name or IP); repeatable.
        #[arg(long = "san", value_name = "SAN")]
        sans: Vec<String>,
        /// Replace an existing CA, server certificate, `local` client and CRL.
        #[arg(long)]
        force: bool,
    },
    /// Issue a new server certificate (SANs localhost, 127.0.0.1, ::1 and --san).
    Server {
        /// Extra subject alternative name (DNS name or IP); repeatable.
        #[arg(long = "san", value_name = "SAN")]
        sans: Vec<String>,
        /// Validity, in days.
        #[arg(long, default_value_t = DEFAULT_SERVER_DAYS)]
        days: u32,
        /// Replace an existing server.crt / server.key.
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate to a new client: clients/NAME.crt, NAME.key and NAME.bundle.pem.
    ///
    /// A name is issued once: the server keeps a client's files under its name. A name
    /// already issued is refused (renew it with `ferry-certs renew NAME`), and so is a
    /// revoked one unless --reuse-revoked-name.
    Client {
        /// Client name: a letter or digit, then up to 63 of letters, digits, '.', '_', '-'.
        name: String,
        /// Validity, in days.
        #[arg(long, default_value_t = DEFAULT_CLIENT_DAYS)]
        days: u32,
        /// Same as `ferry-certs renew NAME --new-key`: a new key and certificate for the
        /// name (known or not), replacing its files.
        #[arg(long)]
        force: bool,
        /// Issue a name whose certificates were all revoked; its stored files go with it.
        #[arg(long)]
        reuse_revoked_name: bool,
    },
    /// Issue a fresh certificate to an existing client: same name, same files on the server.
    ///
    /// Certifies clients/NAME.key again unless --new-key; replaces NAME.crt and
    /// NAME.bundle.pem (and NAME.key) atomically. The earlier certificates stay valid until
    /// they expire, unless --revoke-old.
    Renew {
        /// Client name.
        name: String,
        /// Generate a new key (for a lost or exposed key).
        #[arg(long)]
        new_key: bool,
        /// Validity, in days.
        #[arg(long, default_value_t = DEFAULT_CLIENT_DAYS)]
        days: u32,
        /// Revoke the name's earlier certificates and write a new crl.pem.
        #[arg(long)]
        revoke_old: bool,
        /// Renew a name whose certificates were all revoked.
        #[arg(long)]
        reuse_revoked_name: bool,
    },
    /// Revoke every certificate of a client (or one, with --serial) and write a new signed
    /// crl.pem.
    Revoke {
        /// Client name.
        #[arg(required_unless_present = "serial", conflicts_with = "serial")]
        name: Option<String>,
        /// Revoke only the certificate with this serial (hex, as `list` shows it).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
    },
    /// List issued certificates: kind, name, serial, fingerprint, expiry, revoked.
    List {
        /// Print the index entries as JSON (full fingerprints).
        #[arg(long)]
        json: bool,
    },
    /// Print the shell completion script of ferry-certs for SHELL.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page of ferry-certs (roff).
    Man,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-certs: error: {e:#}");
            if let Some(CertError::Missing { path }) = e.downcast_ref::<CertError>() {
                if path.file_name() == Some(std::ffi::OsStr::new(ferry_certs::CA_CERT)) {
                    eprintln!("hint: create the CA first with `ferry-certs init` (or pass --certs DIR / FERRY_CERTS)");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// A path for messages.
fn show(path: &Path) -> String {
    path.display().to_string()
}

/// The certificate directory: --certs/--dir, else $FERRY_CERTS, else $FERRY_CERTS_DIR (the
/// older name, kept as an alias), else DATA/certs. (clap's `env` takes one name, so the
/// environment is read here.)
fn cert_dir(flag: Option<PathBuf>) -> CertDir {
    let from_env = || {
        ["FERRY_CERTS", "FERRY_CERTS_DIR"]
            .into_iter()
            .find_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
    };
    match flag.or_else(from_env) {
        Some(dir) => CertDir::new(dir),
        None => DataDir::default_location().certs(),
    }
}

fn run(cli: Cli) -> Result<()> {
    let dir = cert_dir(cli.dir);
    match cli.command {
        Command::Completions { shell } => {
            let stdout = &mut std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "ferry-certs", stdout);
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .context("writing the man page")?,
        Command::Init {
            ca_name,
            ca_days,
            server_days,
            client_days,
            sans,
            force,
        } => {
            let report = init(
                &dir,
                &InitOptions {
                    ca_name,
                    ca_days,
                    server_days,
                    client_days,
                    extra_sans: sans.clone(),
                    force,
                },
            )
            .context("init failed")?;
            for p in &report.existing {
                println!("exists   {} (kept)", show(p));
            }
            for p in &report.created {
                println!("created  {}", show(p));
            }
            if report.created.is_empty() {
                println!(
                    "{}: already initialised, nothing to do (use --force to replace the CA and everything it signed)",
                    show(dir.root())
                );
            }
            if !sans.is_empty() && report.existing.contains(&dir.server_cert()) {
                println!(
                    "note: server.crt already exists; --san was not applied (run `ferry-certs server --san ... --force`)"
                );
            }
        }
        Command::Server { sans, days, force } => {
            let issued = dir.issue_server(&sans, days, force)?;
            println!(
                "created  {} and {} (serial {}, expires {})",
                show(&dir.server_cert()),
                show(&dir.server_key()),
                issued.serial,
                rfc3339(issued.not_after)
            );
        }
        Command::Client {
            name,
            days,
            force,
            reuse_revoked_name,
        } => {
            let issued = if force {
                dir.renew(
                    &name,
                    &Renewal {
                        days,
                        new_key: true,
                        reuse_revoked_name,
                        ..Renewal::default()
                    },
                )
                .map(|report| report.issued)
                .or_else(|e| match e {
                    CertError::UnknownClient { .. } => dir.issue_client(&name, days, true),
                    e => Err(e),
                })?
            } else {
                dir.new_client(
                    &name,
                    &NewClient {
                        days,
                        reuse_revoked_name,
                    },
                )?
            };
            let paths = dir.client_paths(&name)?;
            let earlier = dir
                .load_index()?
                .clients_named(&name)
                .filter(|e| !e.is_revoked() && e.serial != issued.serial)
                .count();
            println!("created  {}", show(&paths.cert));
            println!("created  {}", show(&paths.key));
            println!(
                "created  {} (certificate + key + CA: copy this file to the device)",
                show(&paths.bundle)
            );
            println!(
                "client {name}: serial {}, fingerprint {}, expires {}",
                issued.serial,
                issued.fingerprint,
                rfc3339(issued.not_after)
            );
            if earlier > 0 {
                println!(
                    "note: {earlier} earlier certificate(s) of {name} are still valid; `ferry-certs revoke --serial HEX` revokes one, `ferry-certs revoke {name}` all of them"
                );
            }
        }
        Command::Renew {
            name,
            new_key,
            days,
            revoke_old,
            reuse_revoked_name,
        } => {
            let report = dir.renew(
                &name,
                &Renewal {
                    days,
                    new_key,
                    revoke_old,
                    reuse_revoked_name,
                },
            )?;
            let issued = &report.issued;
            if new_key {
                println!("created  {} (new key)", show(&report.paths.key));
            }
            println!("created  {}", show(&report.paths.cert));
            println!(
                "created  {} (certificate + key + CA: copy this file to the device)",
                show(&report.paths.bundle)
            );
            println!(
                "client {name}: serial {}, fingerprint {}, expires {}",
                issued.serial,
                issued.fingerprint,
                rfc3339(issued.not_after)
            );
            if let Some((serials, crl_number)) = &report.revoked {
                for s in serials {
                    println!("revoked  {name} serial {s}");
                }
                println!(
                    "wrote    {} (CRL number {crl_number}); reload the server (SIGHUP) to apply it",
                    show(&dir.crl())
                );
            }
            for s in &report.still_valid {
                println!(
                    "note: earlier certificate {s} of {name} stays valid until it expires (`ferry-certs revoke --serial {s}` revokes it)"
                );
            }
        }
        Command::Revoke { name, serial } => {
            let report = match (&name, &serial) {
                (_, Some(serial)) => dir.revoke_serial(serial)?,
                (Some(name), None) => dir.revoke(name)?,
                (None, None) => anyhow::bail!("give a client name or --serial HEX"),
            };
            let name = &report.name;
            if report.newly_revoked.is_empty() {
                println!("{name} was already revoked");
            }
            for s in &report.newly_revoked {
                println!("revoked  {name} serial {s}");
            }
            println!(
                "wrote    {} (CRL number {}); reload the server (SIGHUP) to apply it",
                show(&dir.crl()),
                report.crl_number
            );
        }
        Command::List { json } => {
            let entries = dir.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!(
                    "{}: no certificates recorded (run `ferry-certs init`)",
                    show(&dir.index_path())
                );
            } else {
                let name_w = entries
                    .iter()
                    .map(|e| e.name.chars().count())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                println!(
                    "{:<6}  {:<name_w$}  {:<32}  {:<16}  {:<20}  REVOKED",
                    "KIND", "NAME", "SERIAL", "FINGERPRINT", "EXPIRES"
                );
                for e in &entries {
                    println!(
                        "{:<6}  {:<name_w$}  {:<32}  {:<16}  {:<20}  {}",
                        e.kind.to_string(),
                        e.name,
                        e.serial,
                        &e.fingerprint[..16.min(e.fingerprint.len())],
                        e.not_after,
                        if e.is_revoked() { "yes" } else { "no" }
                    );
                }
            }
        }
    }
    Ok(())
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
