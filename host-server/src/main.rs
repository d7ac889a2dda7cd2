//! `ferry-server`: the Ferry file server (see the library documentation).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args as _, CommandFactory, FromArgMatches};
use ferry_server::{AdminArgs, AdminServer, Args, Server, ServerOptions};
use ferry_tokio::logging::{LogFormat, LOG_FORMAT_ENV};
use tokio::signal::unix::{signal, SignalKind};

mod web_page;

use web_page::WebPage;

/// Options of the binary beyond the library's [`Args`].
#[derive(Debug, clap::Args)]
struct BinaryArgs {
    /// Log line format on stderr.
    #[arg(long, env = LOG_FORMAT_ENV, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print the shell completion script for SHELL and exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
    /// Print the man page (roff) and exit.
    #[arg(long)]
    man: bool,
}

/// The whole command line: the library's options, the admin listener's and the binary's.
fn command() -> clap::Command {
    BinaryArgs::augment_args(AdminArgs::augment_args(Args::command()))
}

fn parse() -> Result<(Args, AdminArgs, BinaryArgs), clap::Error> {
    let matches = command().get_matches();
    Ok((
        Args::from_arg_matches(&matches)?,
        AdminArgs::from_arg_matches(&matches)?,
        BinaryArgs::from_arg_matches(&matches)?,
    ))
}

fn main() -> ExitCode {
    let (args, admin, binary) = parse().unwrap_or_else(|e| e.exit());
    if let Some(shell) = binary.completions {
        clap_complete::generate(
            shell,
            &mut command(),
            "ferry-server",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if binary.man {
        return match clap_mangen::Man::new(command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferry-server: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    ferry_tokio::logging::init_with("info", binary.log_format);
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
    let web = web_page::WebPage::from_args(&args, &options);
    match runtime.block_on(serve(options, web, admin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    options: ServerOptions,
    web: Option<WebPage>,
    admin: AdminArgs,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // Every listener is bound before the server creates certificates on first run: a port
    // that is taken leaves nothing behind.
    let web = match web {
        Some(web) => web.reserve().await?,
        None => None,
    };
    let admin_listener = match admin.admin {
        Some(addr) => Some(AdminServer::listen(addr, admin.admin_public).await?),
        None => None,
    };
    let server = Server::bind(options).await?;
    let admin = match admin_listener {
        Some(listener) => Some(AdminServer::on_listener(
            listener,
            server.metrics().clone(),
            server.health().clone(),
        )?),
        None => None,
    };
    let web = match web {
        Some(web) => Some(web.start(server.local_addr(), server.database()).await?),
        None => None,
    };
    let mut stdout = std::io::stdout().lock();
    if let Some(bootstrap) = server.bootstrap() {
        writeln!(stdout, "{bootstrap}")?;
        writeln!(
            stdout,
            "to use `ferry` from anywhere on this machine, run once:\n  {}",
            bootstrap.login_command(server.local_addr())
        )?;
    }
    writeln!(stdout, "ferry-server listening on {}", server.local_addr())?;
    if let Some(web) = &web {
        writeln!(stdout, "ferry-web listening on {}", web.url())?;
    }
    if let Some(admin) = &admin {
        writeln!(
            stdout,
            "ferry-server admin listening on http://{}",
            admin.local_addr()
        )?;
    }
    stdout.flush()?;
    drop(stdout);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let web_task = web.map(|web| web.spawn(stopped.clone()));
    let admin_task = admin.map(|admin| {
        let mut stopped = stopped.clone();
        tokio::spawn(admin.serve(async move {
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
    if let Some(task) = admin_task {
        task.await.context("the admin listener's task failed")?;
    }
    if let Some(task) = web_task {
        task.await
            .context("the web page's task failed")?
            .context("web page")?;
    }
    Ok(())
}
