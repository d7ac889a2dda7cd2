//! Waiting out a server that refuses a connection for capacity.
//!
//! A server answers an authenticated connection it has no room for with `BUSY` on seq 0
//! and a retry-after (see [`ferry_core::wire::RETRY_AFTER`]), and drops connections it
//! has no room to authenticate, which the client sees as the connection closed or reset
//! during the TLS handshake. Both are retried a bounded number of times, with exponential
//! backoff and full jitter (a wait drawn uniformly up to a doubling ceiling, so that
//! clients refused together do not come back together), never shorter than the
//! retry-after. A certificate refusal (a TLS alert) is never retried.
//!
//! Not `backon`, which the reconnection loop uses: its jitter adds up to one first delay
//! to each wait instead of drawing the whole wait, and it has no notion of a server's
//! retry-after; the loop here is a few lines over `fastrand`.

use std::io;
use std::time::{Duration, Instant};

use ferry_core::{retry_after_secs, ErrorCode};

use crate::client::error::ClientError;

/// Connection attempts at most when the server refuses for capacity.
pub const CAPACITY_ATTEMPTS: u32 = 5;
/// The time those attempts may take together, waits included.
pub const CAPACITY_BUDGET: Duration = Duration::from_secs(30);
/// The ceiling of the first wait; it doubles per attempt up to [`CAPACITY_LONGEST_WAIT`].
const FIRST_CEILING: Duration = Duration::from_millis(500);
/// The highest ceiling of a wait drawn at random (a retry-after may ask for longer).
pub const CAPACITY_LONGEST_WAIT: Duration = Duration::from_secs(8);

/// Whether `error` (from opening a connection) is a refusal for capacity, and the
/// retry-after the server asked for, if any.
pub(crate) fn capacity_refusal(error: &ClientError) -> Option<Option<Duration>> {
    match error {
        ClientError::Refused { code, text } if *code == ErrorCode::BUSY => {
            Some(retry_after_secs(text).map(|secs| Duration::from_secs(secs.into())))
        }
        ClientError::Connect { cause, .. } if closed_early(cause.kind()) => Some(None),
        _ => None,
    }
}

/// A connection closed or reset by the server after it was accepted: a TCP connect that
/// is refused or times out is not this.
fn closed_early(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
    )
}

/// The waits between attempts refused for capacity.
pub(crate) struct CapacityBackoff {
    attempts: u32,
    started: Instant,
    rng: fastrand::Rng,
}

impl CapacityBackoff {
    /// A schedule starting now.
    pub fn new() -> CapacityBackoff {
        CapacityBackoff::with_rng(fastrand::Rng::new())
    }

    fn with_rng(rng: fastrand::Rng) -> CapacityBackoff {
        CapacityBackoff {
            attempts: 0,
            started: Instant::now(),
            rng,
        }
    }

    /// Attempts refused so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the first attempt.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts a refused attempt; the wait before the next one, or `None` when the attempts
    /// or the time are used up.
    pub fn next_wait(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.attempts += 1;
        if self.attempts >= CAPACITY_ATTEMPTS {
            return None;
        }
        let ceiling = FIRST_CEILING
            .saturating_mul(1 << (self.attempts - 1).min(16))
            .min(CAPACITY_LONGEST_WAIT);
        let drawn = ceiling.mul_f64(self.rng.f64());
        let wait = drawn.max(retry_after.unwrap_or_default());
        (self.started.elapsed() + wait <= CAPACITY_BUDGET).then_some(wait)
    }
}

/// The error to give up with after the last refused attempt.
pub(crate) fn given_up(error: ClientError, server: &str, backoff: &CapacityBackoff) -> ClientError {
    let tried = format!(
        "gave up after {} attempt(s) in {:.1} s",
        backoff.attempts(),
        backoff.elapsed().as_secs_f64()
    );
    match error {
        ClientError::Refused { code, text } => ClientError::Refused {
            code,
            text: if text.is_empty() {
                format!("the server is at capacity; {tried}")
            } else {
                format!("{text}; {tried}")
            },
        },
        ClientError::Connect { cause, .. } => ClientError::Interrupted {
            server: server.to_string(),
            attempts: backoff.attempts(),
            reason: format!(
                "the server closed the connection during the TLS handshake \
                 (it may be at capacity): {cause}; {tried}"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(text: &str) -> ClientError {
        ClientError::Refused {
            code: ErrorCode::BUSY,
            text: text.into(),
        }
    }

    fn connect(kind: io::ErrorKind) -> ClientError {
        ClientError::Connect {
            server: "h:1".into(),
            cause: kind.into(),
        }
    }

    #[test]
    fn what_counts_as_a_capacity_refusal() {
        assert_eq!(
            capacity_refusal(&busy("full; retry-after=3")),
            Some(Some(Duration::from_secs(3)))
        );
        assert_eq!(capacity_refusal(&busy("full")), Some(None));
        assert_eq!(
            capacity_refusal(&connect(io::ErrorKind::ConnectionReset)),
            Some(None)
        );
        assert_eq!(
            capacity_refusal(&connect(io::ErrorKind::UnexpectedEof)),
            Some(None)
        );
        // A server that is down, a certificate refused, another refusal: not retried here.
        assert_eq!(
            capacity_refusal(&connect(io::ErrorKind::ConnectionRefused)),
            None
        );
        let tls = ClientError::Tls {
            server: "h:1".into(),
            cause: rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
        };
        assert_eq!(capacity_refusal(&tls), None);
        let forbidden = ClientError::Refused {
            code: ErrorCode::FORBIDDEN,
            text: String::new(),
        };
        assert_eq!(capacity_refusal(&forbidden), None);
    }

    #[test]
    fn waits_are_bounded_jittered_and_honour_retry_after() {
        let mut backoff = CapacityBackoff::with_rng(fastrand::Rng::with_seed(1));
        let mut waits = Vec::new();
        while let Some(wait) = backoff.next_wait(None) {
            waits.push(wait);
        }
        assert_eq!(waits.len() as u32, CAPACITY_ATTEMPTS - 1);
        assert_eq!(backoff.attempts(), CAPACITY_ATTEMPTS);
        for (i, wait) in waits.iter().enumerate() {
            assert!(*wait <= FIRST_CEILING * (1 << i), "{i}: {wait:?}");
        }
        // Full jitter: the waits are not all the same fraction of their ceiling.
        let fractions: Vec<f64> = waits
            .iter()
            .enumerate()
            .map(|(i, w)| w.as_secs_f64() / (FIRST_CEILING * (1 << i)).as_secs_f64())
            .collect();
        assert!(
            fractions.windows(2).any(|f| (f[0] - f[1]).abs() > 0.01),
            "{fractions:?}"
        );
        let mut backoff = CapacityBackoff::with_rng(fastrand::Rng::with_seed(2));
        let wait = backoff.next_wait(Some(Duration::from_secs(2))).unwrap();
        assert!(wait >= Duration::from_secs(2));
        // A retry-after past the budget ends the schedule.
        let mut backoff = CapacityBackoff::with_rng(fastrand::Rng::with_seed(3));
        assert_eq!(backoff.next_wait(Some(Duration::from_secs(31))), None);
    }

    #[test]
    fn giving_up_says_so() {
        let mut backoff = CapacityBackoff::with_rng(fastrand::Rng::with_seed(4));
        backoff.next_wait(None);
        let error = given_up(busy("full; retry-after=1"), "h:1", &backoff);
        let text = error.to_string();
        assert!(text.contains("busy"), "{text}");
        assert!(text.contains("gave up after 1 attempt(s)"), "{text}");
        let error = given_up(connect(io::ErrorKind::ConnectionReset), "h:1", &backoff);
        assert_eq!(error.exit_code(), crate::client::exit::CONNECT);
        assert!(
            error.to_string().contains("during the TLS handshake"),
            "{error}"
        );
    }
}
