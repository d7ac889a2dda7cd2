//! Peak stack use, measured by painting: at boot the free RAM below the stack
//! pointer is filled with a pattern; the deepest word no longer holding it
//! marks the deepest the stack has reached.

use core::ptr::{addr_of, read_volatile, write_volatile};

const PAINT: u32 = 0xC0FF_EE11;
/// Left unpainted below the stack pointer while painting (this function's own frame).
const MARGIN: usize = 64;

extern "C" {
    /// cortex-m-rt: the start of `.data`, the first static in RAM.
    static __sdata: u32;
    /// cortex-m-rt: the end of the static RAM (no heap in this image).
    static __sheap: u32;
    /// cortex-m-rt: the initial stack pointer (top of RAM).
    static _stack_start: u32;
}

/// (Taking a symbol's address needs no `unsafe`.)
fn bottom() -> usize {
    addr_of!(__sheap) as usize
}

fn top() -> usize {
    // SAFETY: as above.
    addr_of!(_stack_start) as usize
}

/// Paints the free RAM below the current stack pointer.
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    for at in (bottom()..sp - MARGIN).step_by(4) {
        // SAFETY: RAM between the statics and the stack that nothing uses.
        unsafe { write_volatile(at as *mut u32, PAINT) };
    }
}

/// Bytes of stack used at the deepest point since [`paint`].
pub fn peak() -> usize {
    let mut at = bottom();
    // SAFETY: reads of the RAM `paint` wrote.
    while at < top() && unsafe { read_volatile(at as *const u32) } == PAINT {
        at += 4;
    }
    top() - at
}

/// The static RAM (`.data`, `.bss`, `.uninit`): everything below the stack region.
pub fn static_ram() -> usize {
    bottom() - addr_of!(__sdata) as usize
}
