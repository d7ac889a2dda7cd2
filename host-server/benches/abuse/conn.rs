//! Attacks on connections and requests: idle sockets and half ClientHellos before any
//! certificate (1), one identity's idle authenticated connections (2), raw names (9).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::wire::{ErrorCode, Frame};
use ferry_tokio::client::Client;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::raw::{Answer, Raw};
use super::report::{Check, Figures, Row};
use super::server::ServerSpec;
use super::{Config, Honesty, Setup};

pub const IDLE_SOCKETS: &str = "1 idle-sockets";
pub const IDLE_SESSIONS: &str = "2 idle-sessions";
pub const NAMES: &str = "9 names";

/// Sockets the attacker keeps open (the server's default connection limit is 256).
const SOCKETS: usize = 300;
/// Authenticated connections the attacker keeps open.
const SESSIONS: usize = 256;
/// Pause before a socket the server closed is opened again.
const REOPEN: Duration = Duration::from_millis(100);
/// The attacker's identity.
const MALLORY: &str = "mallory";

/// The first half of a real TLS 1.3 ClientHello (no client certificate).
fn half_client_hello(setup: &Setup) -> Vec<u8> {
    let ca = std::fs::read_to_string(setup.pki.ca()).expect("the CA certificate");
    let tls = ferry_testkit::pki::raw_tls(&ca, None);
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    let mut conn = rustls::ClientConnection::new(tls, name).expect("a TLS client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("a ClientHello");
    hello.truncate(hello.len() / 2);
    hello
}

/// Reads until the peer closes or fails.
async fn hold(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// 1: sockets with nothing or half a ClientHello, reopened as the server closes them.
pub async fn idle_sockets(cfg: &Config) -> Row {
    let setup = Setup::new(IDLE_SOCKETS, &[]);
    let hello = Arc::new(half_client_hello(&setup));
    let scenario = setup.start(cfg, ServerSpec::default(), Honesty::Protocol);
    let addr = scenario.addr();
    let opened = Arc::new(AtomicU64::new(0));
    let mut attackers = JoinSet::new();
    for socket in 0..SOCKETS {
        let (hello, opened) = (hello.clone(), opened.clone());
        attackers.spawn(async move {
            loop {
                if let Ok(mut stream) = super::attacker_tcp(addr).await {
                    opened.fetch_add(1, Ordering::Relaxed);
                    if socket % 2 == 1 {
                        let _ = stream.write_all(&hello).await;
                    }
                    hold(stream).await;
                }
                tokio::time::sleep(REOPEN).await;
            }
        });
    }
    scenario.wait_out().await;
    attackers.abort_all();
    let opened = opened.load(Ordering::Relaxed);
    scenario.finish(Figures {
        attack_ops: opened,
        unit: "conn",
        notes: vec![format!(
            "{SOCKETS} sockets from 127.0.0.1, odd ones send half a ClientHello; {opened} opened"
        )],
        ..Figures::default()
    })
}

/// 2: one identity holding idle authenticated connections (TLS and hello, then silence).
pub async fn idle_sessions(cfg: &Config) -> Row {
    let setup = Setup::new(IDLE_SESSIONS, &[MALLORY]);
    let scenario = setup.start(cfg, ServerSpec::default(), Honesty::Protocol);
    let (addr, tls) = (scenario.addr(), scenario.tls(MALLORY));
    let opened = Arc::new(AtomicU64::new(0));
    let held = Arc::new(AtomicU64::new(0));
    let mut attackers = JoinSet::new();
    for _ in 0..SESSIONS {
        let (tls, opened, held) = (tls.clone(), opened.clone(), held.clone());
        attackers.spawn(async move {
            loop {
                if let Ok((mut raw, _)) = Raw::open(addr, tls.clone(), 64 * 1024).await {
                    opened.fetch_add(1, Ordering::Relaxed);
                    held.fetch_add(1, Ordering::Relaxed);
                    while raw.receive().await.is_ok() {}
                    held.fetch_sub(1, Ordering::Relaxed);
                }
                tokio::time::sleep(REOPEN).await;
            }
        });
    }
    // The most sessions held at once, sampled.
    let mut peak = 0;
    while tokio::time::Instant::now() < scenario.deadline() {
        peak = peak.max(held.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    attackers.abort_all();
    scenario.finish(Figures {
        attack_ops: opened.load(Ordering::Relaxed),
        unit: "session",
        notes: vec![format!(
            "{SESSIONS} connections of `{MALLORY}` after TLS and hello, then silent; at most {peak} \
             held at once (the per-identity limit is 16)"
        )],
        ..Figures::default()
    })
}

/// Names that look like other names or like nothing, and one over the protocol's 255 bytes.
fn hostile_names() -> Vec<(&'static str, String)> {
    vec![
        ("U+200B zero width space", "a\u{200B}b.txt".into()),
        ("U+200D zero width joiner", "a\u{200D}b.txt".into()),
        ("U+2060 word joiner", "a\u{2060}b.txt".into()),
        ("U+00AD soft hyphen", "a\u{00AD}b.txt".into()),
        ("U+3164 hangul filler", "\u{3164}.txt".into()),
        ("U+061C arabic letter mark", "a\u{061C}b.txt".into()),
        ("U+2025 two dot leader", "\u{2025}".into()),
        ("U+FF0E fullwidth dots", "\u{FF0E}\u{FF0E}".into()),
        ("U+2571 slash look-alike", "a\u{2571}b".into()),
        ("300-byte raw name", "x".repeat(300)),
    ]
}

/// What the server did with one raw name: its refusal code if refused, and a description.
struct NameOutcome {
    refused: Option<ErrorCode>,
    accepted: bool,
    /// The connection still answered a request afterwards.
    alive: bool,
    text: String,
}

/// Opens an upload of `name` on a fresh connection; then checks the connection still answers.
async fn try_name(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, name: &str) -> NameOutcome {
    let mut outcome = NameOutcome {
        refused: None,
        accepted: false,
        alive: false,
        text: String::new(),
    };
    let Ok((mut raw, _)) = Raw::open(addr, tls, 64 * 1024).await else {
        outcome.text = "no connection".into();
        return outcome;
    };
    outcome.text =
        match tokio::time::timeout(Duration::from_secs(5), raw.open_upload(name, 1)).await {
            Ok(Ok(Answer::Error { code, text })) => {
                outcome.refused = Some(code);
                format!("refused {}: {text}", code.name())
            }
            Ok(Ok(Answer::ResumeStatus)) => {
                outcome.accepted = true;
                "accepted".into()
            }
            Ok(Ok(other)) => format!("answered {other:?}"),
            Ok(Err(e)) => format!("connection lost: {e}"),
            Err(_) => "no answer in 5 s".into(),
        };
    // Alive if a later request gets any answer (a list, or BUSY while the upload is open).
    let seq = raw.seq();
    let probe = async {
        raw.send(&Frame::List {
            seq,
            start_after: "",
            limit: 1,
        })
        .await?;
        raw.receive().await
    };
    outcome.alive = matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Ok(_))
    );
    outcome
}

/// 9: invisible, look-alike and over-long names, sent as raw frames.
pub async fn names(cfg: &Config) -> Row {
    let setup = Setup::new(NAMES, &[MALLORY]);
    let scenario = setup.start(cfg, ServerSpec::default(), Honesty::Protocol);
    let (addr, tls) = (scenario.addr(), scenario.tls(MALLORY));
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    let mut sent = 0u64;
    let mut first_pass = true;
    loop {
        for (label, name) in hostile_names() {
            let outcome = try_name(addr, tls.clone(), &name).await;
            sent += 1;
            if first_pass {
                checks.push(Check::new(
                    "hostile name refused with INVALID_NAME, connection kept",
                    outcome.refused == Some(ErrorCode::INVALID_NAME) && outcome.alive,
                    format!(
                        "{label}: {}, connection {}",
                        outcome.text,
                        if outcome.alive { "kept" } else { "lost" }
                    ),
                ));
            }
        }
        if first_pass {
            // Control: a plain name is accepted.
            let outcome = try_name(addr, tls.clone(), "plain.txt").await;
            checks.push(Check::new(
                "a plain name is accepted",
                outcome.accepted && outcome.alive,
                outcome.text,
            ));
            // An NFD name of 300 bytes whose NFC form (what the server stores) is 200 bytes.
            let nfd = "e\u{0301}".repeat(100);
            let mut client = Client::new(scenario.options(MALLORY));
            let result = client.upload_stream(&nfd, 1, &b"x"[..], &mut |_| {}).await;
            client.close().await;
            checks.push(Check::new(
                "the client sends an NFD name whose NFC form fits",
                result.is_ok(),
                match &result {
                    Ok(report) => format!("stored as {} bytes", report.name.len()),
                    Err(e) => e.to_string(),
                },
            ));
            notes.push("each name on a fresh connection of `mallory` (OpenUpload of 1 byte), then a List to see the connection answer".into());
            first_pass = false;
        }
        if tokio::time::Instant::now() >= scenario.deadline() {
            break;
        }
    }
    scenario.finish(Figures {
        attack_ops: sent,
        unit: "name",
        checks,
        notes,
        ..Figures::default()
    })
}
