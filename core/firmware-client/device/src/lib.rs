//! The platform under both firmware images of this crate (`ferry-firmware-device`,
//! the client over TLS, and `ferry-firmware-check`, the core alone): the board
//! layer and what is built on it the same way on every board.
//!
//! Boards (one Cargo feature each, `src/board/`): `stm32f407` (default) and
//! `mps2-an386` (the same images under `qemu-system-arm -M mps2-an386`).

#![no_std]

pub mod board;
pub mod clock;
pub mod link;
pub mod report;
pub mod stack;

use core::panic::PanicInfo;

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    report::line().text("FAIL: panic").end();
    board::finish(false)
}
