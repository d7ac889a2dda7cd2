//! A raw protocol client: mutual TLS, then frames encoded by ferry-core and written as they
//! are, so that an attacker can send what the ferry client library never would (a name over
//! 255 bytes, a list of 65,535 entries, a Hello and then silence).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_core::wire::{ErrorCode, Frame, ListEntries, MAGIC, PROTOCOL_VERSION};
use ferry_core::{framing::encode_frame, Framing};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The largest frame body read (a list page or a 1 MiB chunk with its header).
const MAX_BODY: usize = (1 << 20) + 4096;

/// What an answer said, owned (frames the attacks do not look into are `Other`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    HelloAck {
        chunk_size: u32,
    },
    ResumeStatus,
    ListPage {
        more: bool,
        count: u16,
        last: String,
    },
    Error {
        code: ErrorCode,
        text: String,
    },
    Other,
}

/// One TLS connection speaking raw frames.
pub struct Raw {
    stream: TlsStream<TcpStream>,
    out: Vec<u8>,
    body: Vec<u8>,
    next_seq: u32,
}

impl Raw {
    /// TCP and TLS (no protocol hello yet).
    pub async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> io::Result<Raw> {
        let tcp = super::attacker_tcp(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        let stream = TlsConnector::from(tls).connect(name, tcp).await?;
        Ok(Raw {
            stream,
            out: vec![0; MAX_BODY + 8],
            body: Vec::new(),
            next_seq: 1,
        })
    }

    /// TLS and the protocol hello proposing `max_chunk`; returns the negotiated chunk size.
    pub async fn open(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        max_chunk: u32,
    ) -> io::Result<(Raw, u32)> {
        let mut raw = Raw::connect(addr, tls).await?;
        raw.send(&Frame::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            max_chunk,
            max_window: 16,
        })
        .await?;
        match raw.receive().await? {
            Answer::HelloAck { chunk_size } => Ok((raw, chunk_size)),
            other => Err(io::Error::other(format!("hello answered with {other:?}"))),
        }
    }

    /// A new request number.
    pub fn seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Writes one frame (not validated: a name may be longer than the protocol allows).
    pub async fn send(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        let len = encode_frame(frame, Framing::LengthPrefixed, &mut self.out)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.stream.write_all(&self.out[..len]).await?;
        self.stream.flush().await
    }

    /// Reads the next frame; an end of stream is `UnexpectedEof`.
    pub async fn receive(&mut self) -> io::Result<Answer> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_BODY {
            return Err(io::Error::other(format!("a frame of {len} bytes")));
        }
        self.body.resize(len, 0);
        self.stream.read_exact(&mut self.body).await?;
        let frame = Frame::decode(&self.body).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(match frame {
            Frame::HelloAck { chunk_size, .. } => Answer::HelloAck { chunk_size },
            Frame::ResumeStatus { .. } => Answer::ResumeStatus,
            Frame::ListPage {
                more,
                count,
                entries,
                ..
            } => {
                let last = ListEntries::new(count, entries)
                    .filter_map(Result::ok)
                    .last()
                    .map(|entry| entry.name.to_string())
                    .unwrap_or_default();
                Answer::ListPage { more, count, last }
            }
            Frame::Error { code, text, .. } => Answer::Error {
                code,
                text: text.to_string(),
            },
            _ => Answer::Other,
        })
    }

    /// Lists every page with `limit` entries per request, counting pages in `pages`;
    /// returns the entries seen.
    pub async fn list_all(&mut self, limit: u16, pages: &AtomicU64) -> io::Result<u64> {
        let mut cursor = String::new();
        let mut total = 0;
        loop {
            let seq = self.seq();
            self.send(&Frame::List {
                seq,
                start_after: &cursor,
                limit,
            })
            .await?;
            match self.receive().await? {
                Answer::ListPage { more, count, last } => {
                    pages.fetch_add(1, Ordering::Relaxed);
                    total += u64::from(count);
                    if !more || last.is_empty() {
                        return Ok(total);
                    }
                    cursor = last;
                }
                other => return Err(io::Error::other(format!("list answered {other:?}"))),
            }
        }
    }

    /// Asks to upload `name` (`size` bytes, fresh); the server's first answer.
    pub async fn open_upload(&mut self, name: &str, size: u64) -> io::Result<Answer> {
        let seq = self.seq();
        self.send(&Frame::OpenUpload {
            seq,
            name,
            size,
            fresh: true,
        })
        .await?;
        self.receive().await
    }
}
