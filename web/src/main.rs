//! `ferry-web`: Ferry's web upload page, run on its own against any Ferry server (see the
//! library documentation).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferry_web::{WebOptions, WebServer};
use tokio::signal::unix::{signal, SignalKind};

/// Command line of `ferry-web`.
#[derive(Debug, Parser)]
#[command(
    name = "ferry-web",
    version,
    about = "Ferry's web upload page: each browser session gets its own client certificate and \
             moves files to a Ferry server over mutual TLS.",
    long_about = "Ferry's web upload page: each browser session gets its own client certificate \
                  (issued from the CA in --certs) and moves files to the Ferry server (--server) \
                  over mutual TLS, so its files are as isolated as a command-line client's.\n\n\
                  On a non-loopback --listen address an access token is required (--token or \
                  FERRY_WEB_TOKEN): browsers open http://ADDR/?token=TOKEN once, scripts send \
                  'Authorization: Bearer TOKEN'. Give --tls-cert and --tls-key to serve HTTPS."
)]
struct Args {
    /// Address of the page (HOST:PORT; port 0 picks a free port).
    #[arg(long, env = "FERRY_WEB_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// The Ferry server (HOST:PORT); HOST must be a name its certificate carries.
    #[arg(long, env = "FERRY_SERVER", default_value = ferry_web::DEFAULT_SERVER)]
    server: String,
    /// Certificate directory with the CA that issues the sessions' certificates [default:
    /// DATA/certs, where DATA is $FERRY_DATA_DIR or ~/.local/share/ferry, as ferry-server].
    #[arg(long, env = "FERRY_CERTS", value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Access token every request must carry (required on a non-loopback address).
    #[arg(long, env = "FERRY_WEB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// HTTPS certificate chain (PEM); HTTPS is served when given with --tls-key.
    #[arg(
        long,
        env = "FERRY_WEB_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// HTTPS private key (PEM).
    #[arg(
        long,
        env = "FERRY_WEB_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Largest file accepted, in bytes [default: 16 GiB].
    #[arg(long, env = "FERRY_WEB_MAX_UPLOAD", value_name = "BYTES", default_value_t = ferry_web::DEFAULT_MAX_UPLOAD)]
    max_upload: u64,
    /// Sessions kept at once.
    #[arg(long, env = "FERRY_WEB_MAX_SESSIONS", default_value_t = ferry_web::DEFAULT_MAX_SESSIONS)]
    max_sessions: usize,
    /// Lifetime of a session from its creation, in seconds; its certificate is revoked when it
    /// ends [default: 1 day].
    #[arg(long, env = "FERRY_WEB_SESSION_IDLE_SECS", value_name = "SECS", default_value_t = ferry_web::DEFAULT_SESSION_IDLE.as_secs())]
    session_idle_secs: u64,
    /// Validity of each session's certificate, in days.
    #[arg(long, env = "FERRY_WEB_CERT_DAYS", default_value_t = ferry_web::DEFAULT_CERT_DAYS)]
    cert_days: u32,
    /// Where downloads are staged while they are verified [default: the temporary directory].
    #[arg(long, env = "FERRY_WEB_SCRATCH", value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Bytes of downloads staged at once; more downloads get 503 meanwhile [default: 2 GiB].
    #[arg(long, env = "FERRY_WEB_SCRATCH_MAX", value_name = "BYTES", default_value_t = ferry_web::DEFAULT_SCRATCH_MAX)]
    scratch_max: u64,
    /// New sessions (identities) one source address may make per minute.
    #[arg(long, env = "FERRY_WEB_IDENTITIES_PER_MINUTE", default_value_t = ferry_web::DEFAULT_IDENTITIES_PER_MINUTE)]
    identities_per_minute: u32,
    /// New sessions one source address may make at once.
    #[arg(long, env = "FERRY_WEB_IDENTITY_BURST", default_value_t = ferry_web::DEFAULT_IDENTITY_BURST)]
    identity_burst: u32,
    /// Log line format on stderr.
    #[arg(long, env = ferry_tokio::logging::LOG_FORMAT_ENV, value_enum, default_value_t = ferry_tokio::logging::LogFormat::Text)]
    log_format: ferry_tokio::logging::LogFormat,
    /// Where sessions and their keys are kept across restarts [default: web/ beside --certs].
    #[arg(long, env = "FERRY_WEB_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    ferry_tokio::logging::init_with("info", args.log_format);
    let options = WebOptions {
        listen: args.listen,
        server: args.server,
        certs_dir: args.certs.unwrap_or_else(|| {
            ferry_certs::DataDir::default_location()
                .certs()
                .root()
                .into()
        }),
        access_token: args.token,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        max_upload_bytes: args.max_upload,
        max_sessions: args.max_sessions,
        session_idle: Duration::from_secs(args.session_idle_secs),
        cert_days: args.cert_days,
        scratch_dir: args.scratch,
        scratch_max_bytes: args.scratch_max,
        identities_per_minute: args.identities_per_minute,
        identity_burst: args.identity_burst,
        token_flag: "--token",
        state_dir: args.state_dir,
        ..WebOptions::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry-web: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-web: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: WebOptions) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let web = WebServer::bind(options).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "ferry-web listening on {}",
        web.url().trim_end_matches('/')
    )?;
    stdout.flush()?;
    drop(stdout);
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
    };
    web.serve(shutdown).await?;
    Ok(())
}
