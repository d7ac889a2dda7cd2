//! Which server and which client identity `ferry` uses, and where each came from:
//! flags and environment, then the config file, then the data directory the server's first
//! run fills, then the legacy `./certs` of a source checkout.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::ArgMatches;
use ferry_certs::DataDir;
use ferry_client::{ClientOptions, DEFAULT_SERVER};

use crate::cli::Cli;
use crate::config::{ConfigFile, Located};

/// Where the server kept its certificates before the data directory (relative to the
/// working directory): still looked at last.
const LEGACY_CERTS: &str = "certs";

/// The files an identity is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// One PEM file: certificate, key, CA.
    Bundle(PathBuf),
    /// Three files.
    Files {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

impl Credentials {
    /// The certificate directory `dir`'s files of `client`.
    fn in_dir(dir: &Path, client: &str) -> Credentials {
        let clients = dir.join(ferry_certs::CLIENTS_DIR);
        Credentials::Files {
            ca: dir.join(ferry_certs::CA_CERT),
            cert: clients.join(format!("{client}.crt")),
            key: clients.join(format!("{client}.key")),
        }
    }

    /// The file to name in messages about the CA these credentials trust.
    pub(crate) fn ca_file(&self) -> &Path {
        match self {
            Credentials::Bundle(bundle) => bundle,
            Credentials::Files { ca, .. } => ca,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Credentials::Bundle(bundle) => bundle.display().to_string(),
            Credentials::Files { ca, cert, key } => {
                format!("{} + {} + {}", cert.display(), key.display(), ca.display())
            }
        }
    }
}

/// A setting's value and where it came from ("--server", "FERRY_SERVER", "config file ...").
#[derive(Debug, Clone)]
pub(crate) struct Sourced<T> {
    pub(crate) value: T,
    pub(crate) from: String,
}

/// What `ferry` found: the server, the identity (if any) and where it looked.
pub(crate) struct Settings {
    pub(crate) config: Located,
    pub(crate) server: Sourced<String>,
    pub(crate) identity: Result<Sourced<Credentials>, NoIdentity>,
}

/// No identity anywhere: the places looked at, in order.
#[derive(Debug, Clone)]
pub(crate) struct NoIdentity {
    pub(crate) looked: Vec<String>,
}

impl std::fmt::Display for NoIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no client identity found (looked at: {}); get one with `ferry login BUNDLE --server ADDR` \
             (a bundle from `ferry-certs client NAME` on the server machine), or name one with --identity FILE",
            self.looked.join("; ")
        )
    }
}

impl std::error::Error for NoIdentity {}

/// Where a command-line argument's value came from, if it has one.
fn origin(matches: &ArgMatches, id: &str, flag: &str, env: &str) -> Option<(u8, String)> {
    match matches.value_source(id)? {
        ValueSource::CommandLine => Some((0, flag.to_string())),
        ValueSource::EnvVariable => Some((1, env.to_string())),
        _ => None,
    }
}

impl Settings {
    /// Resolves the settings of `cli`, parsed from `matches`.
    pub(crate) fn resolve(cli: &Cli, matches: &ArgMatches) -> anyhow::Result<Settings> {
        let config = ConfigFile::locate(cli.config.as_deref(), matches)?;
        let file = config.load()?;
        let config_origin = || format!("config file {}", config.path.display());
        let server = match (&cli.server, &file.server) {
            (Some(server), _) => Sourced {
                value: server.clone(),
                from: origin(matches, "server", "--server", "FERRY_SERVER")
                    .map_or_else(|| "--server".into(), |(_, from)| from),
            },
            (None, Some(server)) => {
                crate::cli::parse_server(server)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("{}: server", config.path.display()))?;
                Sourced {
                    value: server.clone(),
                    from: config_origin(),
                }
            }
            (None, None) => Sourced {
                value: DEFAULT_SERVER.to_string(),
                from: "default".into(),
            },
        };
        let identity = Self::identity(cli, matches, &config, file.identity.as_deref());
        Ok(Settings {
            config,
            server,
            identity,
        })
    }

    /// The first identity found: flags and environment (a flag before a variable; then
    /// --identity, --certs, --cert/--key/--ca), the config file, the data directory, `./certs`.
    fn identity(
        cli: &Cli,
        matches: &ArgMatches,
        config: &Located,
        configured: Option<&Path>,
    ) -> Result<Sourced<Credentials>, NoIdentity> {
        let legacy = || Credentials::in_dir(Path::new(LEGACY_CERTS), ferry_certs::LOCAL_CLIENT);
        let mut given: Vec<(u8, usize, String, Credentials)> = Vec::new();
        if let (Some(bundle), Some((rank, from))) = (
            &cli.identity,
            origin(matches, "identity", "--identity", "FERRY_IDENTITY"),
        ) {
            given.push((rank, 0, from, Credentials::Bundle(bundle.clone())));
        }
        if let (Some(dir), Some((rank, from))) = (
            &cli.certs,
            origin(matches, "certs", "--certs", "FERRY_CERTS"),
        ) {
            given.push((rank, 1, from, Credentials::in_dir(dir, &cli.client)));
        }
        let files = [
            ("ca", "--ca", "FERRY_CA"),
            ("cert", "--cert", "FERRY_CERT"),
            ("key", "--key", "FERRY_KEY"),
        ]
        .into_iter()
        .filter_map(|(id, flag, env)| origin(matches, id, flag, env))
        .min();
        if let (Some((rank, from)), Credentials::Files { ca, cert, key }) = (files, legacy()) {
            given.push((
                rank,
                2,
                from,
                Credentials::Files {
                    ca: cli.ca.clone().unwrap_or(ca),
                    cert: cli.cert.clone().unwrap_or(cert),
                    key: cli.key.clone().unwrap_or(key),
                },
            ));
        }
        if let Some((_, _, from, credentials)) = given.into_iter().min_by_key(|g| (g.0, g.1)) {
            return Ok(Sourced {
                value: credentials,
                from,
            });
        }
        let mut looked = vec!["--identity, --certs, --cert/--key/--ca: not given".to_string()];
        match configured {
            Some(bundle) => {
                return Ok(Sourced {
                    value: Credentials::Bundle(config.resolve(bundle)),
                    from: format!("config file {}", config.path.display()),
                })
            }
            None if config.exists() => looked.push(format!(
                "config file {}: no identity",
                config.path.display()
            )),
            None => looked.push(format!("config file {}: none", config.path.display())),
        }
        let data_bundle = DataDir::default_location().local_bundle();
        if data_bundle.is_file() {
            return Ok(Sourced {
                value: Credentials::Bundle(data_bundle),
                from: "the data directory (the server's client `local`)".into(),
            });
        }
        looked.push(format!("{}: none", data_bundle.display()));
        let legacy = legacy();
        if legacy.ca_file().is_file() {
            return Ok(Sourced {
                value: legacy,
                from: format!("./{LEGACY_CERTS} (a source checkout)"),
            });
        }
        looked.push(format!("{}: none", legacy.ca_file().display()));
        Err(NoIdentity { looked })
    }

    /// Connection options for `server` as `identity`; errors name the identity's origin.
    pub(crate) fn client_options(&self) -> anyhow::Result<ClientOptions> {
        let identity = self
            .identity
            .as_ref()
            .map_err(|e| anyhow::Error::new(e.clone()))?;
        let options = match &identity.value {
            Credentials::Bundle(bundle) => ClientOptions::from_bundle(&self.server.value, bundle),
            Credentials::Files { ca, cert, key } => {
                ClientOptions::from_files(&self.server.value, ca, cert, key)
            }
        };
        options.with_context(|| format!("identity from {}", identity.from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::parse_with_matches;

    #[test]
    fn a_flag_beats_a_variable_and_identity_beats_files() {
        let (cli, matches) = parse_with_matches(&[
            "list",
            "--identity",
            "/b.pem",
            "--cert",
            "/c",
            "--key",
            "/k",
        ]);
        let found = Settings::identity(
            &cli,
            &matches,
            &Located::at("/nowhere/config.toml".into()),
            None,
        )
        .unwrap();
        assert_eq!(found.value, Credentials::Bundle("/b.pem".into()));
        assert_eq!(found.from, "--identity");
        let (cli, matches) = parse_with_matches(&["list", "--certs", "/d", "--client", "phone"]);
        let found = Settings::identity(
            &cli,
            &matches,
            &Located::at("/nowhere/config.toml".into()),
            Some(Path::new("ignored.pem")),
        )
        .unwrap();
        assert_eq!(
            found.value,
            Credentials::Files {
                ca: "/d/ca.crt".into(),
                cert: "/d/clients/phone.crt".into(),
                key: "/d/clients/phone.key".into(),
            }
        );
        let (cli, matches) = parse_with_matches(&["list", "--ca", "/x.crt"]);
        let found = Settings::identity(
            &cli,
            &matches,
            &Located::at("/nowhere/config.toml".into()),
            None,
        )
        .unwrap();
        assert_eq!(
            found.value,
            Credentials::Files {
                ca: "/x.crt".into(),
                cert: "certs/clients/local.crt".into(),
                key: "certs/clients/local.key".into(),
            }
        );
    }

    #[test]
    fn a_relative_identity_in_the_config_is_beside_the_config() {
        let (cli, matches) = parse_with_matches(&["list"]);
        if cli.identity.is_some() || cli.certs.is_some() || cli.ca.is_some() {
            return; // the environment names one
        }
        let found = Settings::identity(
            &cli,
            &matches,
            &Located::at("/home/u/.config/ferry/config.toml".into()),
            Some(Path::new("identity.bundle.pem")),
        )
        .unwrap();
        assert_eq!(
            found.value,
            Credentials::Bundle("/home/u/.config/ferry/identity.bundle.pem".into())
        );
    }
}
