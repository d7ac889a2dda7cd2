//! MPS2 with the AN386 FPGA image (Cortex-M4F), as `qemu-system-arm -M
//! mps2-an386` emulates it. Chosen over `netduinoplus2` (an STM32F405, closer
//! to the STM32F407) because the image needs 256 KiB beside its own RAM for
//! the download slot and the held-chunk record and QEMU's STM32F405 has
//! 128 KiB of RAM, read-only flash and no RNG; the AN386 has 4 MiB of RAM and
//! five CMSDK UARTs, so UART0 carries the TLS stream (`-serial tcp:`) and
//! UART1 the device's report.
//!
//! - Storage: two 128 KiB regions of RAM that the image never initialises stand
//!   in for the STM32's flash sectors 10 and 11; RAM keeps its contents across
//!   a reset (QEMU's `system_reset` reloads only the image), as flash does
//!   across a power cycle. Erase and program keep NOR semantics.
//! - Entropy: the board has no RNG. The runner writes 32 fresh random bytes per
//!   emulator start to `SEED` (`-device loader`); the image hashes them with
//!   the boot number into a SHA-256 counter-mode generator, so every boot,
//!   resets included, draws different keys. An absent seed (all zeroes) stops
//!   the device.
//! - The run's verdict ends the emulator through semihosting.

use core::ptr::{read_volatile, write_volatile};

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use super::{FlashError, Sector, Serial};

pub const NAME: &str = "mps2-an386";
/// SysTick's processor clock on QEMU's MPS2 (25 MHz).
pub const CORE_HZ: u32 = 25_000_000;

pub const SECTOR_LEN: u32 = 128 * 1024;
/// The download slot (the STM32 image's sector 10).
pub const STAGING: Sector = Sector {
    number: 10,
    base: 0x2010_0000,
};
/// The held-chunk record (the STM32 image's sector 11).
pub const RECORD: Sector = Sector {
    number: 11,
    base: 0x2012_0000,
};
/// Where the runner places the per-boot seed (32 bytes).
const SEED: u32 = 0x2014_0000;

const UART0: u32 = 0x4000_4000;
const UART1: u32 = 0x4000_5000;
const DATA: u32 = 0x0;
const STATE: u32 = 0x4;
const CTRL: u32 = 0x8;
const BAUDDIV: u32 = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_RX: u32 = 0b11;

/// A CMSDK APB UART at this base address.
#[derive(Default)]
pub struct Cmsdk<const BASE: u32>;

impl<const BASE: u32> Cmsdk<BASE> {
    fn enable() -> Self {
        // SAFETY: the UART's registers on the MPS2; volatile MMIO access.
        unsafe {
            write_volatile((BASE + BAUDDIV) as *mut u32, 16);
            write_volatile((BASE + CTRL) as *mut u32, CTRL_TX_RX);
        }
        Self
    }
}

impl<const BASE: u32> Serial for Cmsdk<BASE> {
    fn read_byte(&mut self) -> Option<u8> {
        // SAFETY: as above.
        unsafe {
            if read_volatile((BASE + STATE) as *const u32) & STATE_RX_FULL == 0 {
                return None;
            }
            Some(read_volatile((BASE + DATA) as *const u32) as u8)
        }
    }

    fn write_byte(&mut self, byte: u8) {
        // SAFETY: as above.
        unsafe {
            while read_volatile((BASE + STATE) as *const u32) & STATE_TX_FULL != 0 {}
            write_volatile((BASE + DATA) as *mut u32, u32::from(byte));
        }
    }
}

pub type LinkUart = Cmsdk<UART0>;
pub type ReportUart = Cmsdk<UART1>;

/// SHA-256 in counter mode over (seed, boot number).
pub struct Rng {
    key: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl Rng {
    fn from_seed(boot: u32) -> Option<Self> {
        let mut seed = [0u8; 32];
        read(SEED, &mut seed);
        if seed.iter().all(|&b| b == 0) {
            return None;
        }
        let key = Sha256::new()
            .chain_update(b"ferry mps2-an386 seed")
            .chain_update(seed)
            .chain_update(boot.to_le_bytes())
            .finalize()
            .into();
        Some(Self {
            key,
            counter: 0,
            block: [0; 32],
            used: 32,
        })
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        let mut word = [0; 4];
        self.fill_bytes(&mut word);
        u32::from_le_bytes(word)
    }
    fn next_u64(&mut self) -> u64 {
        let mut word = [0; 8];
        self.fill_bytes(&mut word);
        u64::from_le_bytes(word)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.block.len() {
                self.block = Sha256::new()
                    .chain_update(self.key)
                    .chain_update(self.counter.to_le_bytes())
                    .finalize()
                    .into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Rng {}

/// The UARTs and the entropy source; `None` without a seed from the host.
pub fn init(boot: u32) -> (LinkUart, ReportUart, Option<Rng>) {
    (Cmsdk::enable(), Cmsdk::enable(), Rng::from_seed(boot))
}

pub fn erase(sector: Sector) -> Result<(), FlashError> {
    for offset in (0..SECTOR_LEN).step_by(4) {
        // SAFETY: the sector lies in RAM no Rust object occupies (memory.x).
        unsafe { write_volatile((sector.base + offset) as *mut u32, u32::MAX) };
    }
    Ok(())
}

/// Programs `data` at `address` as NOR flash does: bits only go from 1 to 0.
pub fn program(address: u32, data: &[u8]) -> Result<(), FlashError> {
    for (i, &byte) in data.iter().enumerate() {
        let at = (address as usize + i) as *mut u8;
        // SAFETY: as in `erase`.
        unsafe {
            write_volatile(at, read_volatile(at) & byte);
            if read_volatile(at) != byte {
                return Err(FlashError::Program);
            }
        }
    }
    Ok(())
}

pub fn read(address: u32, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        // SAFETY: as in `erase` (and the seed's place).
        *byte = unsafe { read_volatile((address as usize + i) as *const u8) };
    }
}

/// Ends the emulator: exit status 0 if the run passed, 1 if not.
pub fn finish(passed: bool) -> ! {
    use cortex_m_semihosting::debug;
    debug::exit(if passed {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}
