//! `ferry-server`: the Ferry file server (see the library documentation).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ferry_server::{Args, Server, ServerOptions};
use tokio::signal::unix::{signal, SignalKind};

mod web_page;

use web_page::WebPage;

fn main() -> ExitCode {
    ferry_tokio::logging::init("info");
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
    let web = web_page::WebPage::from_args(&args, &options);
    match runtime.block_on(serve(options, web)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: ServerOptions, web: Option<WebPage>) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let server = Server::bind(options).await?;
    // Bound after the server, which creates the CA on first run.
    let web = match web {
        Some(web) => web.bind(server.local_addr()).await?,
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
    stdout.flush()?;
    drop(stdout);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let web_task = web.map(|web| web.spawn(stopped.clone()));
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
        task.await
            .context("the web page's task failed")?
            .context("web page")?;
    }
    Ok(())
}
