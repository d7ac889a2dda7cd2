//! The page under abuse (issue 13, findings 7 and 10): cookie-less visits cost nothing, new
//! identities are rate-limited per source and capped (the least recently used session is
//! ended and its certificate revoked), sessions end with their identity, staged downloads are
//! bounded and released from a reader that never reads, idle and slow connections do not
//! lock the page, and the access token resists guessing.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use support::{http_client, new_session, pseudo_random, Browser, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A second loopback address: another source for the page's per-source limits.
const OTHER_SOURCE: &str = "127.0.0.2";

fn other_source() -> IpAddr {
    OTHER_SOURCE.parse().unwrap()
}

/// An HTTP client whose connections come from `ip`.
fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of the metric `name` on the page's `/metrics`, asked from another source
/// address than the tests' abuse (with the access token, if the page has one).
async fn metric(env: &Env, name: &str) -> u64 {
    let mut request = client_from(other_source()).get(format!("{}/metrics", env.base()));
    if let Some(token) = &env.options.access_token {
        request = request.bearer_auth(token);
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

fn index_entry(env: &Env, name: &str) -> ferry_certs::IndexEntry {
    ferry_certs::CertDir::new(&env.certs)
        .list()
        .unwrap()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the index"))
}

/// Session records (each holds its identity's key) in the page's state directory.
fn session_records(env: &Env) -> usize {
    std::fs::read_dir(env.options.state_dir().join("sessions"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count()
}

/// Revoked certificates in the CA's CRL, as a verifier loading it counts them.
fn crl_revoked(env: &Env) -> usize {
    let dir = ferry_certs::CertDir::new(&env.certs);
    let verifier =
        ferry_certs::ReloadableClientVerifier::new(&dir.ca_cert(), Some(&dir.crl())).unwrap();
    verifier.reload_crl().unwrap()
}

/// The ferry-tokio client options of a browser's identity, from the page's PEM downloads.
async fn identity_of(browser: &Browser, server: SocketAddr) -> ferry_tokio::client::ClientOptions {
    let mut pem = Vec::new();
    for file in ["ca", "cert", "key"] {
        let response = browser.get(&format!("/identity/{file}.pem")).await;
        assert_eq!(response.status(), StatusCode::OK);
        pem.push(response.text().await.unwrap());
    }
    ferry_tokio::client::ClientOptions::from_pem(
        &ferry_web::server_address_for(server),
        &pem[0],
        &pem[1],
        &pem[2],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cookie_less_visits_leave_room_for_a_newcomer() {
    let env = Env::start_with(|o| o.max_sessions = 5).await;
    let before = ferry_certs::CertDir::new(&env.certs).list().unwrap().len();
    let http = http_client();
    let base = env.base();
    let statuses: Vec<StatusCode> = futures_util::stream::iter(0..1000)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            async move { http.get(format!("{base}/")).send().await.unwrap().status() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(
        ferry_certs::CertDir::new(&env.certs).list().unwrap().len(),
        before,
        "a visit issued a certificate"
    );
    assert_eq!(metric(&env, "ferry_web_sessions_cached").await, 0);
    let browser = Browser::open(&env).await;
    let (status, body) = browser.upload("newcomer.txt", b"still room").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_identities_are_rate_limited_per_source() {
    let env = Env::start_with(|o| {
        o.identity_burst = 2;
        o.identities_per_minute = 1;
    })
    .await;
    let http = http_client();
    let base = env.base();
    for _ in 0..2 {
        let response = new_session(&http, &base, &Default::default()).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = new_session(&http, &base, &Default::default()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    // Another source address has its own bucket.
    let response = new_session(&client_from(other_source()), &base, &Default::default()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        metric(&env, "ferry_web_identities_rate_limited_total").await,
        1
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cap_ends_the_least_recently_used_session_and_revokes_it() {
    let mut env = Env::start_with(|o| o.max_sessions = 2).await;
    let first = Browser::open(&env).await;
    let second = Browser::open(&env).await;
    let (status, _) = second.upload("kept.txt", b"operator's data").await;
    assert_eq!(status, StatusCode::OK);
    let second_identity = identity_of(&second, env.server_addr).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    first.list().await; // the second is now the least recently used
    let revoked_before = crl_revoked(&env);

    let third = Browser::open(&env).await;
    let (status, body) = third.upload("third.txt", b"3").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(first.list().await.len(), 0, "the recent session stays");
    let response = second.get("/api/files").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "evicted");
    assert!(index_entry(&env, &second.identity).is_revoked());
    assert_eq!(crl_revoked(&env), revoked_before + 1);
    assert_eq!(session_records(&env), 2, "the evicted key is removed");
    assert!(
        env.stored(&second.identity, "kept.txt").exists(),
        "the evicted identity's files stay on the server"
    );
    assert_eq!(metric(&env, "ferry_web_sessions_evicted_total").await, 1);

    // A Ferry server loading the CRL refuses the evicted certificate.
    env.restart_server().await;
    let mut client = ferry_tokio::client::Client::new(second_identity);
    assert!(
        client.list().await.is_err(),
        "a revoked certificate was accepted"
    );
    client.close().await;
    let mut client = ferry_tokio::client::Client::new(identity_of(&third, env.server_addr).await);
    assert_eq!(client.list().await.unwrap().len(), 1);
    client.close().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_revokes_its_certificate_and_removes_its_key() {
    let env = Env::start_with(|o| o.session_idle = Duration::from_secs(3)).await;
    let browser = Browser::open(&env).await;
    let (status, _) = browser.upload("stays.txt", b"data").await;
    assert_eq!(status, StatusCode::OK);
    let entry = index_entry(&env, &browser.identity);
    assert!(!entry.is_revoked());
    assert_eq!(session_records(&env), 1);
    let revoked_before = crl_revoked(&env);

    let deadline = Instant::now() + Duration::from_secs(20);
    while !index_entry(&env, &browser.identity).is_revoked() {
        assert!(
            Instant::now() < deadline,
            "the expired identity was not revoked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(crl_revoked(&env), revoked_before + 1);
    assert_eq!(session_records(&env), 0, "the key stayed on disk");
    assert_eq!(
        browser.get("/api/files").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(env.stored(&browser.identity, "stays.txt").exists());
    assert_eq!(metric(&env, "ferry_web_sessions_expired_total").await, 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_nobody_reads_releases_its_scratch() {
    const SIZE: usize = 24 << 20;
    let env = Env::start_with(|o| {
        o.scratch_max_bytes = 32 << 20;
        o.send_timeout = Duration::from_secs(2);
    })
    .await;
    let browser = Browser::open(&env).await;
    let data = pseudo_random(SIZE, 7);
    let (status, body) = browser.upload("big.bin", &data).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A reader that sends its request and never reads.
    let mut stalled = TcpStream::connect(env.web_addr).await.unwrap();
    let request = format!(
        "GET /api/file?name=big.bin HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
        env.web_addr, browser.cookie
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&env, "ferry_web_scratch_bytes").await != SIZE as u64 {
        assert!(Instant::now() < deadline, "the download was never staged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second one does not fit beside it.
    let response = browser.download("big.bin").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));

    // The send timeout gives the scratch back while the reader still holds its connection.
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&env, "ferry_web_scratch_bytes").await != 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled download pins scratch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&env, "ferry_web_send_timeouts_total").await, 1);
    assert!(metric(&env, "ferry_web_scratch_full_total").await >= 1);
    let response = browser.download("big.bin").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap() == data);
    drop(stalled);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_do_not_lock_the_page() {
    let env = Env::start().await;
    // 512 connections from one source: half idle, half stuck in their headers.
    let mut held = Vec::new();
    for i in 0..512 {
        let Ok(mut tcp) = TcpStream::connect(env.web_addr).await else {
            continue;
        };
        if i % 2 == 1 {
            let _ = tcp
                .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await;
        }
        held.push(tcp);
    }
    // Another source gets the page at once.
    let started = Instant::now();
    let response = client_from(other_source())
        .get(format!("{}/", env.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(metric(&env, "ferry_web_connections_refused_total").await > 0);

    // The held connections are closed within the header timeout, so the same source gets
    // the page again soon.
    let started = Instant::now();
    let mut closed = 0;
    for tcp in held.iter_mut().take(64) {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => closed += 1, // an error response, then the close
            Err(_) => {}
        }
    }
    assert_eq!(closed, 64, "idle connections stay open");
    assert!(
        started.elapsed() < ferry_web::HEADER_TIMEOUT + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    let response = http_client()
        .get(format!("{}/", env.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // A kept-alive connection idle after its request is closed as soon.
    let mut kept = TcpStream::connect(env.web_addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(15), kept.read(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(
        idle_since.elapsed() < ferry_web::HEADER_TIMEOUT + Duration::from_secs(2),
        "{:?}",
        idle_since.elapsed()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_access_tokens_slow_the_guesser_down() {
    let token = "correct-horse-battery-staple";
    let env = Env::start_with(|o| o.access_token = Some(token.into())).await;
    let http = http_client();
    let base = env.base();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let response = http
            .get(format!("{base}/api/files"))
            .bearer_auth(format!("wrong-guess-number-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
        }
    }
    assert!(
        statuses[..5].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Slowed down, even the right token waits: a guesser learns nothing meanwhile.
    let response = http
        .get(format!("{base}/?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another source is not slowed.
    let response = client_from(other_source())
        .get(format!("{base}/?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(metric(&env, "ferry_web_token_slowdowns_total").await >= 15);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_two_host_headers_is_refused() {
    let env = Env::start().await;
    for (hosts, expected) in [
        ("Host: 127.0.0.1\r\nHost: evil.example\r\n", "400"),
        ("Host: 127.0.0.1\r\n", "200"),
    ] {
        let mut tcp = TcpStream::connect(env.web_addr).await.unwrap();
        let request = format!("GET / HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let status_line = answer.lines().next().unwrap_or_default();
        assert!(status_line.contains(expected), "{hosts:?}: {status_line}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_access_tokens_are_refused_at_start_naming_the_flag() {
    let dir = support::fresh_ca();
    let options = ferry_web::WebOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        certs_dir: dir.path().to_path_buf(),
        access_token: Some("12345".into()),
        ..ferry_web::WebOptions::default()
    };
    let error = ferry_web::WebServer::bind(options.clone())
        .await
        .expect_err("a 5-byte token was accepted");
    assert!(matches!(
        error,
        ferry_web::WebError::TokenTooShort { len: 5, .. }
    ));
    assert!(error.to_string().contains("--token"), "{error}");
    // ferry-server sets the token with --web-token: its errors say so.
    let server_options = ferry_web::WebOptions {
        token_flag: "--web-token",
        ..options.clone()
    };
    let error = ferry_web::check_access_token(&server_options).unwrap_err();
    assert!(error.to_string().contains("--web-token"), "{error}");
    let error = ferry_web::check_access_token(&ferry_web::WebOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        access_token: None,
        ..server_options
    })
    .unwrap_err();
    assert!(error.to_string().contains("--web-token"), "{error}");
    assert!(!error.to_string().contains("--token "), "{error}");
    let web = ferry_web::WebServer::bind(ferry_web::WebOptions {
        access_token: Some("sixteen-bytes-ok".into()),
        ..options
    })
    .await;
    assert!(web.is_ok());
}
