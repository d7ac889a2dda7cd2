//! Framing: cutting a byte stream into frame bodies.
//!
//! Two framings, chosen by the link (both ends must use the same one):
//!
//! - [`Framing::LengthPrefixed`] for reliable links (TLS, TCP): a 4-byte
//!   little-endian body length, then the body. Costs one copy and nothing per byte.
//!   A length above the bound is a fatal error: the stream cannot be trusted after it.
//! - [`Framing::Cobs`] for links that can corrupt or lose bytes (a serial line):
//!   `COBS(body || CRC-32(body)) || 0x00`. A damaged frame fails its CRC or its
//!   COBS decoding and is dropped; the next `0x00` resynchronises the stream.
//!
//! Either way the decoder survives any split or merge of reads, and never
//! accepts a body longer than [`max_body_len`].

use postcard::ser_flavors::{Cobs, Flavor, Slice};

use crate::wire::{max_body_len, BufferTooSmall, Frame};

/// CRC-32 (ISO-HDLC, as zlib and Ethernet) with a 1 KiB table: the fast
/// 16 KiB-table variants cost a third of a small firmware image.
const CRC32: crc::Crc<u32, crc::Table<1>> =
    crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

const LENGTH_PREFIX: usize = 4;
const CRC_LEN: usize = 4;

/// How frames are delimited on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 4-byte length prefix; for reliable streams such as TLS.
    LengthPrefixed,
    /// COBS with a CRC-32 per frame; for lossy or corrupting links.
    Cobs,
}

/// Bytes a receive or transmit buffer needs for chunks of up to `max_chunk` bytes,
/// under either framing.
pub const fn buffer_len(max_chunk: usize) -> usize {
    let body = max_body_len(max_chunk) + CRC_LEN;
    cobs::max_encoding_length(body) + 1
}

/// Fatal framing errors (only the length-prefixed framing has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// A length prefix above the bound.
    #[error("the peer announced a frame of {len} bytes, longer than allowed")]
    FrameTooLong {
        /// The announced length.
        len: u32,
    },
}

/// Encodes `frame` with `framing` into `out`, returning the bytes used.
pub fn encode_frame(
    frame: &Frame<'_>,
    framing: Framing,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    match framing {
        Framing::LengthPrefixed => {
            let (prefix, body) = out
                .split_at_mut_checked(LENGTH_PREFIX)
                .ok_or(BufferTooSmall)?;
            let len = frame.encode(body)?;
            prefix.copy_from_slice(&(len as u32).to_le_bytes());
            Ok(LENGTH_PREFIX + len)
        }
        Framing::Cobs => {
            let flavor = Crc32::new(Cobs::try_new(Slice::new(out)).map_err(|_| BufferTooSmall)?);
            postcard::serialize_with_flavor(frame, flavor)
                .map(|used| used.len())
                .map_err(|_| BufferTooSmall)
        }
    }
}

/// A postcard flavor that appends the CRC-32 of everything serialized.
struct Crc32<F> {
    inner: F,
    crc: crc::Digest<'static, u32, crc::Table<1>>,
}

impl<F: Flavor> Crc32<F> {
    fn new(inner: F) -> Self {
        Self {
            inner,
            crc: CRC32.digest(),
        }
    }
}

impl<F: Flavor> Flavor for Crc32<F> {
    type Output = F::Output;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.crc.update(&[data]);
        self.inner.try_push(data)
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.crc.update(data);
        self.inner.try_extend(data)
    }

    fn finalize(mut self) -> postcard::Result<F::Output> {
        self.inner.try_extend(&self.crc.finalize().to_le_bytes())?;
        self.inner.finalize()
    }
}

/// Accumulates received bytes into frame bodies, in a buffer the caller supplies.
pub struct FrameDecoder<B> {
    buf: B,
    framing: Framing,
    max_body: usize,
    fill: usize,
    /// Length-prefixed: the body length once the prefix is complete.
    body_len: Option<usize>,
    /// COBS: an overlong or damaged frame is being skipped up to its `0x00`.
    skipping: bool,
    /// A complete body sits in `buf[..ready]` until the next `feed`.
    ready: Option<usize>,
    dropped: u64,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> FrameDecoder<B> {
    /// A decoder for bodies of up to `max_body` bytes. `buf` must hold
    /// [`buffer_len`] bytes for the chunk size behind `max_body`.
    pub fn new(buf: B, framing: Framing, max_body: usize) -> Self {
        let max_body = max_body.min(buf.as_ref().len().saturating_sub(CRC_LEN + 1));
        Self {
            buf,
            framing,
            max_body,
            fill: 0,
            body_len: None,
            skipping: false,
            ready: None,
            dropped: 0,
        }
    }

    /// Lowers (never raises) the bound on bodies, once a smaller chunk size is negotiated.
    pub fn limit_body(&mut self, max_body: usize) {
        self.max_body = self.max_body.min(max_body);
    }

    /// The buffer; after `feed` returned a body, the body is its first bytes.
    pub(crate) fn buffer(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The buffer as scratch space, once the last body has been used: the
    /// caller must not read that body again.
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        self.ready = None;
        self.fill = 0;
        self.buf.as_mut()
    }

    /// Frames dropped so far (COBS framing: damaged or overlong).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Feeds received bytes. Stops at the first complete body and returns how many
    /// bytes it consumed and the body, which stays valid until the next call.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<&[u8]>), FramingError> {
        if self.ready.take().is_some() {
            self.fill = 0;
        }
        let consumed = match self.framing {
            Framing::LengthPrefixed => self.feed_length_prefixed(input)?,
            Framing::Cobs => self.feed_cobs(input),
        };
        Ok((consumed, self.ready.map(|len| &self.buf.as_ref()[..len])))
    }

    fn feed_length_prefixed(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        let buf = self.buf.as_mut();
        let mut used = 0;
        if self.body_len.is_none() {
            let take = (LENGTH_PREFIX - self.fill).min(input.len());
            buf[self.fill..self.fill + take].copy_from_slice(&input[..take]);
            self.fill += take;
            used += take;
            if self.fill < LENGTH_PREFIX {
                return Ok(used);
            }
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if len as usize > self.max_body {
                return Err(FramingError::FrameTooLong { len });
            }
            self.body_len = Some(len as usize);
            self.fill = 0;
        }
        let want = self.body_len.unwrap_or(0);
        let take = (want - self.fill).min(input.len() - used);
        buf[self.fill..self.fill + take].copy_from_slice(&input[used..used + take]);
        self.fill += take;
        used += take;
        if self.fill == want {
            self.body_len = None;
            self.ready = Some(want);
        }
        Ok(used)
    }

    fn feed_cobs(&mut self, input: &[u8]) -> usize {
        let capacity = cobs::max_encoding_length(self.max_body + CRC_LEN);
        for (i, &byte) in input.iter().enumerate() {
            if byte != 0 {
                if self.skipping {
                    continue;
                }
                if self.fill == capacity {
                    self.skipping = true;
                    self.dropped += 1;
                    self.fill = 0;
                    continue;
                }
                self.buf.as_mut()[self.fill] = byte;
                self.fill += 1;
                continue;
            }
            // A frame delimiter.
            let encoded_len = core::mem::replace(&mut self.fill, 0);
            if core::mem::replace(&mut self.skipping, false) || encoded_len == 0 {
                continue;
            }
            match self.check_cobs(encoded_len) {
                Some(len) => {
                    self.ready = Some(len);
                    self.fill = len;
                    return i + 1;
                }
                None => self.dropped += 1,
            }
        }
        input.len()
    }

    /// Decodes the COBS frame in `buf[..encoded_len]` in place and checks its CRC.
    fn check_cobs(&mut self, encoded_len: usize) -> Option<usize> {
        let buf = &mut self.buf.as_mut()[..encoded_len];
        let len = cobs::decode_in_place(buf).ok()?;
        let body_len = len.checked_sub(CRC_LEN)?;
        let (body, crc) = buf[..len].split_at(body_len);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        (CRC32.checksum(body) == crc && body_len <= self.max_body).then_some(body_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = 64;

    fn sample() -> Frame<'static> {
        Frame::Chunk {
            transfer: 7,
            index: 3,
            digest: crate::Digest::default(),
            data: &[0, 1, 2, 0, 255, 0],
        }
    }

    fn decode_all(framing: Framing, wire: &[u8], step: usize) -> (usize, u64) {
        let mut decoder = FrameDecoder::new([0u8; buffer_len(CHUNK)], framing, max_body_len(CHUNK));
        let mut frames = 0;
        for piece in wire.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, body) = decoder.feed(rest).unwrap();
                if let Some(body) = body {
                    assert_eq!(Frame::decode(body), Ok(sample()));
                    frames += 1;
                }
                rest = &rest[used..];
            }
        }
        (frames, decoder.dropped())
    }

    fn wire_of(framing: Framing, copies: usize) -> heapless::Vec<u8, 2048> {
        let mut wire = heapless::Vec::new();
        let mut buf = [0u8; buffer_len(CHUNK)];
        for _ in 0..copies {
            let len = encode_frame(&sample(), framing, &mut buf).unwrap();
            wire.extend_from_slice(&buf[..len]).unwrap();
        }
        wire
    }

    #[test]
    fn survives_any_split() {
        for framing in [Framing::LengthPrefixed, Framing::Cobs] {
            let wire = wire_of(framing, 5);
            for step in [1, 2, 3, 7, 64, 1 << 20] {
                assert_eq!(
                    decode_all(framing, &wire, step),
                    (5, 0),
                    "{framing:?} {step}"
                );
            }
        }
    }

    #[test]
    fn cobs_drops_a_corrupted_frame_and_resynchronises() {
        let mut wire = wire_of(Framing::Cobs, 3);
        let one = wire.len() / 3;
        wire[one + 5] ^= 0x10;
        assert_eq!(decode_all(Framing::Cobs, &wire, 5), (2, 1));
    }

    #[test]
    fn cobs_drops_an_overlong_frame() {
        let mut wire: heapless::Vec<u8, 4096> = heapless::Vec::new();
        wire.extend_from_slice(&[0x55; 1000]).unwrap();
        wire.push(0).unwrap();
        wire.extend_from_slice(&wire_of(Framing::Cobs, 1)).unwrap();
        assert_eq!(decode_all(Framing::Cobs, &wire, 100), (1, 1));
    }

    #[test]
    fn length_prefix_over_the_bound_is_refused() {
        let mut decoder = FrameDecoder::new(
            [0u8; buffer_len(CHUNK)],
            Framing::LengthPrefixed,
            max_body_len(CHUNK),
        );
        let too_long = (max_body_len(CHUNK) as u32 + 1).to_le_bytes();
        assert_eq!(
            decoder.feed(&too_long),
            Err(FramingError::FrameTooLong {
                len: max_body_len(CHUNK) as u32 + 1
            })
        );
    }
}
