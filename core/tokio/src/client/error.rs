//! What can go wrong, and the exit code the `ferry` command line gives it.

use std::io;
use std::path::PathBuf;

use ferry_core::ErrorCode;

/// Exit codes of the `ferry` command line (and [`ClientError::exit_code`]).
pub mod exit {
    /// Every operation succeeded.
    pub const SUCCESS: i32 = 0;
    /// Any other error (protocol violation by the server, internal error).
    pub const OTHER: i32 = 1;
    /// The command line is wrong (clap's code for usage errors).
    pub const USAGE: i32 = 2;
    /// Could not connect, TLS was refused, or the connection was lost for good.
    pub const CONNECT: i32 = 3;
    /// The server refused the request: not found, invalid name, quota, too large, busy, forbidden.
    pub const REFUSED: i32 = 4;
    /// Verification failed: a digest mismatch, corrupted data, a source that kept changing.
    pub const VERIFICATION: i32 = 5;
    /// A local file could not be read or written (including the certificate files).
    pub const LOCAL_FILE: i32 = 6;
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `--server` value is not `HOST:PORT`.
    #[error("invalid server address {server:?}: {reason}")]
    Address {
        /// The value given.
        server: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate, key or CA file could not be used.
    ///
    /// This variant and the next two say their cause in `Display` (callers show
    /// `to_string()`) and so do not also return it from `source()`: a chain printed with
    /// `{:#}` says each thing once. [`Io`](Self::Io) leaves its cause to `source()`.
    #[error("client credentials: {0}")]
    Credentials(ferry_certs::CertError),
    /// The TCP connection could not be made (or timed out).
    #[error("cannot connect to {server}: {cause}")]
    Connect {
        /// The address connected to (`HOST:PORT`).
        server: String,
        /// The underlying error.
        cause: io::Error,
    },
    /// The TLS handshake failed: a certificate was refused by either side.
    #[error("TLS with {server} failed: {cause}")]
    Tls {
        /// The address connected to (`HOST:PORT`).
        server: String,
        /// What rustls reported.
        cause: rustls::Error,
    },
    /// The connection kept breaking and the retries are used up, or a streamed upload
    /// lost its connection after its data was consumed (it cannot resume).
    #[error("connection to {server} lost after {attempts} attempt(s): {reason}")]
    Interrupted {
        /// The server address.
        server: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// A file name this client refuses before sending it (empty, longer than 1024 bytes,
    /// absolute, or with an empty, `.` or `..` component).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server said no: not found, invalid name, quota exceeded, too large, busy, forbidden.
    #[error("refused by the server: {}{}", code.name(), text_suffix(text))]
    Refused {
        /// The server's error code.
        code: ErrorCode,
        /// The server's explanation, if any.
        text: String,
    },
    /// A digest did not match, the server's stored data is corrupt, or the source kept
    /// changing while it was sent. Nothing unverified is left at the destination.
    #[error("verification of {name:?} failed: {reason}")]
    Verification {
        /// The file concerned.
        name: String,
        /// What did not match.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server broke the protocol or spoke another version.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<ferry_certs::CertError> for ClientError {
    fn from(error: ferry_certs::CertError) -> Self {
        ClientError::Credentials(error)
    }
}

fn text_suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

impl ClientError {
    /// The `ferry` exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Address { .. } => exit::USAGE,
            ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::Interrupted { .. } => exit::CONNECT,
            ClientError::Refused { .. } | ClientError::InvalidName { .. } => exit::REFUSED,
            ClientError::Verification { .. } => exit::VERIFICATION,
            ClientError::Io { .. } | ClientError::Credentials(_) => exit::LOCAL_FILE,
            ClientError::Protocol(_) => exit::OTHER,
        }
    }

    /// A short machine-readable kind ("connect", "refused", ...), used in `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Address { .. } => "usage",
            ClientError::Credentials(_) => "credentials",
            ClientError::Connect { .. } => "connect",
            ClientError::Tls { .. } => "tls",
            ClientError::Interrupted { .. } => "interrupted",
            ClientError::InvalidName { .. } => "invalid_name",
            ClientError::Refused { .. } => "refused",
            ClientError::Verification { .. } => "verification",
            ClientError::Io { .. } => "io",
            ClientError::Protocol(_) => "protocol",
        }
    }

    /// The server's error code, for a refusal (`INVALID_NAME` for a name refused here).
    pub fn refusal_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            ClientError::InvalidName { .. } => Some(ErrorCode::INVALID_NAME),
            _ => None,
        }
    }

    /// This error with its causes, `: `-separated, each said once (for logs and messages
    /// shown in one line; `anyhow`'s `{:#}` prints the same).
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ClientError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn refused(code: ErrorCode, text: impl Into<String>) -> Self {
        ClientError::Refused {
            code,
            text: text.into(),
        }
    }

    pub(crate) fn verification(name: &str, reason: impl Into<String>) -> Self {
        ClientError::Verification {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        let io_error = || io::Error::other("x");
        let cases: Vec<(ClientError, i32)> = vec![
            (
                ClientError::Address {
                    server: "x".into(),
                    reason: "y".into(),
                },
                2,
            ),
            (
                ClientError::Connect {
                    server: "s".into(),
                    cause: io_error(),
                },
                3,
            ),
            (
                ClientError::Tls {
                    server: "s".into(),
                    cause: rustls::Error::HandshakeNotComplete,
                },
                3,
            ),
            (
                ClientError::Interrupted {
                    server: "s".into(),
                    attempts: 3,
                    reason: "eof".into(),
                },
                3,
            ),
            (ClientError::refused(ErrorCode::NOT_FOUND, ""), 4),
            (
                ClientError::InvalidName {
                    name: String::new(),
                    reason: "empty".into(),
                },
                4,
            ),
            (ClientError::refused(ErrorCode::INVALID_NAME, "bad"), 4),
            (ClientError::refused(ErrorCode::QUOTA_EXCEEDED, ""), 4),
            (ClientError::refused(ErrorCode::TOO_LARGE, ""), 4),
            (ClientError::refused(ErrorCode::BUSY, ""), 4),
            (ClientError::refused(ErrorCode::FORBIDDEN, ""), 4),
            (ClientError::verification("f", "digest mismatch"), 5),
            (ClientError::io("/x", io_error()), 6),
            (
                ClientError::Credentials(ferry_certs::CertError::Missing {
                    path: "/ca.crt".into(),
                }),
                6,
            ),
            (ClientError::Protocol("bad".into()), 1),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
            assert!(!error.kind().is_empty());
        }
    }

    #[test]
    fn refusal_messages_name_the_code_and_text() {
        let error = ClientError::refused(ErrorCode::NOT_FOUND, "no such file");
        assert_eq!(
            error.to_string(),
            "refused by the server: not found (no such file)"
        );
        assert_eq!(error.refusal_code(), Some(ErrorCode::NOT_FOUND));
        let bare = ClientError::refused(ErrorCode::BUSY, "");
        assert_eq!(bare.to_string(), "refused by the server: busy");
    }

    #[test]
    fn causes_are_said_once() {
        let refused = ClientError::Connect {
            server: "127.0.0.1:9".into(),
            cause: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            refused.with_causes(),
            "cannot connect to 127.0.0.1:9: connection refused"
        );
        let missing = ClientError::Credentials(ferry_certs::CertError::Missing {
            path: "certs/ca.crt".into(),
        });
        assert_eq!(
            missing.with_causes(),
            "client credentials: certs/ca.crt: file not found"
        );
        let tls = ClientError::Tls {
            server: "h:1".into(),
            cause: rustls::Error::HandshakeNotComplete,
        };
        let text = tls.with_causes();
        assert_eq!(text.matches("handshake not complete").count(), 1, "{text}");
        assert_eq!(text, tls.to_string());
        let io = ClientError::io("/x", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(io.with_causes(), "/x: entity not found");
    }
}
