//! Limits per source address: new identities and wrong access tokens are rate-limited
//! (`governor`'s keyed GCRA buckets), connections are counted per source and in total, and
//! every refusal is counted for `/metrics`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Wrong access-token guesses a source may make at once before it is slowed down.
const TOKEN_GUESS_BURST: u32 = 5;
/// Then one more guess per this period.
const TOKEN_GUESS_PERIOD: Duration = Duration::from_secs(10);

/// The address a request or connection comes from, set by the connection loop as a request
/// extension.
pub(crate) use ferry_tokio::source::Source;

/// Refusals and evictions, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// New identities refused: the source made too many (429).
    pub identity_rate_limited: AtomicU64,
    /// New identities refused: every session slot in use (503).
    pub sessions_full: AtomicU64,
    /// Requests refused because the source guessed wrong tokens too often (429).
    pub token_slowdown: AtomicU64,
    /// Connections closed at once: too many from the source, or in total.
    pub connections_refused: AtomicU64,
    /// Downloads refused: the scratch space was taken (503).
    pub scratch_full: AtomicU64,
    /// Downloads cut because the browser read nothing for the send timeout.
    pub send_timeouts: AtomicU64,
}

impl Refusals {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A keyed bucket: `per_minute` events per source, `burst` at once.
fn keyed(per_minute: u32, burst: u32) -> DefaultKeyedRateLimiter<Source> {
    let per_minute = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
}

/// The rate limits of the page.
pub(crate) struct Limits {
    identities: DefaultKeyedRateLimiter<Source>,
    wrong_tokens: DefaultKeyedRateLimiter<Source>,
    /// Sources whose token guesses are refused unread until the instant.
    slowed: Mutex<HashMap<Source, Instant>>,
    clock: DefaultClock,
    pub refusals: Arc<Refusals>,
}

impl Limits {
    pub(crate) fn new(identities_per_minute: u32, identity_burst: u32) -> Limits {
        let guesses_per_minute = (60 / TOKEN_GUESS_PERIOD.as_secs()) as u32;
        Limits {
            identities: keyed(identities_per_minute, identity_burst),
            wrong_tokens: keyed(guesses_per_minute, TOKEN_GUESS_BURST),
            slowed: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
            refusals: Arc::default(),
        }
    }

    /// Takes one new identity from `source`'s bucket; `Err(wait)` when it is empty.
    pub(crate) fn new_identity(&self, source: Source) -> Result<(), Duration> {
        self.identities.check_key(&source).map_err(|not_until| {
            Refusals::count(&self.refusals.identity_rate_limited);
            not_until.wait_time_from(self.clock.now())
        })
    }

    /// Whether `source` must wait before its next token is even compared (`Err(wait)`).
    pub(crate) fn token_allowed(&self, source: Source) -> Result<(), Duration> {
        let mut slowed = self.slowed.lock().expect("limits lock");
        match slowed.get(&source) {
            Some(until) if *until > Instant::now() => {
                Refusals::count(&self.refusals.token_slowdown);
                Err(*until - Instant::now())
            }
            Some(_) => {
                slowed.remove(&source);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Notes a wrong token from `source`; `Err(wait)` once it guessed too often.
    pub(crate) fn wrong_token(&self, source: Source) -> Result<(), Duration> {
        self.wrong_tokens.check_key(&source).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            self.slowed
                .lock()
                .expect("limits lock")
                .insert(source, Instant::now() + wait);
            Refusals::count(&self.refusals.token_slowdown);
            wait
        })
    }

    /// Forgets sources whose buckets are full again (run now and then).
    pub(crate) fn forget_quiet_sources(&self) {
        self.identities.retain_recent();
        self.wrong_tokens.retain_recent();
        let now = Instant::now();
        self.slowed
            .lock()
            .expect("limits lock")
            .retain(|_, until| *until > now);
    }
}

/// Open connections, per source and in total.
pub(crate) struct Connections {
    open: Mutex<HashMap<Source, usize>>,
    total: AtomicU64,
    max_total: usize,
    max_per_source: usize,
}

/// One counted connection; uncounted when dropped.
pub(crate) struct ConnectionSlot {
    connections: Arc<Connections>,
    source: Source,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().expect("connections lock");
        if let Some(n) = open.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.source);
            }
        }
        self.connections.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionRefusal {
    /// `max_per_source` connections from this source are open.
    PerSource(usize),
    /// `max_total` connections are open.
    Total(usize),
}

impl Connections {
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> Arc<Connections> {
        Arc::new(Connections {
            open: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            max_total,
            max_per_source,
        })
    }

    /// Counts a connection from `source`, unless a cap is reached.
    pub(crate) fn admit(
        self: &Arc<Self>,
        source: Source,
    ) -> Result<ConnectionSlot, ConnectionRefusal> {
        let mut open = self.open.lock().expect("connections lock");
        if self.total.load(Ordering::Relaxed) as usize >= self.max_total {
            return Err(ConnectionRefusal::Total(self.max_total));
        }
        let n = open.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(ConnectionRefusal::PerSource(self.max_per_source));
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionSlot {
            connections: self.clone(),
            source,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_source_and_in_total() {
        let connections = Connections::new(3, 2);
        let one = Source::of("10.0.0.1".parse().unwrap());
        let two = Source::of("10.0.0.2".parse().unwrap());
        let a = connections.admit(one).unwrap();
        let _b = connections.admit(one).unwrap();
        assert_eq!(
            connections.admit(one).err(),
            Some(ConnectionRefusal::PerSource(2))
        );
        let _c = connections.admit(two).unwrap();
        assert_eq!(
            connections.admit(two).err(),
            Some(ConnectionRefusal::Total(3))
        );
        drop(a);
        assert_eq!(connections.open(), 2);
        assert!(connections.admit(one).is_ok());
    }

    #[test]
    fn wrong_tokens_slow_a_source_down() {
        let limits = Limits::new(10, 20);
        let me = Source::of("10.0.0.1".parse().unwrap());
        let other = Source::of("10.0.0.2".parse().unwrap());
        for _ in 0..TOKEN_GUESS_BURST {
            assert!(limits.token_allowed(me).is_ok());
            assert!(limits.wrong_token(me).is_ok());
        }
        let wait = limits.wrong_token(me).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= TOKEN_GUESS_PERIOD,
            "{wait:?}"
        );
        assert!(limits.token_allowed(me).is_err());
        assert!(limits.token_allowed(other).is_ok());
    }

    #[test]
    fn new_identities_are_rate_limited_per_source() {
        let limits = Limits::new(10, 2);
        let me = Source::of("10.0.0.1".parse().unwrap());
        assert!(limits.new_identity(me).is_ok());
        assert!(limits.new_identity(me).is_ok());
        assert!(limits.new_identity(me).is_err());
        assert!(limits
            .new_identity(Source::of("10.0.0.2".parse().unwrap()))
            .is_ok());
        assert_eq!(
            limits
                .refusals
                .identity_rate_limited
                .load(Ordering::Relaxed),
            1
        );
    }
}
