//! Where a device keeps the state of an interrupted download, so that a reset
//! does not start it over.

use core::marker::PhantomData;

use ferry_core::Digest;

/// Durable record of the chunks a device already holds of one download: flash
/// on a device (a small header and an append-only log of 40-byte entries), a
/// file on a host.
///
/// The client calls, in this order: [`find`](Self::find) and
/// [`entry`](Self::entry) when a download starts (to offer the partial copy to
/// the server), [`start`](Self::start) when the transfer begins from scratch,
/// [`record`](Self::record) after each chunk's data is durable in the sink,
/// and [`clear`](Self::clear) once the whole file is committed.
///
/// Uploads need no such store: the server keeps the chunks it holds, and a
/// device that resets mid-upload just uploads the same file again; the server's
/// answer makes it send only the rest.
pub trait HeldStore {
    /// Storage error.
    type Error;
    /// The size of the file this store holds a partial copy of, if that copy is of
    /// `name` in chunks of `chunk_size` bytes; `None` otherwise.
    fn find(&mut self, name: &str, chunk_size: u32) -> Result<Option<u64>, Self::Error>;
    /// The `position`-th recorded chunk (index, digest), in the order recorded
    /// (ascending over TLS); `None` past the last.
    fn entry(&mut self, position: u64) -> Result<Option<(u64, Digest)>, Self::Error>;
    /// Forgets any partial copy and starts one of `name`, `size` bytes in chunks of
    /// `chunk_size`.
    fn start(&mut self, name: &str, size: u64, chunk_size: u32) -> Result<(), Self::Error>;
    /// Records that chunk `index` with `digest` is durably held. Called after the
    /// sink has written the chunk's data.
    fn record(&mut self, index: u64, digest: &Digest) -> Result<(), Self::Error>;
    /// Forgets the partial copy (the download is committed, or is starting over).
    fn clear(&mut self) -> Result<(), Self::Error>;
}

/// A [`HeldStore`] that keeps nothing: every download starts from scratch.
/// `E` is the sink's error type.
pub struct NoResume<E>(PhantomData<E>);

impl<E> NoResume<E> {
    /// A store that keeps nothing.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<E> Default for NoResume<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> HeldStore for NoResume<E> {
    type Error = E;
    fn find(&mut self, _: &str, _: u32) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn entry(&mut self, _: u64) -> Result<Option<(u64, Digest)>, E> {
        Ok(None)
    }
    fn start(&mut self, _: &str, _: u64, _: u32) -> Result<(), E> {
        Ok(())
    }
    fn record(&mut self, _: u64, _: &Digest) -> Result<(), E> {
        Ok(())
    }
    fn clear(&mut self) -> Result<(), E> {
        Ok(())
    }
}
