//! Server options: command line, environment, TOML file and defaults.
//!
//! Every option can be given as a flag (`--idle-timeout-secs 60`), an environment variable
//! (`FERRY_IDLE_TIMEOUT_SECS=60`) or a key of the TOML file named by `--config` /
//! `FERRY_CONFIG` (`idle_timeout_secs = 60`). Precedence: flag, then environment, then file,
//! then the default. Byte sizes accept a plain number of bytes or a number with a unit:
//! `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` are powers of 1024, `KB`, `MB`, `GB`, `TB`
//! powers of 1000 (case-insensitive). Relative paths are relative to the working directory.
//!
//! Certificates and storage live in one data directory, `--data-dir` (default: see
//! [`DataDir::default_location`]: `$FERRY_DATA_DIR`, else `~/.local/share/ferry`), as
//! `DATA/certs` and `DATA/storage`; `--certs` and `--storage` move either part elsewhere.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::{Deserialize, Serialize};

use ferry_certs::DataDir;
use ferry_core::wire::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

/// Default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
/// Default per-identity quota: 10 GiB.
pub const DEFAULT_QUOTA: u64 = 10 << 30;
/// Default largest file: 4 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 << 30;
/// Default limit of authenticated sessions.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default limit of connections still in the TLS handshake.
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;
/// Default limit of connections in the TLS handshake from one source address (IPv6: one /64).
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 8;
/// Default limit of open connections of one identity.
pub const DEFAULT_MAX_CONNECTIONS_PER_IDENTITY: usize = 16;
/// Default TLS handshake timeout, seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 3;
/// Default time an authenticated connection gets to send its first request, seconds.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT_SECS: u64 = 10;
/// Default idle timeout, seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;
/// Default age after which an abandoned partial upload is removed: 7 days.
pub const DEFAULT_PARTIAL_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// Default time running transfers get to finish on shutdown, seconds.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 5;
/// Default (largest) chunk size: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Default smallest chunk size: 1 KiB, what the firmware client asks for. Each chunk of a
/// partial upload costs a 40-byte record on the server (about 4% at 1 KiB).
pub const DEFAULT_MIN_CHUNK_SIZE: u32 = 1024;
/// Default limit of files (committed plus partial uploads) of each client identity.
pub const DEFAULT_MAX_FILES: u64 = 100_000;
/// Default quota the web page's identities (`web-*`) share: 10 GiB.
pub const DEFAULT_WEB_QUOTA: u64 = 10 << 30;

/// Command line of `ferry-server`.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "ferry-server",
    version,
    about = "Ferry's file server: stores each client's files over mutual TLS, with resumable, verified transfers.",
    long_about = "Ferry's file server: stores each client's files over mutual TLS, with resumable, \
                  verified transfers.\n\nCertificates and files are kept in one data directory \
                  (--data-dir: $FERRY_DATA_DIR, else ~/.local/share/ferry), as DATA/certs and \
                  DATA/storage; --certs and --storage move either part. On first run with no \
                  certificates in --certs it creates a CA, the server certificate and the client \
                  certificate `local` (as `ferry-certs init` does), once it listens, and prints \
                  the `ferry login` command that sets up the client. Options can also come from environment variables and from a TOML file \
                  (--config) with the same keys in snake_case; a flag wins over the environment, \
                  which wins over the file. Byte sizes take units (10GiB, 512M, 4GB)."
)]
pub struct Args {
    /// Address to listen on (HOST:PORT; port 0 picks a free port).
    #[arg(long, env = "FERRY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory: certificates in DATA/certs, files in DATA/storage [default:
    /// $FERRY_DATA_DIR, else ~/.local/share/ferry].
    #[arg(long, env = "FERRY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of stored files [default: DATA/storage].
    #[arg(long, env = "FERRY_STORAGE", value_name = "DIR")]
    pub storage: Option<PathBuf>,
    /// Certificate directory, created on first run [default: DATA/certs].
    #[arg(long, env = "FERRY_CERTS", value_name = "DIR")]
    pub certs: Option<PathBuf>,
    /// TOML file with options (same keys, snake_case).
    #[arg(long, env = "FERRY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Storage quota of each client identity [default: 10GiB].
    #[arg(long, env = "FERRY_QUOTA", value_name = "BYTES", value_parser = parse_bytes)]
    pub quota: Option<u64>,
    /// Largest file accepted [default: 4GiB].
    #[arg(long, env = "FERRY_MAX_FILE_SIZE", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_file_size: Option<u64>,
    /// Authenticated sessions at most; more are answered BUSY with a retry-after [default:
    /// 512].
    #[arg(long, env = "FERRY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections in the TLS handshake at most; more are dropped, and some are dropped at
    /// random once half are taken [default: 64].
    #[arg(long, env = "FERRY_MAX_HANDSHAKES", value_name = "N")]
    pub max_handshakes: Option<usize>,
    /// Connections in the TLS handshake from one source address (IPv6: one /64) at most
    /// [default: 8].
    #[arg(long, env = "FERRY_MAX_HANDSHAKES_PER_SOURCE", value_name = "N")]
    pub max_handshakes_per_source: Option<usize>,
    /// Open connections of one client identity at most; more are answered BUSY [default: 16].
    #[arg(long, env = "FERRY_MAX_CONNECTIONS_PER_IDENTITY", value_name = "N")]
    pub max_connections_per_identity: Option<usize>,
    /// Time allowed for the TLS handshake [default: 3].
    #[arg(long, env = "FERRY_HANDSHAKE_TIMEOUT_SECS", value_name = "SECS")]
    pub handshake_timeout_secs: Option<u64>,
    /// Time an authenticated connection gets to send its first request [default: 10].
    #[arg(long, env = "FERRY_FIRST_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    pub first_request_timeout_secs: Option<u64>,
    /// Silence after which a connection is closed [default: 120].
    #[arg(long, env = "FERRY_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Age after which an abandoned partial upload is removed [default: 604800, 7 days].
    #[arg(long, env = "FERRY_PARTIAL_EXPIRY_SECS", value_name = "SECS")]
    pub partial_expiry_secs: Option<u64>,
    /// Time running transfers get to finish on SIGTERM/SIGINT [default: 5].
    #[arg(long, env = "FERRY_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Largest TLS record fragment the server sends (32..=16389), for small devices.
    #[arg(long, env = "FERRY_MAX_FRAGMENT_SIZE", value_name = "BYTES")]
    pub max_fragment_size: Option<usize>,
    /// Largest chunk size the server negotiates (16 B..=1 MiB) [default: 64KiB].
    #[arg(long, env = "FERRY_CHUNK_SIZE", value_name = "BYTES", value_parser = parse_chunk_size)]
    pub chunk_size: Option<u32>,
    /// Smallest chunk size the server agrees to, at most --chunk-size; clients that cannot
    /// send chunks this large are refused (16 B..=1 MiB) [default: 1KiB].
    #[arg(long, env = "FERRY_MIN_CHUNK_SIZE", value_name = "BYTES", value_parser = parse_chunk_size)]
    pub min_chunk_size: Option<u32>,
    /// Files (committed plus partial uploads) each client identity may hold [default: 100000].
    #[arg(long, env = "FERRY_MAX_FILES", value_name = "N")]
    pub max_files: Option<u64>,
    /// Storage all web page identities (web-*) share, on top of each one's quota
    /// [default: 10GiB].
    #[arg(long, env = "FERRY_WEB_QUOTA", value_name = "BYTES", value_parser = parse_bytes)]
    pub web_quota: Option<u64>,
    /// Where files are stored: `file://DIR` (the default, DIR = --storage) or
    /// `s3://BUCKET/PREFIX` on an S3-compatible object store (needs --metadata) [default:
    /// file://DATA/storage].
    #[arg(long, env = "FERRY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Database of locks, quotas, partial uploads, the file index, the CRL and web sessions
    /// that several instances share (`postgres://USER:PASSWORD@HOST:PORT/DB`); required with
    /// an s3:// store, not used with a file:// one.
    #[arg(
        long,
        env = "FERRY_METADATA",
        value_name = "URL",
        hide_env_values = true
    )]
    pub metadata: Option<String>,
    /// PEM file of the CA certificates that sign the database's TLS certificate, when the
    /// --metadata URL says `sslmode=require` [default: the system's roots].
    #[arg(long, env = "FERRY_METADATA_CA", value_name = "FILE")]
    pub metadata_ca: Option<PathBuf>,
    /// S3 endpoint URL, for stores other than AWS (`http://127.0.0.1:3900`; plain HTTP is
    /// allowed when the URL says so) [default: $AWS_ENDPOINT, else AWS].
    #[arg(long, env = "FERRY_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: $AWS_REGION, else us-east-1].
    #[arg(long, env = "FERRY_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id [default: $AWS_ACCESS_KEY_ID].
    #[arg(long, env = "FERRY_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key [default: $AWS_SECRET_ACCESS_KEY].
    #[arg(
        long,
        env = "FERRY_S3_SECRET_ACCESS_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub s3_secret_access_key: Option<String>,
    /// Address buckets as virtual hosts (BUCKET.ENDPOINT) instead of paths (ENDPOINT/BUCKET).
    #[arg(long, env = "FERRY_S3_VIRTUAL_HOSTED")]
    pub s3_virtual_hosted: bool,
    /// Size of the parts an upload is sent to S3 in (5MiB..=5GiB); an upload cut off sends
    /// at most one part again [default: 8MiB].
    #[arg(long, env = "FERRY_S3_PART_SIZE", value_name = "BYTES", value_parser = parse_bytes)]
    pub s3_part_size: Option<u64>,
    /// Parts of one upload sent to S3 while the next is received (1..=16): more is faster for
    /// one large upload, and a cut then sends up to that many parts again [default: 1].
    #[arg(long, env = "FERRY_S3_PARTS_IN_FLIGHT", value_name = "N")]
    pub s3_parts_in_flight: Option<usize>,
    /// Local directory where the part being received is assembled [default: DATA/spool].
    #[arg(long, env = "FERRY_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Expect a PROXY protocol v2 header (HAProxy's send-proxy-v2) on every connection, from
    /// the addresses of --proxy-from only: logs and limits then see the client's address.
    #[arg(long, env = "FERRY_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// Balancer addresses allowed to send PROXY headers (ADDR or ADDR/BITS, comma-separated);
    /// connections from other addresses are refused [default: 127.0.0.1/32,::1/128].
    #[arg(
        long,
        env = "FERRY_PROXY_FROM",
        value_name = "ADDRS",
        value_delimiter = ',',
        requires = "proxy_protocol"
    )]
    pub proxy_from: Vec<String>,
    /// Print the resolved options as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address of the web upload page (HOST:PORT) [default: 127.0.0.1:5000].
    #[arg(
        long,
        env = "FERRY_WEB",
        value_name = "ADDR",
        conflicts_with = "no_web"
    )]
    pub web: Option<std::net::SocketAddr>,
    /// Do not serve the web upload page.
    #[arg(long, env = "FERRY_NO_WEB")]
    pub no_web: bool,
    /// Access token the web page requires (mandatory when --web is not a loopback address).
    #[arg(
        long,
        env = "FERRY_WEB_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub web_token: Option<String>,
    /// HTTPS certificate chain of the web page (PEM), with --web-tls-key.
    #[arg(
        long,
        env = "FERRY_WEB_TLS_CERT",
        value_name = "FILE",
        requires = "web_tls_key"
    )]
    pub web_tls_cert: Option<PathBuf>,
    /// HTTPS private key of the web page (PEM).
    #[arg(
        long,
        env = "FERRY_WEB_TLS_KEY",
        value_name = "FILE",
        requires = "web_tls_cert"
    )]
    pub web_tls_key: Option<PathBuf>,
}

/// A byte size in the TOML file: a number, or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// Bytes.
    Bytes(u64),
    /// A number with a unit, as on the command line.
    Text(String),
}

impl ByteSize {
    fn bytes(&self, key: &str) -> Result<u64, ConfigError> {
        match self {
            ByteSize::Bytes(n) => Ok(*n),
            ByteSize::Text(text) => parse_bytes(text).map_err(|reason| ConfigError::Invalid {
                key: key.into(),
                reason,
            }),
        }
    }
}

/// The TOML configuration file: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // the keys are the options of `Args`
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub storage: Option<PathBuf>,
    pub certs: Option<PathBuf>,
    pub quota: Option<ByteSize>,
    pub max_file_size: Option<ByteSize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_identity: Option<usize>,
    pub max_handshakes: Option<usize>,
    pub max_handshakes_per_source: Option<usize>,
    pub handshake_timeout_secs: Option<u64>,
    pub first_request_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub partial_expiry_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub max_fragment_size: Option<usize>,
    pub chunk_size: Option<ByteSize>,
    pub min_chunk_size: Option<ByteSize>,
    pub max_files: Option<u64>,
    pub web_quota: Option<ByteSize>,
    pub store: Option<String>,
    pub metadata: Option<String>,
    pub metadata_ca: Option<PathBuf>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    pub s3_virtual_hosted: Option<bool>,
    pub s3_part_size: Option<ByteSize>,
    pub s3_parts_in_flight: Option<usize>,
    pub spool: Option<PathBuf>,
    pub proxy_protocol: Option<bool>,
    pub proxy_from: Option<Vec<String>>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// The server's resolved options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerOptions {
    /// Address to listen on.
    pub listen: String,
    /// The data directory `storage` and `certs` default to (`DATA/storage`, `DATA/certs`).
    pub data_dir: PathBuf,
    /// Directory of stored files.
    pub storage: PathBuf,
    /// Certificate directory.
    pub certs: PathBuf,
    /// Per-identity quota, bytes.
    pub quota: u64,
    /// Largest file, bytes.
    pub max_file_size: u64,
    /// Authenticated sessions at most.
    pub max_connections: usize,
    /// Open connections of one identity at most.
    pub max_connections_per_identity: usize,
    /// Connections in the TLS handshake at most.
    pub max_handshakes: usize,
    /// Connections in the TLS handshake from one source address (IPv6: one /64) at most.
    pub max_handshakes_per_source: usize,
    /// TLS handshake timeout, seconds.
    pub handshake_timeout_secs: u64,
    /// Time for the first request after the handshake, seconds.
    pub first_request_timeout_secs: u64,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: u64,
    /// Age after which abandoned partial uploads are removed, seconds.
    pub partial_expiry_secs: u64,
    /// Time running transfers get to finish on shutdown, seconds.
    pub shutdown_grace_secs: u64,
    /// rustls `max_fragment_size`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fragment_size: Option<usize>,
    /// Largest chunk size negotiated, bytes.
    pub chunk_size: u32,
    /// Smallest chunk size agreed to, bytes.
    pub min_chunk_size: u32,
    /// Files (committed plus partial uploads) of one identity at most.
    pub max_files: u64,
    /// Bytes the web page's identities share.
    pub web_quota: u64,
    /// `file://DIR` or `s3://BUCKET/PREFIX` (see [`StoreUrl`]).
    pub store: String,
    /// The shared database (`postgres://…`), its password hidden from `--print-config`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "hide_password"
    )]
    pub metadata: Option<String>,
    /// CA certificates of the database's TLS certificate (else the system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_ca: Option<PathBuf>,
    /// S3 endpoint, if not AWS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3 access key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret key: never printed.
    #[serde(skip)]
    pub s3_secret_access_key: Option<String>,
    /// Virtual-hosted-style S3 requests instead of path-style.
    pub s3_virtual_hosted: bool,
    /// Size of S3 upload parts, bytes.
    pub s3_part_size: u64,
    /// Parts of one upload on their way to S3 at once.
    pub s3_parts_in_flight: usize,
    /// Where parts are assembled before they are sent.
    pub spool: PathBuf,
    /// Whether a PROXY v2 header is expected on every connection.
    pub proxy_protocol: bool,
    /// Networks allowed to send PROXY headers (ADDR or ADDR/BITS).
    pub proxy_from: Vec<String>,
}

/// The default part size of S3 uploads: 8 MiB.
pub const DEFAULT_S3_PART_SIZE: u64 = 8 << 20;
/// S3's smallest part (all but the last): 5 MiB.
pub const MIN_S3_PART_SIZE: u64 = 5 << 20;
/// S3's largest part: 5 GiB.
pub const MAX_S3_PART_SIZE: u64 = 5 << 30;
/// Who may send PROXY headers unless `--proxy-from` says otherwise.
pub const DEFAULT_PROXY_FROM: [&str; 2] = ["127.0.0.1/32", "::1/128"];

/// Where files are stored, from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// Local files in this directory (today's layout).
    File(PathBuf),
    /// An S3 bucket, every key under `prefix` (empty, or ending in `/`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix.
        prefix: String,
    },
}

impl StoreUrl {
    /// Parses `file://DIR` (an absolute or relative path: `file://data/storage`), a plain
    /// path, or `s3://BUCKET[/PREFIX]`.
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        if let Some(path) = text.strip_prefix("file://") {
            if path.is_empty() {
                return Err("file:// needs a directory (file:///srv/ferry)".into());
            }
            return Ok(StoreUrl::File(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return Err(format!(
                    "{bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-', '.')"
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == "." || part == "..") {
                return Err(format!("the key prefix {prefix:?} has a . or .. component"));
            }
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            return Ok(StoreUrl::S3 {
                bucket: bucket.into(),
                prefix,
            });
        }
        if text.contains("://") {
            return Err(format!(
                "{text:?}: unknown store (use file://DIR or s3://BUCKET/PREFIX)"
            ));
        }
        Ok(StoreUrl::File(PathBuf::from(text)))
    }
}

/// `postgres://user:secret@host/db` printed as `postgres://user:***@host/db`.
fn hide_password<S: serde::Serializer>(url: &Option<String>, out: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => out.serialize_str(&redact_url(url)),
        None => out.serialize_none(),
    }
}

/// A URL with the password of its user part replaced by `***`, for logs and printed options.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Default for ServerOptions {
    /// The defaults, with the data directory at [`DataDir::default_location`].
    fn default() -> Self {
        ServerOptions::in_data_dir(DataDir::default_location())
    }
}

impl ServerOptions {
    /// The defaults, with certificates and storage in `data`.
    pub fn in_data_dir(data: DataDir) -> ServerOptions {
        ServerOptions {
            listen: DEFAULT_LISTEN.into(),
            storage: data.storage(),
            certs: data.certs().root().to_path_buf(),
            data_dir: data.root().to_path_buf(),
            quota: DEFAULT_QUOTA,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_identity: DEFAULT_MAX_CONNECTIONS_PER_IDENTITY,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            handshake_timeout_secs: DEFAULT_HANDSHAKE_TIMEOUT_SECS,
            first_request_timeout_secs: DEFAULT_FIRST_REQUEST_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            partial_expiry_secs: DEFAULT_PARTIAL_EXPIRY_SECS,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            max_fragment_size: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            min_chunk_size: DEFAULT_MIN_CHUNK_SIZE,
            max_files: DEFAULT_MAX_FILES,
            web_quota: DEFAULT_WEB_QUOTA,
            store: format!("file://{}", data.storage().display()),
            metadata: None,
            metadata_ca: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_virtual_hosted: false,
            s3_part_size: DEFAULT_S3_PART_SIZE,
            s3_parts_in_flight: 1,
            spool: data.root().join("spool"),
            proxy_protocol: false,
            proxy_from: DEFAULT_PROXY_FROM.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown keys.
    #[error("invalid configuration file {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A value out of range.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The option.
        key: String,
        /// Why.
        reason: String,
    },
}

impl ServerOptions {
    /// Resolves the options from parsed arguments (flags and environment, as clap merged
    /// them) and the configuration file they name, if any.
    pub fn from_args(args: &Args) -> Result<ServerOptions, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        ServerOptions::resolve(args, &file)
    }

    /// Merges arguments over the file over the defaults, and validates the result.
    pub fn resolve(args: &Args, file: &FileConfig) -> Result<ServerOptions, ConfigError> {
        let data_dir = match args.data_dir.clone().or_else(|| file.data_dir.clone()) {
            Some(root) => DataDir::new(root),
            None => DataDir::default_location(),
        };
        let d = ServerOptions::in_data_dir(data_dir);
        let bytes = |key: &str, value: &Option<ByteSize>| -> Result<Option<u64>, ConfigError> {
            value.as_ref().map(|v| v.bytes(key)).transpose()
        };
        let chunk = |key: &str, value: &Option<ByteSize>| -> Result<Option<u32>, ConfigError> {
            match bytes(key, value)? {
                Some(n) => Ok(Some(u32::try_from(n).map_err(|_| {
                    ConfigError::Invalid {
                        key: key.into(),
                        reason: format!("{n} is out of range"),
                    }
                })?)),
                None => Ok(None),
            }
        };
        let file_chunk = chunk("chunk_size", &file.chunk_size)?;
        let mut options = ServerOptions {
            listen: pick(&args.listen, &file.listen, d.listen),
            data_dir: d.data_dir,
            storage: pick(&args.storage, &file.storage, d.storage),
            certs: pick(&args.certs, &file.certs, d.certs),
            quota: pick(&args.quota, &bytes("quota", &file.quota)?, d.quota),
            max_file_size: pick(
                &args.max_file_size,
                &bytes("max_file_size", &file.max_file_size)?,
                d.max_file_size,
            ),
            max_connections: pick(
                &args.max_connections,
                &file.max_connections,
                d.max_connections,
            ),
            max_connections_per_identity: pick(
                &args.max_connections_per_identity,
                &file.max_connections_per_identity,
                d.max_connections_per_identity,
            ),
            max_handshakes: pick(&args.max_handshakes, &file.max_handshakes, d.max_handshakes),
            max_handshakes_per_source: pick(
                &args.max_handshakes_per_source,
                &file.max_handshakes_per_source,
                d.max_handshakes_per_source,
            ),
            handshake_timeout_secs: pick(
                &args.handshake_timeout_secs,
                &file.handshake_timeout_secs,
                d.handshake_timeout_secs,
            ),
            first_request_timeout_secs: pick(
                &args.first_request_timeout_secs,
                &file.first_request_timeout_secs,
                d.first_request_timeout_secs,
            ),
            idle_timeout_secs: pick(
                &args.idle_timeout_secs,
                &file.idle_timeout_secs,
                d.idle_timeout_secs,
            ),
            partial_expiry_secs: pick(
                &args.partial_expiry_secs,
                &file.partial_expiry_secs,
                d.partial_expiry_secs,
            ),
            shutdown_grace_secs: pick(
                &args.shutdown_grace_secs,
                &file.shutdown_grace_secs,
                d.shutdown_grace_secs,
            ),
            max_fragment_size: args.max_fragment_size.or(file.max_fragment_size),
            chunk_size: pick(&args.chunk_size, &file_chunk, d.chunk_size),
            min_chunk_size: pick(
                &args.min_chunk_size,
                &chunk("min_chunk_size", &file.min_chunk_size)?,
                d.min_chunk_size,
            ),
            max_files: pick(&args.max_files, &file.max_files, d.max_files),
            web_quota: pick(
                &args.web_quota,
                &bytes("web_quota", &file.web_quota)?,
                d.web_quota,
            ),
            store: d.store,
            metadata: args.metadata.clone().or_else(|| file.metadata.clone()),
            metadata_ca: args
                .metadata_ca
                .clone()
                .or_else(|| file.metadata_ca.clone()),
            s3_endpoint: args
                .s3_endpoint
                .clone()
                .or_else(|| file.s3_endpoint.clone()),
            s3_region: args.s3_region.clone().or_else(|| file.s3_region.clone()),
            s3_access_key_id: args
                .s3_access_key_id
                .clone()
                .or_else(|| file.s3_access_key_id.clone()),
            s3_secret_access_key: args
                .s3_secret_access_key
                .clone()
                .or_else(|| file.s3_secret_access_key.clone()),
            s3_virtual_hosted: args.s3_virtual_hosted || file.s3_virtual_hosted == Some(true),
            s3_part_size: pick(
                &args.s3_part_size,
                &bytes("s3_part_size", &file.s3_part_size)?,
                d.s3_part_size,
            ),
            s3_parts_in_flight: pick(
                &args.s3_parts_in_flight,
                &file.s3_parts_in_flight,
                d.s3_parts_in_flight,
            ),
            spool: pick(&args.spool, &file.spool, d.spool),
            proxy_protocol: args.proxy_protocol || file.proxy_protocol == Some(true),
            proxy_from: if args.proxy_from.is_empty() {
                file.proxy_from.clone().unwrap_or(d.proxy_from)
            } else {
                args.proxy_from.clone()
            },
        };
        // --store names the backend; a file:// store is the storage directory (one option
        // for both, whichever was given: giving both differently is a mistake).
        let store = args.store.clone().or_else(|| file.store.clone());
        let storage_given = args.storage.is_some() || file.storage.is_some();
        match store.as_deref().map(StoreUrl::parse).transpose() {
            Err(reason) => {
                return Err(ConfigError::Invalid {
                    key: "store".into(),
                    reason,
                })
            }
            Ok(Some(StoreUrl::File(dir))) => {
                if storage_given && dir != options.storage {
                    return Err(ConfigError::Invalid {
                        key: "store".into(),
                        reason: format!(
                            "file://{} and --storage {} name different directories: give one",
                            dir.display(),
                            options.storage.display()
                        ),
                    });
                }
                options.storage = dir;
                options.store = format!("file://{}", options.storage.display());
            }
            Ok(Some(StoreUrl::S3 { .. })) => options.store = store.unwrap_or_default(),
            Ok(None) => options.store = format!("file://{}", options.storage.display()),
        }
        // A server that sends small chunks itself takes them too.
        options.min_chunk_size = options.min_chunk_size.min(options.chunk_size);
        options.validate()?;
        Ok(options)
    }

    /// Checks the ranges of the options.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                reason,
            })
        };
        if self.listen.trim().is_empty() {
            return invalid("listen", "empty address".into());
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return invalid(
                "chunk_size",
                format!(
                    "{} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
                    self.chunk_size
                ),
            );
        }
        if !(MIN_CHUNK_SIZE..=self.chunk_size).contains(&self.min_chunk_size) {
            return invalid(
                "min_chunk_size",
                format!(
                    "{} is outside {MIN_CHUNK_SIZE}..={} (chunk_size)",
                    self.min_chunk_size, self.chunk_size
                ),
            );
        }
        for (key, value) in [
            ("max_files", self.max_files),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_identity",
                self.max_connections_per_identity as u64,
            ),
            ("max_handshakes", self.max_handshakes as u64),
            (
                "max_handshakes_per_source",
                self.max_handshakes_per_source as u64,
            ),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            (
                "first_request_timeout_secs",
                self.first_request_timeout_secs,
            ),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("partial_expiry_secs", self.partial_expiry_secs),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        // Keep durations within what tokio and millisecond clocks represent.
        for (key, value) in [
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            (
                "first_request_timeout_secs",
                self.first_request_timeout_secs,
            ),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("partial_expiry_secs", self.partial_expiry_secs),
            ("shutdown_grace_secs", self.shutdown_grace_secs),
        ] {
            if value > 100 * 365 * 24 * 3600 {
                return invalid(key, format!("{value} seconds is more than 100 years"));
            }
        }
        let store = match StoreUrl::parse(&self.store) {
            Ok(store) => store,
            Err(reason) => return invalid("store", reason),
        };
        match (&store, &self.metadata) {
            (StoreUrl::S3 { .. }, None) => return invalid(
                "metadata",
                "an s3:// store needs --metadata postgres://… for locks, quotas and the file index"
                    .into(),
            ),
            (StoreUrl::File(_), Some(_)) => {
                return invalid(
                    "metadata",
                    "a file:// store keeps its own index: --metadata is for an s3:// store".into(),
                )
            }
            (_, Some(url))
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
            {
                return invalid(
                    "metadata",
                    format!("{}: only postgres:// is supported", redact_url(url)),
                )
            }
            _ => {}
        }
        if !(MIN_S3_PART_SIZE..=MAX_S3_PART_SIZE).contains(&self.s3_part_size) {
            return invalid(
                "s3_part_size",
                format!(
                    "{} is outside 5MiB..=5GiB (S3's part limits)",
                    self.s3_part_size
                ),
            );
        }
        if !self.s3_part_size.is_multiple_of(u64::from(self.chunk_size)) {
            return invalid(
                "s3_part_size",
                format!(
                    "{} is not a multiple of the chunk size {}",
                    self.s3_part_size, self.chunk_size
                ),
            );
        }
        if !(1..=16).contains(&self.s3_parts_in_flight) {
            return invalid(
                "s3_parts_in_flight",
                format!("{} is outside 1..=16", self.s3_parts_in_flight),
            );
        }
        for network in &self.proxy_from {
            if let Err(reason) = parse_network(network) {
                return invalid("proxy_from", reason);
            }
        }
        if let Some(size) = self.max_fragment_size {
            if !(32..=16389).contains(&size) {
                return invalid("max_fragment_size", format!("{size} is outside 32..=16389"));
            }
        }
        Ok(())
    }

    /// The options as a TOML document (what `--print-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print options: {e}\n"))
    }
}

/// Parses `ADDR` or `ADDR/BITS` (an IPv4 or IPv6 network) into its address and prefix length.
pub fn parse_network(text: &str) -> Result<(std::net::IpAddr, u8), String> {
    let text = text.trim();
    let (addr, bits) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let addr: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an address or ADDR/BITS network"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={max}"))?,
        None => max,
    };
    Ok((addr, bits))
}

fn pick<T: Clone>(flag_or_env: &Option<T>, file: &Option<T>, default: T) -> T {
    flag_or_env
        .clone()
        .or_else(|| file.clone())
        .unwrap_or(default)
}

/// Parses a byte size: `1048576`, `64KiB`, `10G`, `4 GB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a byte size (e.g. 1048576, 64KiB, 10G)"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: number out of range"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use K, M, G, T, KiB.., KB..)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?}: out of range"))
}

fn parse_chunk_size(text: &str) -> Result<u32, String> {
    let bytes = parse_bytes(text)?;
    u32::try_from(bytes).map_err(|_| format!("{text:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        let mut all = vec!["ferry-server"];
        all.extend_from_slice(list);
        Args::try_parse_from(all).unwrap()
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("64k"), Ok(65536));
        assert_eq!(parse_bytes("10G"), Ok(10 << 30));
        assert_eq!(parse_bytes("10 GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_bytes("2t"), Ok(2 << 40));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("G").is_err());
        assert!(parse_bytes("1.5G").is_err());
        assert!(parse_bytes("10 parsecs").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("20000000T").is_err());
    }

    #[test]
    fn defaults() {
        let options = ServerOptions::resolve(&Args::default(), &FileConfig::default()).unwrap();
        assert_eq!(options, ServerOptions::default());
        let data = DataDir::default_location();
        assert_eq!(options.data_dir, data.root());
        assert_eq!(options.storage, data.storage());
        assert_eq!(options.certs, data.certs().root());
        assert_eq!(options.listen, "127.0.0.1:9000");
        assert_eq!(options.quota, 10 << 30);
        assert_eq!(options.max_file_size, 4 << 30);
        assert_eq!(options.chunk_size, 65536);
    }

    #[test]
    fn flags_win_over_file_which_wins_over_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:7000"
            storage = "/srv/ferry"
            quota = "1GiB"
            max_file_size = 1000
            idle_timeout_secs = 30
            chunk_size = "16K"
            max_fragment_size = 1024
            "#,
        )
        .unwrap();
        let args = args(&["--listen", "127.0.0.1:0", "--quota", "5M"]);
        let options = ServerOptions::resolve(&args, &file).unwrap();
        assert_eq!(options.listen, "127.0.0.1:0"); // flag
        assert_eq!(options.quota, 5 << 20); // flag
        assert_eq!(options.storage, PathBuf::from("/srv/ferry")); // file
        assert_eq!(options.max_file_size, 1000); // file
        assert_eq!(options.idle_timeout_secs, 30); // file
        assert_eq!(options.chunk_size, 16384); // file
        assert_eq!(options.max_fragment_size, Some(1024)); // file
        assert_eq!(options.certs, DataDir::default_location().certs().root()); // default
        assert_eq!(options.max_connections, 512); // default
        assert_eq!(options.max_handshakes, 64); // default
        assert_eq!(options.max_handshakes_per_source, 8); // default
        assert_eq!(options.handshake_timeout_secs, 3); // default
        assert_eq!(options.first_request_timeout_secs, 10); // default
    }

    #[test]
    fn data_dir_places_certs_and_storage_unless_they_are_given() {
        let file: FileConfig = toml::from_str("data_dir = \"/srv/ferry\"").unwrap();
        let options = ServerOptions::resolve(&Args::default(), &file).unwrap();
        assert_eq!(options.certs, PathBuf::from("/srv/ferry/certs"));
        assert_eq!(options.storage, PathBuf::from("/srv/ferry/storage"));
        let args = args(&["--data-dir", "/data", "--storage", "/big/disk"]);
        let options = ServerOptions::resolve(&args, &file).unwrap();
        assert_eq!(options.data_dir, PathBuf::from("/data")); // flag over file
        assert_eq!(options.certs, PathBuf::from("/data/certs"));
        assert_eq!(options.storage, PathBuf::from("/big/disk"));
    }

    #[test]
    fn file_rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<FileConfig>("listne = \"x\"").is_err());
        let file: FileConfig = toml::from_str("quota = \"lots\"").unwrap();
        let error = ServerOptions::resolve(&Args::default(), &file).unwrap_err();
        assert!(error.to_string().starts_with("invalid quota"), "{error}");
    }

    #[test]
    fn ranges_are_checked() {
        for list in [
            &["--chunk-size", "8"][..],
            &["--chunk-size", "2M"],
            &["--max-connections", "0"],
            &["--max-handshakes", "0"],
            &["--max-handshakes-per-source", "0"],
            &["--first-request-timeout-secs", "0"],
            &["--idle-timeout-secs", "0"],
            &["--max-fragment-size", "16"],
            &["--max-fragment-size", "20000"],
        ] {
            let error = ServerOptions::resolve(&args(list), &FileConfig::default());
            assert!(error.is_err(), "{list:?}");
        }
        assert!(Args::try_parse_from(["ferry-server", "--quota", "much"]).is_err());
    }

    #[test]
    fn printed_options_parse_back() {
        let mut options = ServerOptions {
            max_fragment_size: Some(2048),
            ..ServerOptions::default()
        };
        options.storage = "/data".into();
        options.store = "file:///data".into();
        let file: FileConfig = toml::from_str(&options.to_toml()).unwrap();
        assert_eq!(
            ServerOptions::resolve(&Args::default(), &file).unwrap(),
            options
        );
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let args = args(&["--config", "/nonexistent/ferry.toml"]);
        let error = ServerOptions::from_args(&args).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/ferry.toml"),
            "{error}"
        );
    }
}
