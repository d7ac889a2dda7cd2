//! The byte stream to the server over a board's UART, with a read timeout.

use embedded_io::{ErrorKind, ErrorType, Read, Write};

use crate::board::Serial;
use crate::clock;

/// A read that sees no byte for this long fails; the session is then over and
/// the device may reconnect (resuming the transfer).
pub const READ_TIMEOUT_MS: u64 = 5_000;

/// The UART as an `embedded-io` stream.
pub struct Link<S>(pub S);

impl<S: Serial> Link<S> {
    /// Discards input until the line has been quiet for `quiet_ms` (what is
    /// left of an interrupted session, before a new handshake).
    pub fn drain(&mut self, quiet_ms: u64) {
        let mut last = clock::now();
        while clock::now() - last < quiet_ms {
            if self.0.read_byte().is_some() {
                last = clock::now();
            }
        }
    }
}

impl<S> ErrorType for Link<S> {
    type Error = ErrorKind;
}

impl<S: Serial> Read for Link<S> {
    /// Waits for the first byte (up to [`READ_TIMEOUT_MS`]), then takes what is waiting.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let Some((first, rest)) = buf.split_first_mut() else {
            return Ok(0);
        };
        let since = clock::now();
        *first = loop {
            if let Some(byte) = self.0.read_byte() {
                break byte;
            }
            if clock::now() - since >= READ_TIMEOUT_MS {
                return Err(ErrorKind::TimedOut);
            }
        };
        let mut n = 1;
        for slot in rest {
            match self.0.read_byte() {
                Some(byte) => *slot = byte,
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }
}

impl<S: Serial> Write for Link<S> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        for &byte in buf {
            self.0.write_byte(byte);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
