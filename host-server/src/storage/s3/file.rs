//! A committed file read from its object: ranged GETs of 256 KiB or more, fetched on the
//! blocking pool ([`StoredFile::fetch`]), served from memory by
//! [`StoredFile::read_exact_at`].

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::Shared;
use crate::storage::{FileMeta, StoredFile};

/// Bytes one GET reads at least.
const READ_AHEAD: u64 = 256 << 10;

/// One version of a committed file: its object is never changed, and is deleted only a
/// grace period after the name stopped pointing at it.
#[derive(Debug)]
pub(super) struct S3File {
    pub(super) shared: Arc<Shared>,
    pub(super) meta: FileMeta,
    pub(super) path: Path,
    /// Bytes fetched last, and their offset in the file.
    pub(super) buffer: Option<(u64, Bytes)>,
}

impl S3File {
    fn buffered(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let (start, bytes) = self.buffer.as_ref()?;
        let from = usize::try_from(offset.checked_sub(*start)?).ok()?;
        bytes.get(from..from.checked_add(len)?)
    }
}

impl StoredFile for S3File {
    fn meta(&self) -> &FileMeta {
        &self.meta
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match self.buffered(offset, buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} bytes at {offset} were not fetched", buf.len()),
            )),
        }
    }

    fn needs_fetch(&self, offset: u64, len: usize) -> bool {
        len > 0 && self.buffered(offset, len).is_none()
    }

    fn fetch(&mut self, offset: u64, len: usize) -> io::Result<()> {
        let end = offset
            .saturating_add((len as u64).max(READ_AHEAD))
            .min(self.meta.size);
        if offset.saturating_add(len as u64) > end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} are beyond the file's end"),
            ));
        }
        let bytes = self
            .shared
            .runtime
            .block_on(self.shared.s3.get_range(&self.path, offset..end))
            .map_err(|e| io::Error::other(format!("reading {}: {e}", self.path)))?;
        if (bytes.len() as u64) != end - offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than recorded", self.path),
            ));
        }
        self.buffer = Some((offset, bytes));
        Ok(())
    }
}
