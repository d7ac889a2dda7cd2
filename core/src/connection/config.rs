//! Connection settings and roles.

use crate::framing::Framing;
use crate::transfer::Timing;

/// Connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How frames are delimited on this link.
    pub framing: Framing,
    /// The largest chunk this side handles (the client proposes it, the server
    /// answers with the smaller of both).
    pub max_chunk: u32,
    /// Chunks in flight (at most the connection's `W` and [`MAX_WINDOW`](crate::wire::MAX_WINDOW)).
    pub window: u16,
    /// Milliseconds after which an unanswered frame is sent again.
    pub retransmit_after: u64,
    /// Re-sends before a chunk or request fails.
    pub max_retries: u32,
    /// Milliseconds of silence from the peer after which the connection closes
    /// (the client only counts while it waits for something).
    pub idle_timeout: u64,
}

impl Config {
    /// Settings for a reliable stream (TLS): length-prefixed frames, 64 KiB chunks.
    pub const fn stream() -> Self {
        Self {
            framing: Framing::LengthPrefixed,
            max_chunk: 64 * 1024,
            window: 16,
            retransmit_after: 30_000,
            max_retries: 3,
            idle_timeout: 120_000,
        }
    }

    /// Settings for a lossy link (serial): COBS frames, 1 KiB chunks.
    pub const fn lossy_link() -> Self {
        Self {
            framing: Framing::Cobs,
            max_chunk: 1024,
            window: 4,
            retransmit_after: 500,
            max_retries: 8,
            idle_timeout: 10_000,
        }
    }

    pub(super) fn timing(&self) -> Timing {
        Timing {
            retransmit_after: self.retransmit_after,
            max_retries: self.max_retries,
        }
    }
}

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens the connection and makes requests.
    Client,
    /// Answers requests.
    Server,
}
