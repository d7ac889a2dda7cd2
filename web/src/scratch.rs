//! The scratch space of downloads: a download is staged whole (the browser gets bytes only
//! once the Ferry client verified the file), so the bytes staged at once are counted against
//! a cap, and a staged file is released when the browser stops reading for the send timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes staged at once, at most.
#[derive(Debug)]
pub(crate) struct ScratchBudget {
    cap: u64,
    used: AtomicU64,
}

/// Bytes of one staged download; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<ScratchBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl ScratchBudget {
    pub(crate) fn new(cap: u64) -> Arc<ScratchBudget> {
        Arc::new(ScratchBudget {
            cap,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes staged now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Whether nothing more fits now.
    pub(crate) fn is_full(&self) -> bool {
        self.used() >= self.cap
    }

    /// Counts `bytes` staged already, whether they fit or not.
    pub(crate) fn charge(self: &Arc<Self>, bytes: u64) -> Reservation {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }

    /// Reserves `bytes`, if they fit under the cap. A file larger than the whole cap is
    /// staged only while nothing else is, so that it can be downloaded at all.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let fits = used
                    .checked_add(bytes)
                    .is_some_and(|total| total <= self.cap);
                (fits || used == 0).then(|| used.saturating_add(bytes))
            })
            .ok()
            .map(|_| Reservation {
                budget: self.clone(),
                bytes,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_capped_and_given_back() {
        let budget = ScratchBudget::new(100);
        let a = budget.reserve(60).unwrap();
        assert!(budget.reserve(50).is_none());
        let b = budget.reserve(40).unwrap();
        assert!(budget.is_full());
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        // Larger than the cap: only alone.
        let big = budget.reserve(500).unwrap();
        assert!(budget.reserve(1).is_none());
        drop(big);
        assert_eq!(budget.used(), 0);
    }
}
