//! Milliseconds since boot from SysTick (1 kHz interrupt), on every board.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Starts the millisecond tick from the processor clock `core_hz`.
pub fn start(mut syst: SYST, core_hz: u32) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(core_hz / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since [`start`] (wraps after 49 days).
pub fn now() -> u64 {
    u64::from(MILLIS.load(Ordering::Relaxed))
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// The core's clock.
pub struct Millis;

impl ferry_core::blocking::Clock for Millis {
    fn now(&mut self) -> u64 {
        now()
    }
}
