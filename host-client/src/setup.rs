//! `ferry login` (keep a bundle and write the config) and `ferry config` (show the settings).

use std::path::Path;

use anyhow::Context;
use clap::ArgMatches;
use ferry_client::exit;
use serde_json::json;

use crate::cli::Cli;
use crate::config::{write_private, ConfigFile, IDENTITY_FILE};
use crate::identity::Settings;

/// `ferry login BUNDLE`: checks the bundle (it parses, its key matches its certificate),
/// copies it beside the config file (0600) and records it and the server in the config.
pub(crate) fn login(cli: &Cli, matches: &ArgMatches, bundle: &Path) -> anyhow::Result<()> {
    let located = ConfigFile::locate(cli.config.as_deref(), matches)?;
    let mut config = match located.load() {
        Ok(config) => config,
        Err(_) if !located.exists() => ConfigFile::default(),
        Err(e) => return Err(e),
    };
    ferry_certs::client_config_from_bundle(bundle)
        .with_context(|| format!("{} is not a usable client bundle", bundle.display()))?;
    let pem = std::fs::read(bundle).with_context(|| format!("{}", bundle.display()))?;
    let kept = located.dir().join(IDENTITY_FILE);
    write_private(&kept, &pem)?;
    if let Some(server) = &cli.server {
        config.server = Some(server.clone());
    }
    config.identity = Some(IDENTITY_FILE.into());
    located.store(&config)?;
    if !cli.quiet {
        let server = config
            .server
            .as_deref()
            .unwrap_or(ferry_client::DEFAULT_SERVER);
        eprintln!(
            "ferry: identity {} kept as {}; server {server}; written to {}",
            bundle.display(),
            kept.display(),
            located.path.display()
        );
        eprintln!("ferry: `ferry list` now works from any directory");
    }
    Ok(())
}

/// `ferry config`: the effective server and identity, and where each came from.
pub(crate) fn show(cli: &Cli, settings: &Settings) -> i32 {
    let config = &settings.config;
    let (identity, identity_from) = match &settings.identity {
        Ok(found) => (Some(found.value.describe()), found.from.clone()),
        Err(none) => (None, none.to_string()),
    };
    if cli.json {
        let value = json!({
            "config": config.path.display().to_string(),
            "config_exists": config.exists(),
            "server": settings.server.value,
            "server_from": settings.server.from,
            "identity": identity,
            "identity_from": identity_from,
        });
        println!("{value}");
    } else {
        let exists = if config.exists() { "" } else { " (none)" };
        println!("config    {}{exists}", config.path.display());
        println!(
            "server    {}  (from {})",
            settings.server.value, settings.server.from
        );
        match identity {
            Some(identity) => println!("identity  {identity}  (from {identity_from})"),
            None => println!("identity  none: {identity_from}"),
        }
    }
    exit::SUCCESS
}
