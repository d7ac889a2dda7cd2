//! The board layer: everything that differs between the boards the image runs
//! on. Each board module provides the same items:
//!
//! - `NAME`, `CORE_HZ` (the clock SysTick counts);
//! - `init(boot) -> (LinkUart, ReportUart, Option<Rng>)`: the UART to the server, the
//!   UART the device reports on, and the TLS entropy source (`None`: none to be had);
//! - the download storage: `SECTOR_LEN`, `STAGING`, `RECORD` and
//!   `erase`/`program`/`read` with NOR flash semantics (erase to 0xff,
//!   programming only clears bits);
//! - `finish(passed) -> !`: what the device does when its run is over.

#[cfg(not(any(feature = "stm32f407", feature = "mps2-an386")))]
compile_error!("choose a board: --features stm32f407 or --features mps2-an386");

#[cfg(all(feature = "stm32f407", not(feature = "mps2-an386")))]
mod stm32f407;
#[cfg(all(feature = "stm32f407", not(feature = "mps2-an386")))]
pub use stm32f407::*;

#[cfg(feature = "mps2-an386")]
mod mps2_an386;
#[cfg(feature = "mps2-an386")]
pub use mps2_an386::*;

/// A polled UART.
pub trait Serial {
    /// A received byte, if one is waiting.
    fn read_byte(&mut self) -> Option<u8>;
    /// Sends a byte (waits for room in the transmitter).
    fn write_byte(&mut self, byte: u8);
}

/// A flash sector (or its stand-in): number and base address.
#[derive(Debug, Clone, Copy)]
pub struct Sector {
    /// The flash controller erases by number (the STM32); the emulated board needs none.
    #[cfg_attr(feature = "mps2-an386", allow(dead_code))]
    pub number: u32,
    pub base: u32,
}

/// Why a storage operation failed.
#[derive(Debug, Clone, Copy)]
pub enum FlashError {
    /// The flash controller reported an error, or a programmed word reads back wrong.
    Program,
    /// The file or name does not fit the sector.
    TooLarge,
}
