//! Where downloads go: the staging slot, and the held-chunk record that lets
//! a download resume after a reset. Both sit in the board's storage sectors
//! (flash on the STM32, kept RAM on the emulated MPS2).

use ferry_core::blocking::ChunkSink;
use ferry_core::{Digest, Layout};
use ferry_firmware_client::HeldStore;

use ferry_firmware_device::board::{self, FlashError, RECORD, SECTOR_LEN, STAGING};
use ferry_firmware_device::report;

/// Report progress every this many chunks stored.
const PROGRESS_EVERY: u64 = 8;

/// A download's destination: the staging slot (say, a firmware update).
pub struct Staging {
    /// Chunks stored by this boot.
    pub stored: u64,
}

impl ChunkSink for Staging {
    type Error = FlashError;
    fn started(&mut self, layout: Layout, held_chunks: u64) -> Result<(), FlashError> {
        if layout.size > u64::from(SECTOR_LEN) {
            return Err(FlashError::TooLarge);
        }
        if held_chunks == 0 {
            board::erase(STAGING)?;
        }
        Ok(())
    }
    fn write_chunk(
        &mut self,
        index: u64,
        offset: u64,
        data: &[u8],
        _: &Digest,
    ) -> Result<(), FlashError> {
        board::program(STAGING.base + offset as u32, data)?;
        self.stored += 1;
        if self.stored.is_multiple_of(PROGRESS_EVERY) {
            report::line()
                .text("progress chunk ")
                .num(index)
                .text(" stored ")
                .num(self.stored)
                .end();
        }
        Ok(())
    }
    fn commit(&mut self, _: u64, _: &Digest) -> Result<(), FlashError> {
        Ok(()) // a real device would now mark the slot bootable
    }
}

/// The staged file's bytes, `len` of them.
pub fn staged(len: usize, mut each: impl FnMut(&[u8])) {
    let mut buf = [0u8; 256];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len());
        board::read(STAGING.base + at as u32, &mut buf[..n]);
        each(&buf[..n]);
        at += n;
    }
}

/// The held-chunk record in its sector: a header (magic, chunk size, size,
/// name) and 40-byte entries (index, digest) appended behind it; erased
/// storage (0xff) ends the list.
pub struct Record {
    next: u32,
}

impl Record {
    pub const fn new() -> Self {
        Self { next: 0 }
    }
}

const MAGIC: u32 = 0x4652_5931; // "FRY1"
const HEADER_LEN: u32 = 96;
const ENTRY_LEN: u32 = 40;
const MAX_NAME: usize = 80;

impl HeldStore for Record {
    type Error = FlashError;

    fn find(&mut self, name: &str, chunk_size: u32) -> Result<Option<u64>, FlashError> {
        let mut header = [0u8; HEADER_LEN as usize];
        board::read(RECORD.base, &mut header);
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let name_len = (word(12) as usize).min(MAX_NAME);
        if word(0) != MAGIC
            || word(4) != chunk_size
            || &header[16..16 + name_len] != name.as_bytes()
        {
            return Ok(None);
        }
        let mut count = 0;
        while self.entry(u64::from(count))?.is_some() {
            count += 1;
        }
        self.next = count;
        Ok(Some(u64::from(word(8))))
    }

    fn entry(&mut self, position: u64) -> Result<Option<(u64, Digest)>, FlashError> {
        let at = HEADER_LEN as u64 + position * u64::from(ENTRY_LEN);
        if at + u64::from(ENTRY_LEN) > u64::from(SECTOR_LEN) {
            return Ok(None);
        }
        let mut entry = [0u8; ENTRY_LEN as usize];
        board::read(RECORD.base + at as u32, &mut entry);
        let mut index = [0u8; 8];
        index.copy_from_slice(&entry[..8]);
        let index = u64::from_le_bytes(index);
        if index == u64::MAX {
            return Ok(None);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&entry[8..]);
        Ok(Some((index, Digest::from(digest))))
    }

    fn start(&mut self, name: &str, size: u64, chunk_size: u32) -> Result<(), FlashError> {
        if name.len() > MAX_NAME || size > u64::from(SECTOR_LEN) {
            return Err(FlashError::TooLarge);
        }
        board::erase(RECORD)?;
        let mut header = [0xffu8; HEADER_LEN as usize];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&chunk_size.to_le_bytes());
        header[8..12].copy_from_slice(&(size as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(name.len() as u32).to_le_bytes());
        header[16..16 + name.len()].copy_from_slice(name.as_bytes());
        board::program(RECORD.base, &header)?;
        self.next = 0;
        Ok(())
    }

    fn record(&mut self, index: u64, digest: &Digest) -> Result<(), FlashError> {
        let at = HEADER_LEN + self.next * ENTRY_LEN;
        if at + ENTRY_LEN > SECTOR_LEN {
            return Ok(()); // full: later chunks are simply not resumable
        }
        let mut entry = [0u8; ENTRY_LEN as usize];
        entry[..8].copy_from_slice(&index.to_le_bytes());
        entry[8..].copy_from_slice(digest.as_bytes());
        board::program(RECORD.base + at, &entry)?;
        self.next += 1;
        Ok(())
    }

    fn clear(&mut self) -> Result<(), FlashError> {
        self.next = 0;
        board::erase(RECORD)
    }
}
