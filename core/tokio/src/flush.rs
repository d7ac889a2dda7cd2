//! Writing a received file to disk while it arrives, so that the fsync at commit waits
//! for the last stretch instead of the whole file.
//!
//! Without it the kernel holds a whole upload or download dirty in memory (up to its
//! background threshold, gigabytes on a large machine) and the commit's fsync writes it
//! all at once: 0.4 s per GiB on the benchmark machine, with the network idle. A
//! [`Flusher`] starts an `fdatasync` on a blocking thread after every [`FLUSH_EVERY`]
//! bytes written, at most one at a time, and reports its errors at [`Flusher::finish`]
//! (which the commit calls before its own fsync):
//! the flushing handle shares the file description with the writer's, so an I/O error it
//! consumes would not be reported to the final fsync again.

use std::fs::File;
use std::io;
use std::thread::JoinHandle;

/// Bytes written between two background flushes.
pub const FLUSH_EVERY: u64 = 32 << 20;

/// Flushes one file on a thread of its own as it is written.
#[derive(Debug)]
pub struct Flusher {
    file: File,
    unflushed: u64,
    running: Option<JoinHandle<io::Result<()>>>,
    error: Option<io::Error>,
}

impl Flusher {
    /// A flusher for `file` (the handle is duplicated).
    pub fn new(file: &File) -> io::Result<Self> {
        Ok(Self {
            file: file.try_clone()?,
            unflushed: 0,
            running: None,
            error: None,
        })
    }

    /// Records `bytes` written; starts a flush when enough is unflushed and none is running.
    pub fn wrote(&mut self, bytes: u64) {
        self.unflushed = self.unflushed.saturating_add(bytes);
        if self.unflushed < FLUSH_EVERY {
            return;
        }
        if self.running.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        self.join();
        let file = match self.file.try_clone() {
            Ok(file) => file,
            Err(e) => return self.record(e),
        };
        let started = std::thread::Builder::new()
            .name("ferry-flush".into())
            .spawn(move || file.sync_data());
        // Without a thread to spare, the final fsync writes it all.
        if let Ok(running) = started {
            self.unflushed = 0;
            self.running = Some(running);
        }
    }

    /// Waits for a running flush; the first error any flush met, if one did.
    pub fn finish(&mut self) -> io::Result<()> {
        self.join();
        self.error.take().map_or(Ok(()), Err)
    }

    fn join(&mut self) {
        if let Some(running) = self.running.take() {
            match running.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.record(e),
                Err(_) => self.record(io::Error::other("the background flush panicked")),
            }
        }
    }

    fn record(&mut self, error: io::Error) {
        self.error.get_or_insert(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn flushes_in_the_background_and_finishes_cleanly() {
        let mut file = tempfile::tempfile().unwrap();
        let mut flusher = Flusher::new(&file).unwrap();
        let block = vec![7u8; 1 << 20];
        for _ in 0..(FLUSH_EVERY >> 20) + 1 {
            file.write_all(&block).unwrap();
            flusher.wrote(block.len() as u64);
        }
        assert!(flusher.running.is_some(), "a flush started");
        assert_eq!(flusher.unflushed, 1 << 20);
        flusher.finish().unwrap();
        assert!(flusher.running.is_none());
    }

    #[test]
    fn an_error_is_reported_at_the_end() {
        let file = tempfile::tempfile().unwrap();
        let mut flusher = Flusher::new(&file).unwrap();
        flusher.record(io::Error::other("disk on fire"));
        flusher.record(io::Error::other("and then some"));
        let error = flusher.finish().unwrap_err();
        assert!(error.to_string().contains("disk on fire"));
        flusher.finish().unwrap();
    }
}
