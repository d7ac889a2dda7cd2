//! Where to connect and with which credentials.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::client::error::ClientError;

/// The port used when `--server` names only a host.
pub const DEFAULT_PORT: u16 = 9000;
/// The default `--server`.
pub const DEFAULT_SERVER: &str = "127.0.0.1:9000";
/// The default number of reconnections per operation.
pub const DEFAULT_RETRIES: u32 = 10;
/// The first pause before a reconnection; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between reconnections.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a [`Client`](crate::client::Client) connects and transfers.
#[derive(Clone)]
pub struct ClientOptions {
    /// `HOST:PORT` (`[v6]:PORT` for IPv6); `HOST` alone means port [`DEFAULT_PORT`].
    /// The TLS server name is `HOST` (an IP address or a DNS name), which the server
    /// certificate must carry.
    pub server: String,
    /// The mutual-TLS client configuration (CA, client certificate and key).
    pub tls: Arc<rustls::ClientConfig>,
    /// Reconnections per operation after a broken link, with exponential backoff
    /// ([`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`]). The count starts again whenever
    /// an attempt made progress.
    pub retries: u32,
    /// Limit for the TCP connect, the TLS handshake and the protocol hello together.
    pub connect_timeout: Duration,
    /// The largest chunk size to propose (the server may answer with a smaller one).
    pub chunk_size: u32,
    /// Chunks in flight (at most 16).
    pub window: u16,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("server", &self.server)
            .field("retries", &self.retries)
            .field("connect_timeout", &self.connect_timeout)
            .field("chunk_size", &self.chunk_size)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// Options with the default protocol settings (64 KiB chunks, window 16, 10 retries,
    /// 10 s connect timeout) for an already built TLS configuration.
    pub fn new(server: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self, ClientError> {
        split_server(server)?;
        let stream = ferry_core::Config::stream();
        Ok(Self {
            server: server.to_string(),
            tls,
            retries: DEFAULT_RETRIES,
            connect_timeout: Duration::from_secs(10),
            chunk_size: stream.max_chunk,
            window: stream.window,
        })
    }

    /// Options from the CA certificate, client certificate and key files.
    pub fn from_files(
        server: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, ClientError> {
        let tls = ferry_certs::client_config(ca, cert, key)?;
        Self::new(server, Arc::new(tls))
    }

    /// Options from PEM text held in memory (for instance a certificate the web page issued).
    pub fn from_pem(
        server: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, ClientError> {
        let tls = ferry_certs::client_config_from_pem(ca_pem, cert_pem, key_pem)?;
        Self::new(server, Arc::new(tls))
    }

    /// Options from a client bundle (`clients/NAME.bundle.pem`: certificate, key, CA).
    pub fn from_bundle(server: &str, bundle: &Path) -> Result<Self, ClientError> {
        let tls = ferry_certs::client_config_from_bundle(bundle)?;
        Self::new(server, Arc::new(tls))
    }

    /// The protocol settings these options ask for.
    pub fn protocol_config(&self) -> ferry_core::Config {
        ferry_core::Config {
            max_chunk: self.chunk_size,
            window: self.window,
            ..ferry_core::Config::stream()
        }
    }

    /// The address to connect to (`HOST:PORT`) and the TLS server name.
    pub fn endpoint(&self) -> Result<(String, ServerName<'static>), ClientError> {
        let (host, port) = split_server(&self.server)?;
        let name = ServerName::try_from(host.clone()).map_err(|e| ClientError::Address {
            server: self.server.clone(),
            reason: e.to_string(),
        })?;
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok((address, name))
    }
}

/// Splits `HOST:PORT`, `[V6]:PORT`, `HOST`, `[V6]` or `V6` into host and port
/// ([`DEFAULT_PORT`] if none is given).
pub fn split_server(server: &str) -> Result<(String, u16), ClientError> {
    let bad = |reason: &str| ClientError::Address {
        server: server.to_string(),
        reason: reason.to_string(),
    };
    let server_trimmed = server.trim();
    if server_trimmed.is_empty() {
        return Err(bad("empty"));
    }
    let (host, port) = if server_trimmed.parse::<std::net::Ipv6Addr>().is_ok() {
        // A bare IPv6 address: the port can only be given in the bracket form.
        (server_trimmed, None)
    } else if let Some(rest) = server_trimmed.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("expected ':PORT' after ']'"))?,
            ),
        };
        (host, port)
    } else {
        match server_trimmed.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(bad("write an IPv6 address as [ADDRESS]:PORT"))
            }
            Some((host, port)) => (host, Some(port)),
            None => (server_trimmed, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
    };
    if ServerName::try_from(host.to_string()).is_err() {
        return Err(bad("the host is neither an IP address nor a DNS name"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_split_into_host_and_port() {
        let ok = |s: &str| split_server(s).unwrap();
        assert_eq!(ok("127.0.0.1:9000"), ("127.0.0.1".into(), 9000));
        assert_eq!(ok("localhost:1"), ("localhost".into(), 1));
        assert_eq!(ok("nas.lan"), ("nas.lan".into(), DEFAULT_PORT));
        assert_eq!(ok("[::1]:9443"), ("::1".into(), 9443));
        assert_eq!(ok("[::1]"), ("::1".into(), DEFAULT_PORT));
        assert_eq!(ok("::1"), ("::1".into(), DEFAULT_PORT));
        assert_eq!(ok("127.0.0.1"), ("127.0.0.1".into(), DEFAULT_PORT));
        // Unbracketed, every group belongs to the address.
        assert_eq!(ok("fe80::1:9000"), ("fe80::1:9000".into(), DEFAULT_PORT));
        for bad in [
            "",
            ":9000",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
            "::1:x",
            "::1::2",
            "[::1",
            "[::1]9000",
            "bad host:9",
        ] {
            assert!(split_server(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn endpoint_gives_the_tls_name_of_the_host() {
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(ferry_certs::crypto_provider())
                .with_protocol_versions(ferry_certs::PROTOCOL_VERSIONS)
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let options = ClientOptions::new("[::1]:9", tls.clone()).unwrap();
        let (address, name) = options.endpoint().unwrap();
        assert_eq!(address, "[::1]:9");
        assert!(matches!(name, ServerName::IpAddress(_)));
        let options = ClientOptions::new("localhost", tls.clone()).unwrap();
        let (address, name) = options.endpoint().unwrap();
        assert_eq!(address, "localhost:9000");
        assert!(matches!(name, ServerName::DnsName(_)));
        assert_eq!(options.protocol_config().max_chunk, 64 * 1024);
        assert_eq!(options.protocol_config().window, 16);
        assert!(ClientOptions::new("nope:", tls).is_err());
    }

    #[test]
    fn missing_credentials_are_a_local_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.crt");
        let error =
            ClientOptions::from_files(DEFAULT_SERVER, &missing, &missing, &missing).unwrap_err();
        assert_eq!(
            error.exit_code(),
            crate::client::exit::LOCAL_FILE,
            "{error}"
        );
    }
}
