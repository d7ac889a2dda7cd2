//! `--proxy-protocol` against the in-process server, with PROXY v2 headers written by the
//! test: the header's address is the source admission limits; a LOCAL header (a balancer's
//! health check) is served; a connection without a header, or from outside
//! `--proxy-from`, is closed before TLS.

mod server_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_certs::rustls::pki_types::ServerName;
use ferry_certs::rustls::ClientConfig;
use ferry_testkit::pki::local_tls;
use ferry_testkit::server::InProcess;
use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
use server_support::TestClient;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

fn header(source: Option<SocketAddr>) -> Vec<u8> {
    match source {
        Some(source) => {
            let target: SocketAddr = "10.0.0.1:4433".parse().unwrap();
            Builder::with_addresses(
                Version::Two | Command::Proxy,
                Protocol::Stream,
                Addresses::from((source, target)),
            )
        }
        None => Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            Addresses::Unspecified,
        ),
    }
    .build()
    .unwrap()
}

/// A TCP connection to `addr` that sent the header of `source` (None: LOCAL).
async fn proxied(addr: SocketAddr, source: Option<SocketAddr>) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&header(source)).await.unwrap();
    tcp
}

async fn tls(tcp: TcpStream, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Whether a session over `tcp` works: TLS, the protocol handshake and a listing.
async fn served(tcp: TcpStream, config: Arc<ClientConfig>) -> bool {
    let attempt = async {
        let mut client = TestClient::over(tls(tcp, config).await.ok()?).await.ok()?;
        client.list().await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), attempt).await,
        Ok(Some(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_address_is_the_source_admission_counts() {
    let server = InProcess::start_temp(|options| {
        options.proxy_protocol = true;
        options.max_handshakes_per_source = 1;
        options.handshake_timeout_secs = 30;
    })
    .await;
    let config = local_tls(&server.certs);
    let (alice, bob): (SocketAddr, SocketAddr) = (
        "192.0.2.1:40000".parse().unwrap(),
        "192.0.2.2:40000".parse().unwrap(),
    );
    // alice's one handshake is held open: the header came, no ClientHello yet.
    let _held = proxied(server.addr, Some(alice)).await;
    // Another of hers is refused once the server has read the first header (all of them
    // come from 127.0.0.1, the balancer: only the header tells them apart).
    let started = Instant::now();
    while served(proxied(server.addr, Some(alice)).await, config.clone()).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a second handshake of {alice} is still let in"
        );
    }
    assert!(served(proxied(server.addr, Some(bob)).await, config.clone()).await);
    // A health check's LOCAL header keeps the balancer's address, and is served.
    assert!(served(proxied(server.addr, None).await, config.clone()).await);
    // Straight to the server, without a header: closed before TLS.
    let direct = TcpStream::connect(server.addr).await.unwrap();
    assert!(!served(direct, config.clone()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_outside_proxy_from_is_refused_even_with_a_valid_header() {
    let server = InProcess::start_temp(|options| {
        options.proxy_protocol = true;
        options.proxy_from = vec!["10.9.9.0/24".into(), "::1/128".into()];
    })
    .await;
    let config = local_tls(&server.certs);
    let tcp = proxied(server.addr, Some("192.0.2.1:40000".parse().unwrap())).await;
    assert!(!served(tcp, config.clone()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_a_header_is_not_expected() {
    let server = InProcess::start_temp(|_| {}).await;
    let config = local_tls(&server.certs);
    assert!(
        served(
            TcpStream::connect(server.addr).await.unwrap(),
            config.clone()
        )
        .await
    );
    // A header is then the start of a broken TLS handshake.
    let tcp = proxied(server.addr, Some("192.0.2.1:40000".parse().unwrap())).await;
    assert!(!served(tcp, config).await);
}
