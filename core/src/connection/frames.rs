//! Owned mirrors of frames: replies waiting for the link, and the fields of a
//! received frame that outlive the receive buffer.

use heapless::String;

use crate::digest::Digest;
use crate::wire::{ErrorCode, Frame, Held, NackReason, MAX_ERROR_TEXT, PROTOCOL_VERSION};

/// Control frames waiting for the link; owned so they outlive the frame that caused them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    HelloAck {
        chunk_size: u32,
        window: u16,
    },
    ResumeStatus {
        seq: u32,
        held: Held,
    },
    FileInfo {
        seq: u32,
        size: u64,
        chunk_size: u32,
    },
    Deleted {
        seq: u32,
    },
    Verified {
        transfer: u32,
        size: u64,
        digest: Digest,
    },
    Nack {
        transfer: u32,
        index: u64,
        reason: NackReason,
    },
    Error {
        seq: u32,
        code: ErrorCode,
        text: String<MAX_ERROR_TEXT>,
    },
}

pub(super) fn reply_frame(reply: &Reply) -> Frame<'_> {
    match reply {
        Reply::HelloAck { chunk_size, window } => Frame::HelloAck {
            version: PROTOCOL_VERSION,
            chunk_size: *chunk_size,
            window: *window,
        },
        Reply::ResumeStatus { seq, held } => Frame::ResumeStatus {
            seq: *seq,
            held: *held,
        },
        Reply::FileInfo {
            seq,
            size,
            chunk_size,
        } => Frame::FileInfo {
            seq: *seq,
            size: *size,
            chunk_size: *chunk_size,
        },
        Reply::Deleted { seq } => Frame::Deleted { seq: *seq },
        Reply::Verified {
            transfer,
            size,
            digest,
        } => Frame::Verified {
            transfer: *transfer,
            size: *size,
            digest: *digest,
        },
        Reply::Nack {
            transfer,
            index,
            reason,
        } => Frame::Nack {
            transfer: *transfer,
            index: *index,
            reason: *reason,
        },
        Reply::Error { seq, code, text } => Frame::Error {
            seq: *seq,
            code: *code,
            text,
        },
    }
}

/// The fields of a received frame that outlive the receive buffer.
pub(super) enum FrameSummary {
    Hello {
        magic: u32,
        version: u16,
        max_chunk: u32,
        max_window: u16,
    },
    HelloAck {
        version: u16,
        chunk_size: u32,
        window: u16,
    },
    Request {
        seq: u32,
    },
    ResumeStatus {
        seq: u32,
        held: Held,
    },
    FileInfo {
        seq: u32,
        size: u64,
        chunk_size: u32,
    },
    Chunk {
        transfer: u32,
        index: u64,
        digest: Digest,
    },
    Ack {
        transfer: u32,
        cumulative: u64,
        mask: u64,
    },
    Nack {
        transfer: u32,
        index: u64,
        reason: NackReason,
    },
    Finish {
        transfer: u32,
        size: u64,
        digest: Digest,
    },
    Verified {
        transfer: u32,
        size: u64,
        digest: Digest,
    },
    ListPage {
        seq: u32,
    },
    Deleted {
        seq: u32,
    },
    Error {
        seq: u32,
        code: ErrorCode,
    },
    Put {
        seq: u32,
    },
}

impl FrameSummary {
    pub(super) fn of(frame: &Frame<'_>) -> Self {
        match *frame {
            Frame::Hello {
                magic,
                version,
                max_chunk,
                max_window,
            } => Self::Hello {
                magic,
                version,
                max_chunk,
                max_window,
            },
            Frame::HelloAck {
                version,
                chunk_size,
                window,
            } => Self::HelloAck {
                version,
                chunk_size,
                window,
            },
            Frame::OpenUpload { seq, .. }
            | Frame::OpenUploadWith { seq, .. }
            | Frame::ListTree { seq, .. }
            | Frame::OpenDownload { seq, .. }
            | Frame::List { seq, .. }
            | Frame::Delete { seq, .. } => Self::Request { seq },
            Frame::ResumeStatus { seq, held } => Self::ResumeStatus { seq, held },
            Frame::FileInfo {
                seq,
                size,
                chunk_size,
            } => Self::FileInfo {
                seq,
                size,
                chunk_size,
            },
            Frame::Chunk {
                transfer,
                index,
                digest,
                ..
            } => Self::Chunk {
                transfer,
                index,
                digest,
            },
            Frame::Ack {
                transfer,
                cumulative,
                mask,
            } => Self::Ack {
                transfer,
                cumulative,
                mask,
            },
            Frame::Nack {
                transfer,
                index,
                reason,
            } => Self::Nack {
                transfer,
                index,
                reason,
            },
            Frame::Finish {
                transfer,
                size,
                digest,
            } => Self::Finish {
                transfer,
                size,
                digest,
            },
            Frame::Verified {
                transfer,
                size,
                digest,
            } => Self::Verified {
                transfer,
                size,
                digest,
            },
            Frame::ListPage { seq, .. } => Self::ListPage { seq },
            Frame::Deleted { seq } => Self::Deleted { seq },
            Frame::Error { seq, code, .. } => Self::Error { seq, code },
            Frame::Put { seq, .. } => Self::Put { seq },
        }
    }
}
