//! The device's report: text lines on the board's second UART, written
//! without `core::fmt` (which would cost flash).

use crate::board::{ReportUart, Serial};

/// One line under construction; `end` sends the newline.
pub struct Line(ReportUart);

/// Starts a report line (the UART is polled and keeps no state, so any
/// handle to it is the same device; `board::init` has enabled it).
pub fn line() -> Line {
    Line(ReportUart::default())
}

impl Line {
    pub fn text(mut self, text: &str) -> Self {
        for byte in text.bytes() {
            self.0.write_byte(byte);
        }
        self
    }

    pub fn num(mut self, value: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &digit in &digits[at..] {
            self.0.write_byte(digit);
        }
        self
    }

    pub fn hex(mut self, bytes: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &byte in bytes {
            self.0.write_byte(HEX[usize::from(byte >> 4)]);
            self.0.write_byte(HEX[usize::from(byte & 0xf)]);
        }
        self
    }

    pub fn end(mut self) {
        self.0.write_byte(b'\n');
    }
}
