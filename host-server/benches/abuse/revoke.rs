//! 5: a connection opened before its certificate is revoked keeps listing and uploading
//! after the CRL reload; is it ended, and how long after?

use std::time::{Duration, Instant};

use ferry_certs::CertDir;
use ferry_tokio::client::Client;
use rustix::process::Signal;

use super::report::{Check, Figures, Row};
use super::server::ServerSpec;
use super::{Config, Honesty, Setup};

pub const REVOCATION: &str = "5 revocation";

const BOB: &str = "bob";
/// Pause between two of bob's requests.
const PAUSE: Duration = Duration::from_millis(250);

pub async fn revocation(cfg: &Config) -> Row {
    let setup = Setup::new(REVOCATION, &[BOB]);
    let scenario = setup.start(cfg, ServerSpec::default(), Honesty::Protocol);
    // No reconnection: an operation that fails means the connection was ended.
    let mut options = scenario.options(BOB);
    options.retries = 0;
    let mut bob = Client::connect(options.clone())
        .await
        .expect("bob connects before the revocation");
    bob.list().await.expect("bob lists before the revocation");
    CertDir::new(&scenario.server.certs)
        .revoke(BOB)
        .expect("ferry-certs revoke bob");
    // The server reloads on SIGHUP (and on its own when it sees the file change).
    scenario.server.signal(Signal::HUP);
    let revoked = Instant::now();
    let mut requests = 0u64;
    let mut succeeded_after = 0u64;
    let mut ended: Option<(Duration, String)> = None;
    while tokio::time::Instant::now() < scenario.deadline() && ended.is_none() {
        let result = if requests.is_multiple_of(2) {
            bob.list().await.map(drop)
        } else {
            bob.upload_stream(&format!("after-{requests}"), 1, &b"x"[..], &mut |_| {})
                .await
                .map(drop)
        };
        requests += 1;
        match result {
            Ok(()) => succeeded_after += 1,
            Err(e) => ended = Some((revoked.elapsed(), e.to_string())),
        }
        tokio::time::sleep(PAUSE).await;
    }
    let revoked_for = revoked.elapsed();
    bob.close().await;
    let reconnect = Client::connect(options).await;
    scenario.wait_out().await;
    let checks = vec![
        Check::new(
            "the revoked connection is ended",
            ended.is_some(),
            match &ended {
                Some((after, why)) => format!(
                    "ended {:.1} s after the revocation ({succeeded_after} requests succeeded first): {why}",
                    after.as_secs_f64()
                ),
                None => format!(
                    "still working {:.1} s after the revocation: {succeeded_after} of {requests} requests succeeded",
                    revoked_for.as_secs_f64()
                ),
            },
        ),
        Check::new(
            "a new connection of the revoked client is refused",
            reconnect.is_err(),
            match &reconnect {
                Ok(_) => "connected".to_string(),
                Err(e) => e.to_string(),
            },
        ),
    ];
    scenario.finish(Figures {
        attack_ops: requests,
        unit: "request",
        checks,
        notes: vec![
            "`bob` connects and lists, `ferry-certs revoke bob` (library) and SIGHUP, then bob lists and uploads every 250 ms on the same connection".into(),
        ],
        ..Figures::default()
    })
}
