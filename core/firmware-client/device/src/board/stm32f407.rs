//! An STM32F407xG (Cortex-M4F, 1 MiB flash, 128 KiB RAM) on its reset clock
//! (HSI, 16 MHz): USART1 (PA9/PA10) carries the byte stream to the server (a
//! modem in transparent mode, say), USART2 (PA2/PA3) the device's report, the
//! hardware RNG feeds TLS, and flash sectors 10 and 11 hold the download slot
//! and the held-chunk record. Built and measured; not yet run on a board (the
//! same application runs on the emulated MPS2, see `mps2_an386.rs`).

use core::ptr::{read_volatile, write_volatile};

use rand_core::{CryptoRng, RngCore};

use super::{FlashError, Sector, Serial};

pub const NAME: &str = "stm32f407";
/// HSI, the clock the part starts on (no PLL set up).
pub const CORE_HZ: u32 = 16_000_000;

pub const SECTOR_LEN: u32 = 128 * 1024;
/// Sector 10: the download slot.
pub const STAGING: Sector = Sector {
    number: 10,
    base: 0x080C_0000,
};
/// Sector 11: the held-chunk record.
pub const RECORD: Sector = Sector {
    number: 11,
    base: 0x080E_0000,
};

const RCC_AHB1ENR: *mut u32 = 0x4002_3830 as *mut u32;
const RCC_AHB2ENR: *mut u32 = 0x4002_3834 as *mut u32;
const RCC_APB1ENR: *mut u32 = 0x4002_3840 as *mut u32;
const RCC_APB2ENR: *mut u32 = 0x4002_3844 as *mut u32;
const GPIOA_MODER: *mut u32 = 0x4002_0000 as *mut u32;
const GPIOA_AFRL: *mut u32 = 0x4002_0020 as *mut u32;
const GPIOA_AFRH: *mut u32 = 0x4002_0024 as *mut u32;

const USART1: u32 = 0x4001_1000;
const USART2: u32 = 0x4000_4400;
const SR: u32 = 0x0;
const DR: u32 = 0x4;
const BRR: u32 = 0x8;
const CR1: u32 = 0xc;
const SR_RXNE: u32 = 1 << 5;
const SR_TXE: u32 = 1 << 7;
/// UE, TE, RE.
const CR1_ON: u32 = 1 << 13 | 1 << 3 | 1 << 2;
/// 115,200 baud from 16 MHz, oversampling by 16.
const BRR_115200: u32 = 0x8b;

/// A USART at this base address, polled.
#[derive(Default)]
pub struct Usart<const BASE: u32>;

impl<const BASE: u32> Usart<BASE> {
    fn enable() -> Self {
        // SAFETY: the USART's registers; volatile MMIO access.
        unsafe {
            write_volatile((BASE + BRR) as *mut u32, BRR_115200);
            write_volatile((BASE + CR1) as *mut u32, CR1_ON);
        }
        Self
    }
}

impl<const BASE: u32> Serial for Usart<BASE> {
    fn read_byte(&mut self) -> Option<u8> {
        // SAFETY: as above.
        unsafe {
            if read_volatile((BASE + SR) as *const u32) & SR_RXNE == 0 {
                return None;
            }
            Some(read_volatile((BASE + DR) as *const u32) as u8)
        }
    }

    fn write_byte(&mut self, byte: u8) {
        // SAFETY: as above.
        unsafe {
            while read_volatile((BASE + SR) as *const u32) & SR_TXE == 0 {}
            write_volatile((BASE + DR) as *mut u32, u32::from(byte));
        }
    }
}

pub type LinkUart = Usart<USART1>;
pub type ReportUart = Usart<USART2>;

/// The STM32F4's true random number generator.
pub struct Rng;

const RNG_CR: *mut u32 = 0x5006_0800 as *mut u32;
const RNG_SR: *mut u32 = 0x5006_0804 as *mut u32;
const RNG_DR: *mut u32 = 0x5006_0808 as *mut u32;

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        loop {
            // SAFETY: RNG registers; volatile MMIO access.
            let status = unsafe { read_volatile(RNG_SR) };
            if status & 0b110 != 0 {
                // Seed or clock error: restart the generator (reference manual's recovery).
                unsafe {
                    write_volatile(RNG_SR, 0);
                    write_volatile(RNG_CR, 0);
                    write_volatile(RNG_CR, 1 << 2);
                }
            } else if status & 1 != 0 {
                return unsafe { read_volatile(RNG_DR) };
            }
        }
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32()) << 32 | u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(4) {
            let word = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Rng {}

/// Clocks, pins (alternate function 7) and the two USARTs, and the RNG.
pub fn init(_boot: u32) -> (LinkUart, ReportUart, Option<Rng>) {
    // SAFETY: RCC, GPIOA and RNG registers; read-modify-write at start-up.
    unsafe {
        write_volatile(RCC_AHB1ENR, read_volatile(RCC_AHB1ENR) | 1); // GPIOA
        write_volatile(RCC_AHB2ENR, read_volatile(RCC_AHB2ENR) | 1 << 6); // RNG
        write_volatile(RCC_APB1ENR, read_volatile(RCC_APB1ENR) | 1 << 17); // USART2
        write_volatile(RCC_APB2ENR, read_volatile(RCC_APB2ENR) | 1 << 4); // USART1
        let pins_af = 0b10 << (2 * 2) | 0b10 << (2 * 3) | 0b10 << (2 * 9) | 0b10 << (2 * 10);
        write_volatile(GPIOA_MODER, read_volatile(GPIOA_MODER) | pins_af);
        write_volatile(
            GPIOA_AFRL,
            read_volatile(GPIOA_AFRL) | 7 << (4 * 2) | 7 << (4 * 3),
        );
        // AFRH holds pins 8..15: PA9 at bits 4..8, PA10 at 8..12.
        write_volatile(GPIOA_AFRH, read_volatile(GPIOA_AFRH) | 7 << 4 | 7 << 8);
        write_volatile(RNG_CR, 1 << 2);
    }
    (Usart::enable(), Usart::enable(), Some(Rng))
}

const FLASH_KEYR: *mut u32 = 0x4002_3C04 as *mut u32;
const FLASH_SR: *mut u32 = 0x4002_3C0C as *mut u32;
const FLASH_CR: *mut u32 = 0x4002_3C10 as *mut u32;
const CR_PG: u32 = 1 << 0;
const CR_SER: u32 = 1 << 1;
const CR_PSIZE_X32: u32 = 0b10 << 8;
const CR_STRT: u32 = 1 << 16;
const CR_LOCK: u32 = 1 << 31;
const SR_BSY: u32 = 1 << 16;
const SR_ERRORS: u32 = 0xf0 | 1 << 1;

fn wait() -> Result<(), FlashError> {
    // SAFETY: flash controller registers; volatile MMIO access.
    unsafe {
        while read_volatile(FLASH_SR) & SR_BSY != 0 {}
        let status = read_volatile(FLASH_SR);
        write_volatile(FLASH_SR, status); // clear the flags (write 1 to clear)
        if status & SR_ERRORS != 0 {
            return Err(FlashError::Program);
        }
    }
    Ok(())
}

fn unlock() {
    // SAFETY: the documented key sequence.
    unsafe {
        if read_volatile(FLASH_CR) & CR_LOCK != 0 {
            write_volatile(FLASH_KEYR, 0x4567_0123);
            write_volatile(FLASH_KEYR, 0xCDEF_89AB);
        }
    }
}

pub fn erase(sector: Sector) -> Result<(), FlashError> {
    unlock();
    wait()?;
    let select = CR_PSIZE_X32 | CR_SER | sector.number << 3;
    // SAFETY: sector erase of a sector that holds no code (see memory.x).
    unsafe {
        write_volatile(FLASH_CR, select);
        write_volatile(FLASH_CR, select | CR_STRT);
    }
    let result = wait();
    unsafe { write_volatile(FLASH_CR, CR_LOCK) };
    result
}

/// Programs `data` at `address` (word-aligned); a last partial word is padded with 0xff.
pub fn program(address: u32, data: &[u8]) -> Result<(), FlashError> {
    unlock();
    wait()?;
    unsafe { write_volatile(FLASH_CR, CR_PSIZE_X32 | CR_PG) };
    let mut result = Ok(());
    for (i, chunk) in data.chunks(4).enumerate() {
        let mut word = [0xff; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        // SAFETY: a word of an erased data sector (see memory.x), PG set.
        unsafe {
            write_volatile(
                (address + 4 * i as u32) as *mut u32,
                u32::from_le_bytes(word),
            )
        };
        result = wait();
        if result.is_err() {
            break;
        }
    }
    unsafe { write_volatile(FLASH_CR, CR_LOCK) };
    result
}

pub fn read(address: u32, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        // SAFETY: memory-mapped flash inside the data sectors.
        *byte = unsafe { read_volatile((address as usize + i) as *const u8) };
    }
}

/// Nothing to hand the verdict to: sleep (the report USART has said it).
pub fn finish(_passed: bool) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
