//! `ferry-server`: the Ferry file server (see the library documentation).
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ferry_server::{Args, Server, ServerOptions};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let filter = std::env::var("FERRY_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let options = match ServerOptions::from_args(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ferry-server: error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", options.to_toml());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry-server: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The web page: on by default (127.0.0.1:5000), off with --no-web.
    let web = (!args.no_web).then(|| WebPage {
        options: ferry_web::WebOptions {
            listen: args.web.unwrap_or(ferry_web::DEFAULT_LISTEN),
            certs_dir: options.certs.clone(),
            access_token: args.web_token.clone(),
            tls_cert: args.web_tls_cert.clone(),
            tls_key: args.web_tls_key.clone(),
            max_upload_bytes: options.max_file_size,
            ..ferry_web::WebOptions::default()
        },
        explicit: args.web.is_some(),
    });
    match runtime.block_on(serve(options, web)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The web page to serve beside the server.
struct WebPage {
    options: ferry_web::WebOptions,
    /// Whether --web was given (a busy default port is then not fatal).
    explicit: bool,
}

async fn serve(options: ServerOptions, web: Option<WebPage>) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let server = Server::bind(options).await?;
    // Bound after the server, which creates the CA on first run; the page reaches the server
    // on its own address (0.0.0.0 becomes 127.0.0.1, which the server certificate carries).
    let web = match web {
        None => None,
        Some(WebPage {
            mut options,
            explicit,
        }) => {
            options.server = ferry_web::server_address_for(server.local_addr());
            match ferry_web::WebServer::bind(options).await {
                Ok(web) => Some(web),
                Err(ferry_web::WebError::Listen { addr, error }) if !explicit => {
                    tracing::warn!(
                        "web page not served: cannot listen on {addr}: {error} (choose another with --web ADDR, or --no-web)"
                    );
                    None
                }
                Err(e) => return Err(e).context("web page"),
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Some(bootstrap) = server.bootstrap() {
        writeln!(stdout, "{bootstrap}")?;
    }
    writeln!(stdout, "ferry-server listening on {}", server.local_addr())?;
    if let Some(web) = &web {
        writeln!(
            stdout,
            "ferry-web listening on {}",
            web.url().trim_end_matches('/')
        )?;
    }
    stdout.flush()?;
    drop(stdout);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let web_task = web.map(|web| {
        let mut stopped = stopped.clone();
        tokio::spawn(web.serve(async move {
            let _ = stopped.changed().await;
        }))
    });
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
        let _ = stop.send(true);
    };
    server.serve(shutdown).await?;
    if let Some(task) = web_task {
        task.await.context("the web page's task failed")??;
    }
    Ok(())
}
