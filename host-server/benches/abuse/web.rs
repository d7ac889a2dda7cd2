//! Attacks on the web page: new visitors until the session cap (7a), downloads whose
//! readers never read (7b), slow and idle HTTP connections (7c), access-token guessing (10).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::honest::WebClient;
use super::report::{mib, Check, Figures, Row};
use super::server::{Server, ServerSpec};
use super::{Config, Honesty, Setup};

pub const SESSIONS: &str = "7a web-sessions";
pub const STALLED: &str = "7b web-stalled-downloads";
pub const SLOW: &str = "7c web-slow-connections";
pub const TOKEN: &str = "10 web-token";

/// Requests in flight at once from one attacker.
const PARALLEL: usize = 8;

fn web_spec() -> ServerSpec {
    ServerSpec {
        web: true,
        ..ServerSpec::default()
    }
}

/// `host:port` of a page URL.
fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// The page's socket address from its URL or `host:port`.
fn page_addr(url: &str) -> SocketAddr {
    host(url)
        .parse()
        .expect("the page listens on an IP address")
}

/// 7a: cookie-less visitors, each asking for a session, then a new visitor.
pub async fn sessions(cfg: &Config) -> Row {
    let visitors = cfg.pick(1_000, 100);
    let setup = Setup::new(SESSIONS, &[]);
    let scenario = setup.start(cfg, web_spec(), Honesty::Web { token: None });
    let url = scenario.server.web.clone().expect("the page");
    let web = Arc::new(WebClient::attacker(&url, None));
    let (made, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut attackers = JoinSet::new();
    for _ in 0..PARALLEL {
        let (web, made, refused, next) = (web.clone(), made.clone(), refused.clone(), next.clone());
        attackers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < visitors as u64 {
                let _ = web.get("/", None).await;
                match web.new_session().await {
                    Ok((_, Some(_))) => made.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while attackers.join_next().await.is_some() {}
    let flood = started.elapsed();
    let later = WebClient::new(&url, None).new_session().await;
    scenario.wait_out().await;
    let issued = ferry_certs::CertDir::new(&scenario.server.certs)
        .list()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e.name.starts_with("web-"))
                .count()
        })
        .unwrap_or(0);
    let (made, refused) = (
        made.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    let checks = vec![Check::new(
        "a new visitor after the flood gets a session",
        matches!(later, Ok((_, Some(_)))),
        match &later {
            Ok((status, _)) => format!("HTTP {status}"),
            Err(e) => e.clone(),
        },
    )];
    scenario.finish(Figures {
        attack_ops: visitors as u64,
        unit: "visitor",
        active_secs: Some(flood.as_secs_f64()),
        checks,
        notes: vec![format!(
            "{visitors} cookie-less visitors (GET / then POST /api/session) in {:.1} s: {made} sessions made, \
             {refused} refused; {issued} web certificates in the CA's index",
            flood.as_secs_f64()
        )],
        ..Figures::default()
    })
}

/// Bytes of files the server holds open after unlinking them under `scratch` (staged
/// downloads being sent).
fn staged_bytes(server: &Server, scratch: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", server.pid())) else {
        return 0;
    };
    let scratch = scratch.to_string_lossy().to_string();
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let target = target.to_string_lossy();
            (target.starts_with(&scratch) && target.ends_with(" (deleted)"))
                .then(|| std::fs::metadata(fd.path()).ok())
                .flatten()
                .map(|meta| meta.blocks() * 512)
        })
        .sum()
}

/// 7b: four downloads of a large file whose readers never read.
pub async fn stalled_downloads(cfg: &Config) -> Row {
    const READERS: usize = 4;
    let size = cfg.pick(256 << 20, 32 << 20);
    let setup = Setup::new(STALLED, &[]);
    let scenario = setup.start(cfg, web_spec(), Honesty::Web { token: None });
    let url = scenario.server.web.clone().expect("the page");
    let web = WebClient::attacker(&url, None);
    let Ok((_, Some(session))) = web.new_session().await else {
        panic!("the attacker's web session");
    };
    let data = ferry_testkit::data::pseudo_random(size, 77);
    let status = web.upload(&session, "big.bin", data).await;
    assert_eq!(status, Ok(200), "the attacker's upload");
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let mut stream = super::attacker_tcp(page_addr(&url))
            .await
            .expect("the page");
        let request = format!(
            "GET /api/file?name=big.bin HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
            host(&url),
            session.cookie
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("a request");
        readers.push(stream);
    }
    // The attack's time counts from here: the upload before it can take a while.
    let stalled_since = tokio::time::Instant::now();
    let deadline = stalled_since + scenario.cfg.secs;
    let mut peak = 0;
    let mut last = 0;
    while tokio::time::Instant::now() < deadline {
        last = staged_bytes(&scenario.server, &scenario.server.scratch);
        peak = peak.max(last);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The readers stay connected, still reading nothing: the page must let go on its own.
    let give_up = stalled_since + ferry_web::DEFAULT_SEND_TIMEOUT + Duration::from_secs(15);
    while last > 0 && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = staged_bytes(&scenario.server, &scenario.server.scratch);
        peak = peak.max(last);
    }
    let released_after = stalled_since.elapsed();
    drop(readers);
    let figures = Figures {
        attack_ops: READERS as u64,
        unit: "download",
        attacker_bytes: Some(peak),
        checks: vec![
            Check::new(
                "staged downloads within the page's scratch cap",
                peak <= ferry_web::DEFAULT_SCRATCH_MAX,
                format!(
                    "peak {} held for {READERS} stalled downloads of {} (cap {})",
                    mib(peak),
                    mib(size as u64),
                    mib(ferry_web::DEFAULT_SCRATCH_MAX)
                ),
            ),
            Check::new(
                "staged downloads released while their readers still read nothing",
                last == 0,
                format!(
                    "{} still held {:.0} s after the readers stalled (send timeout {} s)",
                    mib(last),
                    released_after.as_secs_f64(),
                    ferry_web::DEFAULT_SEND_TIMEOUT.as_secs()
                ),
            ),
        ],
        notes: vec![format!(
            "{READERS} × GET /api/file of a {} file, never read; held = unlinked files the server keeps open in its TMPDIR",
            mib(size as u64)
        )],
        ..Figures::default()
    };
    scenario.finish(figures)
}

/// 7c: 512 connections to the page, half sending part of a request header, half an idle
/// keep-alive after one request; each reopened as the server closes it.
pub async fn slow_connections(cfg: &Config) -> Row {
    const CONNECTIONS: usize = 512;
    let setup = Setup::new(SLOW, &[]);
    let scenario = setup.start(cfg, web_spec(), Honesty::Web { token: None });
    let url = scenario.server.web.clone().expect("the page");
    let opened = Arc::new(AtomicU64::new(0));
    let mut attackers = JoinSet::new();
    for n in 0..CONNECTIONS {
        let (address, opened) = (host(&url).to_string(), opened.clone());
        attackers.spawn(async move {
            loop {
                if let Ok(mut stream) = super::attacker_tcp(page_addr(&address)).await {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let request = if n % 2 == 0 {
                        format!("GET / HTTP/1.1\r\nHost: {address}\r\nUser-Agent: slow")
                    } else {
                        format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n")
                    };
                    if stream.write_all(request.as_bytes()).await.is_ok() {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    scenario.wait_out().await;
    attackers.abort_all();
    scenario.finish(Figures {
        attack_ops: opened.load(Ordering::Relaxed),
        unit: "conn",
        notes: vec![format!(
            "{CONNECTIONS} connections: even ones send part of a header, odd ones one request then idle keep-alive"
        )],
        ..Figures::default()
    })
}

/// Median of `values`, 0 if empty.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Sends `request` on a new connection; the status line's code.
async fn raw_status(address: &str, request: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split(' ').nth(1)?.parse().ok()
}

/// 10: wrong access tokens as fast as the page answers; plus a 5-byte token and two Host
/// headers.
pub async fn token(cfg: &Config) -> Row {
    const GUESSES: usize = 2_000;
    let token = "k7Q2v9XwR4mN8pL3sT6yB1cD5fG0hJ2e".to_string();
    let setup = Setup::new(TOKEN, &[]);
    let spec = ServerSpec {
        web: true,
        args: vec!["--web-token".into(), token.clone()],
        ..ServerSpec::default()
    };
    let scenario = setup.start(
        cfg,
        spec,
        Honesty::Web {
            token: Some(token.clone()),
        },
    );
    let url = scenario.server.web.clone().expect("the page");
    let guesser = Arc::new(WebClient::attacker(&url, None));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut attackers = JoinSet::new();
    for _ in 0..PARALLEL {
        let (guesser, next) = (guesser.clone(), next.clone());
        attackers.spawn(async move {
            let mut seen = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= GUESSES as u64 {
                    return seen;
                }
                let begun = Instant::now();
                let status = guesser.get(&format!("/?token=wrong{n:08}"), None).await;
                seen.push((
                    n,
                    begun.elapsed().as_secs_f64() * 1000.0,
                    status.unwrap_or(0),
                ));
            }
        });
    }
    let mut seen = Vec::new();
    while let Some(Ok(part)) = attackers.join_next().await {
        seen.extend(part);
    }
    let took = started.elapsed();
    seen.sort_by_key(|(n, _, _)| *n);
    let mut first: Vec<f64> = seen.iter().take(200).map(|s| s.1).collect();
    let mut last: Vec<f64> = seen.iter().rev().take(200).map(|s| s.1).collect();
    let (first, last) = (median(&mut first), median(&mut last));
    let throttled = seen.iter().filter(|s| s.2 == 429).count();
    let admitted = seen.iter().filter(|s| (200..400).contains(&s.2)).count();
    let address = host(&url).to_string();
    let two_hosts = raw_status(
        &address,
        &format!(
            "GET / HTTP/1.1\r\nHost: {address}\r\nHost: evil.example\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    scenario.wait_out().await;
    // A page started with a 5-byte token.
    let short = Setup::new(TOKEN, &[]);
    let short_spec = ServerSpec {
        web: true,
        args: vec!["--web-token".into(), "abcde".into()],
        ..ServerSpec::default()
    };
    let short_started = Server::try_start(short.root(), short_spec)
        .map(|mut server| server.stop())
        .is_ok();
    let rate = GUESSES as f64 / took.as_secs_f64();
    let checks = vec![
        Check::new(
            "wrong guesses slow down",
            throttled > 0 || last > 5.0 * first.max(1.0),
            format!(
                "{GUESSES} wrong guesses in {:.2} s ({rate:.0}/s); median {first:.1} ms first 200, {last:.1} ms last 200; {throttled} × 429",
                took.as_secs_f64()
            ),
        ),
        Check::new(
            "no wrong guess admitted",
            admitted == 0,
            format!("{admitted} admitted"),
        ),
        Check::new(
            "a 5-byte token is refused at start",
            !short_started,
            if short_started { "the server started" } else { "the server refused to start" },
        ),
        Check::new(
            "a request with two Host headers is refused",
            two_hosts.is_some_and(|s| s >= 400),
            format!("status {two_hosts:?}"),
        ),
    ];
    scenario.finish(Figures {
        attack_ops: GUESSES as u64,
        unit: "guess",
        active_secs: Some(took.as_secs_f64()),
        checks,
        notes: vec![format!(
            "GET /?token=WRONG from {PARALLEL} connections at once"
        )],
        ..Figures::default()
    })
}
