//! One operation (upload, download, list, delete) as the session runs it: the trait each
//! operation implements, the events it is handed and why an attempt can end early.

use std::io;
use unicode_normalization::UnicodeNormalization;

use ferry_core::{Connection, Event, Failure, UsageError};

use crate::client::error::ClientError;
use crate::client::report::Progress;
use crate::event::OwnedEvent;

/// The largest window this client supports (the connection's `W`).
pub const WINDOW: usize = 16;

pub(crate) type Conn = Connection<Vec<u8>, WINDOW>;

/// A progress callback: called after every chunk with the bytes done so far.
pub type ProgressFn<'a> = &'a mut (dyn FnMut(Progress) + Send);

/// Why an attempt ended without a result.
pub(crate) enum Interrupt {
    /// The link broke (I/O error, end of stream, TLS error): reconnect.
    Link(io::Error),
    /// The request or transfer failed; the connection is usable.
    Failed(Failure, String),
    /// The connection closed.
    Closed(Failure, String),
    /// A final error (local file, refusal decided here).
    Final(ClientError),
}

impl From<ClientError> for Interrupt {
    fn from(error: ClientError) -> Self {
        Interrupt::Final(error)
    }
}

/// The client's name for an owned event: `Failed` and `Closed` arrive as [`Interrupt`]s.
pub(crate) type Ev = OwnedEvent;

/// Copies an event out of the connection (chunk data goes to `scratch`); a failure or the
/// end of the connection ends the attempt.
pub(crate) fn own(event: Event<'_>, scratch: &mut Vec<u8>) -> Result<Ev, Interrupt> {
    match OwnedEvent::new(event, scratch) {
        Ok(OwnedEvent::Failed { failure, text }) => Err(Interrupt::Failed(failure, text)),
        Ok(OwnedEvent::Closed { failure, text }) => Err(Interrupt::Closed(failure, text)),
        Ok(event) => Ok(event),
        Err(e) => Err(Interrupt::Final(ClientError::Protocol(format!(
            "a list page that does not decode: {e}"
        )))),
    }
}

/// Which operation a failure belongs to (the same code means different things).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Upload,
    Download,
    List,
    Delete,
}

/// What [`Operation::fill`] did.
pub(crate) enum Fill<O> {
    /// Nothing to send now.
    Nothing,
    /// A frame was queued: send it before anything else.
    Queued,
    /// The operation is complete.
    Done(O),
}

/// One operation, run in attempts over (re)connected connections.
pub(crate) trait Operation {
    type Output;
    fn kind(&self) -> OpKind;
    fn name(&self) -> &str;
    /// Issues the request at the start of an attempt.
    fn begin(&mut self, conn: &mut Conn) -> Result<(), Interrupt>;
    /// Acts on one event; `Some` ends the operation.
    async fn on_event(
        &mut self,
        event: Ev,
        conn: &mut Conn,
        scratch: &[u8],
        now: u64,
    ) -> Result<Option<Self::Output>, Interrupt>;
    /// Called whenever the transmit buffer may be free: an operation that pipelines
    /// requests queues the next one here.
    async fn fill(&mut self, _conn: &mut Conn) -> Result<Fill<Self::Output>, Interrupt> {
        Ok(Fill::Nothing)
    }
    /// A chunk frame with this index went out.
    fn chunk_sent(&mut self, _index: u64) {}
    /// Grows whenever the operation moves forward (resets the retry count).
    fn progress_marker(&self) -> u64 {
        0
    }
    /// Whether another attempt can follow a broken link.
    fn can_retry(&self) -> bool {
        true
    }
    /// Starts over from nothing: the source changed under what the receiver held.
    fn restart(&mut self) -> Result<(), ClientError> {
        Ok(())
    }
    /// The operation failed for good with `error`.
    fn failed(&mut self, _error: &ClientError) {}
}

fn usage(error: UsageError, name: &str) -> Interrupt {
    match error {
        UsageError::BadName => Interrupt::Final(ClientError::InvalidName {
            name: name.to_string(),
            reason: "names are 1 to 1024 bytes of UTF-8".into(),
        }),
        // The connection is not in a state for this: start from a new one.
        other => Interrupt::Link(io::Error::other(format!("connection not ready: {other}"))),
    }
}

/// Checks a file name before it is sent (the server checks it again, component by
/// component) and returns what is sent: its NFC form, as the server stores it, whose length
/// is the one that counts (a decomposed name may be longer than the limit and its NFC form
/// not). A name is a path of `/`-separated components; what can never be valid is refused
/// here: a leading `/`, an empty component, `.` or `..`.
pub(crate) fn check_name(name: &str) -> Result<String, ClientError> {
    let nfc: String = name.nfc().collect();
    let refuse = |reason: &str| ClientError::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
    };
    if nfc.is_empty() || nfc.len() > ferry_core::wire::MAX_NAME_LEN {
        return Err(refuse("names are 1 to 1024 bytes of UTF-8 (in NFC)"));
    }
    if nfc.starts_with('/') {
        return Err(refuse(
            "a name is a relative path: it cannot start with '/'",
        ));
    }
    if nfc
        .split('/')
        .any(|component| matches!(component, "" | "." | ".."))
    {
        return Err(refuse(
            "a path component cannot be empty, '.' or '..' (no '//' and no trailing '/')",
        ));
    }
    Ok(nfc)
}

/// Checks a listing prefix: "" (everything) or a folder path ending in `/` whose
/// components are valid as in [`check_name`]; returns its NFC form.
pub(crate) fn check_prefix(prefix: &str) -> Result<String, ClientError> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let folder = prefix.strip_suffix('/').unwrap_or(prefix);
    let mut nfc = check_name(folder)?;
    nfc.push('/');
    Ok(nfc)
}

pub(crate) fn begin_request(result: Result<(), UsageError>, name: &str) -> Result<(), Interrupt> {
    result.map_err(|e| usage(e, name))
}
