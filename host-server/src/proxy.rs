//! The PROXY protocol v2 (`--proxy-protocol`): behind a TCP balancer such as HAProxy
//! (`send-proxy-v2`), every connection starts with a binary header naming the client's
//! address, which then stands for the peer address everywhere (admission's per-source limit,
//! logs, refusal logs, metrics).
//!
//! ```text
//! accept(tcp, balancer) ─▶ balancer inside --proxy-from? ── no ─▶ closed, refused
//!   ─▶ read_header: 16 bytes (signature, command, family, length), then `length` more,
//!      at most the family's addresses + MAX_TLV_BYTES, all within the handshake timeout
//!   ─▶ PROXY TCP4/TCP6 ⇒ the client's address; LOCAL (health checks) or another family ⇒
//!      the balancer's address ─▶ admission, TLS handshake, session as without the flag
//! ```
//! Only the header's own bytes are read: the TLS handshake that follows is untouched.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::v2::{Addresses, Command, Header, PROTOCOL_PREFIX};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::parse_network;

/// The fixed part of a v2 header: the 12-byte signature, version and command, family and
/// protocol, and the big-endian length of what follows.
const FIXED_LEN: usize = 16;
/// The largest address block (two UNIX socket paths of 108 bytes).
const MAX_ADDRESS_BYTES: usize = 216;
/// TLVs accepted after the addresses. HAProxy sends a few (ALPN, authority, unique id, SSL
/// information) well below this; more is refused rather than read.
pub const MAX_TLV_BYTES: usize = 512;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Nothing complete within the timeout.
    #[error("no complete PROXY v2 header within {0:?}")]
    TimedOut(Duration),
    /// The connection closed or failed while the header was read.
    #[error("reading the PROXY v2 header: {0}")]
    Io(#[from] io::Error),
    /// A PROXY v1 text header: the balancer must use `send-proxy-v2`.
    #[error("a PROXY v1 header: configure the balancer with send-proxy-v2")]
    Version1,
    /// Not a PROXY v2 signature (a direct client, or garbage).
    #[error("no PROXY v2 header: the connection does not come through the balancer")]
    Missing,
    /// A header announcing more than its addresses and [`MAX_TLV_BYTES`] of TLVs.
    #[error("a PROXY v2 header announcing {0} bytes after its fixed part, more than its addresses and {MAX_TLV_BYTES} bytes of TLVs")]
    TooLong(usize),
    /// A v2 signature with a header the parser refuses.
    #[error("an invalid PROXY v2 header: {0}")]
    Invalid(String),
}

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Relayed for this client.
    Client(SocketAddr),
    /// The balancer's own connection (a `LOCAL` health check), or an address family that is
    /// not IP: the TCP peer stays the address.
    Balancer,
}

impl Origin {
    /// The address that stands for the connection: the client's, else the TCP peer's.
    pub fn address(self, tcp_peer: SocketAddr) -> SocketAddr {
        match self {
            Origin::Client(client) => client,
            Origin::Balancer => tcp_peer,
        }
    }
}

/// The balancers allowed to send PROXY headers (`--proxy-from`).
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses `ADDR` or `ADDR/BITS` entries (validated already by the options).
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let networks = entries
            .iter()
            .map(|entry| parse_network(entry))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }

    /// Whether `ip` is inside one of the networks. An IPv4-mapped IPv6 address (a dual-stack
    /// listener) counts as its IPv4 address.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks
            .iter()
            .any(|(network, bits)| in_network(ip, *network, *bits))
    }
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// The length of the address block of the family in the header's 14th byte (an unknown
/// family is refused by the parser later; it may announce no more than the largest).
fn address_bytes(family_protocol: u8) -> usize {
    match family_protocol >> 4 {
        0x0 => 0,
        0x1 => 12,
        0x2 => 36,
        _ => MAX_ADDRESS_BYTES,
    }
}

/// Reads one PROXY v2 header from `stream` within `timeout`, and nothing after it.
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> Result<Origin, ProxyError> {
    tokio::time::timeout(timeout, read_header_unbounded(stream))
        .await
        .map_err(|_| ProxyError::TimedOut(timeout))?
}

async fn read_header_unbounded<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Origin, ProxyError> {
    let mut fixed = [0u8; FIXED_LEN];
    // The signature first, byte-exact reads: a direct TLS client is refused after 12 bytes
    // of its ClientHello rather than waiting for more.
    stream
        .read_exact(&mut fixed[..PROTOCOL_PREFIX.len()])
        .await?;
    if fixed[..PROTOCOL_PREFIX.len()] != *PROTOCOL_PREFIX {
        return Err(if fixed.starts_with(b"PROXY ") {
            ProxyError::Version1
        } else {
            ProxyError::Missing
        });
    }
    stream
        .read_exact(&mut fixed[PROTOCOL_PREFIX.len()..])
        .await?;
    let length = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if length > address_bytes(fixed[13]) + MAX_TLV_BYTES {
        return Err(ProxyError::TooLong(length));
    }
    let mut header = Vec::with_capacity(FIXED_LEN + length);
    header.extend_from_slice(&fixed);
    header.resize(FIXED_LEN + length, 0);
    stream.read_exact(&mut header[FIXED_LEN..]).await?;
    let parsed =
        Header::try_from(header.as_slice()).map_err(|e| ProxyError::Invalid(e.to_string()))?;
    if parsed.command == Command::Local {
        return Ok(Origin::Balancer);
    }
    Ok(match parsed.addresses {
        Addresses::IPv4(a) => {
            Origin::Client(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        Addresses::IPv6(a) => {
            Origin::Client(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        // UNSPEC and UNIX: the protocol says to use the connection's own addresses.
        Addresses::Unspecified | Addresses::Unix(_) => Origin::Balancer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, IPv4, IPv6, Protocol, Type, Version};
    use tokio::io::AsyncWriteExt;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn proxy_v4() -> Vec<u8> {
        let addresses: Addresses = IPv4::new([192, 0, 2, 7], [10, 0, 0, 1], 40_001, 4433).into();
        Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    async fn read_all_of(bytes: &[u8]) -> (Result<Origin, ProxyError>, Vec<u8>) {
        let mut reader = bytes;
        let origin = read_header(&mut reader, TIMEOUT).await;
        (origin, reader.to_vec())
    }

    #[tokio::test]
    async fn tcp4_names_the_client_and_leaves_what_follows() {
        let mut bytes = proxy_v4();
        bytes.extend_from_slice(b"\x16\x03\x01 the TLS ClientHello");
        let (origin, rest) = read_all_of(&bytes).await;
        assert_eq!(
            origin.unwrap(),
            Origin::Client("192.0.2.7:40001".parse().unwrap())
        );
        assert_eq!(rest, b"\x16\x03\x01 the TLS ClientHello");
    }

    #[tokio::test]
    async fn tcp6_with_tlvs_names_the_client() {
        let addresses: Addresses = IPv6::new(
            "2001:db8::5".parse::<std::net::Ipv6Addr>().unwrap(),
            "2001:db8::1".parse().unwrap(),
            50_000,
            4433,
        )
        .into();
        let bytes =
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
                .write_tlv(Type::UniqueId, b"abc".as_slice())
                .unwrap()
                .write_tlv(Type::NoOp, [0u8; 100].as_slice())
                .unwrap()
                .build()
                .unwrap();
        let (origin, rest) = read_all_of(&bytes).await;
        assert_eq!(
            origin.unwrap(),
            Origin::Client("[2001:db8::5]:50000".parse().unwrap())
        );
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn local_keeps_the_balancer_address() {
        let bytes = Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            Addresses::Unspecified,
        )
        .build()
        .unwrap();
        let (origin, _) = read_all_of(&bytes).await;
        let origin = origin.unwrap();
        assert_eq!(origin, Origin::Balancer);
        let balancer: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        assert_eq!(origin.address(balancer), balancer);
    }

    #[tokio::test]
    async fn version_1_is_refused() {
        let (origin, _) = read_all_of(b"PROXY TCP4 192.0.2.7 10.0.0.1 40001 4433\r\n").await;
        assert!(matches!(origin, Err(ProxyError::Version1)), "{origin:?}");
    }

    #[tokio::test]
    async fn a_direct_tls_client_or_garbage_is_refused() {
        let (origin, _) =
            read_all_of(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh").await;
        assert!(matches!(origin, Err(ProxyError::Missing)), "{origin:?}");
    }

    #[tokio::test]
    async fn truncated_headers_are_refused() {
        let whole = proxy_v4();
        for cut in [0, 5, 12, 15, 16, whole.len() - 1] {
            let (origin, _) = read_all_of(&whole[..cut]).await;
            match origin {
                Err(ProxyError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_invalid_length_for_the_family_is_refused() {
        // TCP4 announcing 4 bytes of addresses instead of 12.
        let mut bytes = PROTOCOL_PREFIX.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        let (origin, _) = read_all_of(&bytes).await;
        assert!(matches!(origin, Err(ProxyError::Invalid(_))), "{origin:?}");
    }

    #[tokio::test]
    async fn oversized_headers_are_refused_unread() {
        let mut bytes = PROTOCOL_PREFIX.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11]);
        bytes.extend_from_slice(&u16::MAX.to_be_bytes());
        // Only the fixed part is there: the refusal comes from the announced length alone.
        let (origin, _) = read_all_of(&bytes).await;
        assert!(
            matches!(origin, Err(ProxyError::TooLong(65535))),
            "{origin:?}"
        );
        // Just past the limit for TCP4 (12 bytes of addresses), with the bytes present, is
        // refused too; at the limit it is read.
        for (tlvs, refused) in [(MAX_TLV_BYTES + 1, true), (MAX_TLV_BYTES, false)] {
            let addresses: Addresses = IPv4::new([192, 0, 2, 7], [10, 0, 0, 1], 1, 2).into();
            let bytes =
                Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
                    .write_tlv(Type::NoOp, vec![0u8; tlvs - 3].as_slice())
                    .unwrap()
                    .build()
                    .unwrap();
            let (origin, _) = read_all_of(&bytes).await;
            match origin {
                Err(ProxyError::TooLong(n)) if refused => assert_eq!(n, 12 + tlvs),
                Ok(Origin::Client(_)) if !refused => {}
                other => panic!("{tlvs} bytes of TLVs: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_slow_header_times_out() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let header = proxy_v4();
        client.write_all(&header[..10]).await.unwrap();
        let started = std::time::Instant::now();
        let origin = read_header(&mut server, Duration::from_millis(200)).await;
        assert!(matches!(origin, Err(ProxyError::TimedOut(_))), "{origin:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(client);
    }

    #[test]
    fn trusted_networks() {
        let trusted = TrustedProxies::parse(&[
            "127.0.0.1/32".into(),
            "10.1.0.0/16".into(),
            "::1".into(),
            "2001:db8::/32".into(),
        ])
        .unwrap();
        for ip in [
            "127.0.0.1",
            "10.1.255.3",
            "::1",
            "2001:db8:5::1",
            "::ffff:10.1.0.9",
        ] {
            assert!(trusted.trusts(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.2", "10.2.0.1", "::2", "2001:db9::1", "0.0.0.0"] {
            assert!(!trusted.trusts(ip.parse().unwrap()), "{ip}");
        }
        let everyone = TrustedProxies::parse(&["0.0.0.0/0".into()]).unwrap();
        assert!(everyone.trusts("203.0.113.9".parse().unwrap()));
        assert!(!everyone.trusts("2001:db8::1".parse().unwrap()));
    }
}
