//! Client requests and the server's answers to them.

use crate::digest::Digest;
use crate::framing::encode_frame;
use crate::transfer::{Layout, Receiver, Sender, TransferError};
use crate::wire::{
    max_body_len, pack_entries, ErrorCode, FileAttrs, Frame, Held, ListEntry, PageEntry, TreeEntry,
    LIST_PAGE_HEADER,
};

use super::frames::Reply;
use super::{
    owned_name, owned_text, Active, Connection, Failure, Held_, Outstanding, Phase, Request, Role,
    Transfer, UsageError,
};

impl<B: AsRef<[u8]> + AsMut<[u8]>, const W: usize> Connection<B, W> {
    fn start_request(&mut self, request: Request) -> Result<u32, UsageError> {
        if self.role != Role::Client || self.negotiated().is_none() {
            return Err(UsageError::NotReady);
        }
        if self.is_busy() {
            return Err(UsageError::Busy);
        }
        // A verified download kept only to answer a repeated `Finish` is done now.
        self.transfer = None;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.outstanding = Some(Outstanding {
            seq,
            request,
            sent_at: None,
            sends: 0,
        });
        Ok(seq)
    }

    /// Client: uploads `name` of `size` bytes. With `fresh`, the server drops any partial copy.
    pub fn upload(&mut self, name: &str, size: u64, fresh: bool) -> Result<(), UsageError> {
        let name = owned_name(name)?;
        let attrs = None;
        self.start_request(Request::Upload {
            name,
            size,
            fresh,
            attrs,
        })
        .map(drop)
    }

    /// Client: as [`upload`](Self::upload), with the file's attributes for the server to
    /// record (sent as `OpenUploadWith`).
    pub fn upload_with(
        &mut self,
        name: &str,
        size: u64,
        fresh: bool,
        attrs: FileAttrs,
    ) -> Result<(), UsageError> {
        let name = owned_name(name)?;
        let attrs = Some(attrs);
        self.start_request(Request::Upload {
            name,
            size,
            fresh,
            attrs,
        })
        .map(drop)
    }

    /// Client: downloads `name`. `partial` describes a partial copy from an
    /// earlier attempt: its size and the chunks it holds (index, digest), in
    /// ascending order; the server sends only the rest.
    pub fn download(
        &mut self,
        name: &str,
        partial: Option<(u64, &mut dyn Iterator<Item = (u64, Digest)>)>,
    ) -> Result<(), UsageError> {
        let name = owned_name(name)?;
        let (size, held, receiver) = match (partial, self.negotiated()) {
            (Some((size, chunks)), Some((chunk_size, window))) => {
                let layout = Layout { size, chunk_size };
                let receiver = Receiver::new(layout, window, self.config.timing(), chunks);
                (size, receiver.held(), Some(receiver))
            }
            _ => (0, Held::default(), None),
        };
        let seq = self.start_request(Request::Download { name, size, held })?;
        if let Some(receiver) = receiver {
            self.transfer = Some(Transfer {
                id: seq,
                active: Active::Receive(receiver),
                phase: Phase::Running,
                ack_due: false,
            });
        }
        Ok(())
    }

    /// Client: lists up to `limit` files after `start_after`.
    pub fn list(&mut self, start_after: &str, limit: u16) -> Result<(), UsageError> {
        let start_after = owned_name(start_after)?;
        self.start_request(Request::List { start_after, limit })
            .map(drop)
    }

    /// Client: lists up to `limit` entries below `prefix` after `start_after`: every file
    /// (`recursive`), or one level with its folders. Answered by [`Event::TreePage`](super::Event::TreePage).
    pub fn list_tree(
        &mut self,
        prefix: &str,
        start_after: &str,
        limit: u16,
        recursive: bool,
    ) -> Result<(), UsageError> {
        let prefix = owned_name(prefix)?;
        let start_after = owned_name(start_after)?;
        self.start_request(Request::ListTree {
            prefix,
            start_after,
            limit,
            recursive,
        })
        .map(drop)
    }

    /// Client: deletes `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), UsageError> {
        let name = owned_name(name)?;
        self.start_request(Request::Delete { name }).map(drop)
    }

    // ----- server answers -----

    fn take_request(&mut self) -> Result<u32, UsageError> {
        match self.held_frame {
            Held_::Request { seq } => {
                self.held_frame = Held_::None;
                Ok(seq)
            }
            _ => Err(UsageError::Unexpected),
        }
    }

    fn answer(&mut self, seq: u32, reply: Reply) {
        self.last_request = Some((seq, Some(reply.clone())));
        self.queue(reply);
    }

    pub(super) fn queue(&mut self, reply: Reply) {
        if self.replies.push_back(reply).is_err() {
            // Only a peer ignoring the protocol floods replies; drop the oldest.
            let _ = self.replies.pop_front();
        }
    }

    /// Server: accepts the requested upload. `held_chunks` are the chunks of this
    /// name and size kept from an earlier attempt (index, digest), ascending.
    pub fn accept_upload(
        &mut self,
        held_chunks: impl IntoIterator<Item = (u64, Digest)>,
    ) -> Result<Held, UsageError> {
        let size = match self.current_frame() {
            Some(Frame::OpenUpload { size, .. } | Frame::OpenUploadWith { size, .. }) => size,
            _ => return Err(UsageError::Unexpected),
        };
        let (chunk_size, window) = self.negotiated().ok_or(UsageError::NotReady)?;
        let seq = self.take_request()?;
        let layout = Layout { size, chunk_size };
        let receiver = Receiver::new(layout, window, self.config.timing(), held_chunks);
        let held = receiver.held();
        self.answer(seq, Reply::ResumeStatus { seq, held });
        self.start_transfer(seq, Active::Receive(receiver));
        Ok(held)
    }

    /// Server: accepts the requested download of a file of `size` bytes.
    /// `stored_digest` is the digest the file was committed with (for this
    /// connection's chunk size), checked before `Finish` so rotten data is never
    /// reported verified.
    pub fn accept_download(
        &mut self,
        size: u64,
        stored_digest: Option<Digest>,
    ) -> Result<(), UsageError> {
        let (partial_size, held) = match self.current_frame() {
            Some(Frame::OpenDownload { size, held, .. }) => (size, held),
            _ => return Err(UsageError::Unexpected),
        };
        let (chunk_size, window) = self.negotiated().ok_or(UsageError::NotReady)?;
        let seq = self.take_request()?;
        let layout = Layout { size, chunk_size };
        let held = if held.is_empty() {
            Held::default()
        } else {
            held
        };
        if !held.is_empty() && partial_size != size {
            self.fail_request(seq, Failure::Transfer(TransferError::SourceChanged), "");
            return Ok(());
        }
        match Sender::new(layout, window, self.config.timing(), held, stored_digest) {
            Ok(sender) => {
                self.answer(
                    seq,
                    Reply::FileInfo {
                        seq,
                        size,
                        chunk_size,
                    },
                );
                self.start_transfer(seq, Active::Send(sender));
            }
            Err(error) => self.fail_request(seq, Failure::Transfer(error), ""),
        }
        Ok(())
    }

    /// Server: answers the pending `List` with as many `entries` as fit one frame
    /// and the request's limit. Pass the entries after `start_after` in name order:
    /// all of them (lazily), or at least `limit + 1` so the answer can say whether
    /// more follow. Returns how many were sent; the client asks again after the last.
    pub fn respond_list<'e>(
        &mut self,
        entries: impl IntoIterator<Item = ListEntry<'e>>,
    ) -> Result<u16, UsageError> {
        self.respond_list_capped(entries, u16::MAX)
    }

    /// Server: as [`respond_list`](Self::respond_list), with at most `page_max` entries
    /// whatever the request's limit (pass at least `page_max + 1` entries, or all, so the
    /// answer can say whether more follow).
    pub fn respond_list_capped<'e>(
        &mut self,
        entries: impl IntoIterator<Item = ListEntry<'e>>,
        page_max: u16,
    ) -> Result<u16, UsageError> {
        let limit = match self.current_frame() {
            Some(Frame::List { limit, .. }) => limit.min(page_max),
            _ => return Err(UsageError::Unexpected),
        };
        self.respond_page(entries, limit)
    }

    /// Server: answers the pending `ListTree` with as many `entries` as fit one frame, the
    /// request's limit and `page_max` (pass at least `page_max + 1` entries, or all, so the
    /// answer can say whether more follow). Returns how many were sent.
    pub fn respond_list_tree<'e>(
        &mut self,
        entries: impl IntoIterator<Item = TreeEntry<'e>>,
        page_max: u16,
    ) -> Result<u16, UsageError> {
        let limit = match self.current_frame() {
            Some(Frame::ListTree { limit, .. }) => limit.min(page_max),
            _ => return Err(UsageError::Unexpected),
        };
        self.respond_page(entries, limit)
    }

    fn respond_page<'e, E: PageEntry<'e>>(
        &mut self,
        entries: impl IntoIterator<Item = E>,
        limit: u16,
    ) -> Result<u16, UsageError> {
        if self.tx_len > 0 {
            return Err(UsageError::TransmitPending);
        }
        let (chunk_size, _) = self.negotiated().ok_or(UsageError::NotReady)?;
        let seq = self.take_request()?;
        self.last_request = Some((seq, None));
        // Entries are packed into the receive buffer (its request is answered), then framed.
        let space = max_body_len(chunk_size as usize) - LIST_PAGE_HEADER;
        self.rx_body = None;
        let scratch = &mut self.decoder.scratch()[..space];
        let mut all = entries.into_iter();
        let mut page = all.by_ref().take(usize::from(limit));
        let (used, count, more) = pack_entries(scratch, &mut page);
        // More follow if the frame filled up, or the limit cut the listing short.
        let more = more || page.next().is_some() || all.next().is_some();
        let frame = Frame::ListPage {
            seq,
            more,
            count,
            entries: &scratch[..used],
        };
        self.tx_len = encode_frame(&frame, self.config.framing, self.tx.as_mut())
            .map_err(|_| UsageError::BuffersTooSmall)?;
        Ok(count)
    }

    /// Server: answers the pending `Delete`.
    pub fn respond_delete(&mut self) -> Result<(), UsageError> {
        match self.current_frame() {
            Some(Frame::Delete { .. }) => {}
            _ => return Err(UsageError::Unexpected),
        }
        let seq = self.take_request()?;
        self.answer(seq, Reply::Deleted { seq });
        Ok(())
    }

    /// Server: refuses the pending request with `code` and a short `text`.
    pub fn reject(&mut self, code: ErrorCode, text: &str) -> Result<(), UsageError> {
        let seq = self.take_request()?;
        self.answer(
            seq,
            Reply::Error {
                seq,
                code,
                text: owned_text(text),
            },
        );
        Ok(())
    }

    pub(super) fn fail_request(&mut self, seq: u32, failure: Failure, text: &str) {
        self.answer(
            seq,
            Reply::Error {
                seq,
                code: failure.code(),
                text: owned_text(text),
            },
        );
    }
}
