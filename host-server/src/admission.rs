//! Admission before authentication: which new TCP connections may start a TLS handshake.
//!
//! Connections that have not authenticated yet cost the server a task, a socket and a
//! handshake, and anyone can open them. They get a budget of their own, apart from the
//! authenticated sessions, as sshd's `MaxStartups` and nginx's `limit_conn` do:
//!
//! - at most `max_handshakes` at once;
//! - at most `per_source` from one source address (IPv6 addresses count per /64, which is
//!   what one host or one customer usually holds);
//! - random early drop: once [`EARLY_DROP_START`] of the budget is taken, a new connection is
//!   dropped with a probability rising linearly from [`EARLY_DROP_RATE`] to 1 when the
//!   budget is full (sshd's `start:rate:full`), so a flood cannot hold every slot while
//!   honest clients still get some.
//!
//! A [`Permit`] holds the connection's place until it drops (the handshake ended).
//! [`RefusalLog`] keeps the log of refusals short under a flood.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::RefusedReason;
use ferry_tokio::source::Source;

/// The share of the handshake budget above which random early drop begins.
pub const EARLY_DROP_START: f64 = 0.5;
/// The drop probability when early drop begins; it rises linearly to 1 at a full budget.
pub const EARLY_DROP_RATE: f64 = 0.3;

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The source has `per_source` handshakes running.
    PerSource,
    /// `max_handshakes` handshakes are running.
    BudgetFull,
    /// Dropped at random while the budget fills up.
    EarlyDrop,
}

impl Refusal {
    /// The metrics label.
    pub fn reason(self) -> RefusedReason {
        match self {
            Refusal::PerSource => RefusedReason::handshake_per_source,
            Refusal::BudgetFull => RefusedReason::handshake_budget,
            Refusal::EarlyDrop => RefusedReason::early_drop,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Refusal::PerSource => {
                "too many handshakes from this source (--max-handshakes-per-source)"
            }
            Refusal::BudgetFull => "too many handshakes running (--max-handshakes)",
            Refusal::EarlyDrop => "dropped at random, the handshake budget is filling up",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_source: HashMap<Source, usize>,
}

/// The pre-authentication budget.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    per_source: usize,
    counts: Mutex<Counts>,
}

/// A place in the budget, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    source: Source,
}

impl Admission {
    /// A budget of `max` handshakes, at most `per_source` of them from one source.
    pub fn new(max: usize, per_source: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max: max.max(1),
            per_source: per_source.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// The probability that a new connection is dropped at random while `running`
    /// handshakes are under way: 0 below the start of early drop, then from
    /// [`EARLY_DROP_RATE`] rising linearly to 1 at a full budget.
    pub fn drop_probability(&self, running: usize) -> f64 {
        let start = ((self.max as f64) * EARLY_DROP_START).floor() as usize;
        if running < start.max(1) || self.max <= 1 {
            return 0.0;
        }
        if running >= self.max {
            return 1.0;
        }
        let span = (self.max - start) as f64;
        let past = (running - start) as f64;
        EARLY_DROP_RATE + (1.0 - EARLY_DROP_RATE) * past / span
    }

    /// Lets a connection from `ip` in, or says why not. `roll` is a uniform random number
    /// in `[0, 1)` for early drop.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, roll: f64) -> Result<Permit, Refusal> {
        let source = Source::of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.max {
            return Err(Refusal::BudgetFull);
        }
        if counts.by_source.get(&source).copied().unwrap_or(0) >= self.per_source {
            return Err(Refusal::PerSource);
        }
        if roll < self.drop_probability(counts.total) {
            return Err(Refusal::EarlyDrop);
        }
        counts.total += 1;
        *counts.by_source.entry(source).or_default() += 1;
        Ok(Permit {
            admission: self.clone(),
            source,
        })
    }

    /// Handshakes running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                counts.by_source.remove(&self.source);
            }
        }
    }
}

/// How often the refusal summary is written, and how long one source's refusal of one kind
/// is logged only once.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Sources remembered per interval for the once-per-source rule; past this many, refusals
/// are only counted (a flood from many addresses cannot grow the map without bound).
const REMEMBERED_SOURCES: usize = 1024;

/// Why a connection was turned away, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Turnaway {
    /// Not let in to the handshake.
    Refused(Refusal),
    /// The TLS handshake did not finish in time.
    TimedOut,
    /// Authenticated, told BUSY: its identity has `--max-connections-per-identity` open.
    IdentityFull,
    /// Authenticated, told BUSY: `--max-connections` sessions are open.
    SessionsFull,
    /// `--proxy-protocol`: the TCP peer is not inside `--proxy-from`.
    UntrustedProxy,
    /// `--proxy-protocol`: no valid PROXY v2 header in time.
    ProxyHeader,
}

/// Rate-limited refusal logging: at most one line per kind per source per interval, then a
/// summary line per interval with the counts. The metrics count every refusal exactly;
/// this only keeps the log readable (and small) under a flood.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    started: Instant,
    logged: HashSet<(Source, Turnaway)>,
    per_source: u64,
    budget: u64,
    early: u64,
    timed_out: u64,
    busy: u64,
    proxy: u64,
}

impl RefusalLog {
    /// A log summarising every `interval`.
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            started: Instant::now(),
            logged: HashSet::new(),
            per_source: 0,
            budget: 0,
            early: 0,
            timed_out: 0,
            busy: 0,
            proxy: 0,
        }
    }

    /// Counts `what` from `peer` (`who`: the client's name, once authenticated); returns the
    /// line to log, if this is the first of its kind from that source in this interval.
    pub fn note(&mut self, peer: SocketAddr, what: Turnaway, who: Option<&str>) -> Option<String> {
        match what {
            Turnaway::Refused(Refusal::PerSource) => self.per_source += 1,
            Turnaway::Refused(Refusal::BudgetFull) => self.budget += 1,
            Turnaway::Refused(Refusal::EarlyDrop) => self.early += 1,
            Turnaway::TimedOut => self.timed_out += 1,
            Turnaway::IdentityFull | Turnaway::SessionsFull => self.busy += 1,
            Turnaway::UntrustedProxy | Turnaway::ProxyHeader => self.proxy += 1,
        }
        let key = (Source::of(peer.ip()), what);
        if self.logged.contains(&key) || self.logged.len() >= REMEMBERED_SOURCES {
            return None;
        }
        self.logged.insert(key);
        let who = who.map(|name| format!(" {name}")).unwrap_or_default();
        let text = match what {
            Turnaway::Refused(refusal) => format!(
                "{peer}: refused before the handshake: {}",
                refusal.describe()
            ),
            Turnaway::TimedOut => format!("{peer}: TLS handshake timed out"),
            Turnaway::IdentityFull => format!(
                "{peer}{who}: told BUSY, this identity has all its connections open \
                 (--max-connections-per-identity)"
            ),
            Turnaway::SessionsFull => format!(
                "{peer}{who}: told BUSY, the server has all its sessions open (--max-connections)"
            ),
            Turnaway::UntrustedProxy => format!(
                "{peer}: refused, not a balancer allowed to send PROXY headers (--proxy-from)"
            ),
            Turnaway::ProxyHeader => {
                format!("{peer}: refused, no valid PROXY v2 header (--proxy-protocol)")
            }
        };
        Some(format!(
            "{text} (more from {} this {} s are counted, not logged)",
            key.0,
            self.interval.as_secs()
        ))
    }

    /// The summary of the interval just ended, if anything happened in it and the interval
    /// is over; starts the next interval.
    pub fn summary(&mut self, now: Instant) -> Option<String> {
        if now.duration_since(self.started) < self.interval {
            return None;
        }
        self.started = now;
        self.logged.clear();
        let refused = self.per_source + self.budget + self.early;
        let line = (refused + self.timed_out + self.busy + self.proxy > 0).then(|| {
            let proxy = match self.proxy {
                0 => String::new(),
                n => format!("; {n} connections without a valid PROXY header or balancer"),
            };
            format!(
                "refused {refused} handshakes in the last {} s: {} per-source cap, {} budget full, \
                 {} early drop; {} handshakes timed out; {} authenticated connections told BUSY{proxy}",
                self.interval.as_secs(),
                self.per_source,
                self.budget,
                self.early,
                self.timed_out,
                self.busy
            )
        });
        self.per_source = 0;
        self.budget = 0;
        self.early = 0;
        self.timed_out = 0;
        self.busy = 0;
        self.proxy = 0;
        line
    }
}

/// A shared [`RefusalLog`].
pub type SharedRefusalLog = Arc<Mutex<RefusalLog>>;

/// Notes `what` in `log` and writes its line, if it gets one.
pub fn log_turnaway(log: &SharedRefusalLog, peer: SocketAddr, what: Turnaway, who: Option<&str>) {
    let line = log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .note(peer, what, who);
    if let Some(line) = line {
        tracing::info!(peer = %peer, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn per_source_cap_holds_and_frees() {
        let admission = Admission::new(64, 2);
        let a = admission.admit(ip("10.0.0.1"), 0.99).unwrap();
        let _b = admission.admit(ip("10.0.0.1"), 0.99).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1"), 0.99).unwrap_err(),
            Refusal::PerSource
        );
        // Another source is not affected.
        let _c = admission.admit(ip("10.0.0.2"), 0.99).unwrap();
        assert_eq!(admission.running(), 3);
        drop(a);
        assert_eq!(admission.running(), 2);
        admission.admit(ip("10.0.0.1"), 0.99).unwrap();
    }

    #[test]
    fn ipv6_counts_per_64() {
        let admission = Admission::new(64, 2);
        let _a = admission.admit(ip("2001:db8::1"), 0.99).unwrap();
        let _b = admission.admit(ip("2001:db8::2"), 0.99).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8::3"), 0.99).unwrap_err(),
            Refusal::PerSource
        );
        admission.admit(ip("2001:db8:0:1::3"), 0.99).unwrap();
    }

    #[test]
    fn budget_is_a_hard_limit() {
        let admission = Admission::new(4, 100);
        // A roll of 0.999.. passes early drop until the budget is full.
        let held: Vec<_> = (0..4)
            .map(|i| {
                admission
                    .admit(ip(&format!("10.0.1.{i}")), 0.999_999)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            admission.admit(ip("10.0.2.1"), 0.999_999).unwrap_err(),
            Refusal::BudgetFull
        );
        drop(held);
        assert_eq!(admission.running(), 0);
    }

    #[test]
    fn early_drop_probability_bounds() {
        let admission = Admission::new(64, 8);
        assert_eq!(admission.drop_probability(0), 0.0);
        assert_eq!(admission.drop_probability(31), 0.0);
        assert_eq!(admission.drop_probability(32), EARLY_DROP_RATE);
        assert_eq!(admission.drop_probability(64), 1.0);
        let mut last = 0.0;
        for running in 0..=64 {
            let p = admission.drop_probability(running);
            assert!((0.0..=1.0).contains(&p), "{running}: {p}");
            assert!(p >= last, "not monotonic at {running}");
            last = p;
        }
        assert!(admission.drop_probability(63) < 1.0);
        assert!(admission.drop_probability(48) > 0.6 && admission.drop_probability(48) < 0.7);
        // A budget of one never drops at random: it is full or empty.
        assert_eq!(Admission::new(1, 1).drop_probability(0), 0.0);
    }

    #[test]
    fn early_drop_uses_the_roll() {
        let admission = Admission::new(4, 100);
        let _a = admission.admit(ip("10.0.0.1"), 0.0).unwrap();
        let _b = admission.admit(ip("10.0.0.2"), 0.0).unwrap();
        // Half the budget taken: p = 0.3.
        assert_eq!(
            admission.admit(ip("10.0.0.3"), 0.29).unwrap_err(),
            Refusal::EarlyDrop
        );
        admission.admit(ip("10.0.0.3"), 0.31).unwrap();
    }

    #[test]
    fn early_drop_rate_is_near_its_probability() {
        // With real random rolls, about 30% of arrivals at half the budget are dropped.
        let admission = Admission::new(64, 100);
        let _held: Vec<_> = (0..32)
            .map(|i| admission.admit(ip(&format!("10.0.3.{i}")), 1.0).unwrap())
            .collect();
        let mut rng = fastrand::Rng::with_seed(7);
        let dropped = (0..10_000)
            .filter(|_| admission.admit(ip("10.0.4.1"), rng.f64()).is_err())
            .count();
        assert!((2_700..3_300).contains(&dropped), "{dropped}");
    }

    #[test]
    fn refusal_log_is_once_per_source_and_kind_then_summarised() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let peer: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let other: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let per_source = Turnaway::Refused(Refusal::PerSource);
        assert!(log.note(peer, per_source, None).is_some());
        for _ in 0..1000 {
            assert!(log.note(peer, per_source, None).is_none());
        }
        assert!(log
            .note(peer, Turnaway::Refused(Refusal::EarlyDrop), None)
            .is_some());
        assert!(log.note(other, per_source, None).is_some());
        assert!(log.note(peer, Turnaway::TimedOut, None).is_some());
        assert!(log
            .note(peer, Turnaway::IdentityFull, Some("mallory"))
            .unwrap()
            .contains("mallory"));
        assert!(log
            .note(peer, Turnaway::IdentityFull, Some("mallory"))
            .is_none());
        assert!(log.summary(Instant::now()).is_none(), "too early");
        let later = Instant::now() + Duration::from_secs(11);
        let summary = log.summary(later).unwrap();
        assert_eq!(
            summary,
            "refused 1003 handshakes in the last 10 s: 1002 per-source cap, 0 budget full, \
             1 early drop; 1 handshakes timed out; 2 authenticated connections told BUSY"
        );
        // A new interval logs again, and a quiet one writes no summary.
        assert!(log.note(peer, per_source, None).is_some());
        let _ = log.summary(later + Duration::from_secs(11));
        assert!(log.summary(later + Duration::from_secs(22)).is_none());
    }
}
