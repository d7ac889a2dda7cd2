//! The client config file (`$XDG_CONFIG_HOME/ferry/config.toml`): the server and the
//! identity `ferry` uses when no flag or variable names them, written by `ferry login`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::{Deserialize, Serialize};

/// The config file's name in `$XDG_CONFIG_HOME/ferry`.
const CONFIG_FILE: &str = "config.toml";
/// The name `ferry login` gives its copy of the bundle, beside the config file.
pub(crate) const IDENTITY_FILE: &str = "identity.bundle.pem";

/// What the config file holds.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// `HOST[:PORT]` of the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    /// The identity bundle (a relative path is relative to the config file's directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) identity: Option<PathBuf>,
}

/// Where the config file is, and whether it was named (--config, FERRY_CONFIG).
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub(crate) path: PathBuf,
    pub(crate) named: bool,
}

impl ConfigFile {
    /// The config file named by `--config`/`FERRY_CONFIG`, else the default one.
    pub(crate) fn locate(named: Option<&Path>, matches: &ArgMatches) -> anyhow::Result<Located> {
        if let Some(path) = named {
            let named = matches!(
                matches.value_source("config"),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            return Ok(Located {
                path: path.to_path_buf(),
                named,
            });
        }
        let dir = dirs::config_dir().context(
            "no config directory (neither $XDG_CONFIG_HOME nor $HOME is set); name a file with --config",
        )?;
        Ok(Located::at(
            dir.join(ferry_certs::APP_DIR).join(CONFIG_FILE),
        ))
    }
}

impl Located {
    /// The default config file at `path` (a missing one is no error).
    pub(crate) fn at(path: PathBuf) -> Located {
        Located { path, named: false }
    }

    pub(crate) fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// The directory holding the config file.
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// `path` as written in the config file: relative to the config file's directory.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        self.dir().join(path)
    }

    /// The settings in the file; none if the default file does not exist.
    pub(crate) fn load(&self) -> anyhow::Result<ConfigFile> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.named => {
                return Ok(ConfigFile::default())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("config file {}", self.path.display()))
            }
        };
        toml::from_str(&text).with_context(|| format!("config file {}", self.path.display()))
    }

    /// Writes `config` (atomically: a temporary file renamed into place).
    pub(crate) fn store(&self, config: &ConfigFile) -> anyhow::Result<()> {
        let text = toml::to_string(config).context("config file contents")?;
        write_private(&self.path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` readable by the owner only (0600), atomically: a temporary file
/// beside it (created 0600), synced, then renamed over it. Creates the directory if needed.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let context = || format!("{}: cannot write", path.display());
    let mut temp = tempfile::NamedTempFile::new_in(dir).with_context(context)?;
    temp.write_all(bytes).with_context(context)?;
    temp.as_file().sync_all().with_context(context)?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(context)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_config_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let located = Located::at(dir.path().join("sub/config.toml"));
        assert_eq!(located.load().unwrap(), ConfigFile::default());
        let config = ConfigFile {
            server: Some("nas.lan".into()),
            identity: Some(IDENTITY_FILE.into()),
        };
        located.store(&config).unwrap();
        assert_eq!(located.load().unwrap(), config);
        let mode = std::fs::metadata(&located.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            located.resolve(Path::new(IDENTITY_FILE)),
            dir.path().join("sub").join(IDENTITY_FILE)
        );
    }

    #[test]
    fn a_named_missing_file_or_an_unknown_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let named = Located {
            path: dir.path().join("none.toml"),
            named: true,
        };
        assert!(named.load().is_err());
        std::fs::write(dir.path().join("bad.toml"), "sever = \"x\"\n").unwrap();
        let error = Located::at(dir.path().join("bad.toml")).load().unwrap_err();
        assert!(format!("{error:#}").contains("sever"), "{error:#}");
    }
}
