//! The public errors read as sentences and are `core::error::Error`s.
use ferry_core::blocking::DriverError;
use ferry_core::framing::FramingError;
use ferry_core::transfer::ProvideError;
use ferry_core::wire::{BufferTooSmall, DecodeError};
use ferry_core::{ErrorCode, Failure, TransferError, UsageError};

fn message(error: &dyn core::error::Error) -> String {
    error.to_string()
}

#[test]
fn errors_display_as_sentences() {
    let cases: [(&dyn core::error::Error, &str); 12] = [
        (&UsageError::BadName, "the name is longer than 1024 bytes"),
        (
            &TransferError::RetriesExhausted { index: 7 },
            "chunk 7 was never acknowledged, however often it was sent",
        ),
        (
            &Failure::Transfer(TransferError::DigestMismatch),
            "the whole-file digests of the two ends differ",
        ),
        (
            &Failure::Peer(ErrorCode::QUOTA_EXCEEDED),
            "the peer reported an error: quota exceeded",
        ),
        (
            &Failure::Local(ErrorCode(999)),
            "this side failed the transfer: unknown error (code 999)",
        ),
        (
            &Failure::Malformed(DecodeError::TrailingBytes),
            "the peer sent a frame that does not decode: bytes left over after a complete frame",
        ),
        (
            &Failure::UnsupportedVersion { theirs: 9 },
            "the peer speaks protocol version 9, this side speaks version 1",
        ),
        (
            &Failure::Framing(FramingError::FrameTooLong { len: 70_000 }),
            "the peer announced a frame of 70000 bytes, longer than allowed",
        ),
        (&DecodeError::NameTooLong, "a name longer than 1024 bytes"),
        (
            &BufferTooSmall,
            "the output buffer is too small for the frame",
        ),
        (
            &ProvideError::Failed(TransferError::SourceChanged),
            "the source changed during the transfer",
        ),
        (
            &DriverError::<std::io::Error>::Closed(Failure::IdleTimeout),
            "the connection closed: the peer was silent for too long",
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(message(error), expected);
    }
}

#[test]
fn driver_error_shows_the_storage_error() {
    let error = DriverError::Storage(std::io::Error::other("disk full"));
    assert_eq!(error.to_string(), "storage failed: disk full");
}
